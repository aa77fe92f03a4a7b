//! Tags, and which devices carry them.

use super::*;

impl LevelClient {
    /// `GET /v2/tags` (listTags).
    pub async fn list_tags(
        &self,
        device_id: Option<&str>,
        page: &PageParams,
    ) -> Result<Page<Tag>, ClientError> {
        let mut q = page_query(page);
        if let Some(device) = device_id {
            q.push(("device_id", device.to_owned()));
        }
        self.json("listTags", Method::GET, &["tags"], &q, None)
            .await
    }

    /// `GET /v2/tags/{id}` (showTag).
    pub async fn get_tag(&self, id: &str) -> Result<Tag, ClientError> {
        self.json("showTag", Method::GET, &["tags", id], &Query::new(), None)
            .await
    }

    /// `POST /v2/tags` (createTag).
    pub async fn create_tag(&self, name: &TagName) -> Result<Tag, ClientError> {
        self.json(
            "createTag",
            Method::POST,
            &["tags"],
            &Query::new(),
            Some(name),
        )
        .await
    }

    /// `PATCH /v2/tags/{id}` (updateTag).
    pub async fn update_tag(&self, id: &str, name: &TagName) -> Result<Tag, ClientError> {
        self.json(
            "updateTag",
            Method::PATCH,
            &["tags", id],
            &Query::new(),
            Some(name),
        )
        .await
    }

    /// `DELETE /v2/tags/{id}` (deleteTag).
    pub async fn delete_tag(&self, id: &str) -> Result<(), ClientError> {
        self.empty(
            "deleteTag",
            Method::DELETE,
            &["tags", id],
            &Query::new(),
            None,
        )
        .await
    }

    /// `POST /v2/tags/{id}/devices` (tagDevices).
    pub async fn tag_devices(&self, id: &str, ids: &DeviceIds) -> Result<Tag, ClientError> {
        self.json(
            "tagDevices",
            Method::POST,
            &["tags", id, "devices"],
            &Query::new(),
            Some(ids),
        )
        .await
    }

    /// `DELETE /v2/tags/{id}/devices` (removeTagFromDevices).
    pub async fn untag_devices(&self, id: &str, ids: &DeviceIds) -> Result<(), ClientError> {
        self.empty(
            "removeTagFromDevices",
            Method::DELETE,
            &["tags", id, "devices"],
            &Query::new(),
            Some(ids),
        )
        .await
    }
}
