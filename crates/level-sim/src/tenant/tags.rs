//! Tags, and tagging devices.

use super::*;

impl Tenant {
    /// listTags.
    pub fn list_tags(&self, device_id: Option<&str>, page: &PageArgs) -> SimResult<Page<Tag>> {
        let on_device = match device_id {
            Some(id) => Some(&find(&self.devices, id, |d| &d.device.id)?.tag_ids),
            None => None,
        };
        let items: Vec<Tag> = self
            .tags
            .iter()
            .filter(|t| on_device.is_none_or(|ids| ids.contains(&t.id)))
            .map(|t| self.render_tag(t))
            .collect();
        paginate(&items, page, |t| &t.id)
    }

    /// showTag.
    pub fn get_tag(&self, id: &str) -> SimResult<Tag> {
        Ok(self.render_tag(find(&self.tags, id, |t| &t.id)?))
    }

    /// createTag.
    pub fn create_tag(&mut self, name: &str) -> SimResult<Tag> {
        let name = required_name(name)?;
        self.refuse_duplicate(self.tags.iter().any(|t| t.name == name))?;
        let tag = Tag {
            id: self.next_id("Tag"),
            name,
            device_count: 0,
        };
        self.tags.push(tag.clone());
        Ok(tag)
    }

    /// updateTag.
    pub fn update_tag(&mut self, id: &str, name: &str) -> SimResult<Tag> {
        let name = required_name(name)?;
        self.refuse_duplicate(self.tags.iter().any(|t| t.name == name && t.id != id))?;
        find_mut(&mut self.tags, id, |t| &t.id)?.name = name;
        self.get_tag(id)
    }

    /// deleteTag; devices lose it.
    pub fn delete_tag(&mut self, id: &str) -> SimResult<()> {
        find(&self.tags, id, |t| &t.id)?;
        self.tags.retain(|t| t.id != id);
        for row in &mut self.devices {
            row.tag_ids.remove(id);
        }
        Ok(())
    }

    /// tagDevices: 422 if any device already has the tag (nothing changes then).
    pub fn tag_devices(&mut self, id: &str, ids: &[String]) -> SimResult<Tag> {
        find(&self.tags, id, |t| &t.id)?;
        self.check_devices(ids)?;
        let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        if let Some(row) = self
            .devices
            .iter()
            .find(|d| ids.contains(d.device.id.as_str()) && d.tag_ids.contains(id))
        {
            return Err(SimError::unprocessable(format!(
                "Device {} already has this tag",
                row.device.id
            )));
        }
        for row in &mut self.devices {
            if ids.contains(row.device.id.as_str()) {
                row.tag_ids.insert(id.to_owned());
            }
        }
        self.get_tag(id)
    }

    /// removeTagFromDevices: 422 if any device lacks the tag (nothing changes then).
    pub fn untag_devices(&mut self, id: &str, ids: &[String]) -> SimResult<()> {
        find(&self.tags, id, |t| &t.id)?;
        self.check_devices(ids)?;
        let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        if let Some(row) = self
            .devices
            .iter()
            .find(|d| ids.contains(d.device.id.as_str()) && !d.tag_ids.contains(id))
        {
            return Err(SimError::unprocessable(format!(
                "Device {} does not have this tag",
                row.device.id
            )));
        }
        for row in &mut self.devices {
            if ids.contains(row.device.id.as_str()) {
                row.tag_ids.remove(id);
            }
        }
        Ok(())
    }
}
