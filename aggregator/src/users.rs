//! Rakam's users API (`/user/*`) on the one profile store ([`tally_model::profiles`]).
//!
//! A user is a device: `id` is the Countly device id, so a profile belongs to the same
//! user whose events carry `_user` (or whose SDK sends that `device_id`). Property values
//! are typed by the app's profile schema, as collections' fields are: inferred from the
//! first value, then enforced with the same coercions, and a refused value writes
//! nothing. The operations of one request on one user are applied in order and
//! atomically; bounded by `TALLY_USER_PROPERTY_LIMIT` and `TALLY_USER_PROFILE_BYTES`.

use crate::filter::{self, Expr};
use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tally_model::apps::App;
use tally_model::keys;
use tally_model::profiles::{self, Applied, Bounds, Op};
use tally_model::schema::{self, FieldType};
use tally_service::auth::{app_for_key, rakam_key, Role};
use tally_service::{json as json_response, read_json, ApiError, RakamError};

type Res = Result<HttpResponse, RakamError>;

async fn body(payload: web::Payload, st: &Aggregator) -> Result<Value, RakamError> {
    Ok(read_json(payload, &st.shared.limits).await?)
}

async fn app(
    req: &HttpRequest,
    b: &Value,
    st: &Aggregator,
    role: Role,
) -> Result<Arc<App>, RakamError> {
    Ok(app_for_key(&st.shared, rakam_key(req, Some(b), role), role).await?)
}

/// A user id as Rakam sends it: text or a number (kept as its text).
fn user_id(v: &Value, name: &str, max: usize) -> Result<String, RakamError> {
    let id = match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(RakamError::bad(format!(
                "Missing parameter \"{name}\": a user id (text or number)"
            )))
        }
    };
    if id.chars().count() > max {
        return Err(RakamError::bad(format!(
            "Invalid parameter \"{name}\": longer than {max} characters"
        )));
    }
    Ok(id)
}

fn props<'a>(v: &'a Value, name: &str) -> Result<Option<&'a Map<String, Value>>, RakamError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(o) => Ok(Some(o)),
        _ => Err(RakamError::bad(format!("\"{name}\" must be an object"))),
    }
}

fn names(v: &Value, name: &str) -> Result<Vec<String>, RakamError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|n| {
                n.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| RakamError::bad(format!("\"{name}\" must be property names")))
            })
            .collect(),
        _ => Err(RakamError::bad(format!(
            "\"{name}\" must be an array of property names"
        ))),
    }
}

/// One user's operations from Rakam's `BatchUserOperations` fields.
fn batch_ops(d: &Value) -> Result<Vec<Op>, RakamError> {
    let mut ops = Vec::new();
    if let Some(p) = props(&d["set_properties"], "set_properties")? {
        ops.extend(p.iter().map(|(k, v)| Op::Set(k.clone(), v.clone())));
    }
    if let Some(p) = props(&d["set_properties_once"], "set_properties_once")? {
        ops.extend(p.iter().map(|(k, v)| Op::SetOnce(k.clone(), v.clone())));
    }
    if let Some(p) = props(&d["increment_properties"], "increment_properties")? {
        for (k, v) in p {
            let by = v.as_f64().ok_or_else(|| {
                RakamError::bad(format!("increment_properties.{k} must be a number"))
            })?;
            ops.push(Op::Incr(k.clone(), by));
        }
    }
    for n in names(&d["unset_properties"], "unset_properties")? {
        ops.push(Op::Unset(n));
    }
    Ok(ops)
}

