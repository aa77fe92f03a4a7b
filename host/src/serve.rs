//! `levelhost serve`: runs every plugin's schedules and takes Level's
//! webhook deliveries, recording every run in the history database.
//!
//! Promises: a plugin never runs twice at once (a due run is skipped and
//! recorded, or queued, by config); each (schedule, planned time) and each
//! event id starts at most once, even across a crash, because the run is
//! claimed in the database before it starts; on shutdown no new run starts,
//! running ones get a grace period, and the rest are recorded as interrupted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::audit::AuditLog;
use crate::client::{ClientConfig, LevelClient, RateBudget};
use crate::config::{CatchUp, HostConfig, Overlap, PluginConfig, Schedule, load_secret};
use crate::engine::LoadedPlugin;
use crate::history::{Claim, History, RunOrigin};
use crate::runtime::{PluginRunner, RunRequest, Trigger, new_run_id};

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A part of the configuration could not be put to use (a key, a secret, a component, the database).
    #[error("{0}")]
    Setup(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
}

/// One plugin, ready to run.
struct Installed {
    config: PluginConfig,
    plugin: LoadedPlugin,
    client: LevelClient,
    /// Held while the plugin runs: no overlapping runs.
    lock: Arc<tokio::sync::Mutex<()>>,
    secret: Option<String>,
}

/// The running service, shared by the schedule loops and the HTTP handlers.
pub struct Service {
    runner: PluginRunner,
    plugins: BTreeMap<String, Installed>,
    history: Arc<History>,
    audit: AuditLog,
    /// Run tasks, so shutdown can wait for them.
    tasks: Mutex<JoinSet<()>>,
    /// Ids of runs in progress.
    running: Mutex<HashSet<String>>,
    stopping: watch::Receiver<bool>,
    max_body: usize,
}

/// A handle to a started service.
pub struct Handle {
    /// The address the HTTP endpoint listens on.
    pub addr: SocketAddr,
    service: Arc<Service>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    schedules: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

impl Service {
    /// Loads every plugin and key, opens the history (marking runs a crash
    /// left behind as interrupted), binds the HTTP endpoint and starts the schedules.
    pub async fn start(config: HostConfig) -> Result<Handle, ServeError> {
        let runner = PluginRunner::with_options(None, Some(config.pooling()))
            .map_err(|e| ServeError::Setup(e.to_string()))?;
        Self::start_with(config, runner).await
    }

