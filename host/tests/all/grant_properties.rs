//! The grant as a property: random grants (capabilities x scopes x limits)
//! x random sequences of host calls, through the host side of `level:api`
//! (no component) against one simulator reset before every case. The
//! oracle is the simulator's own state before and after, read without the
//! gate: nothing changed that the grant's capabilities and scopes do not
//! allow, no budget was exceeded, every request that reached Level is
//! counted in the audit, and no string handed back holds the key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use level_api::{ApiKey, ClientConfig, LevelClient};
use level_sim::{Fixture, SimConfig, Simulator, Tenant};
use levelhost_core::capability::Capability;
use levelhost_core::gate::Gate;
use levelhost_core::grant::{Grant, Limits, Scopes};
use levelhost_runtime::bindings::automations::{Host as _, TriggerRequest};
use levelhost_runtime::bindings::custom_field_values::{
    Host as _, ValueAssignment, ValueFilter, ValueRemoval,
};
use levelhost_runtime::bindings::custom_fields::{CustomFieldUpdate, Host as _};
use levelhost_runtime::bindings::devices::{
    DeviceFilter, DeviceInclude, DeviceUpdate, GroupChange, Host as _,
};
use levelhost_runtime::bindings::groups::{GroupUpdate, Host as _, NewGroup};
use levelhost_runtime::bindings::tags::Host as _;
use levelhost_runtime::bindings::types::PageRequest;
use levelhost_runtime::level::{LevelCtx, LogSink, RunInfo};
use levelhost_runtime::runner::resolve_scopes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const CASES: u32 = 10_000;
const GROUPS: [&str; 7] = [
    "Acme Corp",
    "HQ",
    "Finance",
    "Branch Office",
    "Globex",
    "Servers",
    "Initech",
];
const TAG_NAMES: [&str; 5] = ["vip", "laptop", "business-critical", "stale", "stale-30d"];
const FIELDS: [&str; 2] = ["Region", "Asset Owner"];

/// One host call, naming objects by index into the organization (an index
/// past the end names an id Level does not have).
#[derive(Debug, Clone)]
enum Op {
    ListDevices,
    GetDevice(usize),
    GetGroup(usize),
    ListValues(Option<usize>),
    UpdateDevice(usize, Option<Option<usize>>, bool),
    DeleteDevice(usize),
    CreateGroup(Option<usize>),
    UpdateGroupFields(usize, usize),
    DeleteGroup(usize),
    AssignDevices(usize, Vec<usize>),
    RemoveDevices(usize, Vec<usize>),
    CreateTag(usize),
    UpdateTag(usize, usize),
    DeleteTag(usize),
    TagDevices(usize, Vec<usize>),
    UntagDevices(usize, Vec<usize>),
    SetValue(usize, Target, bool),
    RemoveValue(usize, Target, bool),
    RenameField(usize),
    DeleteField(usize),
    Trigger(Vec<usize>),
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Organization,
    Group(usize),
    Device(usize),
}

/// The ids a case's calls pick from.
struct Ids {
    devices: Vec<String>,
    groups: Vec<String>,
    tags: Vec<String>,
    fields: Vec<String>,
}

impl Ids {
    fn pick(list: &[String], i: usize) -> String {
        list.get(i)
            .cloned()
            .unwrap_or_else(|| "Z2lkOi8vbGV2ZWwvbm9uZS85OQ".to_owned())
    }
    fn device(&self, i: usize) -> String {
        Self::pick(&self.devices, i)
    }
    fn group(&self, i: usize) -> String {
        Self::pick(&self.groups, i)
    }
    fn tag(&self, i: usize) -> String {
        Self::pick(&self.tags, i)
    }
    fn field(&self, i: usize) -> String {
        Self::pick(&self.fields, i)
    }
    fn devices(&self, list: &[usize]) -> Vec<String> {
        list.iter().map(|&i| self.device(i)).collect()
    }
    fn target(&self, t: Target) -> Option<String> {
        match t {
            Target::Organization => None,
            Target::Group(i) => Some(self.group(i)),
            Target::Device(i) => Some(self.device(i)),
        }
    }
}

fn target(devices: usize) -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Organization),
        (0..GROUPS.len() + 1).prop_map(Target::Group),
        (0..devices + 1).prop_map(Target::Device),
    ]
}

