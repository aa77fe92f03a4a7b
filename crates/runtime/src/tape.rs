//! The clocks and random numbers a guest sees, recorded or replayed, so a
//! recorded run can be run again exactly (`levelhost run --record`,
//! `levelhost replay`).
//!
//! Recording reads the real clocks and keeps every value the guest was
//! given; random numbers come from a generator seeded with a recorded seed
//! (so a recorded run's "secure" random is that generator's, not the
//! system's). Replaying hands out the recorded values in order, and the last
//! one again once they run out.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand10::SeedableRng as _;
use serde::{Deserialize, Serialize};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// What a tape keeps: the seed and every clock reading the guest made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTape {
    /// The seed of the guest's random numbers.
    pub seed: u64,
    /// Wall-clock readings, in nanoseconds since the Unix epoch.
    pub wall_ns: Vec<u128>,
    /// Monotonic-clock readings, in nanoseconds.
    pub monotonic_ns: Vec<u64>,
}

#[derive(Debug)]
enum Mode {
    Record { started: Instant },
    Replay { wall_at: usize, monotonic_at: usize },
}

#[derive(Debug)]
struct State {
    mode: Mode,
    saved: SavedTape,
}

/// A run's clocks and random numbers; clones share one tape.
#[derive(Debug, Clone)]
pub struct Tape(Arc<Mutex<State>>);

impl Tape {
    /// A tape that records the real clocks, with a fresh random seed.
    pub fn record() -> Self {
        Self::new(
            Mode::Record {
                started: Instant::now(),
            },
            SavedTape {
                seed: rand::random(),
                ..SavedTape::default()
            },
        )
    }

    /// A tape that plays `saved` back.
    pub fn replay(saved: SavedTape) -> Self {
        Self::new(
            Mode::Replay {
                wall_at: 0,
                monotonic_at: 0,
            },
            saved,
        )
    }

    fn new(mode: Mode, saved: SavedTape) -> Self {
        Self(Arc::new(Mutex::new(State { mode, saved })))
    }

    /// What the tape holds now.
    pub fn saved(&self) -> SavedTape {
        self.state().saved.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the guest this tape's clocks and random numbers.
    pub(crate) fn install(&self, wasi: &mut WasiCtxBuilder) {
        let seed = self.state().saved.seed;
        wasi.wall_clock(WallClock(self.clone()))
            .monotonic_clock(MonotonicClock(self.clone()))
            .secure_random(rand10::rngs::StdRng::seed_from_u64(seed))
            .insecure_random(rand10::rngs::StdRng::seed_from_u64(seed.rotate_left(32)))
            .insecure_random_seed(u128::from(seed));
    }

    fn wall(&self) -> u128 {
        let mut state = self.state();
        let State { mode, saved } = &mut *state;
        match mode {
            Mode::Record { .. } => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                saved.wall_ns.push(now);
                now
            }
            Mode::Replay { wall_at, .. } => next(&saved.wall_ns, wall_at),
        }
    }

    fn monotonic(&self) -> u64 {
        let mut state = self.state();
        let State { mode, saved } = &mut *state;
        match mode {
            Mode::Record { started } => {
                let now = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                saved.monotonic_ns.push(now);
                now
            }
            Mode::Replay { monotonic_at, .. } => next(&saved.monotonic_ns, monotonic_at),
        }
    }
}

/// The reading at `*at` (then the next one), or the last once they run out.
fn next<T: Copy + Default>(readings: &[T], at: &mut usize) -> T {
    let value = readings
        .get(*at)
        .or(readings.last())
        .copied()
        .unwrap_or_default();
    *at += 1;
    value
}

struct WallClock(Tape);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let ns = self.0.wall();
        Duration::new(
            u64::try_from(ns / 1_000_000_000).unwrap_or(u64::MAX),
            u32::try_from(ns % 1_000_000_000).unwrap_or(0),
        )
    }
}

struct MonotonicClock(Tape);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.monotonic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_tape_gives_back_what_was_recorded_then_its_last_value() {
        let recording = Tape::record();
        let first = (recording.wall(), recording.monotonic());
        let second = (recording.wall(), recording.monotonic());
        let replay = Tape::replay(recording.saved());
        assert_eq!((replay.wall(), replay.monotonic()), first);
        assert_eq!((replay.wall(), replay.monotonic()), second);
        assert_eq!((replay.wall(), replay.monotonic()), second);
        assert_eq!(replay.saved().seed, recording.saved().seed);
    }
}
