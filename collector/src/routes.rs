//! `/i` and `/i/bulk`: decode, validate everything, hand to the committer, answer.

use crate::params::Params;
use crate::plan::{Ingest, Item};
use crate::request::WriteRequest;
use crate::user_details;
use crate::Collector;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tally_model::apps::App;
use tally_model::commit::Outcome;
use tally_model::profiles::Op;
use tally_service::ApiError;
use tally_service::{json as json_response, read_body, result};

const MISSING: &str = "Missing parameter \"app_key\" or \"device_id\"";
/// iOS reports this IDFA when tracking is not allowed; Countly ignores such requests.
const ZERO_IDFA: &str = "00000000-0000-0000-0000-000000000000";
const DUPLICATE: &str = "Request ignored: Duplicate request";

/// A request's query string, body and parameters (which borrow from both).
struct Incoming<'a> {
    params: Params<'a>,
    query: &'a str,
    body: &'a [u8],
}

impl<'a> Incoming<'a> {
    fn parse(req: &'a HttpRequest, body: &'a [u8], st: &Collector) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let query = req.query_string();
        let params =
            Params::from_request(query, content_type, body, st.shared.limits.max_json_depth)?;
        Ok(Incoming {
            params,
            query,
            body,
        })
    }
}

/// Countly's checksum: SHA-1 (`checksum`) or SHA-256 (`checksum256`) in hex of the query
/// string or body exactly as sent, without the checksum parameter, followed by the salt.
fn verify_checksum(inc: &Incoming, salt: &str) -> Result<(), ApiError> {
    let (given, sha256) = match (
        inc.params.nonempty("checksum256"),
        inc.params.nonempty("checksum"),
    ) {
        (Some(c), _) => (c, true),
        (None, Some(c)) => (c, false),
        (None, None) => return Err(ApiError::bad("Request does not have checksum")),
    };
    let strip = |raw: &str| -> String {
        raw.split('&')
            .filter(|p| !p.starts_with("checksum=") && !p.starts_with("checksum256="))
            .collect::<Vec<_>>()
            .join("&")
    };
    let mut candidates = vec![strip(inc.query)];
    if let Ok(body) = std::str::from_utf8(inc.body) {
        if !body.is_empty() {
            candidates.push(strip(body));
        }
    }
    let matches = candidates.iter().any(|payload| {
        let digest = if sha256 {
            tally_model::keys::hex(&Sha256::digest(format!("{payload}{salt}").as_bytes()))
        } else {
            tally_model::keys::hex(&Sha1::digest(format!("{payload}{salt}").as_bytes()))
        };
        digest.eq_ignore_ascii_case(given.trim())
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError::bad("Request does not match checksum"))
    }
}

/// The country and city of the request's client, when a GeoIP database is configured
/// and the request does not name them.
fn client_place(req: &HttpRequest, p: &Params<'_>, st: &Collector) -> crate::geo::Place {
    let Some(geo) = st.geo.as_ref() else {
        return crate::geo::Place::default();
    };
    if p.has("country_code") && p.has("city") {
        return crate::geo::Place::default();
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let ip = crate::geo::client_ip(
        p.text("ip_address").as_deref(),
        header("x-forwarded-for"),
        header("x-real-ip"),
        req.peer_addr().map(|a| a.ip()),
    );
    ip.map(|ip| geo.place(ip)).unwrap_or_default()
}

/// The app's rate limit: 429 with `Retry-After` when it is exceeded.
pub(crate) fn limit(st: &Collector, app: &App, weight: usize) -> Result<(), ApiError> {
    st.limiter
        .take(&app.id, weight, std::time::Instant::now())
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })
}

async fn app_for(st: &Collector, key: &str) -> Result<Arc<App>, ApiError> {
    st.shared
        .apps
        .by_write_key(&st.shared.pool, key)
        .await?
        .ok_or_else(|| ApiError::bad("App does not exist"))
}

