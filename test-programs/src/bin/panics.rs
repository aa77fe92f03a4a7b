//! A plugin that prints to stdout and stderr and then panics.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};

struct Panics;

impl Guest for Panics {
    fn run(_: Invocation) -> Result<String, RunError> {
        println!("about to fail");
        eprintln!("this goes to stderr");
        #[expect(clippy::panic, reason = "this guest exists to panic")]
        {
            panic!("deliberate failure");
        }
    }
}

levelhost_sdk::export!(Panics);

fn main() {}
