//! Schedules: each walks its cron occurrences one by one from a cursor, so
//! a late wake-up fires (or records as skipped) the occurrences it missed
//! instead of losing them, and catches up once on start-up. The time
//! arithmetic is in two pure functions, [`next_fire`] and [`catch_up`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::executor::Busy;
use crate::executor::Origin;
use crate::history::RunStatus;
use crate::plugin::{CatchUp, Overlap, Schedule};
use crate::service::Service;

/// The next run of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// Its planned time (the next cursor).
    pub planned: DateTime<Utc>,
    /// How long to wait for it from `now` (zero when it is already due), before jitter.
    pub wait: Duration,
}

/// The first occurrence of `schedule` after `cursor`, and how long after
/// `now` it is due. Walking from the last planned time (not from `now`) is
/// what keeps a late wake-up from skipping occurrences.
/// `None` when no date matches the schedule.
pub fn next_fire(schedule: &Schedule, cursor: DateTime<Utc>, now: DateTime<Utc>) -> Option<Fire> {
    let planned = schedule.next_after(cursor)?;
    let wait = planned
        .signed_duration_since(now)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Some(Fire { planned, wait })
}

/// The planned time to catch up on start-up: the latest occurrence before
/// `now`, if it is later than `last` (the last planned time on record) and
/// within the schedule's catch-up window.
pub fn catch_up(
    schedule: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if schedule.catch_up != CatchUp::Once {
        return None;
    }
    let missed = schedule
        .cron
        .find_previous_occurrence(&now.with_timezone(&schedule.timezone), false)
        .ok()?
        .with_timezone(&Utc);
    let within = now
        .signed_duration_since(missed)
        .to_std()
        .is_ok_and(|d| d <= schedule.catch_up_window);
    (missed > last && within).then_some(missed)
}

/// A schedule's key in the history: its index and pattern, so editing a pattern starts a new series.
pub(crate) fn schedule_key(index: usize, schedule: &Schedule) -> String {
    format!("{index}:{}", schedule.pattern)
}

