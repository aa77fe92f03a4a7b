//! Sharing vetted plugins: packages, signatures, the trust policy, upgrades,
//! the catalog and an OCI registry, as operators and reviewers use them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use level_host::config::HostConfig;
use level_sim::{SimConfig, Simulator};
use levelhost_packages::package::{Package, component_imports};
use levelhost_packages::trust::{SecretKey, TrustError, TrustPolicy};
use levelhost_runtime::runner::PluginRunner;

const KEY: &str = "packages-rw-key";

fn levelhost(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .current_dir(dir)
        .args(args)
        .env_remove("LEVELHOST_CONFIG")
        .env_remove("LEVELHOST_CATALOG")
        .env("LEVELHOST_CACHE_DIR", "off")
        .output()
        .unwrap()
}

/// Runs levelhost in `dir`, expecting success; returns stdout and stderr.
fn ok(dir: &Path, args: &[&str]) -> (String, String) {
    let out = levelhost(dir, args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "levelhost {args:?}\n{stdout}{stderr}");
    (stdout, stderr)
}

/// Runs levelhost in `dir`, expecting failure; returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = levelhost(dir, args);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "levelhost {args:?} succeeded\n{stdout}{stderr}"
    );
    stderr
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins")
}

/// A config in `dir` for the simulator, trusting `reviewers` (name, public key file).
fn write_config(dir: &Path, sim: &Simulator, reviewers: &[(&str, &Path)], extra: &str) {
    let mut text = format!(
        "[level]\nbase_url = \"{}\"\n\n[keys.rw]\nsource = \"file:key.txt\"\naccess = \"read-write\"\n\n[trust]\n{extra}\n[trust.reviewers]\n",
        sim.base_url()
    );
    for (name, public) in reviewers {
        text.push_str(&format!(
            "{name} = \"{}\"\n",
            std::fs::read_to_string(public).unwrap().trim()
        ));
    }
    std::fs::write(dir.join("levelhost.toml"), text).unwrap();
    std::fs::write(dir.join("key.txt"), format!("{KEY}\n")).unwrap();
}

async fn simulator() -> Simulator {
    let config = SimConfig {
        read_write_key: KEY.to_owned(),
        rate_limit: None,
        ..SimConfig::default()
    };
    Simulator::start(config, Simulator::seeded()).await.unwrap()
}

/// A simulator, and an operator's folder with reviewer alice's key pair and a
/// config for the simulator that trusts her.
async fn trusting_alice() -> (Simulator, tempfile::TempDir) {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["key", "generate", "alice"]);
    write_config(d, &sim, &[("alice", &d.join("alice.pub"))], "");
    (sim, dir)
}

/// A manifest for the janitor test program, asking for `capabilities`.
fn janitor_manifest(version: &str, capabilities: &[&str]) -> String {
    format!(
        "name = \"device-janitor\"\nversion = \"{version}\"\ndescription = \"Cleans up devices.\"\ncapabilities = {capabilities:?}\n"
    )
}

/// Runs `levelhost plugin pack` on `component` with `manifest` (written
/// to `dir/NAME.toml`) into `dir/NAME`.
fn pack(dir: &Path, component: &str, manifest: &str, name: &str) -> Output {
    let manifest_path = dir.join(format!("{name}.toml"));
    std::fs::write(&manifest_path, manifest).unwrap();
    let args = ["plugin", "pack", "--component", component, "--manifest"];
    Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .current_dir(dir)
        .args(args)
        .arg(&manifest_path)
        .args(["--out", name])
        .env("LEVELHOST_CACHE_DIR", "off")
        .output()
        .unwrap()
}

/// Packs the janitor test program with `manifest` into `dir/NAME`.
fn pack_janitor(dir: &Path, manifest: &str, name: &str) -> PathBuf {
    let out = pack(dir, test_programs_artifacts::JANITOR, manifest, name);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    dir.join(name)
}

