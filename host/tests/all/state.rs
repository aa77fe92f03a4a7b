//! A plugin's durable state (issue 24): committed with a run recorded `ok`
//! and only then, on SQLite and on PostgreSQL; quotas refused whole; no
//! plugin reaches another's state; replicas count every `ok` run once. The
//! oracle is the database itself, read with its own driver.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use level_sim::Simulator;
use serde_json::{Value, json};

const KEY: &str = "state-test-key";

/// One committed entry: (key, value as text, version).
type Row = (String, String, i64);

/// Where the test's history is, and how to read the state table there.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Db {
    /// The `[history]` block of the config (none for SQLite).
    fn config(&self) -> String {
        match self {
            Db::Sqlite(_) => String::new(),
            Db::Postgres(url) => format!("[history]\nurl = \"{url}\"\nlease_secs = 2\n"),
        }
    }

    /// Every committed entry of `plugin`, in key order, read with the database's own driver.
    async fn rows(&self, plugin: &str) -> Vec<Row> {
        match self {
            Db::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).unwrap();
                let mut stmt = c
                    .prepare("SELECT key, value, version FROM state WHERE plugin = ?1 ORDER BY key")
                    .unwrap();
                stmt.query_map([plugin], |r| {
                    let key: Vec<u8> = r.get(0)?;
                    let value: Vec<u8> = r.get(1)?;
                    Ok((
                        String::from_utf8_lossy(&key).into_owned(),
                        String::from_utf8_lossy(&value).into_owned(),
                        r.get(2)?,
                    ))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            }
            Db::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client
                    .query(
                        "SELECT key, value, version FROM state WHERE plugin = $1 ORDER BY key",
                        &[&plugin],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let key: Vec<u8> = r.get(0);
                        let value: Vec<u8> = r.get(1);
                        (
                            String::from_utf8_lossy(&key).into_owned(),
                            String::from_utf8_lossy(&value).into_owned(),
                            r.get(2),
                        )
                    })
                    .collect()
            }
        }
    }
}

fn row(key: &str, value: &str, version: i64) -> Row {
    (key.to_owned(), value.to_owned(), version)
}

/// A folder with a config naming `plugins` (each the `stateful` guest with
/// `capabilities` and small state quotas) and `db`'s history.
fn setup(dir: &Path, sim: &Simulator, db: &Db, plugins: &[(&str, &str)]) {
    std::fs::write(dir.join("key.txt"), KEY).unwrap();
    let mut text = format!(
        r#"[level]
base_url = "{base}"

[serve]
database = "runs.db"

[console]
enabled = false

[trust]
allow_unsigned = true

[keys.rw]
source = "file:key.txt"
access = "read-write"

{history}
"#,
        base = sim.base_url(),
        history = db.config(),
    );
    for (name, capabilities) in plugins {
        std::fs::write(
            dir.join(format!("{name}.toml")),
            format!("name = \"{name}\"\nversion = \"1.0.0\"\ncapabilities = [{capabilities}]\n"),
        )
        .unwrap();
        text.push_str(&format!(
            r#"[plugins.{name}]
component = "{component}"
manifest = "{name}.toml"
key = "rw"
capabilities = [{capabilities}]

[plugins.{name}.limits]
timeout_secs = 3
max_state_keys = 5
max_state_value_kb = 1
max_state_writes = 20
max_state_key_bytes = 64

"#,
            component = test_programs_artifacts::STATEFUL,
        ));
    }
    std::fs::write(dir.join("levelhost.toml"), text).unwrap();
}

fn levelhost(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_levelhost"));
    command
        .args(args)
        .arg("--config")
        .arg(dir.join("levelhost.toml"))
        .env_remove("LEVELHOST_CONFIG")
        .env("USER", "operator-ann")
        .env("NO_COLOR", "1");
    command
}