impl Service {
    pub(crate) async fn schedule_loop(
        self: Arc<Self>,
        plugin: String,
        index: usize,
        schedule: Schedule,
    ) {
        let key = schedule_key(index, &schedule);
        let mut stopping = self.stopping.clone();
        // In a cluster, only the replica that owns the schedule claims its
        // planned times; it learns of changes from its heartbeat.
        let mut members = self.shard.watch();
        let mut owned = self.shard.owns(&plugin, &key);
        // Catch up once for the latest planned time missed while the host was down.
        let last = if owned && schedule.catch_up == CatchUp::Once {
            self.last_planned(&plugin, &key).await
        } else {
            None
        };
        if let Some(last) = last
            && let Some(missed) = catch_up(&schedule, last, Utc::now())
        {
            tracing::info!(plugin, planned = %missed, "catching up a run missed while the host was down");
            self.fire(&plugin, &key, &schedule, missed).await;
        }
        // Walk the occurrences one by one from a cursor, so a late wake-up fires
        // (or records as skipped) the occurrences it missed instead of losing them.
        let mut cursor = Utc::now();
        loop {
            let Some(Fire { planned, wait }) = next_fire(&schedule, cursor, Utc::now()) else {
                tracing::error!(plugin, schedule = %schedule.pattern, "no next run: no date matches the schedule");
                return;
            };
            cursor = planned;
            let next = planned;
            let jitter = if schedule.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_millis(rand::random_range(0..=schedule.jitter.as_millis() as u64))
            };
            let due = tokio::time::Instant::now() + wait + jitter;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    // (The guard `wait_for` answers is dropped inside, not held across the branches.)
                    () = async { drop(stopping.wait_for(|s| *s).await) } => return,
                    Ok(()) = members.changed(), if self.shard.shared() => {
                        owned = self.ownership(&plugin, &key, &schedule, owned).await;
                    }
                }
            }
            if self.is_stopping() {
                return;
            }
            owned = self.ownership(&plugin, &key, &schedule, owned).await;
            if owned {
                self.fire(&plugin, &key, &schedule, next).await;
            }
        }
    }

    /// The latest planned time of the schedule on record (any replica's),
    /// if there is one and it can be read.
    async fn last_planned(&self, plugin: &str, key: &str) -> Option<DateTime<Utc>> {
        let last = self.history.last_planned(plugin, key).await.ok()??;
        DateTime::parse_from_rfc3339(&last)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether this replica owns the schedule now; when it has just come to
    /// own it, it first takes it over: the planned times since the last one
    /// on record (within [`Shard::takeover`](crate::shard::Shard::takeover))
    /// that the replica owning it before may have missed by stopping.
    async fn ownership(
        self: &Arc<Self>,
        plugin: &str,
        key: &str,
        schedule: &Schedule,
        owned: bool,
    ) -> bool {
        let owns = self.shard.owns(plugin, key);
        if owns && !owned {
            let now = Utc::now();
            let window = chrono::Duration::from_std(self.shard.takeover()).unwrap_or_default();
            let mut cursor = now - window;
            if let Some(last) = self.last_planned(plugin, key).await {
                cursor = cursor.max(last);
            }
            let mut missed = 0usize;
            while let Some(planned) = schedule.next_after(cursor)
                && planned <= now
            {
                self.fire(plugin, key, schedule, planned).await;
                cursor = planned;
                missed += 1;
            }
            tracing::debug!(
                plugin,
                schedule = key,
                missed,
                "this replica took the schedule over"
            );
        } else if owned && !owns {
            tracing::debug!(
                plugin,
                schedule = key,
                "another replica took the schedule over"
            );
        }
        owns
    }

    /// Starts the run planned for `planned`, claiming it first so it starts at most once.
    async fn fire(
        self: &Arc<Self>,
        plugin: &str,
        key: &str,
        schedule: &Schedule,
        planned: DateTime<Utc>,
    ) {
        let plugins = self.plugins();
        let Some(installed) = plugins.get(plugin) else {
            return;
        };
        let planned_at = level_api::clock::timestamp(planned);
        let origin = Origin::Schedule {
            schedule: key.to_owned(),
            planned: planned_at.clone(),
        };
        let late = (Utc::now() - planned).to_std().unwrap_or_default();
        self.metrics().lateness(plugin, late);
        // While one of its plans waits for a person, a schedule makes no
        // second plan: a person decides on one plan at a time.
        if installed.served.approval.is_some() {
            let waiting = self
                .history
                .list(Some(plugin), Some(RunStatus::AwaitingApproval), 1)
                .await;
            if let Ok(rows) = &waiting
                && let Some(row) = rows.first()
            {
                let why = format!("the plan of run {} still waits for approval", row.id);
                tracing::info!(plugin, planned = %planned_at, "skipped: {why}");
                self.skip(plugin, origin, &why);
                return;
            }
        }
        let guard = match schedule.overlap {
            Overlap::Skip => match installed.lock.clone().try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    tracing::info!(plugin, planned = %planned_at, "skipped: the previous run is still going");
                    self.skip(plugin, origin, "the previous run was still running");
                    return;
                }
            },
            // Queued runs start from their own task, so the schedule keeps its time.
            Overlap::Queue => {
                let service = self.clone();
                let (plugin, schedule, origin) = (plugin.to_owned(), schedule.clone(), origin);
                self.spawn(async move {
                    let plugins = service.plugins();
                    let Some(installed) = plugins.get(&plugin) else {
                        return;
                    };
                    let guard = installed.lock.clone().lock_owned().await;
                    if service.is_stopping() {
                        return;
                    }
                    let input = schedule
                        .input
                        .clone()
                        .unwrap_or_else(|| installed.served.input.clone());
                    service
                        .execute(&plugin, origin, input, guard, Busy::Wait)
                        .await;
                });
                return;
            }
        };
        let input = schedule
            .input
            .clone()
            .unwrap_or_else(|| installed.served.input.clone());
        let service = self.clone();
        let plugin = plugin.to_owned();
        self.spawn(async move {
            service
                .execute(&plugin, origin, input, guard, Busy::Skip)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn schedule(pattern: &str, timezone: chrono_tz::Tz, catch_up: CatchUp) -> Schedule {
        Schedule {
            pattern: pattern.to_owned(),
            cron: pattern.parse().unwrap(),
            timezone,
            input: None,
            overlap: Overlap::Skip,
            catch_up,
            catch_up_window: Duration::from_secs(3600),
            jitter: Duration::ZERO,
        }
    }

    fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, s).unwrap()
    }

    #[test]
    fn the_next_fire_is_the_first_occurrence_after_the_cursor() {
        let every_minute = schedule("* * * * *", chrono_tz::UTC, CatchUp::Skip);
        let cursor = utc(12, 0, 30);
        let fire = next_fire(&every_minute, cursor, utc(12, 0, 40)).unwrap();
        assert_eq!(fire.planned.with_timezone(&Utc), utc(12, 1, 0));
        assert_eq!(fire.wait, Duration::from_secs(20));
    }

    #[test]
    fn a_late_wake_up_walks_every_missed_occurrence_without_waiting() {
        let every_minute = schedule("* * * * *", chrono_tz::UTC, CatchUp::Skip);
        let mut cursor = utc(12, 0, 0);
        let now = utc(12, 3, 30);
        let mut fired = Vec::new();
        loop {
            let fire = next_fire(&every_minute, cursor, now).unwrap();
            if !fire.wait.is_zero() {
                assert_eq!(fire.wait, Duration::from_secs(30));
                break;
            }
            fired.push(fire.planned.with_timezone(&Utc));
            cursor = fire.planned;
        }
        assert_eq!(fired, [utc(12, 1, 0), utc(12, 2, 0), utc(12, 3, 0)]);
    }

    #[test]
    fn schedules_read_their_pattern_in_their_time_zone() {
        // 09:00 in New York is 14:00 UTC in March before daylight saving time.
        let nine = schedule("0 9 * * *", chrono_tz::America::New_York, CatchUp::Skip);
        let cursor = utc(0, 0, 0);
        let fire = next_fire(&nine, cursor, utc(0, 0, 0)).unwrap();
        assert_eq!(fire.planned.with_timezone(&Utc), utc(14, 0, 0));
    }

    #[test]
    fn catch_up_fires_once_for_the_latest_missed_time_within_the_window() {
        let hourly = schedule("0 * * * *", chrono_tz::UTC, CatchUp::Once);
        // Last run at 09:00; down until 12:20: the 12:00 run is caught up, not 10:00 or 11:00.
        assert_eq!(
            catch_up(&hourly, utc(9, 0, 0), utc(12, 20, 0)),
            Some(utc(12, 0, 0))
        );
        // Nothing missed since the last run.
        assert_eq!(catch_up(&hourly, utc(12, 0, 0), utc(12, 20, 0)), None);
        // Outside the one-hour window.
        let mut short = hourly.clone();
        short.catch_up_window = Duration::from_secs(600);
        assert_eq!(catch_up(&short, utc(9, 0, 0), utc(12, 20, 0)), None);
        // Catch-up off.
        let off = schedule("0 * * * *", chrono_tz::UTC, CatchUp::Skip);
        assert_eq!(catch_up(&off, utc(9, 0, 0), utc(12, 20, 0)), None);
    }
}
