//! `level:api/custom-field-values`.

use super::{LevelCtx, LevelError, page};
use crate::bindings::custom_field_values::{
    CustomFieldValue, CustomFieldValuePage, Host, ValueAssignment, ValueFilter, ValueRemoval,
};
use crate::bindings::types::PageRequest;
use crate::client::{ValueQuery, model};

impl Host for LevelCtx {
    async fn list_values(
        &mut self,
        filter: ValueFilter,
        p: PageRequest,
    ) -> Result<CustomFieldValuePage, LevelError> {
        let query = ValueQuery {
            assigned_to_id: filter.assigned_to_id,
            custom_field_id: filter.custom_field_id,
        };
        let page = self
            .call(|c| async move { c.list_custom_field_values(&query, &page(p)).await })
            .await?;
        Ok(CustomFieldValuePage {
            items: page.data.into_iter().map(value).collect(),
            has_more: page.has_more,
        })
    }

    async fn set_value(&mut self, v: ValueAssignment) -> Result<CustomFieldValue, LevelError> {
        let body = model::ValueChange {
            custom_field_id: v.custom_field_id,
            assigned_to_id: v.assigned_to_id,
            value: Some(v.value),
            force: v.force,
        };
        self.call(|c| async move { c.set_custom_field_value(&body).await })
            .await
            .map(value)
    }

    async fn remove_value(&mut self, v: ValueRemoval) -> Result<(), LevelError> {
        let body = model::ValueChange {
            custom_field_id: v.custom_field_id,
            assigned_to_id: v.assigned_to_id,
            value: None,
            force: v.force,
        };
        self.call(|c| async move { c.delete_custom_field_value(&body).await })
            .await
    }
}

fn value(v: model::CustomFieldValue) -> CustomFieldValue {
    CustomFieldValue {
        custom_field_id: v.custom_field_id,
        custom_field_name: v.custom_field_name,
        assigned_to_id: v.assigned_to_id,
        value: v.value,
    }
}
