//! `TestEnv`: a fresh simulator on loopback, a client holding its key, and a plugin runner.

use std::path::{Path, PathBuf};
use std::process::Command;

use level_api::{ApiKey, ClientConfig, LevelClient};
use level_sim::{SimConfig, Simulator, Tenant};
use levelhost_core::grant::{Grant, Limits, Scopes};
use levelhost_runtime::runner::{PluginRunner, RunReport, RunRequest};
use serde_json::Value;

pub struct TestEnv {
    pub sim: Simulator,
    pub runner: PluginRunner,
}

impl TestEnv {
    /// The seeded organization, no rate limit.
    pub async fn new() -> Self {
        Self::with(Simulator::seeded(), |_| {}).await
    }

    pub async fn with(tenant: Tenant, configure: impl FnOnce(&mut SimConfig)) -> Self {
        Self {
            sim: simulator(tenant, configure).await,
            runner: PluginRunner::new().expect("runner"),
        }
    }

    pub fn client(&self) -> LevelClient {
        self.client_with_key(self.sim.read_write_key())
    }

    pub fn client_with_key(&self, key: &str) -> LevelClient {
        LevelClient::new(ClientConfig::new(self.sim.base_url()), ApiKey::new(key)).expect("client")
    }

    /// Runs a component file with `input` through the read-write key.
    pub async fn run(&self, component: &str, input: Value) -> RunReport {
        self.run_with(component, input, self.client()).await
    }

    pub async fn run_with(&self, component: &str, input: Value, client: LevelClient) -> RunReport {
        let plugin = self
            .runner
            .load_file(Path::new(component))
            .expect("component loads");
        self.runner
            .run(&plugin, client, RunRequest::manual(input.to_string()))
            .await
            .expect("run starts")
    }

    /// Runs a component under `grant`, with the read-write key.
    pub async fn run_granted(&self, component: &str, input: Value, grant: Grant) -> RunReport {
        let plugin = self
            .runner
            .load_file(Path::new(component))
            .expect("component loads");
        let request = RunRequest {
            grant,
            ..RunRequest::manual(input.to_string())
        };
        self.runner
            .run(&plugin, self.client(), request)
            .await
            .expect("run starts")
    }

    /// Runs `api_call` for one operation under `grant`. `api_call` imports
    /// every interface; those the grant does not cover answer `denied`.
    pub async fn call_granted(
        &self,
        op: &str,
        mut args: Value,
        grant: Grant,
    ) -> (Value, RunReport) {
        args["op"] = Value::from(op);
        let report = self
            .run_granted(test_programs_artifacts::API_CALL, args, grant)
            .await;
        (
            report.outcome.clone().expect("api_call returns a document"),
            report,
        )
    }

    /// Runs the `api_call` guest for one operation and returns its `{"ok"}` or `{"error"}` document.
    pub async fn call(&self, op: &str, mut args: Value) -> Value {
        args["op"] = Value::from(op);
        let report = self.run(test_programs_artifacts::API_CALL, args).await;
        report.outcome.expect("api_call always returns a document")
    }

    /// Like `call`, but expects success and returns the result.
    pub async fn ok(&self, op: &str, args: Value) -> Value {
        let out = self.call(op, args).await;
        assert!(out.get("error").is_none(), "{op} failed: {out}");
        out["ok"].clone()
    }

    /// Like `call`, but expects an error and returns its kind.
    pub async fn err(&self, op: &str, args: Value) -> String {
        let out = self.call(op, args).await;
        out["error"]["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{op} should have failed: {out}"))
            .to_owned()
    }

    pub fn fixture(&self) -> level_sim::Fixture {
        self.sim.tenant().to_fixture()
    }

    pub fn device_id(&self, hostname_prefix: &str) -> String {
        self.fixture()
            .devices
            .iter()
            .find(|d| d.hostname.starts_with(hostname_prefix))
            .map(|d| d.id.clone())
            .expect("device exists")
    }

    pub fn group_id(&self, name: &str) -> String {
        self.fixture()
            .groups
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.id.clone())
            .expect("group exists")
    }
}

/// A grant of `capabilities` within `scopes`.
pub fn grant(capabilities: &[&str], scopes: Scopes) -> Grant {
    Grant {
        plugin: "test".to_owned(),
        connections: Default::default(),
        capabilities: capabilities
            .iter()
            .map(|c| c.parse().expect("known capability"))
            .collect(),
        scopes,
        limits: Limits::default(),
    }
}

/// A loopback address no one listens on yet, for a `serve` or console to take.
/// A simulator of `tenant` on loopback with no rate limit, then `configure`d.
pub async fn simulator(tenant: Tenant, configure: impl FnOnce(&mut SimConfig)) -> Simulator {
    let mut config = SimConfig {
        rate_limit: None,
        ..SimConfig::default()
    };
    configure(&mut config);
    Simulator::start(config, tenant)
        .await
        .expect("simulator starts")
}

pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Waits (up to a minute: starting compiles the plugins) until `serve` at `addr` answers `/healthz`.
pub async fn wait_up(addr: &str) -> Value {
    for _ in 0..600 {
        if let Ok(answer) = reqwest::get(format!("http://{addr}/healthz")).await
            && answer.status().is_success()
            && let Ok(health) = answer.json::<Value>().await
        {
            return health;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("serve at {addr} did not come up");
}

/// Sends `signal` (`TERM`, `INT`, `HUP`, ...) to `child`.
pub fn signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {}", child.id());
}

/// Stops `child` with `signal` and checks that it exits cleanly.
pub fn stop(child: &mut std::process::Child, signal: &str) {
    self::signal(child, signal);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exits cleanly on SIG{signal}: {exit:?}");
}

/// The Chromium to test the console with: `LEVELHOST_TEST_CHROMIUM` (set by
/// `.ci/run`, where a missing one fails the test), else `chromium` on PATH;
/// `None` (the console test is skipped, saying so) when neither is there.
pub fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LEVELHOST_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| PathBuf::from("chromium"))
}

/// Loads `url` in headless Chromium: its DOM as text, and a screenshot in
/// `png` at 1280 pixels wide and another at 390 (a phone) beside it, `-390.png`.
pub fn browse(chromium: &Path, profile: &Path, url: &str, png: &Path) -> String {
    let phone = png.with_file_name(format!(
        "{}-390.png",
        png.file_stem().unwrap().to_string_lossy()
    ));
    screenshot(chromium, profile, url, &phone, "390,844");
    screenshot(chromium, profile, url, png, "1280,1000")
}

fn screenshot(chromium: &Path, profile: &Path, url: &str, png: &Path, size: &str) -> String {
    let size = format!("--window-size={size}");
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        size.as_str(),
    ];
    let dom = Command::new(chromium)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = Command::new(chromium)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(
        std::fs::metadata(png).unwrap().len() > 10_000,
        "a real screenshot"
    );
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

/// The ids of the named groups and everything below them, from the fixture
/// (`None` when the grant has no group scope).
pub fn scope_subtree(
    fixture: &level_sim::Fixture,
    names: Option<&[String]>,
) -> Option<std::collections::BTreeSet<String>> {
    let names = names?;
    let mut ids: std::collections::BTreeSet<String> = fixture
        .groups
        .iter()
        .filter(|g| names.contains(&g.name))
        .map(|g| g.id.clone())
        .collect();
    loop {
        let before = ids.len();
        for g in &fixture.groups {
            if g.parent_id.as_ref().is_some_and(|p| ids.contains(p)) {
                ids.insert(g.id.clone());
            }
        }
        if ids.len() == before {
            return Some(ids);
        }
    }
}
