//! Rakam's `/project/stats` (events today, this month and in all, users, collections and
//! key sets per project) and `/project/list` (every project, under the admin key).

use super::admin_allowed;
use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tally_model::apps::{self, App, Role};
use tally_model::counters::{day_field, Reads};
use tally_model::keys::{self, AppId, Family, Period};
use tally_model::profiles;
use tally_model::time::Buckets;
use tally_model::StoreError;
use tally_redis::Pool;
use tally_service::auth::{app_for_key, rakam_key};
use tally_service::{json as json_response, read_json, ApiError, RakamError};

type Res = Result<HttpResponse, RakamError>;

/// Projects one `/project/stats` may ask about.
const MAX_PROJECTS: usize = 100;

/// Empty months in a row, before the project was created, after which the count of all
/// events stops looking further back (events may be dated before the project existed).
const EMPTY_MONTHS_BEFORE: u32 = 12;

fn lock_key(req: &HttpRequest) -> Option<&str> {
    req.headers().get("lock_key").and_then(|v| v.to_str().ok())
}

/// `POST /project/list`: with the admin key (`{lock_key}` or the `lock_key` header) every
/// project's id, the name the other routes take as `project`; with a project's read or
/// master key (as Rakam's generated client sends it, in the `read_key` header) that
/// project's id alone.
pub async fn list(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let shared = &st.shared;
    let body = read_json(payload, &shared.limits).await?;
    let lock = body
        .get("lock_key")
        .and_then(Value::as_str)
        .or_else(|| lock_key(&req));
    let ids: Vec<Value> = if lock.is_some() {
        admin_allowed(shared, lock)?;
        apps::list(&shared.pool)
            .await?
            .iter()
            .map(|id| Value::from(id.as_str()))
            .collect()
    } else {
        let app = app_for_key(shared, rakam_key(&req, Some(&body), Role::Read), Role::Read)
            .await
            .map_err(|_| {
                RakamError(ApiError::Forbidden(
                    "Send the admin lock_key (every project) or a project's read_key".into(),
                ))
            })?;
        vec![Value::from(app.id.as_str())]
    };
    Ok(json_response(Value::from(ids).to_string()))
}

/// `POST /project/stats` `["<master key>", ...]`: each project's statistics, keyed as
/// asked. Each entry is a project's master key, or, with the admin key in the `lock_key`
/// header, a project id.
pub async fn stats(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let shared = &st.shared;
    let body = read_json(payload, &shared.limits).await?;
    let asked: Vec<String> = serde_json::from_value(body).map_err(|_| {
        RakamError::bad("The body must be an array of master keys (or, with lock_key, project ids)")
    })?;
    if asked.len() > MAX_PROJECTS {
        return Err(RakamError::bad(format!(
            "At most {MAX_PROJECTS} projects may be asked about at once"
        )));
    }
    let admin = lock_key(&req).is_some() && admin_allowed(shared, lock_key(&req)).is_ok();
    let now = shared.clock.now_secs();
    let mut out = Map::new();
    for (i, entry) in asked.iter().enumerate() {
        let by_id = match AppId::parse(entry) {
            Some(id) if admin => apps::by_id(&shared.pool, &id).await?,
            _ => None,
        };
        let app = match by_id {
            Some(app) => app,
            None => apps::by_other_key(&shared.pool, entry)
                .await?
                .filter(|a| a.allows(entry, Role::Master))
                .ok_or_else(|| {
                    RakamError(ApiError::Forbidden(format!(
                        "Entry {i} is neither a project's master key nor, with the admin lock_key, a project id"
                    )))
                })?,
        };
        out.insert(entry.clone(), of(&shared.pool, &app, now).await?);
    }
    Ok(json_response(Value::Object(out).to_string()))
}

/// One project's statistics. Events are counted from the pre-aggregated day counters of
/// each collection (event key): today and this month in the project's timezone, and in
/// all (every month from the project's creation to now, and the months before it back to
/// a year without events).
async fn of(pool: &Pool, app: &App, now: i64) -> Result<Value, StoreError> {
    let route = keys::route(&app.id);
    let mut meta = Reads::new();
    let events = meta.set(&keys::meta(&app.id, "events"));
    let answers = meta.run(pool, route).await?;
    let families: Vec<Family> = answers
        .set(events)
        .iter()
        .map(|e| Family::event(e))
        .collect();
    let today = Buckets::at(now, app.timezone);
    let created = Buckets::at(app.created.min(now), app.timezone);
    let (mut all, mut monthly, mut daily) = (0i64, 0i64, 0i64);
    let mut month = today.month_index;
    let mut empty_before = 0;
    while !families.is_empty() && empty_before < EMPTY_MONTHS_BEFORE {
        let (y, m) = ((month / 12) as i32, month % 12 + 1);
        let mut reads = Reads::new();
        let slots: Vec<_> = families
            .iter()
            .map(|f| reads.hash(&keys::counters(&app.id, f, Period::Month(y, m))))
            .collect();
        let answers = reads.run(pool, route).await?;
        let mut in_month = 0i64;
        for slot in slots {
            for (field, value) in answers.hash_pairs(slot) {
                let Some((day, "c")) = day_field(field) else {
                    continue;
                };
                let n: i64 = value.parse().unwrap_or(0);
                in_month += n;
                if month == today.month_index && day == today.day {
                    daily += n;
                }
            }
        }
        if month == today.month_index {
            monthly = in_month;
        }
        all += in_month;
        if month < created.month_index {
            empty_before = if in_month == 0 { empty_before + 1 } else { 0 };
        }
        match month.checked_sub(1) {
            Some(m) => month = m,
            None => break,
        }
    }
    Ok(json!({
        "allEvents": all,
        "monthlyEvents": monthly,
        "dailyEvents": daily,
        "collections": families.len(),
        "users": profiles::count(pool, &app.id).await?,
        "key_sets": app.key_sets.len(),
    }))
}
