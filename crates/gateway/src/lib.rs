//! The gateway: Level's v2 REST API for the scripts and tools that already
//! speak it (PowerShell on endpoints, Python jobs, Level's n8n node), each
//! with a client key of its own and a grant in the plugins' vocabulary.
//!
//! A request is authenticated by its client key (`Authorization: KEY`, as
//! Level and its n8n node send it, or `Bearer KEY`), read into the typed
//! operation a plugin's host call is ([`request::Request`]: Level's paths,
//! parameters and fields only, anything else refused), and run by the same
//! host call code ([`levelhost_runtime::level::LevelCtx`]): the same gate
//! (capabilities, scopes on every object and indirect effect, budgets), the
//! same Level client (its rate budget shared with the plugins on that key),
//! the same audit records with the client as principal, and the same
//! filtering of answers (lists keep pages of in-scope objects with valid
//! cursors). The answer goes back in Level's own JSON ([`answer`]). The Level
//! key never leaves the host; a request presenting one is refused.

pub mod answer;
pub mod keys;
pub mod request;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use level_api::{LevelClient, model};
use levelhost_core::gate::Gate;
use levelhost_core::grant::{Grant, ResolvedScopes};
use levelhost_runtime::audit::AuditLog;
use levelhost_runtime::bindings::alerts::Host as _;
use levelhost_runtime::bindings::automations::Host as _;
use levelhost_runtime::bindings::custom_field_values::Host as _;
use levelhost_runtime::bindings::custom_fields::Host as _;
use levelhost_runtime::bindings::devices::Host as _;
use levelhost_runtime::bindings::groups::Host as _;
use levelhost_runtime::bindings::tags::Host as _;
use levelhost_runtime::bindings::types::Error as LevelApiError;
use levelhost_runtime::level::{LevelCtx, LevelError, LogSink, RunInfo, SharedGate};

pub use keys::{ClientKey, KeyHash};
use request::{Refused, Request};

/// The operation name of a gateway request's own audit record (one refused
/// before any host call: a bad key, an unknown path, the client's rate).
pub const GATEWAY_OPERATION: &str = "gateway-request";

/// How long a request Level refused for levelhost's key waits for a reload
/// that brings a new one.
const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// The operation name of the audit record of a client's scope look-up.
pub const SCOPES_OPERATION: &str = "resolve-scopes";

/// How long a client's resolved scopes (group names made ids) are reused.
const SCOPES_MAX_AGE: Duration = Duration::from_secs(60);

/// One client as the operator configured it.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Its name, the principal of its audit records.
    pub name: String,
    /// What it may do: capabilities, scopes, and per-request limits.
    pub grant: Grant,
    /// The hash of its key (the key itself is not kept).
    pub key: KeyHash,
    /// After this, its key is refused.
    pub expires: Option<DateTime<Utc>>,
    /// Requests it may make per minute (0: no limit of its own).
    pub requests_per_minute: u32,
    /// Requests it may make per hour (0: no limit of its own).
    pub requests_per_hour: u32,
    /// The Level client of the key the host uses for it.
    pub level: LevelClient,
}

/// A client with what the gateway keeps about it while it runs.
struct Client {
    spec: ClientSpec,
    scopes: tokio::sync::Mutex<Option<(Instant, ResolvedScopes)>>,
    /// Requests in the current minute and hour windows.
    windows: Mutex<[(Instant, u32); 2]>,
    last_used: Mutex<Option<DateTime<Utc>>>,
}

/// What `status` and the console show of a client.
#[derive(Debug, Clone)]
pub struct ClientStatus {
    /// Its name.
    pub name: String,
    /// When it last made a request this process answered.
    pub last_used: Option<DateTime<Utc>>,
    /// When its key stops working.
    pub expires: Option<DateTime<Utc>>,
    /// Its grant in words.
    pub grant: Vec<String>,
}

/// What became of a request, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answered by Level through the gate.
    Allowed,
    /// The gate refused it: the grant does not allow it (`403`).
    Denied,
    /// Refused before the gate: no or a wrong key, an expired key, the
    /// client's rate, or not Level's API.
    Refused,
    /// Level (or the audit) failed it.
    Failed,
}

