//! HTTP pieces every service shares: the state handed to handlers, bounded body reads and
//! Countly-shaped JSON answers.

use crate::apps::AppCache;
use crate::clock::SharedClock;
use crate::config::Limits;
use crate::error::ApiError;
use crate::redis::Pool;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
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

/// Reads a request body, refusing (413) more than `limit` bytes without buffering them.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
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
    let decode = |part: &[u8]| -> Result<String, ApiError> {
        let plus: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| ApiError::bad("Request parameters are not valid UTF-8"))
    };
    raw.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => Ok((decode(&pair[..i])?, decode(&pair[i + 1..])?)),
            None => Ok((decode(pair)?, String::new())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

/// `GET /ready`: 200 when Redis answers, 503 otherwise.
pub async fn ready(st: web::Data<Shared>) -> Result<HttpResponse, ApiError> {
    let mut pipe = ::redis::pipe();
    pipe.cmd("PING");
    let _: (String,) = crate::redis::run(&st.pool, &pipe).await?;
    let backlog = st.backlog.load(std::sync::atomic::Ordering::Relaxed);
    Ok(json(
        serde_json::json!({"status": "ready", "aggregator_backlog": backlog}).to_string(),
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
