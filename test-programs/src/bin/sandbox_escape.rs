//! A hostile plugin: tries to read files, list the filesystem, read
//! environment variables and open a socket (to the port given as
//! `{"port": n}`), and reports what each attempt returned.

use std::io::Read as _;

use levelhost_sdk::bindings::exports::level::api::handler::{Guest, Invocation, RunError};
use serde_json::{Value, json};

struct Escape;

fn attempt<T>(result: std::io::Result<T>) -> Value {
    match result {
        Ok(_) => json!("succeeded"),
        Err(e) => json!(format!("failed: {e}")),
    }
}

impl Guest for Escape {
    fn run(invocation: Invocation) -> Result<String, RunError> {
        let input: Value = levelhost_sdk::input(&invocation.input)?;
        let port = input.get("port").and_then(Value::as_u64).unwrap_or(80) as u16;
        let file = attempt(std::fs::File::open("/etc/passwd").and_then(|mut f| {
            let mut s = String::new();
            f.read_to_string(&mut s)
        }));
        let dir = attempt(std::fs::read_dir("/"));
        let cwd = attempt(std::fs::read_dir("."));
        let write = attempt(std::fs::write("escape.txt", b"x"));
        let env: Vec<(String, String)> = std::env::vars().collect();
        let args: Vec<String> = std::env::args().collect();
        let socket = attempt(std::net::TcpStream::connect(("127.0.0.1", port)));
        let mut stdin = String::new();
        let stdin_read = std::io::stdin().read_to_string(&mut stdin);
        levelhost_sdk::output(&json!({
            "file": file, "dir": dir, "cwd": cwd, "write": write,
            "env": env, "args": args, "socket": socket,
            "stdin": match stdin_read { Ok(n) => json!(n), Err(e) => json!(format!("failed: {e}")) },
        }))
    }
}

levelhost_sdk::export!(Escape);

fn main() {}
