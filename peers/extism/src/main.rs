//! levelhost side by side with Extism 1.x, in one run: BENCHMARKS.md's B11.
//!
//!     cd peers/extism && cargo run --release
//!
//! prints the rows (Markdown). Each side runs by its fastest path for
//! repeated runs: levelhost a fresh instance per run from its instance pool
//! (as `levelhost serve` runs plugins); Extism a fresh plugin per run from a
//! `CompiledPlugin` on an engine with the pooling allocator, and, for
//! reference, one plugin instance called again and again (levelhost has no
//! such mode: every run is a fresh instance).
//!
//! The host-call rows are measured twice, in a child process with
//! `RUST_BACKTRACE=1` and in one without it: an error built on a hot path
//! captures a backtrace when it is set.

#![allow(
    clippy::disallowed_methods,
    reason = "the comparison stands outside the host and its EnvVars: it reads RUST_BACKTRACE to report it"
)]
#![expect(
    clippy::expect_used,
    reason = "a benchmark that cannot set up fails by panicking"
)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use extism::{CurrentPlugin, Function, PTR, UserData, Val};
use level_api::{ApiKey, ClientConfig, LevelClient};
use levelhost_core::grant::Grant;
use levelhost_runtime::engine::Pooling;
use levelhost_runtime::runner::{PluginRunner, RunRequest};
use levelhost_runtime::state::MemoryState;

/// Host calls per run in the host-call rows.
const CALLS: u64 = 1000;
/// Runs measured per row.
const RUNS: usize = 2000;
/// Instances held alive at once for the memory row.
const ALIVE: usize = 1000;

fn p50_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The Extism side: a compiled plugin on a pooling engine, with the `echo` host function.
struct ExtismSide {
    compiled: extism::CompiledPlugin,
}

impl ExtismSide {
    fn new() -> Self {
        let wasm = std::fs::read(env!("EXTISM_GUEST")).expect("the Extism guest");
        let mut config = wasmtime49::Config::new();
        // Room for the memory row's instances (an Extism plugin is two core
        // instances, the guest and Extism's kernel, each with a memory).
        let mut pooling = wasmtime49::PoolingAllocationConfig::default();
        pooling
            .total_core_instances(4 * ALIVE as u32)
            .total_memories(4 * ALIVE as u32)
            .total_tables(4 * ALIVE as u32)
            .total_gc_heaps(4 * ALIVE as u32);
        config.allocation_strategy(wasmtime49::InstanceAllocationStrategy::Pooling(pooling));
        let echo = Function::new(
            "echo",
            [PTR],
            [PTR],
            UserData::new(()),
            |plugin: &mut CurrentPlugin, inputs: &[Val], outputs: &mut [Val], _| {
                let input: Vec<u8> = plugin.memory_get_val(&inputs[0])?;
                let handle = plugin.memory_new(&input)?;
                outputs[0] = plugin.memory_to_val(handle);
                Ok(())
            },
        );
        let compiled =
            extism::PluginBuilder::new(extism::Manifest::new([extism::Wasm::data(wasm)]))
                .with_wasi(true)
                .with_functions([echo])
                .with_wasmtime_config(config)
                .with_cache_disabled()
                .compile()
                .expect("the Extism guest compiles");
        Self { compiled }
    }

    fn fresh(&self) -> extism::Plugin {
        extism::Plugin::new_from_compiled(&self.compiled).expect("an Extism instance")
    }
}

/// The levelhost side: the runner with its instance pool, the noop and stateful guests.
struct LevelhostSide {
    runner: PluginRunner,
    noop: levelhost_runtime::engine::LoadedPlugin,
    stateful: levelhost_runtime::engine::LoadedPlugin,
    client: LevelClient,
}

impl LevelhostSide {
    fn new() -> Self {
        let runner = PluginRunner::with_options(None, Some(Pooling::default())).expect("runner");
        let noop = runner
            .load_file(test_programs_artifacts::NOOP.as_ref())
            .expect("noop");
        let stateful = runner
            .load_file(test_programs_artifacts::STATEFUL.as_ref())
            .expect("stateful");
        // No Level call is made: state calls stay in the host.
        let client = LevelClient::new(
            ClientConfig::new("http://127.0.0.1:9"),
            ApiKey::new("unused"),
        )
        .expect("client");
        Self {
            runner,
            noop,
            stateful,
            client,
        }
    }

    async fn noop(&self) -> Duration {
        let started = Instant::now();
        let report = self
            .runner
            .run(&self.noop, self.client.clone(), RunRequest::manual("{}"))
            .await
            .expect("run");
        let elapsed = started.elapsed();
        assert!(report.outcome.is_ok(), "the noop run succeeds");
        elapsed
    }

