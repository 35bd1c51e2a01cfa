//! Rakam's collection API (`/event/*`) on Tally's one event model.
//!
//! A Rakam collection is an event key and its properties are the event's fields:
//! `_user` is the device (Countly's `device_id`; events without one count under
//! [`ANONYMOUS`]) and `_time` the event time. Each event is read against its collection's
//! typed schema ([`tally_model::schema`]), then becomes a Countly event (count 1, its text,
//! boolean and integer properties as segmentation, within the same caps as `/i`) and goes
//! through the same group commit as `/i`: Countly's counters, the rollups and realtime
//! reports, and the raw stream, which keeps the typed properties whole. A request is one
//! transaction: all of its events are written, or none.
//!
//! Bulk collection is written at once like the rest; `/event/bulk/commit` and
//! `?commit=false` exist because Rakam's clients use them, and committing checks the key
//! and the collections and has nothing left to do (`docs/api/rakam.md`).

use crate::plan::{Ingest, Item};
use crate::request::{parse_timestamp, Event, MetricValues, WriteRequest};
use crate::sanitize;
use crate::Collector;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tally_model::apps::App;
use tally_model::keys;
use tally_model::schema::{self, Added, FieldType, Schema};
use tally_model::texthash::TextMap;
use tally_service::auth::{app_for_key, rakam_key, Role};
use tally_service::{json as json_response, read_body, read_json, ApiError, RakamError};

/// The device id of events that name no `_user`.
pub const ANONYMOUS: &str = "rakam:anonymous";

type Res = Result<HttpResponse, RakamError>;

/// One event as Rakam's clients send it.
struct RakamEvent {
    collection: String,
    props: Map<String, Value>,
}

fn parse_json(body: &[u8]) -> Result<Value, RakamError> {
    serde_json::from_slice(body).map_err(|e| RakamError::bad(format!("Invalid JSON body: {e}")))
}

/// `{collection, properties}`.
fn event_of(v: &Value, at: &str) -> Result<RakamEvent, RakamError> {
    let collection = v
        .get("collection")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| RakamError::bad(format!("{at}: missing parameter \"collection\"")))?;
    let props = match v.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            return Err(RakamError::bad(format!(
                "{at}: \"properties\" must be an object"
            )))
        }
    };
    Ok(RakamEvent {
        collection: collection.to_string(),
        props,
    })
}

/// `{api, events: [{collection, properties}, ...]}`.
fn events_of(body: &Value, max: usize) -> Result<Vec<RakamEvent>, RakamError> {
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| RakamError::bad("Missing parameter \"events\": an array"))?;
    if events.len() > max {
        return Err(RakamError::bad(format!(
            "Too many events: {} in one request, at most {max}",
            events.len()
        )));
    }
    events
        .iter()
        .enumerate()
        .map(|(i, e)| event_of(e, &format!("events[{i}]")))
        .collect()
}

/// A request's JSON body (`null` when empty) and the app its key opens for `role`.
async fn json_for(
    req: &HttpRequest,
    payload: web::Payload,
    st: &Collector,
    role: Role,
) -> Result<(Value, Arc<App>), RakamError> {
    let body = read_json(payload, &st.shared.limits).await?;
    let app = app_for_key(&st.shared, rakam_key(req, Some(&body), role), role).await?;
    Ok((body, app))
}

/// `POST /event/collect` (write key): one event; answers `1`.
pub async fn collect(req: HttpRequest, payload: web::Payload, st: web::Data<Collector>) -> Res {
    let (body, app) = json_for(&req, payload, &st, Role::Write).await?;
    write(&st, &app, vec![event_of(&body, "the event")?]).await?;
    Ok(json_response("1".into()))
}

/// `POST /event/batch` (write key): many events in one transaction; answers `1`.
pub async fn batch(req: HttpRequest, payload: web::Payload, st: web::Data<Collector>) -> Res {
    let (body, app) = json_for(&req, payload, &st, Role::Write).await?;
    let events = events_of(&body, st.shared.limits.max_events_per_request)?;
    write(&st, &app, events).await?;
    Ok(json_response("1".into()))
}

/// `POST /event/copy` (master key): as the batch, for loading existing data; answers `1`.
pub async fn copy(req: HttpRequest, payload: web::Payload, st: web::Data<Collector>) -> Res {
    let (body, app) = json_for(&req, payload, &st, Role::Master).await?;
    let events = events_of(&body, st.shared.limits.max_bulk_events)?;
    write(&st, &app, events).await?;
    Ok(json_response("1".into()))
}

