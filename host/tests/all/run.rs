//! Running components: the sandbox, failures, and components that do not fit.

use levelhost_runtime::error::HostError;
use levelhost_runtime::runner::{RunFailure, RunRequest};
use serde_json::json;

use crate::support::TestEnv;

#[tokio::test]
async fn a_plugin_cannot_reach_files_env_args_stdin_or_sockets() {
    let env = TestEnv::new().await;
    let port = env.sim.addr().port();
    let report = env
        .run(
            test_programs_artifacts::SANDBOX_ESCAPE,
            json!({"port": port}),
        )
        .await;
    let out = report.outcome.expect("the plugin runs to the end");
    for attempt in ["file", "dir", "cwd", "write", "socket"] {
        let result = out[attempt].as_str().unwrap();
        assert!(result.starts_with("failed"), "{attempt}: {result}");
    }
    assert_eq!(out["env"], json!([]), "no environment variables");
    assert_eq!(out["args"], json!([]), "no arguments");
    assert_eq!(out["stdin"], 0, "stdin is empty");
    // The simulator saw no connection from the plugin: it is still serving normally.
    assert_eq!(
        env.ok("list-tags", json!({})).await["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn a_panicking_plugin_fails_cleanly_and_the_host_keeps_running() {
    let env = TestEnv::new().await;
    let report = env.run(test_programs_artifacts::PANICS, json!({})).await;
    match &report.outcome {
        Err(RunFailure::Trap(message)) => {
            assert!(
                message.contains("unreachable") || message.contains("trap"),
                "{message}"
            );
            // The failure quotes what the plugin last wrote to stderr, where
            // the panic's own message is.
            assert!(
                message.contains("the plugin's last lines on stderr")
                    && message.contains("deliberate failure"),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(report.stdout, "about to fail\n");
    assert!(report.stderr.contains("this goes to stderr"));
    assert!(
        report.stderr.contains("deliberate failure"),
        "the panic message is captured"
    );
    // The same runner runs the next plugin.
    let next = env
        .run(test_programs_artifacts::ECHO, json!({"n": 1}))
        .await;
    assert_eq!(next.outcome.unwrap()["input"], json!({"n": 1}));
}

#[tokio::test]
async fn the_invocation_reaches_the_plugin_and_its_logs_come_back() {
    let env = TestEnv::new().await;
    let plugin = env
        .runner
        .load_file(test_programs_artifacts::ECHO.as_ref())
        .unwrap();
    let mut request = RunRequest::manual(r#"{"hello":"world"}"#);
    request.run_id = "run_test_1".to_owned();
    let report = env
        .runner
        .run(&plugin, env.client(), request)
        .await
        .unwrap();
    let out = report.outcome.unwrap();
    assert_eq!(out["input"], json!({"hello": "world"}));
    assert_eq!(out["trigger"], "manual");
    assert_eq!(out["run_id"], "run_test_1");
    assert_eq!(report.logs.len(), 1);
    assert_eq!(report.logs[0].message, "echoing");
    assert_eq!(
        report.logs[0].fields,
        [("run".to_owned(), "run_test_1".to_owned())]
    );
    assert!(report.digest.starts_with("sha256:") && report.digest.len() == 71);
}

#[tokio::test]
async fn a_plugin_error_is_reported_as_a_failure() {
    let env = TestEnv::new().await;
    let report = env
        .run(test_programs_artifacts::ECHO, json!({"fail": true}))
        .await;
    assert_eq!(
        report.outcome.unwrap_err(),
        RunFailure::Plugin("asked to fail".to_owned())
    );
}

#[tokio::test]
async fn input_that_is_not_json_is_refused_before_the_plugin_starts() {
    let env = TestEnv::new().await;
    let plugin = env
        .runner
        .load_file(test_programs_artifacts::ECHO.as_ref())
        .unwrap();
    let err = env
        .runner
        .run(&plugin, env.client(), RunRequest::manual("{not json"))
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::InvalidInput(_)), "{err}");
}

#[tokio::test]
async fn components_that_do_not_fit_the_world_are_refused_at_load() {
    let env = TestEnv::new().await;
    let err = env
        .runner
        .load_file(test_programs_artifacts::NO_HANDLER.as_ref())
        .unwrap_err();
    // What did not fit is wasmtime's error, kept as the source.
    let text = levelhost_core::Chain(&err).to_string();
    assert!(matches!(err, HostError::WorldMismatch { .. }), "{text}");
    assert!(
        text.contains("level:api/handler"),
        "names the missing export: {text}"
    );

    let err = env.runner.load("garbage", b"\0asm not really").unwrap_err();
    assert!(matches!(err, HostError::InvalidComponent { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("garbage is not a valid WebAssembly component")
    );

    let err = env
        .runner
        .load_file("/no/such/plugin.wasm".as_ref())
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/plugin.wasm"));
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk_and_reused() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    // The compiled artifacts; the cache's own bookkeeping (usage statistics,
    // clean-up markers) is written in the background and left out.
    let files = |dir: &std::path::Path| -> usize {
        fn count(p: &std::path::Path) -> usize {
            std::fs::read_dir(p)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| {
                            let path = e.path();
                            let name = e.file_name().to_string_lossy().into_owned();
                            if path.is_dir() {
                                count(&path)
                            } else if name.ends_with(".stats")
                                || name.starts_with('.')
                                // A file wasmtime's cache is still writing, renamed when done.
                                || name.contains(".wip")
                            {
                                0
                            } else {
                                1
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        count(dir)
    };
    let first = levelhost_runtime::runner::PluginRunner::with_cache(Some(dir.path())).unwrap();
    first
        .load_file(test_programs_artifacts::ECHO.as_ref())
        .unwrap();
    let cached = files(dir.path());
    assert!(
        cached > 0,
        "the compiled component was written to the cache"
    );
    // A new runner (a new process, in effect) loads it from the cache and runs it.
    let second = levelhost_runtime::runner::PluginRunner::with_cache(Some(dir.path())).unwrap();
    let plugin = second
        .load_file(test_programs_artifacts::ECHO.as_ref())
        .unwrap();
    let report = second
        .run(
            &plugin,
            env.client(),
            RunRequest::manual(r#"{"cached": true}"#),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome.unwrap()["input"]["cached"], true);
    assert_eq!(files(dir.path()), cached, "nothing was compiled again");

    // A cache directory others may write to is refused: only levelhost puts compiled code there.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let shared = tempfile::tempdir().unwrap();
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = levelhost_runtime::runner::PluginRunner::with_cache(Some(shared.path()))
            .err()
            .expect("a world-writable cache is refused");
        let err = levelhost_core::Chain(&err).to_string();
        assert!(err.contains("other users may write to it"), "{err}");
    }
}

#[tokio::test]
async fn the_noop_plugin_returns_an_empty_document_without_calling_level() {
    let env = TestEnv::new().await;
    let report = env.run(test_programs_artifacts::NOOP, json!({})).await;
    assert_eq!(report.outcome.unwrap(), json!({}));
    assert_eq!(report.api_calls, 0);
}

/// Issue 13, point 3: the time limit covers the whole run, resolving its
/// scopes included. Against a key Level has paused for an hour (429,
/// `Retry-After: 3600`), a group-scoped run limited to 2 s ends timed out
/// instead of waiting out the client's retries.
#[tokio::test]
async fn the_time_limit_covers_resolving_scopes_on_a_paused_key() {
    use level_sim::RateLimit;
    use std::time::{Duration, Instant};
    let env = TestEnv::with(level_sim::Simulator::seeded(), |config| {
        config.rate_limit = Some(RateLimit {
            requests: 1,
            per: Duration::from_secs(3600),
        });
    })
    .await;
    // The key's one request of the hour.
    env.client()
        .list_groups(None, &Default::default())
        .await
        .unwrap();
    let plugin = env
        .runner
        .load_file(test_programs_artifacts::ECHO.as_ref())
        .unwrap();
    let mut grant = levelhost_core::grant::Grant::unrestricted("echo");
    grant.scopes.groups = Some(vec!["Acme Corp".to_owned()]);
    grant.limits.timeout_secs = 2;
    let request = RunRequest {
        grant,
        ..RunRequest::manual("{}")
    };
    let started = Instant::now();
    let report = env
        .runner
        .run(&plugin, env.client(), request)
        .await
        .unwrap();
    assert!(
        matches!(report.outcome, Err(RunFailure::TimedOut(_))),
        "{:?}",
        report.outcome
    );
    // Ended at its limit, not after the client's minutes of retries.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        report.audit.last().map(|r| r.operation.as_ref()),
        Some("run")
    );
}
