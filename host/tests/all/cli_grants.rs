//! `levelhost check`, `run --dry-run` and `audit` with a real configuration
//! file, against a simulator, as an operator would use them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use level_sim::{SimConfig, Simulator};

const CANARY: &str = "canary-CLI-KEY-41d2aa90";

struct Setup {
    sim: Simulator,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let config = SimConfig {
            read_write_key: CANARY.to_owned(),
            read_only_key: "read-only-key".to_owned(),
            rate_limit: None,
            ..SimConfig::default()
        };
        let sim = Simulator::start(config, Simulator::seeded()).await.unwrap();
        let setup = Self {
            sim,
            dir: tempfile::tempdir().unwrap(),
        };
        setup.write_config("");
        setup
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("levelhost.toml")
    }

    /// A config with both example plugins; `extra` is appended.
    fn write_config(&self, extra: &str) {
        let plugin_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        let text = format!(
            r#"[level]
base_url = "{base}"

[audit]
path = "audit.jsonl"

[trust]
allow_unsigned = true

[keys.rw]
source = "env:TEST_LEVEL_KEY"
access = "read-write"

[keys.ro]
source = "file:ro.key"
access = "read-only"

[plugins.report]
component = "{report}"
manifest = "{plugins}/device-report/plugin.toml"
key = "ro"
capabilities = ["devices:read", "groups:read"]

[plugins.tagger]
component = "{tagger}"
manifest = "{plugins}/stale-device-tagger/plugin.toml"
key = "rw"
capabilities = ["devices:read", "tags:read", "tags:write"]
input = {{ days = 14 }}

[plugins.tagger.scopes]
groups = ["Acme Corp"]
tags = ["stale*"]
{extra}"#,
            base = self.sim.base_url(),
            report = test_programs_artifacts::DEVICE_REPORT,
            tagger = test_programs_artifacts::STALE_DEVICE_TAGGER,
            plugins = plugin_dir.display(),
        );
        std::fs::write(self.config_path(), text).unwrap();
        std::fs::write(self.dir.path().join("ro.key"), "read-only-key\n").unwrap();
    }

    fn levelhost(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_levelhost"))
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .env("TEST_LEVEL_KEY", CANARY)
            .env_remove("LEVELHOST_CONFIG")
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_each_grant_in_plain_words() {
    let setup = Setup::new().await;
    let out = setup.levelhost(&["check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("can read devices in group \"Acme Corp\" and its subgroups"),
        "{stdout}"
    );
    assert!(
        stdout.contains("can read, change tags \"stale*\""),
        "{stdout}"
    );
    assert!(stdout.contains("cannot delete anything"), "{stdout}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));

    // The same for scripts.
    let out = setup.levelhost(&["check", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(CANARY));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["keys"], 2);
    let tagger = report["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tagger")
        .unwrap();
    assert_eq!(tagger["key"], "rw");
    assert_eq!(
        tagger["grant"]["capabilities"],
        serde_json::json!(["devices:read", "tags:read", "tags:write"])
    );
    assert_eq!(
        tagger["grant"]["scopes"]["groups"],
        serde_json::json!(["Acme Corp"])
    );
    assert!(tagger["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        tagger["grant_in_words"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l
                .as_str()
                .unwrap()
                .contains("\"Acme Corp\" and its subgroups")),
        "{tagger}"
    );

    // `plugin list` names what is installed, for people and for scripts.
    let out = setup.levelhost(&["plugin", "list"]);
    let (table, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("PLUGIN ") && lines.len() == 3,
        "{table}"
    );
    let out = setup.levelhost(&["plugin", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    let tagger = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tagger")
        .unwrap();
    assert_eq!(
        (&tagger["key"], &tagger["scoped"], &tagger["package"]),
        (
            &serde_json::json!("rw"),
            &serde_json::json!(true),
            &serde_json::Value::Null
        )
    );
    assert_eq!(
        tagger["capabilities"],
        serde_json::json!(["devices:read", "tags:read", "tags:write"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_and_the_real_run_makes_the_planned_changes() {
    let setup = Setup::new().await;
    let before = setup.sim.tenant().to_fixture();
    let out = setup.levelhost(&["run", "tagger", "--dry-run"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        setup.sim.tenant().to_fixture(),
        before,
        "the dry run sent no write"
    );
    assert!(
        stderr.contains("Plan (dry run: nothing was sent to Level), 2 writes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  create-tag: tag \"stale\"") && stderr.contains("  tag-devices: "),
        "{stderr}"
    );
    let planned: serde_json::Value = serde_json::from_str(&stdout).unwrap();

    // Issue 13, point 7: the dry run is in the history, with its plan and its logs.
    let out = setup.levelhost(&["runs", "--plugin", "tagger"]);
    let (runs, _) = text(&out);
    let mut lines = runs.lines();
    assert!(
        lines.next().unwrap_or_default().starts_with("RUN "),
        "{runs}"
    );
    assert!(
        lines.next().unwrap_or_default().contains("(dry run)"),
        "{runs}"
    );
    let out = setup.levelhost(&["runs", "--plugin", "tagger", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(listed[0]["dry_run"], true, "{listed}");
    assert_eq!(listed[0]["plugin"], "tagger");
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let out = setup.levelhost(&["runs", "show", &id]);
    let (shown, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["dry_run"], true);
    assert_eq!(shown["plan"].as_array().map(Vec::len), Some(2), "{shown}");
    let out = setup.levelhost(&["logs", &id]);
    let (logs, _) = text(&out);
    assert!(
        logs.contains(&id) && logs.contains("creating tag tag=stale"),
        "{logs}"
    );

    let out = setup.levelhost(&["run", "tagger"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let done: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(planned["tagged"], done["tagged"]);
    let fixture = setup.sim.tenant().to_fixture();
    let tagged: Vec<&str> = fixture
        .devices
        .iter()
        .filter(|d| d.tags.contains(&"stale".to_owned()))
        .map(|d| d.hostname.as_str())
        .collect();
    assert_eq!(
        serde_json::json!(tagged),
        done["tagged"],
        "the simulator shows the planned changes"
    );
    assert!(
        tagged.iter().all(|h| h.starts_with("acme")),
        "only Acme devices: {tagged:?}"
    );

    // `logs` shows both runs' lines, oldest first.
    let out = setup.levelhost(&["logs", "--plugin", "tagger"]);
    let (logs, _) = text(&out);
    assert_eq!(logs.matches("creating tag").count(), 2, "{logs}");

    let audit = std::fs::read_to_string(setup.dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.lines().count() >= 6);
    assert!(!audit.contains(CANARY), "the key is not in the audit log");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_filters_by_plugin_run_and_denial() {
    let setup = Setup::new().await;
    // A wider input than the scope allows: the tag name is outside stale*.
    let out = setup.levelhost(&["run", "tagger", "--input", r#"{"days": 14, "tag": "vip"}"#]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let out = setup.levelhost(&["run", "report"]);
    assert!(out.status.success());

    let out = setup.levelhost(&["audit", "--denied"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert_eq!(stdout.lines().count(), 2, "a header and one row: {stdout}");
    assert!(
        stdout.contains("tagger")
            && stdout.contains("DENIED")
            && stdout.contains("outside the grant's tags"),
        "{stdout}"
    );

    let out = setup.levelhost(&["audit", "--plugin", "report", "--json"]);
    let (stdout, _) = text(&out);
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3, "two calls and the run's end");
    assert!(
        records
            .iter()
            .all(|r| r["plugin"] == "report" && r["allowed"] == true)
    );
    assert!(records[..2].iter().all(|r| r["upstream_status"] == 200));
    assert_eq!(records[2]["operation"], "run");
    let run = records[0]["run_id"].as_str().unwrap();
    let out = setup.levelhost(&["audit", "--run", run]);
    assert_eq!(text(&out).0.lines().count(), 4, "a header and three rows");
}

/// Runs `check` on a config with `extra` appended and returns its stderr.
async fn check_fails(extra: &str, edit: impl FnOnce(String) -> String) -> String {
    let setup = Setup::new().await;
    setup.write_config(extra);
    let path = setup.config_path();
    let edited = edit(std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, edited).unwrap();
    let out = setup.levelhost(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_fail_check_with_file_line_and_reason() {
    let stderr = check_fails(
        "[[plugins.tagger.schedules]]\ncron = \"every day\"\n",
        |t| t,
    )
    .await;
    assert!(
        stderr.contains("levelhost.toml:35:8: plugin tagger: schedule \"every day\""),
        "{stderr}"
    );
    // Issue 13, point 8: the message says what the README says, 5 fields or 6.
    assert!(
        stderr.contains(
            "expected 5 fields (minute hour day month weekday), or 6 with seconds first; found 2"
        ),
        "{stderr}"
    );
    let stderr = check_fails(
        "[[plugins.tagger.schedules]]\ncron = \"0 0 3 * * * 2027\"\n",
        |t| t,
    )
    .await;
    assert!(
        stderr.contains("found 7"),
        "a year field is refused: {stderr}"
    );
    // Issue 23, point 10: a number out of range names its field; a date
    // that never comes is refused.
    let stderr = check_fails(
        "[[plugins.tagger.schedules]]\ncron = \"61 * * * *\"\n",
        |t| t,
    )
    .await;
    assert!(
        stderr.contains("levelhost.toml:35:8: plugin tagger: schedule \"61 * * * *\": the minute field has 61; minutes are 0-59"),
        "{stderr}"
    );
    let stderr = check_fails(
        "[[plugins.tagger.schedules]]\ncron = \"0 0 30 2 *\"\n",
        |t| t,
    )
    .await;
    assert!(
        stderr.contains("levelhost.toml:35:8: plugin tagger: schedule \"0 0 30 2 *\" never fires"),
        "{stderr}"
    );

    let stderr = check_fails(
        "[[plugins.tagger.schedules]]\ncron = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"\n",
        |t| t,
    )
    .await;
    assert!(
        stderr.contains("levelhost.toml:36:12: plugin tagger: unknown time zone \"Mars/Olympus\""),
        "{stderr}"
    );

    let stderr = check_fails(
        "[[plugins.tagger.schedules]]\ncron = \"0 3 * * *\"\noverlap = \"never\"\n",
        |t| t,
    )
    .await;
    assert!(
        stderr.contains("plugin tagger: overlap must be skip or queue, not \"never\""),
        "{stderr}"
    );

    let stderr = check_fails("colour = \"blue\"\n", |t| t).await;
    assert!(
        stderr.contains("levelhost.toml:34:1: unknown field `colour`"),
        "{stderr}"
    );

    let stderr = check_fails("", |t| t.replace("source = \"env:TEST_LEVEL_KEY\"\n", "")).await;
    assert!(
        stderr.contains("levelhost.toml:") && stderr.contains("missing field `source`"),
        "{stderr}"
    );

    let stderr = check_fails("", |t| t.replace("\"tags:write\"", "\"tags:fly\"")).await;
    assert!(
        stderr.contains("levelhost.toml:28:46: plugin tagger:")
            && stderr.contains("unknown capability \"tags:fly\""),
        "{stderr}"
    );

    let stderr = check_fails("", |t| {
        t.replace(
            "groups = [\"Acme Corp\"]",
            "groups = [\"Acme Corp\", \"Umbrella\"]",
        )
    })
    .await;
    assert!(stderr.contains("levelhost.toml:32:24: plugin tagger: scope names group \"Umbrella\", which Level does not have"), "{stderr}");

    let stderr = check_fails("", |t| {
        t.replace("source = \"env:TEST_LEVEL_KEY\"", "source = \"hunter2\"")
    })
    .await;
    assert!(
        stderr.contains("levelhost.toml:11:10: key rw: source must be env:VARIABLE or file:PATH"),
        "{stderr}"
    );

    let stderr = check_fails("", |t| {
        t.replace(
            "key = \"ro\"\ncapabilities = [\"devices:read\"",
            "key = \"ro\"\ncapabilities = [\"devices:write\", \"devices:read\"",
        )
    })
    .await;
    assert!(
        stderr.contains("devices:write needs a read-write key, but key ro is read-only"),
        "{stderr}"
    );

    let stderr = check_fails("", |t| {
        t.replace("input = { days = 14 }", "input = { days = \"soon\" }")
    })
    .await;
    assert!(
        stderr.contains("input does not match the manifest's schema") && stderr.contains("/days"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_reported_without_running() {
    let setup = Setup::new().await;
    let out = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["run", "tagger", "--config"])
        .arg(setup.config_path())
        .env_remove("TEST_LEVEL_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("key rw (")
            && stderr
                .contains("levelhost.toml:11:10): environment variable TEST_LEVEL_KEY is not set"),
        "{stderr}"
    );
}

/// Issue 23, point 7: the shipped example config works end to end on
/// events. Its plugins are built as the README says; the config is used as
/// shipped but for where Level, the keys and the addresses are; the
/// simulator's monitor fires and resolves an alert, and each event runs
/// `device-report`, which reads the event from its input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_runs_its_report_on_every_alert() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["-p", "device-report", "-p", "stale-device-tagger"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(built.success());
    let example = root.join("examples/levelhost.toml");
    let config = level_host::config::HostConfig::load(&example).unwrap();
    assert_eq!(config.plugins.len(), 2);
    let tagger = &config.plugins["stale-tagger"];
    assert_eq!(tagger.grant.limits.max_writes, 20);
    assert_eq!(tagger.schedules.len(), 1);
    assert!(config.plugins["device-report"].events.is_some());

    const SECRET: &str = "example-webhook-secret";
    let addr = crate::support::free_addr();
    let sim = Simulator::start(
        SimConfig {
            rate_limit: None,
            webhooks: vec![level_sim::WebhookTarget {
                url: format!("http://{addr}/hooks/device-report"),
                secret: SECRET.to_owned(),
            }],
            ..SimConfig::default()
        },
        Simulator::seeded(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root_text = root.canonicalize().unwrap().display().to_string();
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace("https://api.level.io", &sim.base_url())
        .replace("\"../", &format!("\"{root_text}/"))
        .replace("file:/etc/levelhost/automation.key", "file:automation.key")
        .replace("127.0.0.1:8780", &addr)
        .replace("127.0.0.1:8781", "127.0.0.1:0");
    std::fs::write(dir.path().join("levelhost.toml"), text).unwrap();
    std::fs::write(dir.path().join("automation.key"), sim.read_write_key()).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["serve", "--config"])
        .arg(dir.path().join("levelhost.toml"))
        .env_remove("LEVELHOST_CONFIG")
        .env("LEVEL_READ_KEY", sim.read_only_key())
        .env("LEVEL_WEBHOOK_SECRET", SECRET)
        .env(
            "LEVELHOST_CONSOLE_TOKEN",
            "example-console-token-0123456789",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_up(&addr).await;

    let device = sim.tenant().to_fixture().devices[0].clone();
    let alert = sim
        .raise_alert(&device.id, "Disk almost full", "critical")
        .unwrap();
    let resolved = reqwest::Client::new()
        .post(format!("{}/v2/alerts/{}/resolve", sim.base_url(), alert.id))
        .header("Authorization", sim.read_write_key())
        .send()
        .await
        .unwrap();
    assert!(resolved.status().is_success());
    let history = dir.path().join("levelhost.db");
    let mut runs = Vec::new();
    for _ in 0..300 {
        if let Ok(h) = levelhost_serve::history::History::open(&history) {
            runs = h.list(Some("device-report"), None, 10).await.unwrap();
            if runs.len() == 2 && runs.iter().all(|r| r.status != "running") {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    crate::support::stop(&mut serve, "TERM");
    let statuses: Vec<(&str, Option<&str>)> = runs
        .iter()
        .map(|r| (r.status.as_str(), r.event_type.as_deref()))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for run in &runs {
        assert_eq!(run.status, "ok", "{statuses:?}: {run:#?}");
        let output: serde_json::Value =
            serde_json::from_str(run.output.as_deref().unwrap()).unwrap();
        assert_eq!(output["event"]["alert"], "Disk almost full", "{output:#}");
        assert_eq!(output["event"]["device_id"], device.id.as_str());
        assert_eq!(output["devices"], sim.tenant().to_fixture().devices.len());
        assert!(
            output["stalest"].as_array().unwrap().len() <= 10,
            "top = 10 applies"
        );
    }
    let types: std::collections::BTreeSet<_> =
        runs.iter().filter_map(|r| r.event_type.clone()).collect();
    assert_eq!(
        types,
        ["alert_active", "alert_resolved"].map(str::to_owned).into(),
        "{statuses:?}"
    );
}

/// `levelhost audit` and `runs` read only where the records are, so one
/// plugin whose manifest is broken does not hide what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_runs_work_while_a_plugin_manifest_is_broken() {
    let setup = Setup::new().await;
    let out = setup.levelhost(&["run", "report"]);
    assert!(out.status.success(), "{:?}", text(&out));
    std::fs::write(setup.dir.path().join("broken.toml"), "name = [not toml\n").unwrap();
    setup.write_config(&format!(
        "\n[plugins.broken]\ncomponent = \"{}\"\nmanifest = \"broken.toml\"\nkey = \"ro\"\ncapabilities = [\"devices:read\"]\n",
        test_programs_artifacts::ECHO
    ));
    let out = setup.levelhost(&["check"]);
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("broken.toml"),
        "{stderr}"
    );

    let out = setup.levelhost(&["audit", "--plugin", "report"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().count(),
        4,
        "a header, two calls and the run's end: {stdout}"
    );
    let out = setup.levelhost(&["runs"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("report") && stdout.contains(" ok "),
        "{stdout}"
    );
}

/// Ctrl-C and SIGTERM stop `levelhost run` the way they stop `serve`: the
/// run is recorded as interrupted, its run-end audit record is written, and
/// the exit code is 128 + the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_levelhost_run_and_the_run_is_recorded_as_interrupted() {
    let setup = Setup::new().await;
    std::fs::write(
        setup.dir.path().join("spin.toml"),
        "name = \"spin\"\nversion = \"1.0.0\"\ncapabilities = []\n",
    )
    .unwrap();
    setup.write_config(&format!(
        "\n[serve]\ndatabase = \"runs.db\"\n\n[plugins.spin]\ncomponent = \"{}\"\nmanifest = \"spin.toml\"\nkey = \"ro\"\ncapabilities = [\"devices:read\", \"tags:read\"]\ninput = {{ attack = \"loop\" }}\n\n[plugins.spin.limits]\ntimeout_secs = 600\n",
        test_programs_artifacts::HOSTILE
    ));
    let history = setup.dir.path().join("runs.db");
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_levelhost"))
            .args(["run", "spin", "--config"])
            .arg(setup.config_path())
            .env("TEST_LEVEL_KEY", CANARY)
            .env_remove("LEVELHOST_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the run is claimed (the component compiles first).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let id = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the run never started"
            );
            if child.try_wait().unwrap().is_some() {
                let out = child.wait_with_output().unwrap();
                panic!("levelhost run ended before the signal: {:?}", text(&out));
            }
            if let Ok(h) = levelhost_serve::history::History::open(&history)
                && let Some(run) = h
                    .list(
                        Some("spin"),
                        Some(levelhost_serve::history::RunStatus::Running),
                        1,
                    )
                    .await
                    .unwrap()
                    .first()
            {
                break run.id.clone();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        crate::support::signal(&child, signal);
        let out = child.wait_with_output().unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(stderr.contains("recorded as interrupted"), "{stderr}");
        let run = levelhost_serve::history::History::open(&history)
            .unwrap()
            .get(&id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.status, "interrupted", "SIG{signal}");
        assert!(run.ended_at.is_some());
        let out = setup.levelhost(&["audit", "--run", &id, "--json"]);
        let (stdout, _) = text(&out);
        let end: serde_json::Value =
            serde_json::from_str(stdout.lines().last().expect("a run-end record")).unwrap();
        assert_eq!(end["operation"], "run");
        assert!(
            end["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("SIG{signal}"))),
            "{end}"
        );
    }
}

/// Issue 13, point 8: the small things an operator hits. A 401 names the key
/// and where it comes from; a zero limit is reported at its own line; a file
/// that is not UTF-8 is refused at its bad byte; a text file given as a
/// component is told in one line; and a closed pipe ends `levelhost` quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_errors_name_the_key_the_line_and_end_quietly_on_a_closed_pipe() {
    let setup = Setup::new().await;
    let out = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["run", "tagger", "--config"])
        .arg(setup.config_path())
        .env("TEST_LEVEL_KEY", "a-key-level-does-not-know")
        .env_remove("LEVELHOST_CONFIG")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains("Level refused key rw (env:TEST_LEVEL_KEY)"),
        "{stdout}{stderr}"
    );
    assert!(!stderr.contains("a-key-level-does-not-know"));

    setup.write_config("\n[plugins.tagger.limits]\nmax_writes = 3\ntimeout_secs = 0\n");
    let text_now = std::fs::read_to_string(setup.config_path()).unwrap();
    let line = text_now
        .lines()
        .position(|l| l.starts_with("timeout_secs = 0"))
        .unwrap()
        + 1;
    let out = setup.levelhost(&["check", "--offline"]);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(&format!(
            "levelhost.toml:{line}:16: plugin tagger: limits: timeout_secs must be at least 1"
        )),
        "{stderr}"
    );

    // An invalid base URL and a missing component are refused at their lines.
    setup.write_config("");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    std::fs::write(
        setup.config_path(),
        config.replacen("base_url = \"", "base_url = \"not a url", 1),
    )
    .unwrap();
    let (_, stderr) = text(&setup.levelhost(&["check", "--offline"]));
    assert!(
        stderr.contains("levelhost.toml:2:12: invalid Level base URL"),
        "{stderr}"
    );
    std::fs::write(
        setup.config_path(),
        config.replace(test_programs_artifacts::DEVICE_REPORT, "gone.wasm"),
    )
    .unwrap();
    let (_, stderr) = text(&setup.levelhost(&["check", "--offline"]));
    assert!(
        stderr.contains("plugin report: component") && stderr.contains("gone.wasm is not a file"),
        "{stderr}"
    );
    let line = config
        .lines()
        .position(|l| l.starts_with("component") && l.contains("device_report"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("levelhost.toml:{line}:13:")),
        "{stderr}"
    );

    let mut bytes = b"[level]\nbase_url = \"http://127.0.0.1:9\"\n# caf".to_vec();
    bytes.extend([0xe9, b'\n']);
    std::fs::write(setup.config_path(), bytes).unwrap();
    let (_, stderr) = text(&setup.levelhost(&["check"]));
    assert!(
        stderr.contains("levelhost.toml:3:6: the file is not UTF-8 text"),
        "{stderr}"
    );

    let notes = setup.dir.path().join("notes.wasm");
    std::fs::write(&notes, "just some notes\n".repeat(20)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(["run", "--sim"])
        .arg(&notes)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("not a WebAssembly file") && stderr.lines().count() == 1,
        "{stderr}"
    );

    // 3,000 audit lines, far more than a pipe holds: `audit | head -1` ends with SIGPIPE, no panic.
    setup.write_config("");
    let record = r#"{"time":"2026-12-01T00:00:00.000Z","plugin":"tagger","version":"0.1.0","digest":"sha256:x","run_id":"run_x","operation":"list-devices","targets":[],"allowed":true,"latency_ms":1}"#;
    std::fs::write(
        setup.dir.path().join("audit.jsonl"),
        format!("{record}\n").repeat(3000),
    )
    .unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' audit --config '{}' | head -1; echo \"status ${{PIPESTATUS[0]}}\" >&2",
            env!("CARGO_BIN_EXE_levelhost"),
            setup.config_path().display()
        ))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("status 141"), "{stderr}");
}

/// `levelhost replay` of a transcript, outside any configuration.
fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .arg("replay")
        .args(args)
        .env_remove("LEVELHOST_CONFIG")
        .output()
        .unwrap()
}

/// A recorded run of the stale-device tagger (group-scoped, so its scopes are
/// resolved from the recording too) replays offline with the same output,
/// plan and host calls, without a request to Level; another component
/// replayed on the same recording is shown where it parts from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_replays_offline_identically_and_a_changed_component_diverges() {
    let setup = Setup::new().await;
    // A transcript that cannot be written stops the run before it changes anything.
    let before = setup.sim.received_count();
    let nowhere = setup.dir.path().join("missing/folder/t.json");
    let out = setup.levelhost(&["run", "tagger", "--record", nowhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("cannot write the transcript there"));
    assert_eq!(setup.sim.received_count(), before);

    for (name, dry_run) in [("planned.json", true), ("made.json", false)] {
        let file = setup.dir.path().join(name);
        let file = file.to_str().unwrap();
        let mut args = vec!["run", "tagger", "--record", file];
        if dry_run {
            args.push("--dry-run");
        }
        let recorded = setup.levelhost(&args);
        let (recorded_out, recorded_err) = text(&recorded);
        assert!(recorded.status.success(), "{recorded_err}");
        assert!(recorded_err.contains(&format!("recorded the run in {file}")));
        let transcript = std::fs::read_to_string(file).unwrap();
        assert!(!transcript.contains(CANARY), "the key is in the transcript");
        assert!(transcript.contains("\"operation\": \"tag-devices\""));

        let sent = setup.sim.received_count();
        let replayed = replay(&[file]);
        let (replayed_out, replayed_err) = text(&replayed);
        assert!(replayed.status.success(), "{replayed_err}");
        assert_eq!(replayed_out, recorded_out, "the output");
        assert!(replayed_err.contains("identical"), "{replayed_err}");
        if dry_run {
            let plan = |err: &str| -> Vec<String> {
                err.lines()
                    .skip_while(|l| !l.starts_with("Plan (dry run"))
                    .take_while(|l| l.starts_with("Plan") || l.starts_with("  "))
                    .map(str::to_owned)
                    .collect()
            };
            assert!(plan(&recorded_err).len() > 1, "{recorded_err}");
            assert_eq!(plan(&replayed_err), plan(&recorded_err));
        }
        assert_eq!(setup.sim.received_count(), sent, "replay reached Level");

        let other = replay(&[file, "--component", test_programs_artifacts::WALK_DEVICES]);
        let (_, other_err) = text(&other);
        assert_eq!(other.status.code(), Some(1), "{other_err}");
        assert!(
            other_err.contains("diverged from the recorded run")
                && other_err.contains("the host calls part at call")
                && other_err.contains("the output differs"),
            "{other_err}"
        );
        assert_eq!(setup.sim.received_count(), sent, "replay reached Level");

        // The transcript is a test fixture of `levelhost test`.
        let stale = serde_json::from_str::<serde_json::Value>(&recorded_out).unwrap()["stale"]
            .as_u64()
            .unwrap();
        let project = setup.dir.path().join(format!("project-{name}"));
        std::fs::create_dir(&project).unwrap();
        let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        std::fs::copy(
            plugins.join("stale-device-tagger/plugin.toml"),
            project.join("plugin.toml"),
        )
        .unwrap();
        std::fs::copy(
            test_programs_artifacts::STALE_DEVICE_TAGGER,
            project.join("plugin.wasm"),
        )
        .unwrap();
        std::fs::write(
            project.join("tests.toml"),
            format!(
                "[[test]]\nname = \"recorded\"\ntranscript = \"../{name}\"\n\n[test.expect]\noutput = {{ stale = {stale} }}\ndenied = []\n\n\
                 [[test]]\nname = \"wrong\"\ntranscript = \"../{name}\"\n\n[test.expect]\noutput = {{ stale = {} }}\n",
                stale + 1
            ),
        )
        .unwrap();
        let tested = Command::new(env!("CARGO_BIN_EXE_levelhost"))
            .args(["test", project.to_str().unwrap()])
            .output()
            .unwrap();
        let (tested_out, _) = text(&tested);
        assert_eq!(tested.status.code(), Some(1), "{tested_out}");
        assert!(
            tested_out.contains("test recorded ... ok")
                && tested_out.contains("test wrong ... FAILED")
                && tested_out.contains("1 passed, 1 failed"),
            "{tested_out}"
        );
        assert_eq!(setup.sim.received_count(), sent, "a test reached Level");

        // Issue 23, point 4: the case runs under plugin.toml's grant, not the
        // transcript's; one that asks for less fails, naming what the run used.
        let manifest = std::fs::read_to_string(project.join("plugin.toml"))
            .unwrap()
            .replace(
                r#"capabilities = ["devices:read", "tags:read", "tags:write"]"#,
                r#"capabilities = ["devices:read"]"#,
            );
        assert!(!manifest.contains("tags:write"), "{manifest}");
        std::fs::write(project.join("plugin.toml"), manifest).unwrap();
        let narrow = Command::new(env!("CARGO_BIN_EXE_levelhost"))
            .args(["test", project.to_str().unwrap(), "--filter", "recorded"])
            .output()
            .unwrap();
        let (narrow_out, _) = text(&narrow);
        assert_eq!(narrow.status.code(), Some(1), "{narrow_out}");
        assert!(
            narrow_out.contains("with its grant: devices:read")
                && narrow_out.contains("test recorded ... FAILED")
                && narrow_out.contains("the transcript's run used tags:read")
                && narrow_out.contains("which plugin.toml does not ask for"),
            "{narrow_out}"
        );
        if !dry_run {
            assert!(
                narrow_out.contains("used tags:write (create-tag, tag-devices)")
                    || narrow_out.contains("used tags:write (tag-devices"),
                "{narrow_out}"
            );
        }
    }
}

/// The highest resident memory of process `pid` seen while it runs, in KiB
/// (`VmHWM`, read until the process is gone).
fn peak_rss_kib(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    peak
}

/// Issue 23, point 6 (GHSA-5m8g-xhq4-4h93): a guest making millions of empty
/// writes to stdout and stderr ends at its time limit with the host's memory
/// where a guest spinning in a loop for the same time leaves it. levelhost
/// gives plugins bounded in-memory pipes, not wasmtime-wasi's
/// `AsyncWriteStream`, whose queue such writes grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millions_of_empty_writes_leave_the_hosts_memory_flat() {
    let setup = Setup::new().await;
    std::fs::write(
        setup.dir.path().join("hostile.toml"),
        "name = \"hostile\"\nversion = \"1.0.0\"\ncapabilities = []\n",
    )
    .unwrap();
    let plugin = |name: &str, attack: &str| {
        format!(
            "\n[plugins.{name}]\ncomponent = \"{}\"\nmanifest = \"hostile.toml\"\nkey = \"ro\"\ninput = {{ attack = \"{attack}\" }}\n\n[plugins.{name}.limits]\ntimeout_secs = 5\n",
            test_programs_artifacts::HOSTILE
        )
    };
    setup.write_config(&format!(
        "{}{}",
        plugin("writer", "empty-writes"),
        plugin("spinner", "loop")
    ));
    let mut peaks = Vec::new();
    let mut said = Vec::new();
    for name in ["spinner", "writer"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_levelhost"))
            .args(["run", name, "--config"])
            .arg(setup.config_path())
            .env("TEST_LEVEL_KEY", CANARY)
            .env_remove("LEVELHOST_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        peaks.push(peak_rss_kib(&mut child));
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}{stderr}");
        assert!(stderr.contains("timeout_secs"), "{name}: {stderr}");
        said.push(stderr);
    }
    let writes = said[1]
        .lines()
        .filter_map(|l| l.split("count=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    eprintln!("{writes} empty writes; peak resident memory {peaks:?} KiB (a loop, the writer)");
    assert!(
        writes >= 1_000_000,
        "only {writes} empty writes: {}",
        said[1]
    );
    let (spinner, writer) = (peaks[0], peaks[1]);
    assert!(
        writer < spinner + 64 * 1024,
        "{writes} empty writes took the host from {spinner} KiB (a loop) to {writer} KiB"
    );
}

/// Issue 23, point 8: `check` probes every key as `key check` does and
/// fails when Level refuses one or treats it otherwise than declared; with
/// `--offline` it says plainly that it did not ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probes_the_keys_and_fails_on_a_refused_or_misdeclared_one() {
    let setup = Setup::new().await;
    let out = setup.levelhost(&["check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("key rw works: read-write (as the config declares")
            && stdout.contains("key ro works: read-only (as the config declares")
            && stdout.trim_end().ends_with("OK"),
        "{stdout}"
    );
    let out = setup.levelhost(&["check", "--offline"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("keys: not probed (--offline)"), "{stdout}");

    // The read-only key's file now holds the read-write key.
    std::fs::write(setup.dir.path().join("ro.key"), CANARY).unwrap();
    let out = setup.levelhost(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the config declares key ro read-only, but Level treats it as read-write"),
        "{stderr}"
    );
    assert!(
        stdout.contains("NOT OK") && !stdout.contains(CANARY),
        "{stdout}"
    );
    let out = setup.levelhost(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ro = report["key_checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "ro")
        .unwrap()
        .clone();
    assert_eq!(ro["access"], "read-write");
    assert_eq!(ro["declared"], "read-only");

    // A key Level does not know.
    std::fs::write(setup.dir.path().join("ro.key"), "a-key-level-refuses").unwrap();
    let out = setup.levelhost(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("key ro does not work"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("a-key-level-refuses"));
}

/// Issue 23, point 10: a key file or a component that cannot be read names
/// the config line that points at it; a tag outside the scope is refused by
/// the scope, not for a capability the plugin has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_files_name_their_config_line_and_a_scope_refusal_says_so() {
    let setup = Setup::new().await;
    std::fs::remove_file(setup.dir.path().join("ro.key")).unwrap();
    let out = setup.levelhost(&["run", "report"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("key ro (") && stderr.contains("levelhost.toml:15:10): cannot read"),
        "{stderr}"
    );
    setup.write_config("");

    std::fs::write(setup.dir.path().join("notes.wasm"), "just some notes\n").unwrap();
    setup.write_config(
        "\n[plugins.notes]\ncomponent = \"notes.wasm\"\nmanifest = \"notes.toml\"\nkey = \"ro\"\n",
    );
    std::fs::write(
        setup.dir.path().join("notes.toml"),
        "name = \"notes\"\nversion = \"1.0.0\"\ncapabilities = []\n",
    )
    .unwrap();
    let out = setup.levelhost(&["check", "--offline"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("levelhost.toml:36:13") && stderr.contains("not a WebAssembly file"),
        "{stderr}"
    );

    let env = crate::support::TestEnv::new().await;
    let scopes = levelhost_core::grant::Scopes {
        tags: Some(levelhost_core::grant::TagPatterns::parse(vec!["stale*".to_owned()]).unwrap()),
        ..Default::default()
    };
    let (out, report) = env
        .call_granted(
            "create-tag",
            serde_json::json!({"name": "winners"}),
            crate::support::grant(&["tags:write"], scopes),
        )
        .await;
    assert_eq!(out["error"]["kind"], "denied", "{out}");
    let refused = report
        .audit
        .iter()
        .find(|r| !r.allowed)
        .and_then(|r| r.reason.clone())
        .unwrap_or_default();
    assert!(
        refused
            .contains("the grant's scopes refuse it: tag \"winners\" is outside the grant's tags")
            && !refused.contains("needs tags:write"),
        "{refused}"
    );
    assert_eq!(
        env.fixture()
            .tags
            .iter()
            .filter(|t| t.name == "winners")
            .count(),
        0,
        "nothing was created"
    );
}

/// Issue 23, point 9: the audit reads as a person expects: a header row,
/// one row per call (a write's "sending" record only with `--stages`, and
/// without an earlier look-up's status), devices by hostname, a failed run
/// as failed; `run --dry-run` prints its plan in words, with hostnames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_shows_one_row_per_call_with_hostnames_and_the_runs_outcome() {
    let setup = Setup::new().await;
    let out = setup.levelhost(&["run", "tagger", "--dry-run"]);
    let (_, planned) = text(&out);
    assert!(out.status.success(), "{planned}");
    let plan: Vec<&str> = planned
        .lines()
        .skip_while(|l| !l.starts_with("Plan (dry run"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.starts_with("  tag-devices: ")
                && l.contains("tag \"stale\" on 3 devices: acme-")),
        "{planned}"
    );
    assert!(
        !planned.contains("device_ids") && !planned.contains("Z2lk"),
        "{planned}"
    );

    let out = setup.levelhost(&["run", "tagger"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = setup.levelhost(&["audit", "--plugin", "tagger", "--json"]);
    let records: Vec<serde_json::Value> = text(&out)
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let run = records.last().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sending: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["run_id"] == run.as_str() && r["stage"] == "sending")
        .collect();
    assert!(!sending.is_empty(), "the live run wrote");
    assert!(
        sending.iter().all(|r| r.get("upstream_status").is_none()),
        "a sending record has no answer yet: {sending:?}"
    );

    let out = setup.levelhost(&["audit", "--run", &run]);
    let (table, _) = text(&out);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("TIME") && header.contains("VERDICT") && header.contains("TARGETS"),
        "{table}"
    );
    let tagging: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(" tag-devices "))
        .collect();
    assert_eq!(tagging.len(), 1, "one row per call: {table}");
    assert!(!tagging[0].contains("Z2lk"), "devices by hostname: {table}");
    let hostnames: Vec<String> = setup
        .sim
        .tenant()
        .to_fixture()
        .devices
        .into_iter()
        .map(|d| d.hostname)
        .collect();
    assert!(
        hostnames.iter().any(|h| tagging[0].contains(h.as_str())),
        "{table}"
    );
    assert!(table.lines().last().unwrap().contains("run ok"), "{table}");
    let out = setup.levelhost(&["audit", "--run", &run, "--stages"]);
    let (staged, _) = text(&out);
    assert_eq!(
        staged
            .lines()
            .filter(|l| l.contains(" tag-devices "))
            .count(),
        2,
        "{staged}"
    );
    assert!(staged.lines().next().unwrap().contains("STAGE"), "{staged}");

    // A run that fails is listed as failed.
    let out = setup.levelhost(&["run", "tagger", "--input", r#"{"days": 14, "tag": "vip"}"#]);
    assert_eq!(out.status.code(), Some(1));
    let out = setup.levelhost(&["audit", "--plugin", "tagger"]);
    let (table, _) = text(&out);
    let last = table.lines().last().unwrap();
    assert!(
        last.contains("run failed") && !last.contains("allowed"),
        "{table}"
    );
}