fn op(devices: usize) -> impl Strategy<Value = Op> {
    let d = 0..devices + 1;
    let g = 0..GROUPS.len() + 1;
    let t = 0..4usize;
    let f = 0..FIELDS.len() + 1;
    let many = proptest::collection::vec(d.clone(), 0..4);
    prop_oneof![
        Just(Op::ListDevices),
        d.clone().prop_map(Op::GetDevice),
        g.clone().prop_map(Op::GetGroup),
        proptest::option::of(d.clone()).prop_map(Op::ListValues),
        (
            d.clone(),
            proptest::option::of(proptest::option::of(g.clone())),
            any::<bool>()
        )
            .prop_map(|(d, g, n)| Op::UpdateDevice(d, g, n)),
        d.clone().prop_map(Op::DeleteDevice),
        proptest::option::of(g.clone()).prop_map(Op::CreateGroup),
        (g.clone(), 0..FIELDS.len()).prop_map(|(g, f)| Op::UpdateGroupFields(g, f)),
        g.clone().prop_map(Op::DeleteGroup),
        (g.clone(), many.clone()).prop_map(|(g, d)| Op::AssignDevices(g, d)),
        (g.clone(), many.clone()).prop_map(|(g, d)| Op::RemoveDevices(g, d)),
        (0..TAG_NAMES.len()).prop_map(Op::CreateTag),
        (t.clone(), 0..TAG_NAMES.len()).prop_map(|(t, n)| Op::UpdateTag(t, n)),
        t.clone().prop_map(Op::DeleteTag),
        (t.clone(), many.clone()).prop_map(|(t, d)| Op::TagDevices(t, d)),
        (t, many.clone()).prop_map(|(t, d)| Op::UntagDevices(t, d)),
        (f.clone(), target(devices), any::<bool>()).prop_map(|(f, t, x)| Op::SetValue(f, t, x)),
        (f.clone(), target(devices), any::<bool>()).prop_map(|(f, t, x)| Op::RemoveValue(f, t, x)),
        f.clone().prop_map(Op::RenameField),
        f.prop_map(Op::DeleteField),
        many.prop_map(Op::Trigger),
    ]
}

/// A grant, and whether the case is a dry run.
fn grant() -> impl Strategy<Value = (Grant, bool)> {
    let all: Vec<Capability> = Capability::all().collect();
    let n = all.len();
    (
        proptest::collection::vec(proptest::bool::weighted(0.8), n),
        proptest::option::of(proptest::sample::subsequence(GROUPS.to_vec(), 1..3)),
        proptest::option::of(prop_oneof![
            Just(vec!["vip"]),
            Just(vec!["stale-*"]),
            Just(vec!["laptop", "stale"]),
        ]),
        proptest::option::of(Just(vec!["Region"])),
        proptest::option::of(prop_oneof![
            Just(Vec::new()),
            Just(vec![level_sim::seed::SEED_WEBHOOK_TOKEN])
        ]),
        (0..6u64, 0..16u64, 2..60u64, proptest::bool::weighted(0.2)),
    )
        .prop_map(
            move |(on, groups, tags, fields, automations, (writes, devices, calls, dry))| {
                let own = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect();
                let mut grant = Grant::unrestricted("prop");
                grant.capabilities = all
                    .iter()
                    .zip(&on)
                    .filter(|(_, on)| **on)
                    .map(|(c, _)| *c)
                    .collect();
                grant.scopes = Scopes {
                    groups: groups.map(own),
                    tags: tags.map(|t| levelhost_core::grant::TagPatterns::parse(own(t)).unwrap()),
                    custom_fields: fields.map(own),
                    automations: automations.map(own),
                };
                grant.limits = Limits {
                    max_writes: writes,
                    max_devices_changed: devices,
                    max_api_calls: calls,
                    ..Limits::default()
                };
                (grant, dry)
            },
        )
}

#[derive(Default)]
struct Totals {
    calls: AtomicU64,
    refused: AtomicU64,
    changed: AtomicU64,
}

#[test]
fn the_grant_holds_for_10_000_random_grants_and_call_sequences() {
    holds_on(Road::Plugin);
}

/// Issue 26: the same property through the gateway: each call made as the
/// HTTP request a script would send (`levelhost gateway`'s router on
/// loopback, a client with the case's grant), the same oracle.
#[test]
fn the_grant_holds_through_the_gateway_for_10_000_random_grants_and_requests() {
    holds_on(Road::Gateway);
}

/// Which road out the calls take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Road {
    /// The host side of `level:api`, as a plugin's calls.
    Plugin,
    /// HTTP requests to the gateway, as a client's.
    Gateway,
}

