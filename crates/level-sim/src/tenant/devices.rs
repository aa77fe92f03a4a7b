//! Devices: list with filters, show with sections, update, delete.

use super::*;

impl Tenant {
    /// listDevices.
    pub fn list_devices(
        &self,
        filter: &DeviceFilter,
        include: &Includes,
        page: &PageArgs,
    ) -> SimResult<Page<Device>> {
        let subtree = match &filter.ancestor_group_id {
            Some(g) => {
                find(&self.groups, g, |r| &r.id)?;
                Some(self.subtree(g))
            }
            None => None,
        };
        if let Some(g) = filter.group_id.as_deref().filter(|g| *g != "null") {
            find(&self.groups, g, |r| &r.id)?;
        }
        let rows: Vec<&DeviceRow> = self
            .devices
            .iter()
            .filter(|d| match filter.group_id.as_deref() {
                None => true,
                Some("null") => d.device.group_id.is_none(),
                Some(g) => d.device.group_id.as_deref() == Some(g),
            })
            .filter(|d| {
                subtree
                    .as_ref()
                    .is_none_or(|s| d.device.group_id.as_ref().is_some_and(|g| s.contains(g)))
            })
            .filter(|d| filter.tag_id.as_ref().is_none_or(|t| d.tag_ids.contains(t)))
            .filter(|d| {
                filter
                    .hostname
                    .as_ref()
                    .is_none_or(|h| d.device.hostname.eq_ignore_ascii_case(h))
            })
            .filter(|d| {
                filter
                    .serial_number
                    .as_ref()
                    .is_none_or(|s| d.device.serial_number.as_ref() == Some(s))
            })
            .collect();
        let page = paginate(&rows, page, |d| &d.device.id)?;
        Ok(Page {
            data: page
                .data
                .iter()
                .map(|d| self.render_device(d, include))
                .collect(),
            has_more: page.has_more,
        })
    }

    /// showDevice.
    pub fn get_device(&self, id: &str, include: &Includes) -> SimResult<Device> {
        let row = find(&self.devices, id, |d| &d.device.id)?;
        Ok(self.render_device(row, include))
    }

    /// A device Level's agent enrolls: online, seen now, in `group_id` if given.
    pub fn enroll_device(&mut self, hostname: &str, group_id: Option<&str>) -> SimResult<Device> {
        let hostname = hostname.trim();
        if hostname.is_empty() {
            return Err(SimError::unprocessable("hostname can't be blank"));
        }
        if let Some(group) = group_id {
            find(&self.groups, group, |g| &g.id)
                .map_err(|_| SimError::unprocessable("group_id does not exist"))?;
        }
        let id = self.next_id("Device");
        let now = now();
        self.devices.push(DeviceRow {
            device: Device {
                id: id.clone(),
                hostname: hostname.to_owned(),
                group_id: group_id.map(str::to_owned),
                online: true,
                last_seen_at: Some(now),
                ..Device::default()
            },
            tag_ids: BTreeSet::new(),
        });
        self.get_device(&id, &Includes::default())
    }

    /// updateDevice: `name` sets the nickname.
    pub fn update_device(&mut self, id: &str, patch: DevicePatch) -> SimResult<Device> {
        if let Some(Some(group)) = &patch.group_id {
            find(&self.groups, group, |g| &g.id)
                .map_err(|_| SimError::unprocessable(format!("group_id {group} does not exist")))?;
        }
        let row = find_mut(&mut self.devices, id, |d| &d.device.id)?;
        if let Some(name) = patch.name {
            row.device.nickname = Some(name);
        }
        if let Some(notes) = patch.notes {
            row.device.notes = Some(notes);
        }
        if let Some(group) = patch.group_id {
            row.device.group_id = group;
        }
        let row = row.clone();
        Ok(self.render_device(&row, &Includes::default()))
    }

    /// deleteDevice; its alerts and own values go with it.
    pub fn delete_device(&mut self, id: &str) -> SimResult<Device> {
        let row = find(&self.devices, id, |d| &d.device.id)?.clone();
        self.devices.retain(|d| d.device.id != id);
        self.alerts.retain(|a| a.device_id != id);
        self.values.retain(|(_, t), _| t.as_deref() != Some(id));
        Ok(self.render_device(&row, &Includes::default()))
    }
}
