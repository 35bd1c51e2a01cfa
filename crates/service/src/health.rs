//! `/ping` (liveness without Redis), `/health` (the process is up) and `/ready` (Redis
//! answers; on a cluster, which masters do not).

use crate::body::json;
use crate::error::ApiError;
use crate::state::Shared;
use actix_web::{web, HttpResponse};

/// `GET /ping`: answers without touching Redis (liveness, and the benchmark's baseline).
pub async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("pong")
}

/// `GET /ready`: 200 when Redis answers, 503 otherwise. On a cluster: 200 while any master
/// answers (`"status":"degraded"` and the silent masters in `redis_down` when some do not),
/// because the apps on the other masters are still served.
pub async fn ready(st: web::Data<Shared>) -> Result<HttpResponse, ApiError> {
    let down = st.pool.ping_all().await?;
    let backlog = st.backlog.load(std::sync::atomic::Ordering::Relaxed);
    let status = if down.is_empty() { "ready" } else { "degraded" };
    Ok(json(
        serde_json::json!({"status": status, "aggregator_backlog": backlog, "redis_down": down})
            .to_string(),
    ))
}

/// `/ping`, `/health` (process alive) and `/ready` (Redis reachable).
pub fn configure(cfg: &mut web::ServiceConfig, shared: web::Data<Shared>) {
    cfg.app_data(shared)
        .route("/ping", web::get().to(ping))
        .route(
            "/health",
            web::get().to(|| async { json(r#"{"status":"ok"}"#.into()) }),
        )
        .route("/ready", web::get().to(ready));
}
