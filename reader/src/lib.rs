//! The read service: Countly's `/o` API.
//!
//! - [`period`]: which days an answer covers; [`period_obj`]: Countly's period object.
//! - [`methods`]: which hashes each method reads (pipelined) and how the answer is built.
//! - [`shape`]: Countly's nested time object and output escaping.
//! - [`model`]: Countly's dashboard model (totals, unique estimates, changes);
//!   [`analytics`]: the `/o/analytics/*` figures built on it, and `all_apps`.
//! - `dashboard`: the `/dashboard` page and its embedded assets.

pub mod analytics;
mod dashboard;
pub mod methods;
pub mod model;
pub mod period;
pub mod period_obj;
mod routes;
pub mod shape;

use actix_web::web;
use tally_service::Shared;

pub use routes::valid_callback;

pub struct Reader {
    pub shared: Shared,
}

/// Mounts `/o` (GET and POST), `/o/sdk` and `/dashboard`.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<Reader>) {
    cfg.app_data(state)
        .route("/o", web::get().to(routes::read))
        .route("/o", web::post().to(routes::read))
        .route("/o/analytics/{action}", web::get().to(routes::analytics))
        .route("/o/analytics/{action}", web::post().to(routes::analytics))
        .route("/o/consent/current", web::get().to(routes::consent_current))
        .route("/o/sdk", web::get().to(routes::sdk_config))
        .route("/o/sdk", web::post().to(routes::sdk_config))
        .configure(dashboard::configure);
}
