//! The bucket events API (PM2-style, `../shared/seeds/pm2-bucket-events-api.txt`): a
//! bucket is an app, `:id` its project id, `Authorization: Bearer <key>` its read key (or
//! master key; deleting needs the master key).

use crate::rollup::{field, Entry};
use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::TimeZone;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tally_model::apps::{self, App, Role};
use tally_model::counters::{Reads, StreamPage};
use tally_model::keys::{self, AppId};
use tally_model::time::{local_date, local_day_start, Buckets};
use tally_service::ApiError;
use tally_service::{json as json_response, read_body};

/// Stream entries read per page while filtering raw events.
const PAGE: usize = 1000;

async fn bucket(
    req: &HttpRequest,
    st: &Aggregator,
    id: &str,
    master: bool,
) -> Result<Arc<App>, ApiError> {
    let shared = &st.shared;
    let id = AppId::parse(id).ok_or_else(|| ApiError::invalid_param("id"))?;
    let token = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("Missing Authorization: Bearer <key>".into()))?;
    let app = shared
        .apps
        .by_id(&shared.pool, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Bucket does not exist".into()))?;
    let role = if master { Role::Master } else { Role::Read };
    if !app.allows(token, role) {
        return Err(ApiError::Forbidden(
            if master {
                "This needs the master key"
            } else {
                "Invalid key"
            }
            .into(),
        ));
    }
    Ok(app)
}

async fn body<T: for<'de> Deserialize<'de>>(
    payload: web::Payload,
    st: &Aggregator,
) -> Result<T, ApiError> {
    let raw = read_body(payload, &st.shared.limits).await?;
    let raw = if raw.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &raw[..]
    };
    serde_json::from_slice(raw).map_err(|e| ApiError::bad(format!("Invalid parameters: {e}")))
}

/// Which events a call is about: a key, optionally narrowed by `app_name` and
/// `server_name` segmentation values.
#[derive(Deserialize)]
struct Selection {
    event_name: Option<String>,
    app_name: Option<String>,
    server_name: Option<String>,
}

impl Selection {
    fn event(&self) -> Result<&str, ApiError> {
        self.event_name
            .as_deref()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| ApiError::bad("Missing parameter \"event_name\""))
    }
}

#[derive(Deserialize)]
struct Retrieve {
    #[serde(flatten)]
    sel: Selection,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `POST /api/bucket/:id/data/events`: raw events, newest first.
pub async fn retrieve(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = bucket(&req, &st, &path, false).await?;
    let p: Retrieve = body(payload, &st).await?;
    let event = p.sel.event()?.to_string();
    let max = st.max_limit as i64;
    let limit = p.limit.unwrap_or(100);
    let offset = p.offset.unwrap_or(0);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad(format!(
            "Invalid parameter \"limit\": 1 to {max}"
        )));
    }
    if offset < 0 {
        return Err(ApiError::invalid_param("offset"));
    }
    let (limit, offset) = (limit as usize, offset as usize);
    let mut out = Vec::new();
    let mut skipped = 0;
    walk_back(&st, &app.id, |e| {
        let wanted = e.kind == "e"
            && e.key == event
            && p.sel
                .app_name
                .as_deref()
                .is_none_or(|a| e.seg("app_name") == Some(a))
            && p.sel
                .server_name
                .as_deref()
                .is_none_or(|s| e.seg("server_name") == Some(s));
        if wanted {
            if skipped < offset {
                skipped += 1;
            } else {
                out.push(entry_json(&e));
            }
        }
        out.len() < limit
    })
    .await?;
    Ok(json_response(Value::Array(out).to_string()))
}

