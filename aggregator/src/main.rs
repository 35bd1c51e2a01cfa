//! The `aggregator` service alone: the stream consumer (several share one consumer group)
//! and the rest of the API (projects, bucket events, realtime reports). `REDIS_URL` or
//! `REDIS_CLUSTER_URLS` is required.

use std::sync::Arc;
use tally_store::http::{server, split_service, Metrics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cfg, shared) = split_service()?;
    actix_web::rt::System::new().block_on(async move {
        let agg = actix_web::web::Data::new(tally_aggregator::Aggregator::new(
            shared.clone(),
            &cfg.aggregator,
        ));
        let consumer = tally_aggregator::spawn_consumer(&cfg, agg.clone());
        let sources: Vec<Arc<dyn Metrics>> = vec![agg.stats.clone()];
        let data = agg.clone();
        let (addr, srv) = server(&cfg, shared, sources, move |c| {
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
