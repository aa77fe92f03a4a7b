//! Running plugins: one fresh, sandboxed instance per run.
//!
//! A plugin gets no filesystem, no environment variables, no arguments, no
//! stdin and no sockets: WASI is linked so that components built by any
//! toolchain load, but every WASI capability is off. Its stdout and stderr
//! are captured into bounded buffers. Its ways out are `level:api`, through
//! the host's client, which holds the API key the plugin never sees, and
//! `wasi:http` to the grant's connections ([`crate::outbound`]), both
//! decided by the run's one [`Gate`], which enforces its grant.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::{ClosedInputStream, MemoryOutputPipe};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::audit::{AuditLog, AuditRecord};
use crate::bindings::handler::{Invocation, RunError, Trigger as WitTrigger};
use crate::engine::{self, LoadedPlugin};
use crate::error::HostError;
use crate::level::{self, LevelCtx, LimitExceeded, LogLine, LogSink, PlanEntry, RunInfo};
use crate::outbound::{Connections, Outbound};
use level_api::{LevelClient, PageParams};
use levelhost_core::capability::{Capability, resource_of_interface};
use levelhost_core::gate::Gate;
use levelhost_core::grant::{self, Grant, Limits};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// By hand.
    Manual,
    /// A schedule, at its planned time.
    Schedule {
        /// The planned time (ISO-8601 UTC).
        planned: String,
    },
    /// A Level event.
    Event {
        /// The event type, such as `alert_active`.
        event_type: String,
    },
}

/// One run to perform.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The input document (JSON).
    pub input: String,
    /// What started the run.
    pub trigger: Trigger,
    /// The run's id.
    pub run_id: String,
    /// What the plugin may do.
    pub grant: Grant,
    /// The plugin's version, for the audit log.
    pub version: String,
    /// Plan writes instead of sending them.
    pub dry_run: bool,
    /// Where to append audit records, if anywhere.
    pub audit: Option<AuditLog>,
    /// Echo the plugin's log lines to the host's log as they arrive.
    pub echo_logs: bool,
    /// The guest's clocks and random numbers, recorded or replayed; the real
    /// ones when `None`.
    pub tape: Option<crate::tape::Tape>,
    /// An approved plan the run is held to: a write it does not hold is denied.
    pub approved: Option<Vec<PlanEntry>>,
    /// Where the plugin's committed state is read; an empty state in memory when `None`.
    pub state: Option<std::sync::Arc<dyn crate::state::StateStore>>,
    /// The other systems the host can reach; the grant says which of them
    /// the plugin may call. None when `None`.
    pub connections: Option<std::sync::Arc<Connections>>,
    /// The run's requests to other systems, recorded, or answered from a
    /// recording instead of sent; sent and not kept when `None`.
    pub http_tape: Option<crate::outbound::HttpTape>,
}

impl RunRequest {
    /// A manual run with `input`, a fresh run id and an unrestricted grant (for the simulator and tests).
    pub fn manual(input: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            trigger: Trigger::Manual,
            run_id: new_run_id(),
            grant: Grant::unrestricted("plugin"),
            version: "0.0.0".to_owned(),
            dry_run: false,
            audit: None,
            echo_logs: false,
            tape: None,
            approved: None,
            state: None,
            connections: None,
            http_tape: None,
        }
    }
}

/// A new run id: time-ordered and unique.
pub fn new_run_id() -> String {
    run_id(chrono::Utc::now().timestamp_millis(), rand::random())
}

fn run_id(millis: i64, random: u64) -> String {
    // `run_`, 12 hex digits of milliseconds, 16 random ones; written by hand
    // (every run and skip takes one, and `format!` costs more than the rest).
    let mut id = *b"run_0000000000000000000000000000";
    let hex = |digits: &mut [u8], mut value: u64| {
        for digit in digits.iter_mut().rev() {
            *digit = b"0123456789abcdef"[(value & 0xf) as usize];
            value >>= 4;
        }
    };
    hex(&mut id[4..16], u64::try_from(millis).unwrap_or(0));
    hex(&mut id[16..], random);
    String::from_utf8_lossy(&id).into_owned()
}

