//! Returns its invocation (input, trigger, run id) and logs one line.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError, Trigger};
use serde_json::{Value, json};

struct Echo;

impl Guest for Echo {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Value = levelhost_sdk::input(&invocation.input)?;
        // An event run carries the delivery under `event`.
        if input.get("fail").is_some() || input.pointer("/event/fail").is_some() {
            return Err(RunError::Failed("asked to fail".to_owned()));
        }
        levelhost_sdk::info("echoing", &[("run", &invocation.run_id)]);
        let trigger = match invocation.trigger {
            Trigger::Manual => json!("manual"),
            Trigger::Schedule(at) => json!({ "schedule": at }),
            Trigger::Event(kind) => json!({ "event": kind }),
        };
        levelhost_sdk::output(
            &json!({ "input": input, "trigger": trigger, "run_id": invocation.run_id }),
        )
    }
}

levelhost_sdk::export!(Echo);

fn main() {}
