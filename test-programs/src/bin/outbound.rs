//! Makes the requests its input lists, through `levelhost_sdk::http`, and
//! returns what each got: the answer (status, headers, body) or the error.
//! The tests use it honestly (a connection's routes) and as a hostile
//! plugin (every trick a route or the network rules must refuse).
//!
//! Input: `{"requests": [{"method": "GET", "url": "https://echo/get",
//! "headers": [["x-a", "1"]], "body": "text"}]}`.

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use levelhost_sdk::http;
use serde_json::{Value, json};

struct Outbound;

impl Guest for Outbound {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Value = levelhost_sdk::input(&invocation.input)?;
        let mut results = Vec::new();
        for spec in input["requests"].as_array().cloned().unwrap_or_default() {
            let method = spec["method"].as_str().unwrap_or("GET");
            let url = spec["url"].as_str().unwrap_or_default();
            let mut request = http::request(method, url);
            for pair in spec["headers"].as_array().cloned().unwrap_or_default() {
                request = request.header(
                    pair[0].as_str().unwrap_or_default(),
                    pair[1].as_str().unwrap_or_default(),
                );
            }
            if let Some(body) = spec["body"].as_str() {
                request = request.body(body.as_bytes().to_vec());
            }
            results.push(match request.send() {
                Ok(response) => json!({
                    "status": response.status,
                    "headers": response.headers,
                    "body": response.text(),
                }),
                Err(e) => json!({ "error": e.0 }),
            });
        }
        levelhost_sdk::output(&json!({ "results": results }))
    }
}

levelhost_sdk::export!(Outbound);

fn main() {}
