//! The write service: Countly's `/i` and `/i/bulk`, and Rakam's `/event/*` ([`rakam`]).
//!
//! A request goes parse ([`params`]) -> validate the whole of it ([`request`]) -> plan
//! increments against the device's state ([`plan`]) -> group commit
//! ([`tally_model::commit`]). Nothing is written for a request that fails validation, and
//! nothing is acknowledged that is not in Redis.

pub mod device_metrics;
mod event_groups;
pub mod geo;
pub mod params;
pub mod plan;
pub mod rakam;
pub mod ratelimit;
pub mod request;
mod routes;
pub mod sanitize;
pub mod user_details;

use actix_web::web;
use tally_model::commit::Committer;
use tally_service::Shared;

/// The collector's handler state.
pub struct Collector {
    pub shared: Shared,
    pub committer: Committer<plan::Ingest>,
    /// IP-to-country lookups, when `TALLY_GEOIP_DB` is set.
    pub geo: Option<std::sync::Arc<geo::Geo>>,
    pub limiter: ratelimit::RateLimiter,
    /// How long rollups are kept (session begins and ends are rolled up here).
    pub keep: tally_config::Retention,
}

/// The collector's state: the committer (its stopper flushes on shutdown), GeoIP and the
/// rate limiter. The error says why the GeoIP database cannot be used.
pub fn build(
    cfg: &tally_config::Config,
    shared: Shared,
) -> Result<(Collector, tally_model::commit::Stopper), String> {
    let geo = match &cfg.geoip_db {
        Some(path) => Some(std::sync::Arc::new(geo::Geo::open(path)?)),
        None => None,
    };
    // Its own pool: its connections are opened, and driven, by its own runtime.
    let pool = shared.pool.fresh().map_err(|e| e.to_string())?;
    let (committer, stopper) = Committer::start(pool, cfg.commit.clone());
    let limiter = ratelimit::RateLimiter::new(cfg.limits.rate_limit, cfg.limits.rate_burst);
    Ok((
        Collector {
            shared,
            committer,
            geo,
            limiter,
            keep: cfg.aggregator.retention(),
        },
        stopper,
    ))
}

/// Mounts `/i` and `/i/bulk` (GET and POST, as Countly accepts both everywhere) and
/// Rakam's `/event/*` collection routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<Collector>) {
    cfg.app_data(state)
        .route("/i", web::get().to(routes::ingest))
        .route("/i", web::post().to(routes::ingest))
        .route("/i/bulk", web::get().to(routes::bulk))
        .route("/i/bulk", web::post().to(routes::bulk))
        .route(
            "/i/event_groups/create",
            web::get().to(event_groups::create),
        )
        .route(
            "/i/event_groups/create",
            web::post().to(event_groups::create),
        )
        .route(
            "/i/event_groups/update",
            web::get().to(event_groups::update),
        )
        .route(
            "/i/event_groups/update",
            web::post().to(event_groups::update),
        )
        .route(
            "/i/event_groups/delete",
            web::get().to(event_groups::delete),
        )
        .route(
            "/i/event_groups/delete",
            web::post().to(event_groups::delete),
        )
        .route("/event/collect", web::post().to(rakam::collect))
        .route("/event/batch", web::post().to(rakam::batch))
        .route("/event/bulk", web::post().to(rakam::bulk))
        .route("/event/bulk/commit", web::post().to(rakam::bulk_commit))
        .route("/event/bulk/remote", web::post().to(rakam::bulk_remote))
        .route("/event/copy", web::post().to(rakam::copy));
}
