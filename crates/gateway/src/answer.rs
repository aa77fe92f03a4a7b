//! What a host call returned, back in Level's own JSON: each `level:api`
//! record turned into the `level_api::model` object Level (and the
//! simulator) answers with, after the gate filtered it field by field (a tag
//! or custom field outside the grant's scopes is already gone). Records that
//! are Level's objects field for field convert with `From` (the runtime's
//! one list of their fields); these are the ones with variants or filters.

use level_api::model;
use levelhost_runtime::bindings::{alerts, groups};

/// A group as Level shows it; `shown` says whether this answer carries the
/// group's own custom field values (a group's show does, a list does not).
pub fn group(g: groups::Group, shown: bool) -> model::Group {
    model::Group {
        id: g.id,
        parent_id: g.parent_id,
        child_ids: g.child_ids,
        name: g.name,
        device_count: g.device_count,
        descendent_device_count: g.descendent_device_count,
        custom_fields: shown.then(|| {
            g.custom_fields
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect()
        }),
    }
}

/// An alert as Level shows it.
pub fn alert(a: alerts::Alert) -> model::Alert {
    model::Alert {
        id: a.id,
        device_id: a.device_id,
        device_hostname: a.device_hostname,
        name: a.name,
        description: a.description,
        payload: a.payload,
        severity: match a.severity {
            alerts::Severity::Information => "information".to_owned(),
            alerts::Severity::Warning => "warning".to_owned(),
            alerts::Severity::Critical => "critical".to_owned(),
            alerts::Severity::Emergency => "emergency".to_owned(),
            alerts::Severity::Other(other) => other,
        },
        is_resolved: a.is_resolved,
        started_at: a.started_at,
        resolved_at: a.resolved_at,
    }
}

/// A list page in Level's envelope.
pub fn page<T>(data: Vec<T>, has_more: bool) -> model::Page<T> {
    model::Page { data, has_more }
}
