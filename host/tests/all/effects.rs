//! Issue 12: the gate decides on a call's whole effect. Hostile sequences of
//! host calls (no component, `levelhost_testing::HostCalls`), each checked
//! against the simulator's own state: organization-wide effects under a
//! group scope, indirect effects against scopes and budgets, what a plugin
//! sees field by field, cut-off writes on record, and stale scope facts.

use std::time::Duration;

use level_api::model::GroupPatch;
use level_sim::{Fixture, Simulator, Tenant};
use levelhost_core::audit::Stage;
use levelhost_core::grant::{Grant, Scopes};
use levelhost_runtime::bindings::automations::{Host as Automations, TriggerRequest};
use levelhost_runtime::bindings::custom_field_values::{Host as Values, ValueAssignment};
use levelhost_runtime::bindings::custom_fields::Host as Fields;
use levelhost_runtime::bindings::devices::{DeviceInclude, Host as Devices};
use levelhost_runtime::bindings::groups::{GroupUpdate, Host as Groups};
use levelhost_runtime::bindings::tags::Host as Tags;
use levelhost_runtime::bindings::types::Error;
use levelhost_runtime::level::LevelError;
use levelhost_testing::HostCalls;

/// Whether the simulator's organization is as it was (without printing both on failure).
fn unchanged(calls: &HostCalls, before: &Fixture) -> bool {
    calls.sim.tenant().to_fixture() == *before
}

fn denied_needing<T: std::fmt::Debug>(r: &Result<T, LevelError>, capability: &str) -> bool {
    matches!(r, Err(LevelError::Guest(Error::Denied(d))) if d.capability == capability)
}

fn is_denied<T: std::fmt::Debug>(r: &Result<T, LevelError>) -> bool {
    matches!(r, Err(LevelError::Guest(Error::Denied(_))))
}

fn over_limit<T: std::fmt::Debug>(r: &Result<T, LevelError>, limit: &str) -> bool {
    matches!(r, Err(LevelError::Trap(e)) if e.to_string().contains(&format!("limit {limit} exceeded")))
}

/// Every capability, scoped to the "Acme Corp" subtree.
fn acme_grant() -> Grant {
    let mut grant = Grant::unrestricted("probe");
    grant.scopes.groups = Some(vec!["Acme Corp".to_owned()]);
    grant
}

/// The id of the object named `name` in `items` (the seed has it).
fn id_named<T>(items: &[T], name: &str, of: fn(&T) -> (&str, &str)) -> String {
    items
        .iter()
        .map(of)
        .find(|(n, _)| *n == name)
        .map(|(_, id)| id.to_owned())
        .expect("the seed has it")
}

fn group_id(fixture: &Fixture, name: &str) -> String {
    id_named(&fixture.groups, name, |g| (&g.name, &g.id))
}

fn tag_id(fixture: &Fixture, name: &str) -> String {
    id_named(&fixture.tags, name, |t| (&t.name, &t.id))
}

fn field_id(fixture: &Fixture, name: &str) -> String {
    id_named(&fixture.custom_fields, name, |f| (&f.name, &f.id))
}

/// Point 1: an automation triggered with no devices picks its own from the
/// whole organization, so it is an organization-level action: denied under
/// a group scope, and counted against the budget for every device it may reach.
#[tokio::test]
async fn an_automation_left_to_pick_its_devices_is_an_organization_action() {
    let token = level_sim::seed::SEED_WEBHOOK_TOKEN.to_owned();
    let no_devices = || TriggerRequest {
        device_ids: Vec::new(),
        variables: None,
    };
    let mut scoped = HostCalls::start(acme_grant(), Simulator::seeded(), false)
        .await
        .unwrap();
    let sent = scoped.sim.received_count();
    let r = Automations::trigger_webhook(&mut scoped.ctx, token.clone(), no_devices()).await;
    assert!(is_denied(&r), "{r:?}");
    assert!(scoped.sim.tenant().triggered().is_empty());
    assert_eq!(
        scoped.sim.received_count(),
        sent,
        "refused before any look-up"
    );

    let mut grant = Grant::unrestricted("probe");
    grant.limits.max_devices_changed = 5;
    let mut unscoped = HostCalls::start(grant, Simulator::seeded(), false)
        .await
        .unwrap();
    let r = Automations::trigger_webhook(&mut unscoped.ctx, token, no_devices()).await;
    assert!(over_limit(&r, "max_devices_changed"), "{r:?}");
    assert!(unscoped.sim.tenant().triggered().is_empty());
}

