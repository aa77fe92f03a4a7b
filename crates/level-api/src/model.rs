//! Level's JSON objects (reference §7) as the client reads and writes them.
//!
//! These types are shared by the client and the simulator. They are lenient
//! where Level's clients have seen more than one shape (a `dns_servers`
//! string or list, a numeric `major_version`, a boolean `patch_compliance`),
//! so one odd field never fails a whole page.

use serde::{Deserialize, Deserializer, Serialize};

/// A list response: `{ "data": [...], "has_more": bool }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The objects on this page.
    pub data: Vec<T>,
    /// Whether another page follows.
    #[serde(default)]
    pub has_more: bool,
}

/// A managed device (§7.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// The device id.
    pub id: String,
    /// The hostname reported by the agent.
    pub hostname: String,
    /// The display name a user gave the device.
    #[serde(default)]
    pub nickname: Option<String>,
    /// `workstation`, `server` or `domain_controller`.
    #[serde(default)]
    pub role: Option<String>,
    /// The device's group, if any.
    #[serde(default)]
    pub group_id: Option<String>,
    /// The name of that group.
    #[serde(default)]
    pub group_name: Option<String>,
    /// Tag names.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// The device's flag.
    #[serde(default, deserialize_with = "flag_string")]
    pub flag: Option<String>,
    /// Whether the device is in maintenance mode.
    #[serde(default, deserialize_with = "null_as_default")]
    pub maintenance_mode: bool,
    /// Whether the agent is connected.
    pub online: bool,
    /// Notes written by users.
    #[serde(default)]
    pub notes: Option<String>,
    /// Hardware manufacturer.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Hardware model.
    #[serde(default)]
    pub model: Option<String>,
    /// Architecture, such as `x64`.
    #[serde(default)]
    pub architecture: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial_number: Option<String>,
    /// Total memory in bytes.
    #[serde(default)]
    pub total_memory: Option<u64>,
    /// Number of memory slots.
    #[serde(default)]
    pub memory_slots: Option<u32>,
    /// Number of CPU cores.
    #[serde(default)]
    pub cpu_cores: Option<u32>,
    /// Last user who logged in.
    #[serde(default)]
    pub last_logged_in_user: Option<String>,
    /// Last reboot time.
    #[serde(default)]
    pub last_reboot_time: Option<String>,
    /// Last check-in time.
    #[serde(default)]
    pub last_seen_at: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// Country code.
    #[serde(default)]
    pub country: Option<String>,
    /// Security score.
    #[serde(default)]
    pub security_score: Option<i32>,
    /// `Windows`, `Mac` or `Linux`.
    #[serde(default)]
    pub platform: Option<String>,
    /// Public IP address.
    #[serde(default)]
    pub public_ip_address: Option<String>,
    /// Private IP addresses.
    #[serde(default, deserialize_with = "null_as_default")]
    pub private_ip_addresses: Vec<String>,
    /// With `include_operating_system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system: Option<OperatingSystem>,
    /// With `include_cpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<Cpu>>,
    /// With `include_memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Vec<MemoryModule>>,
    /// With `include_disks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<Disk>>,
    /// With `include_disks` or `include_disk_partitions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_partitions: Option<Vec<DiskPartition>>,
    /// With `include_network_interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interfaces: Option<Vec<NetworkInterface>>,
    /// With `include_motherboard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motherboard: Option<Motherboard>,
    /// With `include_security`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
}

/// Operating system details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatingSystem {
    /// Full name.
    #[serde(default)]
    pub full_operating_system: Option<String>,
    /// Major version; Level has sent both strings and numbers.
    #[serde(default, deserialize_with = "string_or_number")]
    pub major_version: Option<String>,
    /// Minor version.
    #[serde(default, deserialize_with = "string_or_number")]
    pub minor_version: Option<String>,
    /// Architecture.
    #[serde(default)]
    pub architecture: Option<String>,
    /// Install date.
    #[serde(default)]
    pub install_date: Option<String>,
    /// End of life.
    #[serde(default, deserialize_with = "null_as_default")]
    pub end_of_life: bool,
}

/// A processor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Clock speed in MHz.
    #[serde(default)]
    pub clock_speed: Option<u32>,
    /// Cores.
    #[serde(default)]
    pub cores: Option<u32>,
}

/// A memory module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryModule {
    /// Slot.
    #[serde(default)]
    pub location: Option<String>,
    /// Manufacturer.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Memory type.
    #[serde(default)]
    pub memory_type: Option<String>,
    /// Clock speed.
    #[serde(default)]
    pub clock_speed: Option<u32>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Serial number.
    #[serde(default)]
    pub serial_number: Option<String>,
    /// Part number.
    #[serde(default)]
    pub part_number: Option<String>,
    /// Form factor.
    #[serde(default)]
    pub form_factor: Option<String>,
}

/// A disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Disk type.
    #[serde(default)]
    pub disk_type: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial_number: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
}

