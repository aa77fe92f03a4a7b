//! A plugin's grant: its capabilities, resource scopes and limits, and how
//! to say it in plain words.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capability::{Capability, CapabilitySet, Resource, Verb};

/// Which objects a plugin may see and touch. `None` leaves a resource
/// unrestricted; a list restricts it to what the list names (an empty list
/// allows nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scopes {
    /// Group subtrees, by id or name: devices, groups and alerts outside them are out of scope.
    pub groups: Option<Vec<String>>,
    /// Tag names or globs such as `stale-*`, compiled once when parsed.
    pub tags: Option<TagPatterns>,
    /// Custom field names.
    pub custom_fields: Option<Vec<String>>,
    /// Automation webhook tokens.
    pub automations: Option<Vec<String>>,
}

/// A scope's tag names and globs (`stale-*`): each checked, and all
/// compiled into one matcher, once, where the grant is read. Written and
/// compared as its list of patterns.
#[derive(Debug, Clone)]
pub struct TagPatterns {
    patterns: Vec<String>,
    set: globset::GlobSet,
}

impl TagPatterns {
    /// Checks and compiles `patterns`; a bad one is an error naming it.
    ///
    /// ```
    /// use levelhost_core::grant::TagPatterns;
    /// let tags = TagPatterns::parse(vec!["stale-*".to_owned()]).unwrap();
    /// assert!(tags.matches("stale-30d") && !tags.matches("vip"));
    /// assert!(TagPatterns::parse(vec!["stale-[".to_owned()]).is_err());
    /// ```
    pub fn parse(patterns: Vec<String>) -> Result<Self, ScopeError> {
        let mut builder = globset::GlobSetBuilder::new();
        for p in &patterns {
            builder.add(tag_pattern(p)?);
        }
        let set = builder
            .build()
            .map_err(|e| ScopeError::BadPattern(String::new(), e.to_string()))?;
        Ok(Self { patterns, set })
    }

    /// Patterns that match nothing.
    pub fn none() -> Self {
        Self {
            patterns: Vec::new(),
            set: globset::GlobSet::empty(),
        }
    }

    /// The patterns, as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether a tag named `name` is in scope.
    pub fn matches(&self, name: &str) -> bool {
        self.set.is_match(name)
    }
}

impl PartialEq for TagPatterns {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for TagPatterns {}

impl Serialize for TagPatterns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.patterns.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TagPatterns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patterns = Vec::<String>::deserialize(d)?;
        Self::parse(patterns).map_err(serde::de::Error::custom)
    }
}

/// Limits of one run, with safe defaults. Exceeding one ends the run with an error naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock seconds for the whole run.
    pub timeout_secs: u64,
    /// Linear memory, in MiB.
    pub memory_mb: u64,
    /// Level requests per run, the host's own look-ups for scope checks included.
    pub max_api_calls: u64,
    /// Write operations per run.
    pub max_writes: u64,
    /// Distinct devices changed per run.
    pub max_devices_changed: u64,
    /// Output document size, in KiB.
    pub max_output_kb: u64,
    /// Total log size (log lines, stdout and stderr), in KiB.
    pub max_log_kb: u64,
    /// Data passed into one host call, in KiB.
    pub max_call_kb: u64,
    /// How old, in seconds, a fact the host read from Level (the group a
    /// device is in) may be when a scope decision uses it; older facts are
    /// read again. Level has no conditional writes, so a change made by
    /// someone else between that read and the write can still be missed.
    pub fact_max_age_secs: u64,
    /// The plugin's state: the longest key, in bytes.
    pub max_state_key_bytes: u64,
    /// The plugin's state: the largest value, in KiB.
    pub max_state_value_kb: u64,
    /// The plugin's state: how many keys it may hold.
    pub max_state_keys: u64,
    /// The plugin's state: its keys and values together, in KiB.
    pub max_state_total_kb: u64,
    /// The plugin's state: writes (set, delete, compare-and-swap, increment) per run.
    pub max_state_writes: u64,
    /// Requests to the grant's connections per run.
    pub max_http_requests: u64,
    /// Bytes sent to and received from the grant's connections per run, in KiB.
    pub max_http_kb: u64,
    /// The largest answer one request to a connection may bring back, in KiB.
    pub max_response_kb: u64,
    /// Seconds one request to a connection may take (never past the run's own time limit).
    pub http_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_secs: 60,
            memory_mb: 64,
            max_api_calls: 1000,
            max_writes: 100,
            max_devices_changed: 100,
            max_output_kb: 1024,
            max_log_kb: 256,
            max_call_kb: 256,
            fact_max_age_secs: 30,
            max_state_key_bytes: 256,
            max_state_value_kb: 64,
            max_state_keys: 10_000,
            max_state_total_kb: 10_240,
            max_state_writes: 1_000,
            max_http_requests: 100,
            max_http_kb: 10_240,
            max_response_kb: 1_024,
            http_timeout_secs: 30,
        }
    }
}