fn success(message: &str) -> HttpResponse {
    json_response(json!({"success": true, "message": message}).to_string())
}

/// `POST /event/bulk` (master key): JSON as the batch, or, with `?collection=` and
/// `?master_key=`, CSV (`text/csv`: a header row of field names) or JSON lines
/// (`application/x-ndjson`: one properties object, or one `{collection, properties}`, a
/// line). `?commit=false` is accepted: Tally makes events visible when it acknowledges
/// them.
pub async fn bulk(req: HttpRequest, payload: web::Payload, st: web::Data<Collector>) -> Res {
    let raw = read_body(payload, &st.shared.limits).await?;
    let query = web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let max = st.shared.limits.max_bulk_events;
    let (key, events) = if content_type.starts_with("application/json") {
        let body = parse_json(&raw)?;
        let key = rakam_key(&req, Some(&body), Role::Master)
            .or(query.get("master_key").map(String::as_str))
            .map(str::to_string);
        (key, events_of(&body, max)?)
    } else {
        let key = rakam_key(&req, None, Role::Master)
            .or(query.get("master_key").map(String::as_str))
            .map(str::to_string);
        let collection = query.get("collection").map(String::as_str);
        let text =
            std::str::from_utf8(&raw).map_err(|_| RakamError::bad("The body is not UTF-8"))?;
        let events = if content_type.starts_with("text/csv") {
            let collection = collection
                .ok_or_else(|| RakamError::bad("CSV needs the \"collection\" query parameter"))?;
            let app = app_for_key(&st.shared, key.as_deref(), Role::Master).await?;
            let known = &schema::load(&st.shared.pool, &app.id, &[collection]).await?[0];
            csv_events(text, collection, known, max)?
        } else if content_type.starts_with("application/x-ndjson")
            || content_type.starts_with("application/jsonl")
            || content_type.starts_with("application/json-lines")
        {
            json_lines(text, collection, max)?
        } else {
            return Err(RakamError::bad(format!(
                "Unsupported Content-Type {content_type:?}: send application/json, text/csv or \
                 application/x-ndjson (Avro is not supported)"
            )));
        };
        (key, events)
    };
    let app = app_for_key(&st.shared, key.as_deref(), Role::Master).await?;
    let n = events.len();
    write(&st, &app, events).await?;
    Ok(success(&format!("{n} events collected")))
}

/// `POST /event/bulk/commit` (master key): `{"collections": [...] | null}`. Bulk events
/// are already visible, so this checks the key and that each named collection exists.
pub async fn bulk_commit(req: HttpRequest, payload: web::Payload, st: web::Data<Collector>) -> Res {
    let (body, app) = json_for(&req, payload, &st, Role::Master).await?;
    let names: Vec<String> = match body.get("collections") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| RakamError::bad("\"collections\" must be names"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(RakamError::bad(
                "\"collections\" must be an array of names or null",
            ))
        }
    };
    if !names.is_empty() {
        let mut pipe = redis::pipe();
        pipe.cmd("SMISMEMBER")
            .arg(keys::meta(&app.id, "events"))
            .arg(&names);
        let (known,): (Vec<bool>,) = st.shared.pool.run(keys::route(&app.id), &pipe).await?;
        if let Some((name, _)) = names.iter().zip(known).find(|(_, k)| !k) {
            return Err(RakamError(ApiError::NotFound(format!(
                "Collection \"{name}\" does not exist"
            ))));
        }
    }
    Ok(success(
        "Bulk events are visible as soon as they are collected",
    ))
}

/// `POST /event/bulk/remote`: refused. Fetching user-supplied URLs would make the
/// collector send requests wherever a key holder points it.
pub async fn bulk_remote() -> Res {
    Err(RakamError::bad(
        "/event/bulk/remote is not supported: Tally's collector makes no outbound requests \
         (fetch the files yourself and send them to /event/bulk)",
    ))
}

/// CSV with a header row: a field of the collection's schema is parsed as its type, a new
/// field is text.
fn csv_events(
    text: &str,
    collection: &str,
    known: &Schema,
    max: usize,
) -> Result<Vec<RakamEvent>, RakamError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| RakamError::bad(format!("CSV: {e}")))?
        .clone();
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| RakamError::bad(format!("CSV row {}: {e}", i + 1)))?;
        if out.len() == max {
            return Err(RakamError::bad(format!(
                "Too many events: at most {max} in one request"
            )));
        }
        let mut props = Map::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            props.insert(name.to_string(), csv_cell(cell, known.fields.get(name)));
        }
        out.push(RakamEvent {
            collection: collection.to_string(),
            props,
        });
    }
    Ok(out)
}

