//! HTTP pieces every service shares: the state handed to handlers, bounded body reads and
//! Countly-shaped JSON answers.

use crate::apps::AppCache;
use crate::clock::SharedClock;
use crate::config::Limits;
use crate::error::ApiError;
use crate::redis::Pool;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use std::borrow::Cow;
use std::sync::Arc;

/// What every service's handlers share: built once at start-up.
#[derive(Clone)]
pub struct Shared {
    pub pool: Pool,
    pub apps: Arc<AppCache>,
    pub clock: SharedClock,
    pub limits: Arc<Limits>,
    /// `TALLY_ADMIN_KEY`: creating apps needs it; unset means nobody can.
    pub admin_key: Option<String>,
    /// Raw stream entries not yet rolled up (undelivered + unacknowledged), as the
    /// aggregator last measured them; `/ready` reports it.
    pub backlog: Arc<std::sync::atomic::AtomicU64>,
}

/// Reads a request body, refusing (413) more than `limits.max_body_bytes` without buffering
/// them, and (408) a body that takes longer than `limits.body_timeout`.
pub async fn read_body(
    payload: web::Payload,
    limits: &crate::config::Limits,
) -> Result<web::Bytes, ApiError> {
    let read = read_all(payload, limits.max_body_bytes);
    if limits.body_timeout.is_zero() {
        return read.await;
    }
    tokio::time::timeout(limits.body_timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::RequestTimeout(format!(
                "The request body did not arrive within {} ms",
                limits.body_timeout.as_millis()
            )))
        })
}

async fn read_all(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad(format!("Could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "Request body larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A 200 with a JSON body.
pub fn json(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(body)
}

/// `{"result": "..."}` with 200.
pub fn result(msg: &str) -> HttpResponse {
    json(serde_json::json!({ "result": msg }).to_string())
}

/// Decodes `a=1&b=x+y%20z` strictly: a pair that is not valid UTF-8 after percent-decoding
/// is a 400, never silently mangled.
pub fn decode_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    pairs(raw)
        .map(|pair| pair.map(|(k, v)| (k.into_owned(), v.into_owned())))
        .collect()
}

/// The pairs of a query or form, as [`decode_pairs`] decodes them, each part borrowed from
/// `raw` when it has nothing to decode: on `/i` that is most of them (keys, app key,
/// device id, flags), so only the JSON-bearing values are copied.
pub fn pairs(
    raw: &[u8],
) -> impl Iterator<Item = Result<(Cow<'_, str>, Cow<'_, str>), ApiError>> + '_ {
    raw.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => Ok((decode(&pair[..i])?, decode(&pair[i + 1..])?)),
            None => Ok((decode(pair)?, Cow::Borrowed(""))),
        })
}

fn not_utf8() -> ApiError {
    ApiError::bad("Request parameters are not valid UTF-8")
}

/// The value of each byte as a hex digit; `NOT_HEX` for the bytes that are not one.
const HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