/// Why a run did not produce output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunFailure {
    /// The plugin returned an error.
    #[error("the plugin failed: {0}")]
    Plugin(String),
    /// The plugin trapped (a panic, an out-of-bounds access).
    #[error("the plugin crashed: {0}")]
    Trap(String),
    /// The run took longer than its time limit.
    #[error("the run exceeded its time limit of {0:?} (limit timeout_secs)")]
    TimedOut(Duration),
    /// A limit of the grant was reached.
    #[error("limit {limit} exceeded: {detail}")]
    LimitExceeded {
        /// The limit's name, as in the config.
        limit: String,
        /// What happened.
        detail: String,
    },
    /// The output is not JSON.
    #[error("the output is not valid JSON: {0}")]
    InvalidOutput(String),
    /// The run ended well, but its state writes could not be kept (a key
    /// changed under it); none were, and the run counts as failed.
    #[error("{0}")]
    StateNotKept(String),
}

/// How many of a crashed plugin's last stderr lines its failure quotes.
const LAST_WORDS_LINES: usize = 20;
/// How much of each quoted line: a plugin writing one huge line must not
/// make a huge failure (it is stored with the run and printed).
const LAST_WORDS_LINE_CHARS: usize = 300;

impl RunFailure {
    /// A crash with what the plugin last wrote to stderr: a Go panic, a C
    /// `assert` or a language runtime's own report of an uncaught error is
    /// there, where the trap itself says only where the guest stopped.
    fn with_last_words(self, stderr: &[u8]) -> Self {
        let RunFailure::Trap(trap) = self else {
            return self;
        };
        let text = String::from_utf8_lossy(stderr);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            return RunFailure::Trap(trap);
        }
        let tail: Vec<String> = lines[lines.len().saturating_sub(LAST_WORDS_LINES)..]
            .iter()
            .map(|line| {
                let mut quoted: String = line.chars().take(LAST_WORDS_LINE_CHARS).collect();
                if quoted.len() < line.len() {
                    quoted.push_str(" [...]");
                }
                quoted
            })
            .collect();
        RunFailure::Trap(format!(
            "{trap}\nthe plugin's last lines on stderr:\n  {}",
            tail.join("\n  ")
        ))
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// The plugin's name.
    pub plugin: std::sync::Arc<str>,
    /// The component's digest.
    pub digest: std::sync::Arc<str>,
    /// The output document, or why there is none.
    pub outcome: Result<serde_json::Value, RunFailure>,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// Captured stdout (lossy UTF-8).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8).
    pub stderr: String,
    /// Level requests made.
    pub api_calls: u64,
    /// Requests made to the grant's connections.
    pub http_requests: u64,
    /// Writes made (or planned, in a dry run).
    pub writes: u64,
    /// The writes a dry run planned.
    pub plan: Vec<PlanEntry>,
    /// Distinct devices changed (or planned to be, in a dry run).
    pub devices_changed: u64,
    /// For a run held to an approved plan: why each write outside the plan
    /// was denied. Not empty means the run diverged from its plan.
    pub divergence: Vec<String>,
    /// For a run held to an approved plan: the planned writes it did not make.
    pub unapplied: Vec<PlanEntry>,
    /// Every host call, as audited.
    pub audit: Vec<AuditRecord>,
    /// The run's changes to the plugin's state: committed with the run's
    /// record only when it is recorded `ok` (and not a dry run).
    pub state: Vec<crate::state::StateChange>,
    /// Wall-clock duration.
    pub duration: Duration,
}

/// Memory limits that remember being hit, so the run can name the limit.
struct Limiter {
    inner: StoreLimits,
    memory_exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_exceeded = true;
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The data of a plugin's store: WASI (every capability off), the `level:api` context and the limits.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    level: LevelCtx,
    http: WasiHttpCtx,
    outbound: Outbound,
    limiter: Limiter,
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Loads and runs plugins. One runner serves any number of plugins and runs.
#[derive(Clone)]
pub struct PluginRunner {
    engine: Engine,
    linker: Linker<HostState>,
    /// Components loaded and still in use, by digest: plugins made from the
    /// same component (one plugin installed for many customers) share its
    /// compiled code and instance template instead of loading it again.
    loaded: std::sync::Arc<
        std::sync::Mutex<
            std::collections::HashMap<
                String,
                std::sync::Weak<crate::bindings::PluginPre<HostState>>,
            >,
        >,
    >,
    /// The connections of a run that is given none.
    no_connections: std::sync::Arc<Connections>,
}

impl PluginRunner {
    /// A runner with a new engine.
    pub fn new() -> Result<Self, HostError> {
        Self::with_cache(None)
    }

