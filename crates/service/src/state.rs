//! What every service's handlers share, built once at start-up.

use crate::clock::SharedClock;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tally_config::{Config, Limits};
use tally_model::apps::AppCache;
use tally_model::StoreError;
use tally_redis::Pool;

/// The state handed to every handler. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    pub pool: Pool,
    pub apps: Arc<AppCache>,
    /// "Now", injected so tests pin it and assert exact time buckets.
    pub clock: SharedClock,
    pub limits: Arc<Limits>,
    /// `TALLY_ADMIN_KEY`: creating apps needs it; unset means nobody can.
    pub admin_key: Option<String>,
    /// Raw stream entries not yet rolled up (undelivered + unacknowledged), as the
    /// aggregator last measured them; `/ready` reports it.
    pub backlog: Arc<AtomicU64>,
}

impl Shared {
    /// The request-path pool, the app cache (kept in step with the registry by a
    /// watcher thread) and the limits. Fails only on a Redis URL
    /// the transport cannot serve (connections open lazily).
    pub fn new(cfg: &Config, redis_url: &str, clock: SharedClock) -> Result<Shared, StoreError> {
        let pool = tally_redis::pool(&cfg.redis(redis_url))?;
        let apps = Arc::new(AppCache::new(cfg.app_cache_ttl, cfg.app_cache_entries));
        // Revoked keys and deleted apps leave every process's cache at once.
        tally_model::apps::watch(&apps, pool.fresh()?);
        Ok(Shared {
            pool,
            apps,
            clock,
            limits: Arc::new(cfg.limits.clone()),
            admin_key: cfg.admin_key.clone(),
            backlog: Arc::default(),
        })
    }
}
