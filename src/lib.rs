//! `tally`: the collector, reader and aggregator in one process on one port.
//!
//! [`start`] builds everything from a [`Config`] and a bound address (port 0 works, which
//! is how the tests run it); `main.rs` adds the command line, logging, the embedded
//! `redis-server` and signal handling. The split binaries (`collector`, `reader`,
//! `aggregator`) are built the same way from the same pieces.

use actix_web::web;
use std::net::SocketAddr;
use tally_aggregator::Aggregator;
use tally_config::Config;
use tally_model::commit::Stopper;
use tally_reader::Reader;
use tally_service::clock::SharedClock;
use tally_service::{Registry, Shared};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] tally_model::StoreError),
    /// The GeoIP database could not be opened.
    #[error("{0}")]
    Geo(String),
    /// The archive's location cannot be used.
    #[error(transparent)]
    Archive(tally_archive::Error),
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub stopper: Stopper,
    /// The stream consumer, when this process runs one.
    pub consumer: Option<tally_aggregator::ConsumerHandle>,
}

impl Running {
    /// Serves until the server is stopped (SIGINT/SIGTERM or its handle), then flushes the
    /// write queue, so nothing accepted is left unwritten.
    pub async fn run(self) -> std::io::Result<()> {
        let res = self.server.await;
        self.stopper.stop().await;
        // A consumer stopped mid-batch leaves its entries pending, to be read again.
        if let Some(c) = self.consumer {
            c.stop();
        }
        res
    }
}

/// Builds the shared state and the HTTP server with all three services (not yet awaited).
pub fn start(cfg: &Config, redis_url: &str, clock: SharedClock) -> Result<Running, StartError> {
    let shared = Shared::new(cfg, redis_url, clock)?;
    let (collector, stopper) =
        tally_collector::build(cfg, shared.clone()).map_err(StartError::Geo)?;
    let mut registry = Registry::default();
    collector.committer.stats.register(&mut registry);
    let collector = web::Data::new(collector);
    let reader = web::Data::new(Reader {
        shared: shared.clone(),
    });
    let aggregator =
        web::Data::new(Aggregator::new(shared.clone(), cfg).map_err(StartError::Archive)?);
    let consumer = tally_aggregator::spawn_consumer(cfg, aggregator.clone());
    aggregator.register(&mut registry);
    let (addr, server) = tally_service::server(cfg, shared, registry, move |c| {
        tally_collector::configure(c, collector.clone());
        tally_reader::configure(c, reader.clone());
        tally_aggregator::configure(c, aggregator.clone());
    })
    .map_err(|e| StartError::Bind(cfg.bind.clone(), e))?;
    Ok(Running {
        addr,
        server,
        stopper,
        consumer,
    })
}