/// A disk partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskPartition {
    /// Label.
    #[serde(default)]
    pub label: Option<String>,
    /// Mount point.
    #[serde(default)]
    pub mount_point: Option<String>,
    /// Encrypted.
    #[serde(default)]
    pub encrypted: Option<bool>,
    /// Primary.
    #[serde(default)]
    pub primary: Option<bool>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Free space in bytes.
    #[serde(default)]
    pub free_space: Option<u64>,
    /// File system.
    #[serde(default)]
    pub file_system: Option<String>,
}

/// A network interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Interface name.
    #[serde(default)]
    pub interface: Option<String>,
    /// Label.
    #[serde(default)]
    pub label: Option<String>,
    /// MAC address.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// IP addresses.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ip_addresses: Vec<String>,
    /// Gateway.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// DHCP server.
    #[serde(default)]
    pub dhcp_server: Option<String>,
    /// DNS servers; Level has sent one string or a list.
    #[serde(default, deserialize_with = "string_or_list")]
    pub dns_servers: Vec<String>,
}

/// Motherboard details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Motherboard {
    /// Manufacturer.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// BIOS version.
    #[serde(default)]
    pub bios_version: Option<String>,
}

/// Security posture.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Security {
    /// Score.
    #[serde(default)]
    pub score: Option<i32>,
    /// Risk.
    #[serde(default)]
    pub risk: Option<String>,
    /// Patch compliance; Level has sent a boolean or a number (true = 100).
    #[serde(default, deserialize_with = "bool_or_number")]
    pub patch_compliance: Option<f64>,
    /// Patch security risk.
    #[serde(default)]
    pub patch_security_risk: Option<String>,
    /// OS end of life.
    #[serde(default)]
    pub os_end_of_life: Option<bool>,
    /// Primary partition encrypted.
    #[serde(default)]
    pub primary_partition_encrypted: Option<bool>,
    /// Firewall provider.
    #[serde(default)]
    pub firewall_provider: Option<String>,
    /// Firewall enabled.
    #[serde(default)]
    pub firewall_enabled: Option<bool>,
    /// Firewall status.
    #[serde(default)]
    pub firewall_status: Option<String>,
    /// Antivirus provider.
    #[serde(default)]
    pub antivirus_provider: Option<String>,
    /// Antivirus status.
    #[serde(default)]
    pub antivirus_status: Option<String>,
    /// UAC enabled.
    #[serde(default)]
    pub user_account_control_enabled: Option<bool>,
    /// Automatic updates.
    #[serde(default)]
    pub auto_update: Option<bool>,
    /// Admin accounts.
    #[serde(default)]
    pub admin_accounts_count: Option<u32>,
}

/// A device group (§7.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Parent group id; none for a root group.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Direct child group ids.
    #[serde(default, deserialize_with = "null_as_default")]
    pub child_ids: Vec<String>,
    /// Name.
    pub name: String,
    /// Devices placed directly in the group.
    #[serde(default, deserialize_with = "null_as_default")]
    pub device_count: u32,
    /// Devices in the whole subtree (Level's spelling; `descendant_` is accepted too).
    #[serde(
        default,
        alias = "descendant_device_count",
        deserialize_with = "null_as_default"
    )]
    pub descendent_device_count: u32,
    /// The group's own custom field values (show endpoint only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_fields: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// An alert (§7.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Alert id.
    pub id: String,
    /// Device id.
    pub device_id: String,
    /// Device hostname.
    #[serde(default)]
    pub device_hostname: Option<String>,
    /// Title.
    pub name: String,
    /// Description.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// Extra detail.
    #[serde(default)]
    pub payload: Option<String>,
    /// `information`, `warning`, `critical` or `emergency`.
    pub severity: String,
    /// Whether resolved.
    #[serde(default, deserialize_with = "null_as_default")]
    pub is_resolved: bool,
    /// Start time.
    pub started_at: String,
    /// Resolution time.
    #[serde(default)]
    pub resolved_at: Option<String>,
}

/// A tag (§7.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    /// Tag id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Devices carrying it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub device_count: u32,
}

/// A custom field definition (§7.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomField {
    /// Field id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Script token such as `cf_region`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reference: String,
    /// Admin only.
    #[serde(default, deserialize_with = "null_as_default")]
    pub admin_only: bool,
}

/// A custom field value (§7.6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomFieldValue {
    /// Field id.
    pub custom_field_id: String,
    /// Field name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub custom_field_name: String,
    /// The object the value is set on; none for the organization.
    #[serde(default)]
    pub assigned_to_id: Option<String>,
    /// The value.
    #[serde(default)]
    pub value: Option<String>,
}

/// One automation run started by a webhook trigger (§6.7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutomationRun {
    /// Run id.
    pub id: String,
    /// Device id.
    #[serde(default)]
    pub device_id: Option<String>,
}

