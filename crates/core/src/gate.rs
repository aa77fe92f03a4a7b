//! The gate: the one place that decides whether a plugin's call may go
//! ahead. Every `level:api` host function asks it before doing anything,
//! and again once the call's targets are known. It checks, in order: the
//! capability, the size of the data passed in, the resource scopes, and the
//! run's budgets (API calls, writes, devices changed). A run applying an
//! approved plan is asked a last question before each write leaves: is this
//! write in the plan ([`Gate::check_planned`])? Nothing else in levelhost
//! grants or refuses.

use std::collections::HashSet;

use crate::capability::{Capability, Operation};
use crate::grant::{Grant, Limits, ResolvedScopes};
use crate::plan::{ApprovedPlan, PlanEntry};
use crate::route;

/// What a call touches, as far as the host knows it: its direct targets and
/// the objects its effect reaches indirectly (the devices carrying a deleted
/// tag, the devices below a forced custom field value). Both are checked
/// against the scopes and counted against the budgets alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Devices touched, directly or not, with the group each is in.
    pub devices: Vec<(String, Option<String>)>,
    /// Groups touched.
    pub groups: Vec<String>,
    /// The organization level itself: a custom field value with no target, a
    /// new root group, a definition every group sees, or any effect not
    /// confined to listed objects (an automation left to pick its own devices).
    pub organization: bool,
    /// Capabilities the call's effect needs besides its operation's own (a
    /// forced value also removes the values below it: `custom-field-values:delete`).
    pub needs: Vec<Capability>,
    /// Tag names touched.
    pub tags: Vec<String>,
    /// Custom field names touched.
    pub custom_fields: Vec<String>,
    /// Automation webhook tokens touched. The audit and plans name each by
    /// [`automation_target`], never by the token itself.
    pub automations: Vec<String>,
    /// Other ids the call names (tags, custom fields, alerts), for the audit log only.
    pub others: Vec<String>,
}

impl Facts {
    /// The ids of everything touched, for the audit log.
    pub fn targets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.devices.iter().map(|(id, _)| id.clone()).collect();
        out.extend(self.groups.iter().cloned());
        out.extend(self.tags.iter().map(|t| format!("tag:{t}")));
        out.extend(
            self.custom_fields
                .iter()
                .map(|f| format!("custom-field:{f}")),
        );
        out.extend(self.automations.iter().map(|t| automation_target(t)));
        out.extend(self.others.iter().cloned());
        out.dedup();
        out
    }
}

/// How a plan and the audit name an automation webhook: `automation:` and
/// the first 16 hex digits of the token's SHA-256. The token is a credential
/// (whoever holds it can trigger the automation), so it is never written;
/// the fingerprint tells two webhooks apart and cannot be turned back into
/// a token.
///
/// ```
/// let a = levelhost_core::gate::automation_target("whk_restart");
/// assert!(a.starts_with("automation:") && !a.contains("whk_restart"));
/// assert_ne!(a, levelhost_core::gate::automation_target("whk_wipe"));
/// ```
pub fn automation_target(token: &str) -> String {
    let digest = crate::digest(token.as_bytes());
    let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
    format!("automation:{}", &hex[..hex.len().min(16)])
}

/// Why the gate said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The grant does not allow it. Returned to the plugin as `denied`.
    #[error("denied: {reason}")]
    Denied {
        /// The capability the call needs and the grant lacks; empty when the
        /// grant has it and its scopes or the approved plan refused the call.
        capability: String,
        /// Why.
        reason: String,
    },
    /// A limit of the run was reached. Ends the run.
    #[error("limit {limit} exceeded: {detail}")]
    Limit {
        /// The limit's name, as in the config (`max_writes`).
        limit: &'static str,
        /// What happened.
        detail: String,
    },
}

