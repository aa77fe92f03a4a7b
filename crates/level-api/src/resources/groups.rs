//! Groups: the tree, and which devices are in each.

use super::*;

impl LevelClient {
    /// `GET /v2/groups` (listGroups); `parent_id` `Some("null")` lists root groups.
    pub async fn list_groups(
        &self,
        parent_id: Option<&str>,
        page: &PageParams,
    ) -> Result<Page<Group>, ClientError> {
        let mut q = page_query(page);
        if let Some(parent) = parent_id {
            q.push(("parent_id", parent.to_owned()));
        }
        self.json("listGroups", Method::GET, &["groups"], &q, None)
            .await
    }

    /// `GET /v2/groups/{id}` (showGroup).
    pub async fn get_group(&self, id: &str) -> Result<Group, ClientError> {
        self.json(
            "showGroup",
            Method::GET,
            &["groups", id],
            &Query::new(),
            None,
        )
        .await
    }

    /// `POST /v2/groups` (createGroup).
    pub async fn create_group(&self, group: &NewGroup) -> Result<Group, ClientError> {
        self.json(
            "createGroup",
            Method::POST,
            &["groups"],
            &Query::new(),
            Some(group),
        )
        .await
    }

    /// `PATCH /v2/groups/{id}` (updateGroup).
    pub async fn update_group(&self, id: &str, patch: &GroupPatch) -> Result<Group, ClientError> {
        self.json(
            "updateGroup",
            Method::PATCH,
            &["groups", id],
            &Query::new(),
            Some(patch),
        )
        .await
    }

    /// `DELETE /v2/groups/{id}` (deleteGroup).
    pub async fn delete_group(&self, id: &str) -> Result<(), ClientError> {
        self.empty(
            "deleteGroup",
            Method::DELETE,
            &["groups", id],
            &Query::new(),
            None,
        )
        .await
    }

    /// `POST /v2/groups/{id}/devices` (assignGroupDevices).
    pub async fn assign_group_devices(&self, id: &str, ids: &DeviceIds) -> Result<(), ClientError> {
        self.empty(
            "assignGroupDevices",
            Method::POST,
            &["groups", id, "devices"],
            &Query::new(),
            Some(ids),
        )
        .await
    }

    /// `DELETE /v2/groups/{id}/devices` (removeGroupDevices).
    pub async fn remove_group_devices(&self, id: &str, ids: &DeviceIds) -> Result<(), ClientError> {
        self.empty(
            "removeGroupDevices",
            Method::DELETE,
            &["groups", id, "devices"],
            &Query::new(),
            Some(ids),
        )
        .await
    }
}
