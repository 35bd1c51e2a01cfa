//! The `collector` service alone: `/i`, `/i/bulk` (and health, metrics). Run several behind
//! a path router; they share Redis (`REDIS_URL` or `REDIS_CLUSTER_URLS`, required) and stay exact together.

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
        let (collector, stopper) = tally_collector::build(&cfg, shared.clone())?;
        let stats = collector.committer.stats.clone();
        let data = actix_web::web::Data::new(collector);
        let (addr, srv) = server(&cfg, shared, vec![stats], move |c| {
            tally_collector::configure(c, data.clone())
        })?;
        tracing::info!(%addr, "collector listening");
        srv.await?;
        // Everything accepted is flushed before the process exits.
        stopper.stop().await;
        Ok(())
    })
}
