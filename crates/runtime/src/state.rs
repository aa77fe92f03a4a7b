//! A plugin's durable state, as a run sees it.
//!
//! The committed state lives in a [`StateStore`] (the run history, in
//! `serve`; memory, for a run against the simulator). A run reads it and
//! keeps its own writes in a [`StateChanges`] of its own: it reads its own
//! writes, and nothing it writes is committed until the run is recorded
//! `ok` (the executor commits [`RunReport::state`](crate::runner::RunReport)
//! in the transaction that records the run). Each change carries the version
//! the run saw, so a commit finds a key changed under the run instead of
//! overwriting it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// A future a [`StateStore`] answers with.
pub type StateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateStoreError>> + Send + 'a>>;

/// A committed value and its version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredValue {
    /// The value.
    pub value: Vec<u8>,
    /// Its version: 1 when first written, one more with each write.
    pub version: u64,
}

/// How much state a plugin holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateUsage {
    /// Keys.
    pub keys: u64,
    /// Bytes of keys and values together.
    pub bytes: u64,
}

/// The committed state cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the plugin's state cannot be read")]
pub struct StateStoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Where plugins' committed state is read from. Keys belong to one plugin:
/// every call names it, and a store answers for that plugin's keys only.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// A key's committed value.
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str) -> StateFuture<'a, Option<StoredValue>>;
    /// Committed entries whose keys start with `prefix`, in byte order of
    /// their keys, after `after`, at most `limit`.
    fn list<'a>(
        &'a self,
        plugin: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: u32,
    ) -> StateFuture<'a, Vec<(String, StoredValue)>>;
    /// How much the plugin holds.
    fn usage<'a>(&'a self, plugin: &'a str) -> StateFuture<'a, StateUsage>;
}

/// One key a run changed, as it is committed: what the run saw, and what
/// the key holds after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateChange {
    /// The key.
    pub key: String,
    /// The committed version the run saw (none: the key had no value).
    pub base: Option<u64>,
    /// Its value after the run; none: deleted.
    pub value: Option<Vec<u8>>,
    /// Its version after the run.
    pub version: u64,
}

/// Whether a list of keys starting with `prefix`, after `after`, holds
/// `key`: the one rule every store and a run's own writes list by (byte
/// order, as the history's `state_list` statement compares them).
fn listed(key: &str, prefix: &str, after: Option<&str>) -> bool {
    key.starts_with(prefix) && after.is_none_or(|a| key > a)
}