    /// A run that sets a 200-byte key to a 200-byte value, then gets it `calls` times.
    async fn calls(&self, calls: u64) -> Duration {
        let key = "k".repeat(200);
        let value = "v".repeat(200);
        let input = serde_json::json!({"ops": [
            {"op": "set", "key": key, "value": value},
            {"op": "get-repeat", "key": key, "times": calls},
        ]})
        .to_string();
        let mut grant = Grant::unrestricted("calls");
        grant.limits.max_api_calls = 10 * CALLS;
        let request = RunRequest {
            grant,
            state: Some(std::sync::Arc::new(MemoryState::default())),
            ..RunRequest::manual(input)
        };
        let started = Instant::now();
        let report = self
            .runner
            .run(&self.stateful, self.client.clone(), request)
            .await
            .expect("run");
        let elapsed = started.elapsed();
        let output = report.outcome.as_ref().expect("the run succeeds");
        assert_eq!(
            output["results"][1]["ok"].as_u64(),
            Some(200 * calls),
            "every get answered the 200 bytes: {output}"
        );
        elapsed
    }
}

/// Host-call cost per call: (levelhost, Extism fresh instance, Extism one instance), µs.
async fn host_calls(levelhost: &LevelhostSide, extism: &ExtismSide, runs: usize) -> [f64; 3] {
    let mut lh = Vec::with_capacity(runs);
    let mut ex = Vec::with_capacity(runs);
    let mut reuse = Vec::with_capacity(runs);
    let mut one = extism.fresh();
    let times = CALLS.to_string();
    for _ in 0..runs {
        lh.push(
            levelhost
                .calls(CALLS)
                .await
                .saturating_sub(levelhost.noop().await),
        );
        let mut plugin = extism.fresh();
        let started = Instant::now();
        let read: String = plugin.call("calls", &times).expect("calls");
        let with_calls = started.elapsed();
        let mut plugin = extism.fresh();
        let started = Instant::now();
        plugin.call::<(), ()>("noop", ()).expect("noop");
        ex.push(with_calls.saturating_sub(started.elapsed()));
        assert_eq!(read, (200 * CALLS).to_string());
        let started = Instant::now();
        let _: String = one.call("calls", &times).expect("calls");
        let with_calls = started.elapsed();
        let started = Instant::now();
        one.call::<(), ()>("noop", ()).expect("noop");
        reuse.push(with_calls.saturating_sub(started.elapsed()));
    }
    let per_call = |d: Vec<Duration>| p50_p99(d).0.as_secs_f64() * 1e6 / CALLS as f64;
    [per_call(lh), per_call(ex), per_call(reuse)]
}

#[tokio::main]
async fn main() {
    // The measured work runs on a worker, as `levelhost serve` runs plugins.
    tokio::spawn(bench()).await.expect("the benchmark panicked");
}

