//! Outbound webhooks (reference §8): the simulator posts Level's event
//! envelope, signed with `X-Level-Signature`, to every configured receiver,
//! trying each delivery up to three times.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Where the simulator delivers events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// The receiver's URL.
    pub url: String,
    /// The secret deliveries are signed with.
    pub secret: String,
}

/// One delivery attempt's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The receiver.
    pub url: String,
    /// The event id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The receiver's HTTP status (0 = no answer).
    pub status: u16,
    /// Which attempt (1 to 3).
    pub attempt: u32,
}

/// Delivers events and remembers how each delivery went.
#[derive(Debug)]
pub struct Events {
    targets: Vec<WebhookTarget>,
    http: reqwest::Client,
    log: Mutex<Vec<Delivery>>,
}

/// Level tries a delivery this many times in all.
const ATTEMPTS: u32 = 3;

impl Events {
    #[expect(
        clippy::disallowed_methods,
        reason = "the simulator sends webhook deliveries to levelhost, not requests to Level"
    )]
    pub(super) fn new(targets: Vec<WebhookTarget>) -> Self {
        Self {
            targets,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            log: Mutex::default(),
        }
    }

    /// Every delivery attempt so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends `event_type` with `data` to every receiver, in the background.
    pub(super) fn emit(self: &std::sync::Arc<Self>, event_type: &str, data: serde_json::Value) {
        if self.targets.is_empty() {
            return;
        }
        let event_id = uuid_like();
        let envelope = serde_json::json!({
            "event_type": event_type,
            "event_id": event_id,
            "occurred_at": level_api::clock::now(),
            "data": data,
        });
        let body = envelope.to_string();
        for target in self.targets.clone() {
            let events = self.clone();
            let (body, event_id, event_type) =
                (body.clone(), event_id.clone(), event_type.to_owned());
            tokio::spawn(async move {
                let signature = level_api::webhook::sign(target.secret.as_bytes(), body.as_bytes());
                for attempt in 1..=ATTEMPTS {
                    let sent = events
                        .http
                        .post(&target.url)
                        .header("Content-Type", "application/json")
                        .header("X-Level-Signature", &signature)
                        .body(body.clone())
                        .send()
                        .await;
                    let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
                    events
                        .log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Delivery {
                            url: target.url.clone(),
                            event_id: event_id.clone(),
                            event_type: event_type.clone(),
                            status,
                            attempt,
                        });
                    if (200..300).contains(&status) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
    }
}

/// A random UUID-shaped id (version 4 layout).
fn uuid_like() -> String {
    let a: u128 = rand::random();
    let hex = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
