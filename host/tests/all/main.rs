//! levelhost's integration tests: one binary, one module per area.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]
#![expect(
    clippy::disallowed_methods,
    reason = "tests speak plain HTTP to the simulator and to serve, and read the test registry's address"
)]

mod api; // every level:api operation, from a plugin, through the host, against the simulator
mod approvals; // plans over a policy wait for a person; approved plans apply exactly, once
mod cli; // the levelhost command as a user runs it
mod cli_grants; // levelhost check, run --dry-run and audit with a real configuration file
mod client; // the Level client against real HTTP servers on loopback: retries, errors, limits
mod cluster; // serve replicas sharing a PostgreSQL history
mod effects; // the gate decides on a call's whole effect: indirect targets, fields, cut-off writes
mod gateway; // levelhost gateway with real clients (curl, Python requests): scopes, keys, rotation
mod grant_properties; // the grant as a property: 10,000 random grants and call sequences, oracle the simulator
mod grants; // grants proven with hostile plugins: capabilities, scopes, limits, the key
mod host_calls; // the host side of level:api called without a component, checked against the simulator
mod languages; // plugins in Rust, JavaScript, TypeScript, Python, Go and C: new, build, run
mod lifecycle; // one run lifecycle for every entry point: a plugin never runs twice at once across processes
mod outbound; // connections: wasi:http requests to other systems through the gate, against httpbin
mod packages; // sharing vetted plugins: packages, signatures, trust, upgrades, catalog, OCI registry
mod plugins; // the example plugins: device-report and stale-device-tagger
mod run; // running components: sandboxing, failures, world mismatches
mod serve; // levelhost serve: schedules, kill -9 and restart, signed webhooks, a shared rate budget
mod sim; // the simulator over plain HTTP: auth, access levels, paging, errors, rate limit
mod state; // a plugin's durable state: committed with an ok run only, quotas, isolation, replicas
mod support; // TestEnv: a simulator, a client and a runner per test
