//! Plans and approvals.
//!
//! A dry run records every write it would have sent as a [`PlanEntry`]. A
//! plugin with an [`ApprovalPolicy`] runs as a dry run first; a plan over
//! the policy waits for a person, and once approved the real run goes
//! through the gate with the plan as an [`ApprovedPlan`]: each write must be
//! one the plan holds, or it is denied and the run has diverged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capability::Operation;

/// A write a dry run would have sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// The WIT function, such as `tag-devices`.
    pub operation: String,
    /// The objects it would change: device and group ids, `tag:NAME`,
    /// `custom-field:NAME`, `automation:FINGERPRINT` (never the webhook's
    /// token), and ids of objects the plan creates (`dry-run:group:NAME`).
    pub targets: Vec<String>,
    /// What it would send.
    pub request: serde_json::Value,
    /// What the run had read about the ids among the targets, so a plan can
    /// be shown with hostnames and group names, not only ids.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, Named>,
    /// Capabilities its effect needs besides the operation's own, as the
    /// gate counted them: a forced custom field value clears the values
    /// below it, so it also needs `custom-field-values:delete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

/// The prefixes of targets that name what a write acts on (as opposed to
/// the devices it reaches): an approved write must name every one of these
/// its planned write named.
const OBJECT_PREFIXES: [&str; 6] = [
    "tag:",
    "custom-field:",
    "automation:",
    "state:",
    "connection:",
    "http:",
];

/// Why an approved plan does not hold a write, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotInPlan(pub String);

/// A device or group as a person knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    /// `device` or `group`.
    pub kind: String,
    /// Its hostname or name.
    pub name: String,
}

impl PlanEntry {
    /// The operation, when the name is one levelhost knows.
    pub fn op(&self) -> Option<Operation> {
        serde_json::from_value(serde_json::Value::String(self.operation.clone())).ok()
    }

    /// Whether its effect deletes anything: a delete operation, or a write
    /// whose effect needs a delete capability (a forced value).
    pub fn deletes(&self) -> bool {
        if self.operation == crate::route::HTTP_OPERATION {
            return self.request.get("method").and_then(|m| m.as_str()) == Some("DELETE");
        }
        self.op().is_none_or(Operation::is_delete)
            || self.needs.iter().any(|cap| cap.ends_with(":delete"))
    }

    /// Device ids among the targets.
    pub fn devices(&self) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .filter(|t| self.names.get(*t).is_some_and(|n| n.kind == "device"))
            .map(String::as_str)
    }

    /// The entry in words: `tag-devices: tag "stale" on 3 devices: ws-1, ws-2, ws-3`.
    pub fn in_words(&self) -> String {
        const SHOWN: usize = 8;
        let mut what = Vec::new();
        let mut devices = Vec::new();
        let mut others = Vec::new();
        for target in &self.targets {
            if let Some(tag) = target.strip_prefix("tag:") {
                what.push(format!("tag {tag:?}"));
            } else if let Some(field) = target.strip_prefix("custom-field:") {
                what.push(format!("custom field {field:?}"));
            } else if let Some(name) = target.strip_prefix("connection:") {
                what.push(format!("connection {name}"));
            } else if let Some(request) = target.strip_prefix("http:") {
                what.push(request.to_owned());
            } else if let Some(key) = target.strip_prefix("state:") {
                what.push(format!("state key {key:?}"));
            } else if target.starts_with("automation:") {
                what.push(match self.names.get(target) {
                    Some(named) => format!("automation {:?}", named.name),
                    None => format!("automation webhook {target}"),
                });
            } else if let Some((kind, name)) = target
                .strip_prefix("dry-run:")
                .and_then(|rest| rest.split_once(':'))
            {
                let kind = kind.replace('-', " ");
                what.retain(|w| *w != format!("{kind} {name:?}"));
                what.push(format!("new {kind} {name:?}"));
            } else if let Some(named) = self.names.get(target) {
                if named.kind == "tag" && self.targets.contains(&format!("tag:{}", named.name)) {
                    // The tag's id beside its `tag:NAME`: said once.
                    continue;
                }
                match named.kind.as_str() {
                    "device" => devices.push(named.name.clone()),
                    _ => what.push(format!("{} {:?}", named.kind, named.name)),
                }
            } else {
                others.push(target.clone());
            }
        }
        let mut text = self.operation.clone();
        if !what.is_empty() {
            text.push_str(&format!(": {}", what.join(", ")));
        }
        if !self.needs.is_empty() {
            text.push_str(&format!(" (also {})", self.needs.join(", ")));
        }
        let mut list = |noun: &str, items: &[String]| {
            if items.is_empty() {
                return;
            }
            let plural = if items.len() == 1 { "" } else { "s" };
            let shown = first_of(items, SHOWN);
            let sep = if what.is_empty() { ":" } else { " on" };
            text.push_str(&format!("{sep} {} {noun}{plural}: {shown}", items.len()));
        };
        list("device", &devices);
        if devices.is_empty() {
            list("object", &others);
        } else if !others.is_empty() {
            text.push_str(&format!(" (and {})", others.join(", ")));
        }
        text
    }
}

