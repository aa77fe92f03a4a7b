//! The history's and the audit's contracts: what every backend promises,
//! seen through two handles on one database (two processes on one SQLite
//! file, two replicas on one PostgreSQL database). PostgreSQL needs a server:
//! `LEVELHOST_TEST_POSTGRES` names one (`.ci/run` starts one); without it
//! those tests say so and pass without running.

#![expect(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::sync::Arc;
use std::time::Duration;

use levelhost_runtime::audit::{AuditFilter, AuditLog, AuditRecord};
use levelhost_runtime::runner::RunReport;
use levelhost_serve::Origin;
use levelhost_serve::history::{Claim, Decided, History, HistoryLocation, PgAudit};

/// A fresh database on the test server, or `None` (and why) without one.
async fn database() -> Option<String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test server's address, set by .ci/run"
    )]
    let admin = std::env::var("LEVELHOST_TEST_POSTGRES");
    let Some(admin) = admin.ok().filter(|u| !u.is_empty()) else {
        eprintln!(
            "skipped: LEVELHOST_TEST_POSTGRES is not set (.ci/run starts a PostgreSQL server and sets it)"
        );
        return None;
    };
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("levelhost_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{name}"))
}

async fn connect(url: &str) -> History {
    History::connect(&HistoryLocation::Postgres {
        url: url.to_owned(),
        password: None,
    })
    .await
    .unwrap()
}

fn report(id: &str) -> RunReport {
    RunReport {
        run_id: id.to_owned(),
        plugin: "p".into(),
        digest: "sha256:x".into(),
        outcome: Ok(serde_json::json!({})),
        logs: Vec::new(),
        stdout: String::new(),
        stderr: String::new(),
        http_requests: 0,
        api_calls: 1,
        writes: 1,
        plan: Vec::new(),
        devices_changed: 1,
        divergence: Vec::new(),
        unapplied: Vec::new(),
        audit: Vec::new(),
        state: Vec::new(),
        duration: Duration::from_millis(5),
    }
}