/// Checks every operation's value against the profile schema (adding the fields first
/// values name: [`profiles::prepare`]), then applies each user's operations atomically. All or nothing for
/// the values' types; a user over a profile limit is a 400 naming it (the others of a
/// batch are applied: each user is its own transaction, as Rakam's are).
async fn update(
    st: &Aggregator,
    app: &App,
    updates: Vec<(String, Vec<Op>)>,
) -> Result<(), RakamError> {
    let limits = &st.shared.limits;
    let checked = profiles::prepare(
        &st.shared.pool,
        &app.id,
        updates,
        limits.max_key_length,
        limits.user_properties,
    )
    .await?
    .map_err(RakamError::bad)?;
    let bounds = Bounds {
        properties: limits.user_properties,
        bytes: limits.user_profile_bytes,
    };
    let now = st.shared.clock.now_ms();
    let applied = profiles::apply(&st.shared.pool, &app.id, &checked, bounds, now).await?;
    if let Some(((user, _), Applied::Refused(why))) = checked
        .iter()
        .zip(&applied)
        .find(|(_, a)| **a != Applied::Done)
    {
        return Err(RakamError::bad(format!("User \"{user}\": {why}")));
    }
    Ok(())
}

fn one() -> HttpResponse {
    json_response("1".into())
}

fn success(message: &str) -> HttpResponse {
    json_response(json!({"success": true, "message": message}).to_string())
}

async fn set_with(req: HttpRequest, payload: web::Payload, st: &Aggregator, once: bool) -> Res {
    let b = body(payload, st).await?;
    let app = app(&req, &b, st, Role::Write).await?;
    let user = user_id(&b["id"], "id", st.shared.limits.max_device_id_length)?;
    let p = props(&b["properties"], "properties")?
        .cloned()
        .unwrap_or_default();
    let ops = p
        .into_iter()
        .map(|(k, v)| {
            if once {
                Op::SetOnce(k, v)
            } else {
                Op::Set(k, v)
            }
        })
        .collect();
    update(st, &app, vec![(user, ops)]).await?;
    Ok(one())
}

/// `POST /user/set_properties` and `POST /user/create` (write key): `{id, properties}`;
/// answers `1`.
pub async fn set_properties(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Res {
    set_with(req, payload, &st, false).await
}

/// `POST /user/set_properties_once` (write key): sets only what the profile lacks.
pub async fn set_properties_once(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Res {
    set_with(req, payload, &st, true).await
}

/// `POST /user/batch/create` (write key): `{users: [{id, properties}]}`; answers the ids.
pub async fn batch_create(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Write).await?;
    let users = b["users"]
        .as_array()
        .ok_or_else(|| RakamError::bad("Missing parameter \"users\": an array"))?;
    check_count(users.len(), &st)?;
    let mut ids = Vec::new();
    let mut updates = Vec::new();
    for u in users {
        let id = user_id(&u["id"], "id", st.shared.limits.max_device_id_length)?;
        let p = props(&u["properties"], "properties")?
            .cloned()
            .unwrap_or_default();
        ids.push(u["id"].clone());
        updates.push((id, p.into_iter().map(|(k, v)| Op::Set(k, v)).collect()));
    }
    update(&st, &app, updates).await?;
    Ok(json_response(Value::Array(ids).to_string()))
}

fn check_count(n: usize, st: &Aggregator) -> Result<(), RakamError> {
    let max = st.shared.limits.max_events_per_request;
    if n > max {
        return Err(RakamError::bad(format!(
            "Too many users: {n} in one request, at most {max}"
        )));
    }
    Ok(())
}

/// `POST /user/increment_property` (write or master key): `{id, property, value}`.
pub async fn increment_property(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Write).await?;
    let user = user_id(&b["id"], "id", st.shared.limits.max_device_id_length)?;
    let property = b["property"]
        .as_str()
        .ok_or_else(|| RakamError::bad("Missing parameter \"property\""))?;
    let by = b["value"]
        .as_f64()
        .ok_or_else(|| RakamError::bad("Missing parameter \"value\": a number"))?;
    update(
        &st,
        &app,
        vec![(user, vec![Op::Incr(property.to_string(), by)])],
    )
    .await?;
    Ok(success("Incremented"))
}

