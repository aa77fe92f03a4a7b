//! `level:api/custom-fields`.

use super::{Call, LevelCtx, LevelError, host_call, page};
use crate::bindings::custom_fields::{
    CustomField, CustomFieldPage, CustomFieldUpdate, Host, NewCustomField,
};
use crate::bindings::types::{Id, PageRequest};
use level_api::model;
use levelhost_core::capability::Operation;
use levelhost_core::gate::Facts;

impl LevelCtx {
    /// A custom field's name, needed only when the grant limits custom fields.
    pub(super) async fn field_name(
        &mut self,
        call: &mut Call,
        id: &str,
    ) -> Result<Option<String>, LevelError> {
        if self.gate().scopes().custom_fields.is_none() {
            return Ok(None);
        }
        let id = id.to_owned();
        Ok(Some(
            self.fetch(call, |c| async move { c.get_custom_field(&id).await })
                .await?
                .name,
        ))
    }
}

impl Host for LevelCtx {
    async fn list_custom_fields(&mut self, p: PageRequest) -> Result<CustomFieldPage, LevelError> {
        host_call!(self, call, Operation::ListCustomFields, [&p], {
            let page = self
                .filtered_page(
                    call,
                    page(&p),
                    |f: &model::CustomField| f.id.clone(),
                    |gate, f| gate.field_in_scope(&f.name),
                    |c, pp| async move { c.list_custom_fields(&pp).await },
                )
                .await?;
            Ok(CustomFieldPage {
                items: page.data.into_iter().map(CustomField::from).collect(),
                has_more: page.has_more,
            })
        })
    }

    async fn get_custom_field(&mut self, id: Id) -> Result<CustomField, LevelError> {
        host_call!(self, call, Operation::GetCustomField, [&id], {
            let found = self
                .fetch(call, |c| async move { c.get_custom_field(&id).await })
                .await?;
            self.require(
                call,
                Facts {
                    custom_fields: vec![found.name.clone()],
                    others: vec![found.id.clone()],
                    ..Facts::default()
                },
            )?;
            Ok(CustomField::from(found))
        })
    }

    async fn create_custom_field(
        &mut self,
        new: NewCustomField,
    ) -> Result<CustomField, LevelError> {
        host_call!(self, call, Operation::CreateCustomField, [&new], {
            self.require(
                call,
                Facts {
                    custom_fields: vec![new.name.clone()],
                    ..Facts::default()
                },
            )?;
            let body = model::NewCustomField {
                name: new.name,
                admin_only: new.admin_only,
            };
            let planned = model::CustomField {
                id: format!("dry-run:custom-field:{}", body.name),
                name: body.name.clone(),
                reference: format!("cf_{}", body.name.to_lowercase().replace(' ', "_")),
                admin_only: body.admin_only,
            };
            let planned_id = planned.id.clone();
            let request = serde_json::to_value(&body).unwrap_or_default();
            let created = self
                .write(
                    call,
                    request,
                    || planned,
                    |c| async move { c.create_custom_field(&body).await },
                )
                .await?;
            self.gate().note_created(&planned_id, &created.id);
            Ok(CustomField::from(created))
        })
    }

    async fn update_custom_field(
        &mut self,
        id: Id,
        update: CustomFieldUpdate,
    ) -> Result<CustomField, LevelError> {
        host_call!(self, call, Operation::UpdateCustomField, [&id, &update], {
            // A definition is seen by every group: changing it is an organization-level action.
            let mut facts = Facts {
                custom_fields: self.field_name(call, &id).await?.into_iter().collect(),
                others: vec![id.clone()],
                organization: true,
                ..Facts::default()
            };
            facts.custom_fields.extend(update.name.iter().cloned());
            self.require(call, facts)?;
            let body = model::CustomFieldPatch {
                name: update.name,
                admin_only: update.admin_only,
            };
            let planned = model::CustomField {
                id: id.clone(),
                name: body.name.clone().unwrap_or_default(),
                reference: String::new(),
                admin_only: body.admin_only.unwrap_or_default(),
            };
            let request = serde_json::json!({ "id": id, "change": body });
            self.write(
                call,
                request,
                || planned,
                |c| async move { c.update_custom_field(&id, &body).await },
            )
            .await
            .map(CustomField::from)
        })
    }

    async fn delete_custom_field(&mut self, id: Id) -> Result<(), LevelError> {
        host_call!(self, call, Operation::DeleteCustomField, [&id], {
            // Deleting a definition removes its values at every level, so it
            // reaches every device of the organization.
            let mut facts = Facts {
                custom_fields: self.field_name(call, &id).await?.into_iter().collect(),
                others: vec![id.clone()],
                organization: true,
                ..Facts::default()
            };
            facts.devices = self
                .devices_reached(call, &facts, Default::default())
                .await?;
            self.require(call, facts)?;
            self.write(
                call,
                serde_json::json!({ "id": id }),
                || (),
                |c| async move { c.delete_custom_field(&id).await },
            )
            .await
        })
    }
}
