//! The simulated Level organization: its objects and the rules Level applies
//! to them (reference §6 and §11). Everything here is plain data and plain
//! functions; `http.rs` maps requests onto them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub(super) use crate::client::DeviceIncludes as Includes;
use crate::client::model::{
    Alert, AutomationRun, CustomField, CustomFieldPatch, CustomFieldValue, Device, DevicePatch,
    Group, GroupPatch, NewCustomField, NewGroup, Page, Tag, ValueChange,
};

/// A status and message the simulator answers with, as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct SimError {
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub message: String,
}

impl SimError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn not_found() -> Self {
        Self::new(404, "Not found")
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, message)
    }
}

type SimResult<T> = Result<T, SimError>;

/// Builds a Level-shaped id: base64 of `gid://level/<Type>/<n>`, padding stripped.
pub fn level_id(kind: &str, n: u64) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("gid://level/{kind}/{n}"))
}

/// The page size Level uses when `limit` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest `limit` Level accepts.
pub const MAX_PAGE_SIZE: usize = 100;

/// Paging parameters as the simulator receives them.
#[derive(Debug, Clone, Default)]
pub struct PageArgs {
    /// Raw `limit`.
    pub limit: Option<String>,
    /// `starting_after`.
    pub starting_after: Option<String>,
    /// `ending_before`.
    pub ending_before: Option<String>,
}

/// Cuts one page out of `items`, ordered by creation, with `key` giving each item's cursor id.
pub fn paginate<T: Clone>(
    items: &[T],
    args: &PageArgs,
    key: impl Fn(&T) -> &str,
) -> SimResult<Page<T>> {
    let limit = match &args.limit {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(SimError::bad_request(format!(
                    "limit must be an integer between 1 and {MAX_PAGE_SIZE}"
                )));
            }
        },
    };
    let position = |cursor: &str, name: &str| {
        items
            .iter()
            .position(|item| key(item) == cursor)
            .ok_or_else(|| SimError::bad_request(format!("{name} does not name a known object")))
    };
    // `starting_after` wins when both are sent (reference §3).
    if let Some(after) = &args.starting_after {
        let start = position(after, "starting_after")? + 1;
        let rest = items.get(start..).unwrap_or_default();
        return Ok(Page {
            data: rest.iter().take(limit).cloned().collect(),
            has_more: rest.len() > limit,
        });
    }
    if let Some(before) = &args.ending_before {
        let end = position(before, "ending_before")?;
        let head = items.get(..end).unwrap_or_default();
        let from = head.len().saturating_sub(limit);
        return Ok(Page {
            data: head.get(from..).unwrap_or_default().to_vec(),
            has_more: from > 0,
        });
    }
    Ok(Page {
        data: items.iter().take(limit).cloned().collect(),
        has_more: items.len() > limit,
    })
}

/// A stored device: Level's object plus the tag ids it carries. `tags` and
/// `group_name` on the object are recomputed on every read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeviceRow {
    device: Device,
    tag_ids: BTreeSet<String>,
}

/// A stored group; child ids and counts are recomputed on every read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupRow {
    id: String,
    name: String,
    parent_id: Option<String>,
    custom_fields: BTreeMap<String, String>,
}

/// An automation webhook trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationWebhook {
    /// The token in the trigger's URL.
    pub token: String,
    /// The automation it starts.
    pub automation_id: String,
    /// The automation's name.
    pub name: String,
}

/// One accepted call of an automation webhook, kept so a user (or a test) can see what ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// The token used.
    pub token: String,
    /// The request body.
    pub body: serde_json::Value,
    /// The runs started.
    pub runs: Vec<AutomationRun>,
}

/// A fixture: a whole organization as JSON, in Level's own object shapes.
///
/// Devices name their tags by name, as Level does; every reference (a
/// device's group, a group's parent, an alert's device, a value's field or
/// target) must name an object in the fixture.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Groups, parents before children.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Devices.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Alerts.
    #[serde(default)]
    pub alerts: Vec<Alert>,
    /// Custom field definitions.
    #[serde(default)]
    pub custom_fields: Vec<CustomField>,
    /// Custom field values at the organization, group or device level.
    #[serde(default)]
    pub custom_field_values: Vec<CustomFieldValue>,
    /// Automation webhook triggers.
    #[serde(default)]
    pub automation_webhooks: Vec<AutomationWebhook>,
}

