//! Plans that wait for a person: a tagger's plan over its policy waits,
//! and once approved only that plan is applied, once; rejected and expired
//! plans apply nothing; a plan the world has moved away from diverges; and
//! a `serve` killed while a plan waits loses nothing. The oracle is the
//! simulator's state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::free_addr;
use level_api::model::Group;
use level_sim::{SimConfig, Simulator, Tenant};
use serde_json::Value;

const KEY: &str = "approvals-test-key";
const HQ: &str = "grp_approvals_hq";
const OTHER: &str = "grp_approvals_other";
/// Stale devices in the tagger's group.
const STALE_IN_SCOPE: usize = 37;

/// A config with taggers under approval policies, and a simulator whose
/// organization has 37 stale devices in group "Approvals HQ" and one more
/// in "Approvals Other".
struct Setup {
    dir: tempfile::TempDir,
    sim: Simulator,
    /// The stale devices in scope.
    stale: BTreeSet<String>,
    /// The stale device outside it.
    outsider: String,
}

impl Setup {
    async fn new(serve_addr: &str) -> Self {
        let mut fixture = Simulator::seeded_with(80).to_fixture();
        for (id, name) in [(HQ, "Approvals HQ"), (OTHER, "Approvals Other")] {
            fixture.groups.push(Group {
                id: id.to_owned(),
                name: name.to_owned(),
                ..Group::default()
            });
        }
        let long_ago =
            level_api::clock::timestamp(chrono::Utc::now() - chrono::TimeDelta::days(90));
        let mut stale = BTreeSet::new();
        let mut outsider = String::new();
        for (i, device) in fixture.devices.iter_mut().enumerate() {
            device.online = true;
            device.tags.retain(|t| !t.starts_with("stale"));
            if i <= STALE_IN_SCOPE {
                let group = if i < STALE_IN_SCOPE { HQ } else { OTHER };
                device.group_id = Some(group.to_owned());
                device.online = false;
                device.last_seen_at = Some(long_ago.clone());
                if i < STALE_IN_SCOPE {
                    stale.insert(device.id.clone());
                } else {
                    outsider = device.id.clone();
                }
            }
        }
        fixture.tags.retain(|t| !t.name.starts_with("stale"));
        let tenant = Tenant::from_fixture(fixture).unwrap();
        let config = SimConfig {
            read_write_key: KEY.to_owned(),
            ..SimConfig::default()
        };
        let sim = Simulator::start(config, tenant).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins/stale-device-tagger/plugin.toml");
        let tagger = |name: &str, policy: &str| {
            format!(
                r#"
[plugins.{name}]
component = "{component}"
manifest = "{manifest}"
key = "rw"
capabilities = ["devices:read", "tags:read", "tags:write"]
input = {{ days = 30 }}

[plugins.{name}.scopes]
groups = ["Approvals HQ"]

[plugins.{name}.approval]
{policy}
"#,
                component = test_programs_artifacts::STALE_DEVICE_TAGGER,
                manifest = manifest.display(),
            )
        };
        let text = format!(
            r#"[level]
base_url = "{base}"

[serve]
addr = "{serve_addr}"
database = "runs.db"
shutdown_grace_secs = 1

[console]
addr = "127.0.0.1:0"

[trust]
allow_unsigned = true

[keys.rw]
source = "file:key.txt"
access = "read-write"
{tagger}{short}{lenient}"#,
            base = sim.base_url(),
            tagger = tagger("tagger", "devices_changed_over = 20"),
            short = tagger("short-lived", "devices_changed_over = 20\nttl_secs = 1"),
            lenient = tagger("lenient", "devices_changed_over = 50\ndeletes = true"),
        );
        std::fs::write(dir.path().join("levelhost.toml"), text).unwrap();
        std::fs::write(dir.path().join("key.txt"), KEY).unwrap();
        Self {
            dir,
            sim,
            stale,
            outsider,
        }
    }

