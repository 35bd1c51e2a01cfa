//! Typed schemas of collections, in Rakam's types: the one place that knows what type each
//! field of a collection has (the Rakam API shows it, the collector enforces it, SQL will
//! read it).
//!
//! A collection is an event key. Its fields are created by the first value that names
//! them ([`FieldType::infer`]) or declared (`/project/schema/add`), and never change type
//! afterwards: a later value is read as the field's type ([`FieldType::read`]), coerced
//! where Rakam coerces, refused otherwise. Because a field only ever gets added, a cached
//! schema can only lack fields, never have a wrong one; adding goes through one atomic
//! script ([`add`]) in which the first writer wins, and whoever loses re-reads the types.
//!
//! Values are kept normalized in the raw stream: TIMESTAMP as milliseconds since the
//! epoch, DECIMAL as its decimal text, DATE as `YYYY-MM-DD`, TIME as `HH:MM:SS[.fff]`,
//! BINARY as base64 text.

use crate::error::StoreError;
use crate::keys::{self, AppId};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use tally_redis::Pool;

/// The property that names the event's user (the Countly device id).
pub const USER: &str = "_user";
/// The property that carries the event's time.
pub const TIME: &str = "_time";

/// Rakam's scalar types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scalar {
    String,
    Integer,
    Long,
    Double,
    Decimal,
    Boolean,
    Date,
    Time,
    Timestamp,
    Binary,
}

impl Scalar {
    pub const ALL: [Scalar; 10] = [
        Scalar::String,
        Scalar::Integer,
        Scalar::Long,
        Scalar::Double,
        Scalar::Decimal,
        Scalar::Boolean,
        Scalar::Date,
        Scalar::Time,
        Scalar::Timestamp,
        Scalar::Binary,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scalar::String => "STRING",
            Scalar::Integer => "INTEGER",
            Scalar::Long => "LONG",
            Scalar::Double => "DOUBLE",
            Scalar::Decimal => "DECIMAL",
            Scalar::Boolean => "BOOLEAN",
            Scalar::Date => "DATE",
            Scalar::Time => "TIME",
            Scalar::Timestamp => "TIMESTAMP",
            Scalar::Binary => "BINARY",
        }
    }

    fn parse(s: &str) -> Option<Scalar> {
        Scalar::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The type a JSON scalar is given when it first names a field.
    fn infer(v: &Value) -> Option<Scalar> {
        match v {
            Value::Bool(_) => Some(Scalar::Boolean),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(Scalar::Long),
            Value::Number(_) => Some(Scalar::Double),
            Value::String(_) => Some(Scalar::String),
            _ => None,
        }
    }

    /// `v` as this type, normalized; `Err` says why it cannot be read so.
    fn read(self, v: &Value) -> Result<Value, String> {
        let wrong = || Err(format!("expected {}, got {}", self.name(), shown(v)));
        match (self, v) {
            (Scalar::String, Value::String(_)) => Ok(v.clone()),
            // Rakam keeps a number or a boolean sent to a text field as its text.
            (Scalar::String, Value::Number(_) | Value::Bool(_)) => Ok(Value::String(v.to_string())),
            (Scalar::Long | Scalar::Integer, Value::Number(n)) => {
                let i = n.as_i64().or_else(|| {
                    // A float with no fraction (`2.0`, as some clients send integers).
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                });
                match i {
                    Some(i) if self == Scalar::Long || i32::try_from(i).is_ok() => Ok(i.into()),
                    _ => wrong(),
                }
            }
            (Scalar::Double, Value::Number(n)) => match n.as_f64().and_then(Number::from_f64) {
                Some(f) => Ok(Value::Number(f)),
                None => wrong(),
            },
            (Scalar::Decimal, Value::Number(n)) => Ok(Value::String(n.to_string())),
            (Scalar::Decimal, Value::String(s)) if is_decimal(s) => Ok(v.clone()),
            (Scalar::Boolean, Value::Bool(_)) => Ok(v.clone()),
            (Scalar::Timestamp, _) => timestamp_ms(v).map(Value::from).ok_or_else(|| {
                format!(
                    "expected TIMESTAMP (ISO 8601 or milliseconds), got {}",
                    shown(v)
                )
            }),
            (Scalar::Date, Value::String(s))
                if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() =>
            {
                Ok(v.clone())
            }
            (Scalar::Time, Value::String(s)) if parse_time(s).is_some() => Ok(v.clone()),
            (Scalar::Binary, Value::String(s)) if is_base64(s) => Ok(v.clone()),
            _ => wrong(),
        }
    }
}

fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && s.len() <= 64
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

pub fn parse_time(s: &str) -> Option<chrono::NaiveTime> {
    ["%H:%M", "%H:%M:%S", "%H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveTime::parse_from_str(s, f).ok())
}

/// A timestamp as milliseconds since the epoch: an ISO 8601 date-time (with a zone, or
/// UTC when it has none), a date (its midnight, UTC), or a number of milliseconds
/// (seconds when it has at most 11 digits, as Countly's `timestamp`).
pub fn timestamp_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            let f = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0)?;
            Some(if f >= 1e11 {
                f as i64
            } else {
                (f * 1000.0) as i64
            })
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return Some(t.timestamp_millis());
            }
            for f in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ] {
                if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
                    return Some(t.and_utc().timestamp_millis());
                }
            }
            let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
        }
        _ => None,
    }
}

/// A field's type: a scalar, an array of one, or a map from text to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldType {
    Scalar(Scalar),
    Array(Scalar),
    Map(Scalar),
}

impl FieldType {
    /// Rakam's name of the type (`STRING`, `ARRAY_LONG`, `MAP_DOUBLE`, ...).
    pub fn name(&self) -> String {
        match self {
            FieldType::Scalar(s) => s.name().to_string(),
            FieldType::Array(s) => format!("ARRAY_{}", s.name()),
            FieldType::Map(s) => format!("MAP_{}", s.name()),
        }
    }

    pub fn parse(s: &str) -> Option<FieldType> {
        if let Some(inner) = s.strip_prefix("ARRAY_") {
            return Scalar::parse(inner).map(FieldType::Array);
        }
        if let Some(inner) = s.strip_prefix("MAP_") {
            return Scalar::parse(inner).map(FieldType::Map);
        }
        Scalar::parse(s).map(FieldType::Scalar)
    }

    /// Every type name Tally knows, for `/admin/types`.
    pub fn all() -> Vec<FieldType> {
        let mut all: Vec<FieldType> = Scalar::ALL.into_iter().map(FieldType::Scalar).collect();
        all.extend(Scalar::ALL.into_iter().map(FieldType::Array));
        all.extend(Scalar::ALL.into_iter().map(FieldType::Map));
        all
    }

