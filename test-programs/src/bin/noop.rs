//! The smallest plugin: returns `{}` without calling the host. Benchmarks
//! use it to measure what levelhost itself costs.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};

struct Noop;

impl Guest for Noop {
    fn run(_: Invocation) -> Result<String, RunError> {
        Ok("{}".to_owned())
    }
}

levelhost_sdk::export!(Noop);

fn main() {}
