//! Issue 26: the gateway, as its users run it: `levelhost client key` and
//! `levelhost gateway` as commands, real clients (curl, a Python `requests`
//! script) that only change their base URL and key, and the simulator's
//! state and answers as the oracle of what each client may see and change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::free_addr;

/// `levelhost ARGS --config CONFIG`, whatever `LEVELHOST_CONFIG` says.
fn levelhost(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_levelhost"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("LEVELHOST_CONFIG");
    command
}

/// A `levelhost gateway` process, stopped when dropped.
struct Gateway {
    child: Child,
    url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(config: &Path, addr: &str) -> Self {
        let child = levelhost(&["gateway"], config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Dropped (so killed and waited for) if it never answers.
        let gateway = Self {
            child,
            url: format!("http://{addr}/v2"),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return gateway;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gateway did not start on {addr}");
    }

    fn reload(&self) {
        crate::support::signal(&self.child, "HUP");
    }
}

/// `curl -s` with `key` in `Authorization`: the status and the body.
fn curl(method: &str, url: &str, key: &str, body: Option<&str>) -> (u16, Value) {
    let mut args = vec![
        "-s".to_owned(),
        "-X".to_owned(),
        method.to_owned(),
        "-H".to_owned(),
        format!("Authorization: {key}"),
        "-w".to_owned(),
        "\n%{http_code}".to_owned(),
    ];
    if let Some(body) = body {
        args.extend([
            "-H".to_owned(),
            "Content-Type: application/json".to_owned(),
            "-d".to_owned(),
            body.to_owned(),
        ]);
    }
    args.push(url.to_owned());
    let out = Command::new("curl").args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

/// `levelhost client key NAME`: the key it prints once.
fn client_key(config: &Path, name: &str) -> String {
    let out = levelhost(&["client", "key", name], config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn write_config(dir: &Path, sim: &level_sim::Simulator, addr: &str) -> PathBuf {
    write_config_tls(dir, sim, addr, None)
}

/// [`write_config`], serving HTTPS with `NAME.pem` and `NAME.key` when `tls` names them.
fn write_config_tls(
    dir: &Path,
    sim: &level_sim::Simulator,
    addr: &str,
    tls: Option<&str>,
) -> PathBuf {
    let tls = tls.map_or(String::new(), |name| {
        format!("tls_cert = \"{name}.pem\"\ntls_key = \"{name}.key\"\n")
    });
    std::fs::write(dir.join("rw.key"), sim.read_write_key()).unwrap();
    let config = dir.join("levelhost.toml");
    std::fs::write(
        &config,
        format!(
            r#"[level]
base_url = "{}"

[audit]
path = "audit.jsonl"

[keys.rw]
source = "file:rw.key"
access = "read-write"

[gateway]
addr = "{addr}"
{tls}
# A script for the HQ office: its devices, and tagging them.
[clients.hq]
key = "rw"
capabilities = ["devices:read", "groups:read", "tags:read", "tags:write"]

[clients.hq.scopes]
groups = ["HQ"]

# A dashboard: every device, read only.
[clients.dashboard]
key = "rw"
capabilities = ["devices:read"]
"#,
            sim.base_url()
        ),
    )
    .unwrap();
    config
}

/// Walks `/devices` as Level's n8n node does: pages of `limit`, the last id
/// as the next cursor, stopping at a short page or `has_more: false`.
fn walk_with_curl(gateway: &Gateway, key: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/devices?limit={limit}", gateway.url);
        if let Some(after) = &after {
            url.push_str(&format!("&starting_after={after}"));
        }
        let (status, page) = curl("GET", &url, key, None);
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        ids.extend(data.iter().map(|d| d["id"].as_str().unwrap().to_owned()));
        if data.len() < limit || page["has_more"] != Value::Bool(true) {
            return ids;
        }
        after = data.last().map(|d| d["id"].as_str().unwrap().to_owned());
    }
}

/// Runs a client program; what it printed, as JSON.
fn run_client(program: &str, args: &[&str]) -> Value {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const PYTHON_CLIENT: &str = r#"
import json, sys, requests
base, key = sys.argv[1], sys.argv[2]
s = requests.Session()
s.headers["Authorization"] = key
ids, after = [], None
while True:
    params = {"limit": 5}
    if after:
        params["starting_after"] = after
    r = s.get(f"{base}/devices", params=params)
    r.raise_for_status()
    page = r.json()
    ids += [d["id"] for d in page["data"]]
    if len(page["data"]) < 5 or not page["has_more"]:
        break
    after = page["data"][-1]["id"]
alerts = s.get(f"{base}/alerts")
print(json.dumps({"ids": ids, "alerts": [alerts.status_code, alerts.json()]}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_see_every_object_of_their_scope_and_change_nothing_outside_it() {
    let sim = crate::support::simulator(level_sim::Simulator::seeded(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = write_config(dir.path(), &sim, &addr);
    let hq_key = client_key(&config, "hq");
    let dashboard_key = client_key(&config, "dashboard");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        !written.contains(&hq_key) && written.contains("client_key = \"sha256:"),
        "only the hash is kept: {written}"
    );
    // `check` describes each client in words, never its key.
    let check = levelhost(&["check", "--offline"], &config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    for line in [
        "gateway client hq: key rw, its client key kept as a hash",
        "  can read devices in group \"HQ\" and its subgroups",
        "gateway client dashboard: key rw",
    ] {
        assert!(said.contains(line), "{line:?} in {said}");
    }
    assert!(!said.contains(&hq_key) && !said.contains(&dashboard_key));
    let gateway = Gateway::start(&config, &addr);

    // The oracle: the simulator's own organization.
    let fixture = sim.tenant().to_fixture();
    let subtree = crate::support::scope_subtree(&fixture, Some(&["HQ".to_owned()])).unwrap();
    let in_hq: BTreeSet<String> = fixture
        .devices
        .iter()
        .filter(|d| d.group_id.as_ref().is_some_and(|g| subtree.contains(g)))
        .map(|d| d.id.clone())
        .collect();
    let all: BTreeSet<String> = fixture.devices.iter().map(|d| d.id.clone()).collect();
    assert!(!in_hq.is_empty() && in_hq.len() < all.len());

    // curl, walking pages as the n8n node does: every in-scope device, no other.
    let seen = walk_with_curl(&gateway, &hq_key, 7);
    assert_eq!(seen.len(), in_hq.len(), "no device twice");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), in_hq);
    let seen = walk_with_curl(&gateway, &dashboard_key, 20);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);

    // The same device list through the gateway and from Level itself, byte for byte.
    let first = in_hq.iter().next().unwrap();
    let (status, through) = curl(
        "GET",
        &format!("{}/devices/{first}", gateway.url),
        &hq_key,
        None,
    );
    assert_eq!(status, 200);
    let (_, direct) = curl(
        "GET",
        &format!("{}/v2/devices/{first}", sim.base_url()),
        sim.read_write_key(),
        None,
    );
    assert_eq!(through, direct);

    // Outside the scope: Level's 403 and error shape, and nothing changed.
    let outside = all.difference(&in_hq).next().unwrap();
    let (status, body) = curl(
        "GET",
        &format!("{}/devices/{outside}", gateway.url),
        &hq_key,
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("denied:"),
        "{body}"
    );
    let tag = fixture.tags.iter().find(|t| t.name != "vip").unwrap();
    let tags_of = |id: &str| {
        sim.tenant()
            .to_fixture()
            .devices
            .into_iter()
            .find(|d| d.id == id)
            .unwrap()
            .tags
    };
    let before = tags_of(outside);
    let (status, body) = curl(
        "POST",
        &format!("{}/tags/{}/devices", gateway.url, tag.id),
        &hq_key,
        Some(&format!(r#"{{"device_ids":["{outside}"]}}"#)),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(tags_of(outside), before, "the simulator is unchanged");
    // Inside it, the write is made.
    let inside = in_hq
        .iter()
        .find(|id| !tags_of(id).contains(&tag.name))
        .unwrap();
    let (status, body) = curl(
        "POST",
        &format!("{}/tags/{}/devices", gateway.url, tag.id),
        &hq_key,
        Some(&format!(r#"{{"device_ids":["{inside}"]}}"#)),
    );
    assert_eq!(status, 200, "{body}");
    assert!(tags_of(inside).contains(&tag.name));
    // A read-only grant writes nothing.
    let (status, _) = curl(
        "POST",
        &format!("{}/tags/{}/devices", gateway.url, tag.id),
        &dashboard_key,
        Some(&format!(r#"{{"device_ids":["{outside}"]}}"#)),
    );
    assert_eq!(status, 403);
    assert_eq!(tags_of(outside), before);

    // Python requests, unmodified but for base URL and key.
    let python = run_client("python3", &["-c", PYTHON_CLIENT, &gateway.url, &hq_key]);
    let ids: BTreeSet<String> = python["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, in_hq);
    assert_eq!(python["alerts"][0], 403, "{python}");
    assert!(
        python["alerts"][1]["error"]
            .as_str()
            .unwrap()
            .contains("alerts:read")
    );

    // What is not Level's API, or not the client's key, is refused.
    let requests_before = sim.received_count();
    for (method, path, key, status) in [
        ("GET", "/devices?sort=name", hq_key.as_str(), 400),
        ("GET", "/organizations", hq_key.as_str(), 404),
        ("PUT", "/tags", hq_key.as_str(), 404),
        ("GET", "/devices", "lhc_not-a-client-key", 401),
        ("GET", "/devices", sim.read_write_key(), 401),
        ("GET", "/devices", "", 401),
    ] {
        let (got, body) = curl(method, &format!("{}{path}", gateway.url), key, None);
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "Level's error shape: {body}");
    }
    assert_eq!(sim.received_count(), requests_before, "none reached Level");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"client:hq\""),
        "the client is the principal"
    );
    assert!(
        audit.contains("a real Level API key was presented"),
        "the real key is named in the audit"
    );
    assert!(!audit.contains(sim.read_write_key()) && !audit.contains(&hq_key));

    // `status` shows each client's last use and denials, from the audit.
    let status = levelhost(&["status"], &config).output().unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let row = |name: &str| {
        said.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("a row for {name} in {said}"))
            .to_owned()
    };
    let hq_row = row("hq");
    assert!(
        hq_row.contains("Z") && !hq_row.contains("never"),
        "{hq_row}"
    );
    assert!(row("dashboard").contains("set"), "{said}");

    // Rotation: a new key for hq by a reload; the old one is refused at once,
    // the new one and the other clients work.
    let new_key = client_key(&config, "hq");
    gateway.reload();
    let mut refused = false;
    for _ in 0..100 {
        if curl("GET", &format!("{}/groups", gateway.url), &hq_key, None).0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the old key is refused after the reload");
    assert_eq!(
        curl("GET", &format!("{}/groups", gateway.url), &new_key, None).0,
        200
    );
    assert_eq!(
        curl(
            "GET",
            &format!("{}/devices?limit=1", gateway.url),
            &dashboard_key,
            None
        )
        .0,
        200
    );
}

/// The requests Level's n8n node makes (`levelrmm/n8n-nodes-level`:
/// `credentials/LevelApi.credentials.ts` and `nodes/Level/helpers.ts`), made
/// the same way from Node.js: the credential's test (`GET /groups`), a device
/// list with *Return All* (a first page of 100 with `include_*` flags, then
/// `levelApiRequestAllCursor`'s cursor pages until a short page), *Get* by
/// an id encoded as the node encodes it, and the hostname search.
const N8N_NODE_REQUESTS: &str = r#"
const [base, key, q] = process.argv.slice(1); // node -e: no script path
async function levelApiRequest(method, endpoint, qs = {}) {
  const url = new URL(base.replace(/\/$/, '') + endpoint);
  for (const [k, v] of Object.entries(qs)) url.searchParams.set(k, String(v));
  const r = await fetch(url, { method, headers: { Authorization: key, Accept: 'application/json' } });
  const body = await r.json();
  if (!r.ok) throw new Error(`${r.status} ${JSON.stringify(body)}`);
  return body;
}
function asArray(response) {
  if (Array.isArray(response)) return response;
  for (const k of ['device', 'devices', 'group', 'groups', 'alert', 'alerts', 'data', 'items'])
    if (Array.isArray(response[k])) return response[k];
  return [response];
}
async function allCursor(endpoint, baseQuery, perPage, seed) {
  const aggregated = [...seed];
  if (seed.length < perPage) return seed;
  let cursor = aggregated[aggregated.length - 1].id;
  while (cursor) {
    const items = asArray(await levelApiRequest('GET', endpoint, { ...baseQuery, starting_after: cursor, limit: perPage }));
    if (!items.length) break;
    aggregated.push(...items);
    if (items.length < perPage) break;
    cursor = items[items.length - 1].id;
  }
  return aggregated;
}
(async () => {
  await levelApiRequest('GET', '/groups');
  const query = { include_operating_system: true, limit: 100 };
  const first = asArray(await levelApiRequest('GET', '/devices', query));
  const all = await allCursor('/devices', query, 100, first);
  const id = all[0].id;
  const one = await levelApiRequest('GET', `/devices/${encodeURIComponent(decodeURIComponent(id))}`, { include_operating_system: true });
  const found = [];
  let token;
  for (let more = true; found.length < 50 && more; ) {
    const qs = { limit: 100 };
    if (token) qs.starting_after = token;
    const items = asArray(await levelApiRequest('GET', '/devices', qs));
    for (const d of items) if (String(d.hostname).toLowerCase().includes(q)) found.push(d.id);
    token = items.length ? items[items.length - 1].id : undefined;
    more = items.length === 100;
  }
  let denied;
  try { await levelApiRequest('GET', '/alerts', { status: 'active' }); } catch (e) { denied = e.message; }
  console.log(JSON.stringify({ ids: all.map((d) => d.id), one: one.id, os: !!one.operating_system, found: found.slice(0, 50), denied }));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_n8n_node_requests_see_every_device_of_the_scope_across_pages() {
    // Enough devices that the scope spans several pages of 100.
    let sim = crate::support::simulator(level_sim::Simulator::seeded_with(600), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = write_config(dir.path(), &sim, &addr);
    let key = client_key(&config, "hq");
    let gateway = Gateway::start(&config, &addr);
    let fixture = sim.tenant().to_fixture();
    let subtree = crate::support::scope_subtree(&fixture, Some(&["HQ".to_owned()])).unwrap();
    let in_hq: Vec<&level_api::model::Device> = fixture
        .devices
        .iter()
        .filter(|d| d.group_id.as_ref().is_some_and(|g| subtree.contains(g)))
        .collect();
    assert!(in_hq.len() > 100, "{} devices in HQ", in_hq.len());

    let seen = run_client(
        "node",
        &["-e", N8N_NODE_REQUESTS, &gateway.url, &key, "srv"],
    );
    let ids: Vec<&str> = seen["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = in_hq.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), expected.len(), "every in-scope device, once");
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), expected);
    assert_eq!(seen["one"], ids[0]);
    assert_eq!(seen["os"], true, "include_operating_system is honoured");
    let servers: Vec<&str> = in_hq
        .iter()
        .filter(|d| d.hostname.to_lowercase().contains("srv"))
        .map(|d| d.id.as_str())
        .take(50)
        .collect();
    let found: Vec<&str> = seen["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!servers.is_empty());
    assert_eq!(
        found, servers,
        "the search finds the scope's servers, no other"
    );
    assert!(
        seen["denied"].as_str().unwrap().starts_with("403"),
        "{seen}"
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, made with openssl.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (cert, key)
}

/// `curl` over HTTPS trusting only `ca`: the status, or none when the
/// certificate the gateway shows is not that one.
fn curl_tls(url: &str, key: &str, ca: &Path) -> Option<u16> {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("Authorization: {key}"), url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_configured_certificate_and_a_reload_renews_it() {
    let sim = crate::support::simulator(level_sim::Simulator::seeded(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = write_config(dir.path(), &sim, &addr);
    let (old_cert, _) = certificate(dir.path(), "old");
    let (new_cert, _) = certificate(dir.path(), "new");
    // The client keys are kept across the rewrites of the config.
    let serve_with = |name: &str| {
        let keys: Vec<String> = std::fs::read_to_string(&config)
            .map(|t| {
                t.lines()
                    .filter(|l| l.starts_with("client_key"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        write_config_tls(dir.path(), &sim, &addr, Some(name));
        let text = std::fs::read_to_string(&config).unwrap();
        let keyed = keys.iter().fold(text, |text, line| {
            text.replacen("[clients.hq]\n", &format!("[clients.hq]\n{line}\n"), 1)
        });
        std::fs::write(&config, keyed).unwrap();
    };
    serve_with("old");
    let key = client_key(&config, "hq");
    let gateway = Gateway::start(&config, &addr);
    let url = format!("https://{addr}/v2/groups");
    assert_eq!(curl_tls(&url, &key, &old_cert), Some(200));
    assert_eq!(
        curl_tls(&url, &key, &new_cert),
        None,
        "the old certificate is shown"
    );
    // Plain HTTP on the same port gets no answer from the API.
    let (status, _) = curl("GET", &format!("http://{addr}/v2/groups"), &key, None);
    assert_ne!(status, 200);

    // A renewed certificate is taken on a reload, for new connections.
    serve_with("new");
    gateway.reload();
    let mut renewed = false;
    for _ in 0..100 {
        if curl_tls(&url, &key, &new_cert) == Some(200) {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed, "the new certificate is shown after the reload");
    assert_eq!(curl_tls(&url, &key, &old_cert), None);
}

#[test]
fn plain_http_off_loopback_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("levelhost.toml"),
        "[keys.rw]\nsource = \"env:NONE\"\naccess = \"read-write\"\n\n[gateway]\naddr = \"0.0.0.0:0\"\n",
    )
    .unwrap();
    let out = levelhost(&["gateway"], &dir.path().join("levelhost.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("levelhost.toml:6:8") && err.contains("not loopback"),
        "{err}"
    );
}

/// The gateway as part of `serve` (`[gateway] serve = true`): `/metrics`
/// counts its requests by client, operation and verdict, the console's
/// Clients page shows each client's grant, last use and denials (in a real
/// browser), and a reload swaps a client's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_gateway_with_its_metrics_and_a_clients_page() {
    const CONSOLE: &str = "gateway-console-token-0123456789";
    let sim = crate::support::simulator(level_sim::Simulator::seeded(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = write_config(dir.path(), &sim, &addr);
    std::fs::write(dir.path().join("console.token"), CONSOLE).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[gateway]\n",
        "[serve]\naddr = \"127.0.0.1:0\"\ndatabase = \"runs.db\"\n\n[console]\naddr = \"127.0.0.1:0\"\ntoken = \"file:console.token\"\nmetrics_token = \"file:console.token\"\n\n[gateway]\nserve = true\n",
    );
    std::fs::write(&config, text).unwrap();
    let key = client_key(&config, "hq");
    let handle =
        level_host::loader::serve(level_host::config::HostConfig::load(&config).unwrap(), None)
            .await
            .unwrap();
    assert_eq!(
        handle.gateway_addr.map(|a| a.to_string()),
        Some(addr.clone())
    );
    let url = format!("http://{addr}/v2");
    let http = reqwest::Client::new();
    let get = |path: &str, key: &str| {
        http.get(format!("{url}{path}"))
            .header("Authorization", key)
            .send()
    };
    assert_eq!(get("/groups", &key).await.unwrap().status(), 200);
    assert_eq!(get("/alerts", &key).await.unwrap().status(), 403);
    assert_eq!(get("/groups", "lhc_wrong").await.unwrap().status(), 401);

    let console = format!("http://{}", handle.console_addr.unwrap());
    let metrics = http
        .get(format!("{console}/metrics"))
        .bearer_auth(CONSOLE)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "levelhost_gateway_requests_total{client=\"hq\",operation=\"list-groups\",verdict=\"allowed\"} 1",
        "levelhost_gateway_requests_total{client=\"hq\",operation=\"list-alerts\",verdict=\"denied\"} 1",
        "levelhost_gateway_requests_total{client=\"?\",operation=\"gateway-request\",verdict=\"refused\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(!metrics.contains(&key));

    if let Some(chromium) = crate::support::chromium() {
        let profile = tempfile::tempdir().unwrap();
        let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-clients.png");
        let dom = crate::support::browse(
            &chromium,
            profile.path(),
            &format!("{console}/login?token={CONSOLE}&next=/clients"),
            &png,
        );
        for expected in [
            "Clients",
            "<h2>hq</h2>",
            "1 allowed, 1 denied, 0 refused or failed",
            "can read devices in group \"HQ\" and its subgroups",
            "per request",
        ] {
            assert!(
                dom.contains(expected),
                "the clients page shows {expected:?}: {dom}"
            );
        }
        assert!(!dom.contains(&key), "no key is rendered");
    } else {
        eprintln!("skipped the browser half: no chromium");
    }

    // A reload takes a new key for hq; the old one is refused.
    let new_key = client_key(&config, "hq");
    let runner = levelhost_runtime::runner::PluginRunner::with_options(None, None).unwrap();
    let config_now = level_host::config::HostConfig::load(&config).unwrap();
    let before = level_host::loader::Clients::of(&config_now, None)
        .await
        .unwrap();
    level_host::loader::reload(&handle, &config_now, &runner, &before)
        .await
        .unwrap();
    assert_eq!(get("/groups", &key).await.unwrap().status(), 401);
    assert_eq!(get("/groups", &new_key).await.unwrap().status(), 200);
    handle.shutdown().await;
}

/// Rotation under load: three clients keep making requests while the Level
/// key is regenerated in Level (the old value dead at once) and the new one
/// is put in the config and reloaded, and a fourth client's key is revoked
/// in the same reload. None of the three sees a failure (a request Level
/// refused in between waits for the reload); the revoked one gets 401 from
/// the reload on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_level_key_rotates_under_three_busy_clients_and_a_revoked_one_is_refused_at_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sim = crate::support::simulator(level_sim::Simulator::seeded(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = write_config(dir.path(), &sim, &addr);
    let text = std::fs::read_to_string(&config).unwrap();
    let extra: String = ["ops", "reports"]
        .iter()
        .map(|c| format!("\n[clients.{c}]\nkey = \"rw\"\ncapabilities = [\"devices:read\", \"groups:read\"]\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "{}{extra}",
            text.replace("[gateway]\n", "[gateway]\nserve = true\n")
        ),
    )
    .unwrap();
    let keys: Vec<String> = ["hq", "dashboard", "ops", "reports"]
        .iter()
        .map(|c| client_key(&config, c))
        .collect();
    let loaded = level_host::config::HostConfig::load(&config).unwrap();
    let runner = levelhost_runtime::runner::PluginRunner::with_options(None, None).unwrap();
    let clients = level_host::loader::Clients::of(&loaded, None)
        .await
        .unwrap();
    let handle = level_host::loader::serve_with(loaded, runner.clone(), &clients)
        .await
        .unwrap();
    let url = format!("http://{addr}/v2/devices?limit=5");
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = keys[..3]
        .iter()
        .map(|key| {
            let (key, url, stop) = (key.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let answer = match http.get(&url).header("Authorization", &key).send().await {
                        Ok(a) => (a.status().as_u16(), a.text().await.unwrap_or_default()),
                        Err(e) => (0, e.to_string()),
                    };
                    answers.push(answer);
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The key regenerated in Level: the old value is refused from now on.
    let old = sim
        .keys()
        .list()
        .into_iter()
        .find(|k| k.key == sim.read_write_key())
        .unwrap();
    let new = sim.keys().regenerate(&old.id).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The new value in the config, reports' key revoked, a reload.
    std::fs::write(dir.path().join("rw.key"), &new.key).unwrap();
    let revoked = std::fs::read_to_string(&config).unwrap();
    let revoked: String = {
        let mut out = String::new();
        let mut in_reports = false;
        for line in revoked.lines() {
            if line.starts_with('[') {
                in_reports = line == "[clients.reports]";
            }
            if !(in_reports && line.starts_with("client_key")) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    };
    std::fs::write(&config, revoked).unwrap();
    let reloaded = level_host::config::HostConfig::load(&config).unwrap();
    level_host::loader::reload(&handle, &reloaded, &runner, &clients)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let status = http
        .get(&url)
        .header("Authorization", &keys[3])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401, "the revoked key is refused at once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for (client, task) in busy.into_iter().enumerate() {
        let answers = task.await.unwrap();
        assert!(answers.len() > 10, "client {client} kept asking");
        let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
        assert!(failed.is_empty(), "client {client} saw {failed:?}");
    }
    handle.shutdown().await;
}

/// A client's own rate (per minute) answers Level's 429 with Retry-After
/// once spent, and an expired key is refused, both before Level is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_rate_and_its_keys_expiry_hold_before_level_is_asked() {
    use levelhost_gateway::{ClientSpec, Gateway, KeyHash};
    let sim = crate::support::simulator(level_sim::Simulator::seeded(), |_| {}).await;
    let level = level_api::LevelClient::new(
        level_api::ClientConfig::new(sim.base_url()),
        level_api::ApiKey::new(sim.read_write_key()),
    )
    .unwrap();
    let spec =
        |name: &str, per_minute: u32, expires: Option<chrono::DateTime<chrono::Utc>>| ClientSpec {
            name: name.to_owned(),
            grant: levelhost_core::grant::Grant::exactly(
                name,
                ["groups:read".parse().unwrap()].into(),
            ),
            key: KeyHash::of(&format!("lhc_{name}")),
            expires,
            requests_per_minute: per_minute,
            requests_per_hour: 0,
            level: level.clone(),
        };
    let gateway = std::sync::Arc::new(Gateway::new(
        vec![
            spec("metered", 2, None),
            spec(
                "expired",
                0,
                Some(chrono::Utc::now() - chrono::Duration::days(1)),
            ),
        ],
        &[sim.read_write_key()],
        None,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2/groups", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, gateway.router()).into_future());
    let http = reqwest::Client::new();
    let get = |key: &'static str| http.get(&url).header("Authorization", key).send();
    assert_eq!(get("lhc_metered").await.unwrap().status(), 200);
    assert_eq!(get("lhc_metered").await.unwrap().status(), 200);
    let before = sim.received_count();
    let third = get("lhc_metered").await.unwrap();
    assert_eq!(third.status(), 429);
    let wait: u64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(third.text().await.unwrap().contains("\"error\""));
    assert_eq!(get("lhc_expired").await.unwrap().status(), 401);
    assert_eq!(sim.received_count(), before, "neither reached Level");
}