/// Runs `plugin` with `input`; its exit code and its output document (if any).
fn run(dir: &Path, plugin: &str, input: Value, extra: &[&str]) -> (Option<i32>, Value, String) {
    let input = input.to_string();
    let mut args = vec!["run", plugin, "--input", input.as_str()];
    args.extend_from_slice(extra);
    let out: Output = levelhost(dir, &args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code(), doc, stderr)
}

fn ops(ops: Value, then: &str) -> Value {
    json!({ "ops": ops, "then": then })
}

async fn sim() -> Simulator {
    crate::support::simulator(Simulator::seeded_with(2), |c| {
        c.read_write_key = KEY.to_owned();
    })
    .await
}

/// The transaction rule, the quotas, dry runs and the operator's commands,
/// against `db`.
async fn state_follows_the_run(db: Db, dir: &Path) {
    let sim = sim().await;
    setup(
        dir,
        &sim,
        &db,
        &[("counter", "\"state:read\", \"state:write\"")],
    );

    // An ok run: every write is there, at version 1; the run read its own writes.
    let (code, doc, stderr) = run(
        dir,
        "counter",
        ops(
            json!([
                {"op": "set", "key": "a", "value": "1"},
                {"op": "set", "key": "b", "value": "2"},
                {"op": "increment", "key": "n", "delta": 5},
                {"op": "get", "key": "a"},
            ]),
            "ok",
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        doc["results"][3]["ok"],
        json!({"key": "a", "value": "1", "version": 1})
    );
    let committed = vec![row("a", "1", 1), row("b", "2", 1), row("n", "5", 1)];
    assert_eq!(db.rows("counter").await, committed);

    // Runs that write and then fail, trap or run out of time leave no trace.
    let changes = json!([
        {"op": "set", "key": "a", "value": "changed"},
        {"op": "delete", "key": "b"},
        {"op": "increment", "key": "n", "delta": 1},
        {"op": "set", "key": "new", "value": "x"},
    ]);
    for then in ["fail", "trap", "loop"] {
        let (code, _, stderr) = run(dir, "counter", ops(changes.clone(), then), &[]);
        assert_ne!(code, Some(0), "{then}: {stderr}");
        assert_eq!(
            db.rows("counter").await,
            committed,
            "after a run that ended {then}"
        );
    }

    // kill -9 in the middle of a run that wrote: no trace either.
    let input = ops(changes.clone(), "loop").to_string();
    let mut child = levelhost(dir, &["run", "counter", "--input", &input])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    crate::support::signal(&child, "KILL");
    child.wait().unwrap();
    assert_eq!(db.rows("counter").await, committed, "after kill -9");

    // A dry run reads the real state and plans its writes, committing none.
    let (code, doc, stderr) = run(
        dir,
        "counter",
        ops(
            json!([{"op": "get", "key": "n"}, {"op": "set", "key": "a", "value": "planned"}]),
            "ok",
        ),
        &["--dry-run"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(doc["results"][0]["ok"]["value"], "5");
    assert!(
        stderr.contains("state-set"),
        "the plan names the write: {stderr}"
    );
    assert_eq!(db.rows("counter").await, committed, "after a dry run");

    // Quotas: a write over one is refused whole, naming it; the run's other writes stand.
    let (code, doc, stderr) = run(
        dir,
        "counter",
        ops(
            json!([
                {"op": "set-bytes", "key": "big", "bytes": 2000},
                {"op": "set", "key": "c", "value": "3"},
                {"op": "set", "key": "d", "value": "4"},
                {"op": "set", "key": "e", "value": "5"},
            ]),
            "ok",
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let results = &doc["results"];
    assert_eq!(results[0]["error"]["kind"], "limit-exceeded", "{doc}");
    assert!(
        results[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_state_value_kb"),
        "{doc}"
    );
    assert_eq!(results[1]["ok"], 1);
    assert_eq!(results[2]["ok"], 1);
    assert_eq!(results[3]["error"]["kind"], "limit-exceeded", "{doc}");
    assert!(
        results[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_state_keys"),
        "{doc}"
    );
    let committed = vec![
        row("a", "1", 1),
        row("b", "2", 1),
        row("c", "3", 1),
        row("d", "4", 1),
        row("n", "5", 1),
    ];
    assert_eq!(db.rows("counter").await, committed);

    // Compare-and-swap on a version, and a list that pages in key order.
    let (code, doc, stderr) = run(
        dir,
        "counter",
        ops(
            json!([
                {"op": "cas", "key": "a", "expected": 2, "value": "no"},
                {"op": "cas", "key": "a", "expected": 1, "value": "yes"},
                {"op": "delete", "key": "c"},
                {"op": "cas", "key": "c", "value": "absent-only"},
                {"op": "list", "prefix": "", "limit": 2},
                {"op": "list", "prefix": "", "after": "b", "limit": 10},
            ]),
            "ok",
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let results = &doc["results"];
    assert_eq!(
        (&results[0]["ok"], &results[1]["ok"], &results[3]["ok"]),
        (&json!(false), &json!(true), &json!(true)),
        "{doc}"
    );
    assert_eq!(results[4]["ok"]["next"], "b", "{doc}");
    let keys: Vec<&str> = results[5]["ok"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["c", "d", "n"], "{doc}");
    let rows = db.rows("counter").await;
    assert_eq!(
        (&rows[0], &rows[2]),
        (&row("a", "yes", 2), &row("c", "absent-only", 3))
    );

    // A recorded run replays exactly: its state reads are in the transcript,
    // answered again even after the state changed.
    let transcript = dir.join("counter.transcript.json");
    let (code, doc, stderr) = run(
        dir,
        "counter",
        ops(
            json!([{"op": "get", "key": "d"}, {"op": "increment", "key": "n", "delta": 2}]),
            "ok",
        ),
        &["--record", transcript.to_str().unwrap()],
    );
    assert_eq!(
        (code, &doc["results"][1]["ok"]),
        (Some(0), &json!(7)),
        "{stderr}"
    );
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(&transcript).unwrap()).unwrap();
    assert_eq!(
        recorded["state"]["entries"]["n"]["version"], 1,
        "{recorded}"
    );
    let changed = levelhost(dir, &["state", "set", "counter", "n", "100"])
        .output()
        .unwrap();
    assert!(changed.status.success());
    let replayed = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .arg("replay")
        .arg(&transcript)
        .output()
        .unwrap();
    assert!(
        replayed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&replayed.stdout),
        String::from_utf8_lossy(&replayed.stderr)
    );

    // Operators see and fix it; each change is in the audit.
    let listed = levelhost(dir, &["state", "list", "counter", "--json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 5, "{listed}");
    let set = levelhost(dir, &["state", "set", "counter", "n", "41"])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let (code, doc, _) = run(
        dir,
        "counter",
        ops(json!([{"op": "increment", "key": "n", "delta": 1}]), "ok"),
        &[],
    );
    assert_eq!((code, &doc["results"][0]["ok"]), (Some(0), &json!(42)));
    let got = levelhost(dir, &["state", "get", "counter", "n"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "42");
    let deleted = levelhost(dir, &["state", "delete", "counter", "b"])
        .output()
        .unwrap();
    assert!(deleted.status.success());
    let again = levelhost(dir, &["state", "delete", "counter", "b"])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(2),
        "deleting a key that is gone is an error"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no state key \"b\""),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let audit = levelhost(dir, &["audit", "--json"]).output().unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("state-set")
            && audit.contains("state-delete")
            && audit.contains("operator-ann"),
        "{audit}"
    );
    let purged = levelhost(dir, &["state", "purge", "counter"])
        .output()
        .unwrap();
    assert!(purged.status.success());
    assert_eq!(db.rows("counter").await, Vec::<Row>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_committed_with_an_ok_run_and_only_then_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Sqlite(dir.path().join("runs.db"));
    state_follows_the_run(db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_committed_with_an_ok_run_and_only_then_on_postgresql() {
    let Some(url) = crate::cluster::database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    state_follows_the_run(Db::Postgres(url), dir.path()).await;
}

/// A hostile plugin tries every way to name another plugin's state: the
/// key itself, path tricks, NUL bytes, very long keys, prefix listings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_reach_another_plugins_state_by_any_key() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = Db::Sqlite(d.join("runs.db"));
    let both = "\"state:read\", \"state:write\"";
    setup(
        d,
        &sim,
        &db,
        &[
            ("alice", both),
            ("mallory", both),
            ("reader", "\"state:read\""),
        ],
    );
    let (code, _, stderr) = run(
        d,
        "alice",
        ops(
            json!([{"op": "set", "key": "token", "value": "s3cret"}]),
            "ok",
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");

    let long = "a".repeat(10_000);
    let tricks = [
        "token",
        "alice/token",
        "../alice/token",
        "alice\u{0}token",
        "token\u{0}",
        "%",
        "_oken",
        "*",
        long.as_str(),
    ];
    let mut script: Vec<Value> = tricks
        .iter()
        .flat_map(|k| {
            [
                json!({"op": "get", "key": k}),
                json!({"op": "set", "key": k, "value": "mallory was here"}),
            ]
        })
        .collect();
    for prefix in ["", "t", "alice", "%", "\u{0}"] {
        script.push(json!({"op": "all", "prefix": prefix}));
    }
    let (code, doc, stderr) = run(d, "mallory", ops(json!(script), "ok"), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let text = doc.to_string();
    assert!(
        !text.contains("s3cret"),
        "mallory read alice's state: {text}"
    );
    let results = doc["results"].as_array().unwrap();
    // NUL bytes are refused, a key over the quota too, naming it.
    assert_eq!(results[6]["error"]["kind"], "invalid-input", "{text}");
    assert_eq!(results[16]["error"]["kind"], "limit-exceeded", "{text}");
    assert!(text.contains("max_state_key_bytes"), "{text}");
    // A plugin without state:write is denied, naming the capability.
    let (_, denied, _) = run(
        d,
        "reader",
        ops(json!([{"op": "set", "key": "token", "value": "x"}]), "ok"),
        &[],
    );
    assert_eq!(denied["results"][0]["error"]["kind"], "denied", "{denied}");
    assert!(denied.to_string().contains("state:write"), "{denied}");

    // The oracle: alice's state is as she left it; mallory's writes are her own.
    assert_eq!(db.rows("alice").await, vec![row("token", "s3cret", 1)]);
    assert!(db.rows("reader").await.is_empty());
    let mallory = db.rows("mallory").await;
    assert!(
        mallory.iter().all(|(_, v, _)| v == "mallory was here"),
        "{mallory:?}"
    );
    assert_eq!(mallory.len(), 5, "at most the quota of keys: {mallory:?}");
}

/// Two `serve` replicas share a PostgreSQL history and run one plugin every
/// second for a minute, each run incrementing a counter: the counter ends
/// equal to the number of `ok` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_count_every_ok_run_exactly_once() {
    let Some(url) = crate::cluster::database().await else {
        return;
    };
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = Db::Postgres(url);
    setup(
        d,
        &sim,
        &db,
        &[("counter", "\"state:read\", \"state:write\"")],
    );
    let base = std::fs::read_to_string(d.join("levelhost.toml")).unwrap();
    let schedule = format!(
        "{}\n[[plugins.counter.schedules]]\ncron = \"* * * * * *\"\n",
        base.replace(
            "[plugins.counter.limits]",
            "input = { ops = [{ op = \"increment\", key = \"count\", delta = 1 }] }\n\n[plugins.counter.limits]"
        )
    );
    let mut replicas = Vec::new();
    for i in 0..2 {
        let addr = crate::support::free_addr();
        let config = d.join(format!("replica-{i}.toml"));
        std::fs::write(
            &config,
            schedule.replace(
                "[serve]\ndatabase = \"runs.db\"",
                &format!("[serve]\naddr = \"{addr}\"\ndatabase = \"runs-{i}.db\"\nshutdown_grace_secs = 2"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join(format!("replica-{i}.log"))).unwrap();
        replicas.push(
            Command::new(env!("CARGO_BIN_EXE_levelhost"))
                .args(["serve", "--config"])
                .arg(&config)
                .env_remove("LEVELHOST_CONFIG")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    for replica in &mut replicas {
        crate::support::stop(replica, "TERM");
    }
    let Db::Postgres(url) = &db else {
        unreachable!()
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let ok: i64 = client
        .query_one(
            "SELECT count(*) FROM runs WHERE plugin = 'counter' AND status = 'ok'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let logs = || {
        (0..2)
            .map(|i| {
                std::fs::read_to_string(d.join(format!("replica-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert!(
        ok >= 40,
        "a run about every second: {ok} ok runs\n{}",
        logs()
    );
    assert_eq!(
        db.rows("counter").await,
        vec![row("count", &ok.to_string(), ok)],
        "{}",
        logs()
    );
}

/// `levelhost test` cases give a starting state and expect the ending one;
/// a run that fails keeps none of its writes there either.
#[test]
fn test_cases_give_a_starting_state_and_expect_the_ending_one() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    std::fs::copy(
        test_programs_artifacts::STATEFUL,
        project.join("plugin.wasm"),
    )
    .unwrap();
    std::fs::write(
        project.join("plugin.toml"),
        "name = \"counter\"\nversion = \"1.0.0\"\ncapabilities = [\"state:read\", \"state:write\"]\n",
    )
    .unwrap();
    let increment = r#"input = { ops = [{ op = "increment", key = "n", delta = 1 }, { op = "delete", key = "old" }] }"#;
    std::fs::write(
        project.join("tests.toml"),
        format!(
            r#"[[test]]
name = "counts on"
{increment}
state = {{ n = "41", old = "x" }}

[test.expect]
output = {{ results = [{{ ok = 42 }}, {{ ok = true }}] }}
state = {{ n = "42" }}

[[test]]
name = "a failed run keeps nothing"
input = {{ ops = [{{ op = "increment", key = "n", delta = 1 }}], then = "fail" }}
state = {{ n = "41" }}

[test.expect]
status = "failed"
state = {{ n = "41" }}

[[test]]
name = "wrong"
{increment}
state = {{ n = "1" }}

[test.expect]
state = {{ n = "3" }}
"#
        ),
    )
    .unwrap();
    let tested = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["test", project.to_str().unwrap()])
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    assert_eq!(tested.status.code(), Some(1), "{out}");
    assert!(
        out.contains("test counts on ... ok")
            && out.contains("test a failed run keeps nothing ... ok")
            && out.contains("test wrong ... FAILED")
            && out.contains(r#"it is {"n": "2"}"#),
        "{out}"
    );
}

/// A plan over the approval policy holds its state writes like any other:
/// nothing is written while it waits or when it is rejected; approved and
/// applied, exactly the planned keys are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plans_state_writes_wait_for_approval_like_any_write() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = Db::Sqlite(d.join("runs.db"));
    setup(
        d,
        &sim,
        &db,
        &[("counter", "\"state:read\", \"state:write\"")],
    );
    let config = std::fs::read_to_string(d.join("levelhost.toml")).unwrap();
    std::fs::write(
        d.join("levelhost.toml"),
        format!("{config}[plugins.counter.approval]\nwrites_over = 0\n"),
    )
    .unwrap();
    let waiting = |value: &str| {
        let input = ops(
            json!([{"op": "set", "key": "a", "value": value}, {"op": "increment", "key": "n", "delta": 1}]),
            "ok",
        )
        .to_string();
        let out = levelhost(d, &["run", "counter", "--input", &input])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "the plan waits: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["run"].as_str().unwrap().to_owned()
    };

    let rejected = waiting("rejected");
    assert!(
        db.rows("counter").await.is_empty(),
        "nothing while it waits"
    );
    let out = levelhost(d, &["reject", &rejected, "--reason", "no"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.rows("counter").await.is_empty(), "nothing once rejected");

    let approved = waiting("approved");
    for step in [
        &["approve", approved.as_str()][..],
        &["apply", approved.as_str()][..],
    ] {
        let out = levelhost(d, step).output().unwrap();
        assert!(
            out.status.success(),
            "{step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        db.rows("counter").await,
        vec![row("a", "approved", 1), row("n", "1", 1)]
    );
}

/// An uninstall keeps the plugin's state for a reinstall, unless asked to
/// purge it (`--purge-state`), which the audit records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_keeps_the_state_unless_asked_to_purge_it() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = Db::Sqlite(d.join("runs.db"));
    let both = "\"state:read\", \"state:write\"";
    setup(d, &sim, &db, &[("kept", both), ("purged", both)]);
    for plugin in ["kept", "purged"] {
        let (code, _, stderr) = run(
            d,
            plugin,
            ops(
                json!([{"op": "set", "key": "mapping", "value": "alert-1=ticket-9"}]),
                "ok",
            ),
            &[],
        );
        assert_eq!(code, Some(0), "{stderr}");
    }
    let out = levelhost(d, &["plugin", "uninstall", "kept"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("state (1 keys) is kept"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = levelhost(d, &["plugin", "uninstall", "purged", "--purge-state"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(d.join("levelhost.toml")).unwrap();
    assert!(
        !config.contains("[plugins.kept") && !config.contains("[plugins.purged"),
        "{config}"
    );
    assert_eq!(
        db.rows("kept").await,
        vec![row("mapping", "alert-1=ticket-9", 1)]
    );
    assert!(db.rows("purged").await.is_empty());
    let audit = levelhost(d, &["audit", "--json", "--plugin", "purged"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("state-purge"),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    let again = levelhost(d, &["plugin", "uninstall", "kept"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "not installed any more");
}

/// The console lists a plugin's state keys with their sizes and versions,
/// never the values, and only to a holder of its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_plugins_state_keys_and_sizes_not_values() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = Db::Sqlite(d.join("runs.db"));
    setup(
        d,
        &sim,
        &db,
        &[("counter", "\"state:read\", \"state:write\"")],
    );
    let (addr, console) = (crate::support::free_addr(), crate::support::free_addr());
    let token = "console-state-token-0123456789";
    std::fs::write(d.join("console.token"), token).unwrap();
    let config = std::fs::read_to_string(d.join("levelhost.toml"))
        .unwrap()
        .replace(
            "[serve]\ndatabase = \"runs.db\"",
            &format!("[serve]\naddr = \"{addr}\"\ndatabase = \"runs.db\"\nshutdown_grace_secs = 1"),
        )
        .replace(
            "[console]\nenabled = false",
            &format!(
                "[console]\nenabled = true\naddr = \"{console}\"\ntoken = \"file:console.token\""
            ),
        );
    std::fs::write(d.join("levelhost.toml"), config).unwrap();
    let (code, _, stderr) = run(
        d,
        "counter",
        ops(
            json!([
                {"op": "set", "key": "ticket/alert-1", "value": "secret-ticket-body"},
                {"op": "set-bytes", "key": "blob", "bytes": 300},
            ]),
            "ok",
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let mut serve = levelhost(d, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_up(&addr).await;
    let page = format!("http://{console}/plugins/counter/state");
    let http = reqwest::Client::new();
    let refused = http.get(&page).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let shown = http
        .get(&page)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    crate::support::stop(&mut serve, "TERM");
    assert!(
        shown.contains("ticket/alert-1") && shown.contains("blob") && shown.contains("300"),
        "{shown}"
    );
    assert!(shown.contains("2 keys"), "{shown}");
    assert!(
        !shown.contains("secret-ticket-body"),
        "the console shows no value: {shown}"
    );
}

/// The run's view of its state as a property: for any committed state and
/// any sequence of writes and deletes, the run reads back exactly what a
/// plain map would hold, and committing its changes leaves the store equal
/// to that map, each changed key one version past what the run saw per write.
#[test]
fn a_runs_view_and_commit_match_a_plain_map_for_any_writes() {
    use levelhost_runtime::state::{MemoryState, Seen, StateChanges, StoredValue};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    let key = prop::sample::select(vec!["a", "b", "c", "a/1", "a/2"]);
    let value = proptest::option::of(prop::sample::select(vec!["x", "yy", "zzz"]));
    let committed = proptest::collection::btree_map(key.clone(), (value.clone(), 1u64..5), 0..5);
    let writes = proptest::collection::vec((key, value), 0..20);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 500,
        ..Default::default()
    });
    runner
        .run(&(committed, writes), |(committed, writes)| {
            let store = MemoryState::default();
            let start: BTreeMap<String, StoredValue> = committed
                .iter()
                .filter_map(|(k, (v, version))| {
                    v.map(|v| {
                        let stored = StoredValue {
                            value: v.as_bytes().to_vec(),
                            version: *version,
                        };
                        ((*k).to_owned(), stored)
                    })
                })
                .collect();
            store.seed("p", start.clone());
            let mut model: BTreeMap<String, (Option<String>, u64)> = start
                .iter()
                .map(|(k, v)| {
                    let text = String::from_utf8(v.value.clone()).unwrap();
                    (k.clone(), (Some(text), v.version))
                })
                .collect();
            let mut changes = StateChanges::default();
            for (k, v) in &writes {
                if !changes.knows(k) {
                    changes.track(k, start.get(*k).cloned());
                }
                let version = changes.write(k, v.map(|v| v.as_bytes().to_vec()));
                let entry = model.entry((*k).to_owned()).or_insert((None, 0));
                entry.0 = v.map(str::to_owned);
                entry.1 += 1;
                prop_assert_eq!(version, entry.1);
                match changes.seen(k) {
                    Seen::Written(now, seen_version) => {
                        prop_assert_eq!(now.map(|b| b.to_vec()), v.map(|v| v.as_bytes().to_vec()));
                        prop_assert_eq!(seen_version, entry.1);
                    }
                    Seen::Unknown => prop_assert!(false, "a written key is known"),
                }
            }
            store.commit("p", &changes.into_changes());
            let expected: BTreeMap<String, String> = model
                .into_iter()
                .filter_map(|(k, (v, _))| v.map(|v| (k, v)))
                .collect();
            let now: BTreeMap<String, String> = store
                .entries("p")
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.value).unwrap()))
                .collect();
            prop_assert_eq!(now, expected);
            Ok(())
        })
        .unwrap();
}

/// A key changed under a run (an operator's `state set` while the run goes)
/// is not overwritten: the run's commit is refused whole, the run is
/// recorded failed naming the key, and the operator's value stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_changed_under_a_run_fails_its_commit_and_keeps_the_new_value() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = Db::Sqlite(d.join("runs.db"));
    setup(
        d,
        &sim,
        &db,
        &[("counter", "\"state:read\", \"state:write\"")],
    );
    let input = ops(
        json!([
            {"op": "set", "key": "other", "value": "from the run"},
            {"op": "set", "key": "k", "value": "from the run"},
            {"op": "spin", "millis": 1500},
        ]),
        "ok",
    )
    .to_string();
    let run = levelhost(d, &["run", "counter", "--input", &input])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let set = levelhost(d, &["state", "set", "counter", "k", "from the operator"])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let runs = levelhost(d, &["runs", "--json", "--plugin", "counter"])
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    let error = runs[0]["error"].as_str().unwrap();
    assert!(
        error.contains("state changed under the run") && error.contains("\"k\""),
        "{error}"
    );
    assert_eq!(
        db.rows("counter").await,
        vec![row("k", "from the operator", 1)],
        "none of the run's writes were kept"
    );
}