    /// The type a first value gives its field; `None` for a null, which names no type. An
    /// empty array or object is taken as of text.
    pub fn infer(v: &Value) -> Result<Option<FieldType>, String> {
        fn inner<'a>(mut items: impl Iterator<Item = &'a Value>) -> Result<Scalar, String> {
            match items.find(|x| !x.is_null()) {
                None => Ok(Scalar::String),
                Some(x) => Scalar::infer(x)
                    .ok_or_else(|| "nested arrays and objects are not supported".to_string()),
            }
        }
        Ok(match v {
            Value::Null => None,
            Value::Array(a) => Some(FieldType::Array(inner(a.iter())?)),
            Value::Object(o) => Some(FieldType::Map(inner(o.values())?)),
            other => Scalar::infer(other).map(FieldType::Scalar),
        })
    }

    /// `v` read as this type, normalized (see the module's doc); a null stays a null.
    pub fn read(&self, v: &Value) -> Result<Value, String> {
        match (self, v) {
            (_, Value::Null) => Ok(Value::Null),
            (FieldType::Scalar(s), _) => s.read(v),
            (FieldType::Array(s), Value::Array(items)) => items
                .iter()
                .map(|x| {
                    if x.is_null() {
                        Ok(Value::Null)
                    } else {
                        s.read(x)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
                .map_err(|e| format!("an element: {e}")),
            (FieldType::Map(s), Value::Object(o)) => o
                .iter()
                .map(|(k, x)| {
                    let x = if x.is_null() {
                        Ok(Value::Null)
                    } else {
                        s.read(x)
                    };
                    x.map(|x| (k.clone(), x))
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object)
                .map_err(|e| format!("a value: {e}")),
            _ => Err(format!("expected {}, got {}", self.name(), shown(v))),
        }
    }
}

/// A collection's fields, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    pub fields: BTreeMap<String, FieldType>,
}

impl Schema {
    /// From a schema hash's (name, type) pairs; a type Tally does not know (written by
    /// something else) is left out.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Schema {
        Schema {
            fields: pairs
                .into_iter()
                .filter_map(|(n, t)| Some((n.to_string(), FieldType::parse(t)?)))
                .collect(),
        }
    }
}

/// Why a property was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Invalid value for field \"{field}\" of collection \"{collection}\": {reason}")]
pub struct FieldError {
    pub collection: String,
    pub field: String,
    pub reason: String,
}

/// Reads an event's properties against the collection's `schema` and the fields other
/// events of the same request are adding (`adding`, which gains this event's new
/// fields): the normalized properties, or the first property that cannot be read.
pub fn check(
    collection: &str,
    schema: &Schema,
    adding: &mut BTreeMap<String, FieldType>,
    props: &Map<String, Value>,
) -> Result<Map<String, Value>, FieldError> {
    let mut out = Map::new();
    for (name, v) in props {
        let err = |reason: String| FieldError {
            collection: collection.to_string(),
            field: name.clone(),
            reason,
        };
        let known = schema
            .fields
            .get(name)
            .or_else(|| adding.get(name))
            .copied();
        let t = match known {
            Some(t) => t,
            None => {
                let inferred = match name.as_str() {
                    USER if !v.is_null() => Some(FieldType::Scalar(Scalar::String)),
                    TIME if !v.is_null() => Some(FieldType::Scalar(Scalar::Timestamp)),
                    _ => FieldType::infer(v).map_err(err)?,
                };
                match inferred {
                    Some(t) => {
                        adding.insert(name.clone(), t);
                        t
                    }
                    // A null names no type: kept as a null, the field waits for a value.
                    None => {
                        out.insert(name.clone(), Value::Null);
                        continue;
                    }
                }
            }
        };
        out.insert(name.clone(), t.read(v).map_err(err)?);
    }
    Ok(out)
}

/// The schemas of `collections` of an app, in one round trip.
pub async fn load(
    pool: &Pool,
    app: &AppId,
    collections: &[&str],
) -> Result<Vec<Schema>, StoreError> {
    if collections.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for c in collections {
        pipe.cmd("HGETALL").arg(keys::schema(app, c));
    }
    let replies = pool.run_reads(keys::route(app), &pipe).await?;
    Ok((0..collections.len())
        .map(|i| Schema::from_pairs(replies.pairs(i)))
        .collect())
}

/// The fields every event has, whatever API it came in by.
pub fn builtin() -> BTreeMap<String, FieldType> {
    [
        (USER, Scalar::String),
        (TIME, Scalar::Timestamp),
        ("count", Scalar::Long),
        ("sum", Scalar::Double),
        ("dur", Scalar::Double),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), FieldType::Scalar(t)))
    .collect()
}

