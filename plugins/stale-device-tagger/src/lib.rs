//! `stale-device-tagger`: tags devices that have been offline longer than N
//! days, and takes the tag off devices that have come back.
//!
//! Input: `{"days": 30, "tag": "stale"}` (both optional). Running it twice
//! changes nothing the second time.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::bindings::level::api::devices::{self, Device, DeviceFilter, DeviceInclude};
use levelhost_sdk::bindings::level::api::tags::{self, Tag};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Devices offline and unseen for at least this many days are stale.
    #[serde(default = "default_days")]
    days: u32,
    /// The tag to apply.
    #[serde(default = "default_tag")]
    tag: String,
}

fn default_days() -> u32 {
    30
}

fn default_tag() -> String {
    "stale".to_owned()
}

#[derive(Serialize)]
struct Outcome {
    tag: String,
    tag_id: String,
    created_tag: bool,
    days: u32,
    stale: usize,
    tagged: Vec<String>,
    untagged: Vec<String>,
    already_tagged: usize,
}

struct StaleDeviceTagger;

/// Level accepts at most this many ids per membership call.
const BATCH: usize = 100;

fn is_stale(device: &Device, now: OffsetDateTime, days: u32) -> bool {
    if device.online {
        return false;
    }
    device
        .last_seen_at
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .is_some_and(|seen| (now - seen).whole_days() >= i64::from(days))
}

/// A device to tag or untag: all the run keeps of it.
struct Chosen {
    id: String,
    hostname: String,
}

impl From<Device> for Chosen {
    fn from(device: Device) -> Self {
        Self {
            id: device.id,
            hostname: device.hostname,
        }
    }
}

fn find_or_create(name: &str) -> Result<(Tag, bool), RunError> {
    let all = levelhost_sdk::walk(
        |page| tags::list_tags(None, &page).map(|p| (p.items, p.has_more)),
        |t| t.id.clone(),
    )?;
    if let Some(tag) = all.into_iter().find(|t| t.name == name) {
        return Ok((tag, false));
    }
    levelhost_sdk::info("creating tag", &[("tag", name)]);
    Ok((tags::create_tag(name)?, true))
}

impl Guest for StaleDeviceTagger {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Input = levelhost_sdk::input(&invocation.input)?;
        if input.tag.trim().is_empty() {
            return Err(RunError::InvalidInput("tag must not be empty".to_owned()));
        }
        let (tag, created_tag) = find_or_create(&input.tag)?;
        // Page by page: only the devices to change are kept, so memory
        // grows with them, not with the organisation.
        let devices = levelhost_sdk::items(
            |page| {
                devices::list_devices(&DeviceFilter::default(), DeviceInclude::empty(), &page)
                    .map(|p| (p.items, p.has_more))
            },
            |d| d.id.clone(),
        );
        let now = OffsetDateTime::now_utc();
        let mut to_tag = Vec::new();
        let mut to_untag = Vec::new();
        let mut stale = 0;
        let mut already_tagged = 0;
        for device in devices {
            let device = device?;
            let has_tag = device.tags.contains(&tag.name);
            match (is_stale(&device, now, input.days), has_tag) {
                (true, true) => {
                    stale += 1;
                    already_tagged += 1;
                }
                (true, false) => {
                    stale += 1;
                    to_tag.push(Chosen::from(device));
                }
                (false, true) if device.online => to_untag.push(Chosen::from(device)),
                _ => {}
            }
        }
        for batch in to_tag.chunks(BATCH) {
            let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
            tags::tag_devices(&tag.id, &ids)?;
        }
        for batch in to_untag.chunks(BATCH) {
            let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
            tags::untag_devices(&tag.id, &ids)?;
        }
        levelhost_sdk::info(
            "tagging done",
            &[
                ("tagged", &to_tag.len().to_string()),
                ("untagged", &to_untag.len().to_string()),
            ],
        );
        levelhost_sdk::output(&Outcome {
            tag: tag.name,
            tag_id: tag.id,
            created_tag,
            days: input.days,
            stale,
            tagged: to_tag.iter().map(|d| d.hostname.clone()).collect(),
            untagged: to_untag.iter().map(|d| d.hostname.clone()).collect(),
            already_tagged,
        })
    }
}

levelhost_sdk::export!(StaleDeviceTagger);
