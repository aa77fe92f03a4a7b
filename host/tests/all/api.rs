//! Every one of the 30 `level:api` operations, called by a plugin, through the
//! host and the real client, against the simulator over HTTP. Each test
//! checks the answer the plugin got and the state the simulator ended in.

use serde_json::json;

use crate::support::TestEnv;

#[tokio::test]
async fn alerts_list_show_and_resolve() {
    let env = TestEnv::new().await;
    let active = env
        .ok("list-alerts", json!({"status": "active", "limit": 100}))
        .await;
    let items = active["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|a| a["is_resolved"] == false));
    let resolved = env
        .ok("list-alerts", json!({"status": "resolved", "limit": 100}))
        .await;
    assert!(
        resolved["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["is_resolved"] == true)
    );

    let id = items[0]["id"].as_str().unwrap();
    let device = items[0]["device_id"].as_str().unwrap();
    let shown = env.ok("get-alert", json!({"id": id})).await;
    assert_eq!(shown["id"], id);
    let of_device = env.ok("list-alerts", json!({"device_id": device})).await;
    assert!(
        of_device["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["device_id"] == device)
    );

    let done = env.ok("resolve-alert", json!({"id": id})).await;
    assert_eq!(done["is_resolved"], true);
    assert!(done["resolved_at"].is_string());
    let stored = env
        .fixture()
        .alerts
        .into_iter()
        .find(|a| a.id == id)
        .unwrap();
    assert!(stored.is_resolved);
    assert_eq!(
        env.err("get-alert", json!({"id": "nope"})).await,
        "not-found"
    );
}

#[tokio::test]
async fn custom_fields_create_show_update_delete() {
    let env = TestEnv::new().await;
    let listed = env.ok("list-custom-fields", json!({})).await;
    let before = listed["items"].as_array().unwrap().len();

    let created = env
        .ok(
            "create-custom-field",
            json!({"name": "Warranty End", "admin_only": true}),
        )
        .await;
    assert_eq!(created["reference"], "cf_warranty_end");
    assert_eq!(created["admin_only"], true);
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        env.ok("get-custom-field", json!({"id": id})).await["name"],
        "Warranty End"
    );
    assert_eq!(
        env.err("create-custom-field", json!({"name": "Warranty End"}))
            .await,
        "conflict"
    );

    let updated = env
        .ok(
            "update-custom-field",
            json!({"id": id, "name": "Warranty", "admin_only": false}),
        )
        .await;
    assert_eq!(updated["name"], "Warranty");
    assert_eq!(updated["admin_only"], false);
    assert_eq!(env.fixture().custom_fields.len(), before + 1);

    env.ok("delete-custom-field", json!({"id": id})).await;
    assert_eq!(env.fixture().custom_fields.len(), before);
    assert_eq!(
        env.err("get-custom-field", json!({"id": id})).await,
        "not-found"
    );
}

#[tokio::test]
async fn custom_field_values_cascade_set_and_remove() {
    let env = TestEnv::new().await;
    let region = env
        .fixture()
        .custom_fields
        .into_iter()
        .find(|f| f.name == "Region")
        .unwrap()
        .id;
    let org = env
        .ok("list-values", json!({"custom_field_id": region}))
        .await;
    assert_eq!(org["items"][0]["value"], "EU");

    // A Globex device inherits the Globex override; an Acme device the organization value.
    let globex_device = env.device_id("globex-ws");
    let acme_device = env.device_id("acme-hq");
    let inherited = env
        .ok(
            "list-values",
            json!({"assigned_to_id": globex_device, "custom_field_id": region}),
        )
        .await;
    assert_eq!(inherited["items"][0]["value"], "US");
    assert_eq!(
        inherited["items"][0]["assigned_to_id"],
        env.group_id("Globex")
    );

    let set = env
        .ok(
            "set-value",
            json!({"custom_field_id": region, "assigned_to_id": acme_device, "value": "APAC"}),
        )
        .await;
    assert_eq!(set["value"], "APAC");
    let own = env
        .ok(
            "list-values",
            json!({"assigned_to_id": acme_device, "custom_field_id": region}),
        )
        .await;
    assert_eq!(own["items"][0]["value"], "APAC");
    assert_eq!(own["items"][0]["assigned_to_id"], acme_device);

    env.ok(
        "remove-value",
        json!({"custom_field_id": region, "assigned_to_id": acme_device}),
    )
    .await;
    let back = env
        .ok(
            "list-values",
            json!({"assigned_to_id": acme_device, "custom_field_id": region}),
        )
        .await;
    assert_eq!(back["items"][0]["value"], "EU");

    // force: an organization value that clears every override below it.
    env.ok(
        "set-value",
        json!({"custom_field_id": region, "value": "GLOBAL", "force": true}),
    )
    .await;
    let forced = env
        .ok(
            "list-values",
            json!({"assigned_to_id": globex_device, "custom_field_id": region}),
        )
        .await;
    assert_eq!(forced["items"][0]["value"], "GLOBAL");
    assert_eq!(
        env.err(
            "set-value",
            json!({"custom_field_id": "nope", "value": "x"})
        )
        .await,
        "not-found"
    );
}

#[tokio::test]
async fn devices_filter_show_update_delete() {
    let env = TestEnv::new().await;
    let finance = env.group_id("Finance");
    let hq = env.group_id("HQ");
    let direct = env
        .ok("list-devices", json!({"group": hq, "limit": 100}))
        .await;
    let subtree = env
        .ok("list-devices", json!({"subtree": hq, "limit": 100}))
        .await;
    let direct_n = direct["items"].as_array().unwrap().len();
    let subtree_n = subtree["items"].as_array().unwrap().len();
    assert!(
        direct_n > 0 && subtree_n > direct_n,
        "HQ's subtree includes Finance"
    );
    assert!(
        direct["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["group_id"] == hq)
    );

    let vip = env
        .fixture()
        .tags
        .into_iter()
        .find(|t| t.name == "vip")
        .unwrap();
    let tagged = env
        .ok("list-devices", json!({"tag_id": vip.id, "limit": 100}))
        .await;
    assert_eq!(
        tagged["items"].as_array().unwrap().len() as u32,
        vip.device_count
    );
    assert!(
        tagged["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["tags"].as_array().unwrap().contains(&json!("vip")))
    );

    let id = env.device_id("acme-hq");
    let hostname = env
        .fixture()
        .devices
        .into_iter()
        .find(|d| d.id == id)
        .unwrap()
        .hostname;
    let by_name = env.ok("list-devices", json!({"hostname": hostname})).await;
    assert_eq!(by_name["items"][0]["id"], id);

    let plain = env.ok("get-device", json!({"id": id})).await;
    assert!(
        plain["operating_system"].is_null(),
        "sections only on request"
    );
    let with_os = env
        .ok("get-device", json!({"id": id, "include_os": true}))
        .await;
    assert!(with_os["operating_system"].is_string());

    let updated = env
        .ok(
            "update-device",
            json!({"id": id, "name": "CFO laptop", "notes": "keep", "group_id": finance}),
        )
        .await;
    assert_eq!(updated["nickname"], "CFO laptop");
    assert_eq!(updated["group_name"], "Finance");
    let ungrouped = env
        .ok("update-device", json!({"id": id, "ungroup": true}))
        .await;
    assert!(ungrouped["group_id"].is_null());
    let none = env.ok("list-devices", json!({"ungrouped": true})).await;
    assert_eq!(none["items"][0]["id"], id);

    let total = env.fixture().devices.len();
    env.ok("delete-device", json!({"id": id})).await;
    assert_eq!(env.fixture().devices.len(), total - 1);
    assert_eq!(env.err("get-device", json!({"id": id})).await, "not-found");
}

#[tokio::test]
async fn groups_tree_counts_and_membership() {
    let env = TestEnv::new().await;
    let roots = env.ok("list-groups", json!({"root": true})).await;
    let root_names: Vec<_> = roots["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert_eq!(
        root_names,
        [json!("Acme Corp"), json!("Globex"), json!("Initech")]
    );
    let acme = env.group_id("Acme Corp");
    let children = env.ok("list-groups", json!({"parent": acme})).await;
    assert_eq!(children["items"].as_array().unwrap().len(), 2);

    let created = env
        .ok("create-group", json!({"name": "Lab", "parent_id": acme}))
        .await;
    let lab = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["parent_id"], acme);
    let acme_now = env.ok("get-group", json!({"id": acme})).await;
    assert!(
        acme_now["child_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(lab))
    );

    let renamed = env
        .ok(
            "update-group",
            json!({"id": lab, "name": "Test Lab", "custom_fields": {"Region": "LAB"}}),
        )
        .await;
    assert_eq!(renamed["name"], "Test Lab");
    assert_eq!(renamed["custom_fields"]["Region"], "LAB");
    let moved = env
        .ok("update-group", json!({"id": lab, "make_root": true}))
        .await;
    assert!(moved["parent_id"].is_null());

    let a = env.device_id("initech-ws");
    let b = env.device_id("globex-ws");
    env.ok("assign-devices", json!({"id": lab, "device_ids": [a, b]}))
        .await;
    let lab_now = env.ok("get-group", json!({"id": lab})).await;
    assert_eq!(lab_now["device_count"], 2);
    assert_eq!(
        env.err("delete-group", json!({"id": lab})).await,
        "conflict"
    );
    env.ok("remove-devices", json!({"id": lab, "device_ids": [a]}))
        .await;
    assert_eq!(
        env.ok("get-group", json!({"id": lab})).await["device_count"],
        1
    );
    let a_now = env
        .fixture()
        .devices
        .into_iter()
        .find(|d| d.id == a)
        .unwrap();
    assert_eq!(a_now.group_id, None);

    env.ok("remove-devices", json!({"id": lab, "device_ids": [b]}))
        .await;
    env.ok("delete-group", json!({"id": lab})).await;
    assert_eq!(env.err("get-group", json!({"id": lab})).await, "not-found");
    // Descendant counts include the subtree.
    let acme_counts = env.ok("get-group", json!({"id": acme})).await;
    assert!(acme_counts["descendent_device_count"].as_u64() > acme_counts["device_count"].as_u64());
}

#[tokio::test]
async fn tags_create_apply_remove_delete() {
    let env = TestEnv::new().await;
    let created = env
        .ok("create-tag", json!({"name": "needs-reboot 🔁"}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["device_count"], 0);
    assert_eq!(
        env.err("create-tag", json!({"name": "needs-reboot 🔁"}))
            .await,
        "conflict"
    );
    assert_eq!(
        env.ok("get-tag", json!({"id": id})).await["name"],
        "needs-reboot 🔁"
    );
    let renamed = env
        .ok("update-tag", json!({"id": id, "name": "reboot"}))
        .await;
    assert_eq!(renamed["name"], "reboot");

    let a = env.device_id("acme-br");
    let b = env.device_id("initech");
    let applied = env
        .ok("tag-devices", json!({"id": id, "device_ids": [a, b]}))
        .await;
    assert_eq!(applied["device_count"], 2);
    assert_eq!(
        env.err("tag-devices", json!({"id": id, "device_ids": [a]}))
            .await,
        "conflict",
        "Level answers 422 for a device that already has the tag"
    );
    let on_a = env.ok("list-tags", json!({"device_id": a})).await;
    assert!(
        on_a["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id)
    );

    env.ok("untag-devices", json!({"id": id, "device_ids": [a]}))
        .await;
    assert_eq!(
        env.err("untag-devices", json!({"id": id, "device_ids": [a]}))
            .await,
        "conflict"
    );
    assert_eq!(
        env.ok("get-tag", json!({"id": id})).await["device_count"],
        1
    );

    env.ok("delete-tag", json!({"id": id})).await;
    let b_now = env
        .fixture()
        .devices
        .into_iter()
        .find(|d| d.id == b)
        .unwrap();
    assert!(!b_now.tags.contains(&"reboot".to_owned()));
    let all = env.ok("list-tags", json!({"limit": 100})).await;
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != id)
    );
}

#[tokio::test]
async fn automation_webhook_starts_one_run_per_device() {
    let env = TestEnv::new().await;
    let token = level_sim::seed::SEED_WEBHOOK_TOKEN;
    let a = env.device_id("acme-hq");
    let b = env.device_id("globex-ws");
    let runs = env
        .ok(
            "trigger-webhook",
            json!({"token": token, "device_ids": [a, b], "variables": "{\"reason\":\"stale\"}"}),
        )
        .await;
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["device_id"], a);
    let record = env.sim.tenant().triggered().to_vec();
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].body["reason"], "stale");
    assert_eq!(record[0].body["device_ids"], json!([a, b]));
    assert_eq!(
        env.err("trigger-webhook", json!({"token": "unknown"}))
            .await,
        "not-found"
    );
    assert_eq!(
        env.err(
            "trigger-webhook",
            json!({"token": token, "variables": "[1]"})
        )
        .await,
        "invalid-input"
    );
}

#[tokio::test]
async fn pagination_walks_a_250_device_tenant_both_ways() {
    let env = TestEnv::with(level_sim::Simulator::seeded_with(250), |_| {}).await;
    for limit in [1u32, 37, 100] {
        let report = env
            .run(
                test_programs_artifacts::WALK_DEVICES,
                json!({"limit": limit}),
            )
            .await;
        let out = report.outcome.expect("walk succeeds");
        let forward: Vec<String> = serde_json::from_value(out["forward"].clone()).unwrap();
        let backward: Vec<String> = serde_json::from_value(out["backward"].clone()).unwrap();
        let mut unique = forward.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(forward.len(), 250, "limit {limit}: every device once");
        assert_eq!(unique.len(), 250, "limit {limit}: no device twice");
        assert_eq!(
            backward, forward,
            "limit {limit}: ending_before walks the same order back"
        );
        assert_eq!(out["pages"], 250_u32.div_ceil(limit));
    }
}

#[tokio::test]
async fn level_errors_reach_the_plugin_as_wit_errors() {
    let env = TestEnv::new().await;
    // 401: the host's key is wrong.
    let bad = env.client_with_key("not-a-key");
    let out = env
        .run_with(
            test_programs_artifacts::API_CALL,
            json!({"op": "list-tags"}),
            bad,
        )
        .await
        .outcome
        .unwrap();
    assert_eq!(out["error"]["kind"], "unauthorized");
    // 403: a write with the read-only key.
    let ro = env.client_with_key(env.sim.read_only_key());
    let out = env
        .run_with(
            test_programs_artifacts::API_CALL,
            json!({"op": "create-tag", "name": "x"}),
            ro.clone(),
        )
        .await
        .outcome
        .unwrap();
    assert_eq!(out["error"]["kind"], "unauthorized");
    // Reads with the read-only key work.
    let out = env
        .run_with(
            test_programs_artifacts::API_CALL,
            json!({"op": "list-tags"}),
            ro,
        )
        .await
        .outcome
        .unwrap();
    assert!(out["ok"]["items"].is_array());
    // 404 and 422.
    assert_eq!(
        env.err(
            "get-device",
            json!({"id": "Z2lkOi8vbGV2ZWwvRGV2aWNlLzk5OTk"})
        )
        .await,
        "not-found"
    );
    assert_eq!(
        env.err("create-tag", json!({"name": "vip"})).await,
        "conflict"
    );
    // 400: a limit Level refuses.
    assert_eq!(
        env.err("list-devices", json!({"limit": 101})).await,
        "invalid-input"
    );
}

#[tokio::test]
async fn rate_limited_calls_are_retried_until_they_succeed() {
    // One request per second: the plugin's second and third calls meet 429 and wait.
    let env = TestEnv::with(level_sim::Simulator::seeded(), |c| {
        c.rate_limit = Some(level_sim::RateLimit {
            requests: 1,
            per: std::time::Duration::from_secs(1),
        });
    })
    .await;
    let report = env
        .run(test_programs_artifacts::WALK_DEVICES, json!({"limit": 30}))
        .await;
    let out = report.outcome.expect("the walk succeeds despite 429s");
    assert_eq!(out["forward"].as_array().unwrap().len(), 60);
    assert!(
        report.duration >= std::time::Duration::from_secs(2),
        "it waited for Retry-After"
    );
}
