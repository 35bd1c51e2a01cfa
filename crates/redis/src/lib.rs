//! Tally's Redis transport: how bytes get to Redis and back, and nothing about what they
//! mean (the key layout and the data model live in `tally-model`).
//!
//! - [`conn`]: the one connection type, a plain socket ([`Conn`]). Hot paths pack their
//!   own commands and parse replies in place; everything else sends a `redis::Pipeline`
//!   and gets typed values back, on the same socket.
//! - [`pool`]: a pool of such connections per node, standalone or a Redis Cluster, with
//!   one retry and redirect policy ([`Pool::failed`]) and routing by an app's hash tag
//!   ([`Route`]).
//! - [`resp`]: the RESP2 packer and the in-place reply parser.
//! - [`pubsub`]: a connection subscribed to one channel ([`Subscription`]).
//! - [`error`]: the one error type, classified from the protocol (never from printed text).
//! - [`embedded`]: the private `redis-server` child of the all-in-one binary and the tests.

pub mod conn;
pub mod embedded;
pub mod error;
pub mod pool;
pub mod pubsub;
pub mod resp;

pub use conn::Conn;
pub use error::Error;
pub use pool::{pool, Pool, PooledConn, Route};
pub use pubsub::Subscription;
pub use tally_config::RedisConfig;
