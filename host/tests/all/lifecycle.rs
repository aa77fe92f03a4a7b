//! One run lifecycle for every entry point (issue 22, point 2): `serve`'s
//! schedule, `levelhost run` and `levelhost apply`, each its own process
//! sharing one history, take the plugin's lease in the history before they
//! run it, so the plugin never runs twice at once. The oracle is when each
//! run of the plugin itself says it began and ended.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::free_addr;
use level_sim::Simulator;
use serde_json::Value;

const KEY: &str = "lifecycle-test-key";

/// A folder with a config whose plugin `slow` spins 1.5 s a run, every
/// second from `serve`'s schedule, under an approval policy that holds any
/// write; `history` is an extra `[history]` block (PostgreSQL) or empty (SQLite).
fn write_config(dir: &Path, sim: &Simulator, addr: &str, history: &str) {
    std::fs::write(
        dir.join("hostile.toml"),
        "name = \"slow\"\nversion = \"1.0.0\"\ncapabilities = [\"tags:write\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("key.txt"), KEY).unwrap();
    std::fs::write(
        dir.join("levelhost.toml"),
        format!(
            r#"[level]
base_url = "{base}"

[serve]
addr = "{addr}"
database = "runs.db"
shutdown_grace_secs = 5

[console]
enabled = false

[trust]
allow_unsigned = true

[keys.rw]
source = "file:key.txt"
access = "read-write"
{history}
[plugins.slow]
component = "{component}"
manifest = "hostile.toml"
key = "rw"
capabilities = ["tags:write"]
input = {{ attack = "spin", millis = 1500 }}

[plugins.slow.approval]
writes_over = 0

[[plugins.slow.schedules]]
cron = "* * * * * *"
overlap = "skip"
"#,
            base = sim.base_url(),
            component = test_programs_artifacts::HOSTILE,
        ),
    )
    .unwrap();
}

fn levelhost(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_levelhost"));
    command
        .args(args)
        .arg("--config")
        .arg(dir.join("levelhost.toml"))
        .env_remove("LEVELHOST_CONFIG")
        .env("NO_COLOR", "1");
    command
}

fn output(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// `serve` runs `slow` every second while `levelhost run` (twice) and
/// `levelhost apply` of the same plugin start at the same moment: each
/// waits for the plugin's lease or is recorded skipped, saying why, and no
/// two runs of the plugin overlap.
async fn no_entry_point_overlaps_another(history: &str) {
    let sim = crate::support::simulator(Simulator::seeded_with(5), |c| {
        c.read_write_key = KEY.to_owned();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = free_addr();
    write_config(d, &sim, &addr, history);

    // A plan that waits: the run by hand creates a tag, over `writes_over = 0`.
    let planned = levelhost(
        d,
        &[
            "run",
            "slow",
            "--input",
            r#"{"attack": "spin", "millis": 1500, "tag": "by-hand"}"#,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        planned.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&planned.stderr)
    );
    let run: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let run = run["run"].as_str().unwrap().to_owned();

    let mut serve = levelhost(d, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_up(&addr).await;
    // Let the schedule get going, then approve the plan (serve's approvals
    // loop reaches for it too) and start the others at the same moment.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        levelhost(d, &["approve", &run])
            .output()
            .unwrap()
            .status
            .success()
    );
    let piped = |args: &[&str]| {
        levelhost(d, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let by_hand = piped(&["run", "slow"]);
    let applied = piped(&["apply", &run]);
    let again = piped(&["run", "slow"]);
    let outcomes: Vec<Output> = [by_hand, applied, again].into_iter().map(output).collect();
    for (i, out) in outcomes.iter().enumerate() {
        let said = String::from_utf8_lossy(&out.stderr);
        // serve's approvals loop may have applied the plan first: then apply says so.
        let applied_by_serve =
            i == 1 && said.contains("only an approved plan is applied, and only once");
        assert!(out.status.success() || applied_by_serve, "{said}");
    }
    assert!(
        outcomes.iter().any(|o| String::from_utf8_lossy(&o.stderr)
            .contains("waiting: another run of the plugin is going")),
        "at least one waited for the plugin's lease"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    crate::support::stop(&mut serve, "TERM");

    let runs = levelhost(d, &["runs", "--plugin", "slow", "--json"])
        .output()
        .unwrap();
    let runs: Vec<Value> = serde_json::from_slice(&runs.stdout).unwrap();
    let mut spans: Vec<(u64, u64, String)> = runs
        .iter()
        .filter(|r| r["status"] == "ok")
        .filter_map(|r| {
            let output: Value = serde_json::from_str(r["output"].as_str()?).ok()?;
            Some((
                output["began_ms"].as_u64()?,
                output["ended_ms"].as_u64()?,
                format!("{} ({})", r["id"], r["trigger"]),
            ))
        })
        .collect();
    spans.sort();
    let triggers: Vec<&str> = runs.iter().filter_map(|r| r["trigger"].as_str()).collect();
    assert!(
        triggers.contains(&"schedule") && triggers.iter().filter(|t| **t == "manual").count() >= 3,
        "{runs:#?}"
    );
    assert!(
        spans.len() >= 4,
        "the schedule's runs, two by hand and the applied plan: {runs:#?}"
    );
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "{} ran until {} but {} began at {}",
            pair[0].2,
            pair[0].1,
            pair[1].2,
            pair[1].0
        );
    }
    let applied = runs.iter().find(|r| r["id"] == run.as_str()).unwrap();
    assert_eq!(applied["status"], "ok", "{applied:#}");
    assert_eq!(
        sim.tenant()
            .to_fixture()
            .tags
            .iter()
            .filter(|t| t.name == "by-hand")
            .count(),
        1,
        "the approved plan was applied once"
    );
    for skipped in runs.iter().filter(|r| r["status"] == "skipped") {
        assert!(
            skipped["error"].as_str().is_some_and(|e| {
                e.contains("another run of the plugin was going")
                    || e.contains("the previous run was still running")
                    || e.contains("still waits for approval")
            }),
            "{skipped:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_entry_point_overlaps_another_on_sqlite() {
    no_entry_point_overlaps_another("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_entry_point_overlaps_another_on_postgresql() {
    let Some(url) = crate::cluster::database().await else {
        return;
    };
    no_entry_point_overlaps_another(&format!("\n[history]\nurl = \"{url}\"\n")).await;
}