/// The gateway on loopback, its audit file, and the key of its one client.
struct GatewayRoad {
    gateway: std::sync::Arc<levelhost_gateway::Gateway>,
    url: String,
    http: reqwest::Client,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const CLIENT_KEY: &str = "lhc_property-test-client-key";

fn holds_on(road: Road) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = Simulator::seeded_with(14).to_fixture();
    let sim = rt
        .block_on(Simulator::start(
            SimConfig {
                rate_limit: None,
                ..SimConfig::default()
            },
            Tenant::from_fixture(base.clone()).unwrap(),
        ))
        .unwrap();
    let key = sim.read_write_key().to_owned();
    let client =
        LevelClient::new(ClientConfig::new(sim.base_url()), ApiKey::new(key.clone())).unwrap();
    let gateway = (road == Road::Gateway).then(|| {
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let audit = dir.path().join("audit.jsonl");
            let gateway = std::sync::Arc::new(levelhost_gateway::Gateway::new(
                Vec::new(),
                &[&key],
                Some(levelhost_runtime::audit::AuditLog::open(&audit).unwrap()),
            ));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/v2", listener.local_addr().unwrap());
            tokio::spawn(axum::serve(listener, gateway.clone().router()).into_future());
            GatewayRoad {
                gateway,
                url,
                http: reqwest::Client::new(),
                audit,
                _dir: dir,
            }
        })
    });
    let devices = base.devices.len();
    let totals = Totals::default();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (grant(), proptest::collection::vec(op(devices), 1..7));
    let result = runner.run(&strategy, |((grant, dry_run), ops)| {
        *sim.tenant() = Tenant::from_fixture(base.clone()).unwrap();
        let case = Case {
            grant,
            // A client has no dry run.
            dry_run: dry_run && road == Road::Plugin,
            ops,
        };
        rt.block_on(check_case(
            &sim,
            &client,
            &key,
            &base,
            case,
            &totals,
            gateway.as_ref(),
        ))
    });
    let (calls, refused, changed) = (
        totals.calls.load(Ordering::Relaxed),
        totals.refused.load(Ordering::Relaxed),
        totals.changed.load(Ordering::Relaxed),
    );
    println!(
        "grant property ({road:?}): {CASES} cases, {calls} host calls ({refused} refused), {changed} cases changed Level"
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // The cases reach both sides of the gate.
    assert!(refused > u64::from(CASES) && calls > refused && changed > u64::from(CASES) / 10);
    rt.block_on(sim.stop());
}

/// One case: a grant, a dry run or not, and the calls a plugin makes.
struct Case {
    grant: Grant,
    dry_run: bool,
    ops: Vec<Op>,
}

