//! `tally`: the collector, reader and aggregator in one process on one port.
//!
//! [`start`] builds everything from a [`Config`] and a bound address (port 0 works, which
//! is how the tests run it); `main.rs` adds the command line, logging, the embedded
//! `redis-server` and signal handling.

use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use tally_aggregator::Aggregator;
use tally_collector::Collector;
use tally_reader::Reader;
use tally_store::apps::AppCache;
use tally_store::clock::SharedClock;
use tally_store::commit::{CommitStats, Committer, Stopper};
use tally_store::config::Config;
use tally_store::http::{configure_health, cors, Shared};

/// Apps kept in the in-process cache at most.
const APP_CACHE_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] tally_store::StoreError),
    #[error("{0}")]
    Geo(String),
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub stopper: Stopper,
    pub stats: Arc<CommitStats>,
    /// The stream consumer, when this process runs one.
    pub consumer: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Serves until the server is stopped (SIGINT/SIGTERM or its handle), then flushes the
    /// write queue, so nothing accepted is left unwritten.
    pub async fn run(self) -> std::io::Result<()> {
        let res = self.server.await;
        self.stopper.stop().await;
        // A consumer stopped mid-batch leaves its entries pending, to be read again.
        if let Some(c) = self.consumer {
            c.abort();
        }
        res
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(stats: web::Data<CommitStats>, agg: web::Data<Aggregator>) -> HttpResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let a = &agg.stats;
    let gauges = [
        (
            "tally_aggregator_lag",
            "Stream entries not yet delivered to an aggregator.",
            &a.lag,
        ),
        (
            "tally_aggregator_pending",
            "Stream entries delivered but not yet rolled up.",
            &a.pending,
        ),
    ];
    let rows = [
        (
            "tally_aggregator_processed_total",
            "Stream entries rolled up.",
            &a.processed,
        ),
        (
            "tally_aggregator_batches_total",
            "Rollup transactions committed.",
            &a.batches,
        ),
        (
            "tally_aggregator_aborted_total",
            "Rollup transactions aborted after a takeover.",
            &a.aborted,
        ),
        (
            "tally_aggregator_claimed_total",
            "Entries taken over from idle consumers.",
            &a.claimed,
        ),
        (
            "tally_aggregator_errors_total",
            "Failed aggregator steps (their entries stay pending).",
            &a.errors,
        ),
        (
            "tally_commit_batches_total",
            "Group-commit flushes (each is 2 Redis round trips).",
            &stats.batches,
        ),
        (
            "tally_commit_requests_total",
            "Requests written by group commit.",
            &stats.requests,
        ),
        (
            "tally_commit_conflicts_total",
            "Flushes planned again after a WATCH conflict.",
            &stats.conflicts,
        ),
        (
            "tally_commit_failures_total",
            "Flushes that failed (their requests got 503).",
            &stats.failures,
        ),
        (
            "tally_commit_counter_writes_total",
            "Distinct counter fields incremented.",
            &stats.counter_writes,
        ),
        (
            "tally_commit_corrupt_states_total",
            "Device states that could not be decoded.",
            &stats.corrupt_states,
        ),
        (
            "tally_commit_flush_microseconds_total",
            "Time spent flushing.",
            &stats.flush_micros,
        ),
    ];
    let mut out = String::new();
    for (name, help, v) in gauges {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n",
            v.load(Relaxed)
        ));
    }
    for (name, help, v) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Relaxed)
        ));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    if req.method() == Method::OPTIONS {
        return HttpResponse::Ok().finish();
    }
    HttpResponse::NotFound()
        .content_type("application/json; charset=utf-8")
        .body(r#"{"result":"Not found"}"#)
}

/// Builds the shared state and the HTTP server (not yet awaited).
pub fn start(cfg: &Config, redis_url: &str, clock: SharedClock) -> Result<Running, StartError> {
    let redis = cfg.redis(redis_url);
    let shared = Shared {
        pool: tally_store::redis::pool(&redis)?,
        apps: Arc::new(AppCache::new(cfg.app_cache_ttl, APP_CACHE_ENTRIES)),
        clock,
        limits: Arc::new(cfg.limits.clone()),
        admin_key: cfg.admin_key.clone(),
        backlog: Arc::default(),
    };
    let geo = match &cfg.geoip_db {
        Some(path) => Some(Arc::new(
            tally_collector::geo::Geo::open(path).map_err(StartError::Geo)?,
        )),
        None => None,
    };
    let (committer, stopper) = Committer::start(redis, cfg.commit.clone());
    let stats = committer.stats.clone();
    let collector = web::Data::new(Collector {
        shared: shared.clone(),
        committer,
        geo,
        limiter: tally_collector::ratelimit::RateLimiter::new(
            cfg.limits.rate_limit,
            cfg.limits.rate_burst,
        ),
    });
    let reader = web::Data::new(Reader {
        shared: shared.clone(),
    });
    let aggregator = web::Data::new(Aggregator::new(shared.clone(), &cfg.aggregator));
    let consumer = if cfg.aggregator.enabled {
        let (url, agg, acfg) = (
            redis_url.to_string(),
            aggregator.clone(),
            cfg.aggregator.clone(),
        );
        // bb8 connects lazily; the consumer retries while Redis is away.
        Some(tokio::spawn(async move {
            match tally_aggregator::start_consumer(&url, &agg, &acfg).await {
                Ok(task) => {
                    let _ = task.await;
                }
                Err(e) => tracing::error!(error = %e, "aggregator consumer could not start"),
            }
        }))
    } else {
        None
    };
    let shared = web::Data::new(shared);
    let stats_data = web::Data::from(stats.clone());
    let origin = cfg.cors_origin.clone();
    let listener =
        TcpListener::bind(&cfg.bind).map_err(|e| StartError::Bind(cfg.bind.clone(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Bind(cfg.bind.clone(), e))?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(cors(&origin))
            .configure(|c| configure_health(c, shared.clone()))
            .configure(|c| tally_collector::configure(c, collector.clone()))
            .configure(|c| tally_reader::configure(c, reader.clone()))
            .configure(|c| tally_aggregator::configure(c, aggregator.clone()))
            .app_data(stats_data.clone())
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(not_found))
    })
    .workers(cfg.workers.max(1))
    .shutdown_timeout(10)
    .listen(listener)
    .map_err(|e| StartError::Bind(cfg.bind.clone(), e))?
    .run();
    Ok(Running {
        addr,
        server,
        stopper,
        stats,
        consumer,
    })
}
