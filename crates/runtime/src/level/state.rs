//! `level:api/state`: the plugin's own durable state.
//!
//! Every call goes through [`host_call!`] like a Level call: the gate admits
//! it (`state:read` or `state:write`, and `max_call_kb`), and it is audited
//! with the key as its target (`state:KEY`). Reads see the run's own writes
//! over the committed state; writes stay with the run
//! ([`StateChanges`]) until the executor commits them with a run recorded
//! `ok`. The grant's state quotas refuse a write whole, naming the quota. A
//! dry run reads the real state and plans its writes; a run held to an
//! approved plan may only make the state writes the plan holds.

use super::{Call, LevelCtx, LevelError, host_call, refuse};
use crate::bindings::state::{Entry, EntryPage, Host};
use crate::bindings::types::Error;
use crate::state::{Seen, StateStoreError, StoredValue};
use levelhost_core::capability::Operation;
use levelhost_core::grant::Limits;

/// How many entries a page holds when the plugin does not say.
const DEFAULT_PAGE: u32 = 20;
/// The most entries a page holds.
const MAX_PAGE: u32 = 100;

/// The audit target of a key.
fn target(key: &str) -> String {
    format!("state:{key}")
}

/// A quota the write would exceed: refused whole, returned to the plugin.
fn quota(call: &mut Call, name: &str, detail: String) -> LevelError {
    let message = format!("state quota {name}: {detail}; nothing was written");
    call.refused = Some(message.clone());
    LevelError::Guest(Error::LimitExceeded(message))
}

impl From<StateStoreError> for LevelError {
    fn from(e: StateStoreError) -> Self {
        // The host cannot read the state it keeps: a fault, not the plugin's.
        LevelError::Trap(wasmtime::Error::msg(levelhost_core::Chain(&e).to_string()))
    }
}

impl LevelCtx {
    /// Checks a key: not empty, no NUL, within `max_state_key_bytes`.
    fn check_key(&self, call: &mut Call, key: &str) -> Result<(), LevelError> {
        call.targets.push(target(key));
        let max = self.gate().grant().limits.max_state_key_bytes;
        let problem = if key.is_empty() {
            Some("a state key cannot be empty".to_owned())
        } else if key.contains('\0') {
            Some("a state key cannot hold a NUL character".to_owned())
        } else if key.len() as u64 > max {
            return Err(quota(
                call,
                "max_state_key_bytes",
                format!("the key is {} bytes; the quota is {max}", key.len()),
            ));
        } else {
            None
        };
        match problem {
            Some(problem) => {
                call.refused = Some(problem.clone());
                Err(LevelError::invalid_input(problem))
            }
            None => Ok(()),
        }
    }

    /// A key's value and version as the run sees it.
    async fn state_value(&mut self, key: &str) -> Result<Option<StoredValue>, LevelError> {
        if let Seen::Written(value, version) = self.state.seen(key) {
            return Ok(value.map(|v| StoredValue {
                value: v.to_vec(),
                version,
            }));
        }
        let committed = self.state_store().get(&self.run.plugin, key).await?;
        self.state.remember(key, committed.clone());
        Ok(committed)
    }

