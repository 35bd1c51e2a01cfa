//! Events as Arrow rows: a collection's typed schema as Arrow columns, and stream entries
//! as record batches of those columns. The archive writes these batches to Parquet and
//! SQL reads the stream's not-yet-archived tail through the same conversion, so an event
//! reads the same before and after it is archived.

use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tally_model::schema::{self, FieldType, Scalar};
use tally_model::stream::Entry;

/// The receive time, a column the archive adds to every collection.
pub const RECEIVED: &str = "_received";

/// Built-in columns, in the order every table starts with.
const FIRST: [&str; 6] = [schema::USER, schema::TIME, RECEIVED, "count", "sum", "dur"];

/// Decimal columns: Rakam's DECIMAL as 38 digits, 9 of them after the point.
const DECIMAL_SCALE: i8 = 9;

fn scalar_type(s: Scalar) -> DataType {
    match s {
        Scalar::String | Scalar::Binary => DataType::Utf8,
        Scalar::Integer => DataType::Int32,
        Scalar::Long => DataType::Int64,
        Scalar::Double => DataType::Float64,
        Scalar::Decimal => DataType::Decimal128(38, DECIMAL_SCALE),
        Scalar::Boolean => DataType::Boolean,
        Scalar::Date => DataType::Date32,
        Scalar::Time => DataType::Time64(TimeUnit::Microsecond),
        Scalar::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    }
}

/// The Arrow type of a Rakam type. BINARY stays its base64 text (as it was sent).
pub fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::Scalar(s) => scalar_type(s),
        FieldType::Array(s) => DataType::List(Arc::new(Field::new("item", scalar_type(s), true))),
        FieldType::Map(s) => DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", scalar_type(s), true),
                ])),
                false,
            )),
            false,
        ),
    }
}

/// A collection's table: the built-in columns first, then its fields by name.
pub fn table_schema(fields: &BTreeMap<String, FieldType>) -> SchemaRef {
    let mut all = fields.clone();
    all.insert(RECEIVED.to_string(), FieldType::Scalar(Scalar::Timestamp));
    let mut cols: Vec<Field> = FIRST
        .iter()
        .filter_map(|n| all.get(*n).map(|t| Field::new(*n, arrow_type(*t), true)))
        .collect();
    cols.extend(
        all.iter()
            .filter(|(n, _)| !FIRST.contains(&n.as_str()))
            .map(|(n, t)| Field::new(n.as_str(), arrow_type(*t), true)),
    );
    Arc::new(Schema::new(cols))
}

/// The Rakam type of a field of a table made by [`table_schema`] (or of any query result).
pub fn rakam_type(t: &DataType) -> String {
    fn scalar(t: &DataType) -> &'static str {
        match t {
            DataType::Int8 | DataType::Int16 | DataType::Int32 => "INTEGER",
            DataType::UInt8 | DataType::UInt16 => "INTEGER",
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "LONG",
            DataType::Float16 | DataType::Float32 | DataType::Float64 => "DOUBLE",
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => "DECIMAL",
            DataType::Boolean => "BOOLEAN",
            DataType::Date32 | DataType::Date64 => "DATE",
            DataType::Time32(_) | DataType::Time64(_) => "TIME",
            DataType::Timestamp(..) => "TIMESTAMP",
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BINARY",
            DataType::FixedSizeBinary(_) => "BINARY",
            _ => "STRING",
        }
    }
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            match f.data_type() {
                DataType::List(_) | DataType::Map(..) => "ARRAY_STRING".into(),
                inner => format!("ARRAY_{}", scalar(inner)),
            }
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => match kv[1].data_type() {
                DataType::List(_) | DataType::Map(..) => "MAP_STRING".into(),
                inner => format!("MAP_{}", scalar(inner)),
            },
            _ => "MAP_STRING".into(),
        },
        other => scalar(other).to_string(),
    }
}

/// `v` in the form the column's decoder reads, or null where it cannot be one (a value
/// the stream kept that its field's type does not take: never a failed batch).
pub fn fit(t: FieldType, v: &Value) -> Value {
    let read = match t.read(v) {
        Ok(x) => x,
        Err(_) => return Value::Null,
    };
    match (t, read) {
        (FieldType::Scalar(s), x) => fit_scalar(s, x),
        (FieldType::Array(s), Value::Array(items)) => {
            Value::Array(items.into_iter().map(|x| fit_scalar(s, x)).collect())
        }
        (FieldType::Map(s), Value::Object(m)) => {
            Value::Object(m.into_iter().map(|(k, x)| (k, fit_scalar(s, x))).collect())
        }
        _ => Value::Null,
    }
}

fn fit_scalar(s: Scalar, v: Value) -> Value {
    match (s, v) {
        (Scalar::Decimal, Value::String(d)) => decimal_text(&d).map_or(Value::Null, Value::String),
        (Scalar::Time, Value::String(t)) => schema::parse_time(&t).map_or(Value::Null, |t| {
            Value::String(t.format("%H:%M:%S%.6f").to_string())
        }),
        (_, v) => v,
    }
}

/// A decimal's text within the column's precision: at most 29 digits before the point,
/// the fraction cut at [`DECIMAL_SCALE`] digits.
fn decimal_text(d: &str) -> Option<String> {
    let (int, frac) = d.split_once('.').unwrap_or((d, ""));
    if int.trim_start_matches('-').trim_start_matches('0').len() > 29 {
        return None;
    }
    let frac: String = frac.chars().take(DECIMAL_SCALE as usize).collect();
    Some(if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    })
}

