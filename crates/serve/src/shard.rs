//! Which replica claims which schedule: each schedule belongs to one live
//! replica, chosen by rendezvous (highest random weight) hashing over the
//! replicas that heartbeat in the shared history. Only that replica claims
//! the schedule's planned times, so the database's work per schedule does
//! not grow with the number of replicas.
//!
//! The claim itself stays the guarantee: two replicas that briefly both
//! believe they own a schedule (one has not yet seen the other join) still
//! start each planned time once, because a planned time is claimed by one
//! insert. What sharding adds is a duty not to miss one: a replica that
//! stops answering keeps its schedules until its lease lapses, and the
//! replica that then owns each of them takes it over by running the planned
//! times missed since the last one on record, within [`Shard::takeover`].
//!
//! Rendezvous hashing moves only the schedules of a replica that leaves or
//! joins, and a replica always counts itself: whatever a replica's view of
//! the others, the owner over the replicas truly alive owns the schedule in
//! its own view too (it has the highest weight among all of them, so among
//! any of them). A schedule is never left without a replica that believes it
//! owns it, except for a stopped replica's, until the lease says so.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

/// The replicas a `serve` shares its schedules with, as its last heartbeat saw them.
pub struct Shard {
    /// This replica's id; `None` when the history is not shared (every schedule is its own).
    me: Option<String>,
    /// The live replicas (heartbeat within the lease), this one included.
    live: watch::Sender<Arc<[String]>>,
    /// A replica silent for longer than this is no longer live.
    lease: Duration,
}

impl Shard {
    /// The shard of a replica `me` (or of a `serve` alone when `None`).
    pub fn new(me: Option<String>, lease: Duration) -> Self {
        let live: Arc<[String]> = me.iter().cloned().collect();
        Self {
            me,
            live: watch::channel(live).0,
            lease,
        }
    }

    /// Whether this replica claims `schedule` of `plugin`.
    pub fn owns(&self, plugin: &str, schedule: &str) -> bool {
        let Some(me) = &self.me else { return true };
        // `live` always holds `me` (see `new` and `update`).
        owner(
            self.live.borrow().iter().map(String::as_str),
            plugin,
            schedule,
        ) == Some(me.as_str())
    }

    /// Takes the live replicas read from the history (its own heartbeat included or not).
    /// Returns whether the set changed.
    pub fn update(&self, mut live: Vec<String>) -> bool {
        if let Some(me) = &self.me
            && !live.contains(me)
        {
            live.push(me.clone());
        }
        live.sort_unstable();
        live.dedup();
        self.live.send_if_modified(|now| {
            if **now == *live {
                return false;
            }
            *now = live.into();
            true
        })
    }

    /// Says when the live replicas change.
    pub fn watch(&self) -> watch::Receiver<Arc<[String]>> {
        self.live.subscribe()
    }

    /// The live replicas as last seen, this one included (for the console and the logs).
    pub fn live(&self) -> Arc<[String]> {
        self.live.borrow().clone()
    }

    /// How far back a replica taking a schedule over runs the planned times
    /// it finds missed: a stopped owner is live for a lease after its last
    /// heartbeat, and the others see it gone at their next one (a quarter
    /// lease later); twice the lease covers both with room.
    pub fn takeover(&self) -> Duration {
        self.lease * 2
    }

    /// Whether schedules are shared with other replicas at all.
    pub fn shared(&self) -> bool {
        self.me.is_some()
    }
}

/// The replica among `replicas` with the highest weight for the schedule:
/// its owner. `None` only when there is no replica.
pub fn owner<'a>(
    replicas: impl IntoIterator<Item = &'a str>,
    plugin: &str,
    schedule: &str,
) -> Option<&'a str> {
    replicas
        .into_iter()
        .map(|replica| (weight(replica, plugin, schedule), replica))
        .max()
        .map(|(_, replica)| replica)
}

/// A replica's weight for a schedule: the first 8 bytes of a SHA-256 over
/// the three, length-prefixed so no two triples share an input. SHA-256,
/// not the standard library's hasher, so every build of levelhost agrees
/// (replicas of two versions during an upgrade included).
fn weight(replica: &str, plugin: &str, schedule: &str) -> u64 {
    let mut hash = Sha256::new();
    for part in [replica, plugin, schedule] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn schedules() -> Vec<(String, String)> {
        (0..3000)
            .map(|i| (format!("plugin{}", i / 3), format!("{}:* * * * *", i % 3)))
            .collect()
    }

    #[test]
    fn schedules_spread_evenly_over_the_replicas() {
        let replicas = ["replica-a", "replica-b", "replica-c"];
        let mut counts = BTreeMap::new();
        for (plugin, schedule) in schedules() {
            *counts
                .entry(owner(replicas, &plugin, &schedule).unwrap())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        for (replica, n) in counts {
            // 1000 expected each; a fair split stays well within ±15%.
            assert!((850..=1150).contains(&n), "{replica} owns {n} of 3000");
        }
    }

    #[test]
    fn a_replica_leaving_moves_only_its_own_schedules() {
        let three = ["replica-a", "replica-b", "replica-c"];
        let two = ["replica-a", "replica-c"];
        for (plugin, schedule) in schedules() {
            let before = owner(three, &plugin, &schedule).unwrap();
            let after = owner(two, &plugin, &schedule).unwrap();
            if before != "replica-b" {
                assert_eq!(before, after, "{plugin} {schedule} moved");
            }
        }
    }

    #[test]
    fn the_true_owner_owns_in_any_view_that_holds_it() {
        let all = ["r1", "r2", "r3", "r4"];
        for (plugin, schedule) in schedules().into_iter().take(300) {
            let true_owner = owner(all, &plugin, &schedule).unwrap();
            // Every subset of the others, plus the owner itself.
            for mask in 0..16u32 {
                let view: Vec<&str> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, r)| mask & (1 << i) != 0 || **r == true_owner)
                    .map(|(_, r)| *r)
                    .collect();
                let shard = Shard::new(Some(true_owner.to_owned()), Duration::from_secs(3));
                shard.update(view.iter().map(|r| (*r).to_owned()).collect());
                assert!(shard.owns(&plugin, &schedule), "{view:?} {plugin}");
            }
        }
    }

    #[test]
    fn a_serve_alone_owns_everything_and_a_replica_counts_itself() {
        let alone = Shard::new(None, Duration::from_secs(3));
        assert!(alone.owns("p", "0:* * * * *"));
        assert!(!alone.shared());
        let replica = Shard::new(Some("me".to_owned()), Duration::from_secs(3));
        // Its own heartbeat not yet seen: it still counts itself.
        assert!(!replica.update(Vec::new()));
        assert_eq!(&*replica.live(), ["me".to_owned()]);
        assert!(replica.owns("p", "0:* * * * *"));
        assert!(replica.update(vec!["other".to_owned(), "me".to_owned()]));
        assert!(!replica.update(vec!["me".to_owned(), "other".to_owned()]));
    }
}
