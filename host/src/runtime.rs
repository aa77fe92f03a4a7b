//! Running plugins: one fresh, sandboxed instance per run.
//!
//! A plugin gets no filesystem, no environment variables, no arguments, no
//! stdin and no network: WASI is linked so that components built by any
//! toolchain load, but every WASI capability is off. Its stdout and stderr
//! are captured into bounded buffers. Its only way out is `level:api`,
//! through the host's client, which holds the API key the plugin never sees.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::{ClosedInputStream, MemoryOutputPipe};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::handler::{Invocation, RunError, Trigger as WitTrigger};
use crate::client::LevelClient;
use crate::engine::{self, EPOCH_TICK, LoadedPlugin};
use crate::error::HostError;
use crate::level::{self, LevelCtx, LogLine, LogSink};

/// Limits of one run. The defaults suit a typical integration; each can be raised per plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLimits {
    /// Wall-clock time for the whole run, Level calls included.
    pub timeout: Duration,
    /// Linear memory the plugin may grow to, in bytes.
    pub memory_bytes: usize,
    /// Largest output document, in bytes.
    pub max_output_bytes: usize,
    /// Largest captured stdout and stderr, each, in bytes.
    pub max_stdio_bytes: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            memory_bytes: 64 * 1024 * 1024,
            max_output_bytes: 1024 * 1024,
            max_stdio_bytes: 64 * 1024,
        }
    }
}

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
    /// Limits of the run.
    pub limits: RunLimits,
    /// Echo the plugin's log lines to the host's log as they arrive.
    pub echo_logs: bool,
}

impl RunRequest {
    /// A manual run with `input`, a fresh run id and default limits.
    pub fn manual(input: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            trigger: Trigger::Manual,
            run_id: new_run_id(),
            limits: RunLimits::default(),
            echo_logs: false,
        }
    }
}

/// A new run id: time-ordered and unique (`run_` + 26 characters of a ULID-like id).
pub fn new_run_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let random: u64 = rand::random();
    format!("run_{millis:012x}{random:016x}")
}

/// Why a run did not produce output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunFailure {
    /// The plugin returned an error.
    #[error("the plugin failed: {0}")]
    Plugin(String),
    /// The plugin trapped (a panic, an out-of-bounds access, a limit enforced by trapping).
    #[error("the plugin crashed: {0}")]
    Trap(String),
    /// The run took longer than its time limit.
    #[error("the run exceeded its time limit of {0:?}")]
    TimedOut(Duration),
    /// The output was larger than allowed.
    #[error("the output is {size} bytes, more than the limit of {limit} bytes")]
    OutputTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The output is not JSON.
    #[error("the output is not valid JSON: {0}")]
    InvalidOutput(String),
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// The plugin's name.
    pub plugin: String,
    /// The component's digest.
    pub digest: String,
    /// The output document, or why there is none.
    pub outcome: Result<serde_json::Value, RunFailure>,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// Captured stdout (lossy UTF-8).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8).
    pub stderr: String,
    /// Level calls made.
    pub api_calls: u64,
    /// Wall-clock duration.
    pub duration: Duration,
}

/// The data of a plugin's store: WASI (all capabilities off), the `level:api` context and the memory limits.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    level: LevelCtx,
    limits: StoreLimits,
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
pub struct PluginRunner {
    engine: Engine,
    linker: Linker<HostState>,
}

impl PluginRunner {
    /// A runner with a new engine.
    pub fn new() -> Result<Self, HostError> {
        let engine = engine::new_engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::Engine(e.to_string()))?;
        level::add_to_linker(&mut linker, |s: &mut HostState| &mut s.level)
            .map_err(|e| HostError::Engine(e.to_string()))?;
        Ok(Self { engine, linker })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component and checks it against the plugin world.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, HostError> {
        engine::load(&self.engine, &self.linker, name, bytes)
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

    /// Runs `plugin` once with Level calls going through `client`.
    ///
    /// Fails before the plugin starts only if the input is not JSON; every
    /// failure of the plugin itself is reported in [`RunReport::outcome`].
    pub async fn run(
        &self,
        plugin: &LoadedPlugin,
        client: LevelClient,
        request: RunRequest,
    ) -> Result<RunReport, HostError> {
        serde_json::from_str::<serde_json::Value>(&request.input)
            .map_err(|e| HostError::InvalidInput(e.to_string()))?;
        let started = Instant::now();
        let limits = request.limits.clone();
        let stdout = MemoryOutputPipe::new(limits.max_stdio_bytes);
        let stderr = MemoryOutputPipe::new(limits.max_stdio_bytes);
        let wasi = WasiCtxBuilder::new()
            .stdin(ClosedInputStream)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let log = LogSink {
            lines: Vec::new(),
            echo: request.echo_logs,
        };
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            level: LevelCtx::new(client, log),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(16)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = limits.timeout.as_millis() / EPOCH_TICK.as_millis().max(1) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        let invocation = Invocation {
            input: request.input.clone(),
            trigger: match &request.trigger {
                Trigger::Manual => WitTrigger::Manual,
                Trigger::Schedule { planned } => WitTrigger::Schedule(planned.clone()),
                Trigger::Event { event_type } => WitTrigger::Event(event_type.clone()),
            },
            run_id: request.run_id.clone(),
        };
        let call = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance
                .level_api_handler()
                .call_run(&mut store, &invocation)
                .await
        };
        // The epoch deadline stops guest code; this stops a run stuck in a slow host call.
        let result = tokio::time::timeout(limits.timeout, call).await;
        let outcome = match result {
            Err(_) => Err(RunFailure::TimedOut(limits.timeout)),
            Ok(Err(trap)) => Err(classify_trap(&trap, &limits)),
            Ok(Ok(Err(err))) => Err(RunFailure::Plugin(describe_run_error(&err))),
            Ok(Ok(Ok(output))) => parse_output(&output, limits.max_output_bytes),
        };
        let level = &mut store.data_mut().level;
        Ok(RunReport {
            run_id: request.run_id,
            plugin: plugin.name.clone(),
            digest: plugin.digest.clone(),
            outcome,
            logs: std::mem::take(&mut level.log.lines),
            stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
            api_calls: level.api_calls,
            duration: started.elapsed(),
        })
    }
}

fn classify_trap(trap: &wasmtime::Error, limits: &RunLimits) -> RunFailure {
    if let Some(wasmtime::Trap::Interrupt) = trap.downcast_ref::<wasmtime::Trap>() {
        return RunFailure::TimedOut(limits.timeout);
    }
    RunFailure::Trap(format!("{trap:#}"))
}

fn parse_output(output: &str, limit: usize) -> Result<serde_json::Value, RunFailure> {
    if output.len() > limit {
        return Err(RunFailure::OutputTooLarge {
            size: output.len(),
            limit,
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
