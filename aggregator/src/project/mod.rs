//! Projects (= apps = buckets): creating one (`/project/create`), deleting one, forgetting
//! a device, and, in the submodules, key sets ([`keys`]) and statistics and the list of
//! projects ([`stats`]).

pub mod keys;
pub mod stats;

use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tally_model::apps::{self, keys_equal, NewApp, Role};
use tally_service::ApiError;
use tally_service::{json as json_response, read_body};

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
    /// Rakam's strict mode for the new project.
    #[serde(default)]
    strict: bool,
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
        strict: false,
    })
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let shared = &st.shared;
    let body = read_body(payload, &shared.limits).await?;
    let p: CreateProject = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("Invalid JSON body: {e}")))?;
    admin_allowed(
        shared,
        p.lock_key
            .as_deref()
            .or_else(|| req.headers().get("lock_key").and_then(|v| v.to_str().ok())),
    )?;
    let mut new = new_app(&p.name, p.timezone.as_deref(), p.public_read, p.salt)?;
    new.strict = p.strict;
    let app = apps::create(&shared.pool, new, shared.clock.now_secs()).await?;
    Ok(json_response(
        json!({
            "project": app.id.as_str(),
            "write_key": app.write_key,
            "read_key": app.read_key,
            "master_key": app.master_key,
            "strict": app.strict,
        })
        .to_string(),
    ))
}

/// Whether `given` is the admin key (`TALLY_ADMIN_KEY`, Rakam's lock key), which creating
/// and listing projects need.
pub(crate) fn admin_allowed(
    shared: &tally_service::Shared,
    given: Option<&str>,
) -> Result<(), ApiError> {
    match (&shared.admin_key, given) {
        (Some(admin), Some(given)) if keys_equal(given, admin) => Ok(()),
        (None, _) => Err(ApiError::Forbidden(
            "The admin routes are disabled: TALLY_ADMIN_KEY is not set".into(),
        )),
        _ => Err(ApiError::Forbidden("Invalid lock_key".into())),
    }
}

/// Parameters of the master-key routes: from the query string, overridden by a JSON body.
async fn admin_params(
    req: &HttpRequest,
    payload: web::Payload,
    st: &Aggregator,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let mut p = serde_json::Map::new();
    for (k, v) in tally_service::decode_pairs(req.query_string().as_bytes())? {
        p.insert(k, v.into());
    }
    let body = read_body(payload, &st.shared.limits).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice(&body) {
            Ok(serde_json::Value::Object(o)) => p.extend(o),
            _ => return Err(ApiError::bad("Request body must be a JSON object")),
        }
    }
    Ok(p)
}

/// The app the request's master key (header `master_key`, or `master_key` in the body)
/// opens; when `project` is given it must be that app. Read from the registry, never a
/// cache: these routes change or remove the app, and a revoked key must not pass.
async fn master_app(
    req: &HttpRequest,
    p: &serde_json::Map<String, serde_json::Value>,
    st: &Aggregator,
) -> Result<std::sync::Arc<apps::App>, ApiError> {
    let shared = &st.shared;
    let given = req
        .headers()
        .get("master_key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| p.get("master_key").and_then(|v| v.as_str()))
        .ok_or_else(|| ApiError::Unauthorized("Missing master_key".into()))?;
    let app = match p.get("project").and_then(|v| v.as_str()) {
        Some(id) => {
            let id = tally_model::keys::AppId::parse(id)
                .ok_or_else(|| ApiError::invalid_param("project"))?;
            apps::by_id(&shared.pool, &id)
                .await?
                .ok_or_else(|| ApiError::NotFound("Project does not exist".into()))?
        }
        None => apps::by_other_key(&shared.pool, given)
            .await?
            .ok_or_else(|| ApiError::Forbidden("Invalid master_key".into()))?,
    };
    if !app.allows(given, Role::Master) {
        return Err(ApiError::Forbidden("Invalid master_key".into()));
    }
    Ok(std::sync::Arc::new(app))
}

/// `DELETE /project/delete`: removes every key of the app (SCAN + UNLINK in batches).
pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let p = admin_params(&req, payload, &st).await?;
    let app = master_app(&req, &p, &st).await?;
    let deleted = apps::delete(&st.shared.pool, &app).await?;
    st.shared.apps.clear();
    Ok(json_response(
        json!({"result": "Success", "deleted_keys": deleted}).to_string(),
    ))
}

/// `DELETE /project/device`: forgets one device (the right to erasure).
pub async fn forget_device(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let p = admin_params(&req, payload, &st).await?;
    let app = master_app(&req, &p, &st).await?;
    let device = p
        .get("device_id")
        .and_then(|v| v.as_str())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| ApiError::bad("Missing parameter \"device_id\""))?;
    let (forgotten, raw_entries) = apps::forget_device(&st.shared.pool, &app.id, device).await?;
    Ok(json_response(
        json!({"result": "Success", "forgotten": forgotten, "raw_entries_deleted": raw_entries})
            .to_string(),
    ))
}
