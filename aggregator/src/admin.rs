//! Rakam's `/admin/*` routes, answered with what is true of Tally, and a clear 501 for
//! each Rakam route Tally does not serve (yet, or at all): never a silent 404, never a
//! pretend answer.

use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tally_model::apps::keys_equal;
use tally_model::schema::FieldType;
use tally_service::auth::{app_for_key, rakam_key, Role};
use tally_service::{json as json_response, read_body, ApiError, RakamError};

type Res = Result<HttpResponse, RakamError>;

/// `GET /admin/types` (master key): every field type Tally stores, by Rakam's name.
pub async fn types(req: HttpRequest, st: web::Data<Aggregator>) -> Res {
    app_for_key(
        &st.shared,
        rakam_key(&req, None, Role::Master),
        Role::Master,
    )
    .await?;
    let all: Map<String, Value> = FieldType::all()
        .into_iter()
        .map(|t| (t.name(), Value::String(describe(t))))
        .collect();
    Ok(json_response(Value::Object(all).to_string()))
}

fn describe(t: FieldType) -> String {
    match t {
        FieldType::Scalar(s) => s.name().to_ascii_lowercase(),
        FieldType::Array(s) => format!("array of {}", s.name().to_ascii_lowercase()),
        FieldType::Map(s) => format!("map of text to {}", s.name().to_ascii_lowercase()),
    }
}

/// `GET /admin/configurations` and `GET /admin/event_mappers` (master key): Tally has
/// no installable modules and no event mappers, so both lists are empty.
pub async fn none(req: HttpRequest, st: web::Data<Aggregator>) -> Res {
    app_for_key(
        &st.shared,
        rakam_key(&req, None, Role::Master),
        Role::Master,
    )
    .await?;
    Ok(json_response("[]".into()))
}

/// `POST /admin/lock_key`: `{lock_key}` -> whether it is the admin key
/// (`TALLY_ADMIN_KEY`), which creating projects needs.
pub async fn lock_key(payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let raw = read_body(payload, &st.shared.limits).await?;
    let b: Value = serde_json::from_slice(&raw)
        .map_err(|e| RakamError(ApiError::bad(format!("Invalid JSON body: {e}"))))?;
    let given = b["lock_key"].as_str().unwrap_or("");
    let ok = st
        .shared
        .admin_key
        .as_deref()
        .is_some_and(|admin| keys_equal(given, admin));
    Ok(json_response(json!(ok).to_string()))
}

/// Rakam routes that answer 501, each with why.
pub const NOT_SERVED: [(&str, &str); 14] = [
    (
        "/continuous-query/create",
        "continuous queries are not built yet",
    ),
    (
        "/continuous-query/delete",
        "continuous queries are not built yet",
    ),
    (
        "/continuous-query/get",
        "continuous queries are not built yet",
    ),
    (
        "/continuous-query/list",
        "continuous queries are not built yet",
    ),
    (
        "/continuous-query/schema",
        "continuous queries are not built yet",
    ),
    (
        "/continuous-query/test",
        "continuous queries are not built yet",
    ),
    (
        "/event-explorer/analyze",
        "the event explorer is not built yet",
    ),
    (
        "/event-explorer/statistics",
        "the event explorer is not built yet",
    ),
    (
        "/event-explorer/pre_calculate",
        "the event explorer is not built yet",
    ),
    (
        "/event-explorer/extra_dimensions",
        "the event explorer is not built yet",
    ),
    ("/funnel/analyze", "funnels are not built yet"),
    ("/retention/analyze", "retention is not built yet"),
    (
        "/user/action/email/batch",
        "out of scope: Tally sends no email (export users with /user/search)",
    ),
    (
        "/user/action/email/single",
        "out of scope: Tally sends no email (export users with /user/search)",
    ),
];

/// Answers a route of [`NOT_SERVED`].
pub async fn not_served(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    let why = NOT_SERVED
        .iter()
        .find(|(p, _)| *p == path)
        .map_or("not served by Tally", |(_, w)| *w);
    HttpResponse::NotImplemented()
        .content_type("application/json; charset=utf-8")
        .body(
            json!({"success": false, "error": format!("{path}: {why}"), "error_code": 501})
                .to_string(),
        )
}
