//! The write side of Countly's event groups (`/i/event_groups/create`, `/update`,
//! `/delete`), under the app's master key (Countly asks for a user with the right to
//! create, update or delete in the app). Parameters come in the query string or a form
//! body, as Countly takes them; `args` is JSON.

use crate::Collector;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tally_model::apps::{self, App, Role};
use tally_model::event_groups::{self, MAX_GROUPS, MAX_SOURCES};
use tally_service::{decode_pairs, read_body, result, ApiError};

async fn params(
    req: &HttpRequest,
    payload: web::Payload,
    st: &Collector,
) -> Result<HashMap<String, String>, ApiError> {
    let mut p: HashMap<String, String> = decode_pairs(req.query_string().as_bytes())?
        .into_iter()
        .collect();
    let body = read_body(payload, &st.shared.limits).await?;
    for (k, v) in decode_pairs(&body)? {
        p.entry(k).or_insert(v);
    }
    Ok(p)
}

fn json_param(p: &HashMap<String, String>, name: &str) -> Result<Option<Value>, ApiError> {
    match p.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => serde_json::from_str(s)
            .map(Some)
            .map_err(|_| ApiError::bad(format!("Error: could not parse {name}"))),
    }
}

/// A JSON array of group ids.
fn group_ids(v: Value) -> Result<Vec<String>, ApiError> {
    serde_json::from_value(v)
        .map_err(|_| ApiError::bad("Error: expected a JSON array of group ids"))
}

/// The app the request's key (`api_key` or `auth_token`) is a master key of; `app_id`,
/// when given, must be that app.
async fn master_app(
    st: &Collector,
    p: &HashMap<String, String>,
    app_id: Option<&str>,
) -> Result<Arc<App>, ApiError> {
    let key = p
        .get("api_key")
        .or_else(|| p.get("auth_token"))
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::bad("Missing parameter \"api_key\" or \"auth_token\""))?;
    let app = apps::by_other_key(&st.shared.pool, key)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("User does not exist".into()))?;
    if !app.allows(key, Role::Master) {
        return Err(ApiError::Unauthorized("User does not have right".into()));
    }
    if let Some(id) = app_id {
        if id != app.id.as_str() {
            return Err(ApiError::Unauthorized("User does not have right".into()));
        }
    }
    Ok(Arc::new(app))
}

/// A field's name, its type check, and whether a new group must have it.
type Rule = (&'static str, fn(&Value) -> bool, bool);

/// The fields Countly checks on a group, by type (`name`, `source_events`,
/// `display_map`, `status` required; `description` optional), and Tally's bounds.
fn check(doc: &Map<String, Value>, whole: bool, max_key: usize) -> Result<(), ApiError> {
    let rules: [Rule; 5] = [
        ("name", Value::is_string, true),
        ("source_events", Value::is_array, true),
        ("display_map", Value::is_object, true),
        ("status", Value::is_boolean, true),
        ("description", Value::is_string, false),
    ];
    for (field, ok, required) in rules {
        match doc.get(field) {
            Some(v) if !ok(v) => {
                return Err(ApiError::bad(format!("Error: Invalid type for {field}")))
            }
            None if required && whole => {
                return Err(ApiError::bad(format!("Error: Missing {field} argument")))
            }
            _ => {}
        }
    }
    if let Some(sources) = doc.get("source_events").and_then(Value::as_array) {
        if sources.len() > MAX_SOURCES
            || sources.iter().any(|s| {
                s.as_str()
                    .is_none_or(|s| s.is_empty() || s.chars().count() > max_key)
            })
        {
            return Err(ApiError::bad(format!(
                "Error: Invalid type for source_events: at most {MAX_SOURCES} event keys"
            )));
        }
    }
    if doc
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.trim().is_empty() || n.chars().count() > max_key)
    {
        return Err(ApiError::bad("Error: Invalid type for name"));
    }
    Ok(())
}

/// `/i/event_groups/create?args={...}`.
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Collector>,
) -> Result<HttpResponse, ApiError> {
    let p = params(&req, payload, &st).await?;
    let Some(Value::Object(mut doc)) = json_param(&p, "args")? else {
        return Err(ApiError::bad("Error: args not found"));
    };
    let app_id = doc
        .get("app_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let app = master_app(
        &st,
        &p,
        app_id.as_deref().or(p.get("app_id").map(String::as_str)),
    )
    .await?;
    check(&doc, true, st.shared.limits.max_key_length)?;
    if event_groups::count(&st.shared.pool, &app.id).await? >= MAX_GROUPS {
        return Err(ApiError::bad(format!(
            "Error: an app has at most {MAX_GROUPS} event groups"
        )));
    }
    doc.insert("_id".into(), event_groups::new_id().into());
    doc.insert("app_id".into(), app.id.as_str().into());
    event_groups::put(&st.shared.pool, &app.id, &[doc]).await?;
    Ok(result("Success"))
}

/// `/i/event_groups/update`: `args={_id, ...}` changes a group's fields;
/// `event_order=[ids]` orders groups; `update_status=[ids]&status=true|false` turns
/// them on or off.
pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Collector>,
) -> Result<HttpResponse, ApiError> {
    let p = params(&req, payload, &st).await?;
    let app = master_app(&st, &p, p.get("app_id").map(String::as_str)).await?;
    let pool = &st.shared.pool;
    let load = |ids: Vec<String>| async {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let g = event_groups::get(pool, &app.id, &id)
                .await?
                .ok_or_else(|| ApiError::bad(format!("Error: event group {id} does not exist")))?;
            out.push(g);
        }
        Ok::<_, ApiError>(out)
    };
    if let Some(args) = json_param(&p, "args")? {
        let Value::Object(changes) = args else {
            return Err(ApiError::bad("Error: args must be an object"));
        };
        check(&changes, false, st.shared.limits.max_key_length)?;
        let id = changes
            .get("_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad("Error: Missing _id argument"))?
            .to_string();
        let mut group = load(vec![id]).await?.remove(0);
        for (k, v) in changes {
            if k != "app_id" {
                group.insert(k, v);
            }
        }
        event_groups::put(pool, &app.id, &[group]).await?;
    } else if let Some(order) = json_param(&p, "event_order")? {
        let mut groups = load(group_ids(order)?).await?;
        for (i, g) in groups.iter_mut().enumerate() {
            g.insert("order".into(), i.into());
        }
        event_groups::put(pool, &app.id, &groups).await?;
    } else if let Some(list) = json_param(&p, "update_status")? {
        let status = json_param(&p, "status")?
            .and_then(|s| s.as_bool())
            .ok_or_else(|| ApiError::bad("Error: status must be true or false"))?;
        let mut groups = load(group_ids(list)?).await?;
        for g in &mut groups {
            g.insert("status".into(), status.into());
        }
        event_groups::put(pool, &app.id, &groups).await?;
    } else {
        return Err(ApiError::bad("Error: args not found"));
    }
    Ok(result("Success"))
}

/// `/i/event_groups/delete?args=["id", ...]`.
pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Collector>,
) -> Result<HttpResponse, ApiError> {
    let p = params(&req, payload, &st).await?;
    let app = master_app(&st, &p, p.get("app_id").map(String::as_str)).await?;
    let ids = match json_param(&p, "args")? {
        Some(v) => group_ids(v)?,
        None => return Err(ApiError::bad("Error: args not found")),
    };
    event_groups::delete(&st.shared.pool, &app.id, &ids).await?;
    Ok(result("Success"))
}