/// Point 2: deleting or renaming a tag changes every device carrying it;
/// those devices count against `max_devices_changed` and must all be in scope.
#[tokio::test]
async fn a_tag_change_counts_and_scopes_every_device_carrying_it() {
    let tenant = Simulator::seeded();
    let fixture = tenant.to_fixture();
    let laptop = tag_id(&fixture, "laptop");
    let carriers = fixture
        .devices
        .iter()
        .filter(|d| d.tags.iter().any(|t| t == "laptop"))
        .count();
    assert!(carriers > 5, "the seed tags {carriers} laptops");

    let mut grant = Grant::unrestricted("probe");
    grant.limits.max_devices_changed = 5;
    let mut calls = HostCalls::start(grant, tenant, false).await.unwrap();
    let r = Tags::delete_tag(&mut calls.ctx, laptop.clone()).await;
    assert!(over_limit(&r, "max_devices_changed"), "{r:?}");
    let r = Tags::update_tag(&mut calls.ctx, laptop.clone(), "notebook".to_owned()).await;
    assert!(over_limit(&r, "max_devices_changed"), "{r:?}");
    assert!(unchanged(&calls, &fixture), "nothing changed");

    // Under a group scope, a tag also carried outside it cannot be deleted.
    let mut scoped = HostCalls::start(
        acme_grant(),
        Tenant::from_fixture(fixture.clone()).unwrap(),
        false,
    )
    .await
    .unwrap();
    let r = Tags::delete_tag(&mut scoped.ctx, laptop).await;
    assert!(is_denied(&r), "{r:?}");
    assert!(unchanged(&scoped, &fixture), "nothing changed");
}

/// Point 2: a forced value also removes the values set below it, so it needs
/// `custom-field-values:delete` and reaches every device below its target;
/// deleting a custom field removes its values everywhere, an
/// organization-level action.
#[tokio::test]
async fn forced_values_and_field_deletes_need_what_their_effect_needs() {
    let tenant = Simulator::seeded();
    let fixture = tenant.to_fixture();
    let owner = field_id(&fixture, "Asset Owner");
    let mut grant = Grant::unrestricted("probe");
    grant
        .capabilities
        .retain(|c| c.to_string() != "custom-field-values:delete");
    let mut calls = HostCalls::start(grant, tenant, false).await.unwrap();
    let r = Values::set_value(
        &mut calls.ctx,
        ValueAssignment {
            custom_field_id: owner.clone(),
            assigned_to_id: None,
            value: "nobody".to_owned(),
            force: true,
        },
    )
    .await;
    assert!(denied_needing(&r, "custom-field-values:delete"), "{r:?}");
    assert_eq!(
        calls.sim.tenant().to_fixture().custom_field_values,
        fixture.custom_field_values,
        "every device's own value is still there"
    );

    // With every capability but a budget of 5 devices, the forced value reaches all 60.
    let mut grant = Grant::unrestricted("probe");
    grant.limits.max_devices_changed = 5;
    let mut calls = HostCalls::start(grant, Tenant::from_fixture(fixture.clone()).unwrap(), false)
        .await
        .unwrap();
    let r = Values::set_value(
        &mut calls.ctx,
        ValueAssignment {
            custom_field_id: owner.clone(),
            assigned_to_id: None,
            value: "nobody".to_owned(),
            force: true,
        },
    )
    .await;
    assert!(over_limit(&r, "max_devices_changed"), "{r:?}");
    assert!(unchanged(&calls, &fixture));

    // Under a group scope, neither a forced organization value nor a field delete is allowed.
    let mut scoped = HostCalls::start(
        acme_grant(),
        Tenant::from_fixture(fixture.clone()).unwrap(),
        false,
    )
    .await
    .unwrap();
    let r = Fields::delete_custom_field(&mut scoped.ctx, owner.clone()).await;
    assert!(is_denied(&r), "{r:?}");
    let r = Values::set_value(
        &mut scoped.ctx,
        ValueAssignment {
            custom_field_id: owner,
            assigned_to_id: None,
            value: "nobody".to_owned(),
            force: true,
        },
    )
    .await;
    assert!(is_denied(&r), "{r:?}");
    assert!(unchanged(&scoped, &fixture));
}

