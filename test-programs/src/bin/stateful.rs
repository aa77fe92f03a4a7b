//! Runs a script of state operations and returns each one's outcome, then
//! ends as the input says: `ok` (the default), `fail`, `trap` or `loop`
//! (until the time limit). The tests use it for the transaction rule, the
//! quotas and the hostile keys.
//!
//! Input: `{"ops": [{"op": "set", "key": "k", "value": "text"}, ...], "then": "ok"}`;
//! ops: `get`, `set`, `delete`, `list` (`prefix`, `after`, `limit`), `cas`
//! (`expected`, `value`), `increment` (`delta`), `set-bytes` (`key`,
//! `bytes`: how many zero bytes), `spin` (`millis`), `timed` (`ops`, timed
//! together), and `get-repeat` (`key`, `times`: that many gets of one key,
//! answering the bytes read; the Extism comparison's host-call loop).

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::state;
use serde_json::{Value, json};
use test_programs::outcome;

struct Stateful;

fn text(v: &[u8]) -> Value {
    match std::str::from_utf8(v) {
        Ok(t) => json!(t),
        Err(_) => json!({ "bytes": v.len() }),
    }
}

fn entry(e: &state::Entry) -> Value {
    json!({ "key": e.key, "value": text(&e.value), "version": e.version })
}

fn op(o: &Value) -> Value {
    let key = o["key"].as_str().unwrap_or_default();
    let value = o["value"].as_str().unwrap_or_default().as_bytes().to_vec();
    outcome(match o["op"].as_str().unwrap_or_default() {
        "get" => state::get(key).map(|e| e.as_ref().map_or(Value::Null, entry)),
        "set" => state::set(key, &value).map(|v| json!(v)),
        "set-bytes" => {
            let n = o["bytes"].as_u64().unwrap_or(0) as usize;
            state::set(key, &vec![0u8; n]).map(|v| json!(v))
        }
        "delete" => state::delete(key).map(|d| json!(d)),
        "list" => state::list_entries(
            o["prefix"].as_str().unwrap_or_default(),
            o["after"].as_str(),
            o["limit"].as_u64().map(|l| l as u32),
        )
        .map(|p| json!({ "items": p.items.iter().map(entry).collect::<Vec<_>>(), "next": p.next })),
        "all" => state::entries(o["prefix"].as_str().unwrap_or_default())
            .map(|all| json!(all.iter().map(entry).collect::<Vec<_>>())),
        "cas" => state::compare_and_swap(key, o["expected"].as_u64(), &value).map(|s| json!(s)),
        "increment" => state::increment(key, o["delta"].as_i64().unwrap_or(1)).map(|n| json!(n)),
        "spin" => {
            // Busy for `millis` (so a test can change the state under the run).
            let until = std::time::Instant::now()
                + std::time::Duration::from_millis(o["millis"].as_u64().unwrap_or(0));
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            Ok(json!(true))
        }
        "get-repeat" => {
            let mut read = 0u64;
            for _ in 0..o["times"].as_u64().unwrap_or(0) {
                match state::get(key) {
                    Ok(e) => read += e.map_or(0, |e| e.value.len() as u64),
                    Err(e) => return outcome(Err(e)),
                }
            }
            Ok(json!(read))
        }
        "timed" => {
            // The ops inside, timed by the guest's monotonic clock (the benchmarks' B11).
            let started = std::time::Instant::now();
            let inner: Vec<Value> = o["ops"]
                .as_array()
                .map(|ops| ops.iter().map(op).collect())
                .unwrap_or_default();
            Ok(json!({ "nanos": started.elapsed().as_nanos() as u64, "results": inner }))
        }
        other => return json!({ "unknown-op": other }),
    })
}

impl Guest for Stateful {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Value = levelhost_sdk::input(&invocation.input)?;
        let results: Vec<Value> = input["ops"]
            .as_array()
            .map(|ops| ops.iter().map(op).collect())
            .unwrap_or_default();
        match input["then"].as_str().unwrap_or("ok") {
            "fail" => Err(RunError::Failed(format!("asked to fail after {results:?}"))),
            "trap" => {
                #[expect(clippy::panic, reason = "the input asks this guest to trap")]
                {
                    panic!("asked to trap after {} operations", results.len());
                }
            }
            "loop" => {
                // Until the host's time limit (or a kill) ends the run.
                let mut n: u64 = 0;
                loop {
                    n = n.wrapping_add(1);
                    std::hint::black_box(n);
                }
            }
            _ => levelhost_sdk::output(&json!({ "results": results })),
        }
    }
}

levelhost_sdk::export!(Stateful);

fn main() {}
