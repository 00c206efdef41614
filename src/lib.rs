//! Switchyard: a cost-optimising reverse proxy for commercial LLM APIs.
//!
//! The request pipeline, one module per stage, in request order:
//!
//! - [`auth`]: API key → [`auth::Principal`] (user, team, key), cached.
//! - [`policy`]: the team's rules, hot-reloaded from `policies/*.yaml`.
//! - [`classify`]: difficulty and task type from a local embedding model.
//! - [`route`]: the cheapest model that meets the policy for this query (pure); [`local`] tracks which local
//!   models are loaded.
//! - [`budget`]: reserve the request's maximum cost before calling upstream.
//! - `upstream` + [`providers`]: the pooled HTTPS client and the provider adapters (OpenAI, Anthropic); [`sse`]
//!   parses and encodes the event streams they carry.
//! - [`usage`] + [`cost`]: tokens from the response, priced in decimal (pure).
//! - [`ledger`]: one append-only spend row per request; budgets settled.
//! - [`metrics`]: Prometheus counters and histograms derived from ledger entries; [`logging`]: the structured
//!   request log line (and the subscriber: text or JSON).
//!
//! Around them: [`config`] (YAML, two-stage validation), [`store`] (Postgres or SQLite), [`error`] (the one
//! error type, in OpenAI's shape).

pub mod api;
pub mod auth;
pub mod body;
pub mod budget;
pub mod classify;
pub mod cli;
pub mod config;
pub mod cost;
pub mod error;
pub mod ledger;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod priority;
pub mod providers;
pub mod rounds;
pub mod route;
pub mod server;
pub mod sse;
pub mod state;
pub mod store;
pub mod upstream;
pub mod usage;
pub mod usage_estimate;

pub use server::run;