/// `GET|POST /i`
pub async fn ingest(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Collector>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, &st.shared.limits).await?;
    let inc = Incoming::parse(&req, &body, &st)?;
    let (Some(app_key), Some(device_id)) = (
        inc.params.nonempty("app_key"),
        inc.params.nonempty("device_id"),
    ) else {
        return Err(ApiError::bad(MISSING));
    };
    if device_id == ZERO_IDFA {
        return Ok(result("Ignoring device_id"));
    }
    let app = app_for(&st, &app_key).await?;
    if let Some(salt) = &app.salt {
        verify_checksum(&inc, salt)?;
    }
    limit(&st, &app, 1)?;
    let now_ms = st.shared.clock.now_ms();
    let country = client_place(&req, &inc.params, &st);
    let wr = WriteRequest::from_params(
        &inc.params,
        &st.shared.limits,
        now_ms.div_euclid(1000),
        country,
    )?;
    let profile = match user_details::parse(&inc.params, &st.shared.limits)? {
        Some(ops) => Some(user_details::check(&st.shared, &app, &device_id, ops).await?),
        None => None,
    };
    let merged_from = wr.old_device_id.clone();
    let consent = wr.consent.clone().map(|c| (c, wr.time));
    let work = Ingest {
        items: vec![Item::new(app.clone(), wr, now_ms)],
        limits: st.shared.limits.clone(),
        keep: st.keep,
    };
    let outcomes = st.committer.submit(work, 1).await?;
    if outcomes.first() != Some(&Outcome::Duplicate) {
        // The old id's profile follows its history, before this request's details apply.
        if let Some(old) = &merged_from {
            tally_model::profiles::merge(&st.shared.pool, &app.id, old, &device_id).await?;
        }
        if let Some(ops) = profile {
            user_details::apply(&st.shared, &app, &device_id, ops).await?;
        }
        if let Some((sent, at)) = consent {
            record_consent(&st, &app, &device_id, &sent, at).await?;
        }
    }
    Ok(match outcomes.first() {
        Some(Outcome::Duplicate) => {
            json_response(json!({"result": "Success", "info": DUPLICATE}).to_string())
        }
        _ => result("Success"),
    })
}

/// What is left to do for a committed item of a bulk: its profile moves and consents.
struct Done {
    app: Arc<App>,
    device: String,
    old: Option<String>,
    consent: Option<(serde_json::Map<String, Value>, i64)>,
}

/// Records a device's consents on the request's local day.
async fn record_consent(
    st: &Collector,
    app: &App,
    device: &str,
    sent: &serde_json::Map<String, Value>,
    at: i64,
) -> Result<(), ApiError> {
    let b = tally_model::time::Buckets::at(at, app.timezone);
    tally_model::consent::record(
        &st.shared.pool,
        &app.id,
        device,
        (b.year, b.month, b.day),
        sent,
    )
    .await?;
    Ok(())
}

