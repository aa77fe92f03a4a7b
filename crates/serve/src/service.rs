//! The service: runs every plugin's schedules and takes Level's
//! webhook deliveries, recording every run in the history database.
//!
//! Promises: a plugin never runs twice at once (a due run is skipped and
//! recorded, or queued, by config); each (schedule, planned time) and each
//! event id starts at most once, even across a crash, because the run is
//! claimed in the database before it starts; on shutdown no new run starts,
//! running ones get a grace period, and the rest are recorded as interrupted.
//! Plans that waited for approval are applied by whichever host takes them
//! first once approved (checked every second), and expire when their time
//! is up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::executor::{Busy, Claimed, Executor, Origin, RunOptions};
use crate::history::{History, HistoryError, Skipped};
use crate::metrics::Metrics;
use crate::plugin::{ServeOptions, ServedPlugin};
use levelhost_core::Chain;
use levelhost_runtime::audit::AuditError;
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

/// The plugins served, by name.
pub(crate) type Plugins = BTreeMap<String, Installed>;

/// `plugins` ready to serve; one that keeps its name from `before` keeps its lock.
fn install(plugins: Vec<ServedPlugin>, before: &Plugins) -> Plugins {
    plugins
        .into_iter()
        .map(|served| {
            let lock = before
                .get(&served.name)
                .map(|old| old.lock.clone())
                .unwrap_or_default();
            (served.name.clone(), Installed { served, lock })
        })
        .collect()
}

/// One plugin, ready to run.
#[derive(Clone)]
pub(crate) struct Installed {
    pub(crate) served: ServedPlugin,
    /// Held while the plugin runs: no overlapping runs.
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
}

/// The running service, shared by the schedule loops and the HTTP handlers.
pub struct Service {
    /// The plugins served now: swapped whole by [`Handle::reload`], so a
    /// run keeps the plugin (and key) it started with.
    current: std::sync::RwLock<Arc<Plugins>>,
    /// Claims, runs and records every run.
    executor: Executor,
    pub(crate) history: Arc<History>,
    /// Run tasks, so shutdown can wait for them.
    tasks: Mutex<JoinSet<()>>,
    pub(crate) stopping: watch::Receiver<bool>,
    /// Largest webhook body read.
    pub(crate) max_body: usize,
    /// How long a client may take to send a request's headers, or its body.
    pub(crate) body_timeout: Duration,
    /// The service's metrics.
    metrics: Arc<Metrics>,
    /// The gateway, when `serve` runs one.
    gateway: Option<Arc<levelhost_gateway::Gateway>>,
    /// Which schedules this replica claims (all of them when it is alone).
    pub(crate) shard: crate::shard::Shard,
    /// Planned runs not started, waiting to be recorded together.
    skips: Mutex<PendingSkips>,
}

/// Planned runs not started, waiting to be recorded: a replica given more
/// than it can start sheds planned times with one write per batch, not
/// one each, so recording what it sheds does not take what it has left.
#[derive(Default)]
struct PendingSkips {
    waiting: Vec<Skipped>,
    /// Whether a task is writing them now (it writes these too before it ends).
    writing: bool,
}

/// The most skipped runs written in one transaction.
const SKIPS_PER_WRITE: usize = 500;

