//! `alert-to-chat`: posts each Level alert that becomes active to a chat
//! channel through the `chat` connection (a Teams or Slack incoming webhook,
//! whose secret URL only the host holds).
//!
//! Input: the envelope of the Level event that started the run, under
//! `event`. An `alert_active` event posts one message; any other event posts
//! nothing. A chat that answers an error fails the run (Level's delivery,
//! or an operator, can run it again).

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::http;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Input {
    /// The Level event that started the run.
    event: Event,
}

#[derive(Deserialize)]
struct Event {
    event_type: String,
    #[serde(default)]
    data: Alert,
}

/// The alert of an alert event (the fields this plugin uses).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Alert {
    name: String,
    description: String,
    severity: String,
    device_hostname: String,
}

/// The message for an alert: severity, name and device, then its description.
fn message(alert: &Alert) -> String {
    let mut text = format!(
        "[{}] {} on {}",
        alert.severity, alert.name, alert.device_hostname
    );
    if !alert.description.is_empty() {
        text.push_str(": ");
        text.push_str(&alert.description);
    }
    text
}

struct AlertToChat;

impl Guest for AlertToChat {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Input = levelhost_sdk::input(&invocation.input)?;
        if input.event.event_type != "alert_active" {
            return levelhost_sdk::output(
                &json!({ "posted": false, "event_type": input.event.event_type }),
            );
        }
        let text = message(&input.event.data);
        let answer = http::post("https://chat/")
            .json(&json!({ "text": text }))
            .send()?;
        if !answer.is_success() {
            return Err(RunError::Failed(format!(
                "the chat answered {}: {}",
                answer.status,
                answer.text()
            )));
        }
        levelhost_sdk::info("posted the alert", &[("alert", &input.event.data.name)]);
        levelhost_sdk::output(&json!({ "posted": true, "text": text }))
    }
}

levelhost_sdk::export!(AlertToChat);
