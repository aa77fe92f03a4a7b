//! The simulator over plain HTTP, as curl would see it.

use std::collections::HashSet;

use level_sim::{RateLimit, Simulator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestEnv;

async fn get(env: &TestEnv, key: Option<&str>, path: &str) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", env.sim.base_url()));
    if let Some(key) = key {
        req = req.header("Authorization", key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_missing_wrong_or_bearer_key_gets_401() {
    let env = TestEnv::new().await;
    let bearer = format!("Bearer {}", env.sim.read_write_key());
    for key in [None, Some("wrong"), Some(bearer.as_str())] {
        let (status, body) = get(&env, key, "/v2/devices").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "key {key:?}");
        assert_eq!(body, json!({"error": "Access denied"}));
    }
    let (status, _) = get(&env, Some(env.sim.read_only_key()), "/v2/devices").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_read_only_key_cannot_write() {
    let env = TestEnv::new().await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/v2/tags", env.sim.base_url()))
        .header("Authorization", env.sim.read_only_key())
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.json::<Value>().await.unwrap()["error"].is_string());
    assert!(
        env.fixture().tags.iter().all(|t| t.name != "x"),
        "nothing was written"
    );
    let resp = http
        .post(format!("{}/v2/tags", env.sim.base_url()))
        .header("Authorization", env.sim.read_write_key())
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn limits_outside_1_to_100_get_400() {
    let env = TestEnv::new().await;
    let key = Some(env.sim.read_write_key());
    for limit in ["0", "101", "abc"] {
        let (status, body) = get(&env, key, &format!("/v2/devices?limit={limit}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={limit}");
        assert!(body["error"].as_str().unwrap().contains("limit"));
    }
    let (status, body) = get(&env, key, "/v2/devices?limit=100").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap().len(), 60);
    assert_eq!(body["has_more"], false);
    let (_, body) = get(&env, key, "/v2/devices").await;
    assert_eq!(
        body["data"].as_array().unwrap().len(),
        20,
        "default page size"
    );
    assert_eq!(body["has_more"], true);
}

#[tokio::test]
async fn starting_after_visits_every_device_exactly_once() {
    let env = TestEnv::with(Simulator::seeded_with(250), |_| {}).await;
    let key = Some(env.sim.read_only_key());
    let mut seen = Vec::new();
    let mut path = "/v2/devices?limit=7".to_owned();
    loop {
        let (status, body) = get(&env, key, &path).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<String> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
        seen.extend(ids.iter().cloned());
        if body["has_more"] != true {
            break;
        }
        let last = ids.last().unwrap();
        path = format!("/v2/devices?limit=7&starting_after={}", urlencode(last));
    }
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 250);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn show_returns_bare_objects_and_404s_are_json() {
    let env = TestEnv::new().await;
    let key = Some(env.sim.read_write_key());
    let id = env.device_id("acme");
    let (status, body) = get(&env, key, &format!("/v2/devices/{}", urlencode(&id))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id.as_str());
    assert!(body.get("data").is_none(), "a bare object, not an envelope");
    assert!(body.get("operating_system").is_none());
    let (_, body) = get(
        &env,
        key,
        &format!(
            "/v2/devices/{}?include_operating_system=true",
            urlencode(&id)
        ),
    )
    .await;
    assert!(body["operating_system"].is_object());
    for path in ["/v2/devices/unknown", "/v2/organizations", "/v2/folders"] {
        let (status, body) = get(&env, key, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, json!({"error": "Not found"}));
    }
}

#[tokio::test]
async fn ids_look_like_level_ids() {
    let env = TestEnv::new().await;
    let fixture = env.fixture();
    use base64::Engine as _;
    let decode = |id: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(id)
                .unwrap(),
        )
        .unwrap()
    };
    assert!(decode(&fixture.devices[0].id).starts_with("gid://level/Device/"));
    assert!(decode(&fixture.groups[0].id).starts_with("gid://level/DeviceGroup/"));
    assert!(decode(&fixture.custom_fields[0].id).starts_with("gid://level/CustomField/"));
    assert!(!fixture.devices[0].id.ends_with('='));
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let env = TestEnv::with(Simulator::seeded(), |c| {
        c.rate_limit = Some(RateLimit {
            requests: 3,
            per: std::time::Duration::from_secs(60),
        });
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/v2/tags", env.sim.base_url());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let resp = http
            .get(&url)
            .header("Authorization", env.sim.read_write_key())
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(
        retry_after.as_deref(),
        Some("20"),
        "one token refills in 60s/3"
    );
    // The other key has its own budget.
    let resp = http
        .get(&url)
        .header("Authorization", env.sim.read_only_key())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_bodies_get_400_and_change_nothing() {
    let env = TestEnv::new().await;
    let before = env.fixture();
    let resp = reqwest::Client::new()
        .post(format!("{}/v2/tags", env.sim.base_url()))
        .header("Authorization", env.sim.read_write_key())
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("Invalid request body")
    );
    assert_eq!(env.fixture(), before);
}

#[tokio::test]
async fn a_json_array_where_an_object_belongs_gets_400_and_changes_nothing() {
    let env = TestEnv::new().await;
    let before = env.fixture();
    let device = &before.devices[0].id;
    let resp = reqwest::Client::new()
        .patch(format!("{}/v2/devices/{device}", env.sim.base_url()))
        .header("Authorization", env.sim.read_write_key())
        .json(&json!(["renamed-by-an-array"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "Invalid request body: expected a JSON object"})
    );
    assert_eq!(env.fixture(), before);
}

#[tokio::test]
async fn an_unsupported_method_is_405_with_a_json_error_for_either_key() {
    let env = TestEnv::new().await;
    for key in [env.sim.read_only_key(), env.sim.read_write_key()] {
        let resp = reqwest::Client::new()
            .put(format!("{}/v2/tags", env.sim.base_url()))
            .header("Authorization", key)
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"error": "Method not allowed"})
        );
    }
    assert!(env.fixture().tags.iter().all(|t| t.name != "x"));
}