impl Limits {
    /// Rejects limits of zero where zero would make every run fail.
    pub fn check(&self) -> Result<(), LimitError> {
        for (key, value) in [
            ("timeout_secs", self.timeout_secs),
            ("memory_mb", self.memory_mb),
            ("max_output_kb", self.max_output_kb),
            ("max_call_kb", self.max_call_kb),
            ("http_timeout_secs", self.http_timeout_secs),
        ] {
            if value == 0 {
                return Err(LimitError {
                    key,
                    message: format!("{key} must be at least 1"),
                });
            }
        }
        if self.memory_mb > 4096 {
            return Err(LimitError {
                key: "memory_mb",
                message: "memory_mb must be at most 4096".to_owned(),
            });
        }
        Ok(())
    }

    /// How long one request to a connection may take.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_secs(self.http_timeout_secs)
    }

    /// The run's time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// How old a fact read from Level may be when a scope decision uses it.
    pub fn fact_max_age(&self) -> Duration {
        Duration::from_secs(self.fact_max_age_secs)
    }

    /// KiB or MiB to bytes, saturating.
    pub fn bytes(kib: u64) -> usize {
        usize::try_from(kib.saturating_mul(1024)).unwrap_or(usize::MAX)
    }
}

/// A limit that would make every run fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitError {
    /// The limit's key, as in the config (`timeout_secs`).
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Everything a plugin is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The plugin it is for.
    pub plugin: String,
    /// Its capabilities.
    pub capabilities: CapabilitySet,
    /// Its scopes.
    pub scopes: Scopes,
    /// Its limits.
    pub limits: Limits,
    /// The other systems it may call, and on each the routes it may use.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub connections: crate::route::Connections,
}

impl Grant {
    /// Every capability, no scope, default limits: for a plugin run against the simulator in development.
    pub fn unrestricted(plugin: &str) -> Self {
        Self::exactly(plugin, Capability::all().collect())
    }

    /// Exactly `capabilities`, no scope, default limits: the least-privilege
    /// grant a plugin's manifest asks for, as `run --sim` and `levelhost test` give it.
    pub fn exactly(plugin: &str, capabilities: CapabilitySet) -> Self {
        Self {
            plugin: plugin.to_owned(),
            capabilities,
            scopes: Scopes::default(),
            limits: Limits::default(),
            connections: Default::default(),
        }
    }