    /// A runner whose compiled components are cached in `cache_dir`.
    pub fn with_cache(cache_dir: Option<&std::path::Path>) -> Result<Self, HostError> {
        Self::with_options(cache_dir, None)
    }

    /// A runner with a compile cache, instances from a pool, both, or neither.
    pub fn with_options(
        cache_dir: Option<&std::path::Path>,
        pooling: Option<engine::Pooling>,
    ) -> Result<Self, HostError> {
        let engine = engine::new_engine(cache_dir, pooling)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::engine("cannot link WASI", e))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| HostError::engine("cannot link wasi:http", e))?;
        level::add_to_linker(&mut linker, |s: &mut HostState| &mut s.level)
            .map_err(|e| HostError::engine("cannot link level:api", e))?;
        Ok(Self {
            engine,
            linker,
            loaded: Default::default(),
            no_connections: Default::default(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component and checks it against the plugin world.
    /// A component this runner has loaded already (and is still in use) is
    /// not loaded again: the new plugin shares it.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, HostError> {
        let digest = engine::digest(bytes);
        let shared = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
            .and_then(std::sync::Weak::upgrade);
        if let Some(pre) = shared {
            let imports = engine::imports(&self.engine, pre.instance_pre().component());
            return Ok(LoadedPlugin {
                name: name.into(),
                digest: digest.into(),
                imports,
                pre,
            });
        }
        let loaded = engine::load(&self.engine, &self.linker, name, bytes)?;
        let mut memo = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        memo.retain(|_, pre| pre.strong_count() > 0);
        memo.insert(
            loaded.digest.to_string(),
            std::sync::Arc::downgrade(&loaded.pre),
        );
        Ok(loaded)
    }

    /// Reads, compiles and checks a component file.
    pub fn load_file(&self, path: &std::path::Path) -> Result<LoadedPlugin, HostError> {
        let bytes = std::fs::read(path).map_err(|source| HostError::ReadPlugin {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load(&name, &bytes)
    }

    /// The `level:api` interfaces `plugin` imports that its grant gives no
    /// capability on, in words. Such a component still loads and runs: every
    /// function of those interfaces answers `denied`, naming the capability
    /// it needs (the gate refuses them like any other ungranted call), so an
    /// upgrade that imports more keeps running under its old grant.
    pub fn ungranted_imports(plugin: &LoadedPlugin, grant: &Grant) -> Vec<String> {
        plugin
            .imports
            .iter()
            .filter_map(|import| {
                let resource = resource_of_interface(import)?;
                let covered = grant
                    .capabilities
                    .iter()
                    .any(|c: &Capability| c.resource == resource);
                (!covered).then(|| {
                    format!(
                        "{} imports {import}, but its grant has no capability on it: its calls there answer denied (they need {})",
                        plugin.name,
                        resource
                            .verbs()
                            .iter()
                            .map(|&verb| Capability { resource, verb }.to_string())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )
                })
            })
            .collect()
    }

    /// Runs `plugin` once, its Level calls going through `client` under `request.grant`.
    ///
    /// Fails before the plugin starts if the input is not JSON or a scope
    /// names something Level does not have. Every failure of the plugin
    /// itself is reported in [`RunReport::outcome`].
    ///
    /// The time limit covers the whole run from here: resolving the scopes
    /// (whose group listing may wait on a rate-limited key), instantiating,
    /// every host call and every retry or `Retry-After` wait inside one; a
    /// wait is cut off, not finished, when the time is up.
    pub async fn run(
        &self,
        plugin: &LoadedPlugin,
        client: LevelClient,
        mut request: RunRequest,
    ) -> Result<RunReport, HostError> {
        serde_json::from_str::<serde_json::Value>(&request.input)
            .map_err(HostError::InvalidInput)?;
        let started = Instant::now();
        let limits = request.grant.limits.clone();
        let deadline = tokio::time::Instant::now() + limits.timeout();
        let lookup = resolve_scopes(&client, &request.grant);
        let scopes = if request.grant.scopes.groups.is_none() {
            // Nothing to look up at Level, so nothing to time out.
            Some(lookup.await?)
        } else {
            match tokio::time::timeout_at(deadline, lookup).await {
                Ok(resolved) => Some(resolved?),
                Err(_) => None,
            }
        };
        let log_bytes = Limits::bytes(limits.max_log_kb);
        let in_time = scopes.is_some();
        // The run's gate takes the grant; what is left in its place allows nothing.
        let grant = std::mem::replace(&mut request.grant, Grant::exactly("", Default::default()));
        let (mut store, stdout, stderr) = self.store(
            plugin,
            client,
            &request,
            grant,
            scopes.unwrap_or_else(grant::ResolvedScopes::nothing),
            deadline,
        );

        let invocation = Invocation {
            input: std::mem::take(&mut request.input),
            trigger: match &request.trigger {
                Trigger::Manual => WitTrigger::Manual,
                Trigger::Schedule { planned } => WitTrigger::Schedule(planned.clone()),
                Trigger::Event { event_type } => WitTrigger::Event(event_type.clone()),
            },
            // Lent to the invocation, and taken back for the report.
            run_id: std::mem::take(&mut request.run_id),
        };
        let call = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance
                .level_api_handler()
                .call_run(&mut store, &invocation)
                .await
        };
        // The epoch deadline stops guest code; this stops a run stuck in a slow host call.
        let result = if in_time {
            within(deadline, call).await
        } else {
            drop(call);
            None
        };
        request.run_id = invocation.run_id;
        let (stdout, stderr) = (stdout.contents(), stderr.contents());
        let stdio_full = stdout.len() >= log_bytes || stderr.len() >= log_bytes;
        let memory_exceeded = store.data().limiter.memory_exceeded;
        let outcome =
            match result {
                None => Err(RunFailure::TimedOut(limits.timeout())),
                Some(Err(trap)) => Err(classify_trap(&trap, &limits, memory_exceeded, stdio_full)
                    .with_last_words(&stderr)),
                Some(Ok(Err(err))) => Err(RunFailure::Plugin(describe_run_error(&err))),
                Some(Ok(Ok(output))) => parse_output(&output, Limits::bytes(limits.max_output_kb)),
            };
        let failure = outcome.as_ref().err().map(ToString::to_string);
        let cut_off = store.data().outbound.record_cut_off().await;
        store
            .data_mut()
            .level
            .record_run_end(failure, started.elapsed())
            .await;
        if let Some(audit) = &request.audit {
            audit.sync().await?;
        }
        let (mut http_records, http_plan) = store.data().outbound.take_exchanges();
        http_records.extend(cut_off);
        let level = &mut store.data_mut().level;
        let (outcome_of_plan, api_calls, writes, devices_changed, http_requests) = {
            let gate = level.gate();
            (
                gate.plan_outcome().unwrap_or_default(),
                gate.api_calls(),
                gate.writes(),
                gate.devices_changed(),
                gate.http_requests(),
            )
        };
        let mut plan = level.take_plan();
        plan.extend(http_plan);
        let mut audit = std::mem::take(&mut level.audit_records);
        // The run's own end stays the last record.
        let end = audit.pop();
        audit.extend(http_records);
        audit.sort_by(|a, b| a.time.cmp(&b.time));
        audit.extend(end);
        Ok(RunReport {
            run_id: request.run_id,
            plugin: plugin.name.clone(),
            digest: plugin.digest.clone(),
            outcome,
            logs: std::mem::take(&mut level.log.lines),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            api_calls,
            http_requests,
            writes,
            plan,
            devices_changed,
            divergence: outcome_of_plan.0,
            unapplied: outcome_of_plan.1,
            audit,
            state: std::mem::take(&mut level.state).into_changes(),
            duration: started.elapsed(),
        })
    }

    /// A fresh store for one run: WASI with every capability off, bounded
    /// stdout and stderr, the `level:api` context with the run's gate (of
    /// `grant`, the request's), and limits.
    fn store(
        &self,
        plugin: &LoadedPlugin,
        client: LevelClient,
        request: &RunRequest,
        grant: Grant,
        scopes: grant::ResolvedScopes,
        deadline: tokio::time::Instant,
    ) -> (Store<HostState>, MemoryOutputPipe, MemoryOutputPipe) {
        let limits = grant.limits.clone();
        let log_bytes = Limits::bytes(limits.max_log_kb);
        let stdout = MemoryOutputPipe::new(log_bytes);
        let stderr = MemoryOutputPipe::new(log_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(ClosedInputStream)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(tape) = &request.tape {
            tape.install(&mut wasi);
        }
        let wasi = wasi.build();
        let run = std::sync::Arc::new(RunInfo {
            plugin: plugin.name.clone(),
            version: request.version.as_str().into(),
            digest: plugin.digest.clone(),
            run_id: request.run_id.as_str().into(),
        });
        let log = LogSink {
            echo: request.echo_logs,
            max_bytes: log_bytes,
            ..LogSink::default()
        };
        let mut gate = Gate::new(grant, scopes);
        if let Some(plan) = &request.approved {
            gate.hold_to(levelhost_core::plan::ApprovedPlan::new(plan.clone()));
        }
        let gate = level::SharedGate::new(gate);
        let outbound = Outbound::new(
            request
                .connections
                .clone()
                .unwrap_or_else(|| self.no_connections.clone()),
            gate.clone(),
            run.clone(),
            request.audit.clone(),
            request.dry_run,
            deadline,
        )
        .with_tape(request.http_tape.clone());
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound,
            level: {
                let level = LevelCtx::new(
                    client,
                    gate,
                    run,
                    request.audit.clone(),
                    log,
                    request.dry_run,
                );
                match &request.state {
                    Some(store) => level.with_state(store.clone()),
                    None => level,
                }
            },
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(Limits::bytes(limits.memory_mb.saturating_mul(1024)))
                    .instances(1000)
                    .build(),
                memory_exceeded: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Guest code yields to the async runtime at every epoch tick, so a busy
        // plugin never holds a runtime thread and the time limit below can fire.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        (store, stdout, stderr)
    }

    /// Instantiates `plugin` `count` times, each in its own store as a run
    /// would, and keeps them all alive (for measuring memory per instance).
    pub async fn instantiate_many(
        &self,
        plugin: &LoadedPlugin,
        client: &LevelClient,
        count: usize,
    ) -> Result<Vec<Store<HostState>>, HostError> {
        let request = RunRequest::manual("{}");
        let mut stores = Vec::with_capacity(count);
        for _ in 0..count {
            let (mut store, _, _) = self.store(
                plugin,
                client.clone(),
                &request,
                request.grant.clone(),
                grant::ResolvedScopes::default(),
                tokio::time::Instant::now() + request.grant.limits.timeout(),
            );
            plugin
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| HostError::engine("cannot make a pool instance ready", e))?;
            stores.push(store);
        }
        Ok(stores)
    }
}

/// `future`'s output, or `None` once `deadline` has passed. The timer is
/// armed only when the future first has to wait: a run that ends without
/// waiting on a host call (most plugins that call nothing slow) never
/// touches the runtime's timer wheel.
async fn within<F: Future>(deadline: tokio::time::Instant, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(output));
        }
        timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)))
            .as_mut()
            .poll(cx)
            .map(|()| None)
    })
    .await
}

