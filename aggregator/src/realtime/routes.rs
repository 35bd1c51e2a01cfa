//! `/realtime/create`, `/realtime/get`, `/realtime/list` and `/realtime/delete`.

use super::{load, Agg, Measure, Report, MAX_REPORTS};
use crate::filter::Expr;
use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tally_model::apps::{self, App, Role};
use tally_model::keys;
use tally_service::{json as json_response, read_body};
use tally_service::{ApiError, RakamError};

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
    let role = if read { Role::Read } else { Role::Master };
    if !app.allows(key, role) {
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
async fn create_answer(
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
async fn delete_answer(
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
async fn list_answer(
    req: HttpRequest,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = app_for(&req, &st, true).await?;
    let mut reports = load(&st.shared.pool, &app.id).await?;
    reports.sort_by(|a, b| a.0.table_name.cmp(&b.0.table_name));
    let out: Vec<Value> = reports
        .iter()
        // `tableName`, `options` and `partitionKeys` as Rakam's generated client reads a
        // report (it leaves snake_case names unread).
        .map(|(r, _)| json!({"name": r.name, "table_name": r.table_name, "tableName": r.table_name, "query": r.query(), "options": {}, "partitionKeys": [], "collections": r.collections, "measures": r.measures, "dimensions": r.dimensions, "filter": r.filter}))
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

/// What `/realtime/get` asks: one measure of one report, optionally projected on some
/// of its dimensions, over a range of minutes.
struct GetQuery<'r> {
    table: &'r str,
    report: &'r Report,
    measure: Measure,
    /// The measure's index in the report.
    mi: usize,
    dims: Vec<String>,
    /// Positions of `dims` among the report's dimensions.
    idx: Vec<usize>,
    aggregate: bool,
    start: i64,
    end: i64,
    minutes: Vec<i64>,
}

impl<'r> GetQuery<'r> {
    /// Checks the request against the app's reports and the rollups' retention.
    fn parse(
        b: &'r Value,
        reports: &'r [(Report, Option<Expr>)],
        now_ms: i64,
        keep_ms: i64,
    ) -> Result<GetQuery<'r>, ApiError> {
        let table = b["table_name"]
            .as_str()
            .ok_or_else(|| ApiError::bad("Missing parameter \"table_name\""))?;
        if b.get("filter").is_some_and(|f| !f.is_null()) {
            return Err(ApiError::bad("A report's filter is set when it is created"));
        }
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
            v => serde_json::from_value(v.clone())
                .map_err(|_| ApiError::invalid_param("dimensions"))?,
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
        let end = parse_time(&b["date_end"], "date_end")?.unwrap_or(now_ms);
        let start = parse_time(&b["date_start"], "date_start")?.unwrap_or(end - 3_600_000);
        if start > end || end - start > keep_ms {
            return Err(ApiError::bad(format!(
                "date_start..date_end must be at most {} hours",
                keep_ms / 3_600_000
            )));
        }
        Ok(GetQuery {
            table,
            report,
            measure,
            mi,
            dims,
            idx,
            aggregate: b["aggregate"].as_bool().unwrap_or(false),
            start,
            end,
            minutes: (start.div_euclid(60_000)..=end.div_euclid(60_000)).collect(),
        })
    }

    /// The combination `c` of all the report's dimension values, projected on the asked ones.
    fn project(&self, c: &str) -> Vec<String> {
        let all: Vec<&str> = if self.report.dimensions.is_empty() {
            Vec::new()
        } else {
            c.split('\u{1f}').collect()
        };
        self.idx
            .iter()
            .map(|&i| all.get(i).copied().unwrap_or("").to_string())
            .collect()
    }
}

/// (minute in ms, or 0 when aggregating; projected dimension values) -> accumulator.
type Accs = BTreeMap<(i64, Vec<String>), Acc>;

/// Reads the asked minutes of the report and folds them into accumulators; for
/// APPROXIMATE_UNIQUE also counts each accumulator's HyperLogLogs (one more round trip).
async fn accumulate(
    st: &Aggregator,
    app: &App,
    q: &GetQuery<'_>,
) -> Result<(Accs, BTreeMap<(i64, Vec<String>), i64>), ApiError> {
    let mut pipe = redis::pipe();
    for m in &q.minutes {
        pipe.cmd("HGETALL")
            .arg(keys::realtime_minute(&app.id, q.table, *m));
        if q.measure.aggregation == Agg::CountUnique {
            pipe.cmd("SMEMBERS")
                .arg(keys::realtime_unique(&app.id, q.table, *m, q.mi));
        }
    }
    let replies: Vec<Value> = if q.minutes.is_empty() {
        Vec::new()
    } else {
        redis_values(st, keys::route(&app.id), &pipe).await?
    };
    let mut it = replies.into_iter();
    let mut accs = Accs::new();
    for m in &q.minutes {
        let bucket = if q.aggregate { 0 } else { *m * 60_000 };
        for (f, v) in it.next().map(pairs).unwrap_or_default() {
            let mut parts = f.split('\u{1e}');
            let (Some(c), Some(i), Some(part)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if i.parse::<usize>().ok() != Some(q.mi) {
                continue;
            }
            let acc = accs.entry((bucket, q.project(c))).or_default();
            let x: f64 = v.parse().unwrap_or(0.0);
            match part {
                "c" => acc.c += x as i64,
                "s" => acc.s += x,
                "n" => acc.n += x as i64,
                "min" => acc.min = Some(acc.min.map_or(x, |m| m.min(x))),
                "max" => acc.max = Some(acc.max.map_or(x, |m| m.max(x))),
                "h" => acc
                    .hll_keys
                    .push(keys::realtime_hll(&app.id, q.table, *m, q.mi, c)),
                _ => {}
            }
        }
        if q.measure.aggregation == Agg::CountUnique {
            for member in it.next().map(members).unwrap_or_default() {
                if let Some((c, v)) = member.split_once('\u{1e}') {
                    accs.entry((bucket, q.project(c)))
                        .or_default()
                        .uniques
                        .insert(v.to_string());
                }
            }
        }
    }
    let mut hll = BTreeMap::new();
    if q.measure.aggregation == Agg::ApproximateUnique && !accs.is_empty() {
        let mut pipe = redis::pipe();
        for acc in accs.values() {
            pipe.cmd("PFCOUNT").arg(&acc.hll_keys);
        }
        let counts: Vec<i64> = st.shared.pool.run(keys::route(&app.id), &pipe).await?;
        for (k, c) in accs.keys().zip(counts) {
            hll.insert(k.clone(), c);
        }
    }
    Ok((accs, hll))
}

/// The answer's `result`: a value, or one per dimension combination; per minute unless
/// aggregated.
fn render(q: &GetQuery<'_>, accs: &Accs, hll: &BTreeMap<(i64, Vec<String>), i64>) -> Value {
    let agg = q.measure.aggregation;
    let one = |entries: Vec<(&Vec<String>, Value)>| -> Value {
        if q.dims.is_empty() {
            entries
                .into_iter()
                .next()
                .map_or_else(|| Acc::default().value(agg, Some(0)), |(_, v)| v)
        } else {
            Value::Object(
                entries
                    .into_iter()
                    .map(|(d, v)| (d.join("|"), v))
                    .collect::<Map<_, _>>(),
            )
        }
    };
    let at = |b: i64| {
        accs.iter()
            .filter(move |((bucket, _), _)| *bucket == b)
            .map(move |((bucket, d), a)| (d, a.value(agg, hll.get(&(*bucket, d.clone())).copied())))
    };
    if q.aggregate {
        one(at(0).collect())
    } else {
        let mut per_minute = Map::new();
        for m in &q.minutes {
            let ts = *m * 60_000;
            per_minute.insert(ts.to_string(), one(at(ts).collect()));
        }
        Value::Object(per_minute)
    }
}

/// `POST /realtime/get` (read key): `{start, end, result}`.
async fn get_answer(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = app_for(&req, &st, true).await?;
    let b = body(payload, &st).await?;
    let reports = load(&st.shared.pool, &app.id).await?;
    let keep_ms = st.retention.minute_secs * 1000;
    let q = GetQuery::parse(&b, &reports, st.shared.clock.now_ms(), keep_ms)?;
    let (accs, hll) = accumulate(&st, &app, &q).await?;
    Ok(json_response(
        json!({"start": q.start, "end": q.end, "result": render(&q, &accs, &hll)}).to_string(),
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

// The routes answer errors in Rakam's shape ({"error", "error_code"}), which its clients
// read.

/// `POST /realtime/create` (master key).
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, RakamError> {
    Ok(create_answer(req, payload, st).await?)
}

/// `POST /realtime/delete` (master key).
pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, RakamError> {
    Ok(delete_answer(req, payload, st).await?)
}

/// `POST /realtime/list` (read key).
pub async fn list(req: HttpRequest, st: web::Data<Aggregator>) -> Result<HttpResponse, RakamError> {
    Ok(list_answer(req, st).await?)
}

/// `POST /realtime/get` (read key).
pub async fn get(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, RakamError> {
    Ok(get_answer(req, payload, st).await?)
}
