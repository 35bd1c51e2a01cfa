//! Realtime reports (Rakam-style `/realtime/*`): per-minute aggregates of chosen events,
//! maintained by the stream consumer from the moment a report is created.
//!
//! A report names its events (`collections`), its `measures` (`{column, aggregation}`),
//! optional `dimensions` (segmentation keys to group by) and an optional `filter`
//! ([`crate::filter`]). A column is a segmentation key or one of `count`, `sum`, `dur`,
//! `device_id`, `event`. Per minute the consumer keeps, per dimension values:
//! COUNT (occurrences: the events' `count`, where the column has a value), SUM, AVERAGE
//! (sum and rows), MINIMUM and MAXIMUM (single-key Lua scripts), COUNT_UNIQUE (exact: a set
//! of values) and APPROXIMATE_UNIQUE (a HyperLogLog, an estimate with ~0.8% standard
//! error). Data is kept as long as minute rollups (`TALLY_ROLLUP_MINUTE_SECS`).

use crate::filter::{self, Expr};
use crate::rollup::{Entry, Retention};
use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tally_model::apps::{self, keys_equal, App};
use tally_model::keys::{self, AppId};
use tally_service::ApiError;
use tally_service::{json as json_response, read_body};

/// Reports one app may have.
pub const MAX_REPORTS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Agg {
    Count,
    CountUnique,
    Sum,
    Minimum,
    Maximum,
    Average,
    ApproximateUnique,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub column: String,
    pub aggregation: Agg,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub name: String,
    pub table_name: String,
    pub collections: Vec<String>,
    pub measures: Vec<Measure>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    /// When it was created (ms): only events received since count.
    #[serde(default)]
    pub created: i64,
}

impl Report {
    /// Checks a definition; returns its parsed filter.
    pub fn validate(&self) -> Result<Option<Expr>, String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("name: 1 to 200 characters".into());
        }
        let t = &self.table_name;
        if t.is_empty()
            || t.len() > 64
            || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err("table_name: 1 to 64 letters, digits or _".into());
        }
        if self.collections.is_empty()
            || self.collections.len() > 50
            || self.collections.iter().any(|c| c.is_empty())
        {
            return Err("collections: 1 to 50 event keys".into());
        }
        if self.measures.is_empty()
            || self.measures.len() > 20
            || self.measures.iter().any(|m| m.column.is_empty())
        {
            return Err("measures: 1 to 20, each with a column".into());
        }
        if self.dimensions.len() > 5 || self.dimensions.iter().any(|d| d.is_empty()) {
            return Err("dimensions: at most 5 names".into());
        }
        self.filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(filter::parse)
            .transpose()
            .map_err(|e| format!("filter: {e}"))
    }

    /// A readable SQL-like spelling, for `/realtime/list`.
    pub fn query(&self) -> String {
        let m: Vec<String> = self
            .measures
            .iter()
            .map(|m| {
                let agg = serde_json::to_value(m.aggregation).ok();
                format!(
                    "{}({})",
                    agg.as_ref().and_then(Value::as_str).unwrap_or("?"),
                    m.column
                )
            })
            .collect();
        let mut q = format!(
            "SELECT {} FROM {}",
            m.join(", "),
            self.collections.join(", ")
        );
        if let Some(f) = self.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            q.push_str(&format!(" WHERE {f}"));
        }
        if !self.dimensions.is_empty() {
            q.push_str(&format!(" GROUP BY {}", self.dimensions.join(", ")));
        }
        q
    }
}

/// A column's value for an event.
pub fn column(e: &Entry, name: &str) -> Option<String> {
    match name {
        "count" => Some(e.count.to_string()),
        "sum" => e.sum.map(|v| v.to_string()),
        "dur" => e.dur.map(|v| v.to_string()),
        "device_id" => Some(e.device.clone()),
        "event" => Some(e.key.clone()),
        seg => e.segmentation.get(seg).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }),
    }
}