    /// Like [`Service::start`], with a runner of the caller's (one with a compile cache, say).
    pub async fn start_with(
        config: HostConfig,
        runner: PluginRunner,
    ) -> Result<Handle, ServeError> {
        let setup = |e: String| ServeError::Setup(e);
        let history =
            Arc::new(History::open(&config.serve.database).map_err(|e| setup(e.to_string()))?);
        let interrupted = history
            .interrupt_running("the host stopped while the run was in progress")
            .map_err(|e| setup(e.to_string()))?;
        if interrupted > 0 {
            tracing::warn!(
                "{interrupted} runs were cut off by the last shutdown; recorded as interrupted"
            );
        }
        let audit = AuditLog::open(&config.audit_path).map_err(|e| setup(e.to_string()))?;
        // One client, and so one rate budget, per key.
        let mut clients: HashMap<String, LevelClient> = HashMap::new();
        for (name, key) in &config.keys {
            let mut client_config = ClientConfig::new(&config.base_url);
            client_config.timeout = config.timeout;
            if key.rate_limit_per_minute > 0 {
                client_config.budget = Some(Arc::new(RateBudget::new(
                    key.rate_limit_per_minute,
                    key.rate_burst,
                )));
            }
            let client = LevelClient::new(client_config, key.load().map_err(setup)?)
                .map_err(|e| setup(e.to_string()))?;
            clients.insert(name.clone(), client);
        }
        let mut plugins = BTreeMap::new();
        for (name, plugin_config) in &config.plugins {
            let (plugin, vetting) = runner
                .load_installed(plugin_config, &config.trust)
                .map_err(|e| setup(e.to_string()))?;
            tracing::info!(plugin = %name, digest = %plugin.digest, "loaded, {vetting}");
            let secret = match &plugin_config.events {
                Some(events) => Some(
                    load_secret(&events.secret, &format!("plugin {name}: events"))
                        .map_err(setup)?,
                ),
                None => None,
            };
            let client = clients.get(&plugin_config.key).cloned().ok_or_else(|| {
                setup(format!("plugin {name}: unknown key {}", plugin_config.key))
            })?;
            plugins.insert(
                name.clone(),
                Installed {
                    config: plugin_config.clone(),
                    plugin,
                    client,
                    lock: Arc::default(),
                    secret,
                },
            );
        }
        let listener = tokio::net::TcpListener::bind(&config.serve.addr)
            .await
            .map_err(|e| ServeError::Listen {
                addr: config.serve.addr.clone(),
                message: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| setup(e.to_string()))?;
        let (stop, stopping) = watch::channel(false);
        let service = Arc::new(Service {
            runner,
            plugins,
            history,
            audit,
            tasks: Mutex::new(JoinSet::new()),
            running: Mutex::default(),
            stopping: stopping.clone(),
            max_body: config.serve.max_body_bytes,
        });

        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/hooks/{plugin}", post(hook))
            .layer(DefaultBodyLimit::max(service.max_body))
            .with_state(service.clone());
        let mut server_stop = stopping.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!("the events endpoint stopped: {e}");
            }
        });
        let mut schedules = Vec::new();
        for (name, installed) in &service.plugins {
            for (index, schedule) in installed.config.schedules.iter().enumerate() {
                let service = service.clone();
                let name = name.clone();
                let schedule = schedule.clone();
                schedules.push(tokio::spawn(async move {
                    service.schedule_loop(name, index, schedule).await
                }));
            }
        }
        tracing::info!(%addr, plugins = service.plugins.len(), "levelhost serve is running");
        Ok(Handle {
            addr,
            service,
            stop,
            server,
            schedules,
            grace: config.serve.shutdown_grace,
        })
    }

    /// The history database.
    pub fn history(&self) -> &History {
        &self.history
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    async fn schedule_loop(self: Arc<Self>, plugin: String, index: usize, schedule: Schedule) {
        let key = schedule_key(index, &schedule);
        let mut stopping = self.stopping.clone();
        // Catch up once for the latest planned time missed while the host was down.
        if schedule.catch_up == CatchUp::Once
            && let Ok(Some(last)) = self.history.last_planned(&plugin, &key)
            && let Ok(last) = DateTime::parse_from_rfc3339(&last)
        {
            let now = Utc::now();
            let missed = schedule
                .cron
                .find_previous_occurrence(&now.with_timezone(&schedule.timezone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| *t > last.with_timezone(&Utc));
            if let Some(missed) = missed
                && now
                    .signed_duration_since(missed)
                    .to_std()
                    .is_ok_and(|d| d <= schedule.catch_up_window)
            {
                tracing::info!(plugin, planned = %missed, "catching up a run missed while the host was down");
                self.fire(&plugin, &key, &schedule, missed).await;
            }
        }
        // Walk the occurrences one by one from a cursor, so a late wake-up fires
        // (or records as skipped) the occurrences it missed instead of losing them.
        let mut cursor = Utc::now().with_timezone(&schedule.timezone);
        loop {
            let next = match schedule.cron.find_next_occurrence(&cursor, false) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(plugin, schedule = %schedule.pattern, "no next run: {e}");
                    return;
                }
            };
            cursor = next;
            let next = next.with_timezone(&Utc);
            let jitter = if schedule.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_millis(rand::random_range(0..=schedule.jitter.as_millis() as u64))
            };
            let wait = next
                .signed_duration_since(Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                + jitter;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            if self.is_stopping() {
                return;
            }
            self.fire(&plugin, &key, &schedule, next).await;
        }
    }

    /// Starts the run planned for `planned`, claiming it first so it starts at most once.
    async fn fire(
        self: &Arc<Self>,
        plugin: &str,
        key: &str,
        schedule: &Schedule,
        planned: DateTime<Utc>,
    ) {
        let Some(installed) = self.plugins.get(plugin) else {
            return;
        };
        let planned_at = crate::sim::timestamp(
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
                planned.timestamp_nanos_opt().unwrap_or(0),
            ))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        );
        let origin = RunOrigin {
            trigger: "schedule",
            schedule: Some(key.to_owned()),
            planned_at: Some(planned_at.clone()),
            event_id: None,
            event_type: None,
        };
        let guard = match schedule.overlap {
            Overlap::Skip => match installed.lock.clone().try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    let id = new_run_id();
                    tracing::info!(plugin, planned = %planned_at, "skipped: the previous run is still going");
                    let _ = self.history.record_skip(
                        &id,
                        plugin,
                        &origin,
                        "the previous run was still running",
                    );
                    return;
                }
            },
            // Queued runs start from their own task, so the schedule keeps its time.
            Overlap::Queue => {
                let service = self.clone();
                let (plugin, schedule, origin) = (plugin.to_owned(), schedule.clone(), origin);
                self.spawn(async move {
                    let Some(installed) = service.plugins.get(&plugin) else {
                        return;
                    };
                    let guard = installed.lock.clone().lock_owned().await;
                    if service.is_stopping() {
                        return;
                    }
                    let input = schedule
                        .input
                        .clone()
                        .unwrap_or_else(|| installed.config.input.clone());
                    let trigger = Trigger::Schedule {
                        planned: planned_at,
                    };
                    service
                        .execute(&plugin, origin, input, trigger, guard)
                        .await;
                });
                return;
            }
        };
        let input = schedule
            .input
            .clone()
            .unwrap_or_else(|| installed.config.input.clone());
        let service = self.clone();
        let plugin = plugin.to_owned();
        self.spawn(async move {
            service
                .execute(
                    &plugin,
                    origin,
                    input,
                    Trigger::Schedule {
                        planned: planned_at,
                    },
                    guard,
                )
                .await;
        });
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Reap finished tasks so the set does not grow without end.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Claims and runs one run, holding the plugin's lock, and records how it ended.
    async fn execute(
        &self,
        plugin: &str,
        origin: RunOrigin,
        input: serde_json::Value,
        trigger: Trigger,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Option<String> {
        let installed = self.plugins.get(plugin)?;
        let id = new_run_id();
        let claim = self.history.claim(
            &id,
            plugin,
            &installed.config.manifest.version,
            &installed.plugin.digest,
            &origin,
        );
        match claim {
            Ok(Claim::Started) => {}
            Ok(Claim::AlreadyClaimed) => {
                tracing::info!(plugin, "already started once; not starting again");
                return None;
            }
            Err(e) => {
                tracing::error!(plugin, "cannot record the run, so not starting it: {e}");
                return None;
            }
        }
        self.run_claimed(plugin, id.clone(), input, trigger, guard)
            .await;
        Some(id)
    }
}

