//! The Level client against real HTTP servers on loopback that misbehave the
//! way a remote API can: server errors, huge or broken bodies, slow answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use level_api::model::TagName;
use level_api::{ApiKey, ClientConfig, ClientError, LevelClient, PageParams, RetryPolicy};

/// Serves `app` on a free loopback port and returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A server that fails `failures` times with `status`, then answers an empty tag page.
async fn flaky(status: u16, failures: u32) -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(any(move || {
        let counter = counter.clone();
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n < failures {
                (
                    StatusCode::from_u16(status).unwrap(),
                    r#"{"error":"try later"}"#.to_owned(),
                )
            } else {
                (StatusCode::OK, r#"{"data":[],"has_more":false}"#.to_owned())
            }
        }
    }));
    (serve(app).await, hits)
}

fn client(base: &str) -> LevelClient {
    let mut config = ClientConfig::new(base);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
    };
    config.timeout = Duration::from_secs(2);
    LevelClient::new(config, ApiKey::new("k")).unwrap()
}

#[tokio::test]
async fn server_errors_are_retried_for_reads() {
    let (base, hits) = flaky(503, 2).await;
    let page = client(&base)
        .list_tags(None, &PageParams::default())
        .await
        .unwrap();
    assert!(page.data.is_empty());
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn server_errors_are_not_retried_for_writes() {
    let (base, hits) = flaky(500, 1).await;
    let err = client(&base)
        .create_tag(&TagName { name: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a write may have been applied: never resent"
    );
}

#[tokio::test]
async fn giving_up_reports_the_last_status() {
    let (base, hits) = flaky(502, 10).await;
    let err = client(&base)
        .list_tags(None, &PageParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status: 502, ref message, .. } if message == "try later")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn oversized_responses_are_cut_off() {
    let big = format!(
        r#"{{"data":[],"has_more":false,"pad":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let base = serve(Router::new().fallback(any(move || {
        let big = big.clone();
        async move { big }
    })))
    .await;
    let mut config = ClientConfig::new(&base);
    config.max_response_bytes = 16 * 1024;
    let client = LevelClient::new(config, ApiKey::new("k")).unwrap();
    let err = client
        .list_tags(None, &PageParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::ResponseTooLarge { limit: 16384 }),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_json_names_the_operation() {
    let base = serve(Router::new().fallback(any(|| async { r#"{"data": [{"id": 1}"# }))).await;
    let err = client(&base)
        .list_tags(None, &PageParams::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("listTags") && text.contains("not valid"),
        "{text}"
    );
}

#[tokio::test]
async fn slow_answers_time_out() {
    let base = serve(Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        "{}"
    })))
    .await;
    let mut config = ClientConfig::new(&base);
    config.timeout = Duration::from_millis(200);
    config.retry.max_attempts = 1;
    let client = LevelClient::new(config, ApiKey::new("k")).unwrap();
    let err = client.get_tag("x").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Transport(ref m) if m.contains("timed out")),
        "{err}"
    );
}

#[tokio::test]
async fn the_key_is_sent_raw_and_never_printed() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let base = serve(Router::new().fallback(any(move |headers: http::HeaderMap| {
        let record = record.clone();
        async move {
            *record.lock().unwrap() = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            r#"{"data":[],"has_more":false}"#
        }
    })))
    .await;
    let key = ApiKey::new("canary-key-0123456789");
    let client = LevelClient::new(ClientConfig::new(&base), key.clone()).unwrap();
    client
        .list_tags(None, &PageParams::default())
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().as_deref(),
        Some("canary-key-0123456789"),
        "no Bearer prefix"
    );
    for printed in [format!("{key:?}"), format!("{key}"), format!("{client:?}")] {
        assert!(!printed.contains("canary-key"), "{printed}");
    }
}

#[tokio::test]
async fn a_base_url_with_v2_and_ids_with_slashes_work() {
    let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = paths.clone();
    let base = serve(Router::new().fallback(any(move |uri: http::Uri| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(uri.path().to_owned());
            r#"{"id":"a/b+c","name":"t","device_count":0}"#
        }
    })))
    .await;
    let client =
        LevelClient::new(ClientConfig::new(format!("{base}/v2/")), ApiKey::new("k")).unwrap();
    client.get_tag("a/b+c").await.unwrap();
    assert_eq!(paths.lock().unwrap()[0], "/v2/tags/a%2Fb+c");
    assert!(LevelClient::new(ClientConfig::new("not a url"), ApiKey::new("k")).is_err());
}

/// Issue 12, point 6: an upstream that echoes the key, in an error body or
/// in any field of an object, hands it to no caller: the client scrubs the
/// key by value from every response body before reading it.
#[tokio::test]
async fn a_key_echoed_by_the_upstream_is_scrubbed_from_errors_and_objects() {
    const KEY: &str = "canary-echoed-key-77f1";
    let base = serve(Router::new().fallback(any(
        move |uri: http::Uri, headers: http::HeaderMap| async move {
            let key = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            if uri.path().ends_with("/tags") {
                (
                    StatusCode::BAD_REQUEST,
                    format!(r#"{{"error":"bad request for key {key}"}}"#),
                )
            } else {
                (
                    StatusCode::OK,
                    format!(r#"{{"id":"t1","name":"named {key} here","device_count":"{key}"}}"#),
                )
            }
        },
    )))
    .await;
    let client = LevelClient::new(ClientConfig::new(&base), ApiKey::new(KEY)).unwrap();
    let err = client
        .create_tag(&TagName {
            name: "x".to_owned(),
        })
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(KEY) && text.contains("[redacted]"), "{text}");
    // A field of the wrong type: the decode error quotes the value.
    let err = client.get_tag("t1").await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(KEY), "{text}");
}

/// Issue 23, point 5: a header that echoes the key (here `Retry-After`) is
/// scrubbed before anything keeps it, the transcript included: every field
/// of a recorded exchange is scrubbed, not only the body.
#[tokio::test]
async fn a_key_echoed_in_a_header_never_reaches_the_transcript() {
    const KEY: &str = "canary-header-key-31c9";
    let base = serve(
        Router::new().fallback(any(move |headers: http::HeaderMap| async move {
            let key = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", format!("1; key={key}"))],
                format!(r#"{{"error":"slow down, {key}"}}"#),
            )
        })),
    )
    .await;
    let recorder = level_api::transcript::Recorder::new();
    let mut config = ClientConfig::new(&base);
    config.retry = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    };
    let client = LevelClient::new(config, ApiKey::new(KEY))
        .unwrap()
        .recording(recorder.clone());
    let err = client
        .list_tags(None, &PageParams::default())
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(KEY), "{err:?}");
    let exchanges = recorder.exchanges();
    assert_eq!(exchanges.len(), 1);
    let recorded = serde_json::to_string(&exchanges).unwrap();
    assert!(!recorded.contains(KEY), "{recorded}");
    assert_eq!(
        exchanges[0].retry_after.as_deref(),
        Some("1; key=[redacted]"),
        "{recorded}"
    );
}