/// What every history promises, whichever database holds it, seen through
/// two handles on it (two processes on one SQLite file, two replicas on
/// one PostgreSQL database).
async fn history_contract(a: Arc<History>, b: Arc<History>) {
    // 32 deliveries of 8 events, half through each handle: 8 runs start.
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let history = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let origin = Origin::Event {
                    event_id: format!("evt-{}", i % 8),
                    event_type: "alert_active".to_owned(),
                };
                history
                    .claim_delivery(&format!("run-{i}"), "p", "1.0.0", "sha256:x", &origin)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claims = Vec::new();
    for task in tasks {
        claims.push(task.await.unwrap());
    }
    assert_eq!(claims.iter().filter(|c| **c == Claim::Started).count(), 8);
    let deliveries = b.deliveries("p").await.unwrap();
    assert_eq!(deliveries.len(), 32);
    assert_eq!(deliveries.iter().filter(|d| d.1 == "duplicate").count(), 24);
    assert_eq!(a.list(Some("p"), None, 100).await.unwrap().len(), 8);

    // A schedule's planned time starts once, whichever handle asks.
    let planned = Origin::Schedule {
        schedule: "0:* * * * * *".to_owned(),
        planned: "2026-12-02T10:00:00.000Z".to_owned(),
    };
    assert_eq!(
        a.claim("s1", "p", "1", "d", &planned).await.unwrap(),
        Claim::Started
    );
    assert_eq!(
        b.claim("s2", "p", "1", "d", &planned).await.unwrap(),
        Claim::AlreadyClaimed
    );
    assert_eq!(
        b.last_planned("p", "0:* * * * * *")
            .await
            .unwrap()
            .as_deref(),
        Some("2026-12-02T10:00:00.000Z")
    );

    // Issue 22, point 2: a plugin's lease, one running run at a time, whichever
    // handle (process) asks; renewed by its holder only; free once given back,
    // or once its run is no longer running (a restart recorded it interrupted).
    let lease = Duration::from_secs(60);
    for (history, run) in [(&a, "lease-1"), (&b, "lease-2")] {
        history
            .claim(run, "leased", "1", "d", &Origin::Manual)
            .await
            .unwrap();
    }
    assert!(a.take_lease("leased", "lease-1", lease).await.unwrap());
    assert!(
        !b.take_lease("leased", "lease-2", lease).await.unwrap(),
        "held"
    );
    assert!(a.renew_lease("leased", "lease-1", lease).await.unwrap());
    assert!(
        !b.renew_lease("leased", "lease-2", lease).await.unwrap(),
        "not its lease"
    );
    a.interrupt("lease-1", "killed").await.unwrap();
    assert!(
        b.take_lease("leased", "lease-2", lease).await.unwrap(),
        "a lease whose run was cut off holds nothing"
    );
    b.release_lease("leased", "lease-2").await.unwrap();
    assert!(
        !a.renew_lease("leased", "lease-2", lease).await.unwrap(),
        "given back"
    );

    // A finished run reads back as it was recorded.
    a.claim("f1", "p", "1", "d", &Origin::Manual).await.unwrap();
    a.finish(
        "f1",
        &report("f1"),
        false,
        None,
        Some(&serde_json::json!({"top": 3})),
    )
    .await
    .unwrap();
    let finished = b.get("f1").await.unwrap().unwrap();
    assert_eq!(
        (
            finished.status.as_str(),
            finished.output.as_deref(),
            finished.api_calls
        ),
        ("ok", Some("{}"), 1)
    );
    assert_eq!(finished.input, Some(serde_json::json!({"top": 3})));
    assert_eq!(
        b.list(Some("p"), Some(levelhost_serve::history::RunStatus::Ok), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // A plan waits; two people approve at once through the two handles: one decision.
    a.claim("w1", "p", "1", "d", &Origin::Manual).await.unwrap();
    a.await_approval(
        "w1",
        &report("w1"),
        &serde_json::json!({"days": 30}),
        &["37 devices".to_owned()],
        "2999-01-01T00:00:00.000Z",
    )
    .await
    .unwrap();
    assert_eq!(
        b.get("w1").await.unwrap().unwrap().status,
        "awaiting-approval"
    );
    assert_eq!(
        a.decide("w1", true, "alice", Some("ok")).await.unwrap(),
        Decided::Done
    );
    assert_eq!(
        b.decide("w1", true, "bob", None).await.unwrap(),
        Decided::NotWaiting("approved".to_owned())
    );
    let taken = [
        a.start_approved("w1").await.unwrap(),
        b.start_approved("w1").await.unwrap(),
    ];
    assert_eq!(
        taken.iter().filter(|t| t.is_some()).count(),
        1,
        "applied once"
    );
    let row = b.get("w1").await.unwrap().unwrap();
    assert_eq!(row.approval.unwrap().decided_by.as_deref(), Some("alice"));
    assert_eq!(row.input, Some(serde_json::json!({"days": 30})));
}

/// What every audit store promises: records read back whole, in order, filtered.
async fn audit_contract(log: &AuditLog) {
    let record = |run: &str, plugin: &str, allowed: bool| AuditRecord {
        time: level_api::clock::now(),
        plugin: plugin.into(),
        version: "1.0.0".into(),
        digest: "sha256:x".into(),
        run_id: run.into(),
        operation: "tag-devices".into(),
        targets: vec!["dev_1".to_owned(), "tag_2".to_owned()],
        names: [("dev_1".to_owned(), "acme-ws-1".to_owned())].into(),
        allowed,
        reason: (!allowed).then(|| "outside the grant".to_owned()),
        upstream_status: allowed.then_some(200),
        latency_ms: 12,
        dry_run: false,
        requests: 2,
        bytes: allowed.then_some(512),
        stage: levelhost_core::audit::Stage::Done,
    };
    let mut cut = record("r2", "b", true);
    cut.stage = levelhost_core::audit::Stage::CutOff;
    let written = [record("r1", "a", true), cut, record("r3", "a", false)];
    for r in &written {
        log.append(r).await.unwrap();
    }
    log.sync().await.unwrap();
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            plugin: Some("a".to_owned()),
            ..AuditFilter::default()
        },
        AuditFilter {
            denied: true,
            ..AuditFilter::default()
        },
        AuditFilter {
            run_id: Some("r2".to_owned()),
            ..AuditFilter::default()
        },
    ];
    let mut read = Vec::new();
    for filter in &filters {
        read.push(log.read(filter).await.unwrap().0);
    }
    assert_eq!(
        read,
        [
            written.to_vec(),
            vec![written[0].clone(), written[2].clone()],
            vec![written[2].clone()],
            vec![written[1].clone()],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_and_audit_contracts_hold_in_sqlite_and_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let (a, b) = (
        Arc::new(History::open(&path).unwrap()),
        Arc::new(History::open(&path).unwrap()),
    );
    assert_eq!(a.replica(), None);
    history_contract(a, b).await;
    audit_contract(&AuditLog::open(&dir.path().join("audit.jsonl")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_and_audit_contracts_hold_in_postgres_and_replicas_lease_and_reap() {
    let Some(url) = database().await else { return };
    let (a, b) = (Arc::new(connect(&url).await), Arc::new(connect(&url).await));
    assert_ne!(a.replica(), b.replica());
    assert_eq!(a.integrity_check().await.unwrap(), "ok");
    history_contract(a.clone(), b.clone()).await;
    let audit = PgAudit::connect(&url, None).await.unwrap();
    audit_contract(&AuditLog::with_store(Arc::new(audit))).await;

    // A plugin's lease: one holder at a time, until given back or expired;
    // its holder is a claimed run (a lease held by a run no longer running holds nothing).
    let lease = Duration::from_secs(2);
    for (history, run) in [(&a, "run-a"), (&b, "run-b")] {
        history
            .claim(run, "p", "1", "d", &Origin::Manual)
            .await
            .unwrap();
    }
    assert!(a.take_lease("p", "run-a", lease).await.unwrap());
    assert!(
        !b.take_lease("p", "run-b", lease).await.unwrap(),
        "held by another replica"
    );
    a.release_lease("p", "run-a").await.unwrap();
    assert!(
        b.take_lease("p", "run-b", lease).await.unwrap(),
        "given back"
    );

    // A replica that stops answering: after the lease, a survivor marks its run interrupted.
    let dead = connect(&url).await;
    dead.claim("r1", "p", "1", "d", &Origin::Manual)
        .await
        .unwrap();
    drop(dead);
    assert_eq!(
        b.heartbeat(Duration::from_secs(2)).await.unwrap(),
        0,
        "within the lease"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(a.heartbeat(Duration::from_secs(2)).await.unwrap() >= 1);
    assert_eq!(b.get("r1").await.unwrap().unwrap().status, "interrupted");
    assert_eq!(
        b.get("s1").await.unwrap().unwrap().status,
        "running",
        "a live replica's run is left alone"
    );
}
