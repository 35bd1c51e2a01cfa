//! The `aggregator` service alone: the stream consumer (several share one consumer group)
//! and the archiver, and the rest of the API (projects, bucket events, realtime reports,
//! SQL). `REDIS_URL` or
//! `REDIS_CLUSTER_URLS` is required.

use tally_service::{server, split_service, Registry};

/// Every Tally binary allocates with mimalloc: the write path makes many small,
/// short-lived allocations (field names, keys, JSON), and glibc's malloc/free took about
/// a fifth of the CPU in the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cfg, shared) = split_service()?;
    actix_web::rt::System::new().block_on(async move {
        let agg =
            actix_web::web::Data::new(tally_aggregator::Aggregator::new(shared.clone(), &cfg)?);
        let consumer = tally_aggregator::spawn_consumer(&cfg, agg.clone());
        let mut registry = Registry::default();
        agg.register(&mut registry);
        let data = agg.clone();
        let (addr, srv) = server(&cfg, shared, registry, move |c| {
            tally_aggregator::configure(c, data.clone())
        })?;
        tracing::info!(%addr, "aggregator listening");
        srv.await?;
        if let Some(c) = consumer {
            c.stop();
        }
        Ok(())
    })
}