async fn bench() {
    let levelhost = LevelhostSide::new();
    let extism = ExtismSide::new();
    let args: Vec<String> = std::env::args().collect();
    let runs = if args.iter().any(|a| a == "--quick") {
        200
    } else {
        RUNS
    };
    if args.iter().any(|a| a == "--host-calls") {
        // The child: just the host-call figures, as JSON.
        let figures = host_calls(&levelhost, &extism, runs).await;
        println!("{}", serde_json::json!(figures));
        return;
    }
    let backtrace = std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "unset".to_owned());
    let mut rows = String::new();

    // Warm both.
    for _ in 0..100 {
        levelhost.noop().await;
        extism.fresh().call::<(), ()>("noop", ()).expect("noop");
    }

    // A fresh instance + a noop run.
    let mut lh = Vec::with_capacity(runs);
    let mut ex = Vec::with_capacity(runs);
    let mut reuse = Vec::with_capacity(runs);
    let mut one = extism.fresh();
    for _ in 0..runs {
        lh.push(levelhost.noop().await);
        let started = Instant::now();
        let mut plugin = extism.fresh();
        plugin.call::<(), ()>("noop", ()).expect("noop");
        drop(plugin);
        ex.push(started.elapsed());
        let started = Instant::now();
        one.call::<(), ()>("noop", ()).expect("noop");
        reuse.push(started.elapsed());
    }
    let (lh, ex, reuse) = (p50_p99(lh), p50_p99(ex), p50_p99(reuse));
    let _ = writeln!(
        rows,
        "| B11 | a fresh instance + a noop run, p50 / p99 (RUST_BACKTRACE {backtrace}) | {} / {} | Extism, `CompiledPlugin` + pooling: {} / {} | {:.2}x (p50) |",
        us(lh.0),
        us(lh.1),
        us(ex.0),
        us(ex.1),
        lh.0.as_secs_f64() / ex.0.as_secs_f64(),
    );
    let _ = writeln!(
        rows,
        "| B11 | (reference) Extism calling one instance again and again | no such mode: every run is a fresh instance | Extism, one instance: {} / {} | |",
        us(reuse.0),
        us(reuse.1),
    );

    // Sequential runs per second (a fresh instance each).
    let started = Instant::now();
    for _ in 0..runs {
        levelhost.noop().await;
    }
    let lh_rate = runs as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..runs {
        extism.fresh().call::<(), ()>("noop", ()).expect("noop");
    }
    let ex_rate = runs as f64 / started.elapsed().as_secs_f64();
    let _ = writeln!(
        rows,
        "| B11 | sequential noop runs per second, a fresh instance each (RUST_BACKTRACE {backtrace}) | {lh_rate:.0}/s | Extism: {ex_rate:.0}/s | {:.2}x the rate |",
        lh_rate / ex_rate,
    );

    // Memory per live instance.
    let before = rss_bytes();
    let held = levelhost
        .runner
        .instantiate_many(&levelhost.noop, &levelhost.client, ALIVE)
        .await
        .expect("instances");
    let lh_mem = rss_bytes().saturating_sub(before) / ALIVE as u64;
    drop(held);
    let before = rss_bytes();
    let held: Vec<extism::Plugin> = (0..ALIVE).map(|_| extism.fresh()).collect();
    let ex_mem = rss_bytes().saturating_sub(before) / ALIVE as u64;
    drop(held);
    let _ = writeln!(
        rows,
        "| B11 | memory per live instance ({ALIVE} held at once) | {:.0} KiB | Extism: {:.0} KiB | {:.2}x |",
        lh_mem as f64 / 1024.0,
        ex_mem as f64 / 1024.0,
        lh_mem as f64 / ex_mem.max(1) as f64,
    );

    // Host calls: in two children, RUST_BACKTRACE unset and set to 1.
    for setting in [None, Some("1")] {
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"));
        child.arg("--host-calls");
        if runs != RUNS {
            child.arg("--quick");
        }
        match setting {
            Some(value) => child.env("RUST_BACKTRACE", value),
            None => child.env_remove("RUST_BACKTRACE"),
        };
        let out = child.output().expect("the host-call child runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let [lh, ex, reuse]: [f64; 3] =
            serde_json::from_slice(&out.stdout).expect("the child's figures");
        let _ = writeln!(
            rows,
            "| B11 | a host call passing 200 bytes each way, per call, p50 of {CALLS} in a run minus a noop run (RUST_BACKTRACE {}) | {lh:.2} µs | Extism, fresh instance: {ex:.2} µs; one instance: {reuse:.2} µs | {:.2}x (fresh) |",
            setting.unwrap_or("unset"),
            lh / ex,
        );
    }
    let section = format!(
        "{}\n## B11: levelhost and Extism\n\nMeasured by `cd peers/extism && cargo run --release` on {}, in one run (both sides in one process, Extism {EXTISM}).\n\n| | what | levelhost | Extism | ratio |\n|---|---|---|---|---|\n{rows}{PEER_NOTES}{}",
        SECTION.0,
        today(),
        SECTION.1,
    );
    print!("{section}");
    if runs == RUNS {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let new = match (old.find(SECTION.0), old.find(SECTION.1)) {
            (Some(from), Some(to)) => {
                format!("{}{section}{}", &old[..from], &old[to + SECTION.1.len()..])
            }
            _ => format!("{old}\n{section}\n"),
        };
        std::fs::write(&path, new).expect("write BENCHMARKS.md");
        eprintln!("wrote {}", path.display());
    }
}

/// The Extism release measured (as Cargo.lock holds it).
const EXTISM: &str = "1.41";

/// Where BENCHMARKS.md holds this section (the main benchmark keeps it).
const SECTION: (&str, &str) = ("<!-- B11: peers/extism -->", "<!-- /B11 -->");

const PEER_NOTES: &str = "
Notes:
- Each side runs the same work by its fastest path for repeated runs. levelhost: a fresh instance of the
  plugin per run from its instance pool, as `levelhost serve` runs plugins (the `noop` and `stateful` test
  guests, components for wasm32-wasip2). Extism: a fresh `Plugin` per run from a `CompiledPlugin` on an
  engine with wasmtime's pooling allocator (an `extism-pdk` guest for wasm32-unknown-unknown, `peers/extism/guest`).
  One Extism instance called again and again is shown for reference; levelhost has no such mode, since a run
  that could see the last run's memory is not isolated from it.
- What each side includes: levelhost's run is a component-model instance with WASI p2 (nothing allowed), its
  grant, its limits (memory, time by epoch, output), a run report and an audit record of each host call. Its
  host call is `level:api/state.get` with a 200-byte key answering a 200-byte value the run wrote: it goes
  through the gate (capability, call size, the key's checks) and is audited with its target, the answer
  lifted into the guest by the component model. Extism's run is a core module with its kernel and WASI p1,
  the call an Extism host function that reads 200 bytes from the kernel's memory and answers 200 bytes
  (`Function::new`, the guest's `#[host_fn]` import; it does no checking and keeps no record).
- A host call's cost is the p50 over runs of (a run with 1,000 calls, minus a noop run), per call.
  The host-call rows are measured in child processes with `RUST_BACKTRACE` unset and set to 1: an error
  built on a hot path captures a backtrace when it is set, so a difference between the two would show one.
  levelhost's figures do not move with it.
- Memory per live instance: the resident memory added by 1,000 instances held at once, divided by 1,000.
";

/// Today's date (UTC).
fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}
