//! The host side of `level:api` called directly, without a component
//! (`levelhost_testing::HostCalls`): gate decisions checked by the hundred
//! against the simulator's own state.

use std::collections::{BTreeSet, HashMap};

use level_sim::{Fixture, Simulator};
use levelhost_core::grant::{Grant, Scopes};
use levelhost_runtime::bindings::devices::{DeviceInclude, Host as Devices};
use levelhost_runtime::bindings::tags::Host as Tags;
use levelhost_runtime::bindings::types::Error;
use levelhost_runtime::level::LevelError;
use levelhost_testing::HostCalls;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// The ids of `root` and every group under it.
fn subtree(fixture: &Fixture, root: &str) -> BTreeSet<String> {
    let ids = crate::support::scope_subtree(fixture, Some(&[root.to_owned()])).unwrap_or_default();
    assert!(!ids.is_empty(), "the seed has the group {root}");
    ids
}

fn is_denied(result: &Result<impl std::fmt::Debug, LevelError>) -> bool {
    matches!(result, Err(LevelError::Guest(Error::Denied(_))))
}

#[tokio::test]
async fn a_group_scope_admits_exactly_the_devices_in_its_subtree() {
    let tenant = Simulator::seeded();
    let before = tenant.to_fixture();
    let in_scope = subtree(&before, "Acme Corp");
    let group_of: HashMap<String, Option<String>> = before
        .devices
        .iter()
        .map(|d| (d.id.clone(), d.group_id.clone()))
        .collect();
    let mut grant = Grant::unrestricted("probe");
    grant.scopes = Scopes {
        groups: Some(vec!["Acme Corp".to_owned()]),
        ..Scopes::default()
    };
    grant.limits.max_api_calls = 100_000;
    grant.limits.max_writes = 100_000;
    grant.limits.max_devices_changed = 100_000;
    let mut calls = HostCalls::start(grant, tenant, false).await.unwrap();
    let tag = Tags::create_tag(&mut calls.ctx, "probe".to_owned())
        .await
        .unwrap();

    let ids: Vec<&String> = before.devices.iter().map(|d| &d.id).collect();
    let mut rng = StdRng::seed_from_u64(11);
    let (mut admitted, mut refused) = (0, 0);
    let mut tagged = BTreeSet::new();
    for _ in 0..300 {
        let id = ids[rng.random_range(0..ids.len())].clone();
        let expected = group_of[&id].as_ref().is_some_and(|g| in_scope.contains(g));
        let (got, error, succeeds) = if rng.random_bool(0.5) {
            let r = Devices::get_device(&mut calls.ctx, id.clone(), DeviceInclude::empty()).await;
            ((!is_denied(&r), r.is_ok()), r.err(), expected)
        } else {
            let r = Tags::tag_devices(&mut calls.ctx, tag.id.clone(), vec![id.clone()]).await;
            // Level answers a conflict when the device already has the tag.
            let succeeds = expected && !tagged.contains(&id);
            if r.is_ok() {
                tagged.insert(id.clone());
            }
            ((!is_denied(&r), r.is_ok()), r.err(), succeeds)
        };
        assert_eq!(got, (expected, succeeds), "device {id}: {error:?}");
        if expected {
            admitted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        admitted > 50 && refused > 50,
        "{admitted} admitted, {refused} refused"
    );

    // Level's state is the oracle: the probe tag is on exactly the in-scope devices it was given.
    let after = calls.sim.tenant().to_fixture();
    for device in &after.devices {
        let tagged = device.tags.iter().any(|t| t == "probe");
        let in_scope_device = device
            .group_id
            .as_ref()
            .is_some_and(|g| in_scope.contains(g));
        assert!(
            !tagged || in_scope_device,
            "{} tagged outside the scope",
            device.id
        );
    }
    // Every call was audited: the create, and each of the 300 probes.
    assert_eq!(calls.audit().len(), 301);
    assert_eq!(calls.audit().iter().filter(|r| !r.allowed).count(), refused);
}

#[tokio::test]
async fn a_dry_run_through_the_host_side_plans_writes_and_changes_nothing() {
    let tenant = Simulator::seeded();
    let before = tenant.to_fixture();
    let mut calls = HostCalls::start(Grant::unrestricted("probe"), tenant, true)
        .await
        .unwrap();
    let created = Tags::create_tag(&mut calls.ctx, "planned".to_owned())
        .await
        .unwrap();
    assert_eq!(created.id, "dry-run:tag:planned");
    let plan = calls.take_plan();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].operation, "create-tag");
    assert_eq!(calls.sim.tenant().to_fixture().tags, before.tags);
}

