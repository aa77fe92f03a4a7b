//! Grants, proven with hostile plugins: whatever a plugin's code does, it
//! cannot exceed its capabilities, scopes or limits, the host survives, and
//! the API key appears nowhere the plugin or a run's records can reach.

use levelhost_core::grant::{Grant, Limits, Scopes};
use levelhost_runtime::runner::{PluginRunner, RunFailure, RunReport, RunRequest};
use serde_json::{Value, json};

use crate::support::{TestEnv, grant};

const CANARY: &str = "canary-KEY-7f3a9c21e5d04b86";

/// A simulator whose read-write key is the canary.
async fn canary_env() -> TestEnv {
    TestEnv::with(level_sim::Simulator::seeded(), |c| {
        c.read_write_key = CANARY.to_owned();
    })
    .await
}

/// Everything a run produced, as one string to search.
fn everything(report: &RunReport) -> String {
    format!(
        "{:?}\n{:?}\n{}\n{}\n{:?}\n{:?}",
        report.outcome, report.logs, report.stdout, report.stderr, report.audit, report.plan
    )
}

fn limited(limits: Limits) -> Grant {
    Grant {
        limits,
        ..Grant::unrestricted("hostile")
    }
}

async fn attack(env: &TestEnv, name: &str, grant: Grant) -> RunReport {
    let report = env
        .run_granted(
            test_programs_artifacts::HOSTILE,
            json!({ "attack": name }),
            grant,
        )
        .await;
    assert!(
        !everything(&report).contains(CANARY),
        "{name}: the key leaked"
    );
    // The host is alive: the next run works.
    let next = env
        .run(test_programs_artifacts::ECHO, json!({"after": name}))
        .await;
    assert_eq!(next.outcome.unwrap()["input"]["after"], name);
    report
}

fn limit_of(report: &RunReport) -> String {
    match &report.outcome {
        Err(RunFailure::LimitExceeded { limit, .. }) => limit.clone(),
        other => panic!("expected a limit to be exceeded, got {other:?}"),
    }
}

#[tokio::test]
async fn an_infinite_loop_times_out() {
    let env = canary_env().await;
    let report = attack(
        &env,
        "loop",
        limited(Limits {
            timeout_secs: 1,
            ..Limits::default()
        }),
    )
    .await;
    assert_eq!(
        report.outcome.unwrap_err(),
        RunFailure::TimedOut(std::time::Duration::from_secs(1))
    );
    assert!(report.duration < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let env = canary_env().await;
    let report = attack(
        &env,
        "memory",
        limited(Limits {
            memory_mb: 16,
            ..Limits::default()
        }),
    )
    .await;
    assert_eq!(limit_of(&report), "memory_mb");
}

#[tokio::test]
async fn deep_recursion_hits_the_stack_limit() {
    let env = canary_env().await;
    let report = attack(&env, "recursion", Grant::unrestricted("hostile")).await;
    assert_eq!(limit_of(&report), "wasm stack");
}

#[tokio::test]
async fn huge_output_hits_the_output_limit() {
    let env = canary_env().await;
    let report = attack(&env, "output", Grant::unrestricted("hostile")).await;
    assert_eq!(limit_of(&report), "max_output_kb");
}

#[tokio::test]
async fn a_log_flood_hits_the_log_limit() {
    let env = canary_env().await;
    let report = attack(
        &env,
        "log-flood",
        limited(Limits {
            max_log_kb: 64,
            ..Limits::default()
        }),
    )
    .await;
    assert_eq!(limit_of(&report), "max_log_kb");
    let kept: usize = report.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 64 * 1024, "what was kept stays within the limit");
    let report = attack(
        &env,
        "stdout-flood",
        limited(Limits {
            max_log_kb: 64,
            ..Limits::default()
        }),
    )
    .await;
    assert_eq!(limit_of(&report), "max_log_kb");
    assert!(report.stdout.len() <= 64 * 1024);
}

#[tokio::test]
async fn an_oversized_host_call_argument_is_refused() {
    let env = canary_env().await;
    let before = env.fixture().tags.len();
    let report = attack(&env, "big-arg", Grant::unrestricted("hostile")).await;
    assert_eq!(limit_of(&report), "max_call_kb");
    assert_eq!(env.fixture().tags.len(), before, "nothing reached Level");
    let record = report
        .audit
        .iter()
        .find(|r| r.operation == "create-tag")
        .unwrap();
    assert!(!record.allowed);
    assert!(record.reason.as_ref().unwrap().contains("max_call_kb"));
}

