//! `POST /hooks/{plugin}`: Level's webhook deliveries. The body is read
//! (bounded in size and time), its signature verified against the plugin's
//! secret over the exact raw bytes before it is parsed, and the event
//! claimed as a run (one per `event_id`). Every delivery is recorded with
//! its verdict, those refused for an unknown plugin or an oversized or slow
//! body included.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use levelhost_core::Chain;

use crate::executor::Origin;
use crate::service::Service;

/// Why a delivery was not taken: one table of HTTP status, recorded
/// verdict and message.
#[derive(Debug)]
pub(crate) enum HookRejection {
    /// No plugin of that name.
    NoPlugin,
    /// The plugin takes no events.
    NoEvents,
    /// The body is larger than `max_body_bytes`.
    TooLarge(usize),
    /// The body did not arrive within the read timeout.
    SlowBody,
    /// The body could not be read.
    Unreadable(String),
    /// A missing or wrong signature.
    Signature(&'static str),
    /// The body is not JSON.
    NotJson(String),
    /// The envelope lacks `event_id` or `event_type`.
    MissingFields,
    /// Shutdown has begun.
    ShuttingDown,
    /// The run could not be claimed in the history.
    History(crate::executor::ExecuteError),
}

impl HookRejection {
    /// The status, the message answered, and the verdict and detail recorded
    /// with the delivery (none: not recorded).
    fn parts(&self) -> (StatusCode, String, Option<(&'static str, String)>) {
        match self {
            Self::NoPlugin => (
                StatusCode::NOT_FOUND,
                "no such plugin".to_owned(),
                Some(("unknown", "no plugin of that name is served".to_owned())),
            ),
            Self::NoEvents => (
                StatusCode::NOT_FOUND,
                "this plugin takes no events".to_owned(),
                Some(("unknown", "the plugin takes no events".to_owned())),
            ),
            Self::TooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {max} bytes"),
                Some(("too-large", format!("the body is larger than {max} bytes"))),
            ),
            Self::SlowBody => (
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time".to_owned(),
                Some(("timed-out", "the body did not arrive in time".to_owned())),
            ),
            Self::Unreadable(e) => (
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
                Some(("invalid", e.clone())),
            ),
            Self::Signature(why) => (
                StatusCode::UNAUTHORIZED,
                (*why).to_owned(),
                Some(("rejected", (*why).to_owned())),
            ),
            Self::NotJson(e) => (
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
                Some(("invalid", e.clone())),
            ),
            Self::MissingFields => (
                StatusCode::BAD_REQUEST,
                "event_id and event_type are required".to_owned(),
                Some(("invalid", "event_id or event_type is missing".to_owned())),
            ),
            Self::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down".to_owned(),
                Some(("refused", "the host is shutting down".to_owned())),
            ),
            Self::History(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Chain(e).to_string(),
                None,
            ),
        }
    }
}

impl IntoResponse for HookRejection {
    fn into_response(self) -> Response {
        let (status, message, _) = self.parts();
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// A delivery that was taken: a run started, a duplicate, or an event type the plugin ignores.
enum Taken {
    Started(String),
    Duplicate(String),
    Ignored(String),
}

impl IntoResponse for Taken {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Taken::Started(id) => (StatusCode::ACCEPTED, serde_json::json!({ "run_id": id })),
            Taken::Duplicate(id) => (StatusCode::OK, serde_json::json!({ "duplicate": id })),
            Taken::Ignored(t) => (StatusCode::ACCEPTED, serde_json::json!({ "ignored": t })),
        };
        (status, Json(body)).into_response()
    }
}