/// A schedule's key in the history: its index and pattern, so editing a pattern starts a new series.
fn schedule_key(index: usize, schedule: &Schedule) -> String {
    format!("{index}:{}", schedule.pattern)
}

impl Handle {
    /// The service.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops starting runs, lets running ones finish within the grace period,
    /// records the rest as interrupted, and stops the endpoint.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for schedule in &self.schedules {
            schedule.abort();
        }
        let mut tasks = std::mem::take(
            &mut *self
                .service
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let drained = tokio::time::timeout(self.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let cut: Vec<String> = self
                .service
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .drain()
                .collect();
            for id in &cut {
                let _ = self
                    .service
                    .history
                    .interrupt(id, "the host shut down before the run finished");
            }
            tracing::warn!(
                "{} runs did not finish within the shutdown grace period; recorded as interrupted",
                cut.len()
            );
        }
        let _ = self.server.await;
    }
}

async fn healthz(State(service): State<Arc<Service>>) -> Response {
    let running = service
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len();
    axum::Json(serde_json::json!({
        "status": if service.is_stopping() { "stopping" } else { "ok" },
        "plugins": service.plugins.len(),
        "running": running,
    }))
    .into_response()
}

fn reply(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// `POST /hooks/{plugin}`: a Level webhook delivery.
async fn hook(
    State(service): State<Arc<Service>>,
    Path(plugin): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(installed) = service.plugins.get(&plugin) else {
        return reply(StatusCode::NOT_FOUND, "no such plugin");
    };
    let Some(secret) = &installed.secret else {
        return reply(StatusCode::NOT_FOUND, "this plugin takes no events");
    };
    let record = |event: Option<&str>, verdict: &str, detail: &str| {
        if let Err(e) = service
            .history
            .record_delivery(&plugin, event, verdict, detail)
        {
            tracing::error!("{e}");
        }
    };
    // Verify before parsing: the signature covers the exact raw body.
    let signature = headers
        .get("x-level-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(why) = verify(secret.as_bytes(), &body, signature) {
        tracing::warn!(plugin, "refused a webhook delivery: {why}");
        record(None, "rejected", why);
        return reply(StatusCode::UNAUTHORIZED, why);
    }
    let event: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            record(None, "invalid", &e.to_string());
            return reply(
                StatusCode::BAD_REQUEST,
                &format!("the body is not JSON: {e}"),
            );
        }
    };
    let (Some(event_id), Some(event_type)) = (
        event
            .get("event_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        event
            .get("event_type")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    ) else {
        record(None, "invalid", "event_id or event_type is missing");
        return reply(
            StatusCode::BAD_REQUEST,
            "event_id and event_type are required",
        );
    };
    if let Some(types) = &installed
        .config
        .events
        .as_ref()
        .and_then(|e| e.types.clone())
        && !types.contains(&event_type)
    {
        record(
            Some(&event_id),
            "ignored",
            &format!("{event_type} is not one of the plugin's event types"),
        );
        return (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "ignored": event_type })),
        )
            .into_response();
    }
    if service.is_stopping() {
        record(Some(&event_id), "refused", "the host is shutting down");
        return reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let origin = RunOrigin {
        trigger: "event",
        schedule: None,
        planned_at: None,
        event_id: Some(event_id.clone()),
        event_type: Some(event_type.clone()),
    };
    // Claim now, so a second delivery of the same event is a duplicate even while the first waits.
    let id = new_run_id();
    let version = installed.config.manifest.version.clone();
    match service
        .history
        .claim(&id, &plugin, &version, &installed.plugin.digest, &origin)
    {
        Ok(Claim::Started) => {}
        Ok(Claim::AlreadyClaimed) => {
            record(
                Some(&event_id),
                "duplicate",
                "this event already started a run",
            );
            return (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "duplicate": event_id })),
            )
                .into_response();
        }
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    record(Some(&event_id), "accepted", &id);
    let task_service = service.clone();
    let run_id = id.clone();
    service.spawn(async move {
        let Some(installed) = task_service.plugins.get(&plugin) else {
            return;
        };
        let guard = installed.lock.clone().lock_owned().await;
        task_service
            .run_claimed(&plugin, run_id, event, Trigger::Event { event_type }, guard)
            .await;
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "run_id": id })),
    )
        .into_response()
}