/// `POST /user/unset_properties` (write key): `{id, properties: [names]}`.
pub async fn unset_properties(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Write).await?;
    let user = user_id(&b["id"], "id", st.shared.limits.max_device_id_length)?;
    let ops = names(&b["properties"], "properties")?
        .into_iter()
        .map(Op::Unset)
        .collect();
    update(&st, &app, vec![(user, ops)]).await?;
    Ok(success("Properties unset"))
}

/// `POST /user/batch` (write key): `{id, data: [operations]}`, one user's operations in
/// order; answers `1`.
pub async fn batch(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Write).await?;
    let user = user_id(&b["id"], "id", st.shared.limits.max_device_id_length)?;
    let data = b["data"]
        .as_array()
        .ok_or_else(|| RakamError::bad("Missing parameter \"data\": an array of operations"))?;
    check_count(data.len(), &st)?;
    let mut ops = Vec::new();
    for d in data {
        ops.extend(batch_ops(d)?);
    }
    update(&st, &app, vec![(user, ops)]).await?;
    Ok(one())
}

/// `POST /user/batch_operations` (master key, in the body as rakam 0.1.6 sends it, or in
/// the header): `{data: [{id, set_properties, ...}]}`; each user's operations in order
/// and atomically; answers `1`.
pub async fn batch_operations(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Master).await?;
    let data = b["data"].as_array().ok_or_else(|| {
        RakamError::bad("Missing parameter \"data\": an array of user operations")
    })?;
    check_count(data.len(), &st)?;
    let mut updates: Vec<(String, Vec<Op>)> = Vec::new();
    for d in data {
        let user = user_id(&d["id"], "id", st.shared.limits.max_device_id_length)?;
        let ops = batch_ops(d)?;
        match updates.iter_mut().find(|(u, _)| *u == user) {
            Some((_, list)) => list.extend(ops),
            None => updates.push((user, ops)),
        }
    }
    update(&st, &app, updates).await?;
    Ok(one())
}

/// `POST /user/get` (read key): `{user}` -> `{id, properties}`; 404 without a profile.
pub async fn get(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Read).await?;
    let user = user_id(&b["user"], "user", st.shared.limits.max_device_id_length)?;
    let found = profiles::get(&st.shared.pool, &app.id, std::slice::from_ref(&user)).await?;
    match found.into_iter().next().flatten() {
        Some(p) => Ok(json_response(
            json!({"id": user, "properties": p}).to_string(),
        )),
        None => Err(RakamError(ApiError::NotFound(format!(
            "User \"{user}\" has no profile"
        )))),
    }
}

/// `GET /user/metadata` (read key): the profile schema.
pub async fn metadata(req: HttpRequest, st: web::Data<Aggregator>) -> Res {
    let app = app(&req, &Value::Null, &st, Role::Read).await?;
    let s = schema::load_profiles(&st.shared.pool, &app.id).await?;
    let mut columns = vec![json!({"name": "id", "type": "STRING", "unique": true})];
    columns.extend(
        s.fields
            .iter()
            .map(|(n, t)| json!({"name": n, "type": t.name(), "unique": false})),
    );
    Ok(json_response(
        json!({"columns": columns, "identifierColumn": "id"}).to_string(),
    ))
}

/// `POST /user/get_events` (read key): `{user, limit?, offset?}`: the user's events,
/// newest first, from the raw stream (the last `TALLY_STREAM_MAX_AGE_SECS`); `offset`
/// (an ISO date-time) pages back to events before it. Reads at most
/// `TALLY_BUCKET_MAX_SCAN` stream entries.
pub async fn get_events(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Read).await?;
    let user = user_id(&b["user"], "user", st.shared.limits.max_device_id_length)?;
    let limit = match &b["limit"] {
        Value::Null => 100,
        v => v
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| RakamError::bad("\"limit\" must be a positive whole number"))?
            as usize,
    }
    .min(st.max_limit);
    let before = match &b["offset"] {
        Value::Null => None,
        v => Some(
            schema::timestamp_ms(v)
                .ok_or_else(|| RakamError::bad("\"offset\" must be an ISO 8601 date-time"))?,
        ),
    };
    let events = user_events(&st, &app, &user, before, limit).await?;
    Ok(json_response(Value::Array(events).to_string()))
}