#[tokio::test]
async fn include_memory_and_motherboard_return_them_and_only_then() {
    let env = TestEnv::new().await;
    let key = Some(env.sim.read_only_key());
    let (_, plain) = get(&env, key, "/v2/devices?limit=5").await;
    for device in plain["data"].as_array().unwrap() {
        assert!(device.get("memory").is_none() && device.get("motherboard").is_none());
    }
    let (status, full) = get(
        &env,
        key,
        "/v2/devices?limit=5&include_memory=true&include_motherboard=true",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for device in full["data"].as_array().unwrap() {
        let modules = device["memory"].as_array().unwrap();
        assert!(!modules.is_empty(), "{device}");
        let total: u64 = modules.iter().map(|m| m["size"].as_u64().unwrap()).sum();
        assert_eq!(Some(total), device["total_memory"].as_u64());
        assert!(
            device["motherboard"]["manufacturer"].is_string(),
            "{device}"
        );
    }
}

#[tokio::test]
async fn fixtures_round_trip_and_bad_references_are_named() {
    let env = TestEnv::new().await;
    let fixture = env.fixture();
    let reloaded = level_sim::Tenant::from_fixture(fixture.clone()).unwrap();
    assert_eq!(reloaded.to_fixture(), fixture);

    let mut broken = fixture.clone();
    broken.devices[3].group_id = Some("missing-group".to_owned());
    let err = level_sim::Tenant::from_fixture(broken)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&fixture.devices[3].hostname) && err.contains("missing-group"),
        "{err}"
    );

    let mut broken = fixture;
    broken.devices[0].tags.push("no-such-tag".to_owned());
    let err = level_sim::Tenant::from_fixture(broken)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-tag"), "{err}");
}

