//! The benchmark's baseline: Tally's HTTP stack (`tally_service::server`: the same
//! actix-web workers, request metrics, CORS, health routes and JSON 404s as every Tally
//! binary) answering a fixed `{"result":"Success"}` on `/i` without touching Redis.
//! Ships only with the bench (`deploy/bench`), never in the `tally` binary.

use actix_web::{web, HttpResponse};
use std::sync::Arc;
use tally_config::Config;
use tally_service::clock::SystemClock;
use tally_service::{server, Shared};

/// Every Tally binary allocates with mimalloc; the baseline does too, so the comparison
/// stays fair.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn success() -> HttpResponse {
    tally_service::result("Success")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = Config::from_env()?;
    if std::env::var("TALLY_BIND").is_err() {
        cfg.bind = "127.0.0.1:3002".into();
    }
    // The pool connects lazily and no route the bench calls uses it: Redis is never
    // contacted (this address has no server).
    let shared = Shared::new(&cfg, "redis://127.0.0.1:1/", Arc::new(SystemClock))?;
    actix_web::rt::System::new().block_on(async move {
        let (_, srv) = server(&cfg, shared, tally_service::Registry::default(), |c| {
            c.route("/i", web::get().to(success))
                .route("/i", web::post().to(success));
        })?;
        srv.await
    })?;
    Ok(())
}
