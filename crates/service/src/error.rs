//! Every failure a request can meet, and its HTTP answer, in one place.
//!
//! The split is deliberate, because SDK queues decide from it whether to retry: a 4xx
//! means "this request is wrong, sending it again will not help"; a 503 means "Tally or
//! Redis cannot take it right now, retry". Bodies keep Countly's shape `{"result": "..."}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use tally_model::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input: 400.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong credentials: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the right, or an admin route without an admin key: 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The body is over the configured limit: 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body did not arrive in time: 408.
    #[error("{0}")]
    RequestTimeout(String),
    /// Too much running at once (queries): 429, try again shortly.
    #[error("{0}")]
    Busy(String),
    /// Per-app rate limit: 429 with `Retry-After` in seconds.
    #[error("Rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    /// Redis unreachable, timed out or a flush failed: 503, retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A real fault in Tally: 500.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(msg.into())
    }

    /// Countly's wording for a parameter that is present but wrong.
    pub fn invalid_param(name: &str) -> ApiError {
        ApiError::BadRequest(format!("Invalid parameter \"{name}\""))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } | ApiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::RateLimited { retry_after_secs } = self {
            res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        res.content_type("application/json; charset=utf-8")
            .body(serde_json::json!({ "result": self.to_string() }).to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(m) => ApiError::Internal(format!("Stored data is corrupt: {m}")),
            StoreError::Closed => ApiError::Unavailable("Server is shutting down".into()),
            StoreError::Overloaded => ApiError::Unavailable("Server is overloaded".into()),
            StoreError::Bug(m) => ApiError::Internal(format!("Internal error: {m}")),
            other => {
                tracing::warn!(error = %other, "redis failure");
                ApiError::Unavailable("Database unavailable".into())
            }
        }
    }
}

impl From<tally_redis::Error> for ApiError {
    fn from(e: tally_redis::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// A failure on a Rakam route: the same status as its [`ApiError`], with Rakam's body
/// `{"error": ..., "error_code": ...}`. Rakam's Python clients read `error`, and one of
/// them crashes on a 403 whose body is not JSON.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RakamError(#[from] pub ApiError);

impl RakamError {
    /// A 400 with Rakam's body.
    pub fn bad(msg: impl Into<String>) -> RakamError {
        RakamError(ApiError::bad(msg))
    }
}

impl From<StoreError> for RakamError {
    fn from(e: StoreError) -> Self {
        RakamError(e.into())
    }
}

impl From<tally_redis::Error> for RakamError {
    fn from(e: tally_redis::Error) -> Self {
        RakamError(e.into())
    }
}

impl ResponseError for RakamError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut res = HttpResponse::build(status);
        if let ApiError::RateLimited { retry_after_secs } = &self.0 {
            res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        res.content_type("application/json; charset=utf-8").body(
            serde_json::json!({
                "success": false,
                "error": self.0.to_string(),
                "error_code": status.as_u16(),
            })
            .to_string(),
        )
    }
}
