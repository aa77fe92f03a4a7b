//! What started a run, as the history records it and the plugin is told.

use levelhost_runtime::runner::Trigger;

/// What started a run: the one description of it, for the history and for the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// By hand.
    Manual,
    /// A schedule, at its planned time.
    Schedule {
        /// The schedule's key in the history (its index and pattern).
        schedule: String,
        /// The planned time (ISO-8601 UTC).
        planned: String,
    },
    /// A Level event.
    Event {
        /// The event's id: one run per id.
        event_id: String,
        /// The event type, such as `alert_active`.
        event_type: String,
    },
}

impl Origin {
    /// `manual`, `schedule` or `event`, as recorded.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Manual => "manual",
            Origin::Schedule { .. } => "schedule",
            Origin::Event { .. } => "event",
        }
    }

    /// What the plugin is told started it.
    pub fn trigger(&self) -> Trigger {
        match self {
            Origin::Manual => Trigger::Manual,
            Origin::Schedule { planned, .. } => Trigger::Schedule {
                planned: planned.clone(),
            },
            Origin::Event { event_type, .. } => Trigger::Event {
                event_type: event_type.clone(),
            },
        }
    }
}