/// A handle to a started service.
pub struct Handle {
    /// The address the HTTP endpoint listens on.
    pub addr: SocketAddr,
    /// The address the console listens on, when it is on.
    pub console_addr: Option<SocketAddr>,
    console: Option<tokio::task::JoinHandle<()>>,
    /// The address the gateway listens on, when `serve` runs one.
    pub gateway_addr: Option<SocketAddr>,
    gateway: Option<tokio::task::JoinHandle<()>>,
    gateway_tls: Option<levelhost_gateway::tls::Certificates>,
    service: Arc<Service>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    schedules: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The replica's heartbeat (a shared history): kept across reloads.
    heartbeat: Option<tokio::task::JoinHandle<()>>,
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
        let history = Arc::new(History::connect(&options.history).await?);
        let interrupted = history
            .interrupt_running("the host stopped while the run was in progress")
            .await?;
        if interrupted > 0 {
            tracing::warn!(
                "{interrupted} runs were cut off by the last shutdown; recorded as interrupted"
            );
        }
        let audit = options.audit.clone();
        let plugins = install(plugins, &BTreeMap::new());
        let listen = |source| ServeError::Listen {
            addr: options.addr.clone(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(&options.addr)
            .await
            .map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
        let (stop, stopping) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        for installed in plugins.values() {
            metrics.watch_client(&installed.served.key, &installed.served.client);
        }
        let service = Arc::new(Service {
            current: std::sync::RwLock::new(Arc::new(plugins)),
            metrics: metrics.clone(),
            executor: Executor::new(runner, Some(history.clone()), Some(audit))
                .with_metrics(metrics)
                .with_lease(options.lease)
                .with_stopping(stopping.clone()),
            tasks: Mutex::new(JoinSet::new()),
            stopping: stopping.clone(),
            max_body: options.max_body_bytes,
            body_timeout: options.read_timeout,
            gateway: options.gateway.as_ref().map(|g| g.gateway.clone()),
            shard: crate::shard::Shard::new(history.replica().map(str::to_owned), options.lease),
            history,
            skips: Mutex::default(),
        });

        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/hooks/{plugin}", post(crate::webhooks::hook))
            // The webhook handler reads its body itself, bounded, so an oversized one is recorded.
            .layer(DefaultBodyLimit::disable())
            .with_state(service.clone());
        let server = tokio::spawn(accept_loop(
            listener,
            app,
            stopping.clone(),
            options.read_timeout,
            options.max_connections,
        ));
        let (console_addr, console) = match &options.console {
            None => (None, None),
            Some(console) => {
                let listen = |source| ServeError::Listen {
                    addr: console.addr.clone(),
                    source,
                };
                let listener = tokio::net::TcpListener::bind(&console.addr)
                    .await
                    .map_err(listen)?;
                let addr = listener.local_addr().map_err(listen)?;
                let app = crate::console::router(Arc::new(crate::console::Console::new(
                    service.clone(),
                    console,
                )));
                tracing::info!(%addr, "the console is at http://{addr}/login?token=...");
                let task = tokio::spawn(accept_loop(
                    listener,
                    app,
                    stopping.clone(),
                    options.read_timeout,
                    options.max_connections,
                ));
                (Some(addr), Some(task))
            }
        };
        let (gateway_addr, gateway) = match &options.gateway {
            None => (None, None),
            Some(gateway) => {
                let listen = |source| ServeError::Listen {
                    addr: gateway.addr.clone(),
                    source,
                };
                let listener = tokio::net::TcpListener::bind(&gateway.addr)
                    .await
                    .map_err(listen)?;
                let addr = listener.local_addr().map_err(listen)?;
                gateway.gateway.observe(service.metrics.clone());
                let app = gateway.gateway.clone().router();
                let task = match &gateway.tls {
                    None => tokio::spawn(accept_loop(
                        listener,
                        app,
                        stopping.clone(),
                        options.read_timeout,
                        options.max_connections,
                    )),
                    Some(certificates) => {
                        let listener = levelhost_gateway::tls::TlsListener::new(
                            listener,
                            certificates.clone(),
                        )
                        .map_err(listen)?;
                        let mut stopping = stopping.clone();
                        tokio::spawn(async move {
                            let stopped = async move {
                                let _ = stopping.wait_for(|stop| *stop).await;
                            };
                            if let Err(e) = axum::serve(listener, app)
                                .with_graceful_shutdown(stopped)
                                .await
                            {
                                tracing::error!("the gateway stopped: {e}");
                            }
                        })
                    }
                };
                tracing::info!(%addr, "the gateway serves Level's API to its clients");
                (Some(addr), Some(task))
            }
        };
        // A replica learns who else is alive before its schedules start, so
        // from the first planned time it claims only its own share.
        let heartbeat = match service.history.replica() {
            Some(replica) => {
                tracing::info!(replica, lease = ?options.lease, "sharing the history with other replicas");
                // Heard from at once, so the others share the schedules with it from now.
                service.beat(options.lease).await;
                let service = service.clone();
                let lease = options.lease;
                Some(tokio::spawn(
                    async move { service.heartbeat_loop(lease).await },
                ))
            }
            None => None,
        };
        let schedules = service.start_loops();
        tracing::info!(%addr, plugins = service.plugins().len(), "levelhost serve is running");
        Ok(Handle {
            addr,
            console_addr,
            console,
            gateway_addr,
            gateway,
            gateway_tls: options.gateway.as_ref().and_then(|g| g.tls.clone()),
            service,
            stop,
            server,
            schedules: Mutex::new(schedules),
            heartbeat,
            grace: options.shutdown_grace,
        })
    }

    /// The plugins served now.
    pub(crate) fn plugins(&self) -> Arc<Plugins> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts a loop per schedule of every plugin, and the approvals loop
    /// if a plugin has an approval policy.
    fn start_loops(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut loops = Vec::new();
        let plugins = self.plugins();
        for (name, installed) in plugins.iter() {
            for (index, schedule) in installed.served.schedules.iter().enumerate() {
                let service = self.clone();
                let name = name.clone();
                let schedule = schedule.clone();
                loops.push(tokio::spawn(async move {
                    service.schedule_loop(name, index, schedule).await
                }));
            }
        }
        if plugins.values().any(|p| p.served.approval.is_some()) {
            let service = self.clone();
            loops.push(tokio::spawn(async move { service.approvals_loop().await }));
        }
        loops
    }

    /// The history database.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The gateway, when `serve` runs one.
    pub fn gateway(&self) -> Option<&levelhost_gateway::Gateway> {
        self.gateway.as_deref()
    }

    pub(crate) fn executor(&self) -> &Executor {
        &self.executor
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Reap finished tasks so the set does not grow without end.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Records a planned run of `plugin` as skipped, saying why: with the
    /// others waiting, by a task that shutdown waits for.
    pub(crate) fn skip(self: &Arc<Self>, plugin: &str, origin: Origin, why: &str) {
        let first = {
            let mut skips = self
                .skips
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            skips.waiting.push(Skipped {
                plugin: plugin.to_owned(),
                origin,
                why: why.to_owned(),
            });
            !std::mem::replace(&mut skips.writing, true)
        };
        if first {
            let service = self.clone();
            self.spawn(async move { service.write_skips().await });
        }
    }

    /// Writes the waiting skipped runs, a batch at a time, until none wait.
    async fn write_skips(&self) {
        loop {
            let batch = {
                let mut skips = self
                    .skips
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if skips.waiting.is_empty() {
                    skips.writing = false;
                    return;
                }
                let oldest = skips.waiting.len().min(SKIPS_PER_WRITE);
                skips.waiting.drain(..oldest).collect::<Vec<_>>()
            };
            let count = batch.len();
            if let Err(e) = self.executor.skip_all(&batch).await {
                tracing::error!("cannot record {count} skipped runs: {}", Chain(&e));
            }
        }
    }

    /// Claims and runs one run, holding the plugin's lock, and records how it ended.
    pub(crate) async fn execute(
        &self,
        plugin: &str,
        origin: Origin,
        input: serde_json::Value,
        guard: tokio::sync::OwnedMutexGuard<()>,
        busy: Busy,
    ) {
        let plugins = self.plugins();
        let Some(installed) = plugins.get(plugin) else {
            return;
        };
        match self.executor.claim(&installed.served, origin).await {
            Ok(Some(claimed)) => self.run_claimed(plugin, claimed, input, guard, busy).await,
            Ok(None) => tracing::info!(plugin, "already started once; not starting again"),
            Err(e) => tracing::error!(
                plugin,
                "cannot record the run, so not starting it: {}",
                Chain(&e)
            ),
        }
    }
}

impl Handle {
    /// The gateway, when `serve` runs one (a reload replaces its clients).
    pub fn gateway(&self) -> Option<&levelhost_gateway::Gateway> {
        self.service.gateway()
    }

    /// The gateway's certificates, when it serves HTTPS (a reload renews them).
    pub fn gateway_tls(&self) -> Option<&levelhost_gateway::tls::Certificates> {
        self.gateway_tls.as_ref()
    }

    /// Serves `plugins` from now on, in place of the ones served: their
    /// schedules restart, webhook deliveries and approvals go to them, and
    /// runs in flight finish with the plugin and key they started with. A
    /// plugin that keeps its name keeps its lock, so it still never runs
    /// twice at once.
    pub fn reload(&self, plugins: Vec<ServedPlugin>) {
        let service = &self.service;
        for served in &plugins {
            service.metrics.watch_client(&served.key, &served.client);
        }
        let old = service.plugins();
        let new = install(plugins, &old);
        let count = new.len();
        *service
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
        let mut loops = self
            .schedules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for old_loop in loops.drain(..) {
            old_loop.abort();
        }
        *loops = service.start_loops();
        tracing::info!(plugins = count, "reloaded: serving the new configuration");
    }

    /// The service.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops starting runs, lets running ones finish within the grace period,
    /// records the rest as interrupted, and stops the endpoint.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for schedule in self
            .schedules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            schedule.abort();
        }
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
            // Its schedules go to the others at their next heartbeat, not a lease from now.
            if let Err(e) = self.service.history.stop_scheduling().await {
                tracing::error!("cannot hand the schedules over: {}", Chain(&e));
            }
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
        if let Some(gateway) = self.gateway {
            let _ = gateway.await;
        }
        if let Some(console) = self.console {
            let _ = console.await;
        }
    }
}