/// `POST /hooks/{plugin}`.
pub(crate) async fn hook(
    State(service): State<Arc<Service>>,
    Path(plugin): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HookRejection> {
    let verdict = match read_body(&service, &plugin, &headers, body).await {
        Ok(body) => take(&service, &plugin, &headers, &body).await,
        Err(rejection) => Err((rejection, None)),
    };
    let counted = match &verdict {
        Ok((Taken::Started(_), ..)) => Some("accepted"),
        Ok((Taken::Duplicate(_), ..)) => Some("duplicate"),
        Ok((Taken::Ignored(_), ..)) => Some("ignored"),
        Err((rejection, _)) => rejection.parts().2.map(|(verdict, _)| verdict),
    };
    if let Some(counted) = counted {
        // Anyone can post to any path: only a served plugin's name becomes a
        // label, so made-up names neither add series nor reach the exposition.
        let label = match service.plugins().contains_key(&plugin) {
            true => plugin.as_str(),
            false => crate::metrics::UNKNOWN_PLUGIN,
        };
        service.metrics().delivery(label, counted);
    }
    match verdict {
        Ok((taken, event_id, detail)) => {
            // A claimed or duplicate delivery was recorded with its claim, in one transaction.
            if let Taken::Ignored(_) = &taken {
                record(&service, &plugin, Some(&event_id), "ignored", &detail).await;
            }
            Ok(taken.into_response())
        }
        Err((rejection, event_id)) => {
            if let (_, _, Some((verdict, detail))) = rejection.parts() {
                record(&service, &plugin, event_id.as_deref(), verdict, &detail).await;
            }
            Err(rejection)
        }
    }
}

/// Reads the body of a delivery to a known plugin, within `max_body_bytes`
/// and the body read timeout.
/// A body whose `Content-Length` already exceeds the limit is refused
/// before a byte of it is read, so the client gets its 413 at once (and no
/// `100 Continue`: the body is never asked for).
async fn read_body(
    service: &Service,
    plugin: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, HookRejection> {
    if !service.plugins().contains_key(plugin) {
        return Err(HookRejection::NoPlugin);
    }
    let max = service.max_body;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(HookRejection::TooLarge(max));
    }
    match tokio::time::timeout(service.body_timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(HookRejection::SlowBody),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                HookRejection::TooLarge(max)
            } else {
                HookRejection::Unreadable(e.to_string())
            })
        }
    }
}

/// The verdict on a delivery, with the event id and the detail to record.
type Verdict = Result<(Taken, String, String), (HookRejection, Option<String>)>;

async fn take(service: &Arc<Service>, plugin: &str, headers: &HeaderMap, body: &Bytes) -> Verdict {
    let plugins = service.plugins();
    let installed = plugins.get(plugin).ok_or((HookRejection::NoPlugin, None))?;
    let events = installed
        .served
        .events
        .as_ref()
        .ok_or((HookRejection::NoEvents, None))?;
    // Verify before parsing: the signature covers the exact raw body.
    let signature = headers
        .get("x-level-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(why) = level_api::webhook::verify(events.secret.as_bytes(), body, signature) {
        tracing::warn!(plugin, "refused a webhook delivery: {why}");
        return Err((HookRejection::Signature(why), None));
    }
    // Once verified, the secret is scrubbed from the body: a sender that
    // echoes it hands it to no plugin, history or log.
    let body = level_api::scrub(body.to_vec(), events.secret.as_bytes());
    let event: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| (HookRejection::NotJson(e.to_string()), None))?;
    let field = |name: &str| event.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let (Some(event_id), Some(event_type)) = (field("event_id"), field("event_type")) else {
        return Err((HookRejection::MissingFields, None));
    };
    if let Some(types) = &events.types
        && !types.contains(&event_type)
    {
        let detail = format!("{event_type} is not one of the plugin's event types");
        return Ok((Taken::Ignored(event_type), event_id, detail));
    }
    if service.is_stopping() {
        return Err((HookRejection::ShuttingDown, Some(event_id)));
    }
    let origin = Origin::Event {
        event_id: event_id.clone(),
        event_type,
    };
    // Claim now, so a second delivery of the same event is a duplicate even
    // while the first waits; the delivery is recorded in the same transaction.
    let claimed = match service
        .executor()
        .claim_delivery(&installed.served, origin)
        .await
    {
        Ok(Some(claimed)) => claimed,
        Ok(None) => {
            let detail = "this event already started a run".to_owned();
            return Ok((Taken::Duplicate(event_id.clone()), event_id, detail));
        }
        Err(e) => return Err((HookRejection::History(e), None)),
    };
    let id = claimed.id.clone();
    let task_service = service.clone();
    let name = plugin.to_owned();
    let input = event_input(&installed.served.input, event);
    service.spawn(async move {
        task_service.run_queued(&name, claimed, input).await;
    });
    Ok((Taken::Started(id.clone()), event_id, id))
}

/// What an event run receives: the plugin's configured input, with the
/// verified envelope (`event_type`, `event_id`, `occurred_at`, `data`) under
/// `event`. A plugin configured with a non-object input gets `{"event": ...}`.
pub fn event_input(
    configured: &serde_json::Value,
    envelope: serde_json::Value,
) -> serde_json::Value {
    let mut input = match configured {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    input.insert("event".to_owned(), envelope);
    serde_json::Value::Object(input)
}

/// Records a delivery and its verdict.
async fn record(service: &Service, plugin: &str, event: Option<&str>, verdict: &str, detail: &str) {
    let written = service
        .history
        .record_delivery(plugin, event, verdict, detail)
        .await;
    if let Err(e) = written {
        tracing::error!("{}", Chain(&e));
    }
}
