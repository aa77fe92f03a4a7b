//! A run's requests to other systems, recorded or answered from a record,
//! so `levelhost run --record`, `levelhost replay` and `levelhost test` cover
//! connections as they cover Level.
//!
//! Recording keeps each request the gate allowed and sent (connection,
//! method, path, body) with the answer the plugin was handed: already
//! scrubbed of every form of the credential, so a transcript holds no secret.
//! Answering hands the plugin the recorded answer of the first unused
//! exchange that matches, and sends nothing; a request without one fails
//! and is named, as a Level request without a recorded answer is.

use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One request to another system and the answer the plugin was handed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpExchange {
    /// The connection's name.
    pub connection: String,
    /// The method, upper case.
    pub method: String,
    /// The path and query the plugin asked for.
    pub path: String,
    /// The request body as a plan shows it (JSON, text or `{"base64": ...}`);
    /// absent in a test's stated answer, which then answers any body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
    /// The answer's status.
    pub status: u16,
    /// The answer's headers, scrubbed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The answer's body, scrubbed.
    #[serde(default)]
    pub body: RecordedBody,
}

/// An answer's body: its text, or base64 when it is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordedBody {
    /// UTF-8 text.
    Text(String),
    /// Other bytes.
    Bytes {
        /// The bytes in standard base64.
        base64: String,
    },
}

impl Default for RecordedBody {
    fn default() -> Self {
        RecordedBody::Text(String::new())
    }
}

impl RecordedBody {
    /// The body of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => RecordedBody::Text(text.to_owned()),
            Err(_) => RecordedBody::Bytes {
                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            },
        }
    }

    /// Its bytes (a base64 text that does not decode is handed over as text).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            RecordedBody::Text(text) => text.clone().into_bytes(),
            RecordedBody::Bytes { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .unwrap_or_else(|_| base64.clone().into_bytes()),
        }
    }
}

#[derive(Debug)]
enum Mode {
    Record(Vec<HttpExchange>),
    Answer {
        exchanges: Vec<(HttpExchange, bool)>,
        unanswered: Vec<String>,
    },
}

/// A run's outbound exchanges, recorded or answered; clones share one tape.
#[derive(Debug, Clone)]
pub struct HttpTape(Arc<Mutex<Mode>>);

impl HttpTape {
    /// A tape that records what the run sends and receives.
    pub fn record() -> Self {
        Self(Arc::new(Mutex::new(Mode::Record(Vec::new()))))
    }

    /// A tape that answers from `exchanges` and sends nothing.
    pub fn answer(exchanges: Vec<HttpExchange>) -> Self {
        Self(Arc::new(Mutex::new(Mode::Answer {
            exchanges: exchanges.into_iter().map(|e| (e, false)).collect(),
            unanswered: Vec::new(),
        })))
    }

    fn mode(&self) -> std::sync::MutexGuard<'_, Mode> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether requests are answered from the tape instead of sent.
    pub fn answers(&self) -> bool {
        matches!(*self.mode(), Mode::Answer { .. })
    }

    /// The recorded exchanges (when recording), in the order they ended.
    pub fn recorded(&self) -> Vec<HttpExchange> {
        match &*self.mode() {
            Mode::Record(exchanges) => exchanges.clone(),
            Mode::Answer { .. } => Vec::new(),
        }
    }

    /// The requests there was no answer for, as `CONNECTION METHOD /path`.
    pub fn unanswered(&self) -> Vec<String> {
        match &*self.mode() {
            Mode::Record(_) => Vec::new(),
            Mode::Answer { unanswered, .. } => unanswered.clone(),
        }
    }

    /// Keeps an exchange (when recording).
    pub(super) fn keep(&self, exchange: HttpExchange) {
        if let Mode::Record(exchanges) = &mut *self.mode() {
            exchanges.push(exchange);
        }
    }

    /// The answer to a request: the first unused exchange with the same
    /// connection, method, path and (where it states one) body.
    pub(super) fn find(
        &self,
        connection: &str,
        method: &str,
        path: &str,
        request: &serde_json::Value,
    ) -> Option<HttpExchange> {
        let Mode::Answer {
            exchanges,
            unanswered,
        } = &mut *self.mode()
        else {
            return None;
        };
        let found = exchanges.iter_mut().find(|(e, used)| {
            !*used
                && e.connection == connection
                && e.method == method
                && e.path == path
                && e.request.as_ref().is_none_or(|r| r == request)
        });
        match found {
            Some((exchange, used)) => {
                *used = true;
                Some(exchange.clone())
            }
            None => {
                unanswered.push(format!("{connection} {method} {path}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exchange(path: &str, request: Option<serde_json::Value>, body: &str) -> HttpExchange {
        HttpExchange {
            connection: "ticketing".to_owned(),
            method: "POST".to_owned(),
            path: path.to_owned(),
            request,
            status: 201,
            headers: Vec::new(),
            body: RecordedBody::Text(body.to_owned()),
        }
    }

    #[test]
    fn answers_are_handed_out_once_each_in_order_and_a_missing_one_is_named() {
        let tape = HttpTape::answer(vec![
            exchange("/t", Some(json!({"a": 1})), "first"),
            exchange("/t", None, "any body"),
        ]);
        let answer = |body| tape.find("ticketing", "POST", "/t", &body).map(|e| e.body);
        assert_eq!(
            answer(json!({"a": 2})),
            Some(RecordedBody::Text("any body".into()))
        );
        assert_eq!(
            answer(json!({"a": 1})),
            Some(RecordedBody::Text("first".into()))
        );
        assert_eq!(answer(json!({"a": 1})), None);
        assert!(tape.find("chat", "POST", "/t", &json!(null)).is_none());
        assert_eq!(
            tape.unanswered(),
            ["ticketing POST /t", "chat POST /t"].map(String::from)
        );
    }

    #[test]
    fn bodies_that_are_not_text_keep_their_bytes() {
        let bytes = [0xff, 0x00, 0x41];
        let body = RecordedBody::of(&bytes);
        assert!(matches!(body, RecordedBody::Bytes { .. }));
        assert_eq!(body.bytes(), bytes);
        let text: RecordedBody = serde_json::from_value(json!("hi")).unwrap();
        assert_eq!(text.bytes(), b"hi");
    }
}
