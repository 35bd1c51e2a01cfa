//! `/o`: authenticate, pick the method, answer as JSON or JSONP.

use crate::methods::{self, Query, USERS_META};
use crate::period;
use crate::{shape, Reader};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::sync::Arc;
use tally_model::apps::{App, Role};
use tally_model::keys::{AppId, Family};
use tally_service::ApiError;
use tally_service::{decode_pairs, json};

const METHODS: &[&str] = &[
    "sessions",
    "users",
    "locations",
    "devices",
    "carriers",
    "device_details",
    "app_versions",
    "density",
    "langs",
    "events",
    "get_events",
    "top_events",
    "app",
    "live",
    "get_period_obj",
    "total_users",
    "get_event_groups",
    "get_event_group",
    "countries",
    "cities",
    "all_apps",
    "consents",
    "notes",
    "geodata",
];

/// Longest accepted JSONP callback name.
const MAX_CALLBACK: usize = 128;

/// A JSONP callback must be a plain JavaScript identifier path (`cb`, `a.b_1`, `$x`), so
/// that nothing but a function call can be injected.
pub fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CALLBACK
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

fn query_params(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    Ok(decode_pairs(req.query_string().as_bytes())?
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect())
}

/// Countly's checks, in its order and with its answers: the key (`api_key`, or
/// `auth_token`, or the `countly-token`/`read_key` header) must be given (400 `Missing
/// parameter "api_key" or "auth_token"`) and be someone's (401 `User does not exist`); the
/// app must exist (401 `App does not exist`) and the key be one of its read or master keys
/// (401 `User does not have right`). A public app reads with `app_key` alone.
async fn authenticate(
    req: &HttpRequest,
    p: &HashMap<String, String>,
    st: &Reader,
) -> Result<Arc<App>, ApiError> {
    let shared = &st.shared;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let given = p
        .get("api_key")
        .or_else(|| p.get("auth_token"))
        .map(String::as_str)
        .or_else(|| header("countly-token"))
        .or_else(|| header("read_key"))
        .or_else(|| header("api_key"))
        .filter(|k| !k.is_empty());
    let app = match (p.get("app_id"), p.get("app_key")) {
        (Some(id), _) => {
            let id = AppId::parse(id).ok_or_else(|| ApiError::invalid_param("app_id"))?;
            shared.apps.by_id(&shared.pool, &id).await?
        }
        (None, Some(key)) => shared.apps.by_write_key(&shared.pool, key).await?,
        (None, None) => return Err(ApiError::bad("Missing parameter \"app_id\"")),
    };
    let Some(key) = given else {
        return match app {
            Some(app) if app.public_read && p.contains_key("app_key") => Ok(app),
            _ => Err(ApiError::bad(
                "Missing parameter \"api_key\" or \"auth_token\"",
            )),
        };
    };
    if let Some(app) = app.as_ref().filter(|a| a.allows(key, Role::Read)) {
        return Ok(app.clone());
    }
    // Whose key it is decides the answer, as Countly's user lookup comes first.
    match tally_model::apps::by_other_key(&shared.pool, key).await? {
        Some(owner) if owner.allows(key, Role::Read) => Err(ApiError::Unauthorized(
            if app.is_none() {
                "App does not exist"
            } else {
                "User does not have right"
            }
            .into(),
        )),
        _ => Err(ApiError::Unauthorized("User does not exist".into())),
    }
}

fn respond(body: String, callback: Option<&String>) -> HttpResponse {
    match callback {
        Some(cb) => HttpResponse::Ok()
            .content_type("application/javascript; charset=utf-8")
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(format!("{cb}({body});")),
        None => json(body),
    }
}