    /// Adds a plugin running the `api_call` test program with `input`, under
    /// an approval `policy`, and a manifest asking for `capabilities`.
    fn add_api_call(&self, name: &str, capabilities: &[&str], input: Value, policy: &str) {
        let caps = serde_json::to_string(capabilities).unwrap();
        std::fs::write(
            self.dir.path().join(format!("{name}.toml")),
            format!("name = \"{name}\"\nversion = \"0.1.0\"\ncapabilities = {caps}\n"),
        )
        .unwrap();
        let input =
            toml::to_string(&serde_json::from_value::<toml::Table>(input).unwrap()).unwrap();
        let section = format!(
            "\n[plugins.{name}]\ncomponent = \"{component}\"\nmanifest = \"{name}.toml\"\nkey = \"rw\"\ncapabilities = {caps}\n\n[plugins.{name}.input]\n{input}\n[plugins.{name}.approval]\n{policy}\n",
            component = test_programs_artifacts::API_CALL,
        );
        let mut text = std::fs::read_to_string(self.config()).unwrap();
        text.push_str(&section);
        std::fs::write(self.config(), text).unwrap();
    }

    /// Runs `plugin`, expecting its plan to wait; returns the run id and what `run` said.
    fn waits(&self, plugin: &str) -> (String, String) {
        let out = self.levelhost(&["run", plugin]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
        let answer: Value = serde_json::from_str(&stdout).unwrap();
        (answer["run"].as_str().unwrap().to_owned(), stderr)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("levelhost.toml")
    }

    fn levelhost(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_levelhost"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env_remove("LEVELHOST_CONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    fn serve(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_levelhost"))
            .args(["serve", "--config"])
            .arg(self.config())
            .env_remove("LEVELHOST_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Runs `plugin`, whose plan must wait; returns the run id.
    fn plan_waits(&self, plugin: &str) -> String {
        let out = self.levelhost(&["run", plugin]);
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(3),
            "a waiting plan exits 3: {stdout}{stderr}"
        );
        assert!(
            stderr.contains("37 devices changed, over the policy's 20"),
            "{stderr}"
        );
        let answer: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(answer["status"], "awaiting-approval");
        answer["run"].as_str().unwrap().to_owned()
    }

    /// The devices the simulator has tagged `stale`.
    fn tagged(&self) -> BTreeSet<String> {
        self.sim
            .tenant()
            .to_fixture()
            .devices
            .into_iter()
            .filter(|d| d.tags.iter().any(|t| t == "stale"))
            .map(|d| d.id)
            .collect()
    }

    fn run(&self, id: &str) -> Value {
        let out = self.levelhost(&["runs", "show", id]);
        assert!(out.status.success(), "{:?}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("levelhost-audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Live (not planned) tag-devices calls the gate allowed for `run`.
    fn applied_writes(&self, run: &str) -> usize {
        self.audit()
            .iter()
            .filter(|r| {
                r["run_id"] == run
                    && r["operation"] == "tag-devices"
                    && r["allowed"] == true
                    && r["dry_run"] == false
                    && r.get("stage").is_none()
            })
            .count()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_plan_applies_exactly_its_37_devices_once() {
    let setup = Setup::new(&free_addr()).await;
    let check = setup.levelhost(&["check", "--offline"]);
    let (stdout, stderr) = text(&check);
    assert!(check.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("approval: runs first as a dry run; a plan that changes more than 20 devices waits for a person"),
        "{stdout}"
    );

    let run = setup.plan_waits("tagger");
    assert!(
        setup.tagged().is_empty(),
        "nothing is applied while the plan waits"
    );

    let out = setup.levelhost(&["approvals", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let waiting: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(waiting.as_array().unwrap().len(), 1, "{waiting:#}");
    assert_eq!(waiting[0]["run"], run.as_str());
    assert_eq!(waiting[0]["devices_changed"], STALE_IN_SCOPE);
    let hostnames: Vec<String> = setup
        .stale
        .iter()
        .map(|id| {
            setup
                .sim
                .tenant()
                .get_device(id, &Default::default())
                .unwrap()
                .hostname
        })
        .collect();
    let words: Vec<&str> = waiting[0]["plan_in_words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(words[0], "create-tag: tag \"stale\"");
    assert!(
        words[1].starts_with("tag-devices: new tag \"stale\" on 37 devices: ")
            && words[1].ends_with("and 29 more"),
        "{words:?}"
    );
    let shown = hostnames
        .iter()
        .filter(|h| words[1].contains(h.as_str()))
        .count();
    assert_eq!(shown, 8, "the plan names devices by hostname: {words:?}");
    let human = text(&setup.levelhost(&["approvals"])).0;
    assert!(
        human.contains(&run) && human.contains("waits because: 37 devices changed"),
        "{human}"
    );

    let out = setup.levelhost(&[
        "approve",
        &run,
        "--by",
        "alice",
        "--reason",
        "checked the list",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let again = setup.levelhost(&["approve", &run, "--by", "mallory"]);
    assert!(!again.status.success());
    assert!(
        text(&again)
            .1
            .contains("is approved, not awaiting approval"),
        "{:?}",
        text(&again)
    );
    assert!(
        setup.tagged().is_empty(),
        "approving applies nothing by itself"
    );

    let out = setup.levelhost(&["apply", &run]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        setup.tagged(),
        setup.stale,
        "exactly the planned devices are tagged"
    );
    let twice = setup.levelhost(&["apply", &run]);
    assert!(!twice.status.success());
    assert!(
        text(&twice)
            .1
            .contains("not approved; only an approved plan is applied, and only once")
    );
    assert_eq!(setup.applied_writes(&run), 1, "the plan was applied once");

    let row = setup.run(&run);
    assert_eq!(row["status"], "ok", "{row:#}");
    assert_eq!(row["approval"]["decided_by"], "alice");
    assert_eq!(row["approval"]["reason"], "checked the list");
    assert_eq!(
        row["plan"].as_array().unwrap().len(),
        2,
        "create-tag and tag-devices: {row:#}"
    );
    let approved = setup
        .audit()
        .into_iter()
        .find(|r| r["operation"] == "approve")
        .expect("the approval is audited");
    assert_eq!(approved["run_id"], run.as_str());
    assert_eq!(approved["reason"], "approved by alice: checked the list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_expired_plans_apply_nothing_and_a_plan_within_the_policy_applies_at_once() {
    let setup = Setup::new(&free_addr()).await;
    let rejected = setup.plan_waits("tagger");
    let out = setup.levelhost(&["reject", &rejected, "--by", "bob", "--reason", "too many"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(setup.run(&rejected)["status"], "rejected");
    let apply = setup.levelhost(&["apply", &rejected]);
    assert!(!apply.status.success());
    assert!(setup.tagged().is_empty(), "a rejected plan applies nothing");

    let expiring = setup.plan_waits("short-lived");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = setup.levelhost(&["approve", &expiring]);
    assert!(!late.status.success());
    assert!(text(&late).1.contains("expired"), "{:?}", text(&late));
    assert_eq!(setup.run(&expiring)["status"], "expired");
    assert!(setup.tagged().is_empty(), "an expired plan applies nothing");
    let audit = setup.audit();
    assert!(
        audit
            .iter()
            .any(|r| r["operation"] == "reject" && r["reason"] == "rejected by bob: too many")
    );
    assert!(
        audit
            .iter()
            .any(|r| r["operation"] == "expire" && r["run_id"] == expiring.as_str())
    );

    // 37 devices is within a policy of 50: planned, then applied straight away.
    let out = setup.levelhost(&["run", "lenient"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(setup.tagged(), setup.stale);
    let runs: Value = serde_json::from_slice(
        &setup
            .levelhost(&["runs", "--plugin", "lenient", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(runs[0]["status"], "ok");
    assert!(runs[0]["approval"].is_null(), "nobody had to approve it");
    assert_eq!(
        runs[0]["plan"].as_array().unwrap().len(),
        2,
        "the plan is kept with the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_outside_the_approved_plan_is_denied_and_the_run_diverges() {
    let setup = Setup::new(&free_addr()).await;
    let run = setup.plan_waits("tagger");
    // Between the plan and the approval, one more stale device moves into scope.
    setup
        .sim
        .tenant()
        .assign_devices(HQ, std::slice::from_ref(&setup.outsider))
        .unwrap();
    assert!(setup.levelhost(&["approve", &run]).status.success());
    let out = setup.levelhost(&["apply", &run]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("diverged from its approved plan"),
        "{stderr}"
    );
    assert!(
        setup.tagged().is_empty(),
        "the tagger tags in one batch: the batch naming the 38th device is denied whole"
    );
    let row = setup.run(&run);
    assert_eq!(row["status"], "diverged", "{row:#}");
    let denied = row["divergence"]["denied"][0].as_str().unwrap();
    assert!(denied.contains(&setup.outsider), "{denied}");
    assert_eq!(
        row["divergence"]["unapplied"][0]["operation"],
        "tag-devices"
    );
    let refused = setup
        .audit()
        .into_iter()
        .find(|r| r["run_id"] == run.as_str() && r["allowed"] == false)
        .expect("the denied write is audited");
    assert_eq!(refused["operation"], "tag-devices");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("not in the approved plan"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_serve_while_a_plan_waits_loses_nothing_and_it_applies_once() {
    let addr = free_addr();
    let setup = Setup::new(&addr).await;
    let run = setup.plan_waits("tagger");
    let healthy = || async {
        for _ in 0..100 {
            if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("serve did not start");
    };
    let mut first = setup.serve();
    healthy().await;
    first.kill().unwrap();
    first.wait().unwrap();

    let mut second = setup.serve();
    healthy().await;
    let waiting: Value =
        serde_json::from_slice(&setup.levelhost(&["approvals", "--json"]).stdout).unwrap();
    assert_eq!(
        waiting[0]["run"],
        run.as_str(),
        "still waiting after kill -9"
    );
    assert!(setup.levelhost(&["approve", &run]).status.success());
    let mut status = Value::Null;
    for _ in 0..100 {
        status = setup.run(&run)["status"].clone();
        if status == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, "ok", "serve applied the approved plan");
    assert_eq!(setup.tagged(), setup.stale);
    second.kill().unwrap();
    second.wait().unwrap();

    let mut third = setup.serve();
    healthy().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    third.kill().unwrap();
    third.wait().unwrap();
    assert_eq!(
        setup.applied_writes(&run),
        1,
        "applied once across restarts"
    );
    assert_eq!(setup.run(&run)["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_approves_with_a_csrf_token_and_serve_applies_the_plan() {
    let setup = Setup::new(&free_addr()).await;
    let run = setup.plan_waits("tagger");
    let config = level_host::config::HostConfig::load(&setup.config()).unwrap();
    let handle = level_host::loader::serve(config, None).await.unwrap();
    let console = format!("http://{}", handle.console_addr.unwrap());
    // No token in the config: serve made one, beside the history, for the operator only.
    let token_file = setup.dir.path().join("levelhost-console-token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is the owner's only");
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{console}/approvals"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&run) && html.contains("on 37 devices"),
        "{html}"
    );
    // Issue 23, point 11: one name and reason for both decisions, and the
    // navigation counts the plans waiting.
    assert_eq!(html.matches("<form").count(), 1, "{html}");
    assert!(
        html.contains(r#"name="decision" value="approve""#)
            && html.contains(r#"name="decision" value="reject""#),
        "{html}"
    );
    assert!(
        html.contains(r#"title="plans waiting for approval">1</span>"#),
        "{html}"
    );
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    // The waiting plan as a person sees it, at a laptop's width and a phone's.
    if let Some(chromium) = crate::support::chromium() {
        let profile = tempfile::tempdir().unwrap();
        let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-approval-waiting.png");
        let dom = crate::support::browse(
            &chromium,
            profile.path(),
            &format!("{console}/login?token={token}&next=/approvals"),
            &png,
        );
        assert!(dom.contains("Approve") && dom.contains("Reject"), "{dom}");
    }
    let approve = format!("{console}/approvals/{run}/decide");
    let forged = http
        .post(&approve)
        .bearer_auth(&token)
        .form(&[
            ("csrf", "guessed"),
            ("by", "mallory"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a form without the console's CSRF token"
    );
    let cross_site = http
        .post(&approve)
        .bearer_auth(&token)
        .header("Origin", "http://evil.example")
        .form(&[
            ("csrf", csrf.as_str()),
            ("by", "mallory"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403, "a form posted from another site");
    assert_eq!(setup.run(&run)["status"], "awaiting-approval");
    let approved = http
        .post(&approve)
        .bearer_auth(&token)
        .header("Origin", &console)
        .form(&[
            ("csrf", csrf.as_str()),
            ("by", "carol"),
            ("reason", "looks right"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 303);
    let mut status = Value::Null;
    for _ in 0..100 {
        status = setup.run(&run)["status"].clone();
        if status == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, "ok",
        "serve applied the plan approved in the console"
    );
    assert_eq!(setup.tagged(), setup.stale);
    assert_eq!(setup.run(&run)["approval"]["decided_by"], "carol");
    // The run's host calls name the devices they tagged by hostname.
    let html = http
        .get(format!("{console}/runs/{run}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let calls = html.split("Host calls").nth(1).unwrap_or_default();
    let hostname = setup
        .sim
        .tenant()
        .get_device(setup.stale.iter().next().unwrap(), &Default::default())
        .unwrap()
        .hostname;
    assert!(
        calls.contains(&hostname) && calls.contains(" more"),
        "{calls}"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_makes_no_second_plan_while_one_waits() {
    let setup = Setup::new(&free_addr()).await;
    let path = setup.config();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}\n[[plugins.tagger.schedules]]\ncron = \"* * * * * *\"\n"),
    )
    .unwrap();
    let config = level_host::config::HostConfig::load(&path).unwrap();
    let handle = level_host::loader::serve(config, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    handle.shutdown().await;
    let runs: Value = serde_json::from_slice(
        &setup
            .levelhost(&["runs", "--plugin", "tagger", "--json"])
            .stdout,
    )
    .unwrap();
    let runs = runs.as_array().unwrap();
    let status = |s: &str| runs.iter().filter(|r| r["status"] == s).count();
    assert_eq!(status("awaiting-approval"), 1, "{runs:#?}");
    assert!(status("skipped") >= 2, "{runs:#?}");
    assert!(
        runs.iter()
            .filter(|r| r["status"] == "skipped")
            .all(|r| r["error"]
                .as_str()
                .unwrap()
                .contains("still waits for approval")),
        "{runs:#?}"
    );
    assert!(setup.tagged().is_empty());
}

/// Issue 23, point 1: a plan approved for one automation does not let the
/// real run trigger another on the same device; the plan names the
/// automation by name. The oracle is the simulator's record of triggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_trigger_cannot_start_another_automation() {
    const WIPE: &str = "whk_wipe_disk_91c2";
    let setup = Setup::new(&free_addr()).await;
    let device = setup.stale.iter().next().unwrap().clone();
    let notes = |token: &str| {
        setup
            .sim
            .tenant()
            .update_device(
                &device,
                level_api::model::DevicePatch {
                    notes: Some(token.to_owned()),
                    ..Default::default()
                },
            )
            .unwrap();
    };
    setup.sim.tenant().add_webhook(WIPE, "Wipe disk");
    notes(level_sim::seed::SEED_WEBHOOK_TOKEN);
    setup.add_api_call(
        "trigger",
        &["devices:read", "automations:trigger"],
        serde_json::json!({"op": "trigger-webhook", "token_from_device": device, "device_ids": [device]}),
        "writes_over = 0",
    );
    let (run, said) = setup.waits("trigger");
    assert!(said.contains("automation \"Restart agent\""), "{said}");
    let out = setup.levelhost(&["approvals", "--json"]);
    let waiting: Value = serde_json::from_slice(&out.stdout).unwrap();
    let words = waiting[0]["plan_in_words"][0].as_str().unwrap();
    assert!(
        words.starts_with("trigger-webhook: automation \"Restart agent\" on 1 device"),
        "{words}"
    );

    // After the approval the plugin reaches for another automation.
    notes(WIPE);
    assert!(setup.levelhost(&["approve", &run]).status.success());
    let out = setup.levelhost(&["apply", &run]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        setup.sim.tenant().triggered().is_empty(),
        "no automation ran: {:?}",
        setup.sim.tenant().triggered()
    );
    let row = setup.run(&run);
    assert_eq!(row["status"], "diverged", "{row:#}");
    let denied = row["divergence"]["denied"][0].as_str().unwrap();
    assert!(denied.contains("automation:"), "{denied}");
    assert!(
        !std::fs::read_to_string(setup.dir.path().join("levelhost-audit.jsonl"))
            .unwrap()
            .contains(WIPE),
        "the audit names automations by fingerprint, never by token"
    );
}

/// Issue 23, point 2: a forced value clears the values below it, a delete
/// by its effect; a policy with `deletes = true` holds it for a person. The
/// oracle is the simulator's values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_value_waits_under_a_policy_that_holds_deletes() {
    let setup = Setup::new(&free_addr()).await;
    let before = setup.sim.tenant().to_fixture().custom_field_values;
    let field = before
        .iter()
        .find(|v| v.assigned_to_id.is_some())
        .expect("the seed has values below the organization")
        .custom_field_id
        .clone();
    setup.add_api_call(
        "forcer",
        &[
            "custom-fields:read",
            "custom-field-values:read",
            "custom-field-values:write",
            "custom-field-values:delete",
            "devices:read",
        ],
        serde_json::json!({"op": "set-value", "custom_field_id": field, "value": "forced", "force": true}),
        "deletes = true",
    );
    let (_, said) = setup.waits("forcer");
    assert!(
        said.contains("it deletes (set-value needing custom-field-values:delete)"),
        "{said}"
    );
    assert_eq!(
        setup.sim.tenant().to_fixture().custom_field_values,
        before,
        "nothing changed while the plan waits"
    );
}