/// Every field of each of `names` (collections of an app): the built-in ones, `/i`'s
/// segmentation keys (text), and the stored typed fields, which win over both.
pub async fn collection_fields(
    pool: &Pool,
    app: &AppId,
    names: &[String],
) -> Result<Vec<BTreeMap<String, FieldType>>, StoreError> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let stored = load(pool, app, &refs).await?;
    let mut pipe = redis::pipe();
    for name in names {
        pipe.cmd("SMEMBERS").arg(keys::event_segments(app, name));
    }
    let segments: Vec<Vec<String>> = if names.is_empty() {
        Vec::new()
    } else {
        pool.run(keys::route(app), &pipe).await?
    };
    Ok(stored
        .into_iter()
        .zip(segments)
        .map(|(s, segs)| {
            let mut fields = builtin();
            for seg in segs {
                fields.insert(seg, FieldType::Scalar(Scalar::String));
            }
            fields.extend(s.fields);
            fields
        })
        .collect())
}

const ADD_SCRIPT: &str = include_str!("schema_add.lua");

/// What [`add`] came to.
pub enum Added {
    /// The collection's whole schema after adding (the types that won for fields that
    /// another writer added first).
    Schema(Schema),
    /// Adding would take the collection past `max` fields: nothing was added.
    OverLimit(String),
}

/// Adds `fields` to a collection's schema, all or none, in one atomic step; a field that
/// exists keeps its type.
pub async fn add(
    pool: &Pool,
    app: &AppId,
    collection: &str,
    fields: &BTreeMap<String, FieldType>,
    max: usize,
) -> Result<Added, StoreError> {
    let what = format!("Collection \"{collection}\"");
    add_at(
        pool,
        app,
        &keys::schema(app, collection),
        &what,
        fields,
        max,
    )
    .await
}

/// The typed schema of the app's user profiles.
pub async fn load_profiles(pool: &Pool, app: &AppId) -> Result<Schema, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL").arg(keys::profile_schema(app));
    let replies = pool.run_reads(keys::route(app), &pipe).await?;
    Ok(Schema::from_pairs(replies.pairs(0)))
}

/// [`add`] for the schema of the app's user profiles.
pub async fn add_to_profiles(
    pool: &Pool,
    app: &AppId,
    fields: &BTreeMap<String, FieldType>,
    max: usize,
) -> Result<Added, StoreError> {
    add_at(
        pool,
        app,
        &keys::profile_schema(app),
        "A user profile",
        fields,
        max,
    )
    .await
}

