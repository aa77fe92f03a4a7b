//! `alert-to-ticket`: opens a ticket in the ticketing system (the
//! `ticketing` connection) for each Level alert that becomes active, and
//! closes it when the alert resolves. Which ticket belongs to which alert is
//! kept in the plugin's state (`alert:<alert id>` holds the ticket's id), so
//! an event delivered twice opens one ticket, and a run that fails keeps no
//! half-made mapping.
//!
//! The ticketing API: `POST /tickets` with `{summary, details, severity,
//! device}` answers the new ticket with its `id`; `POST /tickets/{id}/close`
//! with `{resolution}` closes it.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::{http, state};
use serde::Deserialize;
use serde_json::{Value, json};

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
    id: String,
    name: String,
    description: String,
    severity: String,
    device_hostname: String,
}

/// The state key holding the ticket opened for `alert`.
fn key(alert: &Alert) -> String {
    format!("alert:{}", alert.id)
}

/// An answer's status checked: 2xx, or the run fails naming the answer.
fn checked(answer: http::Response, what: &str) -> Result<http::Response, RunError> {
    if answer.is_success() {
        Ok(answer)
    } else {
        Err(RunError::Failed(format!(
            "the ticketing system answered {} to {what}: {}",
            answer.status,
            answer.text()
        )))
    }
}

fn open(alert: &Alert) -> Result<Value, RunError> {
    if let Some(ticket) = state::get_json::<String>(&key(alert))? {
        return Ok(json!({ "ticket": ticket, "opened": false }));
    }
    let answer = http::post("https://ticketing/tickets")
        .json(&json!({
            "summary": format!("{} on {}", alert.name, alert.device_hostname),
            "details": alert.description,
            "severity": alert.severity,
            "device": alert.device_hostname,
        }))
        .send()?;
    let created: Value = checked(answer, "opening a ticket")?.json()?;
    let ticket = match &created["id"] {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        _ => {
            return Err(RunError::Failed(format!(
                "the ticketing system's answer has no ticket id: {created}"
            )));
        }
    };
    state::set_json(&key(alert), &ticket)?;
    levelhost_sdk::info(
        "opened a ticket",
        &[("alert", &alert.id), ("ticket", &ticket)],
    );
    Ok(json!({ "ticket": ticket, "opened": true }))
}

fn close(alert: &Alert) -> Result<Value, RunError> {
    let Some(ticket) = state::get_json::<String>(&key(alert))? else {
        return Ok(json!({ "ticket": null, "closed": false }));
    };
    let answer = http::post(&format!("https://ticketing/tickets/{ticket}/close"))
        .json(&json!({ "resolution": format!("Level resolved the alert {}", alert.name) }))
        .send()?;
    checked(answer, "closing a ticket")?;
    state::delete(&key(alert))?;
    levelhost_sdk::info(
        "closed a ticket",
        &[("alert", &alert.id), ("ticket", &ticket)],
    );
    Ok(json!({ "ticket": ticket, "closed": true }))
}

struct AlertToTicket;

impl Guest for AlertToTicket {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Input = levelhost_sdk::input(&invocation.input)?;
        let alert = &input.event.data;
        let done = match input.event.event_type.as_str() {
            "alert_active" => open(alert)?,
            "alert_resolved" => close(alert)?,
            other => json!({ "ignored": other }),
        };
        levelhost_sdk::output(&done)
    }
}

levelhost_sdk::export!(AlertToTicket);