/// Makes the grant's scopes concrete: group names become the ids of their subtrees.
pub async fn resolve_scopes(
    client: &LevelClient,
    grant: &Grant,
) -> Result<grant::ResolvedScopes, HostError> {
    resolve_scopes_counted(client, grant)
        .await
        .map(|(scopes, _)| scopes)
}

/// [`resolve_scopes`], and how many requests it sent to Level (the pages of
/// the group listing), for an audit record of them.
pub async fn resolve_scopes_counted(
    client: &LevelClient,
    grant: &Grant,
) -> Result<(grant::ResolvedScopes, u32), HostError> {
    let mut requests = 0;
    let groups =
        if grant.scopes.groups.is_some() {
            let mut all = Vec::new();
            let mut page = PageParams {
                limit: Some(100),
                ..PageParams::default()
            };
            loop {
                requests += 1;
                let batch = client.list_groups(None, &page).await.map_err(|source| {
                    HostError::ScopeLookup {
                        plugin: grant.plugin.clone(),
                        source,
                    }
                })?;
                let last = batch.data.last().map(|g| g.id.clone());
                all.extend(batch.data.into_iter().map(|g| (g.id, g.name, g.parent_id)));
                match last {
                    Some(id) if batch.has_more => page.starting_after = Some(id),
                    _ => break,
                }
            }
            all
        } else {
            Vec::new()
        };
    let scopes = grant::resolve(&grant.scopes, &groups).map_err(|error| HostError::Scope {
        plugin: grant.plugin.clone(),
        error,
    })?;
    Ok((scopes, requests))
}

