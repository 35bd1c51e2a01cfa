//! The rollup aggregator and the rest of the analytics API.
//!
//! So far it serves project administration (`/project/create`, `/project/delete`,
//! `/project/device`), the part of the Rakam-style API the Countly layer needs. The raw event stream consumer, minute rollups and the
//! bucket events / realtime APIs come with their own issue.

pub mod project;

use actix_web::web;
use tally_store::http::Shared;

pub struct Aggregator {
    pub shared: Shared,
}

/// Mounts the aggregator's routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<Aggregator>) {
    cfg.app_data(state)
        .route("/project/create", web::post().to(project::create))
        .route("/project/delete", web::delete().to(project::delete))
        .route("/project/delete", web::post().to(project::delete))
        .route("/project/device", web::delete().to(project::forget_device))
        .route("/project/device", web::post().to(project::forget_device));
}