impl Service {
    /// Runs a run already claimed in the history.
    async fn run_claimed(
        &self,
        plugin: &str,
        id: String,
        input: serde_json::Value,
        trigger: Trigger,
        _guard: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let Some(installed) = self.plugins.get(plugin) else {
            return;
        };
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone());
        let request = RunRequest {
            input: input.to_string(),
            trigger,
            run_id: id.clone(),
            grant: installed.config.grant.clone(),
            version: installed.config.manifest.version.clone(),
            dry_run: false,
            audit: Some(self.audit.clone()),
            echo_logs: false,
        };
        let recorded = match self
            .runner
            .run(&installed.plugin, installed.client.clone(), request)
            .await
        {
            Ok(report) => {
                let status = crate::history::RunStatus::of(&report);
                tracing::info!(plugin, run = %id, status = status.as_str(), calls = report.api_calls, "run finished");
                self.history.finish(&id, &report)
            }
            Err(e) => {
                tracing::warn!(plugin, run = %id, "run could not start: {e}");
                self.history.fail(&id, &e.to_string())
            }
        };
        if let Err(e) = recorded {
            tracing::error!(plugin, run = %id, "{e}");
        }
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }
}

/// Checks `X-Level-Signature: sha256=<hex>` against the HMAC-SHA256 of the raw body, in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), &'static str> {
    let header = header.ok_or("the X-Level-Signature header is missing")?;
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or("the signature is not of the form sha256=<hex>")?;
    let given = hex::decode(hex_sig.trim()).map_err(|_| "the signature is not hex")?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "the secret cannot key an HMAC")?;
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| "the signature does not match the body")
}

/// Signs a body the way Level does: `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_exact_body_and_secret() {
        let sig = sign(b"s3cret", br#"{"a":1}"#);
        assert!(verify(b"s3cret", br#"{"a":1}"#, Some(&sig)).is_ok());
        assert!(verify(b"s3cret", br#"{"a":2}"#, Some(&sig)).is_err());
        assert!(verify(b"other", br#"{"a":1}"#, Some(&sig)).is_err());
        assert!(verify(b"s3cret", br#"{"a":1}"#, None).is_err());
        assert!(verify(b"s3cret", br#"{"a":1}"#, Some("md5=00")).is_err());
    }
}