/// The first `shown` of `items`, comma-separated, and how many more there are:
/// `ws-1, ws-2 and 35 more`.
pub fn first_of(items: &[String], shown: usize) -> String {
    let mut text = items
        .iter()
        .take(shown)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > shown {
        text.push_str(&format!(" and {} more", items.len() - shown));
    }
    text
}

/// The plan in words, one line per write.
pub fn in_words(plan: &[PlanEntry]) -> Vec<String> {
    plan.iter().map(PlanEntry::in_words).collect()
}

/// When a plugin's plan waits for a person (`[plugins.NAME.approval]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// A plan with more writes than this waits.
    #[serde(default)]
    pub writes_over: Option<u64>,
    /// A plan changing more distinct devices than this waits.
    #[serde(default)]
    pub devices_changed_over: Option<u64>,
    /// A plan with any delete waits.
    #[serde(default)]
    pub deletes: bool,
    /// An approval not given within this many seconds expires.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
}

fn default_ttl_secs() -> u64 {
    86_400
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self {
            writes_over: None,
            devices_changed_over: None,
            deletes: false,
            ttl_secs: default_ttl_secs(),
        }
    }
}

impl ApprovalPolicy {
    /// How long a plan waits before it expires.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    /// Why `plan` must wait for a person; empty when it is within the policy.
    pub fn reasons(&self, plan: &[PlanEntry], devices_changed: u64) -> Vec<String> {
        let mut why = Vec::new();
        let writes = plan.len() as u64;
        if let Some(max) = self.writes_over
            && writes > max
        {
            why.push(format!("{writes} writes, over the policy's {max}"));
        }
        if let Some(max) = self.devices_changed_over
            && devices_changed > max
        {
            why.push(format!(
                "{devices_changed} devices changed, over the policy's {max}"
            ));
        }
        if self.deletes {
            let deletes: Vec<String> = plan
                .iter()
                .filter(|e| e.deletes())
                .map(|e| match e.needs.is_empty() {
                    true => e.operation.clone(),
                    false => format!("{} needing {}", e.operation, e.needs.join(", ")),
                })
                .collect();
            if !deletes.is_empty() {
                why.push(format!(
                    "it deletes ({}), and every delete waits",
                    deletes.join(", ")
                ));
            }
        }
        why
    }

    /// The policy in words, for `levelhost check`.
    pub fn in_words(&self) -> String {
        let mut when = Vec::new();
        if let Some(n) = self.writes_over {
            when.push(format!("has more than {n} writes"));
        }
        if let Some(n) = self.devices_changed_over {
            when.push(format!("changes more than {n} devices"));
        }
        if self.deletes {
            when.push("deletes anything".to_owned());
        }
        let ttl = humanize(self.ttl());
        if when.is_empty() {
            return format!(
                "runs first as a dry run, and applies its plan only if the real run makes the same writes (no plan waits; approvals expire after {ttl})"
            );
        }
        format!(
            "runs first as a dry run; a plan that {} waits for a person to approve it (`levelhost approve`) and expires after {ttl}; an approved run may make only the plan's writes",
            or_list(&when)
        )
    }
}

fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// `90 s`, `15 min`, `24 h`, `3 days`.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 2 * 86_400 && s.is_multiple_of(86_400) {
        format!("{} days", s / 86_400)
    } else if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// An approved plan, as the gate holds it during the real run: each planned
/// write allows one write of the same operation that names only objects the
/// planned one names and sends the same values (a list may be shorter than
/// planned: a batch that lost members is still within the plan).
#[derive(Debug, Clone, Default)]
pub struct ApprovedPlan {
    entries: Vec<PlanEntry>,
    used: Vec<bool>,
    /// Ids the dry run made up for objects it planned to create
    /// (`dry-run:tag:stale`), and the ids Level gave them in the real run.
    created: HashMap<String, String>,
    diverged: Vec<String>,
}

impl ApprovedPlan {
    /// The approved plan.
    pub fn new(entries: Vec<PlanEntry>) -> Self {
        Self {
            used: vec![false; entries.len()],
            entries,
            created: HashMap::new(),
            diverged: Vec::new(),
        }
    }

    /// The real run created what the plan called `planned`; Level named it `real`.
    pub fn created(&mut self, planned: &str, real: &str) {
        self.created.insert(planned.to_owned(), real.to_owned());
    }

    /// Allows one write, using up the planned write it matches, or says why
    /// the plan does not hold it (and remembers that the run diverged).
    pub fn admit(
        &mut self,
        name: &str,
        targets: &[String],
        request: &serde_json::Value,
    ) -> Result<(), NotInPlan> {
        // An outbound request is held to its planned method, path and body exactly.
        let exact = name == crate::route::HTTP_OPERATION;
        let wanted: BTreeSet<&str> = targets.iter().map(String::as_str).collect();
        let mut same_op = 0;
        let mut missing: Option<BTreeSet<String>> = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.operation != name {
                continue;
            }
            same_op += 1;
            if self.used[i] {
                continue;
            }
            let planned: BTreeSet<String> = entry.targets.iter().map(|t| self.resolve(t)).collect();
            let outside: BTreeSet<String> = wanted
                .iter()
                .filter(|t| !planned.contains(**t))
                .map(|t| (*t).to_owned())
                .collect();
            if !outside.is_empty() {
                if missing.as_ref().is_none_or(|m| outside.len() < m.len()) {
                    missing = Some(outside);
                }
                continue;
            }
            // A batch may reach fewer devices than planned, but it must act on
            // the same tag, field or automation: a write naming none of them
            // is not the planned one.
            let acts_on_all = planned
                .iter()
                .filter(|t| OBJECT_PREFIXES.iter().any(|p| t.starts_with(p)))
                .all(|t| wanted.contains(t.as_str()));
            if !acts_on_all {
                missing.get_or_insert_with(BTreeSet::new);
                continue;
            }
            if (exact && *request != entry.request) || !self.within(request, &entry.request) {
                missing.get_or_insert_with(BTreeSet::new);
                continue;
            }
            self.used[i] = true;
            return Ok(());
        }
        let why = match missing {
            _ if same_op == 0 => format!("the approved plan has no {name}"),
            None => format!("the approved plan's {same_op} {name} writes were all made already"),
            Some(outside) if outside.is_empty() => {
                format!(
                    "this {name} acts on other objects or sends other values than the approved plan's"
                )
            }
            Some(outside) => format!(
                "this {name} names {} that no {name} of the approved plan names",
                outside.into_iter().collect::<Vec<_>>().join(", ")
            ),
        };
        self.diverged.push(why.clone());
        Err(NotInPlan(why))
    }

    /// The planned writes the real run has not made (reported, never forced).
    pub fn unapplied(&self) -> Vec<PlanEntry> {
        self.entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// Why each write the plan did not hold was refused, in order.
    pub fn divergence(&self) -> &[String] {
        &self.diverged
    }

    fn resolve(&self, id: &str) -> String {
        self.created
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }

    /// Whether `sent` is within `planned`: the same values, with the
    /// planned ids of created objects read as their real ids, and each list
    /// holding only items the planned list holds.
    fn within(&self, sent: &serde_json::Value, planned: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (sent, planned) {
            (Value::Object(s), Value::Object(p)) => {
                s.len() == p.len()
                    && s.iter()
                        .all(|(k, v)| p.get(k).is_some_and(|pv| self.within(v, pv)))
            }
            (Value::Array(s), Value::Array(p)) => s
                .iter()
                .all(|item| p.iter().any(|pv| self.within(item, pv))),
            (Value::String(s), Value::String(p)) => *s == self.resolve(p),
            (s, p) => s == p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(op: &str, targets: &[&str], request: serde_json::Value) -> PlanEntry {
        PlanEntry {
            operation: op.to_owned(),
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            request,
            names: BTreeMap::new(),
            needs: Vec::new(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn a_planned_write_is_allowed_once_and_others_are_not() {
        let mut plan = ApprovedPlan::new(vec![entry(
            "tag-devices",
            &["d1", "d2", "tag:stale"],
            json!({"id": "t1", "device_ids": ["d1", "d2"]}),
        )]);
        let same = json!({"id": "t1", "device_ids": ["d1", "d2"]});
        let targets = strings(&["d1", "d2", "tag:stale"]);
        assert!(
            plan.admit(&Operation::TagDevices.name(), &targets, &same)
                .is_ok(),
            "the planned write"
        );
        let again = plan
            .admit(&Operation::TagDevices.name(), &targets, &same)
            .unwrap_err()
            .to_string();
        assert!(again.contains("all made already"), "{again}");
        let other = plan
            .admit(&Operation::UntagDevices.name(), &targets, &same)
            .unwrap_err()
            .to_string();
        assert!(other.contains("has no untag-devices"), "{other}");
        assert_eq!(plan.divergence().len(), 2);
        assert!(plan.unapplied().is_empty());
    }

    #[test]
    fn a_38th_device_or_other_values_diverge_and_a_smaller_batch_does_not() {
        let planned = entry(
            "tag-devices",
            &["d1", "d2", "tag:stale"],
            json!({"id": "t1", "device_ids": ["d1", "d2"]}),
        );
        let mut plan = ApprovedPlan::new(vec![planned.clone()]);
        let more = plan
            .admit(
                &Operation::TagDevices.name(),
                &strings(&["d1", "d2", "d3", "tag:stale"]),
                &json!({"id": "t1", "device_ids": ["d1", "d2", "d3"]}),
            )
            .unwrap_err()
            .to_string();
        assert!(more.contains("names d3"), "{more}");
        let other_tag = plan
            .admit(
                &Operation::TagDevices.name(),
                &strings(&["d1", "tag:stale"]),
                &json!({"id": "t9", "device_ids": ["d1"]}),
            )
            .unwrap_err()
            .to_string();
        assert!(other_tag.contains("other values"), "{other_tag}");
        assert_eq!(plan.unapplied(), vec![planned]);
        assert!(
            plan.admit(
                &Operation::TagDevices.name(),
                &strings(&["d1", "tag:stale"]),
                &json!({"id": "t1", "device_ids": ["d1"]}),
            )
            .is_ok()
        );
    }

    #[test]
    fn objects_the_plan_created_match_by_their_real_ids() {
        let mut plan = ApprovedPlan::new(vec![
            entry("create-tag", &["tag:stale"], json!({"name": "stale"})),
            entry(
                "tag-devices",
                &["d1", "tag:stale"],
                json!({"id": "dry-run:tag:stale", "device_ids": ["d1"]}),
            ),
        ]);
        let create = strings(&["tag:stale"]);
        assert!(
            plan.admit(
                &Operation::CreateTag.name(),
                &create,
                &json!({"name": "stale"})
            )
            .is_ok()
        );
        plan.created("dry-run:tag:stale", "tag_42");
        assert!(
            plan.admit(
                &Operation::TagDevices.name(),
                &strings(&["d1", "tag:stale"]),
                &json!({"id": "tag_42", "device_ids": ["d1"]}),
            )
            .is_ok()
        );
    }

    #[test]
    fn the_policy_names_each_reason_to_wait() {
        let policy = ApprovalPolicy {
            writes_over: Some(1),
            devices_changed_over: Some(20),
            deletes: true,
            ttl_secs: 3600,
        };
        let plan = vec![
            entry("tag-devices", &["d1"], json!({})),
            entry("delete-tag", &["tag:old"], json!({})),
        ];
        let why = policy.reasons(&plan, 37);
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[1].contains("37 devices changed"), "{why:?}");
        assert!(policy.reasons(&plan[..1], 20).is_empty());
        let words = policy.in_words();
        assert!(
            words.contains(
                "has more than 1 writes, changes more than 20 devices or deletes anything"
            ),
            "{words}"
        );
        assert!(words.contains("1 h"), "{words}");
    }

    /// Issue 23, point 1: an approved trigger of one automation does not let
    /// the real run trigger another on the same device, and the plan names it.
    #[test]
    fn an_approved_trigger_pins_its_automation() {
        let mut planned = entry(
            "trigger-webhook",
            &["d1", "automation:aaaa"],
            json!({"body": {"device_ids": ["d1"]}}),
        );
        planned.names.insert(
            "automation:aaaa".to_owned(),
            Named {
                kind: "automation".to_owned(),
                name: "Restart agent".to_owned(),
            },
        );
        assert!(
            planned.in_words().contains("automation \"Restart agent\""),
            "{}",
            planned.in_words()
        );
        let mut plan = ApprovedPlan::new(vec![planned]);
        let body = json!({"body": {"device_ids": ["d1"]}});
        let other = plan
            .admit(
                &Operation::TriggerWebhook.name(),
                &strings(&["d1", "automation:bbbb"]),
                &body,
            )
            .unwrap_err()
            .to_string();
        assert!(other.contains("automation:bbbb"), "{other}");
        let none = plan
            .admit(&Operation::TriggerWebhook.name(), &strings(&["d1"]), &body)
            .unwrap_err()
            .to_string();
        assert!(none.contains("other objects"), "{none}");
        assert!(
            plan.admit(
                &Operation::TriggerWebhook.name(),
                &strings(&["d1", "automation:aaaa"]),
                &body
            )
            .is_ok()
        );
    }

    /// Issue 23, point 2: a forced value clears the values below it; with
    /// `deletes = true` it waits like any delete.
    #[test]
    fn a_forced_value_is_judged_a_delete_by_its_effect() {
        let policy = ApprovalPolicy {
            deletes: true,
            ..ApprovalPolicy::default()
        };
        let mut forced = entry("set-value", &["custom-field:owner"], json!({"force": true}));
        assert!(policy.reasons(std::slice::from_ref(&forced), 0).is_empty());
        forced.needs = vec!["custom-field-values:delete".to_owned()];
        let why = policy.reasons(std::slice::from_ref(&forced), 0);
        assert_eq!(
            why,
            vec![
                "it deletes (set-value needing custom-field-values:delete), and every delete waits"
                    .to_owned()
            ]
        );
        assert!(
            forced
                .in_words()
                .contains("also custom-field-values:delete")
        );
    }

    #[test]
    fn a_plan_reads_with_hostnames() {
        let mut e = entry(
            "tag-devices",
            &["d1", "d2", "tag:stale", "t1"],
            json!({"id": "t1", "device_ids": ["d1", "d2"]}),
        );
        for (id, kind, name) in [
            ("d1", "device", "acme-ws-1"),
            ("d2", "device", "acme-ws-2"),
            ("t1", "tag", "stale"),
        ] {
            e.names.insert(
                id.to_owned(),
                Named {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                },
            );
        }
        assert_eq!(
            e.in_words(),
            "tag-devices: tag \"stale\" on 2 devices: acme-ws-1, acme-ws-2"
        );
        assert_eq!(e.devices().count(), 2);
    }
}