/// The simulated organization.
#[derive(Debug, Clone, Default)]
pub struct Tenant {
    devices: Vec<DeviceRow>,
    groups: Vec<GroupRow>,
    tags: Vec<Tag>,
    alerts: Vec<Alert>,
    custom_fields: Vec<CustomField>,
    /// (field id, target id or none for the organization) → value.
    values: BTreeMap<(String, Option<String>), String>,
    webhooks: Vec<AutomationWebhook>,
    triggered: Vec<TriggerRecord>,
    counters: HashMap<&'static str, u64>,
}

fn find<'a, T>(items: &'a [T], id: &str, key: impl Fn(&T) -> &str) -> SimResult<&'a T> {
    items
        .iter()
        .find(|i| key(i) == id)
        .ok_or_else(SimError::not_found)
}

fn find_mut<'a, T>(items: &'a mut [T], id: &str, key: impl Fn(&T) -> &str) -> SimResult<&'a mut T> {
    items
        .iter_mut()
        .find(|i| key(i) == id)
        .ok_or_else(SimError::not_found)
}

fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    crate::sim::timestamp(now)
}

impl Tenant {
    /// Loads a fixture, checking every reference. The error names the object and field at fault.
    pub fn from_fixture(fixture: Fixture) -> Result<Self, String> {
        let mut tenant = Tenant::default();
        let mut seen = BTreeSet::new();
        let mut unique = |kind: &str, id: &str| {
            if id.is_empty() {
                return Err(format!("a {kind} has an empty id"));
            }
            if !seen.insert(id.to_owned()) {
                return Err(format!("{kind} {id}: the id is used twice"));
            }
            Ok(())
        };
        for group in &fixture.groups {
            unique("group", &group.id)?;
            if let Some(parent) = &group.parent_id
                && !tenant.groups.iter().any(|g| &g.id == parent)
            {
                return Err(format!(
                    "group {} ({}): parent_id {parent} is not a group listed before it",
                    group.id, group.name
                ));
            }
            tenant.groups.push(GroupRow {
                id: group.id.clone(),
                name: group.name.clone(),
                parent_id: group.parent_id.clone(),
                custom_fields: BTreeMap::new(),
            });
        }
        for tag in &fixture.tags {
            unique("tag", &tag.id)?;
            if tenant.tags.iter().any(|t| t.name == tag.name) {
                return Err(format!(
                    "tag {}: the name {:?} is used twice",
                    tag.id, tag.name
                ));
            }
            tenant.tags.push(Tag {
                device_count: 0,
                ..tag.clone()
            });
        }
        for device in &fixture.devices {
            unique("device", &device.id)?;
            if let Some(group) = &device.group_id
                && !tenant.groups.iter().any(|g| &g.id == group)
            {
                return Err(format!(
                    "device {} ({}): group_id {group} is not a group",
                    device.id, device.hostname
                ));
            }
            let mut tag_ids = BTreeSet::new();
            for name in &device.tags {
                let tag = tenant
                    .tags
                    .iter()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| {
                        format!(
                            "device {} ({}): tag {name:?} is not a tag",
                            device.id, device.hostname
                        )
                    })?;
                tag_ids.insert(tag.id.clone());
            }
            tenant.devices.push(DeviceRow {
                device: device.clone(),
                tag_ids,
            });
        }
        for alert in &fixture.alerts {
            unique("alert", &alert.id)?;
            if !tenant
                .devices
                .iter()
                .any(|d| d.device.id == alert.device_id)
            {
                return Err(format!(
                    "alert {}: device_id {} is not a device",
                    alert.id, alert.device_id
                ));
            }
            tenant.alerts.push(alert.clone());
        }
        for field in &fixture.custom_fields {
            unique("custom field", &field.id)?;
            tenant.custom_fields.push(field.clone());
        }
        for value in &fixture.custom_field_values {
            let field = tenant
                .custom_fields
                .iter()
                .find(|f| f.id == value.custom_field_id)
                .ok_or_else(|| {
                    format!(
                        "custom field value: custom_field_id {} is not a custom field",
                        value.custom_field_id
                    )
                })?
                .clone();
            let Some(text) = &value.value else { continue };
            match &value.assigned_to_id {
                Some(target) if tenant.groups.iter().any(|g| &g.id == target) => {
                    if let Some(group) = tenant.groups.iter_mut().find(|g| &g.id == target) {
                        group.custom_fields.insert(field.name.clone(), text.clone());
                    }
                }
                Some(target) if !tenant.devices.iter().any(|d| &d.device.id == target) => {
                    return Err(format!(
                        "custom field value of {}: assigned_to_id {target} is neither a device nor a group",
                        field.name
                    ));
                }
                _ => {}
            }
            tenant.values.insert(
                (field.id.clone(), value.assigned_to_id.clone()),
                text.clone(),
            );
        }
        for hook in &fixture.automation_webhooks {
            if tenant.webhooks.iter().any(|h| h.token == hook.token) {
                return Err(format!(
                    "automation webhook token {} is used twice",
                    hook.token
                ));
            }
            tenant.webhooks.push(hook.clone());
        }
        // New objects get ids after every numbered id the fixture holds.
        for kind in [
            "Device",
            "DeviceGroup",
            "Tag",
            "Alert",
            "CustomField",
            "AutomationRun",
        ] {
            let prefix = format!("gid://level/{kind}/");
            let max = seen
                .iter()
                .filter_map(|id| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(id)
                        .ok()
                })
                .filter_map(|raw| String::from_utf8(raw).ok())
                .filter_map(|gid| gid.strip_prefix(&prefix)?.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            tenant.counters.insert(kind, max);
        }
        Ok(tenant)
    }

    /// The organization as a fixture, as `GET` calls would show it.
    pub fn to_fixture(&self) -> Fixture {
        let mut values = Vec::new();
        for ((field_id, target), value) in &self.values {
            values.push(CustomFieldValue {
                custom_field_id: field_id.clone(),
                custom_field_name: self.field_name(field_id),
                assigned_to_id: target.clone(),
                value: Some(value.clone()),
            });
        }
        Fixture {
            groups: self
                .groups
                .iter()
                .map(|g| self.render_group(g, false))
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|d| self.render_device(d, &all_sections()))
                .collect(),
            tags: self.tags.iter().map(|t| self.render_tag(t)).collect(),
            alerts: self.alerts.clone(),
            custom_fields: self.custom_fields.clone(),
            custom_field_values: values,
            automation_webhooks: self.webhooks.clone(),
        }
    }

    /// Every accepted automation webhook call so far.
    pub fn triggered(&self) -> &[TriggerRecord] {
        &self.triggered
    }

    fn next_id(&mut self, kind: &'static str) -> String {
        let n = self.counters.entry(kind).or_insert(0);
        *n += 1;
        level_id(kind, *n)
    }

    fn field_name(&self, field_id: &str) -> String {
        self.custom_fields
            .iter()
            .find(|f| f.id == field_id)
            .map(|f| f.name.clone())
            .unwrap_or_default()
    }

    // ---- rendering ----

    fn render_device(&self, row: &DeviceRow, include: &Includes) -> Device {
        let mut device = row.device.clone();
        device.group_name = device
            .group_id
            .as_ref()
            .and_then(|g| self.groups.iter().find(|row| &row.id == g))
            .map(|g| g.name.clone());
        device.tags = self
            .tags
            .iter()
            .filter(|t| row.tag_ids.contains(&t.id))
            .map(|t| t.name.clone())
            .collect();
        keep_sections(include, &mut device);
        device
    }

    fn subtree(&self, root: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::from([root.to_owned()]);
        loop {
            let before = found.len();
            for g in &self.groups {
                if g.parent_id.as_ref().is_some_and(|p| found.contains(p)) {
                    found.insert(g.id.clone());
                }
            }
            if found.len() == before {
                return found;
            }
        }
    }

    fn render_group(&self, row: &GroupRow, with_fields: bool) -> Group {
        let subtree = self.subtree(&row.id);
        let count = |f: &dyn Fn(&str) -> bool| {
            self.devices
                .iter()
                .filter(|d| d.device.group_id.as_deref().is_some_and(f))
                .count() as u32
        };
        Group {
            id: row.id.clone(),
            parent_id: row.parent_id.clone(),
            child_ids: self
                .groups
                .iter()
                .filter(|g| g.parent_id.as_ref() == Some(&row.id))
                .map(|g| g.id.clone())
                .collect(),
            name: row.name.clone(),
            device_count: count(&|g| g == row.id),
            descendent_device_count: count(&|g| subtree.contains(g)),
            custom_fields: with_fields.then(|| {
                row.custom_fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect()
            }),
        }
    }

    fn render_tag(&self, tag: &Tag) -> Tag {
        Tag {
            device_count: self
                .devices
                .iter()
                .filter(|d| d.tag_ids.contains(&tag.id))
                .count() as u32,
            ..tag.clone()
        }
    }

    // ---- alerts ----

    /// listAlerts.
    pub fn list_alerts(
        &self,
        device_id: Option<&str>,
        status: Option<&str>,
        page: &PageArgs,
    ) -> SimResult<Page<Alert>> {
        let resolved = match status {
            None => None,
            Some("active") => Some(false),
            Some("resolved") => Some(true),
            Some(other) => {
                return Err(SimError::bad_request(format!(
                    "status must be active or resolved, not {other:?}"
                )));
            }
        };
        let items: Vec<Alert> = self
            .alerts
            .iter()
            .filter(|a| device_id.is_none_or(|d| a.device_id == d))
            .filter(|a| resolved.is_none_or(|r| a.is_resolved == r))
            .cloned()
            .collect();
        paginate(&items, page, |a| &a.id)
    }

    /// showAlert.
    pub fn get_alert(&self, id: &str) -> SimResult<Alert> {
        find(&self.alerts, id, |a| &a.id).cloned()
    }

    /// resolveAlert; resolving a resolved alert is a no-op that returns it.
    pub fn resolve_alert(&mut self, id: &str) -> SimResult<(Alert, bool)> {
        let alert = find_mut(&mut self.alerts, id, |a| &a.id)?;
        let changed = !alert.is_resolved;
        if changed {
            alert.is_resolved = true;
            alert.resolved_at = Some(now());
        }
        Ok((alert.clone(), changed))
    }

    /// Raises a new alert on a device (used by the seed and by event demos).
    pub fn raise_alert(&mut self, device_id: &str, name: &str, severity: &str) -> SimResult<Alert> {
        let hostname = find(&self.devices, device_id, |d| &d.device.id)?
            .device
            .hostname
            .clone();
        let alert = Alert {
            id: self.next_id("Alert"),
            device_id: device_id.to_owned(),
            device_hostname: Some(hostname),
            name: name.to_owned(),
            description: format!("{name} on {device_id}"),
            payload: None,
            severity: severity.to_owned(),
            is_resolved: false,
            started_at: now(),
            resolved_at: None,
        };
        self.alerts.push(alert.clone());
        Ok(alert)
    }

    // ---- custom fields ----

    /// listCustomFields.
    pub fn list_custom_fields(&self, page: &PageArgs) -> SimResult<Page<CustomField>> {
        paginate(&self.custom_fields, page, |f| &f.id)
    }

    /// showCustomField.
    pub fn get_custom_field(&self, id: &str) -> SimResult<CustomField> {
        find(&self.custom_fields, id, |f| &f.id).cloned()
    }

    /// createCustomField.
    pub fn create_custom_field(&mut self, new: NewCustomField) -> SimResult<CustomField> {
        let name = required_name(&new.name)?;
        if self.custom_fields.iter().any(|f| f.name == name) {
            return Err(SimError::unprocessable("Name has already been taken"));
        }
        let field = CustomField {
            id: self.next_id("CustomField"),
            reference: reference_for(&name),
            name,
            admin_only: new.admin_only,
        };
        self.custom_fields.push(field.clone());
        Ok(field)
    }

    /// updateCustomField.
    pub fn update_custom_field(
        &mut self,
        id: &str,
        patch: CustomFieldPatch,
    ) -> SimResult<CustomField> {
        if let Some(name) = &patch.name {
            let name = required_name(name)?;
            if self
                .custom_fields
                .iter()
                .any(|f| f.name == name && f.id != id)
            {
                return Err(SimError::unprocessable("Name has already been taken"));
            }
        }
        let field = find_mut(&mut self.custom_fields, id, |f| &f.id)?;
        let old_name = field.name.clone();
        if let Some(name) = patch.name {
            field.name = name.trim().to_owned();
        }
        if let Some(admin_only) = patch.admin_only {
            field.admin_only = admin_only;
        }
        let field = field.clone();
        if field.name != old_name {
            for group in &mut self.groups {
                if let Some(v) = group.custom_fields.remove(&old_name) {
                    group.custom_fields.insert(field.name.clone(), v);
                }
            }
        }
        Ok(field)
    }

    /// deleteCustomField; its values go with it.
    pub fn delete_custom_field(&mut self, id: &str) -> SimResult<()> {
        let name = find(&self.custom_fields, id, |f| &f.id)?.name.clone();
        self.custom_fields.retain(|f| f.id != id);
        self.values.retain(|(field, _), _| field != id);
        for group in &mut self.groups {
            group.custom_fields.remove(&name);
        }
        Ok(())
    }

    // ---- custom field values ----

    /// The chain of ids a value can come from for `target`, most specific first, ending with the organization.
    fn value_chain(&self, target: Option<&str>) -> SimResult<Vec<Option<String>>> {
        let mut chain = Vec::new();
        let mut group = match target {
            None => None,
            Some(id) => {
                if let Some(row) = self.devices.iter().find(|d| d.device.id == id) {
                    chain.push(Some(id.to_owned()));
                    row.device.group_id.clone()
                } else if self.groups.iter().any(|g| g.id == id) {
                    Some(id.to_owned())
                } else {
                    return Err(SimError::not_found());
                }
            }
        };
        while let Some(id) = group {
            chain.push(Some(id.clone()));
            group = self
                .groups
                .iter()
                .find(|g| g.id == id)
                .and_then(|g| g.parent_id.clone());
        }
        chain.push(None);
        Ok(chain)
    }

    /// listCustomFieldValues: for each field, the value in effect for the target.
    pub fn list_values(
        &self,
        target: Option<&str>,
        field: Option<&str>,
        page: &PageArgs,
    ) -> SimResult<Page<CustomFieldValue>> {
        let chain = self.value_chain(target)?;
        let items: Vec<CustomFieldValue> = self
            .custom_fields
            .iter()
            .filter(|f| field.is_none_or(|id| f.id == id))
            .map(|f| {
                let found = chain.iter().find_map(|level| {
                    self.values
                        .get(&(f.id.clone(), level.clone()))
                        .map(|v| (level.clone(), v.clone()))
                });
                CustomFieldValue {
                    custom_field_id: f.id.clone(),
                    custom_field_name: f.name.clone(),
                    assigned_to_id: found.as_ref().and_then(|(l, _)| l.clone()),
                    value: found.map(|(_, v)| v),
                }
            })
            .collect();
        paginate(&items, page, |v| &v.custom_field_id)
    }

    fn below(&self, target: Option<&str>) -> BTreeSet<String> {
        let groups: BTreeSet<String> = match target {
            None => self.groups.iter().map(|g| g.id.clone()).collect(),
            Some(id) if self.groups.iter().any(|g| g.id == id) => self.subtree(id),
            Some(_) => return BTreeSet::new(),
        };
        let mut ids: BTreeSet<String> = self
            .devices
            .iter()
            .filter(|d| {
                target.is_none()
                    || d.device
                        .group_id
                        .as_ref()
                        .is_some_and(|g| groups.contains(g))
            })
            .map(|d| d.device.id.clone())
            .collect();
        ids.extend(groups);
        if let Some(t) = target {
            ids.remove(t);
        }
        ids
    }

    fn check_value_target(&self, change: &ValueChange) -> SimResult<CustomField> {
        let field = self
            .custom_fields
            .iter()
            .find(|f| f.id == change.custom_field_id)
            .cloned()
            .ok_or_else(|| SimError::new(404, "Custom field not found"))?;
        if let Some(target) = &change.assigned_to_id
            && !self.devices.iter().any(|d| &d.device.id == target)
            && !self.groups.iter().any(|g| &g.id == target)
        {
            return Err(SimError::new(404, "assigned_to_id not found"));
        }
        Ok(field)
    }

    fn clear_below(&mut self, field: &CustomField, target: Option<&str>) {
        let below = self.below(target);
        self.values
            .retain(|(f, t), _| !(f == &field.id && t.as_ref().is_some_and(|t| below.contains(t))));
        for group in &mut self.groups {
            if below.contains(&group.id) {
                group.custom_fields.remove(&field.name);
            }
        }
    }

    /// updateCustomFieldValue.
    pub fn set_value(&mut self, change: ValueChange) -> SimResult<CustomFieldValue> {
        let field = self.check_value_target(&change)?;
        let value = change
            .value
            .clone()
            .ok_or_else(|| SimError::bad_request("value is required"))?;
        if change.force {
            self.clear_below(&field, change.assigned_to_id.as_deref());
        }
        self.store_value(&field, change.assigned_to_id.clone(), Some(value.clone()));
        Ok(CustomFieldValue {
            custom_field_id: field.id,
            custom_field_name: field.name,
            assigned_to_id: change.assigned_to_id,
            value: Some(value),
        })
    }

    fn store_value(&mut self, field: &CustomField, target: Option<String>, value: Option<String>) {
        if let Some(group) = target
            .as_ref()
            .and_then(|t| self.groups.iter_mut().find(|g| &g.id == t))
        {
            match &value {
                Some(v) => group.custom_fields.insert(field.name.clone(), v.clone()),
                None => group.custom_fields.remove(&field.name),
            };
        }
        let key = (field.id.clone(), target);
        match value {
            Some(v) => self.values.insert(key, v),
            None => self.values.remove(&key),
        };
    }

    /// deleteCustomFieldValue.
    pub fn delete_value(&mut self, change: ValueChange) -> SimResult<()> {
        let field = self.check_value_target(&change)?;
        if change.force {
            self.clear_below(&field, change.assigned_to_id.as_deref());
        }
        self.store_value(&field, change.assigned_to_id, None);
        Ok(())
    }

    // ---- devices ----

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
        let ids: Vec<String> = rows.iter().map(|d| d.device.id.clone()).collect();
        let page_ids = paginate(&ids, page, |id| id)?;
        Ok(Page {
            data: rows
                .iter()
                .filter(|d| page_ids.data.contains(&d.device.id))
                .map(|d| self.render_device(d, include))
                .collect(),
            has_more: page_ids.has_more,
        })
    }

    /// showDevice.
    pub fn get_device(&self, id: &str, include: &Includes) -> SimResult<Device> {
        let row = find(&self.devices, id, |d| &d.device.id)?;
        Ok(self.render_device(row, include))
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

    // ---- groups ----

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

    fn check_devices(&self, ids: &[String]) -> SimResult<()> {
        if ids.is_empty() {
            return Err(SimError::bad_request("device_ids must not be empty"));
        }
        for id in ids {
            if !self.devices.iter().any(|d| &d.device.id == id) {
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
                    .iter()
                    .any(|row| &row.device.id == *d && row.device.group_id.as_deref() == Some(id))
            })
            .cloned()
            .collect();
        self.set_group_of(&members, None)
    }

    fn set_group_of(&mut self, ids: &[String], group: Option<&str>) -> SimResult<Vec<Device>> {
        let mut changed = Vec::new();
        for row in &mut self.devices {
            if ids.contains(&row.device.id) {
                row.device.group_id = group.map(str::to_owned);
                changed.push(row.clone());
            }
        }
        Ok(changed
            .iter()
            .map(|row| self.render_device(row, &Includes::default()))
            .collect())
    }

    // ---- tags ----

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
        if self.tags.iter().any(|t| t.name == name) {
            return Err(SimError::unprocessable("Name has already been taken"));
        }
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
        if self.tags.iter().any(|t| t.name == name && t.id != id) {
            return Err(SimError::unprocessable("Name has already been taken"));
        }
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
        if let Some(row) = self
            .devices
            .iter()
            .find(|d| ids.contains(&d.device.id) && d.tag_ids.contains(id))
        {
            return Err(SimError::unprocessable(format!(
                "Device {} already has this tag",
                row.device.id
            )));
        }
        for row in &mut self.devices {
            if ids.contains(&row.device.id) {
                row.tag_ids.insert(id.to_owned());
            }
        }
        self.get_tag(id)
    }

    /// removeTagFromDevices: 422 if any device lacks the tag (nothing changes then).
    pub fn untag_devices(&mut self, id: &str, ids: &[String]) -> SimResult<()> {
        find(&self.tags, id, |t| &t.id)?;
        self.check_devices(ids)?;
        if let Some(row) = self
            .devices
            .iter()
            .find(|d| ids.contains(&d.device.id) && !d.tag_ids.contains(id))
        {
            return Err(SimError::unprocessable(format!(
                "Device {} does not have this tag",
                row.device.id
            )));
        }
        for row in &mut self.devices {
            if ids.contains(&row.device.id) {
                row.tag_ids.remove(id);
            }
        }
        Ok(())
    }

    // ---- automations ----

    /// triggerWebhook: one run per device.
    pub fn trigger(
        &mut self,
        token: &str,
        body: serde_json::Value,
    ) -> SimResult<Vec<AutomationRun>> {
        if !self.webhooks.iter().any(|h| h.token == token) {
            return Err(SimError::not_found());
        }
        let device_ids: Vec<String> = match body.get("device_ids") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        SimError::bad_request("device_ids must be an array of strings")
                    })
                })
                .collect::<SimResult<_>>()?,
            Some(_) => {
                return Err(SimError::bad_request(
                    "device_ids must be an array of strings",
                ));
            }
        };
        for id in &device_ids {
            if !self.devices.iter().any(|d| &d.device.id == id) {
                return Err(SimError::unprocessable(format!(
                    "device {id} does not exist"
                )));
            }
        }
        let runs: Vec<AutomationRun> = device_ids
            .into_iter()
            .map(|device| AutomationRun {
                id: self.next_id("AutomationRun"),
                device_id: Some(device),
            })
            .collect();
        self.triggered.push(TriggerRecord {
            token: token.to_owned(),
            body,
            runs: runs.clone(),
        });
        Ok(runs)
    }

    // ---- seeding helpers ----

    pub(crate) fn insert_group(&mut self, name: &str, parent: Option<&str>) -> String {
        let id = self.next_id("DeviceGroup");
        self.groups.push(GroupRow {
            id: id.clone(),
            name: name.to_owned(),
            parent_id: parent.map(str::to_owned),
            custom_fields: BTreeMap::new(),
        });
        id
    }

    pub(crate) fn insert_device(
        &mut self,
        mut device: Device,
        tag_ids: BTreeSet<String>,
    ) -> String {
        let id = self.next_id("Device");
        device.id = id.clone();
        self.devices.push(DeviceRow { device, tag_ids });
        id
    }

    pub(crate) fn insert_webhook(&mut self, token: &str, name: &str) {
        let automation_id = self.next_id("Automation");
        self.webhooks.push(AutomationWebhook {
            token: token.to_owned(),
            automation_id,
            name: name.to_owned(),
        });
    }

    pub(crate) fn insert_resolved_alert(
        &mut self,
        device_id: &str,
        name: &str,
        severity: &str,
        started: String,
        resolved: String,
    ) -> SimResult<()> {
        let mut alert = self.raise_alert(device_id, name, severity)?;
        alert.is_resolved = true;
        alert.started_at = started;
        alert.resolved_at = Some(resolved);
        if let Some(last) = self.alerts.last_mut() {
            *last = alert;
        }
        Ok(())
    }
}

