//! Support shared by the integration tests: the mock upstream, a small HTTP client, an SSE parser, and the harness
//! that runs the Python SDK end-to-end tests.
#![allow(
    dead_code,
    reason = "each test crate uses a different subset of these helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a panic here is a failed test with its message, which is what a test wants"
)]

pub mod client;
pub mod e2e;
pub mod mock;
pub mod process;
pub mod proxy;
pub mod sse;