/// `GET|POST /i/bulk`: `requests` is a JSON array of `/i` parameter objects. Each item is
/// validated on its own; the valid ones are written together, the others are listed in
/// the answer with the reason.
pub async fn bulk(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<Collector>,
) -> Result<HttpResponse, ApiError> {
    let limits = st.shared.limits.clone();
    let body = read_body(payload, &limits).await?;
    let inc = Incoming::parse(&req, &body, &st)?;
    let list = match inc.params.json(
        "requests",
        "Missing parameter \"requests\"",
        limits.max_json_depth,
    )? {
        None => return Err(ApiError::bad("Missing parameter \"requests\"")),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::invalid_param("requests")),
    };
    if list.len() > limits.max_bulk_requests {
        return Err(ApiError::bad(format!(
            "Too many requests in one bulk (at most {})",
            limits.max_bulk_requests
        )));
    }
    let top_key = inc.params.nonempty("app_key");
    if let Some(key) = &top_key {
        let app = app_for(&st, key).await?;
        if let Some(salt) = &app.salt {
            verify_checksum(&inc, salt)?;
        }
    }
    let now_ms = st.shared.clock.now_ms();
    let now = now_ms.div_euclid(1000);
    let mut apps: HashMap<String, Arc<App>> = HashMap::new();
    let mut items = Vec::new();
    let mut rejected = Vec::new();
    for (index, entry) in list.into_iter().enumerate() {
        let Value::Object(obj) = entry else {
            rejected.push(json!({"index": index, "result": "Not a JSON object"}));
            continue;
        };
        let mut p = Params::from_object(obj);
        if !p.has("app_key") {
            if let Some(k) = &top_key {
                p.0.insert("app_key".into(), crate::params::Param::Text(k.clone()));
            }
        }
        let (Some(key), Some(device_id)) = (p.nonempty("app_key"), p.nonempty("device_id")) else {
            rejected.push(json!({"index": index, "result": MISSING}));
            continue;
        };
        if device_id == ZERO_IDFA {
            rejected.push(json!({"index": index, "result": "Ignoring device_id"}));
            continue;
        }
        let app = match apps.get(key.as_ref()) {
            Some(a) => a.clone(),
            None => match app_for(&st, &key).await {
                Ok(a) => {
                    apps.insert(key.into_owned(), a.clone());
                    a
                }
                Err(ApiError::BadRequest(msg)) => {
                    rejected.push(json!({"index": index, "result": msg}));
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let country = client_place(&req, &p, &st);
        let checked = match WriteRequest::from_params(&p, &limits, now, country) {
            Ok(wr) => match user_details::parse(&p, &limits) {
                Ok(None) => Ok((wr, None)),
                Ok(Some(ops)) => user_details::check(&st.shared, &app, &device_id, ops)
                    .await
                    .map(|ops| (wr, Some(ops))),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match checked {
            Ok((wr, profile)) => {
                items.push((index, Item::new(app, wr, st.shared.clock.now_ms()), profile))
            }
            Err(e @ ApiError::BadRequest(_)) => {
                rejected.push(json!({"index": index, "result": e.to_string()}))
            }
            Err(e) => return Err(e),
        }
    }
    for app in apps.values() {
        let n = items
            .iter()
            .filter(|(_, it, _)| it.app.id == app.id)
            .count();
        limit(&st, app, n)?;
    }
    if items.is_empty() {
        let msg = if rejected.is_empty() {
            "No requests in bulk"
        } else {
            "No valid requests in bulk"
        };
        return Err(ApiError::bad(format!("{msg}: {}", Value::Array(rejected))));
    }
    let n = items.len();
    // One unit per app (in order of first appearance): a unit commits in its app's slot.
    let mut units: Vec<Ingest> = Vec::new();
    // Each unit's profile changes, in the order of its items (the order of the outcomes).
    let mut profiles: Vec<Vec<Option<Vec<Op>>>> = Vec::new();
    for (_, it, profile) in items {
        match units.iter().position(|u| u.items[0].app.id == it.app.id) {
            Some(i) => {
                units[i].items.push(it);
                profiles[i].push(profile);
            }
            None => {
                units.push(Ingest {
                    items: vec![it],
                    limits: limits.clone(),
                    keep: st.keep,
                });
                profiles.push(vec![profile]);
            }
        }
    }
    let devices: Vec<Done> = units
        .iter()
        .flat_map(|u| {
            u.items.iter().map(|it| Done {
                app: it.app.clone(),
                device: it.req.device_id.clone(),
                old: it.req.old_device_id.clone(),
                consent: it.req.consent.clone().map(|c| (c, it.req.time)),
            })
        })
        .collect();
    let units = units
        .into_iter()
        .map(|u| {
            let w = u.items.len();
            (u, w)
        })
        .collect();
    let outcomes = st.committer.submit_all(units).await?;
    for ((done, profile), outcome) in devices
        .iter()
        .zip(profiles.into_iter().flatten())
        .zip(&outcomes)
    {
        if *outcome == Outcome::Duplicate {
            continue;
        }
        let (app, device) = (&done.app, &done.device);
        // The old id's profile follows its history, before this item's details apply.
        if let Some(old) = &done.old {
            tally_model::profiles::merge(&st.shared.pool, &app.id, old, device).await?;
        }
        if let Some(ops) = profile {
            user_details::apply(&st.shared, app, device, ops).await?;
        }
        if let Some((sent, at)) = &done.consent {
            record_consent(&st, app, device, sent, *at).await?;
        }
    }
    let duplicates = outcomes
        .iter()
        .filter(|o| **o == Outcome::Duplicate)
        .count();
    Ok(json_response(
        json!({
            "result": "Success",
            "accepted": n - duplicates,
            "duplicates": duplicates,
            "rejected": rejected,
        })
        .to_string(),
    ))
}