async fn check_case(
    sim: &Simulator,
    client: &LevelClient,
    key: &str,
    base: &Fixture,
    case: Case,
    totals: &Totals,
    gateway: Option<&GatewayRoad>,
) -> Result<(), TestCaseError> {
    let Case {
        grant,
        dry_run,
        ops,
    } = case;
    let scopes = resolve_scopes(client, &grant)
        .await
        .map_err(|e| TestCaseError::fail(format!("scopes: {e}")))?;
    let in_scope = crate::support::scope_subtree(base, grant.scopes.groups.as_deref());
    let run = RunInfo {
        plugin: "prop".into(),
        version: "0.0.0".into(),
        digest: "sha256:none".into(),
        run_id: "run_prop".into(),
    };
    let log = LogSink {
        max_bytes: usize::MAX,
        ..LogSink::default()
    };
    let mut ctx = LevelCtx::new(
        client.clone(),
        levelhost_runtime::level::SharedGate::new(Gate::new(grant.clone(), scopes)),
        run,
        None,
        log,
        dry_run,
    );
    let ids = Ids {
        devices: base.devices.iter().map(|d| d.id.clone()).collect(),
        groups: GROUPS
            .iter()
            .map(|name| {
                base.groups
                    .iter()
                    .find(|g| g.name == *name)
                    .map(|g| g.id.clone())
                    .unwrap_or_default()
            })
            .collect(),
        tags: base.tags.iter().map(|t| t.id.clone()).collect(),
        fields: base.custom_fields.iter().map(|f| f.id.clone()).collect(),
    };
    let received = sim.received_count();
    let mut answers = Vec::new();
    let gateway_audit = match gateway {
        None => {
            for op in &ops {
                let answer = call(&mut ctx, &ids, op).await;
                let stopped = answer.starts_with("Err(Trap");
                answers.push(answer);
                if stopped {
                    // A trap ends the run: no later call would be made.
                    break;
                }
            }
            None
        }
        Some(road) => {
            road.gateway.replace(
                vec![levelhost_gateway::ClientSpec {
                    name: "prop".to_owned(),
                    grant: grant.clone(),
                    key: levelhost_gateway::KeyHash::of(CLIENT_KEY),
                    expires: None,
                    requests_per_minute: 0,
                    requests_per_hour: 0,
                    level: client.clone(),
                }],
                &[key],
            );
            let from = std::fs::metadata(&road.audit).map_or(0, |m| m.len() as usize);
            for op in &ops {
                answers.push(request(road, &ids, op).await);
            }
            let text = std::fs::read_to_string(&road.audit).unwrap_or_default();
            let records: Vec<levelhost_core::audit::AuditRecord> = text
                .get(from..)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|r: &levelhost_core::audit::AuditRecord| r.stage.is_done())
                .collect();
            Some(records)
        }
    };
    // Each gateway request is its own run of the gate, with its own budgets.
    let runs = if gateway.is_some() {
        ops.len() as u64
    } else {
        1
    };
    let after = sim.tenant().to_fixture();
    let triggered = sim.tenant().triggered().to_vec();
    let sent = sim.received_count() - received;
    let audit = gateway_audit.as_ref().unwrap_or(&ctx.audit_records);
    totals
        .calls
        .fetch_add(audit.len() as u64, Ordering::Relaxed);
    totals.refused.fetch_add(
        audit.iter().filter(|r| !r.allowed).count() as u64,
        Ordering::Relaxed,
    );

    // Every request that reached Level is counted in the audit, within the call budget.
    let audited: u64 = audit.iter().map(|r| u64::from(r.requests)).sum();
    prop_assert_eq!(sent, audited, "requests sent vs audited");
    // The gateway's scope look-ups are audited, outside a request's budget.
    let lookups: u64 = audit
        .iter()
        .filter(|r| r.operation == levelhost_gateway::SCOPES_OPERATION)
        .map(|r| u64::from(r.requests))
        .sum();
    prop_assert!(
        sent <= runs * grant.limits.max_api_calls + lookups,
        "{} requests",
        sent
    );
    // No string handed back, and no audit record, holds the key.
    for answer in &answers {
        prop_assert!(!answer.contains(key), "the key in {}", answer);
    }
    for record in audit {
        let line = serde_json::to_string(record).unwrap_or_default();
        prop_assert!(!line.contains(key), "the key in {}", line);
    }
    let writes = audit
        .iter()
        .filter(|r| {
            serde_json::from_value::<levelhost_core::capability::Operation>(
                serde_json::Value::String(r.operation.to_string()),
            )
            .is_ok_and(|op| op.capability().is_write())
        })
        .filter(|r| r.allowed && r.upstream_status.is_some_and(|s| s < 300))
        .count() as u64;
    prop_assert!(
        writes <= runs * grant.limits.max_writes,
        "{} writes",
        writes
    );

    if dry_run {
        prop_assert!(after == *base, "a dry run changed Level");
        prop_assert!(triggered.is_empty(), "a dry run triggered an automation");
        return Ok(());
    }
    // Through the gateway each request has its own budgets, and its own
    // scopes, resolved again once the client's cache is replaced: the groups
    // in scope at the end are Level's, below the scope's roots.
    let (limits_grant, final_scope) = match gateway {
        None => (grant.clone(), ctx.gate().scopes().group_ids.clone()),
        Some(_) => {
            let mut per_request = grant.clone();
            per_request.limits.max_devices_changed *= runs;
            let scopes = resolve_scopes(client, &grant)
                .await
                .map_err(|e| TestCaseError::fail(format!("scopes: {e}")))?;
            (per_request, scopes.group_ids)
        }
    };
    let oracle = Oracle {
        grant: &limits_grant,
        in_scope: &in_scope,
        final_scope,
    };
    let changed = oracle.check(base, &after, &triggered)?;
    if changed {
        totals.changed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

struct Oracle<'a> {
    grant: &'a Grant,
    in_scope: &'a Option<BTreeSet<String>>,
    final_scope: Option<std::collections::HashSet<String>>,
}

