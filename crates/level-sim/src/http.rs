//! The simulator's HTTP surface: routing, auth, access levels and the rate limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::events::Events;
use super::keys::{Access, Keys};
use super::tenant::{DeviceFilter, Includes, PageArgs, SimError, Tenant};
use super::{RateLimit, SimConfig, lock};
use level_api::model::{
    CustomFieldPatch, DeviceIds, DevicePatch, GroupPatch, NewCustomField, NewGroup, TagName,
    ValueChange,
};

#[derive(Clone)]
struct AppState {
    events: Arc<Events>,
    counters: Arc<super::Counters>,
    config: Arc<SimConfig>,
    tenant: Arc<Mutex<Tenant>>,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
    keys: Arc<Mutex<Keys>>,
}

type Params = Query<HashMap<String, String>>;

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

pub(super) fn router(
    config: SimConfig,
    tenant: Arc<Mutex<Tenant>>,
    events: Arc<Events>,
    counters: Arc<super::Counters>,
    keys: Arc<Mutex<Keys>>,
) -> Router {
    let state = AppState {
        events,
        counters,
        config: Arc::new(config),
        tenant,
        buckets: Arc::default(),
        keys,
    };
    let v2 = Router::new()
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}", get(show_alert))
        .route("/alerts/{id}/resolve", post(resolve_alert))
        .route(
            "/custom_fields",
            get(list_custom_fields).post(create_custom_field),
        )
        .route(
            "/custom_fields/{id}",
            get(show_custom_field)
                .patch(update_custom_field)
                .delete(delete_custom_field),
        )
        .route(
            "/custom_field_values",
            get(list_values).patch(set_value).delete(delete_value),
        )
        .route("/devices", get(list_devices))
        .route(
            "/devices/{id}",
            get(show_device).patch(update_device).delete(delete_device),
        )
        .route("/groups", get(list_groups).post(create_group))
        .route(
            "/groups/{id}",
            get(show_group).patch(update_group).delete(delete_group),
        )
        .route(
            "/groups/{id}/devices",
            post(assign_devices).delete(remove_devices),
        )
        .route("/tags", get(list_tags).post(create_tag))
        .route(
            "/tags/{id}",
            get(show_tag).patch(update_tag).delete(delete_tag),
        )
        .route(
            "/tags/{id}/devices",
            post(tag_devices).delete(untag_devices),
        )
        .route("/automations/webhooks", get(list_webhooks))
        .route("/automations/webhooks/{token}", post(trigger_webhook))
        // Only a request that reached a route and method is checked for its
        // key's access level, so an unsupported method is 405 for every key.
        .route_layer(middleware::from_fn_with_state(state.clone(), access))
        .method_not_allowed_fallback(|| async {
            SimError::new(405, "Method not allowed").into_response()
        });
    Router::new()
        .nest("/v2", v2)
        // Not Level's API: lets a user (or a test) make a monitor fire.
        .route("/_sim/alerts", post(raise_alert))
        // Not Level's API either: enrolls a device, as Level's agent would.
        .route("/_sim/devices", post(enroll_device))
        // Level's Settings -> API Keys page (a read-write key manages keys here).
        .route("/_sim/keys", get(list_keys).post(create_key))
        .route("/_sim/keys/{id}/regenerate", post(regenerate_key))
        .route("/_sim/keys/{id}", axum::routing::delete(delete_key))
        .fallback(|| async { SimError::not_found() })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Auth (401) and rate limit (429), in that order; the access level (403)
/// is [`access`]'s, once the request has found its route.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    state
        .counters
        .received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Exact match only: `Bearer <key>` is refused, as Level does.
    if lock(&state.keys).access(&key).is_none() {
        return SimError::new(401, "Access denied").into_response();
    }
    if let Some(limit) = state.config.rate_limit {
        let mut buckets = state
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(key).or_insert_with(|| Bucket::full(limit));
        if let Err(wait_secs) = bucket.take(limit, Instant::now()) {
            state
                .counters
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut response = SimError::new(429, "Rate limit exceeded").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait_secs));
            return response;
        }
    }
    next.run(request).await
}

