//! levelhost's benchmarks: each measures levelhost against a baseline in the
//! same run and prints a Markdown table. `cargo bench` writes it to
//! BENCHMARKS.md at the repository root, with the machine and the date.

#![expect(
    clippy::expect_used,
    reason = "a benchmark that cannot set up fails by panicking"
)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use level_host::capability::Operation;
use level_host::client::{ApiKey, ClientConfig, LevelClient};
use level_host::gate::{Facts, Gate};
use level_host::grant::{Grant, ResolvedScopes};
use level_host::runtime::{PluginRunner, RunRequest};
use level_host::sim::{SimConfig, Simulator};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64().max(1e-12))
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

/// The smallest valid component: just the preamble.
const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 200 } else { 2000 };
    let mut rows = String::new();

    // B1: instantiate + run a trivial plugin, against wasmtime instantiating an empty component the same way.
    let runner = PluginRunner::new().expect("runner");
    let sim = Simulator::start(
        SimConfig {
            rate_limit: None,
            ..SimConfig::default()
        },
        Simulator::seeded(),
    )
    .await
    .expect("sim");
    let client = LevelClient::new(
        ClientConfig::new(sim.base_url()),
        ApiKey::new(sim.read_write_key()),
    )
    .expect("client");
    let noop = runner
        .load_file(test_programs_artifacts::NOOP.as_ref())
        .expect("noop");
    let mut plugin_samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let report = runner
            .run(&noop, client.clone(), RunRequest::manual("{}"))
            .await
            .expect("run");
        plugin_samples.push(start.elapsed());
        assert!(report.outcome.is_ok());
    }
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    let engine = Engine::new(&config).expect("engine");
    let empty = Component::new(&engine, EMPTY_COMPONENT).expect("empty component");
    let linker: Linker<()> = Linker::new(&engine);
    let pre = linker.instantiate_pre(&empty).expect("pre");
    let mut floor_samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut store = Store::new(&engine, ());
        store.set_epoch_deadline(1);
        let _instance = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        floor_samples.push(start.elapsed());
    }
    let (plugin, floor) = (stats(plugin_samples), stats(floor_samples));
    writeln!(
        rows,
        "| B1 | instantiate + run a trivial plugin (p50 / p99) | {} / {} | wasmtime, empty component: {} / {} | {} (p50) |",
        us(plugin.p50), us(plugin.p99), us(floor.p50), us(floor.p99), ratio(plugin.p50, floor.p50)
    )
    .ok();

    // B2: the gate's decision for one call, against no decision at all.
    let mut gate = Gate::new(Grant::unrestricted("bench"), ResolvedScopes::default());
    let facts = Facts {
        devices: vec![("d1".to_owned(), None)],
        ..Facts::default()
    };
    let rounds = 200_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(gate.admit(Operation::GetDevice, 32)).ok();
        std::hint::black_box(gate.authorize(Operation::GetDevice, std::hint::black_box(&facts)))
            .ok();
    }
    let per_check = start.elapsed() / rounds;
    let ns = per_check.as_nanos();
    writeln!(rows, "| B2 | the gate's checks for one host call (admit + authorize) | {ns} ns | a direct call: nothing added | +{ns} ns per call |").ok();

    // B3: a Level call through the client, against the same request sent with reqwest directly.
    let tag = sim.tenant().to_fixture().tags[0].id.clone();
    let url = format!("{}/v2/tags/{}", sim.base_url(), tag);
    let raw = reqwest::Client::new();
    let mut direct = Vec::with_capacity(n);
    let mut through = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let body = raw
            .get(&url)
            .header("Authorization", sim.read_write_key())
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("body");
        std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&body).ok());
        direct.push(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(client.get_tag(&tag).await.expect("get_tag"));
        through.push(start.elapsed());
    }
    let (direct, through) = (stats(direct), stats(through));
    let added = through.p50.saturating_sub(direct.p50);
    writeln!(
        rows,
        "| B3 | a Level call on loopback through levelhost's client (p50) | {} | reqwest directly: {} | +{} ({:.1}% of the round trip) |",
        us(through.p50), us(direct.p50), us(added), 100.0 * added.as_secs_f64() / direct.p50.as_secs_f64()
    )
    .ok();

    // B4: cold start (compile) against warm start (compile cache) for the Rust example plugin.
    let cache = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(test_programs_artifacts::DEVICE_REPORT).expect("component");
    let cold_runner = PluginRunner::with_cache(Some(cache.path())).expect("runner");
    let start = Instant::now();
    cold_runner.load("device-report", &bytes).expect("load");
    let cold = start.elapsed();
    let warm_runner = PluginRunner::with_cache(Some(cache.path())).expect("runner");
    let start = Instant::now();
    warm_runner.load("device-report", &bytes).expect("load");
    let warm = start.elapsed();
    writeln!(
        rows,
        "| B4 | load the Rust device-report plugin ({} KB): warm, from the cache | {} | cold, compiling: {} | {:.0}x faster warm |",
        bytes.len() / 1024, us(warm), us(cold), cold.as_secs_f64() / warm.as_secs_f64().max(1e-9)
    )
    .ok();

    // B5: 1,000 instances alive at once: memory per instance, and throughput of sequential runs.
    let alive = if quick { 200 } else { 1000 };
    let before = rss_bytes();
    let mut stores = Vec::with_capacity(alive);
    for _ in 0..alive {
        let mut store = Store::new(&engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        stores.push((store, instance));
    }
    let empty_per = (rss_bytes().saturating_sub(before)) / alive as u64;
    drop(stores);
    let (per_instance, throughput) = instances_alive(&runner, &noop, &client, alive).await;
    writeln!(
        rows,
        "| B5 | {alive} noop plugin instances alive at once: memory each; sequential runs | {:.0} KiB each; {:.0} runs/s | wasmtime, empty component: {:.0} KiB each | |",
        per_instance as f64 / 1024.0, throughput, empty_per as f64 / 1024.0
    )
    .ok();

    let report = format!(
        "# Benchmarks\n\nMeasured by `cargo bench` on {} ({}), {}.\nEach row compares levelhost with a baseline measured in the same run.\n\n| | what | levelhost | baseline | ratio |\n|---|---|---|---|---|\n{rows}\nNot measured yet: B4 for a JavaScript plugin, B6 (a plugin against an equivalent Python script), B7 (10,000 schedules).\n",
        time::OffsetDateTime::now_utc().date(),
        machine(),
        if quick { "quick mode" } else { "full mode" },
    );
    print!("{report}");
    if !quick {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
        std::fs::write(&path, &report).expect("write BENCHMARKS.md");
        eprintln!("wrote {}", path.display());
    }
    sim.stop().await;
}

/// Keeps `alive` plugin instances alive in their stores (a run in progress each,
/// parked in a host call) and measures memory; then measures sequential runs.
async fn instances_alive(
    runner: &PluginRunner,
    noop: &level_host::engine::LoadedPlugin,
    client: &LevelClient,
    alive: usize,
) -> (u64, f64) {
    // Memory: instances of the noop plugin held at once, through the same path a run takes.
    let before = rss_bytes();
    let held = runner
        .instantiate_many(noop, client, alive)
        .await
        .expect("instances");
    let per = rss_bytes().saturating_sub(before) / alive as u64;
    drop(held);
    let start = Instant::now();
    for _ in 0..alive {
        runner
            .run(noop, client.clone(), RunRequest::manual("{}"))
            .await
            .expect("run");
    }
    (per, alive as f64 / start.elapsed().as_secs_f64())
}