/// A user's events before `before` (ms), newest first, as `{collection, properties}`:
/// the typed properties, `_user`, `_time`, and Countly's `count`, `sum`, `dur`.
async fn user_events(
    st: &Aggregator,
    app: &App,
    user: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Value>, RakamError> {
    let mut out = Vec::new();
    crate::bucket::walk_back(st, &app.id, |e| {
        if e.kind == "e" && e.device == user && before.is_none_or(|b| e.ts < b) {
            let mut properties = e.segmentation;
            properties.insert(schema::USER.into(), Value::String(e.device));
            properties.insert(schema::TIME.into(), Value::from(e.ts));
            properties.insert("count".into(), Value::from(e.count));
            properties.insert("sum".into(), e.sum.map_or(Value::Null, Value::from));
            properties.insert("dur".into(), e.dur.map_or(Value::Null, Value::from));
            out.push(json!({"collection": e.key, "properties": properties}));
        }
        out.len() < limit
    })
    .await?;
    Ok(out)
}

/// `POST /user/search` (read key): `{filter?, segment?, sorting?: {column, order}, columns?,
/// limit?, offset?}` over profiles, answered as a `QueryResult`. The filter is the realtime
/// reports' language over properties (and `id`). At most `TALLY_USER_SEARCH_SCAN`
/// profiles are read: past that, a 400 asks for a narrower question.
pub async fn search(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Read).await?;
    let mut text = b["filter"].as_str().unwrap_or("").trim().to_string();
    if let Some(segment) = b["segment"].as_str() {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(keys::profile_segments(&app.id))
            .arg(segment);
        let (def,): (Option<String>,) = st.shared.pool.run(keys::route(&app.id), &pipe).await?;
        let def: Value = def
            .and_then(|d| serde_json::from_str(&d).ok())
            .ok_or_else(|| RakamError(ApiError::NotFound(format!("No segment \"{segment}\""))))?;
        let seg = def["filter_expression"].as_str().unwrap_or("").trim();
        if !seg.is_empty() {
            text = if text.is_empty() {
                seg.to_string()
            } else {
                format!("({seg}) and ({text})")
            };
        }
    }
    let filter: Option<Expr> = if text.is_empty() {
        None
    } else {
        Some(filter::parse(&text).map_err(|e| RakamError::bad(format!("Invalid filter: {e}")))?)
    };
    let limit = b["limit"]
        .as_u64()
        .unwrap_or(100)
        .clamp(1, st.max_limit as u64) as usize;
    let offset: usize = match &b["offset"] {
        Value::Null => 0,
        Value::String(s) => s
            .parse()
            .map_err(|_| RakamError::bad("\"offset\" must be a whole number"))?,
        v => v
            .as_u64()
            .ok_or_else(|| RakamError::bad("\"offset\" must be a whole number"))?
            as usize,
    };
    let sort = match &b["sorting"] {
        Value::Null => None,
        s => Some((
            s["column"]
                .as_str()
                .ok_or_else(|| RakamError::bad("\"sorting\" needs a \"column\""))?
                .to_string(),
            match s["order"]
                .as_str()
                .unwrap_or("ASC")
                .to_ascii_uppercase()
                .as_str()
            {
                "ASC" => false,
                "DESC" => true,
                other => {
                    return Err(RakamError::bad(format!(
                        "\"sorting.order\" must be ASC or DESC, not {other}"
                    )))
                }
            },
        )),
    };
    let max_scan = st.shared.limits.user_search_scan;
    let mut found: Vec<(String, Map<String, Value>)> = Vec::new();
    let (mut cursor, mut scanned) = (0u64, 0usize);
    loop {
        let (next, ids) = profiles::page(&st.shared.pool, &app.id, cursor, 500).await?;
        scanned += ids.len();
        if scanned > max_scan {
            return Err(RakamError::bad(format!(
                "The search would read more than {max_scan} profiles (TALLY_USER_SEARCH_SCAN); \
                 use /query/execute over the users table, or raise the limit"
            )));
        }
        let got = profiles::get(&st.shared.pool, &app.id, &ids).await?;
        for (id, p) in ids.into_iter().zip(got) {
            let Some(p) = p else { continue };
            let keep = filter.as_ref().is_none_or(|f| {
                f.eval(&|name: &str| {
                    if name == "id" {
                        return Some(id.clone());
                    }
                    match p.get(name)? {
                        Value::String(s) => Some(s.clone()),
                        Value::Null => None,
                        other => Some(other.to_string()),
                    }
                })
            });
            if keep {
                found.push((id, p));
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    match &sort {
        Some((col, desc)) => found.sort_by(|a, b| {
            let key = |x: &(String, Map<String, Value>)| {
                if col == "id" {
                    Some(Value::String(x.0.clone()))
                } else {
                    x.1.get(col).cloned()
                }
            };
            let o = compare(key(a).as_ref(), key(b).as_ref());
            if *desc {
                o.reverse()
            } else {
                o
            }
        }),
        None => found.sort_by(|a, b| a.0.cmp(&b.0)),
    }
    let known = schema::load_profiles(&st.shared.pool, &app.id).await?;
    let columns: Vec<String> = match names(&b["columns"], "columns")? {
        c if c.is_empty() => std::iter::once("id".to_string())
            .chain(known.fields.keys().cloned())
            .collect(),
        c => c,
    };
    let metadata: Vec<Value> = columns
        .iter()
        .map(|c| {
            let t = if c == "id" {
                "STRING".to_string()
            } else {
                known
                    .fields
                    .get(c)
                    .map_or("STRING".to_string(), FieldType::name)
            };
            json!({"name": c, "type": t})
        })
        .collect();
    let rows: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(id, p)| {
            Value::Array(
                columns
                    .iter()
                    .map(|c| {
                        if c == "id" {
                            Value::String(id.clone())
                        } else {
                            p.get(c).cloned().unwrap_or(Value::Null)
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    Ok(json_response(
        json!({"metadata": metadata, "result": rows, "properties": {"total": found.len(), "scanned": scanned}, "failed": false})
            .to_string(),
    ))
}

/// Numbers as numbers, everything else as its text; a missing value sorts first.
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, _) => std::cmp::Ordering::Less,
        (_, None) => std::cmp::Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

/// `POST /user/create_segment` (master key): `{name, table_name, filter_expression}`, a
/// named profile filter; `/user/search` takes it as `{"segment": table_name}`.
pub async fn create_segment(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Res {
    let b = body(payload, &st).await?;
    let app = app(&req, &b, &st, Role::Master).await?;
    let table = b["table_name"]
        .as_str()
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 64
                && t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        })
        .ok_or_else(|| RakamError::bad("\"table_name\": 1 to 64 letters, digits or _"))?;
    let name = b["name"].as_str().unwrap_or(table);
    let expr = b["filter_expression"].as_str().unwrap_or("");
    if !expr.trim().is_empty() {
        filter::parse(expr)
            .map_err(|e| RakamError::bad(format!("Invalid filter_expression: {e}")))?;
    }
    if b.get("event_filters")
        .is_some_and(|f| !f.is_null() && f.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(RakamError::bad(
            "event_filters are not supported: segments filter profile properties",
        ));
    }
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(keys::profile_segments(&app.id))
        .arg(table)
        .arg(json!({"name": name, "filter_expression": expr}).to_string());
    st.shared
        .pool
        .run::<()>(keys::route(&app.id), &pipe)
        .await?;
    Ok(success("Segment created"))
}
