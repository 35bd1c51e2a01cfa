//! How every Tally binary serves HTTP: the server builder (CORS, request metrics, health,
//! `/metrics`, JSON 404s, connection limits, graceful shutdown) and the split services'
//! start-up.

use crate::clock::SystemClock;
use crate::logging::init_logging;
use crate::metrics::HttpMetrics;
use crate::state::Shared;
use actix_web::{web, HttpResponse};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tally_config::Config;

/// CORS as Countly sends it (any origin by default; `TALLY_CORS_ORIGIN` narrows it), so
/// browser SDKs and dashboards on other origins can call.
pub fn cors(origin: &str) -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("Access-Control-Allow-Origin", origin.to_string()))
        .add(("Access-Control-Allow-Methods", "GET, POST, OPTIONS, DELETE"))
        .add((
            "Access-Control-Allow-Headers",
            "Content-Type, countly-token, read_key, master_key, api_key, Authorization",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
}

/// Answers any `OPTIONS` preflight with 200 (the CORS headers come from [`cors`]).
pub async fn preflight() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// Unknown routes: a JSON 404; preflights: 200 (the CORS headers come from [`cors`]).
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    if req.method() == actix_web::http::Method::OPTIONS {
        return HttpResponse::Ok().finish();
    }
    HttpResponse::NotFound()
        .content_type("application/json; charset=utf-8")
        .body(r#"{"result":"Not found"}"#)
}

/// How each split binary (`collector`, `reader`, `aggregator`) starts: configuration
/// from the environment, logging, and the shared state on the external Redis, which
/// a split service requires (only `tally` starts an embedded one).
pub fn split_service() -> Result<(Config, Shared), Box<dyn std::error::Error>> {
    let cfg = Config::from_env()?;
    init_logging(cfg.log_json);
    let url = cfg
        .external_redis()
        .ok_or("REDIS_URL or REDIS_CLUSTER_URLS is required for the split services")?;
    let shared = Shared::new(&cfg, &url, Arc::new(SystemClock))?;
    Ok((cfg, shared))
}

/// An HTTP server for one set of routes, the way every Tally binary runs one: CORS, request
/// metrics, `/ping` `/health` `/ready`, `/metrics`, JSON 404s, graceful shutdown on
/// SIGINT/SIGTERM. `routes` mounts the service's own routes.
pub fn server<F>(
    cfg: &Config,
    shared: Shared,
    mut registry: Registry,
    routes: F,
) -> std::io::Result<(std::net::SocketAddr, actix_web::dev::Server)>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    use actix_web::dev::Service;
    let http = HttpMetrics::new(&mut registry);
    crate::metrics::register_pool(&mut registry, &shared.pool);
    let registry = web::Data::new(registry);
    let shared = web::Data::new(shared);
    let origin = cfg.cors_origin.clone();
    let listener = std::net::TcpListener::bind(&cfg.bind)?;
    let addr = listener.local_addr()?;
    let server = actix_web::HttpServer::new(move || {
        let http = http.clone();
        actix_web::App::new()
            .wrap_fn(move |req, srv| {
                let started = std::time::Instant::now();
                let http = http.clone();
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".into());
                    http.observe(
                        route,
                        res.status().as_u16(),
                        started.elapsed().as_secs_f64(),
                    );
                    Ok(res)
                }
            })
            .wrap(cors(&origin))
            .configure(|c| crate::health::configure(c, shared.clone()))
            .app_data(registry.clone())
            .route("/metrics", web::get().to(crate::metrics::route))
            .configure(routes.clone())
            .default_service(web::to(not_found))
    })
    .workers(cfg.workers.max(1))
    .keep_alive(if cfg.limits.keep_alive.is_zero() {
        actix_web::http::KeepAlive::Disabled
    } else {
        actix_web::http::KeepAlive::Timeout(cfg.limits.keep_alive)
    })
    .client_request_timeout(cfg.limits.client_timeout)
    .max_connections(cfg.limits.max_connections)
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok((addr, server))
}
