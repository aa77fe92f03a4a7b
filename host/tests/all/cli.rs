//! The `levelhost` command as a user runs it.

use std::process::Command;

fn levelhost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_levelhost"))
}

#[test]
fn help_lists_every_command() {
    let out = levelhost().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["run", "check", "audit", "sim", "demo"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} in:\n{text}"
        );
    }
}

#[test]
fn run_prints_the_output_json_on_stdout() {
    let out = levelhost()
        .args([
            "run",
            "--sim",
            test_programs_artifacts::ECHO,
            "--input",
            r#"{"x": 1}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output["input"]["x"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("echoing"),
        "plugin logs go to stderr: {stderr}"
    );
}

#[test]
fn a_failing_plugin_exits_1_with_a_message() {
    let out = levelhost()
        .args(["run", "--sim", test_programs_artifacts::PANICS])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: panics run run_") && stderr.contains("crashed"),
        "{stderr}"
    );
}

#[test]
fn bad_input_and_missing_files_exit_2_with_the_reason() {
    let out = levelhost()
        .args([
            "run",
            "--sim",
            test_programs_artifacts::ECHO,
            "--input",
            "{oops",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--input is not valid JSON"));

    let out = levelhost()
        .args(["run", "--sim", "missing.wasm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read plugin missing.wasm"));
}

#[test]
fn a_component_file_runs_only_against_the_simulator() {
    let out = levelhost()
        .args([
            "run",
            test_programs_artifacts::ECHO,
            "--config",
            "/nonexistent/levelhost.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sim") && stderr.contains("install it with a grant"),
        "{stderr}"
    );
}

#[test]
fn demo_reports_and_tags() {
    let dir = std::path::Path::new(test_programs_artifacts::DEVICE_REPORT)
        .parent()
        .unwrap();
    let out = levelhost()
        .args(["demo", "--plugins"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("▶ device-report") && stdout.contains("60 devices"),
        "{stdout}"
    );
    assert!(stdout.contains("tagged 9 stale devices"), "{stdout}");
    assert!(stdout.contains("again: tagged 0"), "{stdout}");
    assert!(
        stdout.contains("dry run: 2 writes planned, none sent"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused by the host") && stdout.contains("outside the grant's tags"),
        "{stdout}"
    );
    assert!(
        stdout.contains("The simulator now shows tag \"stale\" on 9 devices;"),
        "{stdout}"
    );
}

#[test]
fn completions_cover_the_subcommands_in_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = levelhost().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for subcommand in ["replay", "completions", "catalog", "componentize"] {
            assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
    let out = levelhost()
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn init_writes_a_configuration_check_accepts_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let in_dir = |command: &str| {
        levelhost()
            .arg(command)
            .current_dir(dir.path())
            .env_remove("LEVELHOST_CONFIG")
            .env("LEVEL_READ_KEY", "a-read-only-key")
            .output()
            .unwrap()
    };
    let out = in_dir("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.path().join("levelhost.toml")).unwrap();
    assert!(written.contains("[keys.reporting]"));
    // Offline: the key it reads is made up and Level is not reachable from a test.
    let out = levelhost()
        .args(["check", "--offline"])
        .current_dir(dir.path())
        .env_remove("LEVELHOST_CONFIG")
        .env("LEVEL_READ_KEY", "a-read-only-key")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("0 plugins"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.path().join("levelhost.toml"), "# mine\n").unwrap();
    let out = in_dir("init");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwritten"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("levelhost.toml")).unwrap(),
        "# mine\n"
    );
}
