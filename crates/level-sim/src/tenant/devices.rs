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
        let matches = |d: &&DeviceRow| {
            let group = match filter.group_id.as_deref() {
                None => true,
                Some("null") => d.device.group_id.is_none(),
                Some(g) => d.device.group_id.as_deref() == Some(g),
            };
            group
                && subtree
                    .as_ref()
                    .is_none_or(|s| d.device.group_id.as_ref().is_some_and(|g| s.contains(g)))
                && filter.tag_id.as_ref().is_none_or(|t| d.tag_ids.contains(t))
                && filter
                    .hostname
                    .as_ref()
                    .is_none_or(|h| d.device.hostname.eq_ignore_ascii_case(h))
                && filter
                    .serial_number
                    .as_ref()
                    .is_none_or(|s| d.device.serial_number.as_ref() == Some(s))
        };
        let render = |(rows, has_more): (Vec<&DeviceRow>, bool)| Page {
            data: rows
                .iter()
                .map(|d| self.render_device(d, include))
                .collect(),
            has_more,
        };
        // Walking forward, from the start or from a cursor this filter
        // lists, reads on from the cursor instead of from the first device.
        let start = match (&page.starting_after, &page.ending_before) {
            (None, None) => Some(None),
            (Some(after), None) => self
                .devices
                .get(after)
                .filter(|d| matches(d))
                .and(self.devices.position(after))
                .map(Some),
            _ => None,
        };
        if let Some(start) = start {
            let rows = self.devices.after(start).filter(matches);
            return Ok(render(first(rows, page_limit(page)?)));
        }
        let rows: Vec<&DeviceRow> = self.devices.iter().filter(matches).collect();
        let page = paginate(&rows, page, |d| &d.device.id)?;
        Ok(render((page.data, page.has_more)))
    }

    /// showDevice.
    pub fn get_device(&self, id: &str, include: &Includes) -> SimResult<Device> {
        Ok(self.render_device(self.devices.find(id)?, include))
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
        self.devices.push(
            Device {
                id: id.clone(),
                hostname: hostname.to_owned(),
                group_id: group_id.map(str::to_owned),
                online: true,
                last_seen_at: Some(now),
                ..Device::default()
            },
            BTreeSet::new(),
        );
        self.get_device(&id, &Includes::default())
    }

    /// updateDevice: `name` sets the nickname.
    pub fn update_device(&mut self, id: &str, patch: DevicePatch) -> SimResult<Device> {
        if let Some(Some(group)) = &patch.group_id {
            find(&self.groups, group, |g| &g.id)
                .map_err(|_| SimError::unprocessable(format!("group_id {group} does not exist")))?;
        }
        let device = self.devices.device_mut(id)?;
        if let Some(name) = patch.name {
            device.nickname = Some(name);
        }
        if let Some(notes) = patch.notes {
            device.notes = Some(notes);
        }
        if let Some(group) = patch.group_id {
            device.group_id = group;
        }
        Ok(self.render_device(self.devices.find(id)?, &Includes::default()))
    }

    /// deleteDevice; its alerts and own values go with it.
    pub fn delete_device(&mut self, id: &str) -> SimResult<Device> {
        let row = self.devices.remove(id).ok_or_else(SimError::not_found)?;
        self.alerts.retain(|a| a.device_id != id);
        self.values.retain(|(_, t), _| t.as_deref() != Some(id));
        Ok(self.render_device(&row, &Includes::default()))
    }
}