#[tokio::test]
async fn hunting_for_the_key_finds_nothing() {
    let env = canary_env().await;
    let report = attack(&env, "key-hunt", Grant::unrestricted("hostile")).await;
    let out = report.outcome.expect("the hunt runs to the end");
    assert_eq!(out["env"], json!([]));
    assert!(
        out["/proc/self/environ"]["Err"].is_string(),
        "{}",
        out["/proc/self/environ"]
    );
    assert!(out["levelhost.toml"]["Err"].is_string());
    assert_eq!(
        out["errors"].as_array().unwrap().len(),
        5,
        "Level's errors reached the plugin"
    );
}

#[tokio::test]
async fn calls_outside_the_capability_list_are_denied_and_audited() {
    let env = TestEnv::new().await;
    let before = env.fixture();
    let (out, report) = env
        .call_granted(
            "create-tag",
            json!({"name": "x"}),
            grant(&["devices:read", "tags:read"], Scopes::default()),
        )
        .await;
    assert_eq!(out["error"]["kind"], "denied");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("tags:write:"),
        "{out}"
    );
    assert_eq!(env.fixture(), before, "nothing was written");
    assert_eq!(report.api_calls, 0, "nothing was sent to Level");
    let record = &report.audit[0];
    assert_eq!(
        (record.operation.as_ref(), record.allowed),
        ("create-tag", false)
    );
    assert!(record.reason.as_ref().unwrap().contains("tags:write"));

    for (op, args, cap) in [
        (
            "delete-device",
            json!({"id": env.device_id("acme")}),
            "devices:delete",
        ),
        ("resolve-alert", json!({"id": "x"}), "alerts:resolve"),
        (
            "trigger-webhook",
            json!({"token": "t"}),
            "automations:trigger",
        ),
        ("delete-tag", json!({"id": "x"}), "tags:delete"),
    ] {
        let (out, _) = env
            .call_granted(
                op,
                args,
                grant(
                    &[
                        "devices:read",
                        "devices:write",
                        "tags:read",
                        "tags:write",
                        "alerts:read",
                    ],
                    Scopes::default(),
                ),
            )
            .await;
        assert_eq!(out["error"]["kind"], "denied", "{op}");
        assert!(
            out["error"]["message"].as_str().unwrap().starts_with(cap),
            "{op}: {out}"
        );
    }
    assert_eq!(env.fixture(), before);
}

