//! Connections: a deadpool pool of multiplexed connections for the request path, and
//! dedicated connections for work that holds per-connection state (WATCH in the group
//! commit). Both are built once at start-up and shared through application state.
//!
//! The pool uses its own small manager rather than deadpool-redis': that one sends
//! UNWATCH+PING on every checkout, an extra round trip on every request. Here a connection
//! is trusted until a command on it fails at the transport level; then [`run`] takes it
//! out of the pool so the next checkout opens a fresh one.

use crate::error::StoreError;
use deadpool::managed::{self, Metrics, RecycleResult};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError};
use std::time::Duration;

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `redis+unix:///path/to/sock`.
    pub url: String,
    /// Connections in the request-path pool.
    pub pool_size: usize,
    /// Longest wait for one Redis answer before the request fails with 503.
    pub timeout: Duration,
}

fn conn_config(cfg: &RedisConfig) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.timeout))
        .set_response_timeout(Some(cfg.timeout))
}

pub struct Manager {
    client: redis::Client,
    config: AsyncConnectionConfig,
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    async fn recycle(
        &self,
        _conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        Ok(())
    }
}

pub type Pool = managed::Pool<Manager>;

/// The shared request-path pool. Connections open lazily, so this succeeds while Redis is
/// down; requests then fail with 503 until it is back.
pub fn pool(cfg: &RedisConfig) -> Result<Pool, StoreError> {
    let manager = Manager {
        client: redis::Client::open(cfg.url.as_str())?,
        config: conn_config(cfg),
    };
    Pool::builder(manager)
        .max_size(cfg.pool_size)
        .wait_timeout(Some(cfg.timeout))
        .create_timeout(Some(cfg.timeout))
        .recycle_timeout(Some(cfg.timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Pool(e.to_string()))
}

impl From<managed::PoolError<RedisError>> for StoreError {
    fn from(e: managed::PoolError<RedisError>) -> Self {
        match e {
            managed::PoolError::Timeout(_) => StoreError::Timeout,
            managed::PoolError::Backend(r) => StoreError::Redis(r),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

/// Whether an error means the connection itself is unusable.
pub fn is_transport_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

/// Runs one pipeline (or command) on a pooled connection in one round trip.
pub async fn run<T: FromRedisValue>(pool: &Pool, pipe: &redis::Pipeline) -> Result<T, StoreError> {
    let mut conn = pool.get().await?;
    match pipe.query_async::<T>(&mut *conn).await {
        Ok(v) => Ok(v),
        Err(e) => {
            if is_transport_error(&e) {
                let _ = managed::Object::take(conn);
            }
            Err(if e.is_timeout() {
                StoreError::Timeout
            } else {
                StoreError::Redis(e)
            })
        }
    }
}

/// A connection owned by one task, never shared.
pub async fn dedicated(cfg: &RedisConfig) -> Result<MultiplexedConnection, StoreError> {
    let client = redis::Client::open(cfg.url.as_str())?;
    let conn = tokio::time::timeout(
        cfg.timeout,
        client.get_multiplexed_async_connection_with_config(&conn_config(cfg)),
    )
    .await
    .map_err(|_| StoreError::Timeout)??;
    Ok(conn)
}