/// One event as a row of its collection's table.
pub fn row(e: &Entry, fields: &BTreeMap<String, FieldType>) -> Value {
    let mut out = Map::with_capacity(e.segmentation.len() + 6);
    out.insert(schema::USER.into(), Value::String(e.device.clone()));
    out.insert(schema::TIME.into(), Value::from(e.ts));
    out.insert(RECEIVED.into(), Value::from(e.received));
    out.insert("count".into(), Value::from(e.count));
    if let Some(s) = e.sum.filter(|s| s.is_finite()) {
        out.insert("sum".into(), Value::from(s));
    }
    if let Some(d) = e.dur.filter(|d| d.is_finite()) {
        out.insert("dur".into(), Value::from(d));
    }
    for (name, v) in &e.segmentation {
        if FIRST.contains(&name.as_str()) {
            continue;
        }
        if let Some(t) = fields.get(name) {
            let x = fit(*t, v);
            if !x.is_null() {
                out.insert(name.clone(), x);
            }
        }
    }
    Value::Object(out)
}

/// Rows as one record batch of `schema`. A row the decoder still refuses is kept with
/// its built-in columns only, so one odd value never holds back the rest.
pub fn batch(schema: &SchemaRef, rows: &[Value]) -> Result<RecordBatch, crate::Error> {
    let decode = |rows: &[Value]| -> Result<RecordBatch, crate::Error> {
        let mut d = ReaderBuilder::new(schema.clone())
            .with_batch_size(rows.len().max(1))
            .with_coerce_primitive(true)
            .build_decoder()?;
        d.serialize(rows)?;
        Ok(d.flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
    };
    match decode(rows) {
        Ok(b) => Ok(b),
        Err(_) => {
            let kept: Vec<Value> = rows
                .iter()
                .map(|r| {
                    if decode(std::slice::from_ref(r)).is_ok() {
                        r.clone()
                    } else {
                        let mut m = Map::new();
                        if let Value::Object(o) = r {
                            for n in FIRST {
                                if let Some(v) = o.get(n) {
                                    m.insert(n.to_string(), v.clone());
                                }
                            }
                        }
                        Value::Object(m)
                    }
                })
                .collect();
            decode(&kept)
        }
    }
}

/// The app-local date of an event, `YYYY-MM-DD`.
pub fn date(ts_ms: i64, tz: Tz) -> String {
    use chrono::TimeZone;
    tz.timestamp_millis_opt(ts_ms)
        .single()
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
    use serde_json::json;

    fn entry(g: Value) -> Entry {
        Entry {
            id: "1-0".into(),
            kind: "e".into(),
            device: "d1".into(),
            key: "buy".into(),
            count: 2,
            sum: Some(1.5),
            dur: None,
            segmentation: match g {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            ts: 1_700_000_000_000,
            received: 1_700_000_000_500,
        }
    }

    #[test]
    fn typed_fields_become_typed_columns() {
        let mut fields = schema::builtin();
        for (n, t) in [
            ("price", "DECIMAL"),
            ("n", "LONG"),
            ("tags", "ARRAY_STRING"),
            ("m", "MAP_DOUBLE"),
            ("at", "TIME"),
            ("day", "DATE"),
            ("plan", "STRING"),
        ] {
            fields.insert(
                n.into(),
                FieldType::parse(t).unwrap_or_else(|| unreachable!()),
            );
        }
        let s = table_schema(&fields);
        assert_eq!(s.field(0).name(), "_user");
        assert_eq!(s.field(2).name(), RECEIVED);
        let rows = vec![
            row(
                &entry(
                    json!({"price": "12.3456789012", "n": 7, "tags": ["a", "b"], "m": {"x": 1.5},
                    "at": "10:30", "day": "2026-01-02", "plan": 5, "unknown": 1}),
                ),
                &fields,
            ),
            // Values the types do not take become nulls, the row stays.
            row(
                &entry(json!({"n": "seven", "tags": "a", "day": "soon"})),
                &fields,
            ),
        ];
        let b = batch(&s, &rows).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.num_rows(), 2);
        let col = |n: &str| {
            b.column(s.index_of(n).unwrap_or_else(|_| unreachable!()))
                .clone()
        };
        assert_eq!(col("n").as_primitive::<Int64Type>().value(0), 7);
        assert!(col("n").is_null(1));
        assert_eq!(
            col("price").as_primitive::<Decimal128Type>().value(0),
            12_345_678_901
        );
        assert_eq!(col("plan").as_string::<i32>().value(0), "5");
        assert_eq!(col("count").as_primitive::<Int64Type>().value(1), 2);
        assert!(col("day").is_null(1));
    }

    #[test]
    fn rakam_types_of_arrow_types() {
        for t in FieldType::all() {
            let want = match t {
                FieldType::Scalar(Scalar::Binary) => "STRING".to_string(),
                FieldType::Array(Scalar::Binary) => "ARRAY_STRING".into(),
                FieldType::Map(Scalar::Binary) => "MAP_STRING".into(),
                other => other.name(),
            };
            assert_eq!(rakam_type(&arrow_type(t)), want);
        }
    }

    #[test]
    fn dates_are_local() {
        // 23:30 UTC on Jan 1 is already Jan 2 in Berlin.
        let ts = 1_767_310_200_000;
        assert_eq!(date(ts, chrono_tz::UTC), "2026-01-01");
        assert_eq!(date(ts, chrono_tz::Europe::Berlin), "2026-01-02");
    }
}