/// The key's access level (403 for a write with the read-only key), and the
/// configured delay of a slow Level's writes.
async fn access(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let read_only = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|key| lock(&state.keys).access(key))
        == Some(Access::ReadOnly);
    let writes = matches!(
        *request.method(),
        Method::POST | Method::PATCH | Method::DELETE | Method::PUT
    );
    if read_only && writes {
        return SimError::new(403, "This API key has read-only access").into_response();
    }
    let response = next.run(request).await;
    if writes && !state.config.write_delay.is_zero() {
        tokio::time::sleep(state.config.write_delay).await;
    }
    response
}

/// A token bucket: `requests` tokens that refill evenly over `per`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: RateLimit) -> Self {
        Self {
            tokens: f64::from(limit.requests),
            at: Instant::now(),
        }
    }

    /// Takes a token, or says how many whole seconds until one is free.
    fn take(&mut self, limit: RateLimit, now: Instant) -> Result<(), u64> {
        let capacity = f64::from(limit.requests.max(1));
        let rate = capacity / limit.per.as_secs_f64().max(0.001);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

fn page(state: &AppState, params: &HashMap<String, String>) -> PageArgs {
    PageArgs {
        limit: params.get("limit").cloned(),
        starting_after: params.get("starting_after").cloned(),
        ending_before: params.get("ending_before").cloned(),
        unknown_cursor: state.config.variants.unknown_cursor,
    }
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    matches!(params.get(name).map(String::as_str), Some("true" | "1"))
}

fn includes(params: &HashMap<String, String>) -> Includes {
    Includes {
        operating_system: flag(params, "include_operating_system"),
        cpus: flag(params, "include_cpus"),
        memory: flag(params, "include_memory"),
        disks: flag(params, "include_disks"),
        disk_partitions: flag(params, "include_disk_partitions"),
        network_interfaces: flag(params, "include_network_interfaces"),
        motherboard: flag(params, "include_motherboard"),
        security: flag(params, "include_security"),
    }
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, SimError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| SimError::new(400, format!("Invalid request body: {e}")))?;
    // serde reads a JSON array into a struct field by field; Level wants an object.
    if !value.is_object() {
        return Err(SimError::new(
            400,
            "Invalid request body: expected a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| SimError::new(400, format!("Invalid request body: {e}")))
}

type Answer = Result<Response, SimError>;

fn ok<T: Serialize>(value: T) -> Answer {
    Ok(Json(value).into_response())
}

fn created<T: Serialize>(state: &AppState, value: T) -> Answer {
    let status = StatusCode::from_u16(state.config.created_status).unwrap_or(StatusCode::CREATED);
    Ok((status, Json(value)).into_response())
}

fn done() -> Answer {
    ok(serde_json::json!({}))
}

// ---- alerts ----

async fn list_alerts(State(s): State<AppState>, Query(q): Params) -> Answer {
    let t = lock(&s.tenant);
    ok(t.list_alerts(
        q.get("device_id").map(String::as_str),
        q.get("status").map(String::as_str),
        &page(&s, &q),
    )?)
}

async fn show_alert(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    ok(lock(&s.tenant).get_alert(&id)?)
}

async fn resolve_alert(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    let (alert, changed) = lock(&s.tenant).resolve_alert(&id)?;
    if changed {
        s.events.emit(
            "alert_resolved",
            serde_json::to_value(&alert).unwrap_or_default(),
        );
    }
    ok(alert)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAlert {
    device_id: String,
    name: String,
    #[serde(default = "default_severity")]
    severity: String,
}

fn default_severity() -> String {
    "warning".to_owned()
}

#[derive(serde::Deserialize)]
struct NewDevice {
    hostname: String,
    #[serde(default)]
    group_id: Option<String>,
}

async fn enroll_device(State(s): State<AppState>, raw: Bytes) -> Answer {
    let new: NewDevice = body(&raw)?;
    let device = lock(&s.tenant).enroll_device(&new.hostname, new.group_id.as_deref())?;
    s.events.emit(
        "device_created",
        serde_json::to_value(&device).unwrap_or_default(),
    );
    created(&s, device)
}

/// A key's access, from the request: managing keys needs a read-write key.
fn key_admin(s: &AppState, headers: &axum::http::HeaderMap) -> Result<(), SimError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match lock(&s.keys).access(key) {
        Some(Access::ReadWrite) => Ok(()),
        _ => Err(SimError::new(
            403,
            "Managing API keys needs a read-write key",
        )),
    }
}

#[derive(serde::Deserialize)]
struct NewKey {
    access: Access,
    #[serde(default)]
    description: String,
}

async fn list_keys(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Answer {
    key_admin(&s, &headers)?;
    ok(serde_json::json!({ "data": lock(&s.keys).list() }))
}

async fn create_key(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    raw: Bytes,
) -> Answer {
    key_admin(&s, &headers)?;
    let new: NewKey = body(&raw)?;
    let record = lock(&s.keys).create(new.access, &new.description);
    created(&s, record)
}

async fn regenerate_key(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    key_admin(&s, &headers)?;
    let record = lock(&s.keys).regenerate(&id)?;
    ok(record)
}

async fn delete_key(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    key_admin(&s, &headers)?;
    lock(&s.keys).delete(&id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn raise_alert(State(s): State<AppState>, raw: Bytes) -> Answer {
    let new: NewAlert = body(&raw)?;
    let alert = lock(&s.tenant)
        .raise_alert(&new.device_id, &new.name, &new.severity)
        .map_err(|e| {
            if e.status == 404 {
                SimError::new(422, "device_id does not exist")
            } else {
                e
            }
        })?;
    s.events.emit(
        "alert_active",
        serde_json::to_value(&alert).unwrap_or_default(),
    );
    created(&s, alert)
}

// ---- custom fields ----

async fn list_custom_fields(State(s): State<AppState>, Query(q): Params) -> Answer {
    ok(lock(&s.tenant).list_custom_fields(&page(&s, &q))?)
}

async fn show_custom_field(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    ok(lock(&s.tenant).get_custom_field(&id)?)
}

async fn create_custom_field(State(s): State<AppState>, raw: Bytes) -> Answer {
    let new: NewCustomField = body(&raw)?;
    let field = lock(&s.tenant).create_custom_field(new)?;
    created(&s, field)
}

async fn update_custom_field(
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Answer {
    let patch: CustomFieldPatch = body(&raw)?;
    ok(lock(&s.tenant).update_custom_field(&id, patch)?)
}

async fn delete_custom_field(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    lock(&s.tenant).delete_custom_field(&id)?;
    done()
}

// ---- custom field values ----

async fn list_values(State(s): State<AppState>, Query(q): Params) -> Answer {
    ok(lock(&s.tenant).list_values(
        q.get("assigned_to_id")
            .map(String::as_str)
            .filter(|v| *v != "null"),
        q.get("custom_field_id").map(String::as_str),
        &page(&s, &q),
    )?)
}

async fn set_value(State(s): State<AppState>, raw: Bytes) -> Answer {
    let change: ValueChange = body(&raw)?;
    ok(lock(&s.tenant).set_value(change)?)
}

async fn delete_value(State(s): State<AppState>, Query(q): Params, raw: Bytes) -> Answer {
    // Some clients send DELETE without a body: accept the query string too.
    let change: ValueChange = if raw.iter().all(u8::is_ascii_whitespace) {
        ValueChange {
            custom_field_id: q
                .get("custom_field_id")
                .cloned()
                .ok_or_else(|| SimError::new(400, "custom_field_id is required"))?,
            assigned_to_id: q.get("assigned_to_id").cloned().filter(|v| v != "null"),
            value: None,
            force: flag(&q, "force"),
        }
    } else {
        body(&raw)?
    };
    lock(&s.tenant).delete_value(change)?;
    done()
}

// ---- devices ----

async fn list_devices(State(s): State<AppState>, Query(q): Params) -> Answer {
    let filter = DeviceFilter {
        group_id: q.get("group_id").cloned(),
        ancestor_group_id: q.get("ancestor_group_id").cloned(),
        tag_id: q.get("tag_id").cloned(),
        hostname: q.get("hostname").cloned(),
        serial_number: q.get("serial_number").cloned(),
    };
    ok(lock(&s.tenant).list_devices(&filter, &includes(&q), &page(&s, &q))?)
}

async fn show_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Answer {
    ok(lock(&s.tenant).get_device(&id, &includes(&q))?)
}

async fn update_device(State(s): State<AppState>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let patch: DevicePatch = body(&raw)?;
    let device = lock(&s.tenant).update_device(&id, patch)?;
    s.events.emit(
        "device_updated",
        serde_json::to_value(&device).unwrap_or_default(),
    );
    ok(device)
}

async fn delete_device(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    lock(&s.tenant).delete_device(&id)?;
    s.events
        .emit("device_deleted", serde_json::json!({ "id": id }));
    done()
}

// ---- groups ----

async fn list_groups(State(s): State<AppState>, Query(q): Params) -> Answer {
    let parent = q.get("parent_id").map(String::as_str);
    if parent == Some("null") && s.config.variants.null_parent == crate::NullParent::NotFound {
        return Err(SimError::not_found());
    }
    ok(lock(&s.tenant).list_groups(parent, &page(&s, &q))?)
}

async fn show_group(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    ok(lock(&s.tenant).get_group(&id)?)
}

async fn create_group(State(s): State<AppState>, raw: Bytes) -> Answer {
    let new: NewGroup = body(&raw)?;
    let group = lock(&s.tenant).create_group(new)?;
    s.events.emit(
        "group_created",
        serde_json::to_value(&group).unwrap_or_default(),
    );
    created(&s, group)
}

async fn update_group(State(s): State<AppState>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let patch: GroupPatch = body(&raw)?;
    let group = lock(&s.tenant).update_group(&id, patch)?;
    s.events.emit(
        "group_updated",
        serde_json::to_value(&group).unwrap_or_default(),
    );
    ok(group)
}

async fn delete_group(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    lock(&s.tenant).delete_group(&id)?;
    s.events
        .emit("group_deleted", serde_json::json!({ "id": id }));
    done()
}

async fn assign_devices(State(s): State<AppState>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let ids: DeviceIds = body(&raw)?;
    let mut t = lock(&s.tenant);
    t.assign_devices(&id, &ids.device_ids)?;
    ok(t.get_group(&id)?)
}

async fn remove_devices(State(s): State<AppState>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let ids: DeviceIds = body(&raw)?;
    lock(&s.tenant).remove_devices(&id, &ids.device_ids)?;
    done()
}

// ---- tags ----

async fn list_tags(State(s): State<AppState>, Query(q): Params) -> Answer {
    ok(lock(&s.tenant).list_tags(q.get("device_id").map(String::as_str), &page(&s, &q))?)
}

async fn show_tag(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    ok(lock(&s.tenant).get_tag(&id)?)
}

async fn create_tag(State(s): State<AppState>, raw: Bytes) -> Answer {
    let new: TagName = body(&raw)?;
    let tag = lock(&s.tenant).create_tag(&new.name)?;
    created(&s, tag)
}

async fn update_tag(State(s): State<AppState>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let new: TagName = body(&raw)?;
    ok(lock(&s.tenant).update_tag(&id, &new.name)?)
}

async fn delete_tag(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    lock(&s.tenant).delete_tag(&id)?;
    done()
}

async fn tag_devices(State(s): State<AppState>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let ids: DeviceIds = body(&raw)?;
    ok(lock(&s.tenant).tag_devices(&id, &ids.device_ids)?)
}

async fn untag_devices(State(s): State<AppState>, Path(id): Path<String>, raw: Bytes) -> Answer {
    let ids: DeviceIds = body(&raw)?;
    lock(&s.tenant).untag_devices(&id, &ids.device_ids)?;
    done()
}

// ---- automations ----

/// `GET /v2/automations/webhooks`, as reported for newer versions of Level's
/// API: each trigger's URL (its token the last segment) and its automation.
async fn list_webhooks(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Answer {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let data: Vec<serde_json::Value> = lock(&s.tenant)
        .webhooks()
        .iter()
        .map(|h| {
            serde_json::json!({
                "url": format!("http://{host}/v2/automations/webhooks/{}", h.token),
                "automation_id": h.automation_id,
                "automation_name": h.name,
                "requires_authorization_header": false,
                "parameters": [],
            })
        })
        .collect();
    ok(serde_json::json!({ "data": data, "has_more": false }))
}

async fn trigger_webhook(
    State(s): State<AppState>,
    Path(token): Path<String>,
    raw: Bytes,
) -> Answer {
    let value: serde_json::Value = body(&raw)?;
    if !value.is_object() {
        return Err(SimError::new(400, "The body must be a JSON object"));
    }
    let runs = lock(&s.tenant).trigger(&token, value)?;
    ok(serde_json::json!({ "runs": runs }))
}