/// The gate of one run.
#[derive(Debug)]
pub struct Gate {
    grant: Grant,
    scopes: ResolvedScopes,
    api_calls: u64,
    writes: u64,
    devices_changed: HashSet<String>,
    plan: Option<ApprovedPlan>,
    /// The devices changed before the last write was counted, so a write
    /// the approved plan then refuses is not counted either.
    before_last_write: Option<HashSet<String>>,
    /// Requests made to the grant's connections.
    http_requests: u64,
    /// Bytes sent to and received from them.
    http_bytes: u64,
}

impl Gate {
    /// A gate for one run of `grant`, with its scopes resolved.
    pub fn new(grant: Grant, scopes: ResolvedScopes) -> Self {
        Self {
            grant,
            scopes,
            api_calls: 0,
            writes: 0,
            devices_changed: HashSet::new(),
            plan: None,
            before_last_write: None,
            http_requests: 0,
            http_bytes: 0,
        }
    }

    /// The grant.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The resolved scopes.
    pub fn scopes(&self) -> &ResolvedScopes {
        &self.scopes
    }

    /// Level requests made so far.
    pub fn api_calls(&self) -> u64 {
        self.api_calls
    }

    /// Writes allowed so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// The first check of every call: the capability, then the size of what the plugin passed in.
    pub fn admit(&self, op: Operation, arg_bytes: usize) -> Result<(), Refusal> {
        let cap = op.capability();
        if !self.grant.capabilities.contains(&cap) {
            return Err(Refusal::Denied {
                capability: cap.to_string(),
                reason: format!(
                    "{} needs {cap}, which the grant of {} does not include",
                    op.name(),
                    self.grant.plugin
                ),
            });
        }
        let max = Limits::bytes(self.grant.limits.max_call_kb);
        if arg_bytes > max {
            return Err(Refusal::Limit {
                limit: "max_call_kb",
                detail: format!(
                    "{} was passed {arg_bytes} bytes; the limit is {max}",
                    op.name()
                ),
            });
        }
        Ok(())
    }

    /// Counts one Level request against `max_api_calls`.
    pub fn spend_call(&mut self) -> Result<(), Refusal> {
        if self.api_calls >= self.grant.limits.max_api_calls {
            return Err(Refusal::Limit {
                limit: "max_api_calls",
                detail: format!("the run already made {} Level calls", self.api_calls),
            });
        }
        self.api_calls += 1;
        Ok(())
    }

    /// The second check, once the targets are known: scopes, then the write budgets.
    pub fn authorize(&mut self, op: Operation, facts: &Facts) -> Result<(), Refusal> {
        self.check_scopes(op, facts)?;
        if op.is_write() {
            self.spend_write(op, facts)?;
        }
        Ok(())
    }