/// Point 3: every object a plugin receives passes through the scopes field by
/// field: a group's own values of fields outside the custom-field scope, and
/// a device's tags outside the tag scope, are left out, in reads and in the
/// objects a dry run hands back.
#[tokio::test]
async fn objects_pass_through_the_scopes_field_by_field() {
    let mut tenant = Simulator::seeded();
    let fixture = tenant.to_fixture();
    let acme = group_id(&fixture, "Acme Corp");
    tenant
        .update_group(
            &acme,
            GroupPatch {
                custom_fields: Some(
                    [
                        ("Region".to_owned(), "EU-West".to_owned()),
                        ("Asset Owner".to_owned(), "alice@example.com".to_owned()),
                    ]
                    .into(),
                ),
                ..GroupPatch::default()
            },
        )
        .unwrap();
    let vip_laptop = fixture
        .devices
        .iter()
        .find(|d| d.tags.iter().any(|t| t == "vip") && d.tags.iter().any(|t| t == "laptop"))
        .or_else(|| fixture.devices.iter().find(|d| d.tags.len() > 1))
        .map(|d| d.id.clone())
        .expect("a device with two tags");
    let mut grant = Grant::unrestricted("probe");
    grant.scopes = Scopes {
        custom_fields: Some(vec!["Region".to_owned()]),
        tags: Some(levelhost_core::grant::TagPatterns::parse(vec!["vip".to_owned()]).unwrap()),
        ..Scopes::default()
    };
    for dry_run in [false, true] {
        let mut calls = HostCalls::start(grant.clone(), Tenant::clone(&tenant), dry_run)
            .await
            .unwrap();
        let group = Groups::get_group(&mut calls.ctx, acme.clone())
            .await
            .unwrap();
        let fields: Vec<&str> = group
            .custom_fields
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(fields, ["Region"], "get-group");
        let updated = Groups::update_group(
            &mut calls.ctx,
            acme.clone(),
            GroupUpdate {
                name: Some("Acme".to_owned()),
                parent: None,
                custom_fields: Vec::new(),
            },
        )
        .await
        .unwrap();
        assert!(
            updated.custom_fields.iter().all(|(k, _)| k == "Region"),
            "update-group (dry run {dry_run}): {:?}",
            updated.custom_fields
        );
        let device =
            Devices::get_device(&mut calls.ctx, vip_laptop.clone(), DeviceInclude::empty())
                .await
                .unwrap();
        assert!(
            device.tags.iter().all(|t| t == "vip"),
            "get-device: {:?}",
            device.tags
        );
    }
}

