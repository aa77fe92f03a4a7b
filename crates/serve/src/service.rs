//! The service: runs every plugin's schedules and takes Level's
//! webhook deliveries, recording every run in the history database.
//!
//! Promises: a plugin never runs twice at once (a due run is skipped and
//! recorded, or queued, by config); each (schedule, planned time) and each
//! event id starts at most once, even across a crash, because the run is
//! claimed in the database before it starts; on shutdown no new run starts,
//! running ones get a grace period, and the rest are recorded as interrupted.

use std::collections::BTreeMap;
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
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::executor::{Claimed, ExecuteError, Executor, Origin, RunOptions};
use crate::history::{History, HistoryError};
use crate::plugin::{CatchUp, Overlap, Schedule, ServeOptions, ServedPlugin};
use levelhost_core::Chain;
use levelhost_runtime::audit::{AuditError, AuditLog};
use levelhost_runtime::runner::PluginRunner;

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The history database could not be opened or recovered.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One plugin, ready to run.
struct Installed {
    served: ServedPlugin,
    /// Held while the plugin runs: no overlapping runs.
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// The running service, shared by the schedule loops and the HTTP handlers.
pub struct Service {
    plugins: BTreeMap<String, Installed>,
    /// Claims, runs and records every run.
    executor: Executor,
    history: Arc<History>,
    /// Run tasks, so shutdown can wait for them.
    tasks: Mutex<JoinSet<()>>,
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
    /// Opens the history (marking runs a crash left behind as interrupted)
    /// and the audit log, binds the HTTP endpoint and starts the schedules
    /// of `plugins`, each run with `runner`.
    pub async fn start(
        options: ServeOptions,
        plugins: Vec<ServedPlugin>,
        runner: PluginRunner,
    ) -> Result<Handle, ServeError> {
        let history = Arc::new(History::open(&options.database)?);
        let interrupted =
            history.interrupt_running("the host stopped while the run was in progress")?;
        if interrupted > 0 {
            tracing::warn!(
                "{interrupted} runs were cut off by the last shutdown; recorded as interrupted"
            );
        }
        let audit = AuditLog::open(&options.audit_path)?;
        let plugins: BTreeMap<String, Installed> = plugins
            .into_iter()
            .map(|served| {
                let installed = Installed {
                    served,
                    lock: Arc::default(),
                };
                (installed.served.name.clone(), installed)
            })
            .collect();
        let listen = |source| ServeError::Listen {
            addr: options.addr.clone(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(&options.addr)
            .await
            .map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
        let (stop, stopping) = watch::channel(false);
        let service = Arc::new(Service {
            plugins,
            executor: Executor::new(runner, Some(history.clone()), Some(audit)),
            history,
            tasks: Mutex::new(JoinSet::new()),
            stopping: stopping.clone(),
            max_body: options.max_body_bytes,
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
            for (index, schedule) in installed.served.schedules.iter().enumerate() {
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
            grace: options.shutdown_grace,
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
        let last = if schedule.catch_up == CatchUp::Once {
            let (history, name, series) = (self.history.clone(), plugin.clone(), key.clone());
            tokio::task::spawn_blocking(move || history.last_planned(&name, &series))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        } else {
            None
        };
        if let Some(last) = last
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
        let planned_at = level_api::clock::timestamp(
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
                planned.timestamp_nanos_opt().unwrap_or(0),
            ))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        );
        let origin = Origin::Schedule {
            schedule: key.to_owned(),
            planned: planned_at.clone(),
        };
        let guard = match schedule.overlap {
            Overlap::Skip => match installed.lock.clone().try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    tracing::info!(plugin, planned = %planned_at, "skipped: the previous run is still going");
                    if let Err(e) = self
                        .executor
                        .skip(
                            &installed.served,
                            origin,
                            "the previous run was still running",
                        )
                        .await
                    {
                        tracing::error!(plugin, "cannot record the skipped run: {}", Chain(&e));
                    }
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
                        .unwrap_or_else(|| installed.served.input.clone());
                    service.execute(&plugin, origin, input, guard).await;
                });
                return;
            }
        };
        let input = schedule
            .input
            .clone()
            .unwrap_or_else(|| installed.served.input.clone());
        let service = self.clone();
        let plugin = plugin.to_owned();
        self.spawn(async move {
            service.execute(&plugin, origin, input, guard).await;
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
        origin: Origin,
        input: serde_json::Value,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let Some(installed) = self.plugins.get(plugin) else {
            return;
        };
        match self.executor.claim(&installed.served, origin).await {
            Ok(Some(claimed)) => self.run_claimed(plugin, claimed, input, guard).await,
            Ok(None) => tracing::info!(plugin, "already started once; not starting again"),
            Err(e) => tracing::error!(
                plugin,
                "cannot record the run, so not starting it: {}",
                Chain(&e)
            ),
        }
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
        }
        // Every run claimed and not recorded: those cut off by the grace
        // period, and those queued behind a plugin's lock that never started.
        match self
            .service
            .executor
            .interrupt_open("the host shut down before the run finished")
            .await
        {
            Ok(0) => {}
            Ok(cut) => {
                tracing::warn!("{cut} runs did not finish before shutdown; recorded as interrupted")
            }
            Err(e) => tracing::error!("cannot record the runs cut off by shutdown: {}", Chain(&e)),
        }
        let _ = self.server.await;
    }
}

async fn healthz(State(service): State<Arc<Service>>) -> Response {
    let running = service.executor.open_runs();
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
    let Some(secret) = installed.served.events.as_ref().map(|e| &e.secret) else {
        return reply(StatusCode::NOT_FOUND, "this plugin takes no events");
    };
    let record = |event: Option<&str>, verdict: &str, detail: &str| {
        let history = service.history.clone();
        let (plugin, event, verdict, detail) = (
            plugin.clone(),
            event.map(str::to_owned),
            verdict.to_owned(),
            detail.to_owned(),
        );
        async move {
            let written = tokio::task::spawn_blocking(move || {
                history.record_delivery(&plugin, event.as_deref(), &verdict, &detail)
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("{}", Chain(&e)),
                Err(e) => tracing::error!("cannot record a delivery: {e}"),
            }
        }
    };
    // Verify before parsing: the signature covers the exact raw body.
    let signature = headers
        .get("x-level-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(why) = level_api::webhook::verify(secret.as_bytes(), &body, signature) {
        tracing::warn!(plugin, "refused a webhook delivery: {why}");
        record(None, "rejected", why).await;
        return reply(StatusCode::UNAUTHORIZED, why);
    }
    let event: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            record(None, "invalid", &e.to_string()).await;
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
        record(None, "invalid", "event_id or event_type is missing").await;
        return reply(
            StatusCode::BAD_REQUEST,
            "event_id and event_type are required",
        );
    };
    if let Some(types) = &installed
        .served
        .events
        .as_ref()
        .and_then(|e| e.types.clone())
        && !types.contains(&event_type)
    {
        record(
            Some(&event_id),
            "ignored",
            &format!("{event_type} is not one of the plugin's event types"),
        )
        .await;
        return (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "ignored": event_type })),
        )
            .into_response();
    }
    if service.is_stopping() {
        record(Some(&event_id), "refused", "the host is shutting down").await;
        return reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let origin = Origin::Event {
        event_id: event_id.clone(),
        event_type,
    };
    // Claim now, so a second delivery of the same event is a duplicate even while the first waits.
    let claimed = match service.executor.claim(&installed.served, origin).await {
        Ok(Some(claimed)) => claimed,
        Ok(None) => {
            record(
                Some(&event_id),
                "duplicate",
                "this event already started a run",
            )
            .await;
            return (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "duplicate": event_id })),
            )
                .into_response();
        }
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, &Chain(&e).to_string()),
    };
    let id = claimed.id.clone();
    record(Some(&event_id), "accepted", &id).await;
    let task_service = service.clone();
    service.spawn(async move {
        let Some(installed) = task_service.plugins.get(&plugin) else {
            return;
        };
        let guard = installed.lock.clone().lock_owned().await;
        task_service
            .run_claimed(&plugin, claimed, event, guard)
            .await;
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "run_id": id })),
    )
        .into_response()
}

impl Service {
    /// Runs a run already claimed in the history, holding the plugin's lock.
    async fn run_claimed(
        &self,
        plugin: &str,
        claimed: Claimed,
        input: serde_json::Value,
        _guard: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let Some(installed) = self.plugins.get(plugin) else {
            return;
        };
        let id = claimed.id.clone();
        if self.is_stopping() {
            // Queued behind the plugin's lock until shutdown began: it never
            // starts, and shutdown records it as interrupted.
            tracing::info!(plugin, run = %id, "not started: the host is shutting down");
            return;
        }
        let result = self
            .executor
            .run(&installed.served, claimed, &input, RunOptions::default())
            .await;
        if let Err(ExecuteError::History(e)) = result {
            tracing::error!(plugin, run = %id, "{}", Chain(&e));
        }
    }
}
