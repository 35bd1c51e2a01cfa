//! The `reader` service alone: `/o`, `/dashboard` (and health, metrics). Stateless: run as
//! many as you like on one Redis (`REDIS_URL` or `REDIS_CLUSTER_URLS`, required).

use std::sync::Arc;
use tally_store::clock::SystemClock;
use tally_store::config::Config;
use tally_store::http::{init_logging, server, Shared};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = Config::from_env()?;
    init_logging(cfg.log_json);
    let url = cfg
        .external_redis()
        .ok_or("REDIS_URL or REDIS_CLUSTER_URLS is required for the split services")?;
    actix_web::rt::System::new().block_on(async move {
        let shared = Shared::new(&cfg, &url, Arc::new(SystemClock))?;
        let data = actix_web::web::Data::new(tally_reader::Reader {
            shared: shared.clone(),
        });
        let (addr, srv) = server(&cfg, shared, vec![], move |c| {
            tally_reader::configure(c, data.clone())
        })?;
        tracing::info!(%addr, "reader listening");
        srv.await?;
        Ok(())
    })
}
