//! The simulated Level organization: its objects and the rules Level applies
//! to them (reference §6 and §11). Everything here is plain data and plain
//! functions; `http.rs` maps requests onto them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub(super) use level_api::DeviceIncludes as Includes;
mod alerts;
mod automations;
mod custom_fields;
mod devices;
mod groups;
mod table;
mod tags;

use level_api::model::{
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
    /// What a cursor that names no object gets.
    pub unknown_cursor: crate::UnknownCursor,
}

/// The page size asked for: `limit`, or Level's default.
fn page_limit(args: &PageArgs) -> SimResult<usize> {
    match &args.limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(SimError::bad_request(format!(
                "limit must be an integer between 1 and {MAX_PAGE_SIZE}"
            ))),
        },
    }
}

/// The first `limit` of `rows`, and whether more follow.
fn first<'a, T>(mut rows: impl Iterator<Item = &'a T>, limit: usize) -> (Vec<&'a T>, bool) {
    let data: Vec<&T> = rows.by_ref().take(limit).collect();
    (data, rows.next().is_some())
}

/// Cuts one page out of `items`, ordered by creation, with `key` giving each item's cursor id.
pub fn paginate<T: Clone>(
    items: &[T],
    args: &PageArgs,
    key: impl Fn(&T) -> &str,
) -> SimResult<Page<T>> {
    let limit = page_limit(args)?;
    let position = |cursor: &str, name: &str| {
        items
            .iter()
            .position(|item| key(item) == cursor)
            .ok_or_else(|| SimError::bad_request(format!("{name} does not name a known object")))
    };
    let unknown = |cursor: &String| {
        args.unknown_cursor == crate::UnknownCursor::EmptyPage
            && !items.iter().any(|item| key(item) == cursor.as_str())
    };
    if [&args.starting_after, &args.ending_before]
        .into_iter()
        .flatten()
        .any(unknown)
    {
        return Ok(Page {
            data: Vec::new(),
            has_more: false,
        });
    }
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
    devices: table::DeviceTable,
    groups: Vec<GroupRow>,
    tags: Vec<Tag>,
    alerts: Vec<Alert>,
    custom_fields: Vec<CustomField>,
    /// (field id, target id or none for the organization) → value.
    values: BTreeMap<(String, Option<String>), String>,
    webhooks: Vec<AutomationWebhook>,
    triggered: Vec<TriggerRecord>,
    counters: HashMap<&'static str, u64>,
    /// How to behave where Level's behaviour is unconfirmed; set from the
    /// simulator's configuration when it starts.
    pub(crate) variants: crate::Variants,
}

impl Tenant {
    /// 422 for a name in use (unless the variant accepts duplicates).
    fn refuse_duplicate(&self, taken: bool) -> SimResult<()> {
        if taken && self.variants.duplicate_name == crate::DuplicateName::Unprocessable {
            return Err(SimError::unprocessable("Name has already been taken"));
        }
        Ok(())
    }
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

use level_api::clock::now;

/// A fixture whose objects do not fit together: which object and field, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FixtureError(pub String);

impl Tenant {
    /// Loads a fixture, checking every reference. The error names the object and field at fault.
    pub fn from_fixture(fixture: Fixture) -> Result<Self, FixtureError> {
        Self::checked(fixture).map_err(FixtureError)
    }

    fn checked(fixture: Fixture) -> Result<Self, String> {
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
            tenant.devices.push(device.clone(), tag_ids);
        }
        for alert in &fixture.alerts {
            unique("alert", &alert.id)?;
            if !tenant.devices.contains(&alert.device_id) {
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
                Some(target) if !tenant.devices.contains(target) => {
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

    /// The automation webhook triggers.
    pub fn webhooks(&self) -> &[AutomationWebhook] {
        &self.webhooks
    }

    /// Adds an automation with a webhook trigger of `token`, as saving a
    /// trigger in Level's automation editor does.
    pub fn add_webhook(&mut self, token: &str, name: &str) {
        self.insert_webhook(token, name);
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
            device_count: u32::try_from(self.devices.tag_count(&tag.id)).unwrap_or(u32::MAX),
            ..tag.clone()
        }
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
