//! Shared helpers for the end-to-end tests: a real `nats-server` per test,
//! the OpenAI upstream double, and `switchyard` processes whose listening
//! addresses are read from their logs (every test uses port 0).

// Test support: a panic is how a helper reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::zombie_processes
)]

pub mod double;
pub mod nats;
pub mod process;
