//! Devices: list, show, update, delete.

use super::*;

impl LevelClient {
    /// `GET /v2/devices` (listDevices).
    pub async fn list_devices(
        &self,
        filter: &DeviceQuery,
        page: &PageParams,
    ) -> Result<Page<Device>, ClientError> {
        let mut q = page_query(page);
        push_opt(&mut q, "group_id", &filter.group_id);
        push_opt(&mut q, "ancestor_group_id", &filter.ancestor_group_id);
        push_opt(&mut q, "tag_id", &filter.tag_id);
        push_opt(&mut q, "hostname", &filter.hostname);
        push_opt(&mut q, "serial_number", &filter.serial_number);
        filter.include.push_query(&mut q);
        self.json("listDevices", Method::GET, &["devices"], &q, None)
            .await
    }

    /// `GET /v2/devices/{id}` (showDevice).
    pub async fn get_device(
        &self,
        id: &str,
        include: &DeviceIncludes,
    ) -> Result<Device, ClientError> {
        let mut q = Query::new();
        include.push_query(&mut q);
        self.json("showDevice", Method::GET, &["devices", id], &q, None)
            .await
    }

    /// `PATCH /v2/devices/{id}` (updateDevice).
    pub async fn update_device(
        &self,
        id: &str,
        patch: &DevicePatch,
    ) -> Result<Device, ClientError> {
        self.json(
            "updateDevice",
            Method::PATCH,
            &["devices", id],
            &Query::new(),
            Some(patch),
        )
        .await
    }

    /// `DELETE /v2/devices/{id}` (deleteDevice).
    pub async fn delete_device(&self, id: &str) -> Result<(), ClientError> {
        self.empty(
            "deleteDevice",
            Method::DELETE,
            &["devices", id],
            &Query::new(),
            None,
        )
        .await
    }
}