impl Oracle<'_> {
    fn has_any(&self, caps: &[&str]) -> bool {
        caps.iter()
            .any(|c| self.grant.capabilities.iter().any(|g| g.to_string() == *c))
    }

    fn need(&self, caps: &[&str], what: &str) -> Result<(), TestCaseError> {
        if self.has_any(caps) {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{what} without any of {caps:?}"
            )))
        }
    }

    fn group_ok(&self, group: Option<&String>) -> bool {
        match self.in_scope {
            None => true,
            Some(ids) => group.is_some_and(|g| ids.contains(g)),
        }
    }

    fn final_group_ok(&self, group: Option<&String>) -> bool {
        match &self.final_scope {
            None => true,
            Some(ids) => group.is_some_and(|g| ids.contains(g)),
        }
    }

    fn tag_ok(&self, name: &str) -> bool {
        self.grant.scopes.tags.as_ref().is_none_or(|globs| {
            globs.patterns().iter().any(|g| match g.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => g == name,
            })
        })
    }

    fn field_ok(&self, name: &str) -> bool {
        self.grant
            .scopes
            .custom_fields
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == name))
    }

    fn scope(&self, ok: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
        if ok {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{} outside the scopes",
                what()
            )))
        }
    }

    /// Checks every difference between `before` and `after`; says whether there was one.
    fn check(
        &self,
        before: &Fixture,
        after: &Fixture,
        triggered: &[level_sim::tenant::TriggerRecord],
    ) -> Result<bool, TestCaseError> {
        let mut changed_devices = BTreeSet::new();
        let values = |f: &Fixture| -> BTreeMap<(String, Option<String>), Option<String>> {
            f.custom_field_values
                .iter()
                .map(|v| {
                    (
                        (v.custom_field_id.clone(), v.assigned_to_id.clone()),
                        v.value.clone(),
                    )
                })
                .collect()
        };
        let (values_before, values_after) = (values(before), values(after));
        let field_names: HashMap<&String, &String> = before
            .custom_fields
            .iter()
            .map(|f| (&f.id, &f.name))
            .collect();
        let device_group: HashMap<&String, Option<&String>> = before
            .devices
            .iter()
            .map(|d| (&d.id, d.group_id.as_ref()))
            .collect();

        // Devices.
        for old in &before.devices {
            let new = after.devices.iter().find(|d| d.id == old.id);
            let Some(new) = new else {
                self.need(&["devices:delete"], "a device deleted")?;
                self.scope(self.group_ok(old.group_id.as_ref()), || {
                    format!("device {} deleted", old.id)
                })?;
                changed_devices.insert(old.id.clone());
                continue;
            };
            let mut any = false;
            if old.nickname != new.nickname || old.notes != new.notes {
                self.need(&["devices:write"], "a device renamed")?;
                any = true;
            }
            if old.group_id != new.group_id {
                self.need(&["devices:write", "groups:write"], "a device moved")?;
                self.scope(self.final_group_ok(new.group_id.as_ref()), || {
                    format!("device {} moved", old.id)
                })?;
                any = true;
            }
            let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
                (old.tags.iter().collect(), new.tags.iter().collect());
            for tag in a.symmetric_difference(&b) {
                self.need(&["tags:write", "tags:delete"], "a device's tags changed")?;
                // A renamed tag shows up under both names.
                self.scope(self.tag_ok(tag), || format!("tag {tag} on a device"))?;
                any = true;
            }
            if any {
                self.scope(self.group_ok(old.group_id.as_ref()), || {
                    format!("device {} changed", old.id)
                })?;
                changed_devices.insert(old.id.clone());
            }
        }

        // Tags.
        for old in &before.tags {
            match after.tags.iter().find(|t| t.id == old.id) {
                None => self.need(&["tags:delete"], "a tag deleted")?,
                Some(new) if new.name != old.name => {
                    self.need(&["tags:write"], "a tag renamed")?;
                    self.scope(self.tag_ok(&new.name), || format!("tag {}", new.name))?;
                }
                Some(_) => continue,
            }
            self.scope(self.tag_ok(&old.name), || format!("tag {}", old.name))?;
        }
        for new in after
            .tags
            .iter()
            .filter(|t| !before.tags.iter().any(|o| o.id == t.id))
        {
            self.need(&["tags:write"], "a tag created")?;
            self.scope(self.tag_ok(&new.name), || format!("tag {}", new.name))?;
        }

        // Groups.
        for old in &before.groups {
            let new = after.groups.iter().find(|g| g.id == old.id);
            let Some(new) = new else {
                self.need(&["groups:delete"], "a group deleted")?;
                self.scope(self.group_ok(Some(&old.id)), || format!("group {}", old.id))?;
                continue;
            };
            if new.name != old.name || new.parent_id != old.parent_id {
                self.need(&["groups:write"], "a group changed")?;
                self.scope(self.group_ok(Some(&old.id)), || format!("group {}", old.id))?;
            }
            let own = |g: &level_api::model::Group| g.custom_fields.clone().unwrap_or_default();
            let (a, b) = (own(old), own(new));
            for (name, _) in a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(v))
                .chain(b.iter().filter(|(k, v)| a.get(*k) != Some(v)))
            {
                self.need(
                    &[
                        "groups:write",
                        "custom-field-values:delete",
                        "custom-fields:delete",
                    ],
                    "a group's own value changed",
                )?;
                self.scope(self.field_ok(name), || format!("field {name} on a group"))?;
                self.scope(self.group_ok(Some(&old.id)), || format!("group {}", old.id))?;
            }
        }
        for new in after
            .groups
            .iter()
            .filter(|g| !before.groups.iter().any(|o| o.id == g.id))
        {
            self.need(&["groups:write"], "a group created")?;
            self.scope(self.final_group_ok(new.parent_id.as_ref()), || {
                format!("group created under {:?}", new.parent_id)
            })?;
        }

        // Custom field definitions.
        for old in &before.custom_fields {
            match after.custom_fields.iter().find(|f| f.id == old.id) {
                None => self.need(&["custom-fields:delete"], "a field deleted")?,
                Some(new) if new.name != old.name => {
                    self.need(&["custom-fields:write"], "a field renamed")?;
                    self.scope(self.field_ok(&new.name), || format!("field {}", new.name))?;
                }
                Some(_) => continue,
            }
            self.scope(self.field_ok(&old.name), || format!("field {}", old.name))?;
            self.scope(self.in_scope.is_none(), || {
                format!("field {} changed for every group", old.name)
            })?;
        }

        // Custom field values.
        let keys: BTreeSet<&(String, Option<String>)> =
            values_before.keys().chain(values_after.keys()).collect();
        for k in keys {
            let (old, new) = (values_before.get(k), values_after.get(k));
            if old == new {
                continue;
            }
            // A value goes with its field, device or group: that deletion was checked above.
            let target_gone = k.1.as_ref().is_some_and(|id| {
                !after.devices.iter().any(|d| &d.id == id)
                    && !after.groups.iter().any(|g| &g.id == id)
            });
            let field_gone = !after.custom_fields.iter().any(|f| f.id == k.0);
            if new.is_none() && (target_gone || field_gone) {
                continue;
            }
            if new.is_some() {
                self.need(&["custom-field-values:write"], "a value set")?;
            } else {
                self.need(
                    &[
                        "custom-field-values:delete",
                        "custom-fields:delete",
                        "devices:delete",
                        "groups:delete",
                    ],
                    "a value removed",
                )?;
            }
            let name = field_names.get(&k.0).map_or("?", |n| n.as_str());
            self.scope(self.field_ok(name), || format!("value of {name}"))?;
            match &k.1 {
                None => self.scope(self.in_scope.is_none(), || {
                    format!("organization value of {name}")
                })?,
                Some(id) => match device_group.get(id) {
                    Some(group) => {
                        self.scope(self.group_ok(*group), || format!("value on device {id}"))?;
                        changed_devices.insert(id.clone());
                    }
                    None => self.scope(self.final_group_ok(Some(id)), || {
                        format!("value on group {id}")
                    })?,
                },
            }
        }

        // Automations.
        for record in triggered {
            self.need(&["automations:trigger"], "an automation triggered")?;
            let allowed = self
                .grant
                .scopes
                .automations
                .as_ref()
                .is_none_or(|a| a.contains(&record.token));
            self.scope(allowed, || "an automation".to_owned())?;
            for run in &record.runs {
                let device = run.device_id.as_ref();
                let group = device.and_then(|d| device_group.get(d).copied().flatten());
                self.scope(self.group_ok(group), || format!("automation on {device:?}"))?;
                if let Some(d) = device {
                    changed_devices.insert(d.clone());
                }
            }
        }

        let count = changed_devices.len() as u64;
        prop_assert!(
            count <= self.grant.limits.max_devices_changed,
            "{} devices changed; the limit is {}",
            count,
            self.grant.limits.max_devices_changed
        );
        Ok(before != after || !triggered.is_empty())
    }
}

