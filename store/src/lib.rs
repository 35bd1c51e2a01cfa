//! Tally's Redis data model: the one crate that knows how data sits in Redis.
//!
//! - [`keys`]: the key layout (the only place a key is spelled).
//! - [`time`]: Countly's time buckets in an app's timezone.
//! - [`device`]: per-device state (new users, exact uniques, sessions, duplicates).
//! - [`commit`]: group commit, the write path's single way into Redis.
//! - [`counters`]: reading counter hashes back.
//! - [`apps`]: the app registry and its cache.
//! - [`redis`]: connection pool and dedicated connections.
//! - [`embedded`]: the private `redis-server` child.
//! - [`config`], [`clock`], [`error`], [`http`]: what every service shares.

pub mod apps;
pub mod clock;
pub mod commit;
pub mod config;
pub mod counters;
pub mod device;
pub mod embedded;
pub mod error;
pub mod http;
pub mod keys;
pub mod redis;
pub mod time;

pub use error::{ApiError, StoreError};