async fn add_at(
    pool: &Pool,
    app: &AppId,
    key: &str,
    what: &str,
    fields: &BTreeMap<String, FieldType>,
    max: usize,
) -> Result<Added, StoreError> {
    let mut pipe = redis::pipe();
    let cmd = pipe.cmd("EVAL").arg(ADD_SCRIPT).arg(1).arg(key).arg(max);
    for (name, t) in fields {
        cmd.arg(name).arg(t.name());
    }
    match pool.run_reads(keys::route(app), &pipe).await {
        Ok(replies) => Ok(Added::Schema(Schema::from_pairs(replies.pairs(0)))),
        Err(e) if e.code() == Some("FIELDLIMIT") => Ok(Added::OverLimit(format!(
            "{what} would have more than {max} fields"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> FieldType {
        FieldType::parse(s).unwrap_or(FieldType::Scalar(Scalar::Binary))
    }

    #[test]
    fn names_round_trip() {
        for ft in FieldType::all() {
            assert_eq!(FieldType::parse(&ft.name()), Some(ft));
        }
        assert_eq!(FieldType::parse("ARRAY_ARRAY_STRING"), None);
        assert_eq!(FieldType::parse("string"), None);
    }

    #[test]
    fn first_values_give_types() {
        let infer = |v: Value| FieldType::infer(&v).ok().flatten().map(|t| t.name());
        assert_eq!(infer(json!("x")).as_deref(), Some("STRING"));
        assert_eq!(infer(json!(3)).as_deref(), Some("LONG"));
        assert_eq!(infer(json!(5.0)).as_deref(), Some("DOUBLE"));
        assert_eq!(infer(json!(true)).as_deref(), Some("BOOLEAN"));
        assert_eq!(infer(json!(["a", "b"])).as_deref(), Some("ARRAY_STRING"));
        assert_eq!(infer(json!([])).as_deref(), Some("ARRAY_STRING"));
        assert_eq!(infer(json!([null, 2])).as_deref(), Some("ARRAY_LONG"));
        assert_eq!(infer(json!({"a": 1.5})).as_deref(), Some("MAP_DOUBLE"));
        assert_eq!(infer(json!(null)), None);
        assert!(FieldType::infer(&json!([[1]])).is_err());
    }

    #[test]
    fn values_are_read_as_their_field_type() {
        let ok = |ty: &str, v: Value| t(ty).read(&v).ok();
        assert_eq!(ok("LONG", json!(2.0)), Some(json!(2)));
        assert_eq!(ok("LONG", json!(2.5)), None);
        assert_eq!(ok("LONG", json!("2")), None);
        assert_eq!(ok("INTEGER", json!(3_000_000_000_i64)), None);
        assert_eq!(ok("DOUBLE", json!(2)), Some(json!(2.0)));
        assert_eq!(ok("STRING", json!(5)), Some(json!("5")));
        assert_eq!(ok("STRING", json!(true)), Some(json!("true")));
        assert_eq!(ok("STRING", json!([1])), None);
        assert_eq!(ok("BOOLEAN", json!("true")), None);
        assert_eq!(
            ok("TIMESTAMP", json!("2026-12-07T00:46:27.120Z")),
            Some(json!(1_796_604_387_120_i64))
        );
        assert_eq!(
            ok("TIMESTAMP", json!(1_797_641_187_i64)),
            Some(json!(1_797_641_187_000_i64))
        );
        assert_eq!(ok("DATE", json!("2026-12-07")), Some(json!("2026-12-07")));
        assert_eq!(ok("DATE", json!("2026-13-07")), None);
        assert_eq!(ok("TIME", json!("13:05:01.5")), Some(json!("13:05:01.5")));
        assert_eq!(ok("DECIMAL", json!(12.5)), Some(json!("12.5")));
        assert_eq!(ok("DECIMAL", json!("-0.10")), Some(json!("-0.10")));
        assert_eq!(ok("DECIMAL", json!("1e5")), None);
        assert_eq!(ok("BINARY", json!("aGVsbG8=")), Some(json!("aGVsbG8=")));
        assert_eq!(
            ok("ARRAY_LONG", json!([1, null, 2.0])),
            Some(json!([1, null, 2]))
        );
        assert_eq!(ok("ARRAY_LONG", json!([1, "x"])), None);
        assert_eq!(ok("MAP_STRING", json!({"a": 1})), Some(json!({"a": "1"})));
        assert_eq!(ok("LONG", json!(null)), Some(json!(null)));
    }

    #[test]
    fn a_request_checks_later_events_against_its_own_new_fields() {
        let schema = Schema::from_pairs([("price", "DOUBLE")]);
        let mut adding = BTreeMap::new();
        let props = |v: Value| v.as_object().cloned().unwrap_or_default();
        let first = check(
            "buy",
            &schema,
            &mut adding,
            &props(json!({"price": 3, "n": 1, "_user": 7, "_time": "2026-01-01", "z": null})),
        );
        assert_eq!(
            first.ok().map(Value::Object),
            Some(
                json!({"price": 3.0, "n": 1, "_user": "7", "_time": 1_767_225_600_000_i64, "z": null})
            )
        );
        assert_eq!(adding.get("n"), Some(&t("LONG")));
        assert_eq!(adding.get("_time"), Some(&t("TIMESTAMP")));
        assert!(!adding.contains_key("z"));
        let second = check("buy", &schema, &mut adding, &props(json!({"n": "x"})));
        assert_eq!(
            second.err().map(|e| e.to_string()),
            Some(
                "Invalid value for field \"n\" of collection \"buy\": expected LONG, got \"x\""
                    .into()
            )
        );
    }
}
