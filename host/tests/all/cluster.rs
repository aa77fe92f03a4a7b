//! `serve` on several machines: a history in PostgreSQL that replicas share.
//! (The history's own contract, on both databases, is tested with its crate:
//! `crates/serve/tests/history.rs`.)
//! Needs a PostgreSQL server: `LEVELHOST_TEST_POSTGRES` names one
//! (`postgres://postgres@127.0.0.1:5433/postgres`; `.ci/run` starts one).
//! Without it these tests say so and pass without running.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use levelhost_serve::Origin;
use levelhost_serve::history::{History, HistoryLocation};

use crate::support::free_addr;
use crate::support::wait_up;

/// A fresh database on the test server, or `None` (and why) without one.
pub(crate) async fn database() -> Option<String> {
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

/// The history in the PostgreSQL database `url`, as a replica sees it.
async fn connect(url: &str) -> History {
    History::connect(&HistoryLocation::Postgres {
        url: url.to_owned(),
        password: None,
    })
    .await
    .unwrap()
}

/// One replica's config: a cluster on database `url`, Level at `sim`, the
/// key `rw` (its `[keys.rw]` lines after `access`: `key`), and `plugins`.
struct ReplicaConfig<'a> {
    url: &'a str,
    sim: &'a str,
    lease_secs: u64,
    key: &'a str,
    plugins: &'a str,
}

impl ReplicaConfig<'_> {
    /// Writes replica `name`'s config, listening on `addr`, in `dir`.
    fn write(&self, dir: &Path, name: &str, addr: &str) -> std::path::PathBuf {
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
lease_secs = {lease}

[trust]
allow_unsigned = true

[keys.rw]
source = "file:key.txt"
access = "read-write"
{key}

{plugins}"#,
            sim = self.sim,
            url = self.url,
            lease = self.lease_secs,
            key = self.key,
            plugins = self.plugins,
        )
        .replace("@ECHO@", test_programs_artifacts::ECHO)
        .replace("@HOSTILE@", test_programs_artifacts::HOSTILE)
        .replace("@REPORT@", test_programs_artifacts::DEVICE_REPORT);
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A per-second echo plugin, and a per-second plugin that runs until its time limit.
const TICK_AND_SLOW: &str = r#"[plugins.tick]
component = "@ECHO@"
manifest = "echo.toml"
key = "rw"

[[plugins.tick.schedules]]
cron = "* * * * * *"
catch_up = "once"

[plugins.slow]
component = "@HOSTILE@"
manifest = "echo.toml"
key = "rw"
input = { attack = "loop" }

[plugins.slow.limits]
timeout_secs = 120

[[plugins.slow.schedules]]
cron = "* * * * * *"
"#;

/// A folder with the key and the echo manifest the replicas' configs name.
fn cluster_dir(key: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.txt"), key).unwrap();
    std::fs::write(
        dir.path().join("echo.toml"),
        "name = \"echo\"\nversion = \"1.0.0\"\ncapabilities = []\n",
    )
    .unwrap();
    dir
}

