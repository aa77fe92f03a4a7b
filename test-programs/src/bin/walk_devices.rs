//! Walks every device page by hand, forward with `starting-after` and then
//! backward with `ending-before`, at the page size given as `{"limit": n}`.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::bindings::level::api::devices::{self, DeviceFilter, DeviceInclude};
use levelhost_sdk::bindings::level::api::types::PageRequest;
use serde_json::{Value, json};

struct Walk;

fn fetch(
    limit: u32,
    after: Option<String>,
    before: Option<String>,
) -> Result<(Vec<String>, bool), RunError> {
    let page = devices::list_devices(
        &DeviceFilter::default(),
        DeviceInclude::empty(),
        &PageRequest {
            limit: Some(limit),
            starting_after: after,
            ending_before: before,
        },
    )?;
    Ok((
        page.items.into_iter().map(|d| d.id).collect(),
        page.has_more,
    ))
}

impl Guest for Walk {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Value = levelhost_sdk::input(&invocation.input)?;
        let limit = input.get("limit").and_then(Value::as_u64).unwrap_or(100) as u32;
        let mut forward = Vec::new();
        let mut pages = 0;
        let mut after = None;
        loop {
            let (ids, more) = fetch(limit, after.take(), None)?;
            pages += 1;
            after = ids.last().cloned();
            forward.extend(ids);
            if !more || after.is_none() {
                break;
            }
        }
        let mut backward: Vec<String> = Vec::new();
        let mut before = forward.last().cloned();
        if let Some(last) = &before {
            backward.push(last.clone());
        }
        while let Some(cursor) = before.take() {
            let (ids, more) = fetch(limit, None, Some(cursor))?;
            before = ids.first().cloned();
            backward.splice(0..0, ids);
            if !more {
                break;
            }
        }
        levelhost_sdk::output(&json!({ "forward": forward, "backward": backward, "pages": pages }))
    }
}

levelhost_sdk::export!(Walk);

fn main() {}