    /// The grant in plain words, one line per resource.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let where_devices = match &self.scopes.groups {
            None => "in any group".to_owned(),
            Some(g) if g.is_empty() => "in no group".to_owned(),
            Some(g) => format!("in group {} and its subgroups", join_or(g)),
        };
        for resource in Resource::ALL {
            let has = |verb| self.capabilities.contains(&Capability { resource, verb });
            let verbs: Vec<&str> = resource
                .verbs()
                .iter()
                .filter(|v| has(**v))
                .map(|v| match v {
                    Verb::Read => "read",
                    Verb::Write => "change",
                    Verb::Delete => "delete",
                    Verb::Resolve => "resolve",
                    Verb::Trigger => "trigger",
                })
                .collect();
            let what = match resource {
                Resource::Devices => format!("devices {where_devices}"),
                Resource::Groups => match &self.scopes.groups {
                    None => "any group".to_owned(),
                    Some(_) => format!("groups {}", where_devices.trim_start_matches("in group ")),
                },
                Resource::Tags => match &self.scopes.tags {
                    None => "any tag".to_owned(),
                    Some(t) => format!("tags {}", join_or(t.patterns())),
                },
                Resource::Alerts => format!("alerts on devices {where_devices}"),
                Resource::CustomFields | Resource::CustomFieldValues => {
                    let kind = if resource == Resource::CustomFields {
                        "custom fields"
                    } else {
                        "values of custom fields"
                    };
                    match &self.scopes.custom_fields {
                        None => format!("{kind} (any)"),
                        Some(f) => format!("{kind} {}", join_or(f)),
                    }
                }
                Resource::State => format!(
                    "its own state (up to {} keys, {} KiB)",
                    self.limits.max_state_keys, self.limits.max_state_total_kb
                ),
                Resource::Automations => match &self.scopes.automations {
                    None => "any automation webhook".to_owned(),
                    Some(a) => format!("automation webhooks {}", join_or(a)),
                },
            };
            if verbs.is_empty() {
                lines.push(format!("cannot use {}", resource.name()));
            } else {
                lines.push(format!("can {} {what}", verbs.join(", ")));
            }
        }
        let deletes: Vec<String> = self
            .capabilities
            .iter()
            .filter(|c| c.verb == Verb::Delete)
            .map(|c| c.resource.name().to_owned())
            .collect();
        if deletes.is_empty() {
            lines.push("cannot delete anything".to_owned());
        }
        if self.connections.is_empty() {
            lines.push("cannot call any other system".to_owned());
        }
        for (name, connection) in &self.connections {
            let routes: Vec<String> = connection.routes.iter().map(ToString::to_string).collect();
            lines.push(if routes.is_empty() {
                format!("cannot call {name} (no routes)")
            } else {
                format!("can call {name}: {}", routes.join(", "))
            });
        }
        let l = &self.limits;
        lines.push(format!(
            "limits: {}s, {} MiB memory, {} API calls, {} writes, {} devices changed per run",
            l.timeout_secs, l.memory_mb, l.max_api_calls, l.max_writes, l.max_devices_changed
        ));
        lines
    }
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => "(none)".to_owned(),
        [one] => format!("{one:?}"),
        _ => items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// Scopes made concrete against Level: the ids of every group in scope.
#[derive(Debug, Clone, Default)]
pub struct ResolvedScopes {
    /// Ids of the groups in scope (the named groups and all their descendants); `None` = unrestricted.
    pub group_ids: Option<HashSet<String>>,
    /// The roots of those subtrees.
    pub group_roots: Vec<String>,
    /// Tag globs, as the grant compiled them; `None` = unrestricted.
    pub tags: Option<TagPatterns>,
    /// Custom field names; `None` = unrestricted.
    pub custom_fields: Option<BTreeSet<String>>,
    /// Automation tokens; `None` = unrestricted.
    pub automations: Option<BTreeSet<String>>,
}

impl ResolvedScopes {
    /// Scopes that admit nothing: for a run that ends before its scopes are known.
    pub fn nothing() -> Self {
        Self {
            group_ids: Some(HashSet::new()),
            group_roots: Vec::new(),
            tags: Some(TagPatterns::none()),
            custom_fields: Some(BTreeSet::new()),
            automations: Some(BTreeSet::new()),
        }
    }
}

/// Why a grant's scopes cannot be made concrete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A scope names a group Level does not have.
    #[error("scope names group {0:?}, which Level does not have")]
    MissingGroup(String),
    /// A scope names a group by a name several groups share.
    #[error("scope names group {0:?}, which matches {1} groups; use its id")]
    AmbiguousGroup(String, usize),
    /// A tag pattern is not a valid glob.
    #[error("tag pattern {0:?}: {1}")]
    BadPattern(String, String),
}

