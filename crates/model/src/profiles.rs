//! User profiles: the one profile store that Rakam's users API writes and reads (and
//! Countly's `user_details` will write). A profile is a hash of property -> JSON value,
//! typed by the app's profile schema ([`crate::schema::load_profiles`]) like a
//! collection's fields, plus its own `$id` and `$created`. A request's operations on one
//! user are applied atomically by one script ([`apply`]), which also enforces the limits
//! on properties and bytes before it writes anything. Profiles go with their device when
//! it is forgotten and with their app when it is deleted.

use crate::error::StoreError;
use crate::keys::{self, AppId};
use serde_json::{Map, Value};
use tally_redis::Pool;

/// One change to a profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Set(String, Value),
    /// Sets the property only when the profile does not have it yet.
    SetOnce(String, Value),
    /// Adds to a number (a missing property counts as 0).
    Incr(String, f64),
    Unset(String),
}

/// How large a profile may grow.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub properties: usize,
    /// Property names and JSON values together.
    pub bytes: usize,
}

/// What became of a user's operations: applied, or refused whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Done,
    Refused(String),
}

const UPDATE_SCRIPT: &str = include_str!("profile_update.lua");

fn push_update(
    pipe: &mut redis::Pipeline,
    app: &AppId,
    user: &str,
    ops: &[Op],
    b: Bounds,
    now_ms: i64,
) {
    let cmd = pipe
        .cmd("EVAL")
        .arg(UPDATE_SCRIPT)
        .arg(2)
        .arg(keys::profile(app, user))
        .arg(keys::profiles(app))
        .arg(user)
        .arg(b.properties)
        .arg(b.bytes)
        .arg(now_ms);
    for op in ops {
        match op {
            Op::Set(n, v) => cmd.arg("set").arg(n).arg(v.to_string()),
            Op::SetOnce(n, v) => cmd.arg("once").arg(n).arg(v.to_string()),
            Op::Incr(n, by) => cmd.arg("incr").arg(n).arg(by.to_string()),
            Op::Unset(n) => cmd.arg("unset").arg(n).arg(""),
        };
    }
}

/// Applies each user's operations, in order and atomically per user, in one round trip.
/// A user whose operations break a limit (or increment text) is left as it was, and its
/// answer says why; the others are applied.
pub async fn apply(
    pool: &Pool,
    app: &AppId,
    updates: &[(String, Vec<Op>)],
    bounds: Bounds,
    now_ms: i64,
) -> Result<Vec<Applied>, StoreError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (user, ops) in updates {
        push_update(&mut pipe, app, user, ops, bounds, now_ms);
    }
    let replies = pool.run_each(keys::route(app), &pipe).await?;
    Ok((0..updates.len())
        .map(|i| match replies.error(i) {
            None => Applied::Done,
            Some(e) => Applied::Refused(e.split_once(' ').map_or(e, |(_, m)| m).to_string()),
        })
        .collect())
}

/// The users' profiles (`None` for a user without one), their own `$` fields left out.
pub async fn get(
    pool: &Pool,
    app: &AppId,
    users: &[String],
) -> Result<Vec<Option<Map<String, Value>>>, StoreError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for u in users {
        pipe.cmd("HGETALL").arg(keys::profile(app, u));
    }
    let replies = pool.run_reads(keys::route(app), &pipe).await?;
    Ok((0..users.len())
        .map(|i| {
            let pairs = replies.pairs(i);
            (!pairs.is_empty()).then(|| {
                pairs
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with('$'))
                    .map(|(k, v)| {
                        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
                        (k.to_string(), v)
                    })
                    .collect()
            })
        })
        .collect())
}

/// One page of the app's user ids (`SSCAN`: a cursor of 0 starts and, returned, ends).
pub async fn page(
    pool: &Pool,
    app: &AppId,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<String>), StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("SSCAN")
        .arg(keys::profiles(app))
        .arg(cursor)
        .arg("COUNT")
        .arg(count);
    let ((next, ids),): ((u64, Vec<String>),) = pool.run(keys::route(app), &pipe).await?;
    Ok((next, ids))
}

/// How many users of the app have a profile.
pub async fn count(pool: &Pool, app: &AppId) -> Result<u64, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("SCARD").arg(keys::profiles(app));
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n)
}

/// Removes a user's profile. Returns whether there was one.
pub async fn forget(pool: &Pool, app: &AppId, user: &str) -> Result<bool, StoreError> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("UNLINK")
        .arg(keys::profile(app, user))
        .cmd("SREM")
        .arg(keys::profiles(app))
        .arg(user)
        .ignore();
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n > 0)
}
