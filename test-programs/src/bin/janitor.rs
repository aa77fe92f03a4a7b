//! Imports only `devices`: counts devices, or deletes the one named by
//! `{"delete": ID}`. Tests install it as a package whose versions ask for
//! more or less than their grant.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::bindings::level::api::devices;
use levelhost_sdk::bindings::level::api::types::PageRequest;
use serde_json::{Value, json};

struct Janitor;

fn act(args: &Value) -> Result<Value, levelhost_sdk::bindings::level::api::types::Error> {
    match args.get("delete").and_then(Value::as_str) {
        Some(id) => {
            devices::delete_device(id)?;
            Ok(json!({ "deleted": id }))
        }
        None => {
            let page = devices::list_devices(
                &devices::DeviceFilter::default(),
                devices::DeviceInclude::empty(),
                &PageRequest {
                    limit: Some(100),
                    starting_after: None,
                    ending_before: None,
                },
            )?;
            Ok(json!({ "devices": page.items.len() }))
        }
    }
}

impl Guest for Janitor {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let args: Value = levelhost_sdk::input(&invocation.input)?;
        levelhost_sdk::output(&test_programs::outcome(act(&args)))
    }
}

levelhost_sdk::export!(Janitor);

fn main() {}