fn classify_trap(
    trap: &wasmtime::Error,
    limits: &Limits,
    memory: bool,
    stdio_full: bool,
) -> RunFailure {
    if let Some(limit) = trap.downcast_ref::<LimitExceeded>() {
        return RunFailure::LimitExceeded {
            limit: limit.limit.to_owned(),
            detail: limit.detail.clone(),
        };
    }
    match trap.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => return RunFailure::TimedOut(limits.timeout()),
        Some(wasmtime::Trap::StackOverflow) => {
            return RunFailure::LimitExceeded {
                limit: "wasm stack".to_owned(),
                detail: format!(
                    "the plugin used more than {} bytes of stack",
                    engine::MAX_WASM_STACK
                ),
            };
        }
        _ => {}
    }
    if memory {
        return RunFailure::LimitExceeded {
            limit: "memory_mb".to_owned(),
            detail: format!(
                "the plugin tried to grow its memory beyond {} MiB",
                limits.memory_mb
            ),
        };
    }
    if stdio_full {
        return RunFailure::LimitExceeded {
            limit: "max_log_kb".to_owned(),
            detail: format!(
                "the plugin wrote more than {} KiB to stdout or stderr",
                limits.max_log_kb
            ),
        };
    }
    RunFailure::Trap(format!("{trap:#}"))
}