impl Verdict {
    /// Its name, as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// Told of every request the gateway answered (the metrics).
pub trait Observer: Send + Sync {
    /// `client` (`?` when no client's key was presented) made a request for
    /// `operation` (`gateway-request` when it never became one), with `verdict`.
    fn request(&self, client: &str, operation: &str, verdict: Verdict);
}

struct Outcome {
    client: String,
    operation: String,
    verdict: Verdict,
}

/// The gateway's state: its clients (swapped whole on a reload), the hashes
/// of the real Level keys (refused on sight), and the audit log.
pub struct Gateway {
    clients: RwLock<Arc<HashMap<KeyHash, Arc<Client>>>>,
    level_keys: RwLock<Arc<Vec<KeyHash>>>,
    audit: Option<AuditLog>,
    next: AtomicU64,
    observer: RwLock<Option<Arc<dyn Observer>>>,
    /// Woken by every reload ([`Gateway::replace`]).
    reloads: tokio::sync::Notify,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway for `clients`, refusing any of `level_keys` (the real keys'
    /// values), auditing to `audit`.
    pub fn new(clients: Vec<ClientSpec>, level_keys: &[&str], audit: Option<AuditLog>) -> Self {
        let gateway = Self {
            clients: RwLock::default(),
            level_keys: RwLock::default(),
            audit,
            next: AtomicU64::new(0),
            observer: RwLock::default(),
            reloads: tokio::sync::Notify::new(),
        };
        gateway.replace(clients, level_keys);
        gateway
    }

    /// Swaps in a new set of clients and Level keys (a reload): a client
    /// whose key and grant did not change keeps its rate windows and last
    /// use; a removed or rotated key is refused from the next request on.
    pub fn replace(&self, clients: Vec<ClientSpec>, level_keys: &[&str]) {
        let before = self.table();
        let mut table = HashMap::new();
        for spec in clients {
            let kept = before
                .get(&spec.key)
                .filter(|c| c.spec.name == spec.name && c.spec.grant == spec.grant);
            let client = Client {
                windows: Mutex::new(kept.map_or([(Instant::now(), 0); 2], |c| *lock(&c.windows))),
                last_used: Mutex::new(kept.and_then(|c| *lock(&c.last_used))),
                scopes: tokio::sync::Mutex::new(None),
                spec,
            };
            table.insert(client.spec.key, Arc::new(client));
        }
        *write(&self.clients) = Arc::new(table);
        *write(&self.level_keys) = Arc::new(level_keys.iter().map(|k| KeyHash::of(k)).collect());
        // Requests Level refused for the key this reload may replace wait for it.
        self.reloads.notify_waiters();
    }

    fn table(&self) -> Arc<HashMap<KeyHash, Arc<Client>>> {
        self.clients
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Tells `observer` of every request from now on.
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        *write(&self.observer) = Some(observer);
    }

    /// Every client's name, last use, expiry and grant, by name.
    pub fn status(&self) -> Vec<ClientStatus> {
        let mut out: Vec<ClientStatus> = self
            .table()
            .values()
            .map(|c| ClientStatus {
                name: c.spec.name.clone(),
                last_used: *lock(&c.last_used),
                expires: c.spec.expires,
                grant: describe(&c.spec.grant),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The router: every path is Level's API (`/v2/...`).
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().fallback(handle).with_state(self)
    }

    fn request_id(&self) -> String {
        format!(
            "gw_{}_{}",
            Utc::now().format("%Y%m%d%H%M%S"),
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Writes a gateway record (a request refused before any host call).
    async fn audit_refusal(&self, principal: &str, id: &str, target: String, why: &str) {
        let Some(audit) = &self.audit else { return };
        let mut record = run_info(principal, id).record(
            GATEWAY_OPERATION.to_owned(),
            vec![target],
            Some(why.to_owned()),
            Duration::ZERO,
        );
        record.allowed = false;
        if let Err(e) = audit.append(&record).await.and(audit.sync().await) {
            tracing::error!("{}", levelhost_core::Chain(&e));
        }
    }
}

/// A client's grant in words: a plugin's, with the limits that apply to a
/// client's request (a plugin's run time and memory do not).
pub fn describe(grant: &Grant) -> Vec<String> {
    grant
        .describe()
        .into_iter()
        .map(|line| {
            if line.starts_with("limits: ") {
                let l = &grant.limits;
                format!(
                    "limits: {} API calls, {} writes, {} devices changed per request",
                    l.max_api_calls, l.max_writes, l.max_devices_changed
                )
            } else {
                line
            }
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Level's error answer: `{"error": message}` with its status.
fn level_error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Level's 429, with the seconds to wait (at least one) in `Retry-After`.
fn rate_limited(seconds: u64) -> Response {
    let mut answer = level_error(429, "Rate limit exceeded");
    answer
        .headers_mut()
        .insert("retry-after", HeaderValue::from(seconds.max(1)));
    answer
}

/// Who made a gateway request, for its audit records: the client (its
/// principal) and the request's id in place of a run's.
fn run_info(principal: &str, id: &str) -> RunInfo {
    RunInfo {
        plugin: principal.into(),
        version: "gateway".into(),
        digest: "".into(),
        run_id: id.into(),
    }
}

fn access_denied() -> Response {
    level_error(401, "Access denied")
}

/// The key a request presents: `Authorization: KEY` or `Bearer KEY`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let key = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    (!key.is_empty()).then_some(key)
}

async fn handle(
    State(gateway): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut outcome = Outcome {
        client: "?".to_owned(),
        operation: GATEWAY_OPERATION.to_owned(),
        verdict: Verdict::Refused,
    };
    let response = answer(&gateway, &method, &uri, &headers, &body, &mut outcome).await;
    let observer = gateway
        .observer
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(observer) = observer {
        observer.request(&outcome.client, &outcome.operation, outcome.verdict);
    }
    response
}

/// Answers one request, noting in `outcome` whose it was, which operation,
/// and what became of it.
async fn answer(
    gateway: &Gateway,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    outcome: &mut Outcome,
) -> Response {
    let id = gateway.request_id();
    let target = format!("http:{method} {}", uri.path());
    let Some(key) = presented(headers) else {
        gateway
            .audit_refusal("client:?", &id, target, "refused: no client key")
            .await;
        return access_denied();
    };
    let hash = KeyHash::of(key);
    let presents_level_key = gateway
        .level_keys
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(&hash);
    let Some(client) = gateway.table().get(&hash).cloned() else {
        // A real Level key, or anything shaped like one, is named as such in
        // the log and the audit, so the operator knows one is in a script.
        let why = if presents_level_key {
            "refused: a real Level API key was presented; give this client a levelhost client key"
        } else if keys::looks_like_level_key(key) {
            "refused: a key shaped like a Level API key was presented; give this client a levelhost client key"
        } else {
            "refused: unknown client key"
        };
        if presents_level_key || keys::looks_like_level_key(key) {
            tracing::warn!("gateway: {why} ({} {})", method, uri.path());
        }
        gateway.audit_refusal("client:?", &id, target, why).await;
        return access_denied();
    };
    let principal = format!("client:{}", client.spec.name);
    outcome.client.clone_from(&client.spec.name);
    if client.spec.expires.is_some_and(|at| at <= Utc::now()) {
        gateway
            .audit_refusal(
                &principal,
                &id,
                target,
                "refused: the client key has expired",
            )
            .await;
        return access_denied();
    }
    if let Some(wait) = client.over_rate() {
        gateway
            .audit_refusal(
                &principal,
                &id,
                target,
                "refused: the client's request rate",
            )
            .await;
        return rate_limited(wait.as_secs());
    }
    *lock(&client.last_used) = Some(Utc::now());
    let parsed = Request::parse(method.as_str(), uri.path(), uri.query(), body);
    let request = match parsed {
        Ok(request) => request,
        Err(Refused { status, message }) => {
            gateway
                .audit_refusal(&principal, &id, target, &format!("refused: {message}"))
                .await;
            return level_error(status, &message);
        }
    };
    let mut answer = attempt(gateway, &client, &principal, &id, request.clone(), outcome).await;
    // A request begun before a reload that swapped the Level key may reach
    // Level after the old key was deleted: Level refused it (401) before
    // doing anything, so it is made once more with the client as it is now.
    // A key regenerated in Level is refused at once, before the operator's
    // reload brings its new value: the request waits for that reload (a
    // while) instead of failing, and is then sent with the new key.
    if refused_key(&answer) {
        let reloaded = gateway.reloads.notified();
        tokio::pin!(reloaded);
        reloaded.as_mut().enable();
        let replaced = |gateway: &Gateway| {
            gateway
                .table()
                .get(&hash)
                .cloned()
                .filter(|now| !Arc::ptr_eq(now, &client))
        };
        let mut now = replaced(gateway);
        if now.is_none() {
            tracing::warn!(
                "gateway: Level refused the key of client {}; waiting up to {} s for a reload with a new one",
                client.spec.name,
                RELOAD_WAIT.as_secs()
            );
            if tokio::time::timeout(RELOAD_WAIT, reloaded).await.is_ok() {
                now = replaced(gateway);
            }
        }
        if let Some(now) = now {
            tracing::info!(
                "gateway: client {}: sending again with the key of the reload",
                now.spec.name
            );
            answer = attempt(gateway, &now, &principal, &id, request, outcome).await;
        }
    }
    let answer = match answer {
        Ok(answer) => answer,
        Err(Attempt::Scopes(e)) => {
            outcome.verdict = Verdict::Failed;
            tracing::error!("gateway: client {}: {e}", client.spec.name);
            return level_error(
                502,
                "levelhost could not resolve the client's scopes at Level",
            );
        }
    };
    outcome.verdict = match &answer {
        Ok(_) => Verdict::Allowed,
        Err(LevelError::Guest(LevelApiError::Denied(_))) => Verdict::Denied,
        Err(_) => Verdict::Failed,
    };
    if let Some(audit) = &gateway.audit
        && let Err(e) = audit.sync().await
    {
        tracing::error!("{}", levelhost_core::Chain(&e));
        return level_error(500, "the audit log could not be written");
    }
    match answer {
        Ok((status, body)) => (
            status,
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => error_answer(e),
    }
}

/// What a failed look-up of a client's scopes left.
enum Attempt {
    Scopes(levelhost_runtime::error::HostError),
}

/// Whether Level refused levelhost's key (for the scope look-up or the call).
fn refused_key(answer: &Result<Answer, Attempt>) -> bool {
    match answer {
        Ok(Err(LevelError::Guest(LevelApiError::Unauthorized(_)))) => true,
        Err(Attempt::Scopes(levelhost_runtime::error::HostError::ScopeLookup {
            source, ..
        })) => source.status() == Some(401),
        _ => false,
    }
}

/// One try at a request as `client`: its scopes, a fresh gate, the host call.
async fn attempt(
    gateway: &Gateway,
    client: &Client,
    principal: &str,
    id: &str,
    request: Request,
    outcome: &mut Outcome,
) -> Result<Answer, Attempt> {
    let scopes = client.scopes(gateway, id).await.map_err(Attempt::Scopes)?;
    let run = run_info(principal, id);
    let mut ctx = LevelCtx::new(
        client.spec.level.clone(),
        SharedGate::new(Gate::new(client.spec.grant.clone(), scopes)),
        run,
        gateway.audit.clone(),
        LogSink::default(),
        false,
    );
    let answer = run_request(&mut ctx, request).await;
    if let Some(record) = ctx.audit_records.first() {
        record.operation.as_ref().clone_into(&mut outcome.operation);
    }
    Ok(answer)
}

impl Client {
    /// The wait until the next request is allowed, if this one is over the
    /// client's per-minute or per-hour rate; else counts it.
    fn over_rate(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        let limits = [
            (Duration::from_secs(60), self.spec.requests_per_minute),
            (Duration::from_secs(3600), self.spec.requests_per_hour),
        ];
        for (window, (length, limit)) in windows.iter_mut().zip(limits) {
            if now.duration_since(window.0) >= length {
                *window = (now, 0);
            }
            if limit > 0 && window.1 >= limit {
                return Some(length.saturating_sub(now.duration_since(window.0)));
            }
        }
        for window in windows.iter_mut() {
            window.1 += 1;
        }
        None
    }

    /// The grant's scopes made concrete, at most a minute old. Looking
    /// them up (the group listing) is audited like any request to Level.
    async fn scopes(
        &self,
        gateway: &Gateway,
        id: &str,
    ) -> Result<ResolvedScopes, levelhost_runtime::error::HostError> {
        let mut cached = self.scopes.lock().await;
        if let Some((at, scopes)) = cached.as_ref()
            && at.elapsed() < SCOPES_MAX_AGE
        {
            return Ok(scopes.clone());
        }
        let started = Instant::now();
        let resolved =
            levelhost_runtime::runner::resolve_scopes_counted(&self.spec.level, &self.spec.grant)
                .await;
        if let Some(audit) = &gateway.audit {
            let mut record = run_info(&format!("client:{}", self.spec.name), id).record(
                SCOPES_OPERATION.to_owned(),
                Vec::new(),
                resolved.as_ref().err().map(ToString::to_string),
                started.elapsed(),
            );
            record.requests = match &resolved {
                Ok((_, requests)) => *requests,
                // The failed page was sent too.
                Err(_) => 1,
            };
            if let Err(e) = audit.append(&record).await {
                tracing::error!("{}", levelhost_core::Chain(&e));
            }
        }
        let (scopes, _) = resolved?;
        *cached = Some((Instant::now(), scopes.clone()));
        Ok(scopes)
    }
}

/// An answer's status and JSON text, its fields in the order Level writes them.
type Answer = Result<(StatusCode, Vec<u8>), LevelError>;

fn json<T: serde::Serialize>(value: T) -> Answer {
    serde_json::to_vec(&value)
        .map(|body| (StatusCode::OK, body))
        .map_err(|e| LevelError::Trap(e.into()))
}

/// A created object, answered `201 Created` as Level answers a creation.
fn created<T: serde::Serialize>(value: T) -> Answer {
    json(value).map(|(_, body)| (StatusCode::CREATED, body))
}

/// What Level answers a deletion or removal with.
fn done() -> Answer {
    json(serde_json::json!({}))
}

/// Runs one request as the host calls a plugin makes.
async fn run_request(ctx: &mut LevelCtx, request: Request) -> Answer {
    match request {
        Request::ListDevices(filter, sections, page) => {
            let p = ctx.list_devices(filter, sections, page).await?;
            json(answer::page(
                p.items.into_iter().map(model::Device::from).collect(),
                p.has_more,
            ))
        }
        Request::GetDevice(id, sections) => {
            json(model::Device::from(ctx.get_device(id, sections).await?))
        }
        Request::UpdateDevice(id, update) => {
            json(model::Device::from(ctx.update_device(id, update).await?))
        }
        Request::DeleteDevice(id) => {
            ctx.delete_device(id).await?;
            done()
        }
        Request::CreateGroup(group) => {
            created(answer::group(ctx.create_group(group).await?, false))
        }
        Request::UpdateGroup(id, update) => {
            json(answer::group(ctx.update_group(id, update).await?, true))
        }
        Request::DeleteGroup(id) => {
            ctx.delete_group(id).await?;
            done()
        }
        Request::AssignDevices(id, devices) => {
            ctx.assign_devices(id.clone(), devices).await?;
            // Level answers with the group, which a client may read only with groups:read.
            let reads_groups = ctx
                .gate()
                .grant()
                .capabilities
                .iter()
                .any(|c| c.to_string() == "groups:read");
            if reads_groups {
                json(answer::group(ctx.get_group(id).await?, true))
            } else {
                done()
            }
        }
        Request::RemoveDevices(id, devices) => {
            ctx.remove_devices(id, devices).await?;
            done()
        }
        Request::ListGroups(parent, page) => {
            let p = ctx.list_groups(parent, page).await?;
            json(answer::page(
                p.items
                    .into_iter()
                    .map(|g| answer::group(g, false))
                    .collect(),
                p.has_more,
            ))
        }
        Request::GetGroup(id) => json(answer::group(ctx.get_group(id).await?, true)),
        Request::ListTags(device, page) => {
            let p = ctx.list_tags(device, page).await?;
            json(answer::page(
                p.items.into_iter().map(model::Tag::from).collect(),
                p.has_more,
            ))
        }
        Request::GetTag(id) => json(model::Tag::from(ctx.get_tag(id).await?)),
        Request::CreateTag(name) => created(model::Tag::from(ctx.create_tag(name).await?)),
        Request::UpdateTag(id, name) => json(model::Tag::from(ctx.update_tag(id, name).await?)),
        Request::DeleteTag(id) => {
            ctx.delete_tag(id).await?;
            done()
        }
        Request::TagDevices(id, devices) => {
            json(model::Tag::from(ctx.tag_devices(id, devices).await?))
        }
        Request::UntagDevices(id, devices) => {
            ctx.untag_devices(id, devices).await?;
            done()
        }
        Request::ListAlerts(filter, page) => {
            let p = ctx.list_alerts(filter, page).await?;
            json(answer::page(
                p.items.into_iter().map(answer::alert).collect(),
                p.has_more,
            ))
        }
        Request::GetAlert(id) => json(answer::alert(ctx.get_alert(id).await?)),
        Request::ResolveAlert(id) => json(answer::alert(ctx.resolve_alert(id).await?)),
        Request::ListCustomFields(page) => {
            let p = ctx.list_custom_fields(page).await?;
            json(answer::page(
                p.items.into_iter().map(model::CustomField::from).collect(),
                p.has_more,
            ))
        }
        Request::GetCustomField(id) => {
            json(model::CustomField::from(ctx.get_custom_field(id).await?))
        }
        Request::CreateCustomField(field) => created(model::CustomField::from(
            ctx.create_custom_field(field).await?,
        )),
        Request::UpdateCustomField(id, update) => json(model::CustomField::from(
            ctx.update_custom_field(id, update).await?,
        )),
        Request::DeleteCustomField(id) => {
            ctx.delete_custom_field(id).await?;
            done()
        }
        Request::Trigger(token, request) => {
            let runs = ctx.trigger_webhook(token, request).await?;
            json(serde_json::json!({ "runs": runs
                .into_iter()
                .map(|r| serde_json::json!({ "id": r.id, "device_id": r.device_id }))
                .collect::<Vec<_>>() }))
        }
        Request::ListValues(filter, page) => {
            let p = ctx.list_values(filter, page).await?;
            json(answer::page(
                p.items
                    .into_iter()
                    .map(model::CustomFieldValue::from)
                    .collect(),
                p.has_more,
            ))
        }
        Request::SetValue(v) => json(model::CustomFieldValue::from(ctx.set_value(v).await?)),
        Request::RemoveValue(v) => {
            ctx.remove_value(v).await?;
            done()
        }
    }
}

/// A host call's error as Level would answer it. A denial is Level's 403
/// (an object outside the key's reach), with the gate's reason.
fn error_answer(error: LevelError) -> Response {
    match error {
        LevelError::Guest(e) => match e {
            LevelApiError::Denied(d) => level_error(403, &format!("denied: {}", d.reason)),
            LevelApiError::NotFound(m) => level_error(404, &m),
            LevelApiError::InvalidInput(m) => level_error(400, &m),
            LevelApiError::Conflict(m) => level_error(422, &m),
            LevelApiError::RateLimited(seconds) => rate_limited(u64::from(seconds)),
            LevelApiError::LimitExceeded(m) => level_error(429, &m),
            // Level refused the host's own key: not the client's fault.
            LevelApiError::Unauthorized(m) => {
                tracing::error!("gateway: Level refused levelhost's key: {m}");
                level_error(502, "Level refused levelhost's key for this client")
            }
            LevelApiError::Upstream(u) if u.status >= 400 => level_error(u.status, &u.message),
            LevelApiError::Upstream(u) => level_error(502, &u.message),
        },
        LevelError::Trap(e) => {
            tracing::error!("gateway: {e:#}");
            level_error(500, "Internal error")
        }
    }
}
