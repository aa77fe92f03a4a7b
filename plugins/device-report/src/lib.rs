//! `device-report`: a read-only report of a Level organization.
//!
//! Input (all optional): `{"stale_after_days": 14, "top": 5}`; a run started
//! by a Level event also has the event's envelope under `event`.
//! Output: device totals, counts per group (with its path) and per
//! platform, online and offline, the `top` devices that have been offline
//! longest and, for an event run, what the event was.

use std::collections::{BTreeMap, HashMap};

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::bindings::level::api::devices::{
    self, Device, DeviceFilter, DeviceInclude, Platform,
};
use levelhost_sdk::bindings::level::api::groups::{self, Group};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Offline devices not seen for this many days count as stale.
    #[serde(default = "default_stale_days")]
    stale_after_days: u32,
    /// How many of the stalest devices to list.
    #[serde(default = "default_top")]
    top: usize,
    /// The Level event that started the run, as delivered.
    #[serde(default)]
    event: Option<Event>,
}

/// The envelope of a Level event (`data` differs by event type).
#[derive(Deserialize, Serialize)]
struct Event {
    event_type: String,
    event_id: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// The event a report was made for: its type, id and the alert's name and
/// device, where the event is about an alert.
#[derive(Serialize)]
struct Because {
    event_type: String,
    event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
}

fn default_stale_days() -> u32 {
    14
}

fn default_top() -> usize {
    5
}

#[derive(Serialize, Default)]
struct Counts {
    devices: usize,
    online: usize,
    offline: usize,
}

impl Counts {
    fn add(&mut self, device: &Device) {
        self.devices += 1;
        if device.online {
            self.online += 1;
        } else {
            self.offline += 1;
        }
    }
}

#[derive(Serialize)]
struct GroupRow {
    group: String,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Serialize)]
struct Stale {
    hostname: String,
    group: String,
    last_seen_at: Option<String>,
    days_offline: Option<i64>,
}

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    totals: Counts,
    stale_after_days: u32,
    stale: usize,
    by_group: Vec<GroupRow>,
    by_platform: BTreeMap<String, Counts>,
    stalest: Vec<Stale>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<Because>,
}

struct DeviceReport;

fn path(id: &str, groups: &HashMap<String, Group>) -> String {
    let mut names = Vec::new();
    let mut next = Some(id.to_owned());
    // Bounded by the number of groups, so a cycle in bad data cannot loop forever.
    while let Some(id) = next.take() {
        if names.len() > groups.len() {
            break;
        }
        match groups.get(&id) {
            Some(g) => {
                names.push(g.name.clone());
                next = g.parent_id.clone();
            }
            None => names.push(id),
        }
    }
    names.reverse();
    names.join(" / ")
}

fn platform(device: &Device) -> String {
    match &device.platform {
        Some(Platform::Windows) => "Windows".to_owned(),
        Some(Platform::Mac) => "Mac".to_owned(),
        Some(Platform::Linux) => "Linux".to_owned(),
        Some(Platform::Other(name)) => name.clone(),
        None => "unknown".to_owned(),
    }
}

impl Guest for DeviceReport {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Input = levelhost_sdk::input(&invocation.input)?;
        let groups: HashMap<String, Group> = levelhost_sdk::walk(
            |page| groups::list_groups(None, &page).map(|p| (p.items, p.has_more)),
            |g| g.id.clone(),
        )?
        .into_iter()
        .map(|g| (g.id.clone(), g))
        .collect();
        let devices = levelhost_sdk::walk(
            |page| {
                devices::list_devices(&DeviceFilter::default(), DeviceInclude::empty(), &page)
                    .map(|p| (p.items, p.has_more))
            },
            |d| d.id.clone(),
        )?;
        levelhost_sdk::info(
            "read the organization",
            &[
                ("devices", &devices.len().to_string()),
                ("groups", &groups.len().to_string()),
            ],
        );

        let now = OffsetDateTime::now_utc();
        let mut totals = Counts::default();
        let mut by_group: BTreeMap<String, Counts> = BTreeMap::new();
        let mut by_platform: BTreeMap<String, Counts> = BTreeMap::new();
        let mut offline = Vec::new();
        for device in &devices {
            totals.add(device);
            let group = device
                .group_id
                .as_deref()
                .map_or_else(|| "(no group)".to_owned(), |g| path(g, &groups));
            by_group.entry(group.clone()).or_default().add(device);
            by_platform.entry(platform(device)).or_default().add(device);
            if !device.online {
                let seen = device
                    .last_seen_at
                    .as_deref()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
                offline.push(Stale {
                    hostname: device.hostname.clone(),
                    group,
                    last_seen_at: device.last_seen_at.clone(),
                    days_offline: seen.map(|s| (now - s).whole_days()),
                });
            }
        }
        // Never seen sorts first: it is the stalest of all.
        offline.sort_by_key(|s| std::cmp::Reverse(s.days_offline.unwrap_or(i64::MAX)));
        let stale = offline
            .iter()
            .filter(|s| {
                s.days_offline
                    .is_none_or(|d| d >= i64::from(input.stale_after_days))
            })
            .count();
        offline.truncate(input.top);
        let text =
            |e: &Event, key: &str| e.data.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let event = input.event.map(|e| Because {
            alert: text(&e, "name"),
            device_id: text(&e, "device_id"),
            event_type: e.event_type,
            event_id: e.event_id,
        });
        levelhost_sdk::output(&Report {
            event,
            totals,
            stale_after_days: input.stale_after_days,
            stale,
            by_group: by_group
                .into_iter()
                .map(|(group, counts)| GroupRow { group, counts })
                .collect(),
            by_platform,
            stalest: offline,
        })
    }
}

levelhost_sdk::export!(DeviceReport);
