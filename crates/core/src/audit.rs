//! The audit record: one per host call, with what was asked, what the gate
//! decided and why, and what Level answered. A write gets a second record
//! before its request leaves ([`Stage::Sending`]), so a request cut off by a
//! crash or a time limit is on record too. The runtime appends them to the
//! audit log; `levelhost audit` reads them back.

use serde::{Deserialize, Serialize};

/// One audited host call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the call finished (ISO-8601 UTC).
    pub time: String,
    /// The plugin.
    pub plugin: std::sync::Arc<str>,
    /// Its version.
    pub version: std::sync::Arc<str>,
    /// The component's digest.
    pub digest: std::sync::Arc<str>,
    /// The run.
    pub run_id: std::sync::Arc<str>,
    /// The WIT function, such as `tag-devices`.
    pub operation: std::borrow::Cow<'static, str>,
    /// The ids of the objects it touched.
    pub targets: Vec<String>,
    /// What a person calls the targets the host had read by then: a
    /// device's hostname, a group's or automation's name, by id.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub names: std::collections::BTreeMap<String, String>,
    /// Whether the gate allowed it.
    pub allowed: bool,
    /// Why it was refused, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last HTTP status Level answered during the call (0 = no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// How long the call took, in milliseconds.
    pub latency_ms: u64,
    /// Whether it was a write recorded in a plan instead of sent.
    #[serde(default)]
    pub dry_run: bool,
    /// Level requests the call made, the host's own look-ups included.
    #[serde(default)]
    pub requests: u32,
    /// For a request to another system: the bytes sent and received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Where the call was when this record was written.
    #[serde(default, skip_serializing_if = "Stage::is_done")]
    pub stage: Stage,
}

impl AuditRecord {
    /// The targets as a person knows them: hostnames and names where the
    /// host had read them, ids otherwise (a tag's id beside its `tag:NAME`
    /// is said once), cut after `shown` with how many more there are.
    ///
    /// ```
    /// # use levelhost_core::audit::AuditRecord;
    /// let record: AuditRecord = serde_json::from_value(serde_json::json!({
    ///     "time": "2026-01-01T00:00:00Z", "plugin": "p", "version": "1", "digest": "d",
    ///     "run_id": "r", "operation": "tag-devices", "allowed": true, "latency_ms": 1,
    ///     "targets": ["d1", "d2", "d3", "tag:stale", "t1"],
    ///     "names": {"d1": "ws-1", "d2": "ws-2", "t1": "stale"}
    /// })).unwrap();
    /// assert_eq!(record.targets_in_words(3), "ws-1, ws-2, d3 and 1 more");
    /// ```
    pub fn targets_in_words(&self, shown: usize) -> String {
        let named: Vec<String> = self
            .targets
            .iter()
            .filter_map(|t| match self.names.get(t) {
                Some(name) if self.targets.contains(&format!("tag:{name}")) => None,
                Some(name) => Some(name.clone()),
                None => Some(t.clone()),
            })
            .collect();
        crate::plan::first_of(&named, shown)
    }
}

/// Where a host call was when its record was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The call ended; the record says how.
    #[default]
    Done,
    /// A write is about to leave for Level; its outcome follows in a later record.
    Sending,
    /// The run ended (its time limit, a signal) while the call was under way:
    /// a request may have reached Level, and its outcome is unknown.
    CutOff,
}

impl Stage {
    /// Whether the call ended normally.
    pub fn is_done(&self) -> bool {
        *self == Stage::Done
    }
}