/// A CSV cell as JSON: empty is null; a number or boolean where the field has such a type
/// (the schema then reads it; a cell that is not one is refused there), else text.
fn csv_cell(cell: &str, t: Option<&FieldType>) -> Value {
    use tally_model::schema::Scalar;
    if cell.is_empty() {
        return Value::Null;
    }
    let parsed = match t {
        Some(FieldType::Scalar(Scalar::Long | Scalar::Integer)) => {
            cell.trim().parse::<i64>().ok().map(Value::from)
        }
        Some(FieldType::Scalar(Scalar::Double)) => cell
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Some(FieldType::Scalar(Scalar::Boolean)) => match cell.trim() {
            "true" | "TRUE" | "True" => Some(Value::Bool(true)),
            "false" | "FALSE" | "False" => Some(Value::Bool(false)),
            _ => None,
        },
        Some(FieldType::Scalar(Scalar::Timestamp)) => {
            cell.trim().parse::<i64>().ok().map(Value::from)
        }
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(cell.to_string()))
}

/// One JSON object a line: `{collection, properties}`, or the properties alone with
/// `?collection=`.
fn json_lines(
    text: &str,
    collection: Option<&str>,
    max: usize,
) -> Result<Vec<RakamEvent>, RakamError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if out.len() == max {
            return Err(RakamError::bad(format!(
                "Too many events: at most {max} in one request"
            )));
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| RakamError::bad(format!("Line {}: invalid JSON: {e}", i + 1)))?;
        let event = if v.get("properties").is_some() || v.get("collection").is_some() {
            event_of(&v, &format!("line {}", i + 1))?
        } else {
            let collection = collection.ok_or_else(|| {
                RakamError::bad(format!(
                    "Line {}: no \"collection\", and no collection query parameter",
                    i + 1
                ))
            })?;
            match v {
                Value::Object(props) => RakamEvent {
                    collection: collection.to_string(),
                    props,
                },
                _ => {
                    return Err(RakamError::bad(format!(
                        "Line {}: not a JSON object",
                        i + 1
                    )))
                }
            }
        };
        out.push(event);
    }
    Ok(out)
}

