//! `level:api/custom-field-values`.

use super::{Call, LevelCtx, LevelError, host_call, page};
use crate::bindings::custom_field_values::{
    CustomFieldValue, CustomFieldValuePage, Host, ValueAssignment, ValueFilter, ValueRemoval,
};
use crate::bindings::types::{Error, PageRequest};
use level_api::{ValueQuery, model};
use levelhost_core::capability::Operation;
use levelhost_core::gate::Facts;

impl LevelCtx {
    /// What a value call touches: the field, and the device, group or organization it is set on.
    async fn value_facts(
        &mut self,
        call: &mut Call,
        field_id: Option<&str>,
        target: Option<&str>,
    ) -> Result<Facts, LevelError> {
        let mut facts = Facts::default();
        if let Some(field) = field_id {
            facts
                .custom_fields
                .extend(self.field_name(call, field).await?);
            facts.others.push(field.to_owned());
        }
        match target {
            None => facts.organization = true,
            // An in-scope group id is a group; anything else is looked up as a device,
            // so an out-of-scope group is refused as an unknown or out-of-scope device.
            Some(id)
                if self
                    .gate()
                    .scopes()
                    .group_ids
                    .as_ref()
                    .is_some_and(|g| g.contains(id)) =>
            {
                facts.groups.push(id.to_owned());
            }
            Some(id) => {
                let group = self.device_group(call, id).await?;
                facts.devices.push((id.to_owned(), group));
            }
        }
        Ok(facts)
    }

    /// What a forced value change adds to `facts`: it clears the values set
    /// below its target, so it reaches every device there, and (for a
    /// forced set) needs the capability that removes values.
    async fn forced_reach(
        &mut self,
        call: &mut Call,
        facts: &mut Facts,
        target: Option<&str>,
        removes_below: bool,
    ) -> Result<(), LevelError> {
        if removes_below {
            facts.needs.push(Operation::RemoveValue.capability());
        }
        let below = match target {
            None => level_api::DeviceQuery::default(),
            Some(id) if facts.groups.iter().any(|g| g == id) => level_api::DeviceQuery {
                ancestor_group_id: Some(id.to_owned()),
                ..Default::default()
            },
            // A device of a group-scoped grant: nothing lies below it.
            Some(_) if self.gate().scopes().group_ids.is_some() => return Ok(()),
            // An unscoped grant has not told groups from devices: a device has nothing below it.
            Some(id) => level_api::DeviceQuery {
                ancestor_group_id: Some(id.to_owned()),
                ..Default::default()
            },
        };
        let early = facts.clone();
        match self.devices_reached(call, &early, below).await {
            Ok(devices) => facts.devices.extend(devices),
            Err(LevelError::Guest(Error::NotFound(_))) if target.is_some() => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

impl Host for LevelCtx {
    async fn list_values(
        &mut self,
        filter: ValueFilter,
        p: PageRequest,
    ) -> Result<CustomFieldValuePage, LevelError> {
        host_call!(self, call, Operation::ListValues, [&filter, &p], {
            let facts = self
                .value_facts(
                    call,
                    filter.custom_field_id.as_deref(),
                    filter.assigned_to_id.as_deref(),
                )
                .await?;
            self.require(call, facts)?;
            let query = ValueQuery {
                assigned_to_id: filter.assigned_to_id,
                custom_field_id: filter.custom_field_id,
            };
            let page = self
                .filtered_page(
                    call,
                    page(&p),
                    |v: &model::CustomFieldValue| v.custom_field_id.clone(),
                    |gate, v| gate.field_in_scope(&v.custom_field_name),
                    |c, pp| {
                        let query = query.clone();
                        async move { c.list_custom_field_values(&query, &pp).await }
                    },
                )
                .await?;
            Ok(CustomFieldValuePage {
                items: page.data.into_iter().map(CustomFieldValue::from).collect(),
                has_more: page.has_more,
            })
        })
    }

    async fn set_value(&mut self, v: ValueAssignment) -> Result<CustomFieldValue, LevelError> {
        host_call!(self, call, Operation::SetValue, [&v], {
            let mut facts = self
                .value_facts(call, Some(&v.custom_field_id), v.assigned_to_id.as_deref())
                .await?;
            if v.force {
                self.forced_reach(call, &mut facts, v.assigned_to_id.as_deref(), true)
                    .await?;
            }
            self.require(call, facts)?;
            let body = model::ValueChange {
                custom_field_id: v.custom_field_id,
                assigned_to_id: v.assigned_to_id,
                value: Some(v.value),
                force: v.force,
            };
            let planned = model::CustomFieldValue {
                custom_field_id: body.custom_field_id.clone(),
                custom_field_name: String::new(),
                assigned_to_id: body.assigned_to_id.clone(),
                value: body.value.clone(),
            };
            let request = serde_json::to_value(&body).unwrap_or_default();
            self.write(
                call,
                request,
                || planned,
                |c| async move { c.set_custom_field_value(&body).await },
            )
            .await
            .map(CustomFieldValue::from)
        })
    }

    async fn remove_value(&mut self, v: ValueRemoval) -> Result<(), LevelError> {
        host_call!(self, call, Operation::RemoveValue, [&v], {
            let mut facts = self
                .value_facts(call, Some(&v.custom_field_id), v.assigned_to_id.as_deref())
                .await?;
            if v.force {
                self.forced_reach(call, &mut facts, v.assigned_to_id.as_deref(), false)
                    .await?;
            }
            self.require(call, facts)?;
            let body = model::ValueChange {
                custom_field_id: v.custom_field_id,
                assigned_to_id: v.assigned_to_id,
                value: None,
                force: v.force,
            };
            let request = serde_json::to_value(&body).unwrap_or_default();
            self.write(
                call,
                request,
                || (),
                |c| async move { c.delete_custom_field_value(&body).await },
            )
            .await
        })
    }
}
