//! `serve` on several machines: a history in PostgreSQL that replicas share.
//! Needs a PostgreSQL server: `LEVELHOST_TEST_POSTGRES` names one
//! (`postgres://postgres@127.0.0.1:5433/postgres`; `.ci/run` starts one).
//! Without it these tests say so and pass without running.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use levelhost_runtime::runner::RunReport;
use levelhost_serve::Origin;
use levelhost_serve::history::{Claim, Decided, History, HistoryLocation};

/// A fresh database on the test server, or `None` (and why) without one.
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

async fn database() -> Option<String> {
    let Some(admin) = std::env::var("LEVELHOST_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "skipped: LEVELHOST_TEST_POSTGRES is not set (.ci/run starts a PostgreSQL server and sets it)"
        );
        return None;
    };
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("levelhost_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{name}"))
}

fn connect(url: &str) -> History {
    History::connect(&HistoryLocation::Postgres {
        url: url.to_owned(),
        password: None,
    })
    .unwrap()
}

fn report(id: &str) -> RunReport {
    RunReport {
        run_id: id.to_owned(),
        plugin: "p".to_owned(),
        digest: "sha256:x".to_owned(),
        outcome: Ok(serde_json::json!({})),
        logs: Vec::new(),
        stdout: String::new(),
        stderr: String::new(),
        api_calls: 1,
        writes: 1,
        plan: Vec::new(),
        devices_changed: 1,
        divergence: Vec::new(),
        unapplied: Vec::new(),
        audit: Vec::new(),
        duration: Duration::from_millis(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_claim_decide_and_reap_once() {
    let Some(url) = database().await else { return };
    let (a, b) = (Arc::new(connect(&url)), Arc::new(connect(&url)));
    assert_ne!(a.replica(), b.replica());
    assert_eq!(a.integrity_check().unwrap(), "ok");

    // 32 deliveries of 8 events, half through each replica: 8 runs start.
    let claims: Vec<Claim> = tokio::task::spawn_blocking({
        let (a, b) = (a.clone(), b.clone());
        move || {
            let threads: Vec<_> = (0..32)
                .map(|i| {
                    let history = if i % 2 == 0 { a.clone() } else { b.clone() };
                    std::thread::spawn(move || {
                        let origin = Origin::Event {
                            event_id: format!("evt-{}", i % 8),
                            event_type: "alert_active".to_owned(),
                        };
                        history
                            .claim_delivery(&format!("run-{i}"), "p", "1.0.0", "sha256:x", &origin)
                            .unwrap()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        }
    })
    .await
    .unwrap();
    assert_eq!(claims.iter().filter(|c| **c == Claim::Started).count(), 8);
    assert_eq!(b.deliveries("p").unwrap().len(), 32);
    assert_eq!(a.list(Some("p"), None, 100).unwrap().len(), 8);

    // A schedule's planned time starts once, whichever replica asks.
    let planned = Origin::Schedule {
        schedule: "0:* * * * * *".to_owned(),
        planned: "2026-12-02T10:00:00.000Z".to_owned(),
    };
    assert_eq!(
        a.claim("s1", "p", "1", "d", &planned).unwrap(),
        Claim::Started
    );
    assert_eq!(
        b.claim("s2", "p", "1", "d", &planned).unwrap(),
        Claim::AlreadyClaimed
    );
    assert_eq!(
        b.last_planned("p", "0:* * * * * *").unwrap().as_deref(),
        Some("2026-12-02T10:00:00.000Z")
    );

    // A plan waits; two people approve at once through two replicas: one decision.
    a.claim("w1", "p", "1", "d", &Origin::Manual).unwrap();
    a.await_approval(
        "w1",
        &report("w1"),
        &serde_json::json!({"days": 30}),
        &["37 devices".to_owned()],
        "2999-01-01T00:00:00.000Z",
    )
    .unwrap();
    assert_eq!(b.get("w1").unwrap().unwrap().status, "awaiting-approval");
    assert_eq!(
        a.decide("w1", true, "alice", Some("ok")).unwrap(),
        Decided::Done
    );
    assert_eq!(
        b.decide("w1", true, "bob", None).unwrap(),
        Decided::NotWaiting("approved".to_owned())
    );
    let taken = [
        a.start_approved("w1").unwrap(),
        b.start_approved("w1").unwrap(),
    ];
    assert_eq!(
        taken.iter().filter(|t| t.is_some()).count(),
        1,
        "applied once"
    );
    let row = b.get("w1").unwrap().unwrap();
    assert_eq!(row.approval.unwrap().decided_by.as_deref(), Some("alice"));
    assert_eq!(row.input, Some(serde_json::json!({"days": 30})));

    // A plugin's lease: one holder at a time, until given back or expired.
    let lease = Duration::from_secs(2);
    assert!(a.take_lease("p", "run-a", lease).unwrap());
    assert!(
        !b.take_lease("p", "run-b", lease).unwrap(),
        "held by another replica"
    );
    a.release_lease("p", "run-a").unwrap();
    assert!(b.take_lease("p", "run-b", lease).unwrap(), "given back");

    // A replica that stops answering: after the lease, a survivor marks its run interrupted.
    let dead = connect(&url);
    dead.claim("r1", "p", "1", "d", &Origin::Manual).unwrap();
    drop(dead);
    assert_eq!(
        b.heartbeat(Duration::from_secs(2)).unwrap(),
        0,
        "within the lease"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(a.heartbeat(Duration::from_secs(2)).unwrap() >= 1);
    assert_eq!(b.get("r1").unwrap().unwrap().status, "interrupted");
    assert_eq!(
        b.get("s1").unwrap().unwrap().status,
        "running",
        "a live replica's run is left alone"
    );
}

/// Writes a config for one replica of a cluster on `url`.
fn replica_config(dir: &Path, name: &str, url: &str, sim: &str, addr: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[level]
base_url = "{sim}"

[serve]
addr = "{addr}"
database = "{name}.db"
shutdown_grace_secs = 1

[console]
enabled = false

[history]
url = "{url}"
lease_secs = 2

[trust]
allow_unsigned = true

[keys.rw]
source = "file:key.txt"
access = "read-write"

[plugins.tick]
component = "{echo}"
manifest = "echo.toml"
key = "rw"

[[plugins.tick.schedules]]
cron = "* * * * * *"

[plugins.slow]
component = "{hostile}"
manifest = "echo.toml"
key = "rw"
input = {{ attack = "loop" }}

[plugins.slow.limits]
timeout_secs = 60

[[plugins.slow.schedules]]
cron = "* * * * * *"
"#,
        echo = test_programs_artifacts::ECHO,
        hostile = test_programs_artifacts::HOSTILE,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_schedules_and_a_killed_replica_s_runs_end_interrupted() {
    let Some(url) = database().await else { return };
    let sim = level_sim::Simulator::start(
        level_sim::SimConfig {
            read_write_key: "cluster-key".to_owned(),
            ..level_sim::SimConfig::default()
        },
        level_sim::Simulator::seeded_with(5),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.txt"), "cluster-key").unwrap();
    std::fs::write(
        dir.path().join("echo.toml"),
        "name = \"echo\"\nversion = \"1.0.0\"\ncapabilities = []\n",
    )
    .unwrap();
    let start = |name: &str, addr: &str| {
        Command::new(env!("CARGO_BIN_EXE_levelhost"))
            .args(["serve", "--config"])
            .arg(replica_config(
                dir.path(),
                name,
                &url,
                &sim.base_url(),
                addr,
            ))
            .env_remove("LEVELHOST_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let addrs = [free_addr(), free_addr()];
    let mut replicas = [start("a", &addrs[0]), start("b", &addrs[1])];
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Kill -9 the replica running the slow plugin, found by its /healthz.
    let history = connect(&url);
    // A run the other replica claims and then skips (the lease is taken) is
    // `running` for a moment; a second run really going would stay so.
    let mut running = Vec::new();
    for _ in 0..30 {
        running = history
            .list(
                Some("slow"),
                Some(levelhost_serve::history::RunStatus::Running),
                10,
            )
            .unwrap();
        if running.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        running.len(),
        1,
        "the plugin's lease: one replica runs it at a time ({running:#?})"
    );
    let doomed = running[0].replica.clone().unwrap();
    let mut victim = None;
    for (i, addr) in addrs.iter().enumerate() {
        let health: serde_json::Value = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["database"], "ok");
        if health["replica"] == doomed.as_str() {
            victim = Some(i);
        }
    }
    let victim = victim.expect("the running run's replica is one of the two");
    replicas[victim].kill().unwrap(); // SIGKILL: no chance to record anything
    replicas[victim].wait().unwrap();
    let killed_at = level_api::clock::now();
    // Longer than the lease, so the survivor reaps, and the schedule keeps firing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let survivor = &mut replicas[1 - victim];
    let stopped = Command::new("kill")
        .args(["-TERM", &survivor.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(survivor.wait().unwrap().success());

    let ticks = history.list(Some("tick"), None, 1000).unwrap();
    let planned: Vec<&str> = ticks
        .iter()
        .filter_map(|r| r.planned_at.as_deref())
        .collect();
    let distinct: BTreeSet<&str> = planned.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        planned.len(),
        "no planned time started twice: {ticks:#?}"
    );
    assert!(
        ticks.iter().all(|r| r.replica.is_some()),
        "each run names its replica"
    );
    assert!(
        ticks
            .iter()
            .any(|r| r.planned_at.as_deref() > Some(killed_at.as_str())),
        "the schedule kept firing after a replica was killed"
    );
    let all = history.list(None, None, 1000).unwrap();
    let replicas: BTreeSet<&str> = all.iter().filter_map(|r| r.replica.as_deref()).collect();
    assert_eq!(replicas.len(), 2, "both replicas ran plugins: {all:#?}");
    assert!(
        all.iter().all(|r| r.status != "running"),
        "no run is left running: {all:#?}"
    );
    let slow = history.list(Some("slow"), None, 1000).unwrap();
    assert!(
        slow.iter().any(|r| r.status == "skipped"
            && r.error.as_deref() == Some("another replica was running the plugin")),
        "a replica skipped what another was running: {slow:#?}"
    );
    let survivors_runs = slow
        .iter()
        .filter(|r| r.replica.as_deref() != Some(doomed.as_str()) && r.status == "interrupted")
        .count();
    assert_eq!(
        survivors_runs, 1,
        "once the lease of the killed replica expired, the survivor ran the plugin (cut off at shutdown): {slow:#?}"
    );
    let cut = history.get(&running[0].id).unwrap().unwrap();
    assert_eq!(cut.status, "interrupted", "{cut:#?}");
    assert!(
        cut.error
            .as_deref()
            .is_some_and(|e| e.contains("stopped answering")),
        "the survivor marked the killed replica's run: {cut:#?}"
    );
}
