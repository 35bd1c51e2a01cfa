//! Rakam's collection and schema routes: `/project/collection`, `/project/schema`,
//! `/project/schema/add` and `/project/schema/add/custom`.
//!
//! A collection is an event key, whichever API its events came by. Its schema is the
//! typed fields stored for it ([`tally_model::schema`]), plus what every event has: the
//! user (`_user`, STRING) and the time (`_time`, TIMESTAMP); Countly's `count` (LONG),
//! `sum` and `dur` (DOUBLE); and each segmentation key `/i` sent (STRING) that has no
//! stored type.

use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally_model::apps::App;
use tally_model::keys;
use tally_model::schema::{self, Added, FieldType, Scalar};
use tally_service::auth::{app_for_key, rakam_key, Role};
use tally_service::{json as json_response, read_json, RakamError};

type Res = Result<HttpResponse, RakamError>;

async fn body(payload: web::Payload, st: &Aggregator) -> Result<Value, RakamError> {
    Ok(read_json(payload, &st.shared.limits).await?)
}

/// The app's collections (its event keys, Countly's internal ones aside), sorted.
pub(crate) async fn collections(st: &Aggregator, app: &App) -> Result<Vec<String>, RakamError> {
    let mut pipe = redis::pipe();
    pipe.cmd("SMEMBERS").arg(keys::meta(&app.id, "events"));
    let (mut names,): (Vec<String>,) = st.shared.pool.run(keys::route(&app.id), &pipe).await?;
    names.sort();
    Ok(names)
}

/// `POST /project/collection` (read key): the collection names.
pub async fn list(req: HttpRequest, st: web::Data<Aggregator>) -> Res {
    let app = app_for_key(&st.shared, rakam_key(&req, None, Role::Read), Role::Read).await?;
    Ok(json_response(
        Value::from(collections(&st, &app).await?).to_string(),
    ))
}

/// Every field of each collection ([`schema::collection_fields`]).
async fn fields_of(
    st: &Aggregator,
    app: &App,
    names: &[String],
) -> Result<Vec<BTreeMap<String, FieldType>>, RakamError> {
    Ok(schema::collection_fields(&st.shared.pool, &app.id, names).await?)
}

fn fields_json(fields: &BTreeMap<String, FieldType>) -> Value {
    fields
        .iter()
        .map(|(name, t)| json!({"name": name, "type": t.name(), "unique": false, "descriptiveName": name}))
        .collect()
}

/// `POST /project/schema` (read key), `{"names": [...]}` (all when absent): each
/// collection with its typed fields.
pub async fn get(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let b = body(payload, &st).await?;
    let app = app_for_key(
        &st.shared,
        rakam_key(&req, Some(&b), Role::Read),
        Role::Read,
    )
    .await?;
    let all = collections(&st, &app).await?;
    let names: Vec<String> = match b.get("names") {
        None | Some(Value::Null) => all,
        Some(Value::Array(a)) => {
            let asked: Vec<String> = a
                .iter()
                .map(|n| {
                    n.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| RakamError::bad("\"names\" must be collection names"))
                })
                .collect::<Result<_, _>>()?;
            asked.into_iter().filter(|n| all.contains(n)).collect()
        }
        Some(_) => {
            return Err(RakamError::bad(
                "\"names\" must be an array of collection names",
            ))
        }
    };
    let fields = fields_of(&st, &app, &names).await?;
    let out: Vec<Value> = names
        .iter()
        .zip(&fields)
        .map(|(n, f)| json!({"name": n, "fields": fields_json(f)}))
        .collect();
    Ok(json_response(Value::Array(out).to_string()))
}

/// Adds declared fields to a collection (creating it if it is new, within the app's
/// collection limit) and answers its fields.
async fn add_fields(
    st: &Aggregator,
    app: &App,
    collection: &str,
    fields: BTreeMap<String, FieldType>,
) -> Res {
    declare(st, app, collection, &fields).await?;
    let fields = fields_of(st, app, &[collection.to_string()]).await?;
    Ok(json_response(fields_json(&fields[0]).to_string()))
}