    /// Writes `value` (none: deletes) to `key` after every check: the
    /// approved plan, `max_state_writes`, and the size quotas. Returns the
    /// key's new version.
    async fn state_write(
        &mut self,
        call: &mut Call,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<u64, LevelError> {
        let limits: Limits = self.gate().grant().limits.clone();
        if self.state.writes >= limits.max_state_writes {
            return Err(quota(
                call,
                "max_state_writes",
                format!("the run already made {} state writes", self.state.writes),
            ));
        }
        if let Some(v) = &value {
            let max = Limits::bytes(limits.max_state_value_kb);
            if v.len() > max {
                return Err(quota(
                    call,
                    "max_state_value_kb",
                    format!("the value is {} bytes; the quota is {max}", v.len()),
                ));
            }
        }
        if !self.state.knows(key) {
            let base = match self.state.remembered(key) {
                Some(read) => read,
                None => self.state_store().get(&self.run.plugin, key).await?,
            };
            self.state.track(key, base);
        }
        if !self.state.has_usage() {
            let usage = self.state_store().usage(&self.run.plugin).await?;
            self.state.set_usage(usage);
        }
        let after = self.state.usage_with(key, value.as_deref());
        if value.is_some() && after.keys > limits.max_state_keys {
            return Err(quota(
                call,
                "max_state_keys",
                format!(
                    "the plugin would hold {} keys; the quota is {}",
                    after.keys, limits.max_state_keys
                ),
            ));
        }
        let max_total = Limits::bytes(limits.max_state_total_kb) as u64;
        if value.is_some() && after.bytes > max_total {
            return Err(quota(
                call,
                "max_state_total_kb",
                format!(
                    "the plugin would hold {} bytes of keys and values; the quota is {max_total}",
                    after.bytes
                ),
            ));
        }
        let request = serde_json::json!({});
        if self.plans_writes() {
            call.dry_run = true;
            self.transport.plan(super::PlanEntry {
                operation: call.op.name(),
                targets: call.targets.clone(),
                request,
                names: Default::default(),
                needs: Vec::new(),
            });
        } else {
            self.gate()
                .check_planned(call.op, &call.targets, &request)
                .map_err(|r| refuse(call, r))?;
        }
        Ok(self.state.write(key, value))
    }
}

impl Host for LevelCtx {
    async fn get(&mut self, key: String) -> Result<Option<Entry>, LevelError> {
        host_call!(self, call, Operation::StateGet, [&key], {
            self.check_key(call, &key)?;
            Ok(self.state_value(&key).await?.map(|v| Entry {
                key: key.clone(),
                value: v.value,
                version: v.version,
            }))
        })
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<u64, LevelError> {
        host_call!(self, call, Operation::StateSet, [&key, &value], {
            self.check_key(call, &key)?;
            self.state_write(call, &key, Some(value)).await
        })
    }

    async fn delete(&mut self, key: String) -> Result<bool, LevelError> {
        host_call!(self, call, Operation::StateDelete, [&key], {
            self.check_key(call, &key)?;
            if self.state_value(&key).await?.is_none() {
                return Ok(false);
            }
            self.state_write(call, &key, None).await?;
            Ok(true)
        })
    }

    async fn list_entries(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: Option<u32>,
    ) -> Result<EntryPage, LevelError> {
        host_call!(
            self,
            call,
            Operation::StateList,
            [&prefix, &after, &limit],
            {
                call.targets.push(target(&format!("{prefix}*")));
                let limit = limit.unwrap_or(DEFAULT_PAGE);
                if !(1..=MAX_PAGE).contains(&limit) {
                    return Err(LevelError::invalid_input(format!(
                        "limit must be 1 to {MAX_PAGE}; it was {limit}"
                    )));
                }
                // Enough committed entries that the run's own deletions cannot
                // leave the page short while more follow.
                let store = self.state_store();
                let written = self.state.written_in(&prefix, after.as_deref());
                let ask = limit.saturating_add(u32::try_from(written.len()).unwrap_or(u32::MAX));
                let committed = store
                    .list(&self.run.plugin, &prefix, after.as_deref(), ask)
                    .await?;
                let more_committed = committed.len() as u64 >= u64::from(ask);
                let mut merged: Vec<Entry> = committed
                    .into_iter()
                    .filter(|(k, _)| !self.state.knows(k))
                    .map(|(key, v)| Entry {
                        key,
                        value: v.value,
                        version: v.version,
                    })
                    .chain(written.into_iter().filter_map(|(k, v, version)| {
                        v.map(|v| Entry {
                            key: k.to_owned(),
                            value: v.to_vec(),
                            version,
                        })
                    }))
                    .collect();
                merged.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
                let more = merged.len() > limit as usize || more_committed;
                merged.truncate(limit as usize);
                let next = more.then(|| merged.last().map(|e| e.key.clone())).flatten();
                Ok(EntryPage {
                    items: merged,
                    next,
                })
            }
        )
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<bool, LevelError> {
        host_call!(
            self,
            call,
            Operation::StateCompareAndSwap,
            [&key, &expected, &value],
            {
                self.check_key(call, &key)?;
                let now = self.state_value(&key).await?.map(|v| v.version);
                if now != expected {
                    return Ok(false);
                }
                self.state_write(call, &key, Some(value)).await?;
                Ok(true)
            }
        )
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, LevelError> {
        host_call!(self, call, Operation::StateIncrement, [&key, &delta], {
            self.check_key(call, &key)?;
            let now = match self.state_value(&key).await? {
                None => 0,
                Some(v) => std::str::from_utf8(&v.value)
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .ok_or_else(|| {
                        LevelError::invalid_input(format!(
                            "state key {key:?} does not hold an integer"
                        ))
                    })?,
            };
            let sum = now.checked_add(delta).ok_or_else(|| {
                LevelError::invalid_input(format!("{now} + {delta} overflows a 64-bit integer"))
            })?;
            self.state_write(call, &key, Some(sum.to_string().into_bytes()))
                .await?;
            Ok(sum)
        })
    }
}
