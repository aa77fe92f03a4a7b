//! Custom field values on the organization, groups and devices.

use super::*;

impl LevelClient {
    /// `GET /v2/custom_field_values` (listCustomFieldValues).
    pub async fn list_custom_field_values(
        &self,
        filter: &ValueQuery,
        page: &PageParams,
    ) -> Result<Page<CustomFieldValue>, ClientError> {
        let mut q = page_query(page);
        push_opt(&mut q, "assigned_to_id", &filter.assigned_to_id);
        push_opt(&mut q, "custom_field_id", &filter.custom_field_id);
        self.json(
            "listCustomFieldValues",
            Method::GET,
            &["custom_field_values"],
            &q,
            None,
        )
        .await
    }

    /// `PATCH /v2/custom_field_values` (updateCustomFieldValue).
    pub async fn set_custom_field_value(
        &self,
        change: &ValueChange,
    ) -> Result<CustomFieldValue, ClientError> {
        self.json(
            "updateCustomFieldValue",
            Method::PATCH,
            &["custom_field_values"],
            &Query::new(),
            Some(change),
        )
        .await
    }

    /// `DELETE /v2/custom_field_values` (deleteCustomFieldValue), parameters in the body.
    pub async fn delete_custom_field_value(&self, change: &ValueChange) -> Result<(), ClientError> {
        self.empty(
            "deleteCustomFieldValue",
            Method::DELETE,
            &["custom_field_values"],
            &Query::new(),
            Some(change),
        )
        .await
    }
}