/// Declares a collection's fields (creating the collection, within the project's limits):
/// a field that exists with another type is a 400.
pub(crate) async fn declare(
    st: &Aggregator,
    app: &App,
    collection: &str,
    fields: &BTreeMap<String, FieldType>,
) -> Result<(), RakamError> {
    let limits = &st.shared.limits;
    if collection.is_empty()
        || collection.chars().count() > limits.max_key_length
        || collection.starts_with("[CLY]_")
        || collection.chars().any(char::is_control)
    {
        return Err(RakamError::bad(format!(
            "Invalid collection name {collection:?}"
        )));
    }
    for name in fields.keys() {
        if name.is_empty() || name.chars().count() > limits.max_key_length {
            return Err(RakamError::bad(format!("Invalid field name {name:?}")));
        }
    }
    let events = keys::meta(&app.id, "events");
    let mut pipe = redis::pipe();
    pipe.cmd("SISMEMBER").arg(&events).arg(collection);
    pipe.cmd("SCARD").arg(&events);
    let (known, count): (bool, usize) = st.shared.pool.run(keys::route(&app.id), &pipe).await?;
    if !known && count >= limits.event_keys {
        return Err(RakamError::bad(format!(
            "The project has {} collections, the most it may have",
            limits.event_keys
        )));
    }
    match schema::add(
        &st.shared.pool,
        &app.id,
        collection,
        fields,
        limits.schema_fields,
    )
    .await?
    {
        Added::OverLimit(msg) => return Err(RakamError::bad(msg)),
        Added::Schema(s) => {
            if let Some((name, t)) = fields.iter().find(|(n, t)| s.fields.get(*n) != Some(t)) {
                return Err(RakamError::bad(format!(
                    "Field \"{name}\" exists with type {}, not {}",
                    s.fields.get(name).map(FieldType::name).unwrap_or_default(),
                    t.name()
                )));
            }
        }
    }
    if !known {
        let mut add = redis::pipe();
        add.cmd("SADD").arg(&events).arg(collection);
        let (new,): (u64,) = st.shared.pool.run(keys::route(&app.id), &add).await?;
        // Only the writer that added it records when it was first seen.
        if new == 1 {
            let mut order = redis::pipe();
            order
                .cmd("RPUSH")
                .arg(keys::meta_order(&events))
                .arg(collection)
                .ignore();
            st.shared
                .pool
                .run::<()>(keys::route(&app.id), &order)
                .await?;
        }
    }
    Ok(())
}

async fn master_app(
    req: &HttpRequest,
    b: &Value,
    st: &Aggregator,
) -> Result<std::sync::Arc<App>, RakamError> {
    Ok(app_for_key(
        &st.shared,
        rakam_key(req, Some(b), Role::Master),
        Role::Master,
    )
    .await?)
}

/// `POST /project/schema/add` (master key): `{collection, fields: [{name, type}]}`.
pub async fn add(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let b = body(payload, &st).await?;
    let app = master_app(&req, &b, &st).await?;
    let collection = b["collection"]
        .as_str()
        .ok_or_else(|| RakamError::bad("Missing parameter \"collection\""))?;
    let list = b["fields"]
        .as_array()
        .ok_or_else(|| RakamError::bad("Missing parameter \"fields\": an array of {name, type}"))?;
    let mut fields = BTreeMap::new();
    for f in list {
        let name = f["name"]
            .as_str()
            .ok_or_else(|| RakamError::bad("A field needs a \"name\""))?;
        let t = f["type"].as_str().unwrap_or_default();
        let t = FieldType::parse(t).ok_or_else(|| {
            RakamError::bad(format!(
                "Field \"{name}\": unknown type {t:?} (one of STRING, INTEGER, LONG, DOUBLE, \
                 DECIMAL, BOOLEAN, DATE, TIME, TIMESTAMP, BINARY, or ARRAY_/MAP_ of one)"
            ))
        })?;
        fields.insert(name.to_string(), t);
    }
    add_fields(&st, &app, collection, fields).await
}