/// `GET|POST /o?method=...`
pub async fn read(req: HttpRequest, st: web::Data<Reader>) -> Result<HttpResponse, ApiError> {
    let p = query_params(&req)?;
    if !p.contains_key("app_id") && !p.contains_key("app_key") {
        return Err(ApiError::bad("Missing parameter \"app_id\""));
    }
    let method = p.get("method").map(String::as_str).unwrap_or("");
    if !METHODS.contains(&method) {
        return Err(ApiError::bad("Invalid method"));
    }
    let callback = p.get("callback");
    if callback.is_some_and(|c| !valid_callback(c)) {
        return Err(ApiError::invalid_param("callback"));
    }
    let shared = &st.shared;
    if method == "all_apps" {
        if let Some(v) = all_apps_for_admin(&p, &st).await? {
            return Ok(respond(v, callback));
        }
    }
    let app = authenticate(&req, &p, &st).await?;
    let now = shared.clock.now_secs();
    let period_text = p.get("period").map(String::as_str);
    let mut q = query(&app, &p, now, &st)?;
    q.refresh = p.get("action").map(String::as_str) == Some("refresh");
    let span = q.period;
    let pool = &shared.pool;
    let v = match method {
        // Countly's `countries` reads a collection its current code no longer writes;
        // countries live in the users family, as `locations` answers them.
        "sessions" | "users" | "locations" | "countries" => {
            methods::family(pool, &q, Family::users(), USERS_META).await?
        }
        "live" => methods::live(pool, &app, now).await?,
        "app" => {
            // Tally's own: what a dashboard needs to count days in the app's timezone.
            use chrono::{Offset, TimeZone};
            let offset = app
                .timezone
                .offset_from_utc_datetime(
                    &chrono::DateTime::from_timestamp(now, 0)
                        .unwrap_or_default()
                        .naive_utc(),
                )
                .fix()
                .local_minus_utc()
                / 60;
            serde_json::json!({
                "_id": app.id.as_str(),
                "name": shape::escape(&app.name, q.escape),
                "timezone": app.timezone.name(),
                "utc_offset_minutes": offset,
                "today": q.today.to_string(),
                "now": shared.clock.now_ms(),
            })
            .to_string()
        }
        // Consent changes by day (given `i`, taken back `o`), as Countly's compliance hub
        // counts them; meta `feature`.
        "consents" => {
            methods::family(
                pool,
                &q,
                tally_model::consent::family(),
                &[tally_model::consent::FEATURES],
            )
            .await?
        }
        // Countly's dashboard annotations: Tally keeps none, so the list is empty (in
        // Countly's DataTables shape).
        "notes" => serde_json::json!({
            "aaData": [],
            "iTotalDisplayRecords": 0,
            "iTotalRecords": 0,
            "sEcho": p.get("sEcho").map(String::as_str).unwrap_or("0"),
        })
        .to_string(),
        "geodata" => {
            return Err(ApiError::bad(
                "geodata is not served: Tally has no database of city coordinates (cities are counted by name: method=cities)",
            ))
        }
        "all_apps" => {
            crate::analytics::all_apps(
                pool,
                std::slice::from_ref(&app),
                period_text,
                now,
                (q.escape, q.hourly_days),
            )
                .await?
                .to_string()
        }
        "total_users" => {
            let max = shared.limits.total_users_scan;
            methods::total_users(pool, &q, p.get("metric").map(String::as_str), max)
                .await?
                .map_err(|max| {
                    ApiError::bad(format!(
                        "total_users reads at most {max} devices (TALLY_TOTAL_USERS_SCAN)"
                    ))
                })?
                .to_string()
        }
        "get_event_groups" => {
            let groups = tally_model::event_groups::list(pool, &app.id).await?;
            shape_json(serde_json::Value::from(groups), q.escape)
        }
        "get_event_group" => {
            let id = p
                .get("_id")
                .or_else(|| p.get("group_id"))
                .ok_or_else(|| ApiError::bad("Missing parameter \"_id\""))?;
            let group = tally_model::event_groups::get(pool, &app.id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound("Event group does not exist".into()))?;
            shape_json(serde_json::Value::Object(group), q.escape)
        }
        "get_period_obj" => crate::period_obj::render(&span, now, app.timezone).to_string(),
        "get_events" => methods::get_events(pool, &app, &shared.limits, q.escape)
            .await?
            .to_string(),
        "top_events" => methods::top_events(
            pool,
            &q,
            period_text,
            p.get("limit").map(String::as_str),
            p.get("filter").map(String::as_str),
            now,
        )
        .await?
        .to_string(),
        "events" => {
            let selected: Vec<String> = if let Some(list) = p.get("events") {
                let v: Vec<String> =
                    serde_json::from_str(list).map_err(|_| ApiError::invalid_param("events"))?;
                if v.len() > shared.limits.event_keys {
                    return Err(ApiError::invalid_param("events"));
                }
                v
            } else if let Some(e) = p.get("event") {
                if e.starts_with(tally_model::event_groups::PREFIX) {
                    // A group reads as the sum of its source events (Countly's
                    // fetchMergedEventGroups), always with a meta, never by segment.
                    let group = tally_model::event_groups::get(pool, &app.id, e)
                        .await?
                        .ok_or_else(|| ApiError::NotFound("Event group does not exist".into()))?;
                    let sources: Vec<String> = group
                        .get("source_events")
                        .and_then(|s| serde_json::from_value(s.clone()).ok())
                        .unwrap_or_default();
                    let v = methods::events(pool, &q, &sources, true, None).await?;
                    return Ok(respond(v, callback));
                }
                vec![e.clone()]
            } else {
                // Countly picks the first key of the sorted list, skipping internal events.
                methods::event_keys(pool, &app)
                    .await?
                    .into_iter()
                    .take(1)
                    .collect()
            };
            methods::events(
                pool,
                &q,
                &selected,
                p.contains_key("events"),
                p.get("segmentation").map(String::as_str),
            )
            .await?
        }
        m => match methods::metric_method(m) {
            Some((family, meta)) => methods::family(pool, &q, Family::metric(family), meta).await?,
            None => return Err(ApiError::bad("Invalid method")),
        },
    };
    Ok(respond(v, callback))
}

