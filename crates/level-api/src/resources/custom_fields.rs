//! Custom fields: their definitions.

use super::*;

impl LevelClient {
    /// `GET /v2/custom_fields` (listCustomFields).
    pub async fn list_custom_fields(
        &self,
        page: &PageParams,
    ) -> Result<Page<CustomField>, ClientError> {
        self.json(
            "listCustomFields",
            Method::GET,
            &["custom_fields"],
            &page_query(page),
            None,
        )
        .await
    }

    /// `GET /v2/custom_fields/{id}` (showCustomField).
    pub async fn get_custom_field(&self, id: &str) -> Result<CustomField, ClientError> {
        self.json(
            "showCustomField",
            Method::GET,
            &["custom_fields", id],
            &Query::new(),
            None,
        )
        .await
    }

    /// `POST /v2/custom_fields` (createCustomField).
    pub async fn create_custom_field(
        &self,
        field: &NewCustomField,
    ) -> Result<CustomField, ClientError> {
        self.json(
            "createCustomField",
            Method::POST,
            &["custom_fields"],
            &Query::new(),
            Some(field),
        )
        .await
    }

    /// `PATCH /v2/custom_fields/{id}` (updateCustomField).
    pub async fn update_custom_field(
        &self,
        id: &str,
        patch: &CustomFieldPatch,
    ) -> Result<CustomField, ClientError> {
        self.json(
            "updateCustomField",
            Method::PATCH,
            &["custom_fields", id],
            &Query::new(),
            Some(patch),
        )
        .await
    }

    /// `DELETE /v2/custom_fields/{id}` (deleteCustomField).
    pub async fn delete_custom_field(&self, id: &str) -> Result<(), ClientError> {
        self.empty(
            "deleteCustomField",
            Method::DELETE,
            &["custom_fields", id],
            &Query::new(),
            None,
        )
        .await
    }
}