/// Starts `serve` with `config`, its log appended to `log`.
fn start_serve(config: &Path, log: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("LEVELHOST_CONFIG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Stops every replica with SIGTERM; each exits cleanly.
fn stop_all(replicas: &mut [std::process::Child]) {
    for replica in replicas.iter() {
        crate::support::signal(replica, "TERM");
    }
    for replica in replicas.iter_mut() {
        assert!(replica.wait().unwrap().success());
    }
}

fn seconds_between(from: &str, to: &str) -> f64 {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    (at(to) - at(from)).as_seconds_f64()
}

/// The acceptance test of a cluster: three replicas on one database, three
/// per-second plugins on one rate-limited key, a long-running plugin,
/// webhook deliveries spread over the replicas (each event to two of them),
/// and the replica running the long plugin killed with SIGKILL in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_in_a_loop_start_nothing_twice_and_stay_within_the_rate_limit() {
    const LEASE_SECS: u64 = 3;
    const SECRET: &str = "cluster-webhook-secret";
    let Some(url) = database().await else { return };
    // Level allows this key 6 requests a second; the config allows 5 for all replicas together.
    let sim = level_sim::Simulator::start(
        level_sim::SimConfig {
            read_write_key: "cluster-key".to_owned(),
            rate_limit: Some(level_sim::RateLimit {
                requests: 6,
                per: Duration::from_secs(1),
            }),
            ..level_sim::SimConfig::default()
        },
        level_sim::Simulator::seeded_with(120),
    )
    .await
    .unwrap();
    let dir = cluster_dir("cluster-key");
    std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
    let report_manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/device-report/plugin.toml");
    let mut plugins = format!(
        "{TICK_AND_SLOW}\n[plugins.ten]\ncomponent = \"@ECHO@\"\nmanifest = \"echo.toml\"\nkey = \"rw\"\n\n[[plugins.ten.schedules]]\ncron = \"*/10 * * * * *\"\ncatch_up = \"once\"\n\n[plugins.alerts]\ncomponent = \"@ECHO@\"\nmanifest = \"echo.toml\"\nkey = \"rw\"\n\n[plugins.alerts.events]\nsecret = \"file:secret.txt\"\ntypes = [\"alert_active\"]\n\n"
    );
    for name in ["report-a", "report-b", "report-c"] {
        // Each run makes 4 Level calls: three a second want 12 calls a second of a key that allows 5.
        plugins.push_str(&format!(
            "[plugins.{name}]\ncomponent = \"@REPORT@\"\nmanifest = \"{manifest}\"\nkey = \"rw\"\ncapabilities = [\"devices:read\", \"groups:read\"]\n\n[[plugins.{name}.schedules]]\ncron = \"* * * * * *\"\n\n",
            manifest = report_manifest.display(),
        ));
    }
    let sim_url = sim.base_url();
    let cluster = ReplicaConfig {
        url: &url,
        sim: &sim_url,
        lease_secs: LEASE_SECS,
        key: "rate_limit_per_minute = 300\nrate_burst = 5",
        plugins: &plugins,
    };
    let addrs = [free_addr(), free_addr(), free_addr()];
    let configs: Vec<std::path::PathBuf> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| cluster.write(dir.path(), &format!("replica-{i}"), addr))
        .collect();
    let start = |i: usize| start_serve(&configs[i], &dir.path().join(format!("replica-{i}.log")));
    let mut replicas: Vec<std::process::Child> = (0..3).map(start).collect();
    for addr in &addrs {
        assert_eq!(wait_up(addr).await["database"], "ok");
    }

    // Webhook deliveries, each event to two replicas, while replicas are killed.
    let delivering = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let deliveries = tokio::spawn({
        let (addrs, delivering) = (addrs.clone(), delivering.clone());
        async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut accepted = BTreeSet::new();
            let mut n = 0usize;
            while delivering.load(std::sync::atomic::Ordering::SeqCst) {
                let event = format!("evt-{n}");
                let body = serde_json::json!({"event_type": "alert_active", "event_id": event})
                    .to_string();
                let signature = level_api::webhook::sign(SECRET.as_bytes(), body.as_bytes());
                for addr in [&addrs[n % 3], &addrs[(n + 1) % 3]] {
                    let sent = http
                        .post(format!("http://{addr}/hooks/alerts"))
                        .header("X-Level-Signature", &signature)
                        .body(body.clone())
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        accepted.insert(event.clone());
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            (n, accepted)
        }
    });

    // Kill -9 the replica running the long plugin, again and again, for about
    // three minutes (a round is some 12 s); bring it back each time.
    let history = connect(&url).await;
    let mut kills = Vec::new();
    for _round in 0..15 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut holder = None;
        for _ in 0..100 {
            let running = history
                .list(
                    Some("slow"),
                    Some(levelhost_serve::history::RunStatus::Running),
                    10,
                )
                .await
                .unwrap();
            if let [run] = running.as_slice() {
                holder = run.replica.clone();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let holder = holder.expect("one replica runs the long plugin");
        let mut victim = None;
        for (i, addr) in addrs.iter().enumerate() {
            if reqwest::get(format!("http://{addr}/healthz"))
                .await
                .ok()
                .map(|r| r.status().is_success())
                == Some(true)
                && wait_up(addr).await["replica"] == holder.as_str()
            {
                victim = Some(i);
            }
        }
        let victim = victim.expect("the holder is one of the replicas");
        replicas[victim].kill().unwrap();
        replicas[victim].wait().unwrap();
        kills.push((holder, level_api::clock::now()));
        tokio::time::sleep(Duration::from_secs(LEASE_SECS + 2)).await;
        replicas[victim] = start(victim);
        wait_up(&addrs[victim]).await;
    }
    delivering.store(false, std::sync::atomic::Ordering::SeqCst);
    let (sent, accepted) = deliveries.await.unwrap();

    // A full-cluster outage across a mark of the every-10-seconds schedule,
    // then all three start together: the missed mark is caught up once.
    while chrono::Utc::now().timestamp() % 10 != 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_all(&mut replicas);
    let down_at = level_api::clock::now();
    let mark = (chrono::Utc::now().timestamp() / 10 + 1) * 10;
    let mark = chrono::DateTime::from_timestamp(mark, 0).unwrap();
    let missed = mark.format("%Y-%m-%dT%H:%M:%S.000Z").to_string();
    assert!(
        down_at < missed,
        "the cluster stopped before the mark it is to miss"
    );
    let restart_at = mark + chrono::Duration::milliseconds(1500);
    tokio::time::sleep((restart_at - chrono::Utc::now()).to_std().unwrap()).await;
    let mut replicas: Vec<std::process::Child> = (0..3).map(start).collect();
    for addr in &addrs {
        wait_up(addr).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_all(&mut replicas);

    let logs = || {
        (0..3)
            .map(|i| {
                std::fs::read_to_string(dir.path().join(format!("replica-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let all = history.list(None, None, 100_000).await.unwrap();
    assert!(
        all.iter().all(|r| r.status != "running"),
        "no run is left running: {:#?}",
        all.iter()
            .filter(|r| r.status == "running")
            .collect::<Vec<_>>()
    );
    // Each run names its replica; all three ran plugins; one ran the long plugin at a time.
    assert!(
        all.iter().all(|r| r.replica.is_some()),
        "each run names its replica"
    );
    let ran: BTreeSet<&str> = all.iter().filter_map(|r| r.replica.as_deref()).collect();
    assert!(ran.len() >= 3, "every replica ran plugins: {ran:?}");
    assert!(
        all.iter().any(|r| r.plugin == "slow"
            && r.status == "skipped"
            && r.error.as_deref() == Some(levelhost_serve::executor::ANOTHER_RUN_GOING)),
        "a replica skipped what another was running"
    );
    // 0 duplicate (plugin, schedule, planned) starts.
    let mut planned = BTreeSet::new();
    for run in all.iter().filter(|r| r.planned_at.is_some()) {
        assert!(
            planned.insert((&run.plugin, &run.schedule, &run.planned_at)),
            "planned twice: {run:#?}"
        );
    }
    // 0 duplicate event runs, and every accepted event ran.
    let events: Vec<&str> = all
        .iter()
        .filter(|r| r.plugin == "alerts")
        .filter_map(|r| r.event_id.as_deref())
        .collect();
    let distinct: BTreeSet<&str> = events.iter().copied().collect();
    assert_eq!(distinct.len(), events.len(), "an event ran twice");
    assert!(sent > 50, "deliveries were made: {sent}");
    for event in &accepted {
        assert!(
            distinct.contains(event.as_str()),
            "{event} was accepted and never ran"
        );
    }
    // 0 schedules that stopped firing: the tick never went 5 s without a run
    // while the cluster was up.
    let mut ticks: Vec<&str> = all
        .iter()
        .filter(|r| r.plugin == "tick" && r.planned_at.as_deref() < Some(down_at.as_str()))
        .filter_map(|r| r.planned_at.as_deref())
        .collect();
    ticks.sort_unstable();
    let longest = ticks
        .windows(2)
        .map(|w| seconds_between(w[0], w[1]))
        .fold(0.0, f64::max);
    assert!(
        longest <= 5.0,
        "the tick went {longest} s without a run\n{}",
        logs()
    );
    // Catch-up after the full outage: the missed mark ran once, not once per replica.
    let caught_up: Vec<&levelhost_serve::history::RunRow> = all
        .iter()
        .filter(|r| r.plugin == "ten" && r.planned_at.as_deref() == Some(missed.as_str()))
        .collect();
    assert_eq!(
        caught_up.len(),
        1,
        "the mark missed at {missed} caught up once: {caught_up:#?}\n{}",
        logs()
    );
    // Every run of a killed replica ended `interrupted` within the lease (and a heartbeat).
    for (replica, killed_at) in &kills {
        let cut: Vec<&levelhost_serve::history::RunRow> = all
            .iter()
            .filter(|r| r.replica.as_deref() == Some(replica.as_str()) && r.status == "interrupted")
            .collect();
        assert!(!cut.is_empty(), "{replica} had its long run cut off");
        for run in cut {
            assert!(
                run.error
                    .as_deref()
                    .is_some_and(|e| e.contains("stopped answering")),
                "a survivor marked the killed replica's run: {run:#?}"
            );
            let after = seconds_between(killed_at, run.ended_at.as_deref().unwrap());
            assert!(
                after <= LEASE_SECS as f64 + 1.5,
                "marked interrupted {after} s after the kill, lease {LEASE_SECS} s: {run:#?}"
            );
        }
    }
    // The audit is in the database: one replica's `levelhost audit` shows the calls of every replica's runs.
    let audit = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["audit", "--json", "--config"])
        .arg(&configs[0])
        .env_remove("LEVELHOST_CONFIG")
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    let replica_of: std::collections::BTreeMap<&str, &str> = all
        .iter()
        .filter_map(|r| Some((r.id.as_str(), r.replica.as_deref()?)))
        .collect();
    let audited: BTreeSet<&str> = std::str::from_utf8(&audit.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|record| replica_of.get(record["run_id"].as_str()?).copied())
        .collect();
    assert!(
        audited.len() >= 3,
        "the audit holds the calls of every replica's runs: {audited:?}"
    );
    assert!(
        !dir.path().join("levelhost-audit.jsonl").exists(),
        "no replica wrote an audit file"
    );
    // `status` shows the replicas.
    let status = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["status", "--config"])
        .arg(&configs[1])
        .env_remove("LEVELHOST_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("LAST REPLICA") && status.contains("REPLICA  "),
        "{status}"
    );
    for replica in &ran {
        assert!(status.contains(replica), "{replica} in status:\n{status}");
    }
    // The key's rate limit: never exceeded, though the replicas wanted more than twice as much.
    let reports = all
        .iter()
        .filter(|r| r.plugin.starts_with("report-") && r.status == "ok")
        .count();
    assert!(reports >= 10, "reports ran: {reports}\n{}", logs());
    assert_eq!(
        sim.rate_limited_count(),
        0,
        "Level answered 429: the replicas together exceeded the key's limit\n{}",
        logs()
    );
}

/// `serve` starting while `levelhost status` or `levelhost run` opens the
/// same new SQLite history: every one of them opens it (none fails with
/// "duplicate column" or "database is locked") and finds the whole schema.
#[test]
fn handles_opening_a_new_sqlite_history_at_the_same_moment_all_get_the_whole_schema() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        let start = Arc::new(std::sync::Barrier::new(4));
        let openers: Vec<_> = (0..4)
            .map(|n| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let history = History::open(&path).map_err(|e| format!("{e:?}"))?;
                    let id = format!("run-{round}-{n}");
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        history
                            .claim(&id, "echo", "1.0.0", "sha256:0", &Origin::Manual)
                            .await
                            .map_err(|e| format!("{e:?}"))?;
                        history
                            .get(&id)
                            .await
                            .map_err(|e| format!("{e:?}"))?
                            .map(|run| run.status)
                            .ok_or_else(|| format!("{id} was not recorded"))
                    })
                })
            })
            .collect();
        for opener in openers {
            let status = opener.join().unwrap();
            assert_eq!(status.as_deref(), Ok("running"), "round {round}");
        }
    }
}