#[tokio::test]
async fn out_of_scope_ids_are_denied_for_get_update_and_delete() {
    let env = TestEnv::new().await;
    let before = env.fixture();
    let globex = Scopes {
        groups: Some(vec!["Globex".to_owned()]),
        ..Scopes::default()
    };
    let all = grant(
        &[
            "devices:read",
            "devices:write",
            "devices:delete",
            "groups:read",
            "alerts:read",
        ],
        globex,
    );
    let acme_device = env.device_id("acme-hq");
    let globex_device = env.device_id("globex-dc");
    for (op, args) in [
        ("get-device", json!({"id": acme_device})),
        ("update-device", json!({"id": acme_device, "name": "mine"})),
        ("delete-device", json!({"id": acme_device})),
        (
            "update-device",
            json!({"id": globex_device, "group_id": env.group_id("HQ")}),
        ),
        ("get-group", json!({"id": env.group_id("Acme Corp")})),
        ("list-devices", json!({"group": env.group_id("Initech")})),
    ] {
        let (out, report) = env.call_granted(op, args, all.clone()).await;
        assert_eq!(out["error"]["kind"], "denied", "{op}: {out}");
        assert!(
            out["error"]["message"]
                .as_str()
                .unwrap()
                .contains("outside the grant"),
            "{op}: {out}"
        );
        assert!(report.audit.iter().any(|r| !r.allowed && r.operation == op));
    }
    assert_eq!(env.fixture(), before, "nothing changed");

    // In scope: allowed. Lists show only in-scope objects, the Servers subgroup included.
    let (out, _) = env
        .call_granted("get-device", json!({"id": globex_device}), all.clone())
        .await;
    assert_eq!(out["ok"]["id"], globex_device);
    let (out, _) = env
        .call_granted("list-devices", json!({"limit": 100}), all.clone())
        .await;
    let listed = out["ok"]["items"].as_array().unwrap();
    assert_eq!(listed.len(), 20);
    assert!(
        listed
            .iter()
            .all(|d| d["group_name"] == "Globex" || d["group_name"] == "Servers")
    );
    let (out, _) = env
        .call_granted("list-groups", json!({}), all.clone())
        .await;
    let names: Vec<&str> = out["ok"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Globex", "Servers"]);
    let (out, _) = env
        .call_granted("list-alerts", json!({"limit": 100}), all)
        .await;
    let fixture = env.fixture();
    for alert in out["ok"]["items"].as_array().unwrap() {
        let device = fixture
            .devices
            .iter()
            .find(|d| d.id == alert["device_id"])
            .unwrap();
        assert!(device.hostname.starts_with("globex"), "{}", device.hostname);
    }
}

#[tokio::test]
async fn scoped_pages_walk_every_in_scope_device_once() {
    let env = TestEnv::with(level_sim::Simulator::seeded_with(250), |_| {}).await;
    let two_roots = Scopes {
        groups: Some(vec!["Finance".to_owned(), "Initech".to_owned()]),
        ..Scopes::default()
    };
    let report = env
        .run_granted(
            test_programs_artifacts::WALK_DEVICES,
            json!({"limit": 7}),
            grant(&["devices:read"], two_roots),
        )
        .await;
    let out = report.outcome.unwrap();
    let fixture = env.fixture();
    let finance = env.group_id("Finance");
    let initech = env.group_id("Initech");
    let expected: Vec<String> = fixture
        .devices
        .iter()
        .filter(|d| {
            d.group_id.as_deref() == Some(finance.as_str())
                || d.group_id.as_deref() == Some(initech.as_str())
        })
        .map(|d| d.id.clone())
        .collect();
    let forward: Vec<String> = serde_json::from_value(out["forward"].clone()).unwrap();
    let backward: Vec<String> = serde_json::from_value(out["backward"].clone()).unwrap();
    assert_eq!(forward, expected);
    assert_eq!(backward, expected);
}

#[tokio::test]
async fn tag_and_custom_field_scopes_are_allow_lists() {
    let env = TestEnv::new().await;
    let scopes = Scopes {
        tags: Some(levelhost_core::grant::TagPatterns::parse(vec!["stale*".to_owned()]).unwrap()),
        custom_fields: Some(vec!["Region".to_owned()]),
        ..Scopes::default()
    };
    let g = grant(
        &[
            "tags:read",
            "tags:write",
            "custom-fields:read",
            "custom-field-values:read",
        ],
        scopes,
    );
    let (out, _) = env
        .call_granted("create-tag", json!({"name": "vip2"}), g.clone())
        .await;
    assert_eq!(out["error"]["kind"], "denied");
    let (out, _) = env
        .call_granted("create-tag", json!({"name": "stale-30d"}), g.clone())
        .await;
    assert_eq!(out["ok"]["name"], "stale-30d");
    let vip = env
        .fixture()
        .tags
        .into_iter()
        .find(|t| t.name == "vip")
        .unwrap();
    let (out, _) = env
        .call_granted(
            "tag-devices",
            json!({"id": vip.id, "device_ids": [env.device_id("acme")]}),
            g.clone(),
        )
        .await;
    assert_eq!(out["error"]["kind"], "denied");
    let (out, _) = env.call_granted("list-tags", json!({}), g.clone()).await;
    let names: Vec<&str> = out["ok"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stale-30d"]);
    let (out, _) = env
        .call_granted("list-custom-fields", json!({}), g.clone())
        .await;
    assert_eq!(out["ok"]["items"].as_array().unwrap().len(), 1);
    let owner = env
        .fixture()
        .custom_fields
        .into_iter()
        .find(|f| f.name == "Asset Owner")
        .unwrap();
    let (out, _) = env
        .call_granted("get-custom-field", json!({"id": owner.id}), g)
        .await;
    assert_eq!(out["error"]["kind"], "denied");
}

#[tokio::test]
async fn write_budgets_end_the_run_with_the_limit_named() {
    let env = TestEnv::new().await;
    let g = Grant {
        limits: Limits {
            max_writes: 1,
            ..Limits::default()
        },
        ..grant(
            &["devices:read", "tags:read", "tags:write"],
            Scopes::default(),
        )
    };
    let report = env
        .run_granted(
            test_programs_artifacts::STALE_DEVICE_TAGGER,
            json!({"days": 14}),
            g,
        )
        .await;
    assert_eq!(limit_of(&report), "max_writes");
    assert_eq!(
        report.writes, 1,
        "the first write went through, the second did not"
    );

    let g = Grant {
        limits: Limits {
            max_devices_changed: 3,
            ..Limits::default()
        },
        ..grant(
            &["devices:read", "tags:read", "tags:write"],
            Scopes::default(),
        )
    };
    let before: usize = env
        .fixture()
        .devices
        .iter()
        .filter(|d| d.tags.contains(&"stale-x".to_owned()))
        .count();
    let report = env
        .run_granted(
            test_programs_artifacts::STALE_DEVICE_TAGGER,
            json!({"days": 14, "tag": "stale-x"}),
            g,
        )
        .await;
    assert_eq!(limit_of(&report), "max_devices_changed");
    let after: usize = env
        .fixture()
        .devices
        .iter()
        .filter(|d| d.tags.contains(&"stale-x".to_owned()))
        .count();
    assert_eq!(before, after, "no device was tagged");

    let g = Grant {
        limits: Limits {
            max_api_calls: 1,
            ..Limits::default()
        },
        ..Grant::unrestricted("p")
    };
    let report = env
        .run_granted(test_programs_artifacts::DEVICE_REPORT, json!({}), g)
        .await;
    assert_eq!(limit_of(&report), "max_api_calls");
}

/// Issue 12, point 9: a component importing an interface its grant does not
/// cover still loads and runs; every call there answers `denied`, naming
/// the capability (a deny stub, decided by the gate like any other call).
#[tokio::test]
async fn a_component_importing_an_ungranted_interface_runs_with_those_calls_denied() {
    let env = TestEnv::new().await;
    let runner = PluginRunner::new().unwrap();
    let plugin = runner
        .load_file(test_programs_artifacts::DEVICE_REPORT.as_ref())
        .unwrap();
    assert!(
        plugin
            .imports
            .iter()
            .any(|i| i.starts_with("level:api/groups")),
        "{:?}",
        plugin.imports
    );
    let grant = grant(&["devices:read"], Scopes::default());
    let warnings = PluginRunner::ungranted_imports(&plugin, &grant);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("level:api/groups") && w.contains("groups:read")),
        "{warnings:?}"
    );
    let request = RunRequest {
        grant,
        ..RunRequest::manual("{}")
    };
    let report = runner.run(&plugin, env.client(), request).await.unwrap();
    let denied: Vec<_> = report.audit.iter().filter(|r| !r.allowed).collect();
    assert!(
        denied.iter().any(|r| r.operation == "list-groups"
            && r.reason
                .as_deref()
                .is_some_and(|why| why.contains("groups:read"))),
        "{:?}",
        report.audit
    );
    assert!(
        matches!(&report.outcome, Err(RunFailure::Plugin(m)) if m.contains("denied (needs groups:read)")),
        "{:?}",
        report.outcome
    );
}