    /// The scope half of [`Gate::authorize`], spending nothing: the host asks
    /// it early, before looking up a call's indirect targets it would refuse anyway.
    pub fn check_scopes(&self, op: Operation, facts: &Facts) -> Result<(), Refusal> {
        let deny = |reason: String| Refusal::Denied {
            capability: String::new(),
            reason: format!("the grant's scopes refuse it: {reason}"),
        };
        for needed in &facts.needs {
            if !self.grant.capabilities.contains(needed) {
                return Err(Refusal::Denied {
                    capability: needed.to_string(),
                    reason: format!(
                        "this {} also needs {needed}, which the grant of {} does not include",
                        op.name(),
                        self.grant.plugin
                    ),
                });
            }
        }
        for (id, group) in &facts.devices {
            if !self.device_in_scope(group.as_deref()) {
                return Err(deny(format!("device {id} is outside the grant's groups")));
            }
        }
        for id in &facts.groups {
            if !self.group_in_scope(id) {
                return Err(deny(format!("group {id} is outside the grant's groups")));
            }
        }
        if facts.organization && self.scopes.group_ids.is_some() {
            return Err(deny(
                "the grant is limited to some groups, so it cannot act at the organization level"
                    .to_owned(),
            ));
        }
        for tag in &facts.tags {
            if !self.tag_in_scope(tag) {
                return Err(deny(format!("tag {tag:?} is outside the grant's tags")));
            }
        }
        for field in &facts.custom_fields {
            if !self.field_in_scope(field) {
                return Err(deny(format!(
                    "custom field {field:?} is outside the grant's custom fields"
                )));
            }
        }
        for token in &facts.automations {
            if !self
                .scopes
                .automations
                .as_ref()
                .is_none_or(|a| a.contains(token))
            {
                return Err(deny(
                    "this automation webhook is outside the grant's automations".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Counts a write and the devices it changes against the budgets.
    fn spend_write(&mut self, op: Operation, facts: &Facts) -> Result<(), Refusal> {
        let limits = &self.grant.limits;
        if self.writes >= limits.max_writes {
            return Err(Refusal::Limit {
                limit: "max_writes",
                detail: format!("the run already made {} writes", self.writes),
            });
        }
        let mut changed = self.devices_changed.clone();
        changed.extend(facts.devices.iter().map(|(id, _)| id.clone()));
        if changed.len() as u64 > limits.max_devices_changed {
            return Err(Refusal::Limit {
                limit: "max_devices_changed",
                detail: format!(
                    "{} would change {} devices in this run; the limit is {}",
                    op.name(),
                    changed.len(),
                    limits.max_devices_changed
                ),
            });
        }
        self.writes += 1;
        self.before_last_write = Some(std::mem::replace(&mut self.devices_changed, changed));
        Ok(())
    }

    /// Decides a request to another system, before anything is sent: the
    /// grant must name the connection and a route on it that matches the
    /// method and the normalised path; the request is then counted against
    /// `max_http_requests`. A write counts against `max_writes` too.
    pub fn authorize_request(
        &mut self,
        connection: &str,
        method: &str,
        path: &route::RequestPath,
    ) -> Result<(), Refusal> {
        let deny = |reason: String| Refusal::Denied {
            capability: String::new(),
            reason,
        };
        let Some(granted) = self.grant.connections.get(connection) else {
            let known: Vec<&str> = self.grant.connections.keys().map(String::as_str).collect();
            return Err(deny(format!(
                "the grant of {} names no connection {connection:?} (it may call: {})",
                self.grant.plugin,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        };
        if !granted.routes.iter().any(|r| r.matches(method, path)) {
            let routes: Vec<String> = granted.routes.iter().map(ToString::to_string).collect();
            return Err(deny(format!(
                "{method} {} is not a route of connection {connection} in the grant of {} (its routes: {})",
                path.decoded(),
                self.grant.plugin,
                routes.join(", ")
            )));
        }
        let limits = &self.grant.limits;
        if self.http_requests >= limits.max_http_requests {
            return Err(Refusal::Limit {
                limit: "max_http_requests",
                detail: format!(
                    "the run already made {} requests to its connections",
                    self.http_requests
                ),
            });
        }
        if !route::reads_only(method) && self.writes >= limits.max_writes {
            return Err(Refusal::Limit {
                limit: "max_writes",
                detail: format!("the run already made {} writes", self.writes),
            });
        }
        self.http_requests += 1;
        if !route::reads_only(method) {
            self.writes += 1;
            self.before_last_write = Some(self.devices_changed.clone());
        }
        Ok(())
    }

    /// Counts bytes sent to or received from a connection against `max_http_kb`.
    pub fn spend_http_bytes(&mut self, bytes: u64) -> Result<(), Refusal> {
        let max = self.grant.limits.max_http_kb.saturating_mul(1024);
        self.http_bytes = self.http_bytes.saturating_add(bytes);
        if self.http_bytes > max {
            return Err(Refusal::Limit {
                limit: "max_http_kb",
                detail: format!(
                    "the run's requests to its connections moved {} bytes; the limit is {max}",
                    self.http_bytes
                ),
            });
        }
        Ok(())
    }

    /// Requests made to the grant's connections so far.
    pub fn http_requests(&self) -> u64 {
        self.http_requests
    }

    /// Holds the run to an approved plan: from now on a write the plan
    /// does not hold is denied.
    pub fn hold_to(&mut self, plan: ApprovedPlan) {
        self.plan = Some(plan);
    }

    /// The last check of a write in a run holding an approved plan, just
    /// before it is sent: is it one of the plan's writes? Uses that write up.
    pub fn check_planned(
        &mut self,
        op: Operation,
        targets: &[String],
        request: &serde_json::Value,
    ) -> Result<(), Refusal> {
        self.check_planned_named(&op.name(), targets, request)
    }

    /// [`Gate::check_planned`] for an operation known by its name (an
    /// outbound request is [`route::HTTP_OPERATION`]).
    pub fn check_planned_named(
        &mut self,
        op: &str,
        targets: &[String],
        request: &serde_json::Value,
    ) -> Result<(), Refusal> {
        let Some(plan) = &mut self.plan else {
            return Ok(());
        };
        plan.admit(op, targets, request).map_err(|why| {
            // The write was counted when its targets were authorized; it is not made.
            if let Some(before) = self.before_last_write.take() {
                self.devices_changed = before;
                self.writes = self.writes.saturating_sub(1);
            }
            Refusal::Denied {
                capability: String::new(),
                reason: format!("not in the approved plan: {why}"),
            }
        })
    }

    /// The real run created an object the plan named `planned`; Level gave it `real`.
    pub fn note_created(&mut self, planned: &str, real: &str) {
        if let Some(plan) = &mut self.plan {
            plan.created(planned, real);
        }
    }

    /// For a run holding an approved plan: why each write outside it was
    /// denied, and the planned writes it did not make.
    pub fn plan_outcome(&self) -> Option<(Vec<String>, Vec<PlanEntry>)> {
        self.plan
            .as_ref()
            .map(|p| (p.divergence().to_vec(), p.unapplied()))
    }

    /// Distinct devices changed so far.
    pub fn devices_changed(&self) -> u64 {
        self.devices_changed.len() as u64
    }

    /// Brings a group created under an in-scope parent into scope: a scope is a subtree.
    pub fn adopt_group(&mut self, id: &str, parent: Option<&str>) {
        if let (Some(ids), Some(parent)) = (&mut self.scopes.group_ids, parent)
            && ids.contains(parent)
        {
            ids.insert(id.to_owned());
        }
    }

    /// Whether a device in `group` is visible to the plugin.
    pub fn device_in_scope(&self, group: Option<&str>) -> bool {
        match &self.scopes.group_ids {
            None => true,
            Some(ids) => group.is_some_and(|g| ids.contains(g)),
        }
    }

    /// Whether a group is visible to the plugin.
    pub fn group_in_scope(&self, id: &str) -> bool {
        self.scopes
            .group_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(id))
    }

    /// Whether a tag is visible to the plugin.
    pub fn tag_in_scope(&self, name: &str) -> bool {
        self.scopes
            .tags
            .as_ref()
            .is_none_or(|tags| tags.matches(name))
    }

    /// Whether a custom field is visible to the plugin.
    pub fn field_in_scope(&self, name: &str) -> bool {
        self.scopes
            .custom_fields
            .as_ref()
            .is_none_or(|f| f.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::{Scopes, TagPatterns, resolve};

    fn gate(caps: &[&str], scopes: Scopes, limits: Limits) -> Gate {
        let grant = Grant {
            plugin: "p".into(),
            connections: Default::default(),
            capabilities: caps.iter().map(|c| c.parse().unwrap()).collect(),
            scopes: scopes.clone(),
            limits,
        };
        let groups = vec![
            ("a".to_owned(), "Acme".to_owned(), None),
            ("b".to_owned(), "HQ".to_owned(), Some("a".to_owned())),
            ("z".to_owned(), "Other".to_owned(), None),
        ];
        Gate::new(grant, resolve(&scopes, &groups).unwrap())
    }

    #[test]
    fn capabilities_are_checked_first() {
        let g = gate(&["devices:read"], Scopes::default(), Limits::default());
        assert!(g.admit(Operation::ListDevices, 0).is_ok());
        let err = g.admit(Operation::DeleteDevice, 0).unwrap_err();
        assert!(
            matches!(err, Refusal::Denied { ref capability, .. } if capability == "devices:delete")
        );
    }

    #[test]
    fn scopes_deny_outside_objects() {
        let scopes = Scopes {
            groups: Some(vec!["Acme".into()]),
            tags: Some(TagPatterns::parse(vec!["stale-*".into()]).unwrap()),
            ..Scopes::default()
        };
        let mut g = gate(&["devices:write", "tags:write"], scopes, Limits::default());
        let inside = Facts {
            devices: vec![("d1".into(), Some("b".into()))],
            tags: vec!["stale-30d".into()],
            ..Facts::default()
        };
        assert!(g.authorize(Operation::TagDevices, &inside).is_ok());
        let outside = Facts {
            devices: vec![("d2".into(), Some("z".into()))],
            ..Facts::default()
        };
        assert!(g.authorize(Operation::UpdateDevice, &outside).is_err());
        let ungrouped = Facts {
            devices: vec![("d3".into(), None)],
            ..Facts::default()
        };
        assert!(g.authorize(Operation::UpdateDevice, &ungrouped).is_err());
        let tag = Facts {
            tags: vec!["vip".into()],
            ..Facts::default()
        };
        assert!(g.authorize(Operation::CreateTag, &tag).is_err());
    }

    #[test]
    fn a_write_outside_the_approved_plan_is_denied_and_not_counted() {
        let mut g = gate(&["tags:write"], Scopes::default(), Limits::default());
        g.hold_to(ApprovedPlan::new(vec![PlanEntry {
            operation: "tag-devices".into(),
            targets: vec!["d1".into(), "tag:stale".into()],
            request: serde_json::json!({"id": "t", "device_ids": ["d1"]}),
            names: Default::default(),
            needs: Vec::new(),
        }]));
        let outside = Facts {
            devices: vec![("d1".into(), None), ("d2".into(), None)],
            tags: vec!["stale".into()],
            ..Facts::default()
        };
        assert!(g.authorize(Operation::TagDevices, &outside).is_ok());
        let targets = outside.targets();
        let request = serde_json::json!({"id": "t", "device_ids": ["d1", "d2"]});
        let err = g
            .check_planned(Operation::TagDevices, &targets, &request)
            .unwrap_err();
        assert!(
            err.to_string().contains("not in the approved plan"),
            "{err}"
        );
        assert_eq!(
            (g.writes(), g.devices_changed()),
            (0, 0),
            "the refused write is not counted"
        );
        let (denied, unapplied) = g.plan_outcome().unwrap();
        assert_eq!((denied.len(), unapplied.len()), (1, 1));
    }

    #[test]
    fn budgets_end_at_their_limits() {
        let limits = Limits {
            max_writes: 2,
            max_devices_changed: 3,
            max_api_calls: 2,
            ..Limits::default()
        };
        let mut g = gate(&["tags:write"], Scopes::default(), limits);
        let two = Facts {
            devices: vec![("d1".into(), None), ("d2".into(), None)],
            ..Facts::default()
        };
        assert!(g.authorize(Operation::TagDevices, &two).is_ok());
        let two_more = Facts {
            devices: vec![
                ("d2".into(), None),
                ("d3".into(), None),
                ("d4".into(), None),
            ],
            ..Facts::default()
        };
        let err = g.authorize(Operation::TagDevices, &two_more).unwrap_err();
        assert!(matches!(
            err,
            Refusal::Limit {
                limit: "max_devices_changed",
                ..
            }
        ));
        assert!(g.authorize(Operation::CreateTag, &Facts::default()).is_ok());
        let err = g
            .authorize(Operation::CreateTag, &Facts::default())
            .unwrap_err();
        assert!(matches!(
            err,
            Refusal::Limit {
                limit: "max_writes",
                ..
            }
        ));
        assert!(g.spend_call().is_ok() && g.spend_call().is_ok());
        assert!(matches!(
            g.spend_call(),
            Err(Refusal::Limit {
                limit: "max_api_calls",
                ..
            })
        ));
    }
}