fn page() -> PageRequest {
    PageRequest {
        limit: Some(5),
        starting_after: None,
        ending_before: None,
    }
}

/// Makes one call as the HTTP request a client would send the gateway, and
/// returns its status and answer as text (for the key check).
async fn request(road: &GatewayRoad, ids: &Ids, op: &Op) -> String {
    use serde_json::json;
    let target = |t: Target| {
        ids.target(t)
            .map_or(serde_json::Value::Null, serde_json::Value::String)
    };
    let (method, path, body): (&str, String, Option<serde_json::Value>) = match op.clone() {
        Op::ListDevices => ("GET", "/devices?limit=5".to_owned(), None),
        Op::GetDevice(d) => ("GET", format!("/devices/{}", ids.device(d)), None),
        Op::GetGroup(g) => ("GET", format!("/groups/{}", ids.group(g)), None),
        Op::ListValues(d) => (
            "GET",
            match d {
                Some(d) => format!(
                    "/custom_field_values?limit=5&assigned_to_id={}",
                    ids.device(d)
                ),
                None => "/custom_field_values?limit=5".to_owned(),
            },
            None,
        ),
        Op::UpdateDevice(d, group, rename) => {
            let mut body = serde_json::Map::new();
            if rename {
                body.insert("name".into(), json!("renamed"));
            }
            if let Some(g) = group {
                body.insert(
                    "group_id".into(),
                    g.map_or(serde_json::Value::Null, |g| json!(ids.group(g))),
                );
            }
            (
                "PATCH",
                format!("/devices/{}", ids.device(d)),
                Some(body.into()),
            )
        }
        Op::DeleteDevice(d) => ("DELETE", format!("/devices/{}", ids.device(d)), None),
        Op::CreateGroup(parent) => (
            "POST",
            "/groups".to_owned(),
            Some(json!({"name": "New", "parent_id": parent.map(|g| ids.group(g))})),
        ),
        Op::UpdateGroupFields(g, f) => (
            "PATCH",
            format!("/groups/{}", ids.group(g)),
            Some(json!({"custom_fields": {FIELDS[f]: "changed"}})),
        ),
        Op::DeleteGroup(g) => ("DELETE", format!("/groups/{}", ids.group(g)), None),
        Op::AssignDevices(g, d) => (
            "POST",
            format!("/groups/{}/devices", ids.group(g)),
            Some(json!({"device_ids": ids.devices(&d)})),
        ),
        Op::RemoveDevices(g, d) => (
            "DELETE",
            format!("/groups/{}/devices", ids.group(g)),
            Some(json!({"device_ids": ids.devices(&d)})),
        ),
        Op::CreateTag(n) => (
            "POST",
            "/tags".to_owned(),
            Some(json!({"name": TAG_NAMES[n]})),
        ),
        Op::UpdateTag(t, n) => (
            "PATCH",
            format!("/tags/{}", ids.tag(t)),
            Some(json!({"name": TAG_NAMES[n]})),
        ),
        Op::DeleteTag(t) => ("DELETE", format!("/tags/{}", ids.tag(t)), None),
        Op::TagDevices(t, d) => (
            "POST",
            format!("/tags/{}/devices", ids.tag(t)),
            Some(json!({"device_ids": ids.devices(&d)})),
        ),
        Op::UntagDevices(t, d) => (
            "DELETE",
            format!("/tags/{}/devices", ids.tag(t)),
            Some(json!({"device_ids": ids.devices(&d)})),
        ),
        Op::SetValue(f, t, force) => (
            "PATCH",
            "/custom_field_values".to_owned(),
            Some(
                json!({"custom_field_id": ids.field(f), "assigned_to_id": target(t), "value": "changed", "force": force}),
            ),
        ),
        Op::RemoveValue(f, t, force) => (
            "DELETE",
            "/custom_field_values".to_owned(),
            Some(
                json!({"custom_field_id": ids.field(f), "assigned_to_id": target(t), "force": force}),
            ),
        ),
        Op::RenameField(f) => (
            "PATCH",
            format!("/custom_fields/{}", ids.field(f)),
            Some(json!({"name": "Renamed"})),
        ),
        Op::DeleteField(f) => ("DELETE", format!("/custom_fields/{}", ids.field(f)), None),
        Op::Trigger(d) => (
            "POST",
            format!(
                "/automations/webhooks/{}",
                level_sim::seed::SEED_WEBHOOK_TOKEN
            ),
            Some(json!({"device_ids": ids.devices(&d)})),
        ),
    };
    let mut request = road
        .http
        .request(method.parse().unwrap(), format!("{}{path}", road.url))
        .header("Authorization", CLIENT_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            format!("{status} {}", answer.text().await.unwrap_or_default())
        }
        Err(e) => format!("no answer: {e}"),
    }
}

