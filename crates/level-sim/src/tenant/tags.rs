//! Tags, and tagging devices.

use super::*;

impl Tenant {
    /// listTags.
    pub fn list_tags(&self, device_id: Option<&str>, page: &PageArgs) -> SimResult<Page<Tag>> {
        let on_device = match device_id {
            Some(id) => Some(&self.devices.find(id)?.tag_ids),
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
        self.devices.drop_tag(id);
        Ok(())
    }

    /// tagDevices: 422 if any device already has the tag (nothing changes then).
    pub fn tag_devices(&mut self, id: &str, ids: &[String]) -> SimResult<Tag> {
        find(&self.tags, id, |t| &t.id)?;
        self.check_devices(ids)?;
        if let Some(device) = self.first_in_order(ids, |tags| tags.contains(id)) {
            return Err(SimError::unprocessable(format!(
                "Device {device} already has this tag"
            )));
        }
        for device in ids {
            self.devices.tag(device, id);
        }
        self.get_tag(id)
    }

    /// removeTagFromDevices: 422 if any device lacks the tag (nothing changes then).
    pub fn untag_devices(&mut self, id: &str, ids: &[String]) -> SimResult<()> {
        find(&self.tags, id, |t| &t.id)?;
        self.check_devices(ids)?;
        if let Some(device) = self.first_in_order(ids, |tags| !tags.contains(id)) {
            return Err(SimError::unprocessable(format!(
                "Device {device} does not have this tag"
            )));
        }
        for device in ids {
            self.devices.untag(device, id);
        }
        Ok(())
    }

    /// Of the devices `ids`, the first in the organization's order whose
    /// tags `fails` holds for: the one Level names in its 422.
    fn first_in_order(
        &self,
        ids: &[String],
        fails: impl Fn(&BTreeSet<String>) -> bool,
    ) -> Option<&str> {
        ids.iter()
            .filter_map(|d| Some((self.devices.position(d)?, self.devices.get(d)?)))
            .filter(|(_, row)| fails(&row.tag_ids))
            .min_by_key(|(position, _)| *position)
            .map(|(_, row)| row.device.id.as_str())
    }
}