/// Bytes a key and value hold against `max_state_total_kb`.
pub fn entry_bytes(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// A key's value as the run sees it, with what it was committed as.
#[derive(Debug, Clone)]
struct Pending {
    /// The committed value the run first saw (none: absent).
    base: Option<StoredValue>,
    /// What the key holds now in the run (none: no value).
    value: Option<Vec<u8>>,
    /// Its version now.
    version: u64,
}

/// The writes of one run on top of the committed state.
#[derive(Debug, Default)]
pub struct StateChanges {
    pending: BTreeMap<String, Pending>,
    /// Committed values the run read before writing them (a write starts from these).
    read: HashMap<String, Option<StoredValue>>,
    /// The committed usage, read at the first write.
    committed: Option<StateUsage>,
    /// Writes made.
    pub writes: u64,
}

/// What the run sees for one key: from its own writes, or not yet known.
pub enum Seen<'a> {
    /// The run wrote the key: its value now (none: deleted) and version.
    Written(Option<&'a [u8]>, u64),
    /// The run has not written it: ask the store.
    Unknown,
}

impl StateChanges {
    /// What the run's own writes say about `key`.
    pub fn seen(&self, key: &str) -> Seen<'_> {
        match self.pending.get(key) {
            Some(p) => Seen::Written(p.value.as_deref(), p.version),
            None => Seen::Unknown,
        }
    }

    /// Whether the run wrote `key` (so its committed value is known).
    pub fn knows(&self, key: &str) -> bool {
        self.pending.contains_key(key)
    }

    /// Remembers a committed value the run read, so a write of the key
    /// need not read it again.
    pub fn remember(&mut self, key: &str, committed: Option<StoredValue>) {
        self.read.insert(key.to_owned(), committed);
    }

    /// The committed value the run read of `key`, if it read it.
    pub fn remembered(&mut self, key: &str) -> Option<Option<StoredValue>> {
        self.read.remove(key)
    }

    /// Whether the committed usage has been read.
    pub fn has_usage(&self) -> bool {
        self.committed.is_some()
    }

    /// Sets the committed usage (read once, at the first write).
    pub fn set_usage(&mut self, usage: StateUsage) {
        self.committed = Some(usage);
    }

    /// Starts tracking `key`, committed as `base` (call before its first write).
    pub fn track(&mut self, key: &str, base: Option<StoredValue>) {
        self.pending
            .entry(key.to_owned())
            .or_insert_with(|| Pending {
                version: base.as_ref().map_or(0, |b| b.version),
                value: base.as_ref().map(|b| b.value.clone()),
                base,
            });
    }

    /// The usage if `key` held `value` (none: no value) after the run's writes so far.
    pub fn usage_with(&self, key: &str, value: Option<&[u8]>) -> StateUsage {
        let mut usage = self.committed.unwrap_or_default();
        for (k, p) in &self.pending {
            if let Some(b) = &p.base {
                usage.keys = usage.keys.saturating_sub(1);
                usage.bytes = usage.bytes.saturating_sub(entry_bytes(k, &b.value));
            }
            let now = if k == key { value } else { p.value.as_deref() };
            if let Some(v) = now {
                usage.keys += 1;
                usage.bytes += entry_bytes(k, v);
            }
        }
        if let (false, Some(v)) = (self.pending.contains_key(key), value) {
            usage.keys += 1;
            usage.bytes += entry_bytes(key, v);
        }
        usage
    }

    /// Writes `value` (none: deletes) to a tracked key; returns its new version.
    pub fn write(&mut self, key: &str, value: Option<Vec<u8>>) -> u64 {
        self.writes += 1;
        match self.pending.get_mut(key) {
            Some(p) => {
                p.version += 1;
                p.value = value;
                p.version
            }
            // Untracked: written as if it had no committed value.
            None => {
                self.pending.insert(
                    key.to_owned(),
                    Pending {
                        base: None,
                        value,
                        version: 1,
                    },
                );
                1
            }
        }
    }

    /// The run's written entries with keys starting with `prefix` and after
    /// `after` (deleted ones as none), in key order.
    pub fn written_in(&self, prefix: &str, after: Option<&str>) -> Vec<(&str, Option<&[u8]>, u64)> {
        self.pending
            .iter()
            .filter(|(k, _)| listed(k, prefix, after))
            .map(|(k, p)| (k.as_str(), p.value.as_deref(), p.version))
            .collect()
    }

    /// The changes to commit: every key whose value differs from what the
    /// run saw committed.
    pub fn into_changes(self) -> Vec<StateChange> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.pending
            .into_iter()
            .filter(|(_, p)| p.base.as_ref().map(|b| &b.value) != p.value.as_ref())
            .map(|(key, p)| StateChange {
                key,
                base: p.base.map(|b| b.version),
                value: p.value,
                version: p.version,
            })
            .collect()
    }
}

/// State kept in memory: for runs against the simulator and authors' tests
/// (`levelhost test`, the testing crate). Commits apply a run's changes.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    plugins: Arc<Mutex<HashMap<String, BTreeMap<String, StoredValue>>>>,
}

impl MemoryState {
    /// Every committed entry of `plugin`, in key order.
    pub fn entries(&self, plugin: &str) -> BTreeMap<String, StoredValue> {
        self.lock().get(plugin).cloned().unwrap_or_default()
    }

    /// Sets `plugin`'s committed state to `entries` (a test's starting state).
    pub fn seed(&self, plugin: &str, entries: BTreeMap<String, StoredValue>) {
        self.lock().insert(plugin.to_owned(), entries);
    }