/// Walks an app's raw stream from its newest entry back, a page at a time, handing each
/// entry's events (a request's in reverse too: newest first) to `take` until it answers
/// `false` or `max_scan` entries were read.
pub(crate) async fn walk_back(
    st: &Aggregator,
    app: &AppId,
    mut take: impl FnMut(Entry) -> bool,
) -> Result<(), tally_model::StoreError> {
    let stream = keys::stream(app);
    let mut end = "+".to_string();
    let mut scanned = 0;
    while scanned < st.max_scan {
        let mut pipe = redis::pipe();
        pipe.cmd("XREVRANGE")
            .arg(&stream)
            .arg(&end)
            .arg("-")
            .arg("COUNT")
            .arg(PAGE);
        let (page,): (StreamPage,) = st.shared.pool.run(keys::route(app), &pipe).await?;
        let n = page.len();
        scanned += n;
        for (id, fields) in &page {
            for e in Entry::parse_all(id, fields).into_iter().rev() {
                if !take(e) {
                    return Ok(());
                }
            }
        }
        match page.last() {
            Some((last, _)) if n == PAGE => end = format!("({last}"),
            _ => return Ok(()),
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Stats {
    #[serde(flatten)]
    sel: Selection,
    days: Option<i64>,
    interval: Option<String>,
}

/// `POST /api/bucket/:id/data/events/stats`: `[[timestamp_ms, count], ...]`, oldest first,
/// zero where nothing happened.
pub async fn stats(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = bucket(&req, &st, &path, false).await?;
    let p: Stats = body(payload, &st).await?;
    let event = p.sel.event()?.to_string();
    let days = p.days.unwrap_or(2);
    let interval = p.interval.as_deref().unwrap_or("minute");
    let keep_days = |secs: i64| (secs / 86_400).max(1);
    let max_days = match interval {
        "minute" => keep_days(st.retention.minute_secs),
        "hour" | "day" => keep_days(st.retention.hour_secs),
        _ => {
            return Err(ApiError::bad(
                "Invalid parameter \"interval\": minute, hour or day",
            ))
        }
    };
    if !(1..=max_days).contains(&days) {
        return Err(ApiError::bad(format!(
            "Invalid parameter \"days\": 1 to {max_days} for interval {interval}"
        )));
    }
    let f = field(
        "c",
        &event,
        p.sel.app_name.as_deref(),
        p.sel.server_name.as_deref(),
    );
    let now = st.shared.clock.now_secs();
    let tz = app.timezone;
    // (timestamp ms, rollup keys summed into the point)
    let mut points: Vec<(i64, Vec<String>)> = Vec::new();
    match interval {
        "minute" => {
            let last = now.div_euclid(60);
            for m in (last - days * 1440 + 1)..=last {
                points.push((m * 60_000, vec![keys::rollup_minute(&app.id, m)]));
            }
        }
        "hour" => {
            let last = i64::from(Buckets::at(now, tz).hour_index);
            for h in (last - days * 24 + 1)..=last {
                points.push((
                    local_hour_start(h, tz) * 1000,
                    vec![keys::rollup_hour(&app.id, h)],
                ));
            }
        }
        _ => {
            let today = local_date(now, tz);
            for back in (0..days).rev() {
                let date = today - chrono::Duration::days(back);
                let first = i64::from(Buckets::at(local_day_start(date, tz), tz).hour_index);
                let next = i64::from(
                    Buckets::at(local_day_start(date + chrono::Duration::days(1), tz), tz)
                        .hour_index,
                );
                let hours = (first..next.max(first + 1))
                    .map(|h| keys::rollup_hour(&app.id, h))
                    .collect();
                points.push((local_day_start(date, tz) * 1000, hours));
            }
        }
    }
    let mut pipe = redis::pipe();
    for (_, keys) in &points {
        for k in keys {
            pipe.cmd("HGET").arg(k).arg(&f);
        }
    }
    let counts: Vec<Option<i64>> = st.shared.pool.run(keys::route(&app.id), &pipe).await?;
    let mut it = counts.into_iter();
    let out: Vec<Value> = points
        .iter()
        .map(|(ts, keys)| {
            let c: i64 = keys.iter().map(|_| it.next().flatten().unwrap_or(0)).sum();
            json!([ts, c])
        })
        .collect();
    Ok(json_response(Value::Array(out).to_string()))
}

/// The UTC second a local wall-clock hour (hours since 1970 on the local clock) starts;
/// an hour that DST skips "starts" where the clock jumped to.
fn local_hour_start(hour: i64, tz: chrono_tz::Tz) -> i64 {
    let naive = chrono::DateTime::from_timestamp(hour * 3600, 0)
        .unwrap_or_default()
        .naive_utc();
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .or_else(|| {
            tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
                .map(|t| t.timestamp() - 3600)
        })
        .unwrap_or(hour * 3600)
}

/// `GET /api/bucket/:id/data/eventsKeysByApp`: event keys grouped by `app_name`.
pub async fn keys_by_app(
    req: HttpRequest,
    path: web::Path<String>,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = bucket(&req, &st, &path, false).await?;
    let mut r = Reads::new();
    let names_slot = r.set(&keys::rollup_app_names(&app.id));
    let names = r
        .run(&st.shared.pool, keys::route(&app.id))
        .await?
        .set(names_slot);
    let mut r = Reads::new();
    let slots: Vec<_> = names
        .iter()
        .map(|n| r.set(&keys::rollup_keys_by_app(&app.id, n)))
        .collect();
    let a = r.run(&st.shared.pool, keys::route(&app.id)).await?;
    let out: Vec<Value> = names
        .iter()
        .zip(slots)
        .map(|(n, s)| json!({"app_name": if n.is_empty() { Value::Null } else { Value::from(n.as_str()) }, "events": a.set(s)}))
        .collect();
    Ok(json_response(Value::Array(out).to_string()))
}

/// `DELETE /api/bucket/:id/data/events/delete_all`: the raw events and rollups go (SCAN +
/// UNLINK), the Countly counters stay.
pub async fn delete_all(
    req: HttpRequest,
    path: web::Path<String>,
    st: web::Data<Aggregator>,
) -> Result<HttpResponse, ApiError> {
    let app = bucket(&req, &st, &path, true).await?;
    let deleted = apps::delete_events(&st.shared.pool, &app.id).await?;
    Ok(json_response(
        json!({"result": "Success", "deleted_keys": deleted}).to_string(),
    ))
}

/// As the bucket events API returns it.
fn entry_json(e: &Entry) -> Value {
    serde_json::json!({
        "id": e.id,
        "event_name": e.key,
        "app_name": e.seg("app_name"),
        "server_name": e.seg("server_name"),
        "device_id": e.device,
        "count": e.count,
        "sum": e.sum,
        "dur": e.dur,
        "segmentation": e.segmentation,
        "timestamp": e.ts,
        "received": e.received,
    })
}
