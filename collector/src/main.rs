//! The `collector` service alone: `/i`, `/i/bulk` (and health, metrics). Run several behind
//! a path router; they share Redis (`REDIS_URL` or `REDIS_CLUSTER_URLS`, required) and stay exact together.

use tally_service::{server, split_service, Registry};

/// Every Tally binary allocates with mimalloc: the write path makes many small,
/// short-lived allocations (field names, keys, JSON), and glibc's malloc/free took about
/// a fifth of the CPU in the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cfg, shared) = split_service()?;
    actix_web::rt::System::new().block_on(async move {
        let (collector, stopper) = tally_collector::build(&cfg, shared.clone())?;
        let mut registry = Registry::default();
        collector.committer.stats.register(&mut registry);
        let data = actix_web::web::Data::new(collector);
        let (addr, srv) = server(&cfg, shared, registry, move |c| {
            tally_collector::configure(c, data.clone())
        })?;
        tracing::info!(%addr, "collector listening");
        srv.await?;
        // Everything accepted is flushed before the process exits.
        stopper.stop().await;
        Ok(())
    })
}
