//! The `collector` service alone: `/i`, `/i/bulk` (and health, metrics). Run several behind
//! a path router; they share Redis (`REDIS_URL` or `REDIS_CLUSTER_URLS`, required) and stay exact together.

use tally_store::http::{server, split_service};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cfg, shared) = split_service()?;
    actix_web::rt::System::new().block_on(async move {
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
