//! The dashboard page at `/dashboard`: static files embedded in the binary (no build step),
//! with uPlot vendored under `assets/vendor/uplot` (MIT, pinned, license alongside).

use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("../assets/dashboard.html");
const APP_JS: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");
const UPLOT_JS: &str = include_str!("../assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/vendor/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../assets/vendor/uplot/LICENSE");

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        // The page only talks to the Tally that serves it (or the one its URL names).
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(body)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/dashboard",
        web::get().to(|| async { asset("text/html; charset=utf-8", INDEX) }),
    )
    .route(
        "/dashboard/",
        web::get().to(|| async { asset("text/html; charset=utf-8", INDEX) }),
    )
    .route(
        "/dashboard/app.js",
        web::get().to(|| async { asset("application/javascript; charset=utf-8", APP_JS) }),
    )
    .route(
        "/dashboard/style.css",
        web::get().to(|| async { asset("text/css; charset=utf-8", STYLE) }),
    )
    .route(
        "/dashboard/vendor/uPlot.iife.min.js",
        web::get().to(|| async { asset("application/javascript; charset=utf-8", UPLOT_JS) }),
    )
    .route(
        "/dashboard/vendor/uPlot.min.css",
        web::get().to(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }),
    )
    .route(
        "/dashboard/vendor/LICENSE",
        web::get().to(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }),
    );
}