/// One tag pattern of a scope (a name or a glob such as `stale-*`), as the
/// gate matches it: the one parser of tag patterns, for the config's checks
/// and for [`resolve`].
///
/// ```
/// assert!(levelhost_core::grant::tag_pattern("stale-*").is_ok());
/// assert!(levelhost_core::grant::tag_pattern("stale-[").is_err());
/// ```
pub fn tag_pattern(pattern: &str) -> Result<globset::Glob, ScopeError> {
    globset::Glob::new(pattern)
        .map_err(|e| ScopeError::BadPattern(pattern.to_owned(), e.to_string()))
}

/// Resolves `scopes` against the organization's groups (`(id, name, parent)` triples).
/// A group named in the scope that Level does not have is an error naming it.
pub fn resolve(
    scopes: &Scopes,
    groups: &[(String, String, Option<String>)],
) -> Result<ResolvedScopes, ScopeError> {
    let group_ids = match &scopes.groups {
        None => None,
        Some(names) => {
            let mut roots = Vec::new();
            for wanted in names {
                let matches: Vec<&String> = groups
                    .iter()
                    .filter(|(id, name, _)| id == wanted || name == wanted)
                    .map(|(id, _, _)| id)
                    .collect();
                match matches.as_slice() {
                    [] => return Err(ScopeError::MissingGroup(wanted.clone())),
                    [id] => roots.push((*id).clone()),
                    _ => return Err(ScopeError::AmbiguousGroup(wanted.clone(), matches.len())),
                }
            }
            let mut ids: HashSet<String> = roots.iter().cloned().collect();
            loop {
                let before = ids.len();
                for (id, _, parent) in groups {
                    if parent.as_ref().is_some_and(|p| ids.contains(p)) {
                        ids.insert(id.clone());
                    }
                }
                if ids.len() == before {
                    break;
                }
            }
            Some((ids, roots))
        }
    };
    // Compiled once, when the grant was read.
    let tags = scopes.tags.clone();
    let (group_ids, group_roots) = match group_ids {
        Some((ids, roots)) => (Some(ids), roots),
        None => (None, Vec::new()),
    };
    Ok(ResolvedScopes {
        group_ids,
        group_roots,
        tags,
        custom_fields: scopes
            .custom_fields
            .as_ref()
            .map(|f| f.iter().cloned().collect()),
        automations: scopes
            .automations
            .as_ref()
            .map(|a| a.iter().cloned().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(caps: &[&str], scopes: Scopes) -> Grant {
        Grant {
            plugin: "p".into(),
            connections: Default::default(),
            capabilities: caps.iter().map(|c| c.parse().unwrap()).collect(),
            scopes,
            limits: Limits::default(),
        }
    }

    #[test]
    fn a_grant_reads_as_plain_words() {
        let g = grant(
            &["devices:read", "tags:read", "tags:write"],
            Scopes {
                groups: Some(vec!["Acme".into()]),
                tags: Some(TagPatterns::parse(vec!["stale-*".into()]).unwrap()),
                ..Scopes::default()
            },
        );
        let text = g.describe().join("\n");
        assert!(
            text.contains("can read devices in group \"Acme\" and its subgroups"),
            "{text}"
        );
        assert!(text.contains("can read, change tags \"stale-*\""), "{text}");
        assert!(text.contains("cannot use automations"), "{text}");
        assert!(text.contains("cannot delete anything"), "{text}");
    }

    #[test]
    fn group_scopes_cover_subtrees_and_name_missing_groups() {
        let groups = vec![
            ("a".to_owned(), "Acme".to_owned(), None),
            ("b".to_owned(), "HQ".to_owned(), Some("a".to_owned())),
            ("c".to_owned(), "Fin".to_owned(), Some("b".to_owned())),
            ("d".to_owned(), "Globex".to_owned(), None),
        ];
        let scopes = Scopes {
            groups: Some(vec!["HQ".into()]),
            ..Scopes::default()
        };
        let r = resolve(&scopes, &groups).unwrap();
        let ids = r.group_ids.unwrap();
        assert!(ids.contains("b") && ids.contains("c") && !ids.contains("a") && !ids.contains("d"));
        let missing = Scopes {
            groups: Some(vec!["Nope".into()]),
            ..Scopes::default()
        };
        assert_eq!(
            resolve(&missing, &groups).unwrap_err(),
            ScopeError::MissingGroup("Nope".into())
        );
    }
}
