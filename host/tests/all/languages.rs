//! Plugins in every supported language: `levelhost new`, `levelhost build`
//! and `levelhost run --sim`, each with the language's own toolchain, and
//! the same result from each.

use std::path::Path;
use std::process::{Command, Output};

use level_api::{ApiKey, ClientConfig, LevelClient};
use levelhost_runtime::engine::Pooling;
use levelhost_runtime::runner::PluginRunner;

fn levelhost(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_levelhost"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn new_build_run(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("count-{lang}");
    let out = levelhost(&["new", &name, "--lang", lang], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let project = dir.path().join(&name);
    assert!(project.join("plugin.toml").is_file() && project.join("wit/worlds.wit").is_file());
    let manifest =
        levelhost_core::manifest::PluginManifest::load(&project.join("plugin.toml")).unwrap();
    assert_eq!(manifest.name, name);

    let out = levelhost(&["build", &name], dir.path());
    assert!(
        out.status.success(),
        "{lang} build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = levelhost(
        &["run", "--sim", &format!("{name}/plugin.wasm")],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{lang} run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        output,
        serde_json::json!({"devices": 60, "online": 45, "offline": 15}),
        "{lang}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("counted devices devices=60"),
        "{lang} logs"
    );

    // `levelhost build` built it against its manifest: it imports only the
    // interfaces plugin.toml asks for, so it packs with its own manifest and
    // no warning, and runs under a grant of exactly those capabilities.
    let out = levelhost(&["plugin", "pack", "--out", "pkg"], &project);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("warning"),
        "{lang} pack: {stderr}"
    );
    let bytes = std::fs::read(project.join("plugin.wasm")).unwrap();
    let imports = levelhost_packages::package::component_imports(&bytes).unwrap();
    let level: Vec<&String> = imports
        .iter()
        .filter(|i| i.starts_with("level:api/"))
        .filter(|i| !i.starts_with("level:api/types") && !i.starts_with("level:api/log"))
        .collect();
    assert!(
        level.iter().all(|i| i.starts_with("level:api/devices@")),
        "{lang} imports {level:?}"
    );
    let grant = levelhost_core::grant::Grant {
        capabilities: manifest.capabilities.clone(),
        ..levelhost_core::grant::Grant::unrestricted(&name)
    };
    let (report, _) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(levelhost_testing::run_on_simulator(
            &project.join("plugin.wasm"),
            serde_json::json!({}),
            Some(grant),
        ))
        .unwrap();
    assert_eq!(
        report.outcome.as_ref().ok(),
        Some(&serde_json::json!({"devices": 60, "online": 45, "offline": 15})),
        "{lang} under its manifest's grant: {:?}",
        report.outcome
    );

    // It also fits the instance pool `levelhost serve` runs plugins from.
    let runner = PluginRunner::with_options(None, Some(Pooling::default())).unwrap();
    let plugin = runner
        .load_file(&project.join("plugin.wasm"))
        .unwrap_or_else(|e| panic!("{lang} under pooling: {e}"));
    let client = LevelClient::new(
        ClientConfig::new("http://127.0.0.1:9"),
        ApiKey::new("unused"),
    )
    .unwrap();
    let alive = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(runner.instantiate_many(&plugin, &client, 3))
        .unwrap_or_else(|e| panic!("{lang} under pooling: {e}"));
    assert_eq!(alive.len(), 3);
}

#[test]
fn rust() {
    new_build_run("rust");
}

#[test]
fn javascript() {
    new_build_run("js");
}

#[test]
fn typescript() {
    new_build_run("ts");
}

#[test]
fn python() {
    new_build_run("python");
}

#[test]
fn go() {
    new_build_run("go");
}

#[test]
fn c() {
    new_build_run("c");
}

#[test]
fn new_refuses_a_bad_name_or_a_folder_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = levelhost(&["new", "Bad_Name"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let out = levelhost(&["new", "taken", "--lang", "js"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists and is not empty"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
}