/// Serves HTTP on `listener` until `stopping`: each connection gets
/// `read_timeout` to send a request's headers (also between requests on a
/// kept-alive connection), at most `max_connections` are served at once
/// (more are closed as they arrive), and at shutdown open connections finish
/// their requests before the endpoint stops.
///
/// One server stack: axum's router, served through hyper's connection
/// builder rather than `axum::serve`, which has neither a header read
/// timeout nor a cap on open connections (a slow client holding sockets
/// open would otherwise starve Level's deliveries). The console, the
/// webhook endpoint and the gateway (plain, or after its TLS handshake) are
/// all served here, and `levelhost gateway` on its own too.
pub async fn accept_loop<L>(
    mut listener: L,
    app: Router,
    mut stopping: watch::Receiver<bool>,
    read_timeout: Duration,
    max_connections: usize,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Display,
{
    // Level delivers webhooks over HTTP/1.1, the only protocol served.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        // The listener waits out accept errors (out of file descriptors and the like) itself.
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = async { stopping.wait_for(|s| *s).await.map(drop) } => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("{max_connections} connections are open; closing a new one from {peer}");
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection from {peer} ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(read_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open at shutdown; closed");
    }
}

async fn healthz(State(service): State<Arc<Service>>) -> Response {
    let running = service.executor.open_runs();
    let database = match service.history.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => Chain(&e).to_string(),
    };
    let healthy = database == "ok";
    let mut response = axum::Json(serde_json::json!({
        "status": if service.is_stopping() { "stopping" } else if healthy { "ok" } else { "degraded" },
        "database": database,
        "replica": service.history.replica(),
        "plugins": service.plugins().len(),
        "running": running,
    }))
    .into_response();
    if !healthy {
        *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

impl Service {
    /// Says this replica is alive, a few times per lease, and marks the runs
    /// of replicas silent for longer than the lease as interrupted.
    /// (`start` has just beaten once, so the first beat here is a quarter lease later.)
    async fn heartbeat_loop(self: Arc<Self>, lease: Duration) {
        let every = lease / 4;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.beat(lease).await;
        }
    }

    /// One heartbeat: says this replica is alive, marks the runs of replicas
    /// silent for longer than `lease` as interrupted, then reads the live
    /// replicas, so each schedule is claimed by its owner among them (the
    /// schedule loops hear of a change and take over what comes to this
    /// replica). On a read error the last view stays.
    async fn beat(&self, lease: Duration) {
        match self.history.heartbeat(lease).await {
            Ok(0) => {}
            Ok(cut) => tracing::warn!(
                "{cut} runs of a replica that stopped answering were marked interrupted"
            ),
            Err(e) => tracing::error!("heartbeat: {}", Chain(&e)),
        }
        match self.history.live_replicas(lease).await {
            Ok(live) => {
                if self.shard.update(live) {
                    let live = self.shard.live();
                    tracing::info!(replicas = live.len(), live = ?live, "the schedules are shared among the live replicas");
                }
            }
            Err(e) => tracing::error!("cannot read the live replicas: {}", Chain(&e)),
        }
    }
}

/// How often `serve` looks for approved plans and expired ones.
const APPROVALS_EVERY: Duration = Duration::from_secs(1);

impl Service {
    /// Applies plans as they are approved (by `levelhost approve`, from any
    /// process sharing the history), and expires those not approved in time.
    async fn approvals_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(APPROVALS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.is_stopping() {
                return;
            }
            match self.executor.expire_overdue().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!("{n} plans were not approved in time; recorded as expired"),
                Err(e) => tracing::error!("cannot expire waiting plans: {}", Chain(&e)),
            }
            let approved = self
                .history
                .list(None, Some(crate::history::RunStatus::Approved), 100)
                .await;
            let approved = match approved {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!("cannot read approved plans: {}", Chain(&e));
                    continue;
                }
            };
            let plugins = self.plugins();
            for row in approved {
                let Some(installed) = plugins.get(&row.plugin) else {
                    continue;
                };
                match self
                    .executor
                    .claim_approved(&installed.served, &row.id)
                    .await
                {
                    Ok(Some(claimed)) => {
                        tracing::info!(plugin = %row.plugin, run = %row.id, "applying the approved plan");
                        let (service, plugin) = (self.clone(), row.plugin.clone());
                        let lock = installed.lock.clone();
                        self.spawn(async move {
                            let guard = lock.lock_owned().await;
                            service
                                .run_claimed(
                                    &plugin,
                                    claimed,
                                    serde_json::Value::Null,
                                    guard,
                                    Busy::Wait,
                                )
                                .await;
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(plugin = %row.plugin, run = %row.id, "cannot apply the approved plan: {}", Chain(&e))
                    }
                }
            }
        }
    }

    /// Waits for the plugin's lock, then runs a claimed run.
    pub(crate) async fn run_queued(
        &self,
        plugin: &str,
        claimed: Claimed,
        input: serde_json::Value,
    ) {
        let plugins = self.plugins();
        let Some(installed) = plugins.get(plugin) else {
            return;
        };
        let guard = installed.lock.clone().lock_owned().await;
        self.run_claimed(plugin, claimed, input, guard, Busy::Wait)
            .await;
    }

    /// Runs a run already claimed in the history, holding the plugin's lock.
    pub(crate) async fn run_claimed(
        &self,
        plugin: &str,
        claimed: Claimed,
        input: serde_json::Value,
        _guard: tokio::sync::OwnedMutexGuard<()>,
        busy: Busy,
    ) {
        let plugins = self.plugins();
        let Some(installed) = plugins.get(plugin) else {
            return;
        };
        let id = claimed.id.clone();
        if self.is_stopping() {
            // Queued behind the plugin's lock until shutdown began: it never
            // starts, and shutdown records it as interrupted.
            tracing::info!(plugin, run = %id, "not started: the host is shutting down");
            return;
        }
        // The plugin's lease in the history keeps it from running twice at
        // once, here, on another replica, or in a `levelhost run` or `apply`.
        let result = self
            .executor
            .run_when_free(
                &installed.served,
                claimed,
                &input,
                RunOptions::default(),
                busy,
            )
            .await;
        if let Err(e) = result {
            tracing::error!(plugin, run = %id, "{}", Chain(&e));
        }
    }
}