/// A request with a JSON body, with the read-write key.
async fn send(
    env: &TestEnv,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", env.sim.base_url()))
        .header("Authorization", env.sim.read_write_key())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn unconfirmed_behaviours_switch_with_their_variants() {
    let defaults = TestEnv::new().await;
    let key = Some(defaults.sim.read_only_key());
    let (status, roots) = get(&defaults, key, "/v2/groups?parent_id=null").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!roots["data"].as_array().unwrap().is_empty());
    let (status, _) = get(&defaults, key, "/v2/devices?starting_after=nobody").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(
        &defaults,
        reqwest::Method::POST,
        "/v2/tags",
        json!({"name": "twice"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = send(
        &defaults,
        reqwest::Method::POST,
        "/v2/tags",
        json!({"name": "twice"}),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "Name has already been taken"})
        )
    );

    let mut variants = level_sim::Variants::default();
    for setting in [
        "null-parent=not-found",
        "unknown-cursor=empty-page",
        "duplicate-name=accepted",
    ] {
        variants.set(setting).unwrap();
    }
    assert!(variants.set("null-parent=maybe").is_err());
    assert!(
        variants
            .set("colour=blue")
            .unwrap_err()
            .to_string()
            .contains("known: null-parent")
    );
    let other = TestEnv::with(Simulator::seeded(), |c| {
        c.variants = variants;
        c.created_status = 200;
    })
    .await;
    let key = Some(other.sim.read_only_key());
    let (status, _) = get(&other, key, "/v2/groups?parent_id=null").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = get(&other, key, "/v2/devices?starting_after=nobody").await;
    assert_eq!(
        (status, page),
        (StatusCode::OK, json!({"data": [], "has_more": false}))
    );
    for _ in 0..2 {
        let (status, _) = send(
            &other,
            reqwest::Method::POST,
            "/v2/tags",
            json!({"name": "twice"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        other
            .fixture()
            .tags
            .iter()
            .filter(|t| t.name == "twice")
            .count(),
        2
    );
}

#[tokio::test]
async fn enrolling_a_device_and_changing_groups_deliver_their_events() {
    let received = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, received).await });
    let env = TestEnv::with(Simulator::seeded(), |c| {
        c.webhooks = vec![level_sim::WebhookTarget {
            url: url.clone(),
            secret: "s".to_owned(),
        }];
    })
    .await;
    let (status, device) = send(
        &env,
        reqwest::Method::POST,
        "/_sim/devices",
        json!({"hostname": "new-ws001"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(device["online"], json!(true));
    let (status, _) = send(
        &env,
        reqwest::Method::POST,
        "/_sim/devices",
        json!({"hostname": " "}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, group) = send(
        &env,
        reqwest::Method::POST,
        "/v2/groups",
        json!({"name": "Lab"}),
    )
    .await;
    let id = group["id"].as_str().unwrap();
    send(
        &env,
        reqwest::Method::PATCH,
        &format!("/v2/groups/{id}"),
        json!({"name": "Lab 2"}),
    )
    .await;
    send(
        &env,
        reqwest::Method::DELETE,
        &format!("/v2/groups/{id}"),
        json!({}),
    )
    .await;
    let expected = [
        "device_created",
        "group_created",
        "group_updated",
        "group_deleted",
    ];
    for _ in 0..100 {
        if env.sim.deliveries().len() >= expected.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut delivered: Vec<String> = env
        .sim
        .deliveries()
        .into_iter()
        .filter(|d| d.status == 200)
        .map(|d| d.event_type)
        .collect();
    delivered.sort();
    let mut expected = expected.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(delivered, expected);
}

#[tokio::test]
async fn api_keys_are_created_regenerated_and_deleted_as_on_levels_settings_page() {
    let env = TestEnv::new().await;
    let http = reqwest::Client::new();
    let base = env.sim.base_url();
    let admin = env.sim.read_write_key().to_owned();
    let refused = http
        .post(format!("{base}/_sim/keys"))
        .header("Authorization", env.sim.read_only_key())
        .json(&json!({"access": "read-only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "a read-only key manages no key"
    );
    let made: Value = http
        .post(format!("{base}/_sim/keys"))
        .header("Authorization", &admin)
        .json(&json!({"access": "read-only", "description": "reports"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, first) = (made["id"].as_str().unwrap(), made["key"].as_str().unwrap());
    assert_eq!(
        get(&env, Some(first), "/v2/devices").await.0,
        StatusCode::OK
    );
    let written = http
        .post(format!("{base}/v2/tags"))
        .header("Authorization", first)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        written.status(),
        StatusCode::FORBIDDEN,
        "the new key is read-only"
    );

    let regenerated: Value = http
        .post(format!("{base}/_sim/keys/{id}/regenerate"))
        .header("Authorization", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = regenerated["key"].as_str().unwrap();
    assert_ne!(first, second);
    assert_eq!(
        regenerated["id"], id,
        "regenerating keeps the key's id and access"
    );
    assert_eq!(
        get(&env, Some(first), "/v2/devices").await.0,
        StatusCode::UNAUTHORIZED,
        "the old value stops at once"
    );
    assert_eq!(
        get(&env, Some(second), "/v2/devices").await.0,
        StatusCode::OK
    );

    let deleted = http
        .delete(format!("{base}/_sim/keys/{id}"))
        .header("Authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&env, Some(second), "/v2/devices").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, listed) = get(&env, Some(&admin), "/_sim/keys").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        2,
        "the two configured keys remain"
    );

    // levelhost's probe tells the two apart without changing anything.
    let tags_before = env.fixture().tags.len();
    for (key, expected) in [
        (admin.as_str(), level_api::KeyAccess::ReadWrite),
        (env.sim.read_only_key(), level_api::KeyAccess::ReadOnly),
    ] {
        assert_eq!(
            env.client_with_key(key).probe_access().await.unwrap(),
            expected
        );
    }
    assert!(env.client_with_key("nope").probe_access().await.is_err());
    assert_eq!(
        env.fixture().tags.len(),
        tags_before,
        "the probe changed nothing"
    );
}
