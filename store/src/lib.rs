//! Tally's Redis data model: the one crate that knows how data sits in Redis.
//!
//! - [`keys`]: the key layout (the only place a key is spelled).
//! - [`time`]: Countly's time buckets in an app's timezone.
//! - [`device`]: per-device state (new users, exact uniques, sessions, duplicates).
//! - [`commit`]: group commit, the write path's single way into Redis.
//! - [`counters`]: reading counter hashes back.
//! - [`apps`]: the app registry and its cache.
//! - [`redis`]: connection pools and routing (standalone Redis or a Redis Cluster).
//! - [`resp`]: the read path's in-place reply parser.
//! - [`embedded`]: the private `redis-server` child.
//! - [`texthash`]: hash maps keyed by text that clients choose.
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
pub mod resp;
pub mod texthash;
pub mod time;

pub use error::{ApiError, StoreError};

/// Every Tally process (and the bench's baseline, so the comparison stays fair) allocates
/// with mimalloc: the write path makes many small, short-lived allocations (field names,
/// keys, JSON), and glibc's malloc/free took about a fifth of the CPU in the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
