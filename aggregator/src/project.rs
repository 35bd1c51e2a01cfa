//! `POST /project/create`: a new app (= project = bucket) and its keys.

use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tally_store::apps::{self, keys_equal, NewApp};
use tally_store::http::{json as json_response, read_body};
use tally_store::ApiError;

#[derive(Deserialize)]
struct CreateProject {
    name: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    lock_key: Option<String>,
    #[serde(default)]
    public_read: bool,
    #[serde(default)]
    salt: Option<String>,
}

/// Longest app name.
const MAX_NAME: usize = 200;

/// Validates a new app's fields (shared with the `tally apps create` command).
pub fn new_app(
    name: &str,
    timezone: Option<&str>,
    public_read: bool,
    salt: Option<String>,
) -> Result<NewApp, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::bad(format!(
            "Invalid parameter \"name\": 1 to {MAX_NAME} characters"
        )));
    }
    let tz = timezone.unwrap_or("UTC");
    let timezone = tz.parse().map_err(|_| {
        ApiError::bad(format!(
            "Invalid parameter \"timezone\": {tz:?} is not an IANA timezone"
        ))
    })?;
    Ok(NewApp {
        name: name.to_string(),
        timezone,
        public_read,
        salt: salt.filter(|s| !s.is_empty()),
    })
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let shared = &st.shared;
    let body = read_body(payload, shared.limits.max_body_bytes).await?;
    let p: CreateProject = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("Invalid JSON body: {e}")))?;
    let given = p
        .lock_key
        .as_deref()
        .or_else(|| req.headers().get("lock_key").and_then(|v| v.to_str().ok()));
    match (&shared.admin_key, given) {
        (Some(admin), Some(given)) if keys_equal(given, admin) => {}
        (None, _) => {
            return Err(ApiError::Forbidden(
                "Creating projects is disabled: TALLY_ADMIN_KEY is not set".into(),
            ))
        }
        _ => return Err(ApiError::Forbidden("Invalid lock_key".into())),
    }
    let new = new_app(&p.name, p.timezone.as_deref(), p.public_read, p.salt)?;
    let app = apps::create(&shared.pool, new, shared.clock.now_secs()).await?;
    Ok(json_response(
        json!({
            "project": app.id.as_str(),
            "write_key": app.write_key,
            "read_key": app.read_key,
            "master_key": app.master_key,
        })
        .to_string(),
    ))
}