#[tokio::test]
async fn a_scope_naming_a_missing_group_stops_the_run_before_it_starts() {
    let env = TestEnv::new().await;
    let plugin = env
        .runner
        .load_file(test_programs_artifacts::ECHO.as_ref())
        .unwrap();
    let request = RunRequest {
        grant: grant(
            &["devices:read"],
            Scopes {
                groups: Some(vec!["Umbrella".to_owned()]),
                ..Scopes::default()
            },
        ),
        ..RunRequest::manual("{}")
    };
    let err = env
        .runner
        .run(&plugin, env.client(), request)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"Umbrella\", which Level does not have"),
        "{err}"
    );
}

#[tokio::test]
async fn dry_runs_plan_writes_and_send_none() {
    let env = TestEnv::new().await;
    let before = env.fixture();
    let plugin = env
        .runner
        .load_file(test_programs_artifacts::STALE_DEVICE_TAGGER.as_ref())
        .unwrap();
    let request = RunRequest {
        dry_run: true,
        ..RunRequest::manual(r#"{"days": 14}"#)
    };
    let dry = env
        .runner
        .run(&plugin, env.client(), request)
        .await
        .unwrap();
    let planned: Value = dry.outcome.unwrap();
    assert_eq!(env.fixture(), before, "the simulator is unchanged");
    let ops: Vec<&str> = dry.plan.iter().map(|p| p.operation.as_str()).collect();
    assert_eq!(ops, ["create-tag", "tag-devices"]);
    assert!(dry.audit.iter().filter(|r| r.dry_run).count() == 2);

    let real = env
        .run(
            test_programs_artifacts::STALE_DEVICE_TAGGER,
            json!({"days": 14}),
        )
        .await;
    let done = real.outcome.unwrap();
    assert_eq!(
        planned["tagged"], done["tagged"],
        "the plan and the real run agree"
    );
    let tagged_ids: Vec<Value> = dry.plan[1].request["device_ids"]
        .as_array()
        .unwrap()
        .clone();
    let fixture = env.fixture();
    for id in tagged_ids {
        let device = fixture.devices.iter().find(|d| d.id == id).unwrap();
        assert!(device.tags.contains(&"stale".to_owned()));
    }
}