/// Makes one host call and returns its answer as text (for the key check).
async fn call(ctx: &mut LevelCtx, ids: &Ids, op: &Op) -> String {
    match op.clone() {
        Op::ListDevices => format!(
            "{:?}",
            ctx.list_devices(
                DeviceFilter {
                    group: None,
                    tag_id: None,
                    hostname: None,
                    serial_number: None
                },
                DeviceInclude::empty(),
                page()
            )
            .await
        ),
        Op::GetDevice(d) => format!(
            "{:?}",
            ctx.get_device(ids.device(d), DeviceInclude::empty()).await
        ),
        Op::GetGroup(g) => format!("{:?}", ctx.get_group(ids.group(g)).await),
        Op::ListValues(d) => format!(
            "{:?}",
            ctx.list_values(
                ValueFilter {
                    assigned_to_id: d.map(|d| ids.device(d)),
                    custom_field_id: None
                },
                page()
            )
            .await
        ),
        Op::UpdateDevice(d, group, rename) => format!(
            "{:?}",
            ctx.update_device(
                ids.device(d),
                DeviceUpdate {
                    name: rename.then(|| "renamed".to_owned()),
                    notes: None,
                    group: group.map(|g| match g {
                        Some(g) => GroupChange::MoveTo(ids.group(g)),
                        None => GroupChange::Ungroup,
                    }),
                }
            )
            .await
        ),
        Op::DeleteDevice(d) => format!("{:?}", ctx.delete_device(ids.device(d)).await),
        Op::CreateGroup(parent) => format!(
            "{:?}",
            ctx.create_group(NewGroup {
                name: "New".to_owned(),
                parent_id: parent.map(|g| ids.group(g)),
            })
            .await
        ),
        Op::UpdateGroupFields(g, f) => format!(
            "{:?}",
            ctx.update_group(
                ids.group(g),
                GroupUpdate {
                    name: None,
                    parent: None,
                    custom_fields: vec![(FIELDS[f].to_owned(), "changed".to_owned())],
                }
            )
            .await
        ),
        Op::DeleteGroup(g) => format!("{:?}", ctx.delete_group(ids.group(g)).await),
        Op::AssignDevices(g, d) => format!(
            "{:?}",
            ctx.assign_devices(ids.group(g), ids.devices(&d)).await
        ),
        Op::RemoveDevices(g, d) => format!(
            "{:?}",
            ctx.remove_devices(ids.group(g), ids.devices(&d)).await
        ),
        Op::CreateTag(n) => format!("{:?}", ctx.create_tag(TAG_NAMES[n].to_owned()).await),
        Op::UpdateTag(t, n) => format!(
            "{:?}",
            ctx.update_tag(ids.tag(t), TAG_NAMES[n].to_owned()).await
        ),
        Op::DeleteTag(t) => format!("{:?}", ctx.delete_tag(ids.tag(t)).await),
        Op::TagDevices(t, d) => format!("{:?}", ctx.tag_devices(ids.tag(t), ids.devices(&d)).await),
        Op::UntagDevices(t, d) => {
            format!("{:?}", ctx.untag_devices(ids.tag(t), ids.devices(&d)).await)
        }
        Op::SetValue(f, t, force) => format!(
            "{:?}",
            ctx.set_value(ValueAssignment {
                custom_field_id: ids.field(f),
                assigned_to_id: ids.target(t),
                value: "changed".to_owned(),
                force,
            })
            .await
        ),
        Op::RemoveValue(f, t, force) => format!(
            "{:?}",
            ctx.remove_value(ValueRemoval {
                custom_field_id: ids.field(f),
                assigned_to_id: ids.target(t),
                force,
            })
            .await
        ),
        Op::RenameField(f) => format!(
            "{:?}",
            ctx.update_custom_field(
                ids.field(f),
                CustomFieldUpdate {
                    name: Some("Renamed".to_owned()),
                    admin_only: None,
                }
            )
            .await
        ),
        Op::DeleteField(f) => format!("{:?}", ctx.delete_custom_field(ids.field(f)).await),
        Op::Trigger(d) => format!(
            "{:?}",
            ctx.trigger_webhook(
                level_sim::seed::SEED_WEBHOOK_TOKEN.to_owned(),
                TriggerRequest {
                    device_ids: ids.devices(&d),
                    variables: None,
                }
            )
            .await
        ),
    }
}
