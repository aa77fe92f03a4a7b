//! Plugins in every supported language: `levelhost new`, `levelhost build`
//! and `levelhost run --sim`, each with the language's own toolchain, and
//! the same result from each.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use level_api::{ApiKey, ClientConfig, LevelClient};
use levelhost_runtime::engine::Pooling;
use levelhost_runtime::runner::PluginRunner;

fn levelhost(args: &[&str], cwd: &Path) -> Output {
    levelhost_command(args, cwd).output().unwrap()
}

/// `levelhost` in `cwd`; Rust plugin projects share one cargo target folder,
/// so their dependencies (wit-bindgen, serde_json) are compiled once.
fn levelhost_command(args: &[&str], cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_levelhost"));
    command.args(args).current_dir(cwd).env(
        "CARGO_TARGET_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("rust-plugins"),
    );
    command
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `levelhost new` a project in `lang`, build it, run it and test it; returns
/// the folder holding it and the project's path.
fn new_build_run(lang: &str) -> (tempfile::TempDir, PathBuf) {
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
    // The template keeps how many times it counted in its state: a run
    // against the simulator starts from none.
    assert_eq!(
        output,
        serde_json::json!({"devices": 60, "online": 45, "offline": 15, "runs": 1}),
        "{lang}"
    );
    assert!(
        stderr(&out).contains("counted devices devices=60"),
        "{lang} logs"
    );
    // run --sim applies plugin.toml: the grant is exactly its capabilities.
    assert!(
        stderr(&out).contains(
            "the grant is exactly its capabilities (devices:read, state:read, state:write)"
        ),
        "{lang}: {}",
        stderr(&out)
    );

    // The generated project comes with a README and a passing test.
    assert!(project.join("README.md").is_file());
    let out = levelhost(&["test"], &project);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("2 passed, 0 failed"),
        "{lang} test: {stdout}{}",
        stderr(&out)
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
        level
            .iter()
            .all(|i| i.starts_with("level:api/devices@") || i.starts_with("level:api/state@")),
        "{lang} imports {level:?}"
    );
    let grant = levelhost_core::grant::Grant::exactly(&name, manifest.capabilities);
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
        Some(&serde_json::json!({"devices": 60, "online": 45, "offline": 15, "runs": 1})),
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
    (dir, project)
}

/// Puts the stale tagger example of `lang` (`examples/stale-tagger`) into a
/// built project of that language, builds it and runs the example's tests:
/// the same plugin and the same tests in every language, under a grant of
/// exactly its manifest's capabilities.
fn stale_tagger(project: &Path, lang: &str) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stale-tagger");
    copy_tree(&example.join(lang), project);
    for file in ["plugin.toml", "tests.toml"] {
        std::fs::copy(example.join(file), project.join(file)).unwrap();
    }
    let out = levelhost(&["build"], project);
    assert!(
        out.status.success(),
        "{lang} stale tagger build: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("warning"),
        "{lang}: {}",
        stderr(&out)
    );
    let out = levelhost(&["test"], project);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("3 passed, 0 failed"),
        "{lang} stale tagger tests: {stdout}{}",
        stderr(&out)
    );
    assert!(
        stdout.contains("devices:read, tags:read, tags:write"),
        "{stdout}"
    );
}

