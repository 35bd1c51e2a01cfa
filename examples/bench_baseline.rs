//! The benchmark's baseline: Tally's HTTP stack (actix-web, the same workers and
//! middleware) answering a fixed `{"result":"Success"}` on `/i` without touching Redis.
//! Ships only with the bench (`deploy/bench`), never in the `tally` binary.

use actix_web::{web, App, HttpResponse, HttpServer};

async fn success() -> HttpResponse {
    tally_store::http::result("Success")
}

fn main() -> std::io::Result<()> {
    let bind = std::env::var("TALLY_BIND").unwrap_or_else(|_| "127.0.0.1:3002".into());
    let workers = std::env::var("TALLY_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .wrap(tally_store::http::cors("*"))
                .route("/ping", web::get().to(tally_store::http::ping))
                .route("/i", web::get().to(success))
                .route("/i", web::post().to(success))
        })
        .workers(workers)
        .bind(bind)?
        .run()
        .await
    })
}
