//! The example plugins, run as a user would run them, against the seeded simulator.

use serde_json::json;

use crate::support::TestEnv;

#[tokio::test]
async fn device_report_counts_what_the_simulator_holds() {
    let env = TestEnv::new().await;
    let report = env
        .run(test_programs_artifacts::DEVICE_REPORT, json!({"top": 3}))
        .await;
    let out = report.outcome.expect("device-report succeeds");
    let fixture = env.fixture();
    let online = fixture.devices.iter().filter(|d| d.online).count();
    assert_eq!(out["devices"], fixture.devices.len());
    assert_eq!(out["online"], online);
    assert_eq!(out["offline"], fixture.devices.len() - online);
    let group_total: u64 = out["by_group"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["devices"].as_u64().unwrap())
        .sum();
    assert_eq!(group_total as usize, fixture.devices.len());
    assert!(
        out["by_group"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "Acme Corp / HQ / Finance")
    );
    let platforms: Vec<&String> = out["by_platform"].as_object().unwrap().keys().collect();
    assert_eq!(platforms, ["Linux", "Mac", "Windows"]);
    let stalest = out["stalest"].as_array().unwrap();
    assert_eq!(stalest.len(), 3);
    let days: Vec<i64> = stalest
        .iter()
        .map(|s| s["days_offline"].as_i64().unwrap())
        .collect();
    assert!(
        days.windows(2).all(|w| w[0] >= w[1]),
        "stalest first: {days:?}"
    );
    assert!(days[0] >= 20);
    assert_eq!(report.api_calls, 2, "one page of groups, one of devices");
}

#[tokio::test]
async fn device_report_is_read_only_and_works_with_a_read_only_key() {
    let env = TestEnv::new().await;
    let before = env.fixture();
    let ro = env.client_with_key(env.sim.read_only_key());
    let report = env
        .run_with(test_programs_artifacts::DEVICE_REPORT, json!({}), ro)
        .await;
    assert!(report.outcome.is_ok());
    assert_eq!(env.fixture(), before);
}

#[tokio::test]
async fn device_report_rejects_unknown_input() {
    let env = TestEnv::new().await;
    let report = env
        .run(
            test_programs_artifacts::DEVICE_REPORT,
            json!({"stale_days": 3}),
        )
        .await;
    let failure = report.outcome.unwrap_err().to_string();
    assert!(
        failure.contains("invalid input") && failure.contains("stale_days"),
        "{failure}"
    );
}

#[tokio::test]
async fn stale_device_tagger_tags_stale_devices_once() {
    let env = TestEnv::new().await;
    let now = chrono::Utc::now();
    let expected: Vec<String> = env
        .fixture()
        .devices
        .iter()
        .filter(|d| !d.online)
        .filter(|d| {
            let seen =
                chrono::DateTime::parse_from_rfc3339(d.last_seen_at.as_deref().unwrap()).unwrap();
            (now - seen.with_timezone(&chrono::Utc)).num_days() >= 14
        })
        .map(|d| d.hostname.clone())
        .collect();
    assert!(!expected.is_empty());

    let first = env
        .run(
            test_programs_artifacts::STALE_DEVICE_TAGGER,
            json!({"days": 14, "tag": "stale-14d"}),
        )
        .await
        .outcome
        .unwrap();
    assert_eq!(first["created_tag"], true);
    let mut tagged: Vec<String> = serde_json::from_value(first["tagged"].clone()).unwrap();
    tagged.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(tagged, want);
    let carrying: Vec<String> = env
        .fixture()
        .devices
        .into_iter()
        .filter(|d| d.tags.contains(&"stale-14d".to_owned()))
        .map(|d| d.hostname)
        .collect();
    assert_eq!(
        carrying.len(),
        expected.len(),
        "the simulator shows the tags"
    );

    let second = env
        .run(
            test_programs_artifacts::STALE_DEVICE_TAGGER,
            json!({"days": 14, "tag": "stale-14d"}),
        )
        .await;
    let second_out = second.outcome.unwrap();
    assert_eq!(second_out["created_tag"], false);
    assert_eq!(second_out["tagged"], json!([]));
    assert_eq!(second_out["already_tagged"], expected.len());
    assert_eq!(second.api_calls, 2, "idempotent: reads only, no writes");
}

#[tokio::test]
async fn stale_device_tagger_untags_devices_that_came_back() {
    let env = TestEnv::new().await;
    let vip_devices: Vec<_> = env
        .fixture()
        .devices
        .into_iter()
        .filter(|d| d.tags.contains(&"vip".to_owned()))
        .collect();
    let online: Vec<String> = vip_devices
        .iter()
        .filter(|d| d.online)
        .map(|d| d.hostname.clone())
        .collect();
    assert!(!online.is_empty() && online.len() < vip_devices.len());
    let out = env
        .run(
            test_programs_artifacts::STALE_DEVICE_TAGGER,
            json!({"days": 30, "tag": "vip"}),
        )
        .await
        .outcome
        .unwrap();
    let mut untagged: Vec<String> = serde_json::from_value(out["untagged"].clone()).unwrap();
    untagged.sort();
    let mut want = online.clone();
    want.sort();
    assert_eq!(untagged, want, "online devices lose the tag");
    let after: Vec<_> = env
        .fixture()
        .devices
        .into_iter()
        .filter(|d| d.tags.contains(&"vip".to_owned()))
        .collect();
    assert!(
        after.iter().all(|d| !d.online),
        "no online device keeps the tag"
    );
    for d in vip_devices.iter().filter(|d| !d.online) {
        assert!(
            after.iter().any(|a| a.id == d.id),
            "offline {} keeps it",
            d.hostname
        );
    }
}

#[tokio::test]
async fn plugin_authors_can_test_against_the_simulator() {
    let (report, after) = levelhost_testing::run_on_simulator(
        test_programs_artifacts::STALE_DEVICE_TAGGER.as_ref(),
        json!({"days": 14, "tag": "stale-test"}),
        None,
    )
    .await
    .unwrap();
    let tagged = report.outcome.unwrap()["tagged"].as_array().unwrap().len();
    let carrying = after
        .devices
        .iter()
        .filter(|d| d.tags.contains(&"stale-test".to_owned()))
        .count();
    assert_eq!(tagged, carrying);
    assert!(carrying > 0);
}