/// The response of a webhook trigger: `{"runs": [...]}`; an empty body means no runs reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TriggerResponse {
    /// The runs started.
    #[serde(default, deserialize_with = "null_as_default")]
    pub runs: Vec<AutomationRun>,
}

/// An automation's webhook trigger, as `GET /v2/automations/webhooks` lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutomationWebhook {
    /// The trigger's URL; its last segment is the token.
    #[serde(default)]
    pub url: String,
    /// The automation it starts.
    #[serde(default)]
    pub automation_id: String,
    /// The automation's name.
    #[serde(default)]
    pub automation_name: String,
}

impl AutomationWebhook {
    /// The token: the last segment of the URL.
    pub fn token(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or_default()
    }
}

/// Level's error body: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
}

/// Body of `POST /v2/custom_fields`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewCustomField {
    /// Name.
    pub name: String,
    /// Admin only.
    #[serde(default)]
    pub admin_only: bool,
}

/// Body of `PATCH /v2/custom_fields/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomFieldPatch {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New admin-only setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_only: Option<bool>,
}

/// Body of `PATCH` and `DELETE /v2/custom_field_values`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueChange {
    /// The field.
    pub custom_field_id: String,
    /// Device or group id; none for the organization.
    #[serde(default)]
    pub assigned_to_id: Option<String>,
    /// The new value (absent on delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Also clear overrides lower in the tree.
    #[serde(default)]
    pub force: bool,
}

/// Body of `PATCH /v2/devices/{id}`. `group_id: Some(None)` sends `null` (ungroup).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevicePatch {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Move to a group, or out of any group.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub group_id: Option<Option<String>>,
}

/// Body of `POST /v2/groups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewGroup {
    /// Name.
    pub name: String,
    /// Parent; none for a root group.
    #[serde(default)]
    pub parent_id: Option<String>,
}

/// Body of `PATCH /v2/groups/{id}`. `parent_id: Some(None)` sends `null` (make root).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupPatch {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New parent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub parent_id: Option<Option<String>>,
    /// Custom field values by field name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_fields: Option<std::collections::BTreeMap<String, String>>,
}

/// Body of `POST /v2/tags` and `PATCH /v2/tags/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagName {
    /// Name.
    pub name: String,
}

/// Body of the membership calls: `{"device_ids": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceIds {
    /// Device ids.
    pub device_ids: Vec<String>,
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::<T>::deserialize(d)?))
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
    List(Vec<serde_json::Value>),
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Loose>::deserialize(d)? {
        Some(Loose::Text(s)) => Some(s),
        Some(Loose::Number(n)) => Some(n.to_string()),
        Some(Loose::Bool(b)) => Some(b.to_string()),
        Some(Loose::List(_)) | None => None,
    })
}

fn flag_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Loose>::deserialize(d)? {
        Some(Loose::Text(s)) => Some(s),
        Some(Loose::Bool(true)) => Some("flagged".to_owned()),
        Some(Loose::Number(n)) => Some(n.to_string()),
        Some(Loose::Bool(false) | Loose::List(_)) | None => None,
    })
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<Loose>::deserialize(d)? {
        Some(Loose::Text(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Loose::List(items)) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Loose::Bool(_) | Loose::Number(_)) | None => Vec::new(),
    })
}

fn bool_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<Loose>::deserialize(d)? {
        Some(Loose::Bool(b)) => Some(if b { 100.0 } else { 0.0 }),
        Some(Loose::Number(n)) => n.as_f64(),
        Some(Loose::Text(s)) => s.parse().ok(),
        Some(Loose::List(_)) | None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_fields_accept_every_shape_level_has_sent() {
        let device: Device = serde_json::from_value(serde_json::json!({
            "id": "d1", "hostname": "pc-1", "online": true, "tags": null,
            "flag": true,
            "operating_system": {"major_version": 11, "end_of_life": false},
            "network_interfaces": [
                {"dns_servers": "1.1.1.1, 8.8.8.8", "ip_addresses": []},
                {"dns_servers": ["9.9.9.9"], "ip_addresses": ["10.0.0.2"]}
            ],
            "security": {"patch_compliance": true}
        }))
        .unwrap();
        assert!(device.tags.is_empty());
        assert_eq!(device.flag.as_deref(), Some("flagged"));
        assert_eq!(
            device.operating_system.unwrap().major_version.as_deref(),
            Some("11")
        );
        let nics = device.network_interfaces.unwrap();
        assert_eq!(nics[0].dns_servers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(nics[1].dns_servers, ["9.9.9.9"]);
        assert_eq!(device.security.unwrap().patch_compliance, Some(100.0));
    }

    #[test]
    fn group_accepts_the_descendant_spelling() {
        let group: Group = serde_json::from_str(
            r#"{"id":"g","name":"Acme","descendant_device_count":7,"child_ids":[]}"#,
        )
        .unwrap();
        assert_eq!(group.descendent_device_count, 7);
    }
}
