//! The plumbing every Tally binary shares; no domain logic lives here.
//!
//! - [`state`]: [`Shared`], what every handler gets (the Redis pool, the app cache, the
//!   clock, the limits).
//! - [`error`]: [`ApiError`], every failure's HTTP answer in one place ([`RakamError`]:
//!   the same answers in Rakam's body shape).
//! - [`auth`]: which app a key opens, and with which rights.
//! - [`body`], [`query`]: bounded body reads, strict query and form decoding, JSON answers.
//! - [`health`]: `/ping`, `/health`, `/ready`.
//! - [`metrics`]: `/metrics`, a Prometheus registry per server.
//! - [`server`]: the HTTP server every binary runs, and the split services' start-up.
//! - [`logging`], [`clock`].
//!
//! Services (collector, reader, aggregator) sit on top of this; this crate sits on the
//! data model (`tally-model`), which sits on the transport (`tally-redis`).

pub mod auth;
pub mod body;
pub mod clock;
pub mod error;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod query;
pub mod server;
pub mod state;

pub use body::{json, read_body, read_json, result};
pub use error::{ApiError, RakamError};
pub use logging::init_logging;
/// Services register their counters here before they hand it to [`server`].
pub use prometheus_client::registry::Registry;
pub use query::{decode_pairs, pairs};
pub use server::{server, split_service};
pub use state::Shared;