/// Dimension values joined with U+001F (which values cannot contain: it is removed).
fn combo(values: &[String]) -> String {
    values
        .iter()
        .map(|v| v.replace('\u{1f}', ""))
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

fn field(combo: &str, measure: usize, part: &str) -> String {
    format!("{combo}\u{1e}{measure}\u{1e}{part}")
}

/// The writes of the reports for a batch of one app's entries.
#[derive(Debug, Default)]
pub struct RtWrites {
    pub ints: BTreeMap<(String, String), i64>,
    pub floats: BTreeMap<(String, String), f64>,
    pub mins: BTreeMap<(String, String), f64>,
    pub maxs: BTreeMap<(String, String), f64>,
    pub sets: BTreeMap<String, BTreeSet<String>>,
    pub hlls: BTreeMap<String, BTreeSet<String>>,
    pub expire_in: BTreeMap<String, i64>,
}

/// What the reports of an app make of a batch of its entries.
pub fn contribute(
    app: &AppId,
    reports: &[(Report, Option<Expr>)],
    entries: &[Entry],
    keep: Retention,
    now_secs: i64,
) -> RtWrites {
    let mut w = RtWrites::default();
    for e in entries.iter().filter(|e| e.kind == "e") {
        let minute = e.ts.div_euclid(60_000);
        let expire = minute * 60 + 60 + keep.minute_secs - now_secs;
        if expire <= 0 {
            continue;
        }
        for (r, f) in reports {
            if e.received < r.created || !r.collections.contains(&e.key) {
                continue;
            }
            let get = |n: &str| column(e, n);
            if f.as_ref().is_some_and(|f| !f.eval(&get)) {
                continue;
            }
            let dims: Vec<String> = r
                .dimensions
                .iter()
                .map(|d| column(e, d).unwrap_or_default())
                .collect();
            let c = combo(&dims);
            let hash = keys::realtime_minute(app, &r.table_name, minute);
            w.expire_in.insert(hash.clone(), expire);
            for (i, m) in r.measures.iter().enumerate() {
                let value = column(e, &m.column);
                let num = value
                    .as_deref()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite());
                match m.aggregation {
                    Agg::Count => {
                        if value.is_some() || m.column == "*" {
                            *w.ints.entry((hash.clone(), field(&c, i, "c"))).or_default() +=
                                e.count;
                        }
                    }
                    Agg::Sum | Agg::Average => {
                        if let Some(v) = num {
                            *w.floats
                                .entry((hash.clone(), field(&c, i, "s")))
                                .or_default() += v;
                            *w.ints.entry((hash.clone(), field(&c, i, "n"))).or_default() += 1;
                        }
                    }
                    Agg::Minimum => {
                        if let Some(v) = num {
                            let slot = w
                                .mins
                                .entry((hash.clone(), field(&c, i, "min")))
                                .or_insert(v);
                            *slot = slot.min(v);
                        }
                    }
                    Agg::Maximum => {
                        if let Some(v) = num {
                            let slot = w
                                .maxs
                                .entry((hash.clone(), field(&c, i, "max")))
                                .or_insert(v);
                            *slot = slot.max(v);
                        }
                    }
                    Agg::CountUnique => {
                        if let Some(v) = value {
                            let k = keys::realtime_unique(app, &r.table_name, minute, i);
                            w.expire_in.insert(k.clone(), expire);
                            w.sets.entry(k).or_default().insert(format!("{c}\u{1e}{v}"));
                        }
                    }
                    Agg::ApproximateUnique => {
                        if let Some(v) = value {
                            let k = keys::realtime_hll(app, &r.table_name, minute, i, &c);
                            w.expire_in.insert(k.clone(), expire);
                            w.hlls.entry(k).or_default().insert(v);
                            // Marks the dimension values present, for the query to find.
                            *w.ints.entry((hash.clone(), field(&c, i, "h"))).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    w
}

/// Keeps the smaller (or larger) number in a hash field: one key, atomic.
const MIN_SCRIPT: &str = "local c = redis.call('HGET', KEYS[1], ARGV[1]) if not c or tonumber(ARGV[2]) < tonumber(c) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 0";
const MAX_SCRIPT: &str = "local c = redis.call('HGET', KEYS[1], ARGV[1]) if not c or tonumber(ARGV[2]) > tonumber(c) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 0";

/// Adds the report writes to a transaction.
pub fn write(pipe: &mut redis::Pipeline, w: &RtWrites) {
    for ((k, f), v) in &w.ints {
        pipe.cmd("HINCRBY").arg(k).arg(f).arg(*v).ignore();
    }
    for ((k, f), v) in &w.floats {
        pipe.cmd("HINCRBYFLOAT").arg(k).arg(f).arg(*v).ignore();
    }
    for ((k, f), v) in &w.mins {
        pipe.cmd("EVAL")
            .arg(MIN_SCRIPT)
            .arg(1)
            .arg(k)
            .arg(f)
            .arg(*v)
            .ignore();
    }
    for ((k, f), v) in &w.maxs {
        pipe.cmd("EVAL")
            .arg(MAX_SCRIPT)
            .arg(1)
            .arg(k)
            .arg(f)
            .arg(*v)
            .ignore();
    }
    for (k, members) in &w.sets {
        pipe.cmd("SADD")
            .arg(k)
            .arg(members.iter().collect::<Vec<_>>())
            .ignore();
    }
    for (k, members) in &w.hlls {
        pipe.cmd("PFADD")
            .arg(k)
            .arg(members.iter().collect::<Vec<_>>())
            .ignore();
    }
    for (k, secs) in &w.expire_in {
        pipe.cmd("EXPIRE").arg(k).arg(*secs).ignore();
    }
}

/// The app's reports with their parsed filters.
pub async fn load(
    pool: &tally_redis::Pool,
    app: &AppId,
) -> Result<Vec<(Report, Option<Expr>)>, tally_model::StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HVALS").arg(keys::realtime_defs(app));
    let (defs,): (Vec<String>,) = pool.run(keys::route(app), &pipe).await?;
    Ok(parse_defs(&defs))
}

/// Stored definitions (JSON) with their parsed filters; unreadable ones are skipped.
pub fn parse_defs(defs: &[String]) -> Vec<(Report, Option<Expr>)> {
    defs.iter()
        .filter_map(|d| serde_json::from_str::<Report>(d).ok())
        .filter_map(|r| r.validate().ok().map(|f| (r, f)))
        .collect()
}

// ---- HTTP ----

/// The app a `master_key` (or, when `read` is allowed, `read_key`) header belongs to.
async fn app_for(req: &HttpRequest, st: &Aggregator, read: bool) -> Result<Arc<App>, ApiError> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let key = header("master_key")
        .or_else(|| if read { header("read_key") } else { None })
        .ok_or_else(|| {
            ApiError::Unauthorized(
                if read {
                    "Missing read_key"
                } else {
                    "Missing master_key"
                }
                .into(),
            )
        })?;
    let app = apps::by_other_key(&st.shared.pool, key)
        .await?
        .ok_or_else(|| ApiError::Forbidden("Invalid key".into()))?;
    let ok = keys_equal(key, &app.master_key) || (read && keys_equal(key, &app.read_key));
    if !ok {
        return Err(ApiError::Forbidden(
            if read {
                "Invalid key"
            } else {
                "This needs the master key"
            }
            .into(),
        ));
    }
    Ok(Arc::new(app))
}

async fn body(payload: web::Payload, st: &Aggregator) -> Result<Value, ApiError> {
    let raw = read_body(payload, &st.shared.limits).await?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&raw).map_err(|e| ApiError::bad(format!("Invalid JSON body: {e}")))
}

fn success(msg: &str) -> HttpResponse {
    json_response(json!({"success": true, "message": msg}).to_string())
}

/// `POST /realtime/create` (master key).
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = app_for(&req, &st, false).await?;
    let mut r: Report = serde_json::from_value(body(payload, &st).await?)
        .map_err(|e| ApiError::bad(format!("Invalid report: {e}")))?;
    r.validate()
        .map_err(|e| ApiError::bad(format!("Invalid report: {e}")))?;
    r.created = st.shared.clock.now_ms();
    let existing = load(&st.shared.pool, &app.id).await?;
    if existing.iter().any(|(e, _)| e.table_name == r.table_name) {
        return Err(ApiError::bad(format!(
            "A report named {} exists",
            r.table_name
        )));
    }
    if existing.len() >= MAX_REPORTS {
        return Err(ApiError::bad(format!(
            "At most {MAX_REPORTS} reports per app"
        )));
    }
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(keys::realtime_defs(&app.id))
        .arg(&r.table_name)
        .arg(serde_json::to_string(&r).unwrap_or_default())
        .ignore();
    st.shared
        .pool
        .run::<()>(keys::route(&app.id), &pipe)
        .await?;
    Ok(success("Report created"))
}

/// `POST /realtime/delete` (master key): the definition and its data.
pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = app_for(&req, &st, false).await?;
    let b = body(payload, &st).await?;
    let table = b["table_name"]
        .as_str()
        .ok_or_else(|| ApiError::bad("Missing parameter \"table_name\""))?;
    let mut pipe = redis::pipe();
    pipe.cmd("HDEL")
        .arg(keys::realtime_defs(&app.id))
        .arg(table);
    let (n,): (i64,) = st.shared.pool.run(keys::route(&app.id), &pipe).await?;
    if n == 0 {
        return Err(ApiError::NotFound(format!("No report named {table}")));
    }
    apps::unlink_matching(
        &st.shared.pool,
        keys::route(&app.id),
        &keys::realtime_pattern(&app.id, table),
    )
    .await?;
    Ok(success("Report deleted"))
}

/// `POST /realtime/list` (read key).
pub async fn list(req: HttpRequest, st: web::Data<Aggregator>) -> Result<HttpResponse, ApiError> {
    let app = app_for(&req, &st, true).await?;
    let mut reports = load(&st.shared.pool, &app.id).await?;
    reports.sort_by(|a, b| a.0.table_name.cmp(&b.0.table_name));
    let out: Vec<Value> = reports
        .iter()
        .map(|(r, _)| json!({"name": r.name, "table_name": r.table_name, "query": r.query(), "collections": r.collections, "measures": r.measures, "dimensions": r.dimensions, "filter": r.filter}))
        .collect();
    Ok(json_response(Value::Array(out).to_string()))
}

fn parse_time(v: &Value, name: &str) -> Result<Option<i64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid_param(name)),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| {
                ApiError::bad(format!(
                    "Invalid parameter \"{name}\": an RFC 3339 date-time or milliseconds"
                ))
            }),
        _ => Err(ApiError::invalid_param(name)),
    }
}