/// `POST /project/schema/add/custom` (master key): `{collection, schema_type: "AVRO",
/// schema}`, an Avro record schema (JSON text) whose fields are added.
pub async fn add_custom(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let b = body(payload, &st).await?;
    let app = master_app(&req, &b, &st).await?;
    let collection = b["collection"]
        .as_str()
        .ok_or_else(|| RakamError::bad("Missing parameter \"collection\""))?;
    if b["schema_type"].as_str() != Some("AVRO") {
        return Err(RakamError::bad("\"schema_type\" must be AVRO"));
    }
    let text = b["schema"].as_str().ok_or_else(|| {
        RakamError::bad("Missing parameter \"schema\": an Avro schema as JSON text")
    })?;
    let avro: Value = serde_json::from_str(text)
        .map_err(|e| RakamError::bad(format!("The Avro schema is not JSON: {e}")))?;
    add_fields(&st, &app, collection, avro_fields(&avro)?).await
}

/// The fields of an Avro record schema in Rakam's types. A union with `null` is its other
/// branch; records, enums and fixed types other than these are refused.
fn avro_fields(avro: &Value) -> Result<BTreeMap<String, FieldType>, RakamError> {
    if avro["type"].as_str() != Some("record") {
        return Err(RakamError::bad("The Avro schema must be a record"));
    }
    let fields = avro["fields"]
        .as_array()
        .ok_or_else(|| RakamError::bad("The Avro record has no \"fields\""))?;
    let mut out = BTreeMap::new();
    for f in fields {
        let name = f["name"]
            .as_str()
            .ok_or_else(|| RakamError::bad("An Avro field has no \"name\""))?;
        let t = avro_type(&f["type"]).ok_or_else(|| {
            RakamError::bad(format!(
                "Avro field \"{name}\": type {} is not supported",
                f["type"]
            ))
        })?;
        out.insert(name.to_string(), t);
    }
    Ok(out)
}

fn avro_scalar(t: &Value) -> Option<Scalar> {
    let name = match t {
        Value::String(s) => s.as_str(),
        Value::Object(o) => match (o.get("logicalType").and_then(Value::as_str), o.get("type")) {
            (Some("timestamp-millis" | "timestamp-micros"), _) => return Some(Scalar::Timestamp),
            (Some("date"), _) => return Some(Scalar::Date),
            (Some("time-millis" | "time-micros"), _) => return Some(Scalar::Time),
            (Some("decimal"), _) => return Some(Scalar::Decimal),
            (_, Some(Value::String(s))) => s.as_str(),
            _ => return None,
        },
        _ => return None,
    };
    Some(match name {
        "string" => Scalar::String,
        "int" => Scalar::Integer,
        "long" => Scalar::Long,
        "float" | "double" => Scalar::Double,
        "boolean" => Scalar::Boolean,
        "bytes" => Scalar::Binary,
        _ => return None,
    })
}

fn avro_type(t: &Value) -> Option<FieldType> {
    match t {
        Value::Array(branches) => {
            let mut rest = branches.iter().filter(|b| b.as_str() != Some("null"));
            let only = rest.next()?;
            if rest.next().is_some() {
                return None;
            }
            avro_type(only)
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("array") => avro_scalar(o.get("items")?).map(FieldType::Array),
            Some("map") => avro_scalar(o.get("values")?).map(FieldType::Map),
            _ => avro_scalar(t).map(FieldType::Scalar),
        },
        _ => avro_scalar(t).map(FieldType::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avro_records_map_to_rakam_types() {
        let avro = json!({"type": "record", "name": "purchase", "fields": [
            {"name": "id", "type": "long"},
            {"name": "price", "type": ["null", "double"]},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "attrs", "type": {"type": "map", "values": "int"}},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "ok", "type": "boolean"}
        ]});
        let got: Vec<(String, String)> = avro_fields(&avro)
            .map(|f| f.into_iter().map(|(n, t)| (n, t.name())).collect())
            .unwrap_or_default();
        let want = [
            ("at", "TIMESTAMP"),
            ("attrs", "MAP_INTEGER"),
            ("id", "LONG"),
            ("ok", "BOOLEAN"),
            ("price", "DOUBLE"),
            ("tags", "ARRAY_STRING"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
        assert!(avro_fields(
            &json!({"type": "record", "fields": [{"name": "x", "type": ["int", "string"]}]})
        )
        .is_err());
        assert!(avro_fields(&json!({"type": "enum"})).is_err());
    }
}