/// Whether the answer is HTML-escaped (Countly's default; off with `noescape=1`).
fn escaped(p: &HashMap<String, String>) -> bool {
    p.get("noescape").map(String::as_str) != Some("1")
}

/// The query of a read of `app`: its `period` and escaping.
fn query<'a>(
    app: &'a App,
    p: &HashMap<String, String>,
    now: i64,
    st: &Reader,
) -> Result<Query<'a>, ApiError> {
    let span = period::parse(p.get("period").map(String::as_str), now, app.timezone)?;
    Ok(Query::new(
        app,
        span,
        now,
        escaped(p),
        st.shared.limits.hourly_days,
    ))
}

/// `method=all_apps` with the admin key (`TALLY_ADMIN_KEY`) as `api_key`: every app
/// (Countly answers it to global admins); `None` for any other key, which reads its own
/// app only.
async fn all_apps_for_admin(
    p: &HashMap<String, String>,
    st: &Reader,
) -> Result<Option<String>, ApiError> {
    let shared = &st.shared;
    let given = p.get("api_key").or_else(|| p.get("auth_token"));
    let is_admin = match (&shared.admin_key, given) {
        (Some(admin), Some(k)) => tally_model::apps::keys_equal(k, admin),
        _ => false,
    };
    if !is_admin {
        return Ok(None);
    }
    let now = shared.clock.now_secs();
    let mut apps = Vec::new();
    for id in tally_model::apps::list(&shared.pool).await? {
        if let Some(app) = shared.apps.by_id(&shared.pool, &id).await? {
            apps.push(app);
        }
    }
    let v = crate::analytics::all_apps(
        &shared.pool,
        &apps,
        p.get("period").map(String::as_str),
        now,
        (escaped(p), shared.limits.hourly_days),
    )
    .await?;
    Ok(Some(v.to_string()))
}

/// `GET /o/consent/current?device_id=`: a device's current consents (Countly's
/// `/o/consent/current`), authenticated as `/o` is.
pub async fn consent_current(
    req: HttpRequest,
    st: web::Data<Reader>,
) -> Result<HttpResponse, ApiError> {
    let p = query_params(&req)?;
    if !p.contains_key("app_id") && !p.contains_key("app_key") {
        return Err(ApiError::bad("Missing parameter \"app_id\""));
    }
    let app = authenticate(&req, &p, &st).await?;
    let device = p
        .get("device_id")
        .ok_or_else(|| ApiError::bad("Missing parameter \"device_id\""))?;
    let current = tally_model::consent::current(&st.shared.pool, &app.id, device).await?;
    Ok(respond(
        serde_json::Value::Object(current).to_string(),
        p.get("callback").filter(|c| valid_callback(c)),
    ))
}

/// `GET|POST /o/analytics/{action}`: Countly's dashboard figures
/// ([`crate::analytics`]), authenticated as `/o` is.
pub async fn analytics(
    req: HttpRequest,
    action: web::Path<String>,
    st: web::Data<Reader>,
) -> Result<HttpResponse, ApiError> {
    let p = query_params(&req)?;
    if !p.contains_key("app_id") && !p.contains_key("app_key") {
        return Err(ApiError::bad("Missing parameter \"app_id\""));
    }
    let callback = p.get("callback");
    if callback.is_some_and(|c| !valid_callback(c)) {
        return Err(ApiError::invalid_param("callback"));
    }
    let app = authenticate(&req, &p, &st).await?;
    let shared = &st.shared;
    let now = shared.clock.now_secs();
    let q = query(&app, &p, now, &st)?;
    let ask = crate::analytics::Ask {
        q: &q,
        now,
        params: &p,
    };
    match crate::analytics::answer(&shared.pool, &ask, &action).await? {
        Ok(v) => Ok(respond(v.to_string(), callback)),
        Err(crate::analytics::Refused(msg)) => Err(ApiError::bad(msg)),
    }
}

/// A JSON value with its strings and keys escaped as Countly's output is (unless
/// `noescape`).
fn shape_json(v: serde_json::Value, esc: bool) -> String {
    fn walk(v: serde_json::Value, esc: bool) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(shape::escape(&s, esc)),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| walk(x, esc)).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, x)| (shape::escape(&k, esc), walk(x, esc)))
                    .collect(),
            ),
            other => other,
        }
    }
    walk(v, esc).to_string()
}

/// `/o/sdk`: the web SDK asks for server-side configuration; Tally has none to give.
pub async fn sdk_config() -> HttpResponse {
    json("{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks() {
        for ok in ["cb", "_x1", "$", "a.b.c", "jQuery123_456"] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a(b)",
            "alert(1);x",
            "a..b",
            "a.",
            &"x".repeat(200),
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }
}
