//! A project's key sets (Rakam's `/project/create-api-keys`, `/project/revoke-api-keys`,
//! `/project/check-api-keys`). The sets live with the app in the registry
//! ([`tally_model::apps`]); a revocation is announced to every process, whose caches drop
//! the app at once.

use super::{admin_params, master_app};
use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use tally_model::apps::{self, KeySet, KeySetRefused, Role};
use tally_service::auth::{app_for_key, rakam_key};
use tally_service::{json as json_response, read_json, ApiError, RakamError};

type Res = Result<HttpResponse, RakamError>;

/// Key sets one `/project/check-api-keys` may ask about.
const MAX_CHECKED: usize = 100;

fn answer(set: &KeySet) -> Value {
    json!({
        "id": set.id,
        "write_key": set.write_key,
        "read_key": set.read_key,
        "master_key": set.master_key,
    })
}

fn refusal(r: KeySetRefused) -> RakamError {
    RakamError(match r {
        KeySetRefused::Limit(max) => ApiError::bad(format!(
            "The project has {max} key sets, the most it may have (TALLY_KEY_SETS): revoke one first"
        )),
        KeySetRefused::Last => ApiError::bad(
            "This is the project's last key set: create another before revoking it",
        ),
        KeySetRefused::NoApp => ApiError::NotFound("Project does not exist".into()),
        KeySetRefused::Unknown => ApiError::Forbidden("Invalid master_key".into()),
    })
}

/// `POST /project/create-api-keys` (master key): a new key set for the project.
pub async fn create(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let shared = &st.shared;
    let body = read_json(payload, &shared.limits).await?;
    let app = app_for_key(
        shared,
        rakam_key(&req, Some(&body), Role::Master),
        Role::Master,
    )
    .await?;
    let set = apps::create_key_set(
        &shared.pool,
        &app.id,
        shared.limits.key_sets,
        shared.clock.now_secs(),
    )
    .await?
    .map_err(refusal)?;
    Ok(json_response(answer(&set).to_string()))
}

/// `POST /project/revoke-api-keys` `{project, master_key}`: revokes the key set the master
/// key belongs to (its write and read keys with it). The master key is the authority: a
/// set's own master key revokes it, as in Rakam.
pub async fn revoke(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let shared = &st.shared;
    let p = admin_params(&req, payload, &st).await?;
    let app = master_app(&req, &p, &st).await?;
    let given = req
        .headers()
        .get("master_key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| p.get("master_key").and_then(Value::as_str))
        .unwrap_or_default();
    let set = apps::revoke_key_set(&shared.pool, &app, given)
        .await?
        .map_err(refusal)?;
    shared.apps.clear();
    Ok(json_response(
        json!({"success": true, "message": format!("Key set {} revoked", set.id)}).to_string(),
    ))
}

#[derive(Deserialize)]
struct Check {
    project: String,
    keys: Vec<Keys>,
}

#[derive(Deserialize)]
struct Keys {
    write_key: Option<String>,
    read_key: Option<String>,
    master_key: Option<String>,
}

/// `POST /project/check-api-keys` `{project, keys: [{write_key?, read_key?,
/// master_key?}]}`: for each entry, whether every key it gives is a live key of the project
/// in that role (an entry giving none is false). The keys are their own authority.
pub async fn check(payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let shared = &st.shared;
    let body = read_json(payload, &shared.limits).await?;
    let c: Check = serde_json::from_value(body)
        .map_err(|e| RakamError::bad(format!("Invalid body: {e} (want {{project, keys}})")))?;
    if c.keys.len() > MAX_CHECKED {
        return Err(RakamError::bad(format!(
            "At most {MAX_CHECKED} key sets may be checked at once"
        )));
    }
    let mut out = Vec::with_capacity(c.keys.len());
    for k in &c.keys {
        let given: Vec<(&str, Role)> = [
            (k.write_key.as_deref(), Role::Write),
            (k.read_key.as_deref(), Role::Read),
            (k.master_key.as_deref(), Role::Master),
        ]
        .into_iter()
        .filter_map(|(k, r)| Some((k?, r)))
        .collect();
        let mut ok = !given.is_empty();
        for (key, role) in given {
            // Each key is looked up in the registry (never the cache): a revoked key
            // must read as revoked at once.
            let app = match role {
                Role::Write => apps::by_write_key(&shared.pool, key).await?,
                _ => apps::by_other_key(&shared.pool, key).await?,
            };
            // A key must be exactly the role asked for (a master key given as a write key
            // is not that set's write key).
            ok &= app.is_some_and(|a| {
                a.id.as_str() == c.project
                    && a.key_sets.iter().any(|s| {
                        apps::keys_equal(
                            key,
                            match role {
                                Role::Write => &s.write_key,
                                Role::Read => &s.read_key,
                                Role::Master => &s.master_key,
                            },
                        )
                    })
            });
        }
        out.push(ok);
    }
    Ok(json_response(Value::from(out).to_string()))
}