/// Issue 12, point 8: an id that URL normalisation would drop or resolve
/// (`..` turned `GET /v2/devices/..` into `GET /v2/devices`) is refused
/// before any request leaves, for every operation that takes an id.
#[tokio::test]
async fn ids_that_cannot_name_one_object_are_refused_before_reaching_level() {
    use levelhost_runtime::bindings::groups::Host as Groups;
    let mut calls = HostCalls::start(Grant::unrestricted("probe"), Simulator::seeded(), false)
        .await
        .unwrap();
    let before = calls.sim.tenant().to_fixture();
    let sent = calls.sim.received_count();
    fn invalid<T>(r: &Result<T, LevelError>) -> bool {
        matches!(r, Err(LevelError::Guest(Error::InvalidInput(m))) if m.contains("is not an id"))
    }
    for id in ["", ".", ".."] {
        let r = Devices::get_device(&mut calls.ctx, id.to_owned(), DeviceInclude::empty()).await;
        assert!(invalid(&r), "get_device({id:?}): {r:?}");
        let r = Tags::get_tag(&mut calls.ctx, id.to_owned()).await;
        assert!(invalid(&r), "get_tag({id:?}): {r:?}");
        let r = Tags::update_tag(&mut calls.ctx, id.to_owned(), "renamed".to_owned()).await;
        assert!(invalid(&r), "update_tag({id:?}): {r:?}");
        let r = Tags::delete_tag(&mut calls.ctx, id.to_owned()).await;
        assert!(invalid(&r), "delete_tag({id:?}): {r:?}");
        let r = Groups::delete_group(&mut calls.ctx, id.to_owned()).await;
        assert!(invalid(&r), "delete_group({id:?}): {r:?}");
    }
    assert_eq!(calls.sim.received_count(), sent, "no request reached Level");
    assert_eq!(calls.sim.tenant().to_fixture(), before);
    assert!(calls.audit().iter().all(|r| r.reason.is_some()));
}

/// Issue 12, point 8: a planned id (`dry-run:tag:NAME`) is trusted only
/// inside the dry run that planned it; a live run passing one is refused,
/// even with a tag scope that the planned name would satisfy.
#[tokio::test]
async fn a_planned_tag_id_is_refused_outside_a_dry_run() {
    let mut grant = Grant::unrestricted("probe");
    grant.scopes.tags =
        Some(levelhost_core::grant::TagPatterns::parse(vec!["stale".to_owned()]).unwrap());
    let mut calls = HostCalls::start(grant, Simulator::seeded(), false)
        .await
        .unwrap();
    let device = calls.sim.tenant().to_fixture().devices[0].id.clone();
    let before = calls.sim.tenant().to_fixture();
    let r = Tags::tag_devices(&mut calls.ctx, "dry-run:tag:stale".to_owned(), vec![device]).await;
    assert!(
        matches!(&r, Err(LevelError::Guest(Error::InvalidInput(m))) if m.contains("dry run planned")),
        "{r:?}"
    );
    assert_eq!(calls.sim.tenant().to_fixture(), before);
}

/// Issue 12, point 4: `max_call_kb` counts every byte of every argument,
/// including the ids inside `move-to` and `move-under`, so a 200,000
/// character id is refused before it reaches Level or the audit log.
#[tokio::test]
async fn max_call_kb_counts_every_argument_including_nested_ids() {
    use levelhost_runtime::bindings::devices::{DeviceUpdate, GroupChange};
    use levelhost_runtime::bindings::groups::{GroupUpdate, Host as Groups, ParentChange};
    let mut grant = Grant::unrestricted("probe");
    grant.limits.max_call_kb = 4;
    let mut calls = HostCalls::start(grant, Simulator::seeded(), false)
        .await
        .unwrap();
    let fixture = calls.sim.tenant().to_fixture();
    let (device, group) = (fixture.devices[0].id.clone(), fixture.groups[0].id.clone());
    let sent = calls.sim.received_count();
    let huge = "g".repeat(200_000);
    // A limit ends the run: the call traps, naming the limit.
    fn over(r: &Result<(), &LevelError>) -> bool {
        matches!(r, Err(LevelError::Trap(e)) if e.to_string().contains("limit max_call_kb exceeded"))
    }
    let r = Devices::update_device(
        &mut calls.ctx,
        device,
        DeviceUpdate {
            name: None,
            notes: None,
            group: Some(GroupChange::MoveTo(huge.clone())),
        },
    )
    .await;
    assert!(over(&r.as_ref().map(drop)), "{:?}", r.map(drop));
    let r = Groups::update_group(
        &mut calls.ctx,
        group,
        GroupUpdate {
            name: None,
            parent: Some(ParentChange::MoveUnder(huge.clone())),
            custom_fields: Vec::new(),
        },
    )
    .await;
    assert!(over(&r.as_ref().map(drop)), "{:?}", r.map(drop));
    let r = Groups::update_group(
        &mut calls.ctx,
        fixture.groups[1].id.clone(),
        GroupUpdate {
            name: None,
            parent: None,
            custom_fields: vec![("Region".to_owned(), huge)],
        },
    )
    .await;
    assert!(over(&r.as_ref().map(drop)), "{:?}", r.map(drop));
    assert_eq!(calls.sim.received_count(), sent, "nothing reached Level");
    for record in calls.audit() {
        let line = serde_json::to_string(record).unwrap();
        assert!(line.len() < 4096, "an audit line of {} bytes", line.len());
    }
}
