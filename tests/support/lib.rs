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

/// A reqwest client for tests. reqwest is built without a default crypto
/// provider (the binary installs ring at start), so tests install it too.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