/// Puts each alert example of `lang` (`examples/alert-to-chat`, and
/// `examples/alert-to-ticket` where `with_ticket`) into a built project of
/// that language, builds it and runs the example's tests: the same plugin and
/// tests in every language, under a grant of exactly plugin.toml's routes,
/// the connections' answers stated by each case (issue 25).
fn alert_examples(project: &Path, lang: &str, with_ticket: bool) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let chat = ("alert-to-chat", 3, "on connection chat: POST /");
    let ticket = (
        "alert-to-ticket",
        4,
        "state:read, state:write; on connection ticketing: POST /tickets, POST /tickets/*/close",
    );
    let examples_of_lang = if with_ticket {
        vec![chat, ticket]
    } else {
        vec![chat]
    };
    for (example, cases, asks) in examples_of_lang {
        let from = examples.join(example);
        copy_tree(&from.join(lang), project);
        for file in ["plugin.toml", "tests.toml"] {
            std::fs::copy(from.join(file), project.join(file)).unwrap();
        }
        let out = levelhost(&["build"], project);
        assert!(
            out.status.success(),
            "{lang} {example} build: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(asks), "{lang}: {}", stderr(&out));
        let out = levelhost(&["test"], project);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("{cases} passed, 0 failed")),
            "{lang} {example} tests: {stdout}{}",
            stderr(&out)
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Edits `file` of a built project (replacing `from` with `to`) so that it
/// prints "about to fail after 60 devices" and then fails; rebuilds it, runs
/// it, checks that it failed with the print in its logs, and returns its stderr.
fn edit_build_and_fail(project: &Path, file: &str, from: &str, to: &str) -> String {
    let code = std::fs::read_to_string(project.join(file)).unwrap();
    assert!(code.contains(from), "{file} has no {from:?}");
    std::fs::write(project.join(file), code.replace(from, to)).unwrap();
    let out = levelhost(&["build"], project);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = levelhost(&["run", "--sim", "plugin.wasm"], project);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("plugin stdout: about to fail after 60 devices"),
        "{err}"
    );
    err
}