/// Reads every event against its collection's schema (adding the fields first values
/// name), turns each into a Countly event and commits them all in one transaction.
async fn write(st: &Collector, app: &Arc<App>, events: Vec<RakamEvent>) -> Result<(), RakamError> {
    if events.is_empty() {
        return Err(RakamError::bad("No events"));
    }
    let limits = &st.shared.limits;
    let mut names: Vec<String> = events.iter().map(|e| e.collection.clone()).collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        check_collection_name(name, limits.max_key_length)?;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let loaded = schema::load(&st.shared.pool, &app.id, &refs).await?;
    let mut schemas: BTreeMap<String, Schema> = names.iter().cloned().zip(loaded).collect();
    // Checked against the stored schemas and what earlier events of this request add: a
    // refused event writes nothing, not even its new fields.
    let mut adding: BTreeMap<String, BTreeMap<String, FieldType>> = BTreeMap::new();
    let mut read = Vec::with_capacity(events.len());
    for e in &events {
        let s = &schemas[&e.collection];
        if app.strict && s.fields.is_empty() {
            return Err(RakamError::bad(format!(
                "Collection {:?} does not exist: in strict mode collections are created with /project/schema/add",
                e.collection
            )));
        }
        let add = adding.entry(e.collection.clone()).or_default();
        let props = schema::check(&e.collection, s, add, &e.props)
            .map_err(|err| RakamError::bad(err.to_string()))?;
        if app.strict {
            // `_user` and `_time` are every collection's own.
            if let Some(field) = add
                .keys()
                .find(|f| f.as_str() != schema::USER && f.as_str() != schema::TIME)
            {
                return Err(RakamError::bad(format!(
                    "Collection {:?} has no field {field:?}: in strict mode fields are added with /project/schema/add",
                    e.collection
                )));
            }
        }
        read.push(props);
    }
    for (name, fields) in adding.iter().filter(|(_, f)| !f.is_empty()) {
        match schema::add(&st.shared.pool, &app.id, name, fields, limits.schema_fields).await? {
            Added::Schema(s) => {
                schemas.insert(name.clone(), s);
            }
            Added::OverLimit(msg) => return Err(RakamError::bad(msg)),
        }
    }
    let now_ms = st.shared.clock.now_ms();
    let now = now_ms.div_euclid(1000);
    // Events by user, in order of first appearance: each user's events are one request
    // for Countly's counters, as an SDK would send them.
    let mut by_user: Vec<(String, Vec<Event>)> = Vec::new();
    let mut user_at: TextMap<String, usize> = TextMap::default();
    for (e, props) in events.into_iter().zip(read) {
        // A collection that got new fields is read again against its schema as stored:
        // another writer may have added one of them first, with another type.
        let props = if adding.get(&e.collection).is_some_and(|f| !f.is_empty()) {
            schema::check(
                &e.collection,
                &schemas[&e.collection],
                &mut BTreeMap::new(),
                &e.props,
            )
            .map_err(|err| RakamError::bad(err.to_string()))?
        } else {
            props
        };
        let (user, event) = countly_event(&e.collection, props, now, limits)?;
        match user_at.get(&user) {
            Some(&i) => by_user[i].1.push(event),
            None => {
                user_at.insert(user.clone(), by_user.len());
                by_user.push((user, vec![event]));
            }
        }
    }
    crate::routes::limit(st, app, by_user.len())?;
    let items: Vec<Item> = by_user
        .into_iter()
        .map(|(device_id, events)| {
            let time = events.iter().map(|e| e.time).min().unwrap_or(now);
            let req = WriteRequest {
                device_id,
                time,
                begin_session: false,
                end_session: false,
                session_duration: 0,
                metrics: MetricValues::default(),
                country: None,
                city: None,
                events,
                // Rakam events carry no request identity to deduplicate retries by.
                fingerprint: None,
                counted: true,
                old_device_id: None,
                consent: None,
            };
            Item::new(app.clone(), req, now_ms)
        })
        .collect();
    let weight = items.len();
    let unit = Ingest {
        items,
        limits: limits.clone(),
        keep: st.keep,
    };
    st.committer.submit(unit, weight).await?;
    Ok(())
}

/// A collection name is an event key: not empty, within the key length, and not one of
/// Countly's internal `[CLY]_` events.
fn check_collection_name(name: &str, max: usize) -> Result<(), RakamError> {
    if name.chars().count() > max {
        return Err(RakamError::bad(format!(
            "Collection name longer than {max} characters"
        )));
    }
    if name.starts_with("[CLY]_") || name.chars().any(char::is_control) {
        return Err(RakamError::bad(format!("Invalid collection name {name:?}")));
    }
    Ok(())
}

/// The Countly event of a Rakam event (count 1; its text, boolean and integer properties
/// as segmentation, within the caps of `/i`; the typed properties whole for the raw
/// stream), and its user.
fn countly_event(
    collection: &str,
    mut props: Map<String, Value>,
    now: i64,
    limits: &tally_config::Limits,
) -> Result<(String, Event), RakamError> {
    let user = match props.remove(schema::USER) {
        Some(Value::String(u)) if !u.is_empty() => u,
        _ => ANONYMOUS.to_string(),
    };
    if user.chars().count() > limits.max_device_id_length {
        return Err(RakamError::bad(format!(
            "Invalid property \"_user\": longer than {} characters",
            limits.max_device_id_length
        )));
    }
    let time = match props.remove(schema::TIME) {
        // Normalized to milliseconds by the schema.
        Some(Value::Number(ms)) => parse_timestamp(&ms.to_string(), "_time", now, limits)?,
        _ => now,
    };
    let mut segments = Vec::new();
    for (k, v) in &props {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => continue,
        };
        let key = sanitize::segment_key(k);
        if key.is_empty()
            || text.is_empty()
            || key.chars().count() > limits.max_key_length
            || text.chars().count() > limits.max_value_length
        {
            continue;
        }
        segments.push((key, sanitize::segment_value(&text)));
    }
    segments.sort();
    segments.dedup_by(|a, b| a.0 == b.0);
    Ok((
        user,
        Event {
            key: collection.to_string(),
            internal: false,
            count: 1,
            sum: None,
            dur: None,
            segments,
            raw_segments: props,
            time,
        },
    ))
}
