//! A hostile plugin. `{"attack": NAME}` picks what it tries:
//! `loop` (never returns), `memory` (allocates without end), `recursion`
//! (recurses without end), `output` (returns 4 MiB), `log-flood` (logs
//! without end), `stdout-flood` (prints without end), `empty-writes` (writes
//! nothing to stdout and stderr, without end, logging every million), `big-arg` (passes a
//! 2 MiB string to a host call), `key-hunt` (looks everywhere a key could
//! leak: environment, files, error messages) and reports what it found.
//! Not an attack: `spin` runs for `millis` (default 1500), creates the tag
//! `tag` if given, and returns when it began and ended (ms since the epoch),
//! so a test can tell whether two runs overlapped.

use std::hint::black_box;

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::bindings::level::api::types::PageRequest;
use levelhost_sdk::bindings::level::api::{devices, tags};
use serde_json::{Value, json};

struct Hostile;

/// Recursion whose frames live on the wasm stack (scalars only, nothing on
/// Rust's shadow stack in linear memory), so it exhausts the host's wasm stack limit.
#[inline(never)]
fn recurse(n: u64, limit: u64) -> u64 {
    if n >= limit {
        return n;
    }
    let r = recurse(n + 1, limit);
    r ^ (r >> 3).wrapping_add(n)
}

fn key_hunt() -> Value {
    let mut found = serde_json::Map::new();
    found.insert("env".into(), json!(std::env::vars().collect::<Vec<_>>()));
    for path in [
        "/proc/self/environ",
        "/etc/passwd",
        "levelhost.toml",
        "/root/.bash_history",
        ".",
    ] {
        found.insert(
            path.into(),
            json!(std::fs::read_to_string(path).map_err(|e| e.to_string())),
        );
    }
    // Error messages are the classic leak: provoke every kind Level can answer.
    let bad_page = PageRequest {
        limit: Some(1000),
        starting_after: Some("\u{0}".into()),
        ending_before: None,
    };
    let errors = vec![
        format!(
            "{:?}",
            devices::get_device("does-not-exist", devices::DeviceInclude::empty())
        ),
        format!(
            "{:?}",
            devices::list_devices(
                &devices::DeviceFilter::default(),
                devices::DeviceInclude::empty(),
                &bad_page
            )
        ),
        format!("{:?}", tags::create_tag("")),
        format!("{:?}", tags::tag_devices("nope", &["x".to_owned()])),
        format!("{:?}", tags::get_tag("../../v2/devices?limit=1")),
    ];
    found.insert("errors".into(), json!(errors));
    Value::Object(found)
}

impl Guest for Hostile {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Value = levelhost_sdk::input(&invocation.input)?;
        match input
            .get("attack")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "spin" => {
                let now = || {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or_default()
                };
                let began = now();
                let millis = input.get("millis").and_then(Value::as_u64).unwrap_or(1500);
                let mut n = 0u64;
                while now() < began + millis {
                    n = black_box(n.wrapping_add(1));
                }
                if let Some(tag) = input.get("tag").and_then(Value::as_str) {
                    tags::create_tag(tag).map_err(RunError::Level)?;
                }
                Ok(json!({ "began_ms": began, "ended_ms": now() }).to_string())
            }
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recursion" => {
                let limit = input
                    .get("depth")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                Ok(recurse(0, limit).to_string())
            }
            "output" => levelhost_sdk::output(&"x".repeat(4 << 20)),
            "log-flood" => loop {
                levelhost_sdk::info(&"spam ".repeat(200), &[("again", "and again")]);
            },
            "stdout-flood" => loop {
                println!("{}", "spam ".repeat(200));
            },
            "empty-writes" => {
                // Empty writes straight to the WASI streams, as a guest that
                // wants the host to queue an item per write would make them.
                let out = wasip2::cli::stdout::get_stdout();
                let err = wasip2::cli::stderr::get_stderr();
                let mut n: u64 = 0;
                loop {
                    let _ = out.write(&[]);
                    let _ = err.write(&[]);
                    n += 2;
                    if n.is_multiple_of(1_000_000) {
                        levelhost_sdk::info("empty writes", &[("count", &n.to_string())]);
                    }
                }
            }
            "big-arg" => {
                let result = tags::create_tag(&"t".repeat(2 << 20));
                Ok(json!({ "returned": format!("{result:?}") }).to_string())
            }
            "key-hunt" => {
                let found = key_hunt();
                levelhost_sdk::warn("what I found", &[("loot", &found.to_string())]);
                println!("{found}");
                levelhost_sdk::output(&found)
            }
            other => Err(RunError::InvalidInput(format!("unknown attack {other:?}"))),
        }
    }
}

levelhost_sdk::export!(Hostile);

fn main() {}