#[test]
fn rust() {
    let (_dir, project) = new_build_run("rust");

    // A test that does not hold is reported with what differed, and fails.
    let mut tests = std::fs::read_to_string(project.join("tests.toml")).unwrap();
    tests.push_str(
        "\n[[test]]\nname = \"expects too many devices\"\n\n[test.expect]\noutput = { devices = 61 }\nwrites = 1\n",
    );
    std::fs::write(project.join("tests.toml"), tests).unwrap();
    let out = levelhost(&["test"], &project);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("2 passed, 1 failed"), "{stdout}");
    assert!(
        stdout.contains("test expects too many devices ... FAILED")
            && stdout.contains("the output differs at /devices: expected {\"devices\":61}")
            && stdout.contains("expected 1 writes, the run made 0"),
        "{stdout}"
    );

    // The Rust stale tagger (plugins/stale-device-tagger, with levelhost-sdk)
    // passes the same tests as the other languages' examples.
    let tagger = project.join("tagger");
    std::fs::create_dir(&tagger).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(
        root.join("plugins/stale-device-tagger/plugin.toml"),
        tagger.join("plugin.toml"),
    )
    .unwrap();
    std::fs::copy(
        root.join("examples/stale-tagger/tests.toml"),
        tagger.join("tests.toml"),
    )
    .unwrap();
    std::fs::copy(
        test_programs_artifacts::STALE_DEVICE_TAGGER,
        tagger.join("plugin.wasm"),
    )
    .unwrap();
    let out = levelhost(&["test", "tagger"], &project);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("3 passed, 0 failed"),
        "{stdout}"
    );

    // The Rust alert examples (examples/alert-*/rust) pass the same tests as
    // their JavaScript and Python twins.
    for (example, wasm, cases) in [
        ("alert-to-chat", test_programs_artifacts::ALERT_TO_CHAT, 3),
        (
            "alert-to-ticket",
            test_programs_artifacts::ALERT_TO_TICKET,
            4,
        ),
    ] {
        let dir = project.join(example);
        std::fs::create_dir(&dir).unwrap();
        for file in ["plugin.toml", "tests.toml"] {
            std::fs::copy(
                root.join("examples").join(example).join(file),
                dir.join(file),
            )
            .unwrap();
        }
        std::fs::copy(wasm, dir.join("plugin.wasm")).unwrap();
        let out = levelhost(&["test", example], &project);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("{cases} passed, 0 failed")),
            "{example}: {stdout}{}",
            stderr(&out)
        );
    }

    // run --sim checks the input against plugin.toml's schema.
    let manifest = std::fs::read_to_string(project.join("plugin.toml")).unwrap();
    std::fs::write(
        project.join("plugin.toml"),
        format!("{manifest}required = [\"days\"]\n"),
    )
    .unwrap();
    let out = levelhost(&["run", "--sim", "plugin.wasm"], &project);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not match the input schema of plugin.toml")
            && stderr(&out).contains("days"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn javascript() {
    let (_dir, project) = new_build_run("js");
    // An uncaught exception ends the run as failed with the error's own
    // message and stack; console.log goes to the run's logs.
    let err = edit_build_and_fail(
        &project,
        "app.js",
        "  log.info('counted devices'",
        "  console.log(`about to fail after ${total} devices`);\n  \
         if (total > 0) throw new Error('boom: the plugin gave up');\n  log.info('counted devices'",
    );
    assert!(
        err.contains("failed: uncaught Error: boom: the plugin gave up") && err.contains("app.js:"),
        "{err}"
    );
    stale_tagger(&project, "js");
    alert_examples(&project, "js", true);
}

#[test]
fn typescript() {
    let (_dir, project) = new_build_run("ts");
    stale_tagger(&project, "ts");
}

#[test]
fn python() {
    let (_dir, project) = new_build_run("python");
    // print() works and goes to the run's logs; an uncaught exception ends
    // the run as failed with Python's own traceback.
    let err = edit_build_and_fail(
        &project,
        "app.py",
        "    levelhost.log.info(\"counted devices\", devices=total)",
        "    print(f\"about to fail after {total} devices\")\n    ratio = total / (total - total)\n    levelhost.log.info(\"counted devices\", devices=ratio)",
    );
    assert!(
        err.contains("Traceback (most recent call last)")
            && err.contains("ZeroDivisionError: division by zero")
            && err.contains("app.py"),
        "{err}"
    );
    stale_tagger(&project, "python");
    alert_examples(&project, "python", true);
}

#[test]
fn go() {
    let (_dir, project) = new_build_run("go");
    stale_tagger(&project, "go");
    alert_examples(&project, "go", false);
}

#[test]
fn c() {
    let (_dir, project) = new_build_run("c");
    stale_tagger(&project, "c");
    alert_examples(&project, "c", false);
}

#[test]
fn build_names_a_typo_in_plugin_toml_at_its_line_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let out = levelhost(&["new", "typo", "--lang", "python"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let project = dir.path().join("typo");
    let manifest = std::fs::read_to_string(project.join("plugin.toml")).unwrap();
    std::fs::write(
        project.join("plugin.toml"),
        manifest.replace("capabilities =", "capabilites ="),
    )
    .unwrap();
    let out = levelhost(&["build"], &project);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("plugin.toml:4") && err.contains("capabilites"),
        "{err}"
    );
    // Nothing was built: build.sh never ran.
    assert!(!project.join(".venv").exists() && !project.join("plugin.wasm").exists());
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

#[test]
fn dev_rebuilds_and_reruns_after_a_file_changes() {
    use std::io::{BufRead as _, BufReader};
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let out = levelhost(&["new", "dev-loop", "--lang", "rust"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let project = dir.path().join("dev-loop");
    let mut child = levelhost_command(&["dev", "."], &project)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let wait_for = |text: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match received.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(e) => panic!("dev never printed {text:?}: {e}"),
            }
        }
    };
    wait_for("\"devices\": 60");

    // The author saves a change: dev builds it and runs it again.
    let lib = project.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    let edited = code.replace(
        "\"offline\": total - online",
        "\"offline\": total - online, \"edited\": true",
    );
    assert_ne!(code, edited);
    std::fs::write(&lib, edited).unwrap();
    wait_for("\"edited\": true");

    crate::support::stop(&mut child, "INT");
}
