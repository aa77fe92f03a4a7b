//! `level:api/custom-fields`.

use super::{LevelCtx, LevelError, page};
use crate::bindings::custom_fields::{
    CustomField, CustomFieldPage, CustomFieldUpdate, Host, NewCustomField,
};
use crate::bindings::types::{Id, PageRequest};
use crate::client::model;

impl Host for LevelCtx {
    async fn list_custom_fields(&mut self, p: PageRequest) -> Result<CustomFieldPage, LevelError> {
        let page = self
            .call(|c| async move { c.list_custom_fields(&page(p)).await })
            .await?;
        Ok(CustomFieldPage {
            items: page.data.into_iter().map(field).collect(),
            has_more: page.has_more,
        })
    }

    async fn get_custom_field(&mut self, id: Id) -> Result<CustomField, LevelError> {
        self.call(|c| async move { c.get_custom_field(&id).await })
            .await
            .map(field)
    }

    async fn create_custom_field(
        &mut self,
        new: NewCustomField,
    ) -> Result<CustomField, LevelError> {
        let body = model::NewCustomField {
            name: new.name,
            admin_only: new.admin_only,
        };
        self.call(|c| async move { c.create_custom_field(&body).await })
            .await
            .map(field)
    }

    async fn update_custom_field(
        &mut self,
        id: Id,
        update: CustomFieldUpdate,
    ) -> Result<CustomField, LevelError> {
        let body = model::CustomFieldPatch {
            name: update.name,
            admin_only: update.admin_only,
        };
        self.call(|c| async move { c.update_custom_field(&id, &body).await })
            .await
            .map(field)
    }

    async fn delete_custom_field(&mut self, id: Id) -> Result<(), LevelError> {
        self.call(|c| async move { c.delete_custom_field(&id).await })
            .await
    }
}

fn field(f: model::CustomField) -> CustomField {
    CustomField {
        id: f.id,
        name: f.name,
        reference: f.reference,
        admin_only: f.admin_only,
    }
}