fn required_name(name: &str) -> SimResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(SimError::bad_request("name is required"));
    }
    Ok(name.to_owned())
}

/// `cf_` + the name in lower case with spaces as underscores (reference §6.2).
fn reference_for(name: &str) -> String {
    format!(
        "cf_{}",
        name.to_lowercase().replace(char::is_whitespace, "_")
    )
}

/// The filters of `GET /v2/devices`.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// `group_id` (`null` for ungrouped).
    pub group_id: Option<String>,
    /// `ancestor_group_id`.
    pub ancestor_group_id: Option<String>,
    /// `tag_id`.
    pub tag_id: Option<String>,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `serial_number`.
    pub serial_number: Option<String>,
}

/// Every section: what a fixture holds.
fn all_sections() -> Includes {
    Includes {
        operating_system: true,
        cpus: true,
        memory: true,
        disks: true,
        disk_partitions: true,
        network_interfaces: true,
        motherboard: true,
        security: true,
    }
}

/// Drops the sections a request did not ask for.
fn keep_sections(this: &Includes, device: &mut Device) {
    if !this.operating_system {
        device.operating_system = None;
    }
    if !this.cpus {
        device.cpus = None;
    }
    if !this.memory {
        device.memory = None;
    }
    if !this.disks {
        device.disks = None;
    }
    // `include_disks` covers partitions too (reference §9.9).
    if !(this.disks || this.disk_partitions) {
        device.disk_partitions = None;
    }
    if !this.network_interfaces {
        device.network_interfaces = None;
    }
    if !this.motherboard {
        device.motherboard = None;
    }
    if !this.security {
        device.security = None;
    }
}