/// One part of a query or form: `+` is a space, `%XX` a byte (a `%` without two hex digits
/// stays as it is), and the result must be UTF-8. Borrowed when there is nothing to
/// decode; otherwise one pass and one copy, a byte at a time: the part that needs
/// decoding is a `metrics` or `events` JSON, where escapes come every few bytes and a
/// copy call per plain run cost more than the bytes it copied.
fn decode(part: &[u8]) -> Result<Cow<'_, str>, ApiError> {
    let special = |b: &u8| *b == b'%' || *b == b'+';
    let Some(first) = part.iter().position(special) else {
        return std::str::from_utf8(part)
            .map(Cow::Borrowed)
            .map_err(|_| not_utf8());
    };
    let mut out = Vec::with_capacity(part.len());
    out.extend_from_slice(&part[..first]);
    let mut rest = &part[first..];
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => out.push(b' '),
            b'%' => match rest {
                [h, l, tail @ ..] if HEX[*h as usize] != NOT_HEX && HEX[*l as usize] != NOT_HEX => {
                    out.push(HEX[*h as usize] << 4 | HEX[*l as usize]);
                    rest = tail;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| not_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_stay_out_of_the_log_unless_asked_for() {
        for spec in [
            None,
            Some(""),
            Some("warn"),
            Some("tally=debug,info"),
            Some("=bad="),
        ] {
            let f = log_filter(spec).to_string();
            assert!(f.contains(CLIENT_MISTAKES), "{spec:?}: {f}");
        }
        let asked = log_filter(Some("warn,actix_http=debug")).to_string();
        assert!(!asked.contains(CLIENT_MISTAKES), "{asked}");
        assert!(log_filter(Some("warn")).to_string().contains("warn"));
    }

    /// The `percent_encoding` crate's decoding, with `+` as a space.
    fn reference(raw: &[u8]) -> Option<String> {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
            .ok()
    }

    #[test]
    fn decodes_like_the_url_standard() {
        for (raw, want) in [
            (&b"%zz"[..], "%zz"),
            (b"%4", "%4"),
            (b"%", "%"),
            (b"100%25+sure", "100% sure"),
            (b"%e2%82%AC", "\u{20ac}"),
            (b"a%2Bb", "a+b"),
            (b"", ""),
            (b"plain", "plain"),
            (b"++a+", "  a "),
            (b"ab%41cd%42", "abAcdB"),
            (b"x%2", "x%2"),
        ] {
            assert_eq!(decode(raw).ok().as_deref(), Some(want), "{raw:?}");
            let reference = reference(raw);
            assert_eq!(reference.as_deref(), Some(want));
        }
    }

    #[test]
    fn decodes_random_parts_like_the_reference() {
        // Parts dense in the bytes that matter: escapes, broken escapes, `+`, hex digits
        // and the start of a multi-byte character.
        let alphabet = b"%+2aAfFgG09z\xc3\xa9";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i * 5)) % alphabet.len() as u64) as usize])
                .collect();
            let reference = reference(&raw);
            assert_eq!(decode(&raw).ok().map(Cow::into_owned), reference, "{raw:?}");
        }
    }

    #[test]
    fn plain_parts_are_borrowed() {
        assert!(matches!(
            decode(b"plain-1_x"),
            Ok(Cow::Borrowed("plain-1_x"))
        ));
        assert!(matches!(
            decode("\u{e9}t\u{e9}".as_bytes()),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(decode(b"a+b"), Ok(Cow::Owned(s)) if s == "a b"));
        assert!(decode(b"\xff").is_err());
        let got: Vec<_> = pairs(b"k=v&x=%41").filter_map(Result::ok).collect();
        assert!(matches!(got[0], (Cow::Borrowed("k"), Cow::Borrowed("v"))));
        assert!(matches!(&got[1], (Cow::Borrowed("x"), Cow::Owned(a)) if a == "A"));
    }

    #[test]
    fn strict_decoding() {
        let p = decode_pairs(b"a=%3Cb%3E&c=x+y&d&&e=").unwrap_or_default();
        let want: Vec<(String, String)> = [("a", "<b>"), ("c", "x y"), ("d", ""), ("e", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(p, want);
        assert!(decode_pairs(b"a=%FF").is_err());
        assert!(decode_pairs(b"%C3%28=1").is_err());
    }
}

/// `GET /ping`: answers without touching Redis (liveness, and the benchmark's baseline).
pub async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("pong")
}

/// `GET /ready`: 200 when Redis answers, 503 otherwise. On a cluster: 200 while any master
/// answers (`"status":"degraded"` and the silent masters in `redis_down` when some do not),
/// because the apps on the other masters are still served.
pub async fn ready(st: web::Data<Shared>) -> Result<HttpResponse, ApiError> {
    let down = st.pool.ping_all().await?;
    let backlog = st.backlog.load(std::sync::atomic::Ordering::Relaxed);
    let status = if down.is_empty() { "ready" } else { "degraded" };
    Ok(json(
        serde_json::json!({"status": status, "aggregator_backlog": backlog, "redis_down": down})
            .to_string(),
    ))
}

/// `/ping`, `/health` (process alive) and `/ready` (Redis reachable).
pub fn configure_health(cfg: &mut web::ServiceConfig, shared: web::Data<Shared>) {
    cfg.app_data(shared)
        .route("/ping", web::get().to(ping))
        .route(
            "/health",
            web::get().to(|| async { json(r#"{"status":"ok"}"#.into()) }),
        )
        .route("/ready", web::get().to(ready));
}

/// CORS as Countly sends it (any origin by default; `TALLY_CORS_ORIGIN` narrows it), so
/// browser SDKs and dashboards on other origins can call.
pub fn cors(origin: &str) -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("Access-Control-Allow-Origin", origin.to_string()))
        .add(("Access-Control-Allow-Methods", "GET, POST, OPTIONS, DELETE"))
        .add((
            "Access-Control-Allow-Headers",
            "Content-Type, countly-token, read_key, master_key, api_key, Authorization",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
}

/// Answers any `OPTIONS` preflight with 200 (the CORS headers come from [`cors`]).
pub async fn preflight() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// Something `/metrics` shows, in Prometheus text format.
pub trait Metrics: Send + Sync {
    fn render(&self, out: &mut String);
}

/// Writes one counter or gauge with its help line.
pub fn metric(out: &mut String, kind: &str, name: &str, help: &str, value: u64) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

/// A Prometheus histogram that many threads observe into without a lock.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<std::sync::atomic::AtomicU64>,
    count: std::sync::atomic::AtomicU64,
    /// The sum, in millionths of the unit.
    sum_micros: std::sync::atomic::AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| Default::default()).collect(),
            count: Default::default(),
            sum_micros: Default::default(),
        }
    }

    pub fn observe(&self, v: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            if v <= *bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
    }

    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let _ = writeln!(
            out,
            "# HELP {name} {help}
# TYPE {name} histogram"
        );
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", b.load(Relaxed));
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Latency bucket bounds of the request histogram, in seconds.
pub const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct RouteStats {
    count: u64,
    sum: f64,
    buckets: [u64; BOUNDS.len()],
}

/// Requests by route pattern and status, with a latency histogram.
#[derive(Default)]
pub struct HttpMetrics {
    routes: std::sync::Mutex<std::collections::BTreeMap<(String, u16), RouteStats>>,
}

impl HttpMetrics {
    pub fn observe(&self, route: &str, status: u16, secs: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let s = routes.entry((route.to_string(), status)).or_default();
        s.count += 1;
        s.sum += secs;
        for (b, bound) in s.buckets.iter_mut().zip(BOUNDS) {
            if secs <= bound {
                *b += 1;
            }
        }
    }
}

impl Metrics for HttpMetrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP tally_http_requests_total Requests by route and status.\n# TYPE tally_http_requests_total counter\n");
        for ((route, status), s) in routes.iter() {
            let _ = writeln!(
                out,
                "tally_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP tally_http_request_duration_seconds Request latency by route.\n# TYPE tally_http_request_duration_seconds histogram\n");
        for ((route, status), s) in routes.iter() {
            let labels = format!("route=\"{route}\",status=\"{status}\"");
            for (b, bound) in s.buckets.iter().zip(BOUNDS) {
                let _ = writeln!(
                    out,
                    "tally_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {b}"
                );
            }
            let _ = writeln!(
                out,
                "tally_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "tally_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "tally_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

impl Metrics for crate::redis::Pool {
    fn render(&self, out: &mut String) {
        metric(
            out,
            "counter",
            "tally_redis_errors_total",
            "Failed Redis exchanges: errors, timeouts, lost connections, cluster redirects.",
            self.errors(),
        );
    }
}

/// What `/metrics` of one process shows.
#[derive(Clone)]
pub struct MetricsSources(pub Vec<Arc<dyn Metrics>>);

async fn metrics_route(sources: web::Data<MetricsSources>) -> HttpResponse {
    let mut out = String::new();
    for s in &sources.0 {
        s.render(&mut out);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// Unknown routes: a JSON 404; preflights: 200 (the CORS headers come from [`cors`]).
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    if req.method() == actix_web::http::Method::OPTIONS {
        return HttpResponse::Ok().finish();
    }
    HttpResponse::NotFound()
        .content_type("application/json; charset=utf-8")
        .body(r#"{"result":"Not found"}"#)
}

/// How each split binary (`collector`, `reader`, `aggregator`) starts: configuration
/// from the environment, logging, and the shared state on the external Redis, which
/// a split service requires (only `tally` starts an embedded one).
pub fn split_service() -> Result<(crate::config::Config, Shared), Box<dyn std::error::Error>> {
    let cfg = crate::config::Config::from_env()?;
    init_logging(cfg.log_json);
    let url = cfg
        .external_redis()
        .ok_or("REDIS_URL or REDIS_CLUSTER_URLS is required for the split services")?;
    let shared = Shared::new(&cfg, &url, Arc::new(crate::clock::SystemClock))?;
    Ok((cfg, shared))
}

impl Shared {
    /// The state every service builds first: the request-path pool, the app cache, limits.
    pub fn new(
        cfg: &crate::config::Config,
        redis_url: &str,
        clock: SharedClock,
    ) -> Result<Shared, crate::StoreError> {
        Ok(Shared {
            pool: crate::redis::pool(&cfg.redis(redis_url))?,
            apps: Arc::new(AppCache::new(cfg.app_cache_ttl, 10_000)),
            clock,
            limits: Arc::new(cfg.limits.clone()),
            admin_key: cfg.admin_key.clone(),
            backlog: Arc::default(),
        })
    }
}

/// An HTTP server for one set of routes, the way every Tally binary runs one: CORS, request
/// metrics, `/ping` `/health` `/ready`, `/metrics`, JSON 404s, graceful shutdown on
/// SIGINT/SIGTERM. `routes` mounts the service's own routes.
pub fn server<F>(
    cfg: &crate::config::Config,
    shared: Shared,
    mut sources: Vec<Arc<dyn Metrics>>,
    routes: F,
) -> std::io::Result<(std::net::SocketAddr, actix_web::dev::Server)>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    use actix_web::dev::Service;
    let http = Arc::new(HttpMetrics::default());
    sources.push(http.clone());
    sources.push(Arc::new(shared.pool.clone()));
    let sources = web::Data::new(MetricsSources(sources));
    let shared = web::Data::new(shared);
    let origin = cfg.cors_origin.clone();
    let listener = std::net::TcpListener::bind(&cfg.bind)?;
    let addr = listener.local_addr()?;
    let server = actix_web::HttpServer::new(move || {
        let http = http.clone();
        actix_web::App::new()
            .wrap_fn(move |req, srv| {
                let started = std::time::Instant::now();
                let http = http.clone();
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".into());
                    http.observe(
                        &route,
                        res.status().as_u16(),
                        started.elapsed().as_secs_f64(),
                    );
                    Ok(res)
                }
            })
            .wrap(cors(&origin))
            .configure(|c| configure_health(c, shared.clone()))
            .app_data(sources.clone())
            .route("/metrics", web::get().to(metrics_route))
            .configure(routes.clone())
            .default_service(web::to(not_found))
    })
    .workers(cfg.workers.max(1))
    .keep_alive(if cfg.limits.keep_alive.is_zero() {
        actix_web::http::KeepAlive::Disabled
    } else {
        actix_web::http::KeepAlive::Timeout(cfg.limits.keep_alive)
    })
    .client_request_timeout(cfg.limits.client_timeout)
    .max_connections(cfg.limits.max_connections)
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok((addr, server))
}

/// Logs to stderr, as text or (`TALLY_LOG_FORMAT=json`) JSON; `RUST_LOG` sets the level.
pub fn init_logging(json: bool) {
    let spec = std::env::var(tracing_subscriber::EnvFilter::DEFAULT_ENV).ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter(spec.as_deref()))
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// actix-http logs every malformed request line and every connection a client drops at
/// ERROR, from this target. Those are the client's (answered 400, or gone), and one line
/// each would let any client fill the log, so they stay off unless `RUST_LOG` names
/// `actix_http` itself.
const CLIENT_MISTAKES: &str = "actix_http::h1::dispatcher=off";

/// The log filter for `RUST_LOG` (`info` when unset or invalid), with
/// [`CLIENT_MISTAKES`] off.
fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    let quiet = |base: &str| format!("{base},{CLIENT_MISTAKES}");
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let spec = if spec.contains("actix_http") {
        spec.to_string()
    } else {
        quiet(spec)
    };
    tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet("info")))
}
