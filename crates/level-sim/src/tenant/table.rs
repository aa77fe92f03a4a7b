//! The devices of an organization in creation order, with an index from id
//! to position and each tag's device count kept as devices change, so that
//! finding a device, starting a page at a cursor, tagging 100 devices and
//! counting a tag's devices cost the same at 100 devices as at 100,000.
//!
//! The table is the only code that changes a row's tags or removes a row;
//! other code reaches a device's fields through [`DeviceTable::device_mut`],
//! which never hands out the tag set, and must not change a device's id.

use std::collections::{BTreeSet, HashMap};

use level_api::model::Device;

use super::{DeviceRow, SimError, SimResult};

#[derive(Debug, Clone, Default)]
pub(super) struct DeviceTable {
    rows: Vec<DeviceRow>,
    /// Device id → position in `rows`.
    index: HashMap<String, usize>,
    /// Tag id → devices carrying it.
    tag_counts: HashMap<String, usize>,
}

impl DeviceTable {
    /// Adds a device after every other. Its id must be new.
    pub fn push(&mut self, device: Device, tag_ids: BTreeSet<String>) {
        for tag in &tag_ids {
            *self.tag_counts.entry(tag.clone()).or_insert(0) += 1;
        }
        self.index.insert(device.id.clone(), self.rows.len());
        self.rows.push(DeviceRow { device, tag_ids });
    }

    /// Every device, oldest first.
    pub fn iter(&self) -> std::slice::Iter<'_, DeviceRow> {
        self.rows.iter()
    }

    /// The devices after position `after` (all of them for none), oldest first.
    pub fn after(&self, after: Option<usize>) -> std::slice::Iter<'_, DeviceRow> {
        let from = after.map_or(0, |p| p + 1);
        self.rows.get(from..).unwrap_or_default().iter()
    }

    /// Where the device `id` stands.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The device `id`, if there is one.
    pub fn get(&self, id: &str) -> Option<&DeviceRow> {
        self.position(id).and_then(|p| self.rows.get(p))
    }

    /// Whether `id` names a device.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The device `id`, or 404.
    pub fn find(&self, id: &str) -> SimResult<&DeviceRow> {
        self.get(id).ok_or_else(SimError::not_found)
    }

    /// The fields of device `id` to change (never its id), or 404.
    pub fn device_mut(&mut self, id: &str) -> SimResult<&mut Device> {
        let position = self.position(id).ok_or_else(SimError::not_found)?;
        self.rows
            .get_mut(position)
            .map(|row| &mut row.device)
            .ok_or_else(SimError::not_found)
    }

    /// Removes device `id`, returning it.
    pub fn remove(&mut self, id: &str) -> Option<DeviceRow> {
        let position = self.position(id)?;
        let row = self.rows.remove(position);
        for tag in &row.tag_ids {
            self.uncount(tag);
        }
        self.index.remove(id);
        for (p, later) in self.rows.iter().enumerate().skip(position) {
            self.index.insert(later.device.id.clone(), p);
        }
        Some(row)
    }

    /// Gives device `id` the tag; false if it had it already (or is no device).
    pub fn tag(&mut self, id: &str, tag: &str) -> bool {
        let Some(row) = self.position(id).and_then(|p| self.rows.get_mut(p)) else {
            return false;
        };
        let added = row.tag_ids.insert(tag.to_owned());
        if added {
            *self.tag_counts.entry(tag.to_owned()).or_insert(0) += 1;
        }
        added
    }

    /// Takes the tag off device `id`; false if it did not have it (or is no device).
    pub fn untag(&mut self, id: &str, tag: &str) -> bool {
        let Some(row) = self.position(id).and_then(|p| self.rows.get_mut(p)) else {
            return false;
        };
        let removed = row.tag_ids.remove(tag);
        if removed {
            self.uncount(tag);
        }
        removed
    }

    /// Takes a deleted tag off every device.
    pub fn drop_tag(&mut self, tag: &str) {
        if self.tag_counts.remove(tag).is_some() {
            for row in &mut self.rows {
                row.tag_ids.remove(tag);
            }
        }
    }

    /// How many devices carry the tag.
    pub fn tag_count(&self, tag: &str) -> usize {
        self.tag_counts.get(tag).copied().unwrap_or(0)
    }

    fn uncount(&mut self, tag: &str) {
        if let Some(count) = self.tag_counts.get_mut(tag) {
            *count -= 1;
            if *count == 0 {
                self.tag_counts.remove(tag);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Device {
        Device {
            id: id.to_owned(),
            ..Device::default()
        }
    }

    #[test]
    fn the_index_and_the_counts_follow_every_change() {
        let mut table = DeviceTable::default();
        for id in ["a", "b", "c", "d"] {
            table.push(device(id), BTreeSet::from(["t".to_owned()]));
        }
        assert_eq!(table.tag_count("t"), 4);
        assert!(table.untag("b", "t"));
        assert!(!table.untag("b", "t"), "b no longer has the tag");
        assert!(table.tag("b", "u"));
        assert!(!table.tag("b", "u"), "b has the tag already");
        assert_eq!(table.remove("b").map(|r| r.device.id), Some("b".to_owned()));
        assert_eq!(table.remove("b").map(|r| r.device.id), None);
        assert_eq!((table.tag_count("t"), table.tag_count("u")), (3, 0));
        for (position, id) in ["a", "c", "d"].iter().enumerate() {
            assert_eq!(table.position(id), Some(position), "{id} after the removal");
        }
        let after_a: Vec<&str> = table
            .after(table.position("a"))
            .map(|r| r.device.id.as_str())
            .collect();
        assert_eq!(after_a, ["c", "d"]);
        table.drop_tag("t");
        assert_eq!(table.tag_count("t"), 0);
        assert!(table.iter().all(|r| r.tag_ids.is_empty()));
        assert!(!table.tag("gone", "t"), "no such device");
    }
}
