//! B14: cost as work grows. The stale-device job at 1k, 10k and 100k
//! devices as `levelhost run` and as the Python script (wall time, peak
//! RSS, Level requests), and `levelhost serve` with 1, 100 and 1,000 plugins
//! loaded (start-up time, resident memory), each drawn as a chart.

mod chart;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use level_sim::{SimConfig, Simulator};

pub use chart::Series;

/// One run of the stale-device job as a command.
pub struct JobRun {
    pub elapsed: Duration,
    /// The command's peak resident memory (its `ru_maxrss`).
    pub peak_rss: u64,
    /// Requests the simulator received.
    pub requests: u64,
    /// Devices tagged.
    pub tagged: usize,
}

/// Runs the stale-device job once on a fresh simulator with `devices`
/// devices (rate limit off): `levelhost run` with the plugin, or the Python
/// script. `dir` holds the config and the compile cache between runs.
pub async fn stale_job(dir: &Path, devices: usize, with_plugin: bool) -> JobRun {
    let sim = Simulator::start(
        SimConfig {
            rate_limit: None,
            ..SimConfig::default()
        },
        Simulator::seeded_with(devices),
    )
    .await
    .expect("sim");
    let mut command = if with_plugin {
        std::fs::write(
            dir.join("levelhost.toml"),
            format!(
                "[level]\nbase_url = \"{}\"\n[audit]\npath = \"audit.jsonl\"\n[serve]\ndatabase = \"runs.db\"\n[trust]\nallow_unsigned = true\n[keys.rw]\nsource = \"env:B6_KEY\"\naccess = \"read-write\"\nrate_limit_per_minute = 0\n[plugins.stale-tagger]\ncomponent = \"{}\"\nmanifest = \"{}\"\nkey = \"rw\"\ncapabilities = [\"devices:read\", \"tags:read\", \"tags:write\"]\nlimits = {{ max_api_calls = 1000000, max_writes = 1000000, max_devices_changed = 1000000, max_output_kb = 65536, timeout_secs = 600 }}\n",
                sim.base_url(),
                test_programs_artifacts::STALE_DEVICE_TAGGER,
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../plugins/stale-device-tagger/plugin.toml")
                    .display()
            ),
        )
        .expect("config");
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_levelhost"));
        c.args(["run", "stale-tagger", "--input", r#"{"days": 14}"#])
            .env("B6_KEY", sim.read_write_key())
            .env("LEVELHOST_CACHE_DIR", dir.join("cache"))
            .env("LEVELHOST_LOG", "error");
        c
    } else {
        let mut c = std::process::Command::new("python3");
        c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/stale_tagger.py"))
            .arg(sim.base_url())
            .arg(sim.read_write_key())
            .args(["14", "stale"]);
        c
    };
    command.current_dir(dir);
    let before = sim.received_count();
    // The simulator runs on this process's runtime: wait for the command off it.
    let (elapsed, peak_rss, ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_measured(command))
            .await
            .expect("join");
    let requests = sim.received_count() - before;
    assert!(
        ok,
        "the stale-device job ({}) failed: {}",
        if with_plugin {
            "plugin"
        } else {
            "script (needs python3 -m pip install requests)"
        },
        String::from_utf8_lossy(&stderr)
    );
    let output: serde_json::Value = serde_json::from_slice(&stdout).expect("JSON output");
    sim.stop().await;
    JobRun {
        elapsed,
        peak_rss,
        requests: requests as u64,
        tagged: output["tagged"].as_array().map_or(0, Vec::len),
    }
}

/// Runs `command` to its end under `measure.py`: its wall time, its peak
/// RSS, whether it succeeded, its stdout and stderr.
fn run_measured(command: std::process::Command) -> (Duration, u64, bool, Vec<u8>, Vec<u8>) {
    let mut measured = std::process::Command::new("python3");
    measured
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/measure.py"))
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => measured.env(key, value),
            None => measured.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        measured.current_dir(dir);
    }
    let out = measured.output().expect("the command starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let figures: serde_json::Value = stderr
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("measure.py's figures");
    (
        Duration::from_secs_f64(figures["seconds"].as_f64().expect("seconds")),
        figures["max_rss_kib"].as_u64().expect("max_rss_kib") * 1024,
        out.status.success(),
        out.stdout,
        out.stderr,
    )
}

/// One size of the job: the median run of each side.
struct JobSize {
    devices: usize,
    plugin: JobRun,
    script: JobRun,
}

/// One size of `serve`: start-up to a healthy `/healthz`, and resident memory then.
struct ServeSize {
    plugins: usize,
    startup: Duration,
    rss: u64,
}

/// The rows and the two charts (written to `charts` in full mode).
pub async fn b14(quick: bool, charts: Option<&Path>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let sizes: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let rounds = if quick { 1 } else { 3 };
    // Warm the compile cache once.
    stale_job(dir.path(), 100, true).await;
    let mut jobs = Vec::new();
    for &devices in sizes {
        let mut plugin = Vec::new();
        let mut script = Vec::new();
        for _ in 0..rounds {
            plugin.push(stale_job(dir.path(), devices, true).await);
            script.push(stale_job(dir.path(), devices, false).await);
        }
        let median = |mut runs: Vec<JobRun>| {
            runs.sort_by_key(|r| r.elapsed);
            runs.swap_remove(runs.len() / 2)
        };
        let (plugin, script) = (median(plugin), median(script));
        assert_eq!(
            plugin.tagged, script.tagged,
            "the plugin and the script tag the same devices at {devices}"
        );
        jobs.push(JobSize {
            devices,
            plugin,
            script,
        });
    }
    let counts: &[usize] = if quick { &[1, 100] } else { &[1, 100, 1000] };
    // Warm the compile cache for serve too, so no row pays for a compile.
    serve_size(dir.path(), 1).await;
    let mut serves = Vec::new();
    for &plugins in counts {
        serves.push(serve_size(dir.path(), plugins).await);
    }

    let mut rows = String::new();
    for job in &jobs {
        let _ = writeln!(
            rows,
            "| B14 | the stale-device job on {} devices ({} tagged): wall time; peak RSS; Level requests | {}; {:.1} MiB; {} | the Python script: {}; {:.1} MiB; {} | {:.2}x the script's time, {:.2}x its memory |",
            thousands(job.devices),
            job.plugin.tagged,
            super::ms(job.plugin.elapsed),
            mib(job.plugin.peak_rss),
            job.plugin.requests,
            super::ms(job.script.elapsed),
            mib(job.script.peak_rss),
            job.script.requests,
            job.plugin.elapsed.as_secs_f64() / job.script.elapsed.as_secs_f64(),
            job.plugin.peak_rss as f64 / job.script.peak_rss as f64,
        );
    }
    let first = &jobs[0];
    let last = &jobs[jobs.len() - 1];
    let growth = last.devices as f64 / first.devices as f64;
    let _ = writeln!(
        rows,
        "| B14 | growth of the job from {} to {} devices ({growth:.0}x the work) | time {:.1}x, memory {:.2}x | the script: time {:.1}x, memory {:.2}x | |",
        thousands(first.devices),
        thousands(last.devices),
        last.plugin.elapsed.as_secs_f64() / first.plugin.elapsed.as_secs_f64(),
        last.plugin.peak_rss as f64 / first.plugin.peak_rss as f64,
        last.script.elapsed.as_secs_f64() / first.script.elapsed.as_secs_f64(),
        last.script.peak_rss as f64 / first.script.peak_rss as f64,
    );
    let one = &serves[0];
    for serve in &serves[1..] {
        let _ = writeln!(
            rows,
            "| B14 | `levelhost serve` with {} plugins loaded: start-up to healthy; resident memory | {}; {:.1} MiB | 1 plugin: {}; {:.1} MiB | {:+.2} ms and {:+.0} KiB per plugin |",
            serve.plugins,
            super::ms(serve.startup),
            mib(serve.rss),
            super::ms(one.startup),
            mib(one.rss),
            (serve.startup.as_secs_f64() - one.startup.as_secs_f64()) * 1e3
                / (serve.plugins - 1) as f64,
            (serve.rss as f64 - one.rss as f64) / 1024.0 / (serve.plugins - 1) as f64,
        );
    }
    if let Some(charts) = charts {
        std::fs::create_dir_all(charts).expect("charts folder");
        // One chart of a measure of each run, `levelhost run` and the script side by side.
        let job_chart =
            |file: &str, title: &str, y_label: &str, measure: &dyn Fn(&JobRun) -> f64| {
                let points = |side: &dyn Fn(&JobSize) -> &JobRun| -> Vec<(f64, f64)> {
                    jobs.iter()
                        .map(|j| (j.devices as f64, measure(side(j))))
                        .collect()
                };
                let svg = chart::line_chart(
                    title,
                    "devices",
                    y_label,
                    &[
                        Series {
                            name: "levelhost run",
                            points: points(&|j| &j.plugin),
                        },
                        Series {
                            name: "Python script",
                            points: points(&|j| &j.script),
                        },
                    ],
                );
                std::fs::write(charts.join(file), svg).expect("chart");
            };
        job_chart(
            "b14-job.svg",
            "B14: the stale-device job as the organisation grows",
            "wall time (s)",
            &|run| run.elapsed.as_secs_f64(),
        );
        job_chart(
            "b14-job-memory.svg",
            "B14: the stale-device job's peak memory",
            "peak RSS (MiB)",
            &|run| mib(run.peak_rss),
        );
        let serve = chart::line_chart(
            "B14: levelhost serve as plugins are added",
            "plugins loaded",
            "start-up (s) / resident memory (GiB)",
            &[
                Series {
                    name: "start-up to healthy (s)",
                    points: serves
                        .iter()
                        .map(|s| (s.plugins as f64, s.startup.as_secs_f64()))
                        .collect(),
                },
                Series {
                    name: "resident memory (GiB)",
                    points: serves
                        .iter()
                        .map(|s| (s.plugins as f64, s.rss as f64 / (1u64 << 30) as f64))
                        .collect(),
                },
            ],
        );
        std::fs::write(charts.join("b14-serve.svg"), serve).expect("chart");
    }
    rows
}

/// Starts `levelhost serve` with `plugins` noop plugins (each its own
/// entry, on a daily schedule) and measures start-up and resident memory.
async fn serve_size(dir: &Path, plugins: usize) -> ServeSize {
    let addr = super::free_addr();
    std::fs::write(
        dir.join("noop.toml"),
        "name = \"noop\"\nversion = \"0.1.0\"\n",
    )
    .expect("manifest");
    std::fs::write(dir.join("serve-key.txt"), "unused-key").expect("key");
    let mut config = format!(
        "[level]\nbase_url = \"http://127.0.0.1:9\"\n[serve]\naddr = \"{addr}\"\ndatabase = \"serve-{plugins}.db\"\n[audit]\npath = \"serve-{plugins}.jsonl\"\n[console]\nenabled = false\n[trust]\nallow_unsigned = true\n[keys.rw]\nsource = \"file:serve-key.txt\"\naccess = \"read-write\"\n"
    );
    for i in 0..plugins {
        let _ = write!(
            config,
            "[plugins.p{i}]\ncomponent = \"{}\"\nmanifest = \"noop.toml\"\nkey = \"rw\"\n[[plugins.p{i}.schedules]]\ncron = \"0 3 * * *\"\n",
            test_programs_artifacts::NOOP,
        );
    }
    let path = dir.join(format!("serve-{plugins}.toml"));
    std::fs::write(&path, config).expect("config");
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["serve", "--config"])
        .arg(&path)
        .current_dir(dir)
        .env("LEVELHOST_CACHE_DIR", dir.join("cache"))
        .env("LEVELHOST_LOG", "error")
        .env_remove("LEVELHOST_CONFIG")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("levelhost serve starts");
    super::wait_healthy(&http, &addr, Duration::from_secs(300)).await;
    let startup = start.elapsed();
    // Settled: the schedules are waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = super::rss_of(&child.id().to_string()).expect("the replica's resident memory");
    super::terminate(&child);
    let _ = child.wait();
    ServeSize {
        plugins,
        startup,
        rss,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn thousands(n: usize) -> String {
    match n {
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}