/// The value of one measure from its accumulated parts.
#[derive(Default, Clone)]
struct Acc {
    c: i64,
    s: f64,
    n: i64,
    min: Option<f64>,
    max: Option<f64>,
    uniques: BTreeSet<String>,
    hll_keys: Vec<String>,
}

impl Acc {
    fn value(&self, agg: Agg, hll: Option<i64>) -> Value {
        match agg {
            Agg::Count => json!(self.c),
            Agg::Sum => json!(self.s),
            Agg::Average => {
                if self.n > 0 {
                    json!(self.s / self.n as f64)
                } else {
                    Value::Null
                }
            }
            Agg::Minimum => self.min.map_or(Value::Null, |v| json!(v)),
            Agg::Maximum => self.max.map_or(Value::Null, |v| json!(v)),
            Agg::CountUnique => json!(self.uniques.len()),
            Agg::ApproximateUnique => json!(hll.unwrap_or(0)),
        }
    }
}

/// `POST /realtime/get` (read key): `{start, end, result}`.
pub async fn get(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = app_for(&req, &st, true).await?;
    let b = body(payload, &st).await?;
    let table = b["table_name"]
        .as_str()
        .ok_or_else(|| ApiError::bad("Missing parameter \"table_name\""))?;
    if b.get("filter").is_some_and(|f| !f.is_null()) {
        return Err(ApiError::bad("A report's filter is set when it is created"));
    }
    let reports = load(&st.shared.pool, &app.id).await?;
    let (report, _) = reports
        .iter()
        .find(|(r, _)| r.table_name == table)
        .ok_or_else(|| ApiError::NotFound(format!("No report named {table}")))?;
    let measure: Measure = serde_json::from_value(b["measure"].clone())
        .map_err(|e| ApiError::bad(format!("Invalid parameter \"measure\": {e}")))?;
    let mi = report
        .measures
        .iter()
        .position(|m| *m == measure)
        .ok_or_else(|| ApiError::bad("The report has no such measure"))?;
    let dims: Vec<String> = match &b["dimensions"] {
        Value::Null => Vec::new(),
        v => {
            serde_json::from_value(v.clone()).map_err(|_| ApiError::invalid_param("dimensions"))?
        }
    };
    let idx: Vec<usize> = dims
        .iter()
        .map(|d| {
            report
                .dimensions
                .iter()
                .position(|x| x == d)
                .ok_or_else(|| ApiError::bad(format!("The report has no dimension {d}")))
        })
        .collect::<Result<_, _>>()?;
    let aggregate = b["aggregate"].as_bool().unwrap_or(false);
    let now = st.shared.clock.now_ms();
    let end = parse_time(&b["date_end"], "date_end")?.unwrap_or(now);
    let start = parse_time(&b["date_start"], "date_start")?.unwrap_or(end - 3_600_000);
    let keep_ms = st.retention.minute_secs * 1000;
    if start > end || end - start > keep_ms {
        return Err(ApiError::bad(format!(
            "date_start..date_end must be at most {} hours",
            keep_ms / 3_600_000
        )));
    }
    let minutes: Vec<i64> = (start.div_euclid(60_000)..=end.div_euclid(60_000)).collect();
    let mut pipe = redis::pipe();
    for m in &minutes {
        pipe.cmd("HGETALL")
            .arg(keys::realtime_minute(&app.id, table, *m));
        if measure.aggregation == Agg::CountUnique {
            pipe.cmd("SMEMBERS")
                .arg(keys::realtime_unique(&app.id, table, *m, mi));
        }
    }
    let replies: Vec<Value> = if minutes.is_empty() {
        Vec::new()
    } else {
        redis_values(&st, keys::route(&app.id), &pipe).await?
    };
    let mut it = replies.into_iter();
    // (minute or 0 when aggregating, projected dimension values) -> accumulator
    let mut accs: BTreeMap<(i64, Vec<String>), Acc> = BTreeMap::new();
    let project = |c: &str| -> Vec<String> {
        let all: Vec<&str> = if report.dimensions.is_empty() {
            Vec::new()
        } else {
            c.split('\u{1f}').collect()
        };
        idx.iter()
            .map(|&i| all.get(i).copied().unwrap_or("").to_string())
            .collect()
    };
    for m in &minutes {
        let bucket = if aggregate { 0 } else { *m * 60_000 };
        let fields = it.next().map(pairs).unwrap_or_default();
        for (f, v) in fields {
            let mut parts = f.split('\u{1e}');
            let (Some(c), Some(i), Some(part)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if i.parse::<usize>().ok() != Some(mi) {
                continue;
            }
            let acc = accs.entry((bucket, project(c))).or_default();
            let x: f64 = v.parse().unwrap_or(0.0);
            match part {
                "c" => acc.c += x as i64,
                "s" => acc.s += x,
                "n" => acc.n += x as i64,
                "min" => acc.min = Some(acc.min.map_or(x, |m| m.min(x))),
                "max" => acc.max = Some(acc.max.map_or(x, |m| m.max(x))),
                "h" => acc
                    .hll_keys
                    .push(keys::realtime_hll(&app.id, table, *m, mi, c)),
                _ => {}
            }
        }
        if measure.aggregation == Agg::CountUnique {
            for member in it.next().map(members).unwrap_or_default() {
                if let Some((c, v)) = member.split_once('\u{1e}') {
                    accs.entry((bucket, project(c)))
                        .or_default()
                        .uniques
                        .insert(v.to_string());
                }
            }
        }
    }
    let mut hll = BTreeMap::new();
    if measure.aggregation == Agg::ApproximateUnique && !accs.is_empty() {
        let mut pipe = redis::pipe();
        for acc in accs.values() {
            pipe.cmd("PFCOUNT").arg(&acc.hll_keys);
        }
        let counts: Vec<i64> = st.shared.pool.run(keys::route(&app.id), &pipe).await?;
        for (k, c) in accs.keys().zip(counts) {
            hll.insert(k.clone(), c);
        }
    }
    let render = |entries: Vec<(&Vec<String>, Value)>| -> Value {
        if dims.is_empty() {
            entries.into_iter().next().map_or_else(
                || Acc::default().value(measure.aggregation, Some(0)),
                |(_, v)| v,
            )
        } else {
            Value::Object(
                entries
                    .into_iter()
                    .map(|(d, v)| (d.join("|"), v))
                    .collect::<Map<_, _>>(),
            )
        }
    };
    let result = if aggregate {
        render(
            accs.iter()
                .map(|((_, d), a)| {
                    (
                        d,
                        a.value(measure.aggregation, hll.get(&(0, d.clone())).copied()),
                    )
                })
                .collect(),
        )
    } else {
        let mut per_minute = Map::new();
        for m in &minutes {
            let ts = *m * 60_000;
            let entries = accs
                .iter()
                .filter(|((b, _), _)| *b == ts)
                .map(|((b, d), a)| {
                    (
                        d,
                        a.value(measure.aggregation, hll.get(&(*b, d.clone())).copied()),
                    )
                })
                .collect();
            per_minute.insert(ts.to_string(), render(entries));
        }
        Value::Object(per_minute)
    };
    Ok(json_response(
        json!({"start": start, "end": end, "result": result}).to_string(),
    ))
}

async fn redis_values(
    st: &Aggregator,
    route: tally_redis::Route<'_>,
    pipe: &redis::Pipeline,
) -> Result<Vec<Value>, ApiError> {
    let raw: Vec<redis::Value> = st.shared.pool.run(route, pipe).await?;
    Ok(raw.into_iter().map(to_json).collect())
}

fn to_json(v: redis::Value) -> Value {
    match v {
        redis::Value::Array(a) | redis::Value::Set(a) => {
            Value::Array(a.into_iter().map(to_json).collect())
        }
        redis::Value::Map(m) => Value::Array(
            m.into_iter()
                .flat_map(|(k, v)| [to_json(k), to_json(v)])
                .collect(),
        ),
        redis::Value::BulkString(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::SimpleString(s) => Value::String(s),
        redis::Value::Int(i) => json!(i),
        _ => Value::Null,
    }
}

fn pairs(v: Value) -> Vec<(String, String)> {
    match v {
        Value::Array(a) => a
            .chunks_exact(2)
            .filter_map(|kv| Some((kv[0].as_str()?.to_string(), kv[1].as_str()?.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

fn members(v: Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .into_iter()
            .filter_map(|m| m.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_checked_and_spelled() {
        let r = Report {
            name: "Sales".into(),
            table_name: "sales_by_country".into(),
            collections: vec!["buy".into()],
            measures: vec![Measure {
                column: "sum".into(),
                aggregation: Agg::Sum,
            }],
            dimensions: vec!["country".into()],
            filter: Some("platform in ('ios', 'android')".into()),
            created: 0,
        };
        assert!(r.validate().is_ok());
        assert_eq!(
            r.query(),
            "SELECT SUM(sum) FROM buy WHERE platform in ('ios', 'android') GROUP BY country"
        );
        let mut bad = r.clone();
        bad.table_name = "no spaces".into();
        assert!(bad.validate().is_err());
        let mut bad = r.clone();
        bad.filter = Some("country =".into());
        assert!(bad.validate().is_err());
        let mut bad = r;
        bad.measures.clear();
        assert!(bad.validate().is_err());
    }
}
