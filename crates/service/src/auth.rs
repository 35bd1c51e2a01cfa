//! Which app a key opens, and with which rights. Every key set of an app has a write key
//! (Countly's `app_key`, shipped inside apps), a read key (Countly's `api_key`) and a
//! master key; the master key may do what the other two may.

use crate::error::ApiError;
use crate::state::Shared;
use actix_web::HttpRequest;
use serde_json::Value;
use std::sync::Arc;
pub use tally_model::apps::Role;
use tally_model::apps::{self, App};

/// The key of a Rakam request: the role's header (or the master key's, which has every
/// role), else `api.api_key` of the JSON body, as the clients send it for collection.
pub fn rakam_key<'a>(req: &'a HttpRequest, body: Option<&'a Value>, role: Role) -> Option<&'a str> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    header(role.header())
        .or_else(|| header(Role::Master.header()))
        .or_else(|| {
            body?
                .get("api")?
                .get("api_key")?
                .as_str()
                .filter(|k| !k.is_empty())
        })
}

/// The app `key` opens for `role`; 403 for a missing key, an unknown one, or one without
/// the right.
pub async fn app_for_key(
    shared: &Shared,
    key: Option<&str>,
    role: Role,
) -> Result<Arc<App>, ApiError> {
    let key = key.ok_or_else(|| {
        ApiError::Forbidden(format!(
            "Missing key: send the {} header or api.api_key in the body",
            role.header()
        ))
    })?;
    if role == Role::Write {
        // The write key is on every collection request: cached.
        if let Some(app) = shared.apps.by_write_key(&shared.pool, key).await? {
            return Ok(app);
        }
    }
    let app = apps::by_other_key(&shared.pool, key)
        .await?
        .ok_or_else(|| ApiError::Forbidden("Invalid key".into()))?;
    if !app.allows(key, role) {
        return Err(ApiError::Forbidden(format!(
            "This needs the {} (or the master key)",
            role.header()
        )));
    }
    Ok(Arc::new(app))
}