/// Sharded claims: with three replicas up and none joining or leaving, each
/// schedule's planned times are all claimed (and run) by one replica, its
/// owner, and the schedules are spread over the replicas; then one replica
/// stops and its schedules go on at the others with no planned time missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_schedule_is_claimed_by_one_replica_and_taken_over_when_it_stops() {
    const LEASE_SECS: u64 = 2;
    let Some(url) = database().await else { return };
    let sim = level_sim::Simulator::start(
        level_sim::SimConfig {
            read_write_key: "shard-key".to_owned(),
            ..level_sim::SimConfig::default()
        },
        level_sim::Simulator::seeded_with(10),
    )
    .await
    .unwrap();
    let dir = cluster_dir("shard-key");
    let mut plugins = String::new();
    for i in 0..12 {
        plugins.push_str(&format!(
            "[plugins.tick{i}]\ncomponent = \"@ECHO@\"\nmanifest = \"echo.toml\"\nkey = \"rw\"\n\n[[plugins.tick{i}.schedules]]\ncron = \"* * * * * *\"\n\n"
        ));
    }
    let sim_url = sim.base_url();
    let cluster = ReplicaConfig {
        url: &url,
        sim: &sim_url,
        lease_secs: LEASE_SECS,
        key: "",
        plugins: &plugins,
    };
    let addrs = [free_addr(), free_addr(), free_addr()];
    let mut replicas: Vec<std::process::Child> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let config = cluster.write(dir.path(), &format!("shard-{i}"), addr);
            start_serve(&config, &dir.path().join(format!("shard-{i}.log")))
        })
        .collect();
    let mut ids = Vec::new();
    for addr in &addrs {
        ids.push(wait_up(addr).await["replica"].as_str().unwrap().to_owned());
    }
    // Every replica has seen the others (a heartbeat is a quarter lease).
    tokio::time::sleep(Duration::from_secs(LEASE_SECS)).await;
    let steady_from = level_api::clock::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let steady_to = level_api::clock::now();

    // Stop the replica owning tick0, with SIGKILL: its schedules must move.
    let history = connect(&url).await;
    let runs = history.list(None, None, 100_000).await.unwrap();
    let in_window = |r: &&levelhost_serve::history::RunRow| {
        r.planned_at.as_deref() >= Some(steady_from.as_str())
            && r.planned_at.as_deref() < Some(steady_to.as_str())
    };
    let mut owners = std::collections::BTreeMap::<&str, BTreeSet<&str>>::new();
    for run in runs.iter().filter(in_window) {
        owners
            .entry(run.plugin.as_str())
            .or_default()
            .insert(run.replica.as_deref().unwrap());
    }
    assert_eq!(owners.len(), 12, "every schedule ran: {owners:?}");
    for (plugin, ran_on) in &owners {
        assert_eq!(
            ran_on.len(),
            1,
            "{plugin} was claimed by several replicas: {ran_on:?}"
        );
    }
    let spread: BTreeSet<&str> = owners.values().flatten().copied().collect();
    assert!(
        spread.len() >= 2,
        "the schedules are spread over the replicas: {owners:?}"
    );
    let victim_id = owners["tick0"].iter().next().unwrap().to_string();
    let victim = ids.iter().position(|id| *id == victim_id).unwrap();
    replicas[victim].kill().unwrap();
    replicas[victim].wait().unwrap();
    let killed_at = level_api::clock::now();
    tokio::time::sleep(Duration::from_secs(LEASE_SECS * 3)).await;
    let after = level_api::clock::now();
    for (i, replica) in replicas.iter_mut().enumerate() {
        if i != victim {
            crate::support::signal(replica, "TERM");
            assert!(replica.wait().unwrap().success());
        }
    }
    // Every planned second from before the kill to the end ran once, at the survivors.
    let runs = history.list(None, None, 100_000).await.unwrap();
    let first = chrono::DateTime::parse_from_rfc3339(&steady_to).unwrap();
    let last = chrono::DateTime::parse_from_rfc3339(&after).unwrap() - chrono::Duration::seconds(1);
    for i in 0..12 {
        let plugin = format!("tick{i}");
        let planned: BTreeSet<i64> = runs
            .iter()
            .filter(|r| r.plugin == plugin)
            .filter_map(|r| r.planned_at.as_deref())
            .map(|p| chrono::DateTime::parse_from_rfc3339(p).unwrap().timestamp())
            .collect();
        for second in first.timestamp() + 1..last.timestamp() {
            assert!(
                planned.contains(&second),
                "{plugin} missed the second {second} (killed at {killed_at})"
            );
        }
    }
    let moved: BTreeSet<&str> = runs
        .iter()
        .filter(|r| r.plugin == "tick0" && r.planned_at.as_deref() > Some(killed_at.as_str()))
        .filter_map(|r| r.replica.as_deref())
        .collect();
    assert!(
        !moved.is_empty() && !moved.contains(victim_id.as_str()),
        "tick0 went on at a survivor: {moved:?}"
    );
}
