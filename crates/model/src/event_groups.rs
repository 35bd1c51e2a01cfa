//! Countly's event groups: a named set of an app's event keys whose data reads as one
//! event (`/o?method=events&event=<group id>`). Kept per app in one hash, id -> the
//! group's JSON document as Countly stores it (`_id`, `app_id`, `name`,
//! `source_events`, `display_map`, `status`, `description`, `order`).

use crate::error::StoreError;
use crate::keys::{self, AppId};
use serde_json::{Map, Value};
use tally_redis::Pool;

/// Every group id starts so, as Countly's do (the reader tells a group from an event key
/// by it).
pub const PREFIX: &str = "[CLY]_group_";

/// Groups one app may have.
pub const MAX_GROUPS: usize = 500;

/// Source events one group may have.
pub const MAX_SOURCES: usize = 500;

/// A new group's id: the prefix and 32 random hex digits.
pub fn new_id() -> String {
    format!("{PREFIX}{}", keys::random_hex(16))
}

/// The app's groups, in their `order` (unordered ones last, by id).
pub async fn list(pool: &Pool, app: &AppId) -> Result<Vec<Map<String, Value>>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HVALS").arg(keys::event_groups(app));
    let (docs,): (Vec<String>,) = pool.run(keys::route(app), &pipe).await?;
    let mut out: Vec<Map<String, Value>> = docs
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let order = |g: &Map<String, Value>| g.get("order").and_then(Value::as_i64).unwrap_or(i64::MAX);
    let id = |g: &Map<String, Value>| {
        g.get("_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    out.sort_by(|a, b| order(a).cmp(&order(b)).then_with(|| id(a).cmp(&id(b))));
    Ok(out)
}

/// One group.
pub async fn get(
    pool: &Pool,
    app: &AppId,
    id: &str,
) -> Result<Option<Map<String, Value>>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGET").arg(keys::event_groups(app)).arg(id);
    let (doc,): (Option<String>,) = pool.run(keys::route(app), &pipe).await?;
    Ok(doc.and_then(|d| serde_json::from_str(&d).ok()))
}

/// Stores groups (new or changed) whole.
pub async fn put(
    pool: &Pool,
    app: &AppId,
    groups: &[Map<String, Value>],
) -> Result<(), StoreError> {
    if groups.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    let cmd = pipe.cmd("HSET").arg(keys::event_groups(app));
    for g in groups {
        let id = g.get("_id").and_then(Value::as_str).unwrap_or_default();
        cmd.arg(id).arg(Value::Object(g.clone()).to_string());
    }
    pipe.ignore();
    pool.run::<()>(keys::route(app), &pipe).await?;
    Ok(())
}

/// Removes groups; returns how many there were.
pub async fn delete(pool: &Pool, app: &AppId, ids: &[String]) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    pipe.cmd("HDEL").arg(keys::event_groups(app)).arg(ids);
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n)
}

/// How many groups the app has.
pub async fn count(pool: &Pool, app: &AppId) -> Result<usize, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HLEN").arg(keys::event_groups(app));
    let (n,): (usize,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n)
}
