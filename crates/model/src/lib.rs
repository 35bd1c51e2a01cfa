//! Tally's data model in Redis: the one crate that knows how data sits there.
//!
//! - [`keys`]: the key layout (the only place a key is spelled) and each key's route.
//! - [`time`]: Countly's time buckets in an app's timezone.
//! - [`device`]: per-device state (new users, exact uniques, sessions, duplicates).
//! - [`commit`]: the group commit, the write path's single way into Redis.
//! - [`counters`]: reading counter hashes back.
//! - [`profiles`]: users' profiles, one store for Rakam's users API and Countly's user
//!   details.
//! - [`schema`]: collections' typed fields (Rakam's types), inferred, enforced, stored.
//! - [`apps`]: the app registry (key sets) and its bounded cache.
//! - [`event_groups`]: Countly's event groups.
//! - [`consent`]: devices' consents and the counters of their changes.
//! - [`census`]: counting an app's devices by their state (Countly's `total_users`).
//! - [`texthash`]: hash maps keyed by text that clients choose.
//! - [`error`]: the model's error, wrapping the transport's.
//!
//! Bytes travel through `tally-redis`; configuration comes from `tally-config`. Nothing
//! here knows HTTP.

pub mod apps;
pub mod archive;
pub mod census;
pub mod commit;
pub mod consent;
pub mod counters;
pub mod device;
pub mod error;
pub mod event_groups;
pub mod keys;
pub mod profiles;
pub mod schema;
pub mod stream;
pub mod texthash;
pub mod time;
pub mod views;

pub use error::StoreError;
