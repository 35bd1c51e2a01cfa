//! Reading request bodies within the configured limits, and Countly-shaped JSON answers.

use crate::error::ApiError;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use tally_config::Limits;

/// Reads a request body, refusing (413) more than `limits.max_body_bytes` without buffering
/// them, and (408) a body that takes longer than `limits.body_timeout`.
pub async fn read_body(payload: web::Payload, limits: &Limits) -> Result<web::Bytes, ApiError> {
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

/// A JSON request body within the limits: an empty one is `null`, one that is not JSON a
/// 400.
pub async fn read_json(
    payload: web::Payload,
    limits: &Limits,
) -> Result<serde_json::Value, ApiError> {
    let raw = read_body(payload, limits).await?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&raw).map_err(|e| ApiError::bad(format!("Invalid JSON body: {e}")))
}

/// A 200 with a JSON body.
pub fn json(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(body)
}

/// `{"result": "..."}` with 200.
pub fn result(msg: &str) -> HttpResponse {
    // Every acknowledged `/i` answers this one: no JSON tree built for it.
    if msg == "Success" {
        return HttpResponse::Ok()
            .content_type("application/json; charset=utf-8")
            .body(r#"{"result":"Success"}"#);
    }
    json(serde_json::json!({ "result": msg }).to_string())
}
