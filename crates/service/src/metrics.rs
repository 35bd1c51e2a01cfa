//! `/metrics`: one Prometheus registry per server (the tests run several servers in one
//! process), in the OpenMetrics text format. Services register their own counters
//! ([`tally_model::commit::CommitStats::register`], the aggregator's); this module adds
//! the requests by route and status and the transport's failures.

use actix_web::{web, HttpResponse};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tally_redis::Pool;

/// Latency bucket bounds of the request histogram, in seconds.
const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    status: u16,
}

fn latency() -> Histogram {
    Histogram::new(BOUNDS)
}

/// Requests by route pattern and status, with a latency histogram.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub fn new(reg: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency),
        };
        reg.register(
            "tally_http_requests",
            "Requests by route and status",
            m.requests.clone(),
        );
        reg.register(
            "tally_http_request_duration_seconds",
            "Request latency by route",
            m.latency.clone(),
        );
        m
    }

    pub fn observe(&self, route: String, status: u16, secs: f64) {
        let labels = RouteLabels { route, status };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(secs);
    }
}

/// The transport's failure count, read when `/metrics` is scraped.
struct RedisErrors(Pool);

impl std::fmt::Debug for RedisErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisErrors")
    }
}

impl Collector for RedisErrors {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let errors = ConstCounter::new(self.0.errors());
        let metric = encoder.encode_descriptor(
            "tally_redis_errors",
            "Failed Redis exchanges: errors, timeouts, lost connections, cluster redirects.",
            None,
            errors.metric_type(),
        )?;
        errors.encode(metric)
    }
}

/// Shows the pool's failures on `/metrics`.
pub fn register_pool(reg: &mut Registry, pool: &Pool) {
    reg.register_collector(Box::new(RedisErrors(pool.clone())));
}

pub(crate) async fn route(registry: web::Data<Registry>) -> HttpResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &registry) {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(out),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}