/// Point 5: a write whose answer comes after the run's time limit is on
/// record: "sending" before it left, then "cut off, outcome unknown".
#[tokio::test]
async fn a_write_cut_off_by_the_time_limit_is_on_record() {
    use crate::support::TestEnv;
    use levelhost_runtime::audit::AuditLog;
    use levelhost_runtime::runner::{RunFailure, RunRequest};
    let env = TestEnv::with(Simulator::seeded(), |config| {
        config.write_delay = Duration::from_secs(4);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut grant = Grant::unrestricted("api-call");
    grant.limits.timeout_secs = 1;
    let plugin = env
        .runner
        .load_file(test_programs_artifacts::API_CALL.as_ref())
        .unwrap();
    let request = RunRequest {
        grant,
        audit: Some(AuditLog::open(&path).unwrap()),
        ..RunRequest::manual(r#"{"op": "create-tag", "name": "late"}"#)
    };
    let report = env
        .runner
        .run(&plugin, env.client(), request)
        .await
        .unwrap();
    assert!(
        matches!(report.outcome, Err(RunFailure::TimedOut(_))),
        "{:?}",
        report.outcome
    );
    assert!(
        env.fixture().tags.iter().any(|t| t.name == "late"),
        "the write reached Level"
    );
    let (records, _) = levelhost_runtime::audit::read(&path, &Default::default()).unwrap();
    let stages: Vec<(String, Stage)> = records
        .iter()
        .map(|r| (r.operation.to_string(), r.stage))
        .collect();
    assert_eq!(
        stages,
        [
            ("create-tag".to_owned(), Stage::Sending),
            ("create-tag".to_owned(), Stage::CutOff),
            ("run".to_owned(), Stage::Done),
        ],
        "{records:?}"
    );
    assert!(
        records[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("unknown")),
        "{:?}",
        records[1]
    );
    assert_eq!(records[1].targets, ["tag:late"]);
}

/// Point 7: the group a write decision uses is at most `fact_max_age_secs`
/// old. A device moved out of scope by someone else after the run read it
/// is refused once that fact is older than the bound.
#[tokio::test]
async fn a_write_reads_a_scope_fact_again_once_it_is_older_than_the_bound() {
    let fixture = Simulator::seeded().to_fixture();
    let hq = group_id(&fixture, "HQ");
    let globex = group_id(&fixture, "Globex");
    let device = fixture
        .devices
        .iter()
        .find(|d| d.group_id.as_deref() == Some(hq.as_str()) && !d.tags.iter().any(|t| t == "vip"))
        .map(|d| d.id.clone())
        .expect("a device in HQ without vip");
    let vip = tag_id(&fixture, "vip");
    for (max_age, allowed) in [(0, false), (3600, true)] {
        let mut grant = acme_grant();
        grant.limits.fact_max_age_secs = max_age;
        let mut calls = HostCalls::start(grant, Simulator::seeded(), false)
            .await
            .unwrap();
        Devices::get_device(&mut calls.ctx, device.clone(), DeviceInclude::empty())
            .await
            .unwrap();
        // Someone else moves it to Globex, outside the scope.
        calls
            .sim
            .tenant()
            .update_device(
                &device,
                level_api::model::DevicePatch {
                    group_id: Some(Some(globex.clone())),
                    ..Default::default()
                },
            )
            .unwrap();
        let r = Tags::tag_devices(&mut calls.ctx, vip.clone(), vec![device.clone()]).await;
        assert_eq!(
            r.is_ok(),
            allowed,
            "fact_max_age_secs = {max_age}: {:?}",
            r.map(drop)
        );
    }
}

/// Point 2 and the budgets: `delete-tag` counts the devices it untags.
#[tokio::test]
async fn a_deleted_tag_counts_the_devices_it_untags() {
    let tenant = Simulator::seeded();
    let fixture = tenant.to_fixture();
    let vip = tag_id(&fixture, "vip");
    let carriers = fixture
        .devices
        .iter()
        .filter(|d| d.tags.iter().any(|t| t == "vip"))
        .count() as u64;
    let mut calls = HostCalls::start(Grant::unrestricted("probe"), tenant, false)
        .await
        .unwrap();
    Tags::delete_tag(&mut calls.ctx, vip).await.unwrap();
    assert_eq!(calls.ctx.gate().devices_changed(), carriers);
}
