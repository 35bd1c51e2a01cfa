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
}

/// Reads a request body, refusing (413) more than `limit` bytes without buffering them.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad(format!("Could not read the request body: {e}")))?;
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
