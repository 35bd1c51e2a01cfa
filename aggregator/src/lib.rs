//! The rollup aggregator and the rest of the analytics API.
//!
//! - [`consumer`]: reads the apps' raw event streams (written by the collector in the same
//!   transaction as the Countly counters) through a consumer group and keeps minute and
//!   hour rollups, exactly once.
//! - [`rollup`]: entries to rollup writes, plain functions.
//! - `bucket`: the bucket events API over the streams and rollups.
//! - [`realtime`]: realtime reports, maintained by the consumer; [`filter`]: their filters.
//! - [`project`]: project administration (`/project/create`, `/project/delete`,
//!   `/project/device`).

mod bucket;
pub mod consumer;
pub mod filter;
pub mod project;
pub mod realtime;
pub mod rollup;

use actix_web::web;
use std::sync::Arc;
use tally_store::config::AggregatorConfig;
use tally_store::http::Shared;

pub struct Aggregator {
    pub shared: Shared,
    pub stats: Arc<consumer::AggregatorStats>,
    pub retention: rollup::Retention,
    pub max_limit: usize,
    pub max_scan: usize,
}

impl Aggregator {
    pub fn new(shared: Shared, cfg: &AggregatorConfig) -> Aggregator {
        Aggregator {
            shared,
            stats: Arc::default(),
            retention: retention(cfg),
            max_limit: cfg.max_limit,
            max_scan: cfg.max_scan,
        }
    }
}

pub fn retention(cfg: &AggregatorConfig) -> rollup::Retention {
    rollup::Retention {
        minute_secs: cfg.minute_retention.as_secs() as i64,
        hour_secs: cfg.hour_retention.as_secs() as i64,
    }
}

/// Starts the stream consumer on the current runtime when the configuration asks for it;
/// it uses the service's pool, connects lazily and retries while Redis is away.
pub fn spawn_consumer(
    cfg: &tally_store::config::Config,
    agg: web::Data<Aggregator>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !cfg.aggregator.enabled {
        return None;
    }
    let acfg = &cfg.aggregator;
    let ccfg = consumer::ConsumerConfig {
        batch: acfg.batch,
        block: acfg.block,
        claim_idle: acfg.claim_idle,
        retention: retention(acfg),
    };
    Some(tokio::spawn(consumer::run(
        agg.shared.clone(),
        ccfg,
        agg.stats.clone(),
    )))
}

/// Mounts the aggregator's routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<Aggregator>) {
    cfg.app_data(state)
        .route("/project/create", web::post().to(project::create))
        .route("/project/delete", web::delete().to(project::delete))
        .route("/project/delete", web::post().to(project::delete))
        .route("/project/device", web::delete().to(project::forget_device))
        .route("/project/device", web::post().to(project::forget_device))
        .route(
            "/api/bucket/{id}/data/events",
            web::post().to(bucket::retrieve),
        )
        .route(
            "/api/bucket/{id}/data/events/stats",
            web::post().to(bucket::stats),
        )
        .route(
            "/api/bucket/{id}/data/eventsKeysByApp",
            web::get().to(bucket::keys_by_app),
        )
        .route(
            "/api/bucket/{id}/data/events/delete_all",
            web::delete().to(bucket::delete_all),
        )
        .route("/realtime/create", web::post().to(realtime::create))
        .route("/realtime/get", web::post().to(realtime::get))
        .route("/realtime/list", web::post().to(realtime::list))
        .route("/realtime/delete", web::post().to(realtime::delete));
}