fn parse_output(output: &str, limit: usize) -> Result<serde_json::Value, RunFailure> {
    if output.len() > limit {
        return Err(RunFailure::LimitExceeded {
            limit: "max_output_kb".to_owned(),
            detail: format!("the output is {} bytes; the limit is {limit}", output.len()),
        });
    }
    serde_json::from_str(output).map_err(|e| RunFailure::InvalidOutput(e.to_string()))
}

/// A plugin's `run-error` in words.
pub fn describe_run_error(err: &RunError) -> String {
    match err {
        RunError::InvalidInput(m) => format!("invalid input: {m}"),
        RunError::Failed(m) => m.clone(),
        RunError::Level(e) => format!("Level call failed: {}", level::describe(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_the_time_in_hex_then_random_hex() {
        for (millis, random) in [
            (0, 0),
            (1_764_806_400_123, 0x0123_4567_89ab_cdef),
            (0xffff_ffff_ffff, u64::MAX),
        ] {
            assert_eq!(
                run_id(millis, random),
                format!("run_{millis:012x}{random:016x}")
            );
        }
        let (a, b) = (new_run_id(), new_run_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn a_crash_quotes_the_last_stderr_lines_each_cut_short() {
        let long = "x".repeat(10_000);
        let stderr = format!("early\n{}panicked at 'boom'\n{long}\n", "line\n".repeat(30));
        let RunFailure::Trap(text) =
            RunFailure::Trap("wasm trap".into()).with_last_words(stderr.as_bytes())
        else {
            panic!("still a trap");
        };
        assert!(text.starts_with("wasm trap\nthe plugin's last lines on stderr:"));
        assert!(text.contains("panicked at 'boom'") && !text.contains("early"));
        assert!(text.contains(" [...]"));
        assert!(text.len() < 2 * LAST_WORDS_LINES * LAST_WORDS_LINE_CHARS);
        let other = RunFailure::Plugin("its own error".into()).with_last_words(b"noise");
        assert_eq!(other, RunFailure::Plugin("its own error".into()));
    }
}