/// A registry on loopback: the one at `LEVELHOST_TEST_REGISTRY` (which
/// `.ci/run` starts), else a docker-registry (Debian's `docker-registry`
/// package) started on a free port and stopped when dropped. As root, a
/// missing docker-registry is installed.
struct Registry {
    child: Option<Child>,
    addr: String,
    _dir: Option<tempfile::TempDir>,
}

impl Registry {
    fn start() -> Self {
        if let Ok(addr) = std::env::var("LEVELHOST_TEST_REGISTRY") {
            return Self {
                child: None,
                addr,
                _dir: None,
            };
        }
        let binary = Path::new("/usr/bin/docker-registry");
        if !binary.exists() {
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", "docker-registry"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        assert!(
            binary.exists(),
            "the registry tests need Debian's docker-registry package: apt-get install docker-registry"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: levelhost-tests\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Self {
                    child: Some(child),
                    addr,
                    _dir: Some(dir),
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not start on {addr}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_push_pull_verify_install_and_run_end_to_end() {
    let registry = Registry::start();
    let sim = simulator().await;
    let author = tempfile::tempdir().unwrap();
    let a = author.path();

    // A reviewer makes a key; the author packs the plugin; the reviewer signs it.
    let (stdout, _) = ok(a, &["key", "generate", "alice"]);
    assert!(stdout.contains("[trust.reviewers]"), "{stdout}");
    ok(
        a,
        &[
            "plugin",
            "pack",
            "--component",
            test_programs_artifacts::STALE_DEVICE_TAGGER,
            "--manifest",
            plugins_dir()
                .join("stale-device-tagger/plugin.toml")
                .to_str()
                .unwrap(),
        ],
    );
    let (stdout, _) = ok(
        a,
        &[
            "plugin",
            "sign",
            "stale-device-tagger-0.1.0",
            "--key",
            "alice.key",
        ],
    );
    assert!(
        stdout.contains("signed stale-device-tagger 0.1.0"),
        "{stdout}"
    );
    // A repository of its own, so runs sharing a registry do not meet.
    let reference = format!(
        "{}/test-{:016x}/stale-device-tagger:0.1.0",
        registry.addr,
        rand::random::<u64>()
    );
    ok(
        a,
        &["plugin", "push", "stale-device-tagger-0.1.0", &reference],
    );

    // Another team, with its own config, pulls, verifies, installs and runs it.
    let operator = tempfile::tempdir().unwrap();
    let o = operator.path();
    write_config(o, &sim, &[("alice", &a.join("alice.pub"))], "");
    let (stdout, _) = ok(o, &["plugin", "pull", &reference]);
    assert!(stdout.contains("1 signatures"), "{stdout}");
    let (stdout, _) = ok(o, &["plugin", "verify", "stale-device-tagger-0.1.0"]);
    assert!(stdout.contains("OK: signed by alice"), "{stdout}");
    let (stdout, _) = ok(
        o,
        &["plugin", "verify", "stale-device-tagger-0.1.0", "--json"],
    );
    let verdict: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(verdict["verified"], true);
    assert_eq!(verdict["vetting"], "signed by alice");
    let (stdout, _) = ok(
        o,
        &[
            "plugin",
            "install",
            "stale-device-tagger-0.1.0",
            "--whole-organization",
        ],
    );
    assert!(
        stdout.contains("granted: devices:read, tags:read, tags:write in the whole organization"),
        "{stdout}"
    );
    let pulled = Package::open(&o.join("stale-device-tagger-0.1.0")).unwrap();
    let config_text = std::fs::read_to_string(o.join("levelhost.toml")).unwrap();
    assert!(
        config_text.contains(&format!("digest = \"{}\"", pulled.digest)),
        "installed pinned by digest:\n{config_text}"
    );
    let signed = Package::open(&a.join("stale-device-tagger-0.1.0")).unwrap();
    assert_eq!(
        pulled.digest, signed.digest,
        "the pulled package is the signed one"
    );

    let (stdout, stderr) = ok(
        o,
        &["run", "stale-device-tagger", "--input", r#"{"days": 14}"#],
    );
    let output: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let tagged = output["tagged"].as_array().unwrap();
    assert!(!tagged.is_empty(), "{stdout}{stderr}");
    let fixture = sim.tenant().to_fixture();
    let stale = fixture.tags.iter().find(|t| t.name == "stale").unwrap();
    let in_level = fixture
        .devices
        .iter()
        .filter(|d| d.tags.iter().any(|t| *t == stale.id || *t == stale.name))
        .count();
    assert_eq!(
        in_level,
        tagged.len(),
        "Level has the tags the plugin reports"
    );

    // A plain component (no plugin.toml layer) is not a package: a clear error, nothing written.
    let plain = format!(
        "{}/test-{:016x}/plain:1",
        registry.addr,
        rand::random::<u64>()
    );
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let layer = oci_client::client::ImageLayer::new(
        std::fs::read(test_programs_artifacts::NOOP).unwrap(),
        "application/wasm".to_owned(),
        None,
    );
    let config = oci_client::client::Config::new(
        b"{}".to_vec(),
        "application/vnd.wasm.config.v0+json".to_owned(),
        None,
    );
    client
        .push(
            &plain.parse().unwrap(),
            &[layer],
            config,
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
    let stderr = fails(o, &["plugin", "pull", &plain, "--out", "plain"]);
    assert!(
        stderr.contains("it is a component, not a levelhost package"),
        "{stderr}"
    );
    assert!(!o.join("plain").exists());
}

#[test]
fn any_flipped_byte_an_unknown_key_or_a_revoked_one_is_refused() {
    let alice = SecretKey::generate();
    let mallory = SecretKey::generate();
    let manifest = janitor_manifest("1.0.0", &["devices:read"]);
    let component = std::fs::read(test_programs_artifacts::JANITOR).unwrap();
    let mut package =
        Package::from_parts(component, manifest, None, Path::new("plugin.toml")).unwrap();
    package.add_signature(alice.sign(&package.digest));
    let mut policy = TrustPolicy::default();
    policy.reviewers.insert("alice".to_owned(), alice.public());
    assert_eq!(
        policy.verify(&package).unwrap().to_string(),
        "signed by alice",
        "the untouched package is accepted"
    );

    // Every byte of the manifest, and bytes all through the component.
    let refused = |component: Vec<u8>, manifest: Vec<u8>, what: String| {
        let Ok(text) = String::from_utf8(manifest) else {
            return; // not UTF-8: refused before any signature is looked at
        };
        let Ok(mut mutated) = Package::from_parts(component, text, None, Path::new("plugin.toml"))
        else {
            return; // the manifest no longer parses: refused
        };
        mutated.signatures = package.signatures.clone();
        assert_ne!(mutated.digest, package.digest, "{what}");
        match policy.verify(&mutated) {
            Err(TrustError::NotVetted { reasons, .. }) => {
                assert!(
                    reasons[0].contains("changed after signing"),
                    "{what}: {reasons:?}"
                )
            }
            other => panic!("{what}: accepted or wrong reason: {other:?}"),
        }
    };
    let manifest = package.manifest_text.as_bytes().to_vec();
    for i in 0..manifest.len() {
        let mut m = manifest.clone();
        m[i] ^= 0x01;
        refused(package.component.clone(), m, format!("manifest byte {i}"));
    }
    let len = package.component.len();
    let positions = (0..16).chain((0..240).map(|k| 16 + k * (len - 17) / 239));
    for i in positions {
        let mut c = package.component.clone();
        c[i] ^= 0x80;
        refused(c, manifest.clone(), format!("component byte {i} of {len}"));
    }

    // Signed by a key nobody trusts.
    let mut by_mallory = package.clone();
    by_mallory.signatures.clear();
    by_mallory.add_signature(mallory.sign(&package.digest));
    let err = policy.verify(&by_mallory).unwrap_err().to_string();
    assert!(err.contains("is not a trusted reviewer"), "{err}");

    // A forged signature under alice's name.
    let mut forged = by_mallory.clone();
    forged.signatures[0].1.key = alice.public();
    let err = policy.verify(&forged).unwrap_err().to_string();
    assert!(err.contains("does not verify"), "{err}");

    // Alice's key revoked; then the package itself revoked.
    let mut revoked = policy.clone();
    revoked.revoked.insert(alice.public().to_string());
    let err = revoked.verify(&package).unwrap_err().to_string();
    assert!(err.contains("is revoked"), "{err}");
    let mut revoked = policy.clone();
    revoked.revoked.insert(package.digest.clone());
    let err = revoked.verify(&package).unwrap_err().to_string();
    assert!(err.contains("is revoked"), "{err}");

    // Unsigned: refused unless allowed; allowing unsigned never accepts a bad signature.
    let mut unsigned = package.clone();
    unsigned.signatures.clear();
    assert!(matches!(
        policy.verify(&unsigned),
        Err(TrustError::Unsigned { .. })
    ));
    let mut dev = policy.clone();
    dev.allow_unsigned = true;
    assert!(dev.verify(&unsigned).is_ok());
    assert!(dev.verify(&by_mallory).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_load_verifies_the_installed_package() {
    let (_sim, dir) = trusting_alice().await;
    let d = dir.path();
    pack_janitor(d, &janitor_manifest("1.0.0", &["devices:read"]), "janitor");

    // Unsigned: not verified (exit 2, as install's refusal) and not installed.
    let out = levelhost(d, &["plugin", "verify", "janitor"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("refused:"), "{}", text(&out).1);
    let out = levelhost(d, &["plugin", "verify", "janitor", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["verified"], false);
    assert_eq!(verdict["name"], "device-janitor");
    assert!(verdict["vetting"].is_null());
    assert!(
        verdict["error"].as_str().unwrap().contains("is not signed"),
        "{verdict}"
    );
    let stderr = fails(d, &["plugin", "install", "janitor"]);
    assert!(stderr.contains("is not signed"), "{stderr}");
    ok(d, &["plugin", "sign", "janitor", "--key", "alice.key"]);

    // A grant the config cannot take (writes on a read-only key): refused, nothing changed or left behind.
    let config_before = std::fs::read_to_string(d.join("levelhost.toml")).unwrap();
    let read_only = config_before.replace("access = \"read-write\"", "access = \"read-only\"");
    std::fs::write(d.join("levelhost.toml"), &read_only).unwrap();
    pack_janitor(
        d,
        &janitor_manifest("1.0.0", &["devices:read", "devices:delete"]),
        "deleter",
    );
    ok(d, &["plugin", "sign", "deleter", "--key", "alice.key"]);
    let stderr = fails(d, &["plugin", "install", "deleter", "--whole-organization"]);
    assert!(
        stderr.contains("installing would make the configuration invalid")
            && stderr.contains("needs a read-write key"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("levelhost.toml")).unwrap(),
        read_only
    );
    assert!(
        !d.join("packages").join("device-janitor").exists(),
        "no package left behind"
    );
    std::fs::write(d.join("levelhost.toml"), &config_before).unwrap();
    ok(d, &["plugin", "install", "janitor", "--whole-organization"]);
    let input = "{}";
    ok(d, &["run", "device-janitor", "--input", input]);

    let config = HostConfig::load(&d.join("levelhost.toml")).unwrap();
    let plugin = config.plugin("device-janitor").unwrap();
    let runner = PluginRunner::new().unwrap();
    assert!(level_host::loader::load_installed(&runner, plugin, &config.trust).is_ok());

    // Tampering with the installed copy, in the component or the manifest, stops every later load.
    let installed = std::fs::read_dir(d.join("packages/device-janitor"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for file in ["plugin.wasm", "plugin.toml"] {
        let path = installed.join(file);
        let original = std::fs::read(&path).unwrap();
        let mut flipped = original.clone();
        // In the manifest, a letter of the description, so it still parses.
        let at = match file {
            "plugin.toml" => flipped.windows(6).position(|w| w == b"Cleans").unwrap(),
            _ => flipped.len() - 2,
        };
        flipped[at] ^= 0x20;
        std::fs::write(&path, &flipped).unwrap();
        let err = level_host::loader::load_installed(&runner, plugin, &config.trust).unwrap_err();
        // The error names the config line; its cause says what is wrong.
        let err = levelhost_core::Chain(&err).to_string();
        assert!(err.contains("levelhost.toml:"), "{file}: {err}");
        assert!(
            err.contains("is not the pinned") || err.contains("changed after"),
            "{file}: {err}"
        );
        let stderr = fails(d, &["run", "device-janitor", "--input", input]);
        assert!(stderr.contains("refused"), "{file}: {stderr}");
        std::fs::write(&path, &original).unwrap();
    }
    ok(d, &["run", "device-janitor", "--input", input]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_asking_for_delete_runs_with_the_old_grant_until_widened() {
    let (sim, dir) = trusting_alice().await;
    let d = dir.path();
    pack_janitor(d, &janitor_manifest("1.0.0", &["devices:read"]), "v1");
    pack_janitor(
        d,
        &janitor_manifest("2.0.0", &["devices:read", "devices:delete"]),
        "v2",
    );
    for pkg in ["v1", "v2"] {
        ok(d, &["plugin", "sign", pkg, "--key", "alice.key"]);
    }
    ok(d, &["plugin", "install", "v1", "--whole-organization"]);

    let (stdout, _) = ok(d, &["plugin", "diff", "device-janitor", "v2"]);
    assert!(stdout.contains("version 1.0.0 -> 2.0.0"), "{stdout}");
    assert!(stdout.contains("capabilities + devices:delete"), "{stdout}");
    assert!(stdout.contains("digest sha256:"), "{stdout}");
    let (stdout, _) = ok(d, &["plugin", "diff", "device-janitor", "v2", "--json"]);
    let changes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(changes["same"], false);
    assert_eq!(changes["version"], serde_json::json!(["1.0.0", "2.0.0"]));
    assert_eq!(
        changes["capabilities_added"],
        serde_json::json!(["devices:delete"])
    );
    assert_eq!(changes["capabilities_removed"], serde_json::json!([]));
    assert!(changes["name"].is_null());
    let (stdout, _) = ok(d, &["plugin", "diff", "v2", "v2", "--json"]);
    let same: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(same["same"], true, "{same}");

    let (stdout, _) = ok(d, &["plugin", "install", "v2"]);
    assert!(
        stdout.contains("upgraded from 1.0.0; the grant is unchanged"),
        "{stdout}"
    );
    assert!(stdout.contains("not granted: devices:delete"), "{stdout}");
    assert!(
        stdout.contains("  capabilities + devices:delete"),
        "{stdout}"
    );
    let config = HostConfig::load(&d.join("levelhost.toml")).unwrap();
    let plugin = config.plugin("device-janitor").unwrap();
    assert_eq!(plugin.manifest.version, "2.0.0");
    assert_eq!(
        plugin
            .grant
            .capabilities
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["devices:read"]
    );
    let (stdout, _) = ok(d, &["check", "--offline"]);
    assert!(stdout.contains("also asks for devices:delete"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "pinned to {}",
            Package::open(&d.join("v2")).unwrap().digest
        )) && stdout.contains("signed by alice"),
        "{stdout}"
    );

    let device = sim.tenant().to_fixture().devices[0].id.clone();
    let input = format!(r#"{{"delete": "{device}"}}"#);
    let (stdout, _) = ok(d, &["run", "device-janitor", "--input", &input]);
    assert!(stdout.contains("denied"), "{stdout}");
    assert!(
        sim.tenant()
            .to_fixture()
            .devices
            .iter()
            .any(|x| x.id == device),
        "the device is still in Level"
    );

    // Pruning removes the 1.0.0 copy the upgrade left, and keeps the one in use.
    let stored = |d: &Path| {
        std::fs::read_dir(d.join("packages/device-janitor"))
            .unwrap()
            .count()
    };
    assert_eq!(stored(d), 2);
    let (stdout, _) = ok(d, &["plugin", "prune"]);
    assert!(
        stdout.contains("removed") && stdout.contains("1.0.0-"),
        "{stdout}"
    );
    assert_eq!(stored(d), 1);
    let (stdout, _) = ok(d, &["plugin", "prune"]);
    assert!(stdout.contains("nothing to remove"), "{stdout}");

    // The operator widens the grant; now the delete goes through.
    let path = d.join("levelhost.toml");
    let widened = std::fs::read_to_string(&path).unwrap().replace(
        r#"["devices:read"]"#,
        r#"["devices:read", "devices:delete"]"#,
    );
    std::fs::write(&path, widened).unwrap();
    let (stdout, _) = ok(d, &["run", "device-janitor", "--input", &input]);
    assert!(stdout.contains(r#""ok""#), "{stdout}");
    assert!(
        !sim.tenant()
            .to_fixture()
            .devices
            .iter()
            .any(|x| x.id == device),
        "the device is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_lists_searches_and_installs_pinned_packages() {
    let (_sim, dir) = trusting_alice().await;
    let d = dir.path();
    pack_janitor(d, &janitor_manifest("1.0.0", &["devices:read"]), "v1");
    pack_janitor(d, &janitor_manifest("1.1.0", &["devices:read"]), "v11");
    ok(d, &["catalog", "add", "v1"]);
    ok(d, &["catalog", "add", "v11"]);
    // A reviewer signs in the catalog itself, as in a pull request: only the signature file is added.
    std::fs::write(d.join("catalog/device-janitor/1.1.0/NOTES.md"), "reviewed").unwrap();
    ok(
        d,
        &[
            "plugin",
            "sign",
            "catalog/device-janitor/1.1.0",
            "--key",
            "alice.key",
        ],
    );
    assert!(d.join("catalog/device-janitor/1.1.0/NOTES.md").exists());
    let signatures: Vec<_> = std::fs::read_dir(d.join("catalog/device-janitor/1.1.0/signatures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(signatures.len(), 1, "{signatures:?}");
    assert!(signatures[0].ends_with(".sig"), "{signatures:?}");

    let (stdout, _) = ok(d, &["catalog", "list", "--config", "levelhost.toml"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("device-janitor 1.0.0") && lines[0].contains("not vetted"));
    assert!(lines[1].starts_with("device-janitor 1.1.0") && lines[1].contains("signed by alice"));
    let (stdout, _) = ok(
        d,
        &["catalog", "list", "--config", "levelhost.toml", "--json"],
    );
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(
        (&listed[1]["name"], &listed[1]["version"]),
        (
            &serde_json::json!("device-janitor"),
            &serde_json::json!("1.1.0")
        )
    );
    assert!(
        listed[1]["vetting"]
            .as_str()
            .unwrap()
            .contains("signed by alice")
    );
    assert!(listed[1]["digest"].as_str().unwrap().starts_with("sha256:"));
    // A broken entry (a half-copied package) is reported and skipped, not fatal.
    std::fs::create_dir_all(d.join("catalog/device-janitor/9.9.9")).unwrap();
    let (stdout, stderr) = ok(d, &["catalog", "list"]);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stderr.contains("warning: skipped") && stderr.contains("9.9.9/plugin.wasm"),
        "{stderr}"
    );
    std::fs::remove_dir(d.join("catalog/device-janitor/9.9.9")).unwrap();
    let (stdout, _) = ok(d, &["catalog", "search", "CLEANS"]);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let (stdout, _) = ok(d, &["catalog", "search", "printer"]);
    assert!(stdout.contains("nothing"), "{stdout}");
    let (stdout, _) = ok(d, &["catalog", "search", "printer", "--json"]);
    assert_eq!(stdout.trim(), "[]");

    // The unsigned version is refused; the newest (signed) one installs, pinned.
    let stderr = fails(d, &["catalog", "install", "device-janitor@1.0.0"]);
    assert!(stderr.contains("is not signed"), "{stderr}");
    // A first install says how far the grant reaches, or installs nothing.
    let stderr = fails(d, &["catalog", "install", "device-janitor"]);
    assert!(
        stderr.contains("say how far device-janitor's grant reaches"),
        "{stderr}"
    );
    let (stdout, _) = ok(
        d,
        &["catalog", "install", "device-janitor", "--group", "Acme"],
    );
    assert!(
        stdout.contains("installed device-janitor 1.1.0")
            && stdout.contains("in group Acme and its subgroups"),
        "{stdout}"
    );
    let config = HostConfig::load(&d.join("levelhost.toml")).unwrap();
    assert_eq!(
        config.plugin("device-janitor").unwrap().grant.scopes.groups,
        Some(vec!["Acme".to_owned()])
    );
    let digest = Package::open(&d.join("catalog/device-janitor/1.1.0"))
        .unwrap()
        .digest;
    let config = std::fs::read_to_string(d.join("levelhost.toml")).unwrap();
    assert!(
        config.contains(&format!("digest = \"{digest}\"")),
        "{config}"
    );

    // Going back to an older version is a choice made in so many words.
    ok(
        d,
        &[
            "plugin",
            "sign",
            "catalog/device-janitor/1.0.0",
            "--key",
            "alice.key",
        ],
    );
    let stderr = fails(d, &["catalog", "install", "device-janitor@1.0.0"]);
    assert!(
        stderr.contains("1.0.0 is older than the installed 1.1.0")
            && stderr.contains("--allow-downgrade"),
        "{stderr}"
    );
    assert!(
        std::fs::read_to_string(d.join("levelhost.toml"))
            .unwrap()
            .contains(&digest),
        "nothing changed"
    );
    let (stdout, _) = ok(
        d,
        &[
            "catalog",
            "install",
            "device-janitor@1.0.0",
            "--allow-downgrade",
        ],
    );
    assert!(
        stdout.contains("downgraded from 1.1.0; the grant is unchanged"),
        "{stdout}"
    );

    // A version never changes: other contents under 1.1.0 are refused.
    pack_janitor(
        d,
        &janitor_manifest("1.1.0", &["devices:read", "devices:write"]),
        "other",
    );
    let stderr = fails(d, &["catalog", "add", "other"]);
    assert!(stderr.contains("versions do not change"), "{stderr}");
}

/// Issue 12, points 9 and 10: an upgrade whose component imports one more
/// interface keeps loading and running under the old grant; its calls on
/// that interface answer `denied`, naming the capability, until the operator
/// widens the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_importing_more_keeps_running_with_its_new_calls_denied() {
    let (sim, dir) = trusting_alice().await;
    let d = dir.path();
    pack_janitor(d, &janitor_manifest("1.0.0", &["devices:read"]), "v1");
    let wider = "name = \"device-janitor\"\nversion = \"2.0.0\"\ndescription = \"Cleans up devices.\"\ncapabilities = [\"devices:read\", \"tags:read\", \"tags:write\"]\n";
    let out = pack(d, test_programs_artifacts::STALE_DEVICE_TAGGER, wider, "v2");
    assert!(out.status.success(), "{}", text(&out).1);
    for pkg in ["v1", "v2"] {
        ok(d, &["plugin", "sign", pkg, "--key", "alice.key"]);
    }
    ok(d, &["plugin", "install", "v1", "--whole-organization"]);
    let (stdout, _) = ok(d, &["plugin", "install", "v2"]);
    assert!(
        stdout.contains("not granted: tags:read, tags:write"),
        "{stdout}"
    );
    let (stdout, _) = ok(d, &["check", "--offline"]);
    assert!(
        stdout.contains("imports level:api/tags@0.1.0, but its grant has no capability on it: its calls there answer denied"),
        "{stdout}"
    );
    let before = sim.tenant().to_fixture();
    let stderr = fails(d, &["run", "device-janitor"]);
    assert!(
        stderr.contains("denied (needs tags:read)") && !stderr.contains("refused"),
        "{stderr}"
    );
    assert_eq!(
        sim.tenant().to_fixture(),
        before,
        "nothing changed in Level"
    );

    // Issue 12, point 11: a grant wider than the manifest asks for is named by check.
    let config = std::fs::read_to_string(d.join("levelhost.toml")).unwrap();
    let wider = config.replace(
        r#"capabilities = ["devices:read"]"#,
        r#"capabilities = ["devices:read", "groups:read"]"#,
    );
    assert_ne!(wider, config);
    std::fs::write(d.join("levelhost.toml"), wider).unwrap();
    let (stdout, _) = ok(d, &["check", "--offline"]);
    assert!(
        stdout.contains("the grant gives groups:read, which its manifest does not ask for"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_checks_the_components_imports_against_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tagger = test_programs_artifacts::STALE_DEVICE_TAGGER;
    let imports = component_imports(&std::fs::read(tagger).unwrap()).unwrap();
    assert!(
        imports.iter().any(|i| i.starts_with("level:api/tags@")),
        "{imports:?}"
    );

    // An import the manifest does not cover is a warning, not a refusal: its calls will answer denied.
    let narrow = "name = \"tagger\"\nversion = \"0.1.0\"\ncapabilities = [\"devices:read\"]\n";
    let out = pack(d, tagger, narrow, "narrow");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the component imports level:api/tags")
            && stderr.contains("no tags:* capability, so its calls there will answer denied"),
        "{stderr}"
    );

    let wide = "name = \"tagger\"\nversion = \"0.1.0\"\ncapabilities = [\"devices:read\", \"tags:read\", \"tags:write\", \"alerts:read\"]\n";
    let out = pack(d, tagger, wide, "wide");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: alerts:read is requested but the component does not import"),
        "{stderr}"
    );
    assert!(d.join("wide/plugin.wasm").exists());

    // A component that does not fit the plugin world is refused with the reason.
    let manifest = "name = \"nohandler\"\nversion = \"0.1.0\"\n";
    let out = pack(
        d,
        test_programs_artifacts::NO_HANDLER,
        manifest,
        "nohandler",
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("handler"), "{stderr}");
    assert!(!d.join("nohandler").exists(), "nothing is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loose_components_need_allow_unsigned() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, &sim, &[], "");
    let mut config = std::fs::read_to_string(d.join("levelhost.toml")).unwrap();
    config.push_str(&format!(
        "\n[plugins.janitor]\ncomponent = \"{}\"\nmanifest = \"janitor.toml\"\nkey = \"rw\"\ncapabilities = [\"devices:read\"]\n",
        test_programs_artifacts::JANITOR
    ));
    std::fs::write(d.join("levelhost.toml"), &config).unwrap();
    std::fs::write(
        d.join("janitor.toml"),
        janitor_manifest("0.1.0", &["devices:read"]),
    )
    .unwrap();
    let input = "{}";
    let stderr = fails(d, &["run", "janitor", "--input", input]);
    assert!(
        stderr.contains("is a loose component, not a signed package")
            && stderr.contains("allow_unsigned = true"),
        "{stderr}"
    );
    std::fs::write(
        d.join("levelhost.toml"),
        config.replace("[trust]\n", "[trust]\nallow_unsigned = true\n"),
    )
    .unwrap();
    ok(d, &["run", "janitor", "--input", input]);
}

#[test]
fn reviewer_keys_are_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["key", "generate", "bob"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.join("bob.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the secret key is readable by others: {mode:o}"
        );
    }
    let before = std::fs::read(d.join("bob.key")).unwrap();
    let stderr = fails(d, &["key", "generate", "bob"]);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(d.join("bob.key")).unwrap(), before);
}
