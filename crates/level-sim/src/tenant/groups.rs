//! Groups: the tree, and placing devices in it.

use super::*;

impl Tenant {
    /// listGroups; `parent_id=null` lists root groups.
    pub fn list_groups(&self, parent: Option<&str>, page: &PageArgs) -> SimResult<Page<Group>> {
        let items: Vec<Group> = self
            .groups
            .iter()
            .filter(|g| match parent {
                None => true,
                Some("null") => g.parent_id.is_none(),
                Some(p) => g.parent_id.as_deref() == Some(p),
            })
            .map(|g| self.render_group(g, false))
            .collect();
        paginate(&items, page, |g| &g.id)
    }

    /// showGroup, with the group's own custom field values.
    pub fn get_group(&self, id: &str) -> SimResult<Group> {
        Ok(self.render_group(find(&self.groups, id, |g| &g.id)?, true))
    }

    /// createGroup.
    pub fn create_group(&mut self, new: NewGroup) -> SimResult<Group> {
        let name = required_name(&new.name)?;
        if let Some(parent) = &new.parent_id {
            find(&self.groups, parent, |g| &g.id).map_err(|_| {
                SimError::unprocessable(format!("parent_id {parent} does not exist"))
            })?;
        }
        let row = GroupRow {
            id: self.next_id("DeviceGroup"),
            name,
            parent_id: new.parent_id,
            custom_fields: BTreeMap::new(),
        };
        self.groups.push(row.clone());
        Ok(self.render_group(&row, true))
    }

    /// updateGroup: rename, move (never under itself) and set custom fields by name.
    pub fn update_group(&mut self, id: &str, patch: GroupPatch) -> SimResult<Group> {
        find(&self.groups, id, |g| &g.id)?;
        if let Some(Some(parent)) = &patch.parent_id {
            find(&self.groups, parent, |g| &g.id).map_err(|_| {
                SimError::unprocessable(format!("parent_id {parent} does not exist"))
            })?;
            if self.subtree(id).contains(parent) {
                return Err(SimError::unprocessable(
                    "a group cannot be moved under itself",
                ));
            }
        }
        let mut fields = Vec::new();
        for (name, value) in patch.custom_fields.unwrap_or_default() {
            let field = self
                .custom_fields
                .iter()
                .find(|f| f.name == name)
                .cloned()
                .ok_or_else(|| SimError::unprocessable(format!("unknown custom field {name:?}")))?;
            fields.push((field, value));
        }
        let name = patch.name.as_deref().map(required_name).transpose()?;
        let row = find_mut(&mut self.groups, id, |g| &g.id)?;
        if let Some(name) = name {
            row.name = name;
        }
        if let Some(parent) = patch.parent_id {
            row.parent_id = parent;
        }
        for (field, value) in fields {
            self.store_value(&field, Some(id.to_owned()), Some(value));
        }
        self.get_group(id)
    }

    /// deleteGroup: refused while the group has child groups or devices.
    pub fn delete_group(&mut self, id: &str) -> SimResult<Group> {
        let group = self.get_group(id)?;
        if !group.child_ids.is_empty() || group.device_count > 0 {
            return Err(SimError::unprocessable(
                "Group still has child groups or devices; move them first",
            ));
        }
        self.groups.retain(|g| g.id != id);
        self.values.retain(|(_, t), _| t.as_deref() != Some(id));
        Ok(group)
    }

    pub(super) fn check_devices(&self, ids: &[String]) -> SimResult<()> {
        if ids.is_empty() {
            return Err(SimError::bad_request("device_ids must not be empty"));
        }
        for id in ids {
            if !self.devices.contains(id) {
                return Err(SimError::unprocessable(format!(
                    "device {id} does not exist"
                )));
            }
        }
        Ok(())
    }

    /// assignGroupDevices. Returns the changed devices.
    pub fn assign_devices(&mut self, id: &str, ids: &[String]) -> SimResult<Vec<Device>> {
        find(&self.groups, id, |g| &g.id)?;
        self.check_devices(ids)?;
        self.set_group_of(ids, Some(id))
    }

    /// removeGroupDevices: devices of this group end up in none. Returns the changed devices.
    pub fn remove_devices(&mut self, id: &str, ids: &[String]) -> SimResult<Vec<Device>> {
        find(&self.groups, id, |g| &g.id)?;
        self.check_devices(ids)?;
        let members: Vec<String> = ids
            .iter()
            .filter(|d| {
                self.devices
                    .get(d)
                    .is_some_and(|row| row.device.group_id.as_deref() == Some(id))
            })
            .cloned()
            .collect();
        self.set_group_of(&members, None)
    }

    /// Moves devices `ids` to `group`; returns them in the organization's order.
    fn set_group_of(&mut self, ids: &[String], group: Option<&str>) -> SimResult<Vec<Device>> {
        let mut changed: Vec<(usize, &String)> = ids
            .iter()
            .filter_map(|id| Some((self.devices.position(id)?, id)))
            .collect();
        changed.sort_unstable();
        changed.dedup();
        let mut devices = Vec::with_capacity(changed.len());
        for (_, id) in changed {
            self.devices.device_mut(id)?.group_id = group.map(str::to_owned);
            devices.push(self.render_device(self.devices.find(id)?, &Includes::default()));
        }
        Ok(devices)
    }
}