    /// Applies a run's changes, as the history would for a run recorded `ok`.
    pub fn commit(&self, plugin: &str, changes: &[StateChange]) {
        let mut plugins = self.lock();
        let state = plugins.entry(plugin.to_owned()).or_default();
        for change in changes {
            match &change.value {
                Some(value) => {
                    state.insert(
                        change.key.clone(),
                        StoredValue {
                            value: value.clone(),
                            version: change.version,
                        },
                    );
                }
                None => {
                    state.remove(&change.key);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, StoredValue>>> {
        self.plugins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl StateStore for MemoryState {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str) -> StateFuture<'a, Option<StoredValue>> {
        let found = self.lock().get(plugin).and_then(|s| s.get(key).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn list<'a>(
        &'a self,
        plugin: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: u32,
    ) -> StateFuture<'a, Vec<(String, StoredValue)>> {
        let found = self
            .lock()
            .get(plugin)
            .map(|s| {
                s.iter()
                    .filter(|(k, _)| listed(k, prefix, after))
                    .take(limit as usize)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }

    fn usage<'a>(&'a self, plugin: &'a str) -> StateFuture<'a, StateUsage> {
        let usage = self
            .lock()
            .get(plugin)
            .map(|s| StateUsage {
                keys: s.len() as u64,
                bytes: s.iter().map(|(k, v)| entry_bytes(k, &v.value)).sum(),
            })
            .unwrap_or_default();
        Box::pin(async move { Ok(usage) })
    }
}

/// The committed state a run read, as a transcript keeps it: every key it
/// got (none: it had no value) or listed, and the usage the quotas saw. As a
/// [`StateStore`] it answers a replayed run exactly as the recorded run was
/// answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadState {
    /// Each key read, and what it held.
    pub entries: BTreeMap<String, Option<StoredValue>>,
    /// The usage read, if a write read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<StateUsage>,
}

impl ReadState {
    /// Whether the run read nothing of its state.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.usage.is_none()
    }
}

impl StateStore for ReadState {
    fn get<'a>(&'a self, _plugin: &'a str, key: &'a str) -> StateFuture<'a, Option<StoredValue>> {
        let found = self.entries.get(key).cloned().flatten();
        Box::pin(async move { Ok(found) })
    }

    fn list<'a>(
        &'a self,
        _plugin: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: u32,
    ) -> StateFuture<'a, Vec<(String, StoredValue)>> {
        let found = self
            .entries
            .iter()
            .filter(|(k, _)| listed(k, prefix, after))
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .take(limit as usize)
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn usage<'a>(&'a self, _plugin: &'a str) -> StateFuture<'a, StateUsage> {
        let usage = self.usage.unwrap_or_default();
        Box::pin(async move { Ok(usage) })
    }
}

/// Keeps what a run reads of its committed state (`levelhost run --record`).
#[derive(Debug, Clone, Default)]
pub struct StateRecorder {
    read: Arc<Mutex<ReadState>>,
}

impl StateRecorder {
    /// `store`, recording what is read from it here.
    pub fn wrap(&self, store: Arc<dyn StateStore>) -> Arc<dyn StateStore> {
        Arc::new(Recorded {
            store,
            read: self.read.clone(),
        })
    }

    /// What was read so far.
    pub fn read(&self) -> ReadState {
        self.read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A store whose answers are kept in a [`ReadState`].
#[derive(Debug)]
struct Recorded {
    store: Arc<dyn StateStore>,
    read: Arc<Mutex<ReadState>>,
}

impl Recorded {
    fn keep(&self, f: impl FnOnce(&mut ReadState)) {
        f(&mut self
            .read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }
}

impl StateStore for Recorded {
    fn get<'a>(&'a self, plugin: &'a str, key: &'a str) -> StateFuture<'a, Option<StoredValue>> {
        Box::pin(async move {
            let found = self.store.get(plugin, key).await?;
            self.keep(|r| {
                r.entries.insert(key.to_owned(), found.clone());
            });
            Ok(found)
        })
    }

    fn list<'a>(
        &'a self,
        plugin: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: u32,
    ) -> StateFuture<'a, Vec<(String, StoredValue)>> {
        Box::pin(async move {
            let found = self.store.list(plugin, prefix, after, limit).await?;
            self.keep(|r| {
                for (k, v) in &found {
                    r.entries.insert(k.clone(), Some(v.clone()));
                }
            });
            Ok(found)
        })
    }

    fn usage<'a>(&'a self, plugin: &'a str) -> StateFuture<'a, StateUsage> {
        Box::pin(async move {
            let usage = self.store.usage(plugin).await?;
            self.keep(|r| r.usage = Some(usage));
            Ok(usage)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_its_own_writes_and_commits_only_what_changed() {
        let mut changes = StateChanges::default();
        changes.set_usage(StateUsage { keys: 1, bytes: 4 });
        changes.track(
            "a",
            Some(StoredValue {
                value: b"xyz".to_vec(),
                version: 3,
            }),
        );
        assert!(matches!(changes.seen("a"), Seen::Written(Some(b"xyz"), 3)));
        assert_eq!(changes.write("a", Some(b"12".to_vec())), 4);
        assert_eq!(
            changes.usage_with("b", Some(b"1")),
            StateUsage { keys: 2, bytes: 5 }
        );
        changes.track("b", None);
        changes.write("b", Some(b"1".to_vec()));
        changes.write("b", None);
        let committed = changes.into_changes();
        assert_eq!(
            committed,
            [StateChange {
                key: "a".to_owned(),
                base: Some(3),
                value: Some(b"12".to_vec()),
                version: 4
            }],
            "b was set and deleted again: nothing to commit"
        );
    }
}
