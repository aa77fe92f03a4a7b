//! Connections: a plugin's `wasi:http` requests to other systems, through
//! the gate, against httpbin (a real HTTP service from PyPI, which echoes
//! what it receives). httpbin's own access log is the oracle of what was
//! sent; the plugin's output is the oracle of what it could read back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use levelhost_core::audit::Stage;
use levelhost_core::grant::{Grant, Limits};
use levelhost_core::route::ConnectionGrant;
use levelhost_runtime::audit::AuditLog;
use levelhost_runtime::outbound::{ConnectionSpec, Connections, Credential};
use levelhost_runtime::runner::{RunReport, RunRequest};
use serde_json::{Value, json};

use crate::support::TestEnv;

/// httpbin under gunicorn on a free loopback port, with its own access log;
/// stopped when dropped. (`.ci/run` installs it; as root a missing one is installed.)
struct Httpbin {
    child: Child,
    addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Httpbin {
    fn start() -> Self {
        let has = |module: &str| {
            Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has("httpbin") || !has("gunicorn") {
            let _ = Command::new("python3")
                .args(["-m", "pip", "install", "-q", "--break-system-packages"])
                .args(["httpbin", "gunicorn"])
                .status();
        }
        assert!(
            has("httpbin") && has("gunicorn"),
            "the connection tests need httpbin: pip install httpbin gunicorn"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let addr = crate::support::free_addr();
        let child = Command::new("python3")
            .args(["-m", "gunicorn", "--threads", "8", "-b", &addr])
            .arg("--access-logfile")
            .arg(&log)
            .args([
                "--access-logformat",
                "%(m)s %(U)s %(q)s %({authorization}i)s",
                "httpbin:app",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request httpbin received: `METHOD PATH QUERY AUTHORIZATION`.
    fn received(&self) -> Vec<String> {
        // gunicorn writes a request's line as it answers it.
        std::thread::sleep(Duration::from_millis(200));
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Httpbin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connection(name: &str, url: &str, credential: Credential, private: bool) -> ConnectionSpec {
    ConnectionSpec {
        name: name.to_owned(),
        url: url.to_owned(),
        credential,
        allow_private_network: private,
    }
}

fn routes(list: &[(&str, &[&str])]) -> levelhost_core::route::Connections {
    list.iter()
        .map(|(name, routes)| {
            (
                (*name).to_owned(),
                ConnectionGrant {
                    routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
                },
            )
        })
        .collect()
}

fn grant_of(connections: levelhost_core::route::Connections, limits: Limits) -> Grant {
    Grant {
        connections,
        limits,
        ..crate::support::grant(&[], Default::default())
    }
}

/// One request for the `outbound` guest.
fn req(method: &str, url: &str) -> Value {
    json!({ "method": method, "url": url })
}

struct Outbound {
    env: TestEnv,
    connections: Arc<Connections>,
}

impl Outbound {
    async fn new(specs: Vec<ConnectionSpec>) -> Self {
        Self {
            env: TestEnv::new().await,
            connections: Arc::new(Connections::new(specs).unwrap()),
        }
    }

    async fn run(
        &self,
        grant: Grant,
        requests: Vec<Value>,
        change: impl FnOnce(&mut RunRequest),
    ) -> RunReport {
        let plugin = self
            .env
            .runner
            .load_file(std::path::Path::new(test_programs_artifacts::OUTBOUND))
            .unwrap();
        let mut request = RunRequest {
            grant,
            connections: Some(self.connections.clone()),
            ..RunRequest::manual(json!({ "requests": requests }).to_string())
        };
        change(&mut request);
        self.env
            .runner
            .run(&plugin, self.env.client(), request)
            .await
            .unwrap()
    }
}

fn results(report: &RunReport) -> Vec<Value> {
    let output = report.outcome.as_ref().expect("the run ends ok");
    output["results"].as_array().cloned().unwrap_or_default()
}

const TOKEN: &str = "tok_3f9c2a71e5d84b06";
const PASSWORD: &str = "pw-8d1e4c7b2a90f365";
const API_KEY: &str = "ak/9+Zq~7c2e5b81d4f0";

/// Issue 25: the credential reaches httpbin, and never the plugin, even
/// when httpbin echoes it back in headers, in a JSON body, base64-encoded,
/// URL-encoded or compressed.
#[tokio::test]
async fn the_credential_reaches_the_other_system_and_never_the_plugin() {
    let bin = Httpbin::start();
    let url = bin.url();
    let t = Outbound::new(vec![
        connection(
            "echo",
            &url,
            Credential::Bearer {
                token: TOKEN.into(),
            },
            true,
        ),
        connection(
            "basic",
            &url,
            Credential::Basic {
                username: "levelhost".into(),
                password: PASSWORD.into(),
            },
            true,
        ),
        connection(
            "keyed",
            &url,
            Credential::Query {
                param: "api_key".into(),
                value: API_KEY.into(),
            },
            true,
        ),
        connection(
            "headers",
            &url,
            Credential::Headers(vec![("X-Api-Secret".into(), TOKEN.into())]),
            true,
        ),
    ])
    .await;
    let everything = &["GET /**", "POST /anything/**"];
    let grant = grant_of(
        routes(&[
            ("echo", everything),
            ("basic", everything),
            ("keyed", everything),
            ("headers", everything),
        ]),
        Limits::default(),
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("Bearer {TOKEN}"));
    let report = t
        .run(
            grant,
            vec![
                req("GET", "http://echo/headers"),
                json!({"method": "POST", "url": "http://echo/anything/tickets", "body": "{\"summary\":\"disk\"}"}),
                req("GET", "http://echo/gzip"),
                req("GET", "http://echo/deflate"),
                req("GET", "http://echo/brotli"),
                req("GET", &format!("http://echo/base64/{b64}")),
                req("GET", "http://basic/anything"),
                req("GET", "http://keyed/anything?x=1"),
                req("GET", "http://headers/headers"),
            ],
            |_| {},
        )
        .await;
    let results = results(&report);
    assert_eq!(results.len(), 9);
    for r in &results {
        assert!(r.get("error").is_none(), "{r}");
    }
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[1]["status"], 200, "{}", results[1]);
    assert!(results[1]["body"].as_str().unwrap().contains("disk"));
    // The answers echo the credential; the plugin reads it scrubbed.
    let everything = serde_json::to_string(&report.outcome.as_ref().unwrap()).unwrap()
        + &report.stdout
        + &report.stderr
        + &serde_json::to_string(&report.audit).unwrap();
    let encoded_password =
        base64::engine::general_purpose::STANDARD.encode(format!("levelhost:{PASSWORD}"));
    for secret in [
        TOKEN,
        PASSWORD,
        API_KEY,
        &encoded_password,
        "ak%2F9%2BZq%7E7c2e5b81d4f0",
        "ak%2F9%2BZq~7c2e5b81d4f0",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} reached the plugin: {everything}"
        );
    }
    for (i, result) in results.iter().enumerate() {
        assert!(
            result["body"].as_str().unwrap().contains("[redacted]"),
            "answer {i} was echoed without the credential being scrubbed: {result}"
        );
    }
    // It did reach httpbin, as each connection sends it. (gunicorn logs a
    // request once answered, so the lines' order is not the requests'.)
    let received = bin.received();
    assert_eq!(received.len(), 9, "{received:?}");
    let line = |start: &str| {
        received
            .iter()
            .find(|l| l.starts_with(start))
            .cloned()
            .unwrap_or_default()
    };
    let bearer = format!("Bearer {TOKEN}");
    assert!(line("GET /gzip").ends_with(&bearer), "{received:?}");
    assert_eq!(
        received.iter().filter(|l| l.ends_with(&bearer)).count(),
        6,
        "{received:?}"
    );
    assert!(
        line("GET /anything  ").ends_with(&format!("Basic {encoded_password}")),
        "{received:?}"
    );
    assert!(
        line("GET /anything x=1").contains("api_key=ak%2F9%2BZq%7E7c2e5b81d4f0"),
        "{received:?}"
    );
    // Every request has its audit record, without a secret.
    let http: Vec<_> = report
        .audit
        .iter()
        .filter(|r| r.operation == "http-request")
        .collect();
    assert_eq!(http.len(), 9);
    assert!(
        http.iter()
            .all(|r| r.allowed && r.upstream_status == Some(200))
    );
    assert!(
        http[1]
            .targets
            .contains(&"http:POST /anything/tickets".to_owned())
    );
    assert!(http.iter().all(|r| r.bytes.unwrap_or(0) > 0));
}

/// Issue 25: a hostile plugin tries every trick on the routes and the
/// network rules; each is refused with a `denied` error naming the route
/// or rule, and httpbin receives nothing.
#[tokio::test]
async fn every_trick_is_denied_and_nothing_is_sent() {
    let bin = Httpbin::start();
    let url = bin.url();
    let port = bin.addr.rsplit(':').next().unwrap().to_owned();
    let t = Outbound::new(vec![
        connection(
            "echo",
            &url,
            Credential::Bearer {
                token: TOKEN.into(),
            },
            true,
        ),
        connection("other", &url, Credential::None, true),
        // Plain http on a public network: a plugin's https is never sent over it.
        connection("plain", "http://plain.example", Credential::None, false),
        // A name resolving to loopback, without the switch.
        connection(
            "local",
            &format!("http://localhost:{port}"),
            Credential::None,
            false,
        ),
        // The cloud metadata address, without the switch.
        connection(
            "metadata",
            "http://169.254.169.254/latest",
            Credential::None,
            false,
        ),
    ])
    .await;
    let grant = grant_of(
        routes(&[
            (
                "echo",
                &["POST /anything/tickets", "GET /anything/tickets/*"],
            ),
            ("plain", &["GET /anything/**"]),
            ("local", &["GET /**"]),
            ("metadata", &["GET /**"]),
        ]),
        Limits::default(),
    );
    let with = |method: &str, url: &str, headers: Value| json!({"method": method, "url": url, "headers": headers});
    let tricks: Vec<(Value, &str)> = vec![
        (
            req("GET", "http://echo/status/200"),
            "is not a route of connection echo",
        ),
        (
            req("DELETE", "http://echo/anything/tickets/1"),
            "is not a route of connection echo",
        ),
        (
            req("GET", "http://echo/anything/tickets/1/../../../status/200"),
            ". and .. segments",
        ),
        (req("GET", "http://echo/anything/tickets/%2e%2e"), "encoded"),
        (
            req("GET", "http://echo/anything/tickets/..%2fstatus"),
            "encoded",
        ),
        (
            req("GET", "http://echo/anything/tickets/%2E%2e%5cx"),
            "encoded",
        ),
        (
            req("GET", "http://echo/anything//tickets/1"),
            "empty segments",
        ),
        (
            req("POST", "http://echo/anything/tickets?_method=DELETE"),
            "overrides the method",
        ),
        (
            with(
                "POST",
                "http://echo/anything/tickets",
                json!([["X-HTTP-Method-Override", "DELETE"]]),
            ),
            "x-http-method-override",
        ),
        (
            with(
                "POST",
                "http://echo/anything/tickets",
                json!([["Authorization", "Bearer mine"]]),
            ),
            "authorization",
        ),
        (
            with(
                "POST",
                "http://echo/anything/tickets",
                json!([["Cookie", "session=1"]]),
            ),
            "cookie",
        ),
        (
            req("GET", "http://other/anything/tickets/1"),
            "names no connection \"other\"",
        ),
        (
            req("GET", "https://evil.example/anything/tickets/1"),
            "is not a connection of this host",
        ),
        (
            req(
                "GET",
                &format!("https://127.0.0.1:{port}/anything/tickets/1"),
            ),
            "no user, password or port",
        ),
        (
            req("GET", "https://127.0.0.1/anything/tickets/1"),
            "not a connection",
        ),
        (
            req("GET", "http://user:pw@echo/anything/tickets/1"),
            "no user, password or port",
        ),
        (
            req("GET", "http://echo:8443/anything/tickets/1"),
            "no user, password or port",
        ),
        (
            req("GET", "https://plain/anything/x"),
            "never sent over http",
        ),
        (
            req("GET", "http://local/get"),
            "127.0.0.1, a loopback address",
        ),
        (
            req("GET", "http://metadata/meta-data"),
            "link-local (cloud metadata)",
        ),
        (
            with(
                "POST",
                "http://echo/anything/tickets",
                json!([["X-Evil", "a\r\nHost: evil"]]),
            ),
            "refused",
        ),
    ];
    let report = t
        .run(
            grant,
            tricks.iter().map(|(r, _)| r.clone()).collect(),
            |_| {},
        )
        .await;
    let results = results(&report);
    for ((request, why), result) in tricks.iter().zip(&results) {
        let error = result["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(why) && (error.starts_with("denied") || error.contains("header")),
            "{request} should be refused for {why:?}, got {result}"
        );
    }
    let received = bin.received();
    assert!(received.is_empty(), "httpbin received: {received:?}");
    let denied: Vec<_> = report
        .audit
        .iter()
        .filter(|r| r.operation == "http-request")
        .collect();
    // Every request the host saw (all but the one the guest's own HTTP
    // library refused to build) is audited as denied, with its reason.
    assert_eq!(denied.len(), tricks.len() - 1);
    assert!(
        denied
            .iter()
            .all(|r| !r.allowed && r.reason.as_deref().unwrap_or("").contains("denied"))
    );
}

/// Issue 25: a redirect is handed to the plugin, never followed; an answer
/// over `max_response_kb` is cut there; a slow answer ends at the request's
/// timeout, or at the run's deadline, each with its audit record.
#[tokio::test]
async fn redirects_stay_unfollowed_large_answers_are_cut_and_slow_ones_end_in_time() {
    let bin = Httpbin::start();
    let t = Outbound::new(vec![connection("echo", &bin.url(), Credential::None, true)]).await;
    let limits = Limits {
        max_response_kb: 64,
        http_timeout_secs: 1,
        ..Limits::default()
    };
    let grant = grant_of(routes(&[("echo", &["GET /**"])]), limits);
    let target = format!("{}/get", bin.url());
    let report = t
        .run(
            grant.clone(),
            vec![
                req("GET", &format!("http://echo/redirect-to?url={target}")),
                req("GET", "http://echo/bytes/60000"),
                req("GET", "http://echo/bytes/100000"),
                req("GET", "http://echo/stream-bytes/200000"),
                req("GET", "http://echo/delay/5"),
            ],
            |_| {},
        )
        .await;
    let r = results(&report);
    assert_eq!(r[0]["status"], 302, "{}", r[0]);
    assert_eq!(r[1]["status"], 200);
    for cut in [&r[2], &r[3]] {
        assert!(
            cut["error"]
                .as_str()
                .unwrap_or_default()
                .contains("ResponseBodySize"),
            "{cut}"
        );
    }
    assert!(r[4]["error"].is_string(), "{}", r[4]);
    let audit: Vec<_> = report
        .audit
        .iter()
        .filter(|r| r.operation == "http-request")
        .collect();
    assert!(
        audit[2]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("max_response_kb")
    );
    assert!(
        audit[4]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("echo failed"),
        "{:?}",
        audit[4]
    );
    let received = bin.received();
    assert!(
        received.iter().all(|l| !l.starts_with("GET /get ")),
        "{received:?}"
    );

    // A run whose deadline comes first: the request is recorded as cut off.
    let slow = Grant {
        limits: Limits {
            timeout_secs: 2,
            ..Limits::default()
        },
        ..grant
    };
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let report = t
        .run(slow, vec![req("GET", "http://echo/delay/8")], |r| {
            r.audit = Some(AuditLog::open(&audit_path).unwrap());
        })
        .await;
    assert!(report.outcome.is_err(), "{:?}", report.outcome);
    let cut: Vec<_> = report
        .audit
        .iter()
        .filter(|r| r.operation == "http-request")
        .collect();
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(cut[0].stage, Stage::CutOff);
    let file = std::fs::read_to_string(&audit_path).unwrap();
    assert!(
        file.contains("\"cut_off\"") || file.contains("cut off"),
        "{file}"
    );
}

/// Issue 25: a dry run sends reads and plans writes without sending them;
/// the approved plan then allows exactly its writes (same method, path and
/// body), and nothing else.
#[tokio::test]
async fn a_dry_run_plans_writes_and_an_approved_plan_holds_them_exactly() {
    let bin = Httpbin::start();
    let t = Outbound::new(vec![connection("echo", &bin.url(), Credential::None, true)]).await;
    let grant = grant_of(
        routes(&[("echo", &["GET /get", "POST /anything/tickets"])]),
        Limits::default(),
    );
    let create = json!({"method": "POST", "url": "http://echo/anything/tickets", "body": "{\"summary\":\"disk\"}"});
    let planned = t
        .run(
            grant.clone(),
            vec![req("GET", "http://echo/get"), create.clone()],
            |r| r.dry_run = true,
        )
        .await;
    let r = results(&planned);
    assert_eq!(r[0]["status"], 200);
    assert_eq!(r[1]["status"], 202);
    assert_eq!(planned.plan.len(), 1, "{:?}", planned.plan);
    assert_eq!(planned.plan[0].operation, "http-request");
    assert_eq!(planned.plan[0].request["body"]["summary"], "disk");
    let received = bin.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].starts_with("GET /get"));

    let other = json!({"method": "POST", "url": "http://echo/anything/tickets", "body": "{\"summary\":\"wipe\"}"});
    let plan = planned.plan.clone();
    let applied = t
        .run(grant, vec![other, create], |r| r.approved = Some(plan))
        .await;
    let r = results(&applied);
    assert!(
        r[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not in the approved plan"),
        "{}",
        r[0]
    );
    assert_eq!(r[1]["status"], 200, "{}", r[1]);
    assert!(applied.unapplied.is_empty());
    let received = bin.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(received[1].starts_with("POST /anything/tickets"));
}

/// Writes a config in `dir` whose plugin `notify` (the `outbound` guest) may
/// call `chat` (a secret URL) on `POST /` only; `extra` is appended.
fn write_config(dir: &std::path::Path, sim: &str, extra: &str) -> PathBuf {
    std::fs::write(
        dir.join("notify.toml"),
        "name = \"notify\"\nversion = \"1.0.0\"\ndescription = \"Posts to chat.\"\ncapabilities = []\n",
    )
    .unwrap();
    chat_config(
        dir,
        sim,
        "notify",
        test_programs_artifacts::OUTBOUND,
        &dir.join("notify.toml"),
        extra,
    )
}

/// Runs `levelhost ARGS` with the simulator's read-only key in
/// `TEST_LEVEL_KEY` and `chat_url` in `TEST_CHAT_URL` (as [`chat_config`]
/// reads them): whether it succeeded, its stdout and its stderr.
fn chat_cli(args: &[&str], sim: &level_sim::Simulator, chat_url: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(args)
        .env("TEST_LEVEL_KEY", sim.read_only_key())
        .env("TEST_CHAT_URL", chat_url)
        .env_remove("LEVELHOST_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes a config in `dir` whose plugin `plugin` (`component`, described by
/// `manifest`) may call `chat` (a secret URL, from `TEST_CHAT_URL`) on
/// `POST /` only, with a read-only key from `TEST_LEVEL_KEY`; `extra` is appended.
fn chat_config(
    dir: &std::path::Path,
    sim: &str,
    plugin: &str,
    component: &str,
    manifest: &std::path::Path,
    extra: &str,
) -> PathBuf {
    let config = dir.join("levelhost.toml");
    std::fs::write(
        &config,
        format!(
            r#"[level]
base_url = "{sim}"

[audit]
path = "audit.jsonl"

[trust]
allow_unsigned = true

[keys.ro]
source = "env:TEST_LEVEL_KEY"
access = "read-only"

[connections.chat]
auth = "secret-url"
url = "env:TEST_CHAT_URL"
allow_private_network = true

[plugins.{plugin}]
component = "{component}"
manifest = "{manifest}"
key = "ro"

[plugins.{plugin}.connections.chat]
routes = ["POST /"]
{extra}"#,
            manifest = manifest.display(),
        ),
    )
    .unwrap();
    config
}

/// Issue 25: a connection in `levelhost.toml` whose whole URL is the
/// secret (a chat incoming webhook): `check` says what the grant allows in
/// words without the secret, `run` posts through it, the secret never
/// appears in any output; a grant naming an unknown connection or a bad
/// route is refused where it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_url_connection_from_the_config_posts_and_stays_secret() {
    let bin = Httpbin::start();
    let sim = crate::support::simulator(level_sim::Simulator::seeded(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_path = "services/T0001/B0002/Xs3cr3tW3bh00kP4th";
    let chat_url = format!("{}/anything/{secret_path}", bin.url());
    let config = write_config(dir.path(), &sim.base_url(), "");
    let levelhost = |args: &[&str]| {
        let config = config.to_str().unwrap();
        let (ok, out, err) = chat_cli(&[args, &["--config", config]].concat(), &sim, &chat_url);
        (ok, out + &err)
    };
    let (ok, text) = levelhost(&["check", "--offline"]);
    assert!(ok, "{text}");
    assert!(text.contains("can call chat: POST /"), "{text}");
    assert!(text.contains("/[secret] (secret-url credential"), "{text}");
    assert!(!text.contains("Xs3cr3t"), "{text}");

    let input = json!({"requests": [
        {"method": "POST", "url": "http://chat/", "body": "{\"text\":\"Disk full on ws-1\"}"},
        {"method": "POST", "url": "http://chat/other", "body": "{}"},
    ]})
    .to_string();
    let (ok, text) = levelhost(&["run", "notify", "--input", &input]);
    assert!(ok, "{text}");
    assert!(!text.contains("Xs3cr3t"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(text.contains("is not a route of connection chat"), "{text}");
    let received = bin.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(
        received[0].starts_with(&format!("POST /anything/{secret_path}")),
        "{received:?}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"http-request\"") && !audit.contains("Xs3cr3t"),
        "{audit}"
    );

    // Every kind of credential is described by kind, never by value.
    std::fs::write(dir.path().join("halo.secret"), "H4loCl1entS3cret").unwrap();
    std::fs::write(dir.path().join("at.secret"), "AutotaskS3cretValue").unwrap();
    let halo = dir.path().join("halo.secret");
    let at = dir.path().join("at.secret");
    write_config(
        dir.path(),
        &sim.base_url(),
        &format!(
            r#"
[connections.psa]
url = "https://acme.halopsa.example/api"
auth = "oauth2"
token_url = "https://acme.halopsa.example/auth/token"
client_id = "levelhost"
client_secret = "file:{halo}"
scope = "all"

[connections.autotask]
url = "https://webservices.autotask.example/atservicesrest"
auth = "headers"
headers = {{ ApiIntegrationCode = "file:{at}", UserName = "file:{at}", Secret = "file:{at}" }}
"#,
            halo = halo.display(),
            at = at.display(),
        ),
    );
    let (ok, text) = levelhost(&["check", "--offline"]);
    assert!(ok, "{text}");
    for line in [
        "connection psa: https://acme.halopsa.example/api (oauth2 credential)",
        "connection autotask: https://webservices.autotask.example/atservicesrest (headers credential)",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(
        !text.contains("H4lo") && !text.contains("AutotaskS3cret"),
        "{text}"
    );

    for (extra, problem) in [
        (
            "[plugins.notify.connections.psa]\nroutes = [\"GET /x\"]\n",
            "connection \"psa\" is not defined under [connections]",
        ),
        (
            "[connections.bad]\nurl = \"https://psa.example\"\nauth = \"bearer\"\ntoken = \"plain-text-token\"\n",
            "token must be env:VARIABLE or file:PATH",
        ),
    ] {
        write_config(dir.path(), &sim.base_url(), extra);
        let (ok, text) = levelhost(&["check", "--offline"]);
        assert!(
            !ok && text.contains(problem) && text.contains("levelhost.toml:"),
            "{text}"
        );
    }
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("routes = [\"POST /\"]", "routes = [\"POST /../admin\"]"),
    )
    .unwrap();
    let (ok, text) = levelhost(&["check", "--offline"]);
    assert!(
        !ok && text.contains(". and .. segments are refused") && text.contains("levelhost.toml:"),
        "{text}"
    );
}

/// Issue 25: an OAuth2 client-credentials connection: the host fetches the
/// token from the token endpoint (httpbin's `/response-headers`, which
/// answers with the `access_token` it is given), sends it as a bearer
/// token, and scrubs it from what the plugin reads.
#[tokio::test]
async fn an_oauth2_connection_fetches_its_token_and_keeps_it_from_the_plugin() {
    let bin = Httpbin::start();
    let issued = "oauth-token-5b2e9c14d7a3";
    let t = Outbound::new(vec![connection(
        "psa",
        &bin.url(),
        Credential::OAuth2 {
            token_url: format!(
                "{}/response-headers?access_token={issued}&token_type=bearer",
                bin.url()
            ),
            client_id: "levelhost".into(),
            client_secret: "client-secret-0c7d1f3a".into(),
            scope: Some("all".into()),
        },
        true,
    )])
    .await;
    let grant = grant_of(routes(&[("psa", &["GET /headers"])]), Limits::default());
    let report = t
        .run(
            grant,
            vec![
                req("GET", "http://psa/headers"),
                req("GET", "http://psa/headers"),
            ],
            |_| {},
        )
        .await;
    let r = results(&report);
    assert_eq!(r[0]["status"], 200, "{}", r[0]);
    let output = serde_json::to_string(&r).unwrap();
    assert!(
        !output.contains(issued) && !output.contains("client-secret-0c7d1f3a"),
        "{output}"
    );
    assert!(output.contains("Bearer [redacted]"), "{output}");
    let received = bin.received();
    // One token request, then both requests with the token it gave.
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(
        received
            .iter()
            .any(|l| l.starts_with("POST /response-headers"))
    );
    let bearer = format!("Bearer {issued}");
    assert_eq!(
        received
            .iter()
            .filter(|l| l.starts_with("GET /headers") && l.ends_with(&bearer))
            .count(),
        2,
        "{received:?}"
    );
}

/// Issue 25: the alert-to-chat example (its Rust build) posts an active
/// alert to a chat webhook (httpbin standing in for Teams) through a
/// secret-URL connection, under exactly its route; `--record` keeps the
/// exchange without the secret, and `replay` answers it again with nothing
/// sent (httpbin's log is the oracle); a replay of a changed request names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_to_chat_posts_an_alert_and_its_recording_replays_without_sending() {
    let bin = Httpbin::start();
    let sim = crate::support::simulator(level_sim::Simulator::seeded(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_path = "services/T0001/B0002/Al3rtS3cr3tP4th";
    let chat_url = format!("{}/anything/{secret_path}", bin.url());
    let manifest = std::path::absolute(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/alert-to-chat/plugin.toml"
    ))
    .unwrap();
    let config = chat_config(
        dir.path(),
        &sim.base_url(),
        "alert-to-chat",
        test_programs_artifacts::ALERT_TO_CHAT,
        &manifest,
        "",
    );
    let levelhost = |args: &[&str]| chat_cli(args, &sim, &chat_url);
    let event = json!({"event": {
        "event_type": "alert_active",
        "event_id": "e-1",
        "occurred_at": "2026-12-03T09:00:00.000Z",
        "data": {"id": "A1", "device_id": "D1", "device_hostname": "ws-1", "name": "Disk almost full",
                 "description": "C: is 95% full", "severity": "critical", "is_resolved": false},
    }})
    .to_string();
    let recording = dir.path().join("chat.json");
    let (ok, out, err) = levelhost(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "alert-to-chat",
        "--input",
        &event,
        "--record",
        recording.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let output: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        output,
        json!({"posted": true, "text": "[critical] Disk almost full on ws-1: C: is 95% full"})
    );
    let received = bin.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(
        received[0].starts_with(&format!("POST /anything/{secret_path}")),
        "{received:?}"
    );
    assert!(!err.contains("Al3rtS3cr3t") && !out.contains("Al3rtS3cr3t"));

    // The transcript holds the exchange, with httpbin's echo of the secret URL scrubbed.
    let text = std::fs::read_to_string(&recording).unwrap();
    assert!(!text.contains("Al3rtS3cr3t"), "{text}");
    let transcript: Value = serde_json::from_str(&text).unwrap();
    let http = transcript["http"].as_array().unwrap();
    assert_eq!(http.len(), 1, "{text}");
    assert_eq!(
        (
            &http[0]["connection"],
            &http[0]["method"],
            &http[0]["path"],
            &http[0]["status"]
        ),
        (&json!("chat"), &json!("POST"), &json!("/"), &json!(200))
    );
    assert_eq!(
        http[0]["request"],
        json!({"text": "[critical] Disk almost full on ws-1: C: is 95% full"})
    );

    // Replayed: the same run, answered from the transcript, nothing sent.
    let (ok, out, err) = levelhost(&["replay", recording.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert_eq!(bin.received().len(), 1, "the replay sent a request");

    // A recording whose request differs from what the plugin sends now: the
    // replay names the request it had no answer for, and still sends nothing.
    let mut changed = transcript.clone();
    changed["http"][0]["request"] = json!({"text": "something else"});
    std::fs::write(&recording, changed.to_string()).unwrap();
    let (ok, out, err) = levelhost(&["replay", recording.to_str().unwrap()]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("chat POST /"), "{err}");
    assert_eq!(bin.received().len(), 1, "the replay sent a request");
}
