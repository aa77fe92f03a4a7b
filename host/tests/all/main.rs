//! levelhost's integration tests: one binary, one module per area.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod api; // every level:api operation, from a plugin, through the host, against the simulator
mod cli; // the levelhost command as a user runs it
mod client; // the Level client against real HTTP servers on loopback: retries, errors, limits
mod plugins; // the example plugins: device-report and stale-device-tagger
mod run; // running components: sandboxing, failures, world mismatches
mod sim; // the simulator over plain HTTP: auth, access levels, paging, errors, rate limit
mod support; // TestEnv: a simulator, a client and a runner per test
