//! User profiles: the one profile store that Rakam's users API writes and reads (and
//! Countly's `user_details` will write). A profile is a hash of property -> JSON value,
//! typed by the app's profile schema ([`crate::schema::load_profiles`]) like a
//! collection's fields, plus its own `$id` and `$created`. A request's operations on one
//! user are applied atomically by one script ([`apply`]), which also enforces the limits
//! on properties and bytes before it writes anything. Profiles go with their device when
//! it is forgotten and with their app when it is deleted.

use crate::error::StoreError;
use crate::keys::{self, AppId};
use crate::schema::{self, Added, FieldType, Scalar, Schema};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tally_redis::Pool;

/// One change to a profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Set(String, Value),
    /// Sets the property only when the profile does not have it yet.
    SetOnce(String, Value),
    /// Adds to a number (a missing property counts as 0).
    Incr(String, f64),
    /// Multiplies a number (a missing property counts as 0).
    Mul(String, f64),
    /// Keeps the larger number (a missing property takes the value).
    Max(String, f64),
    /// Keeps the smaller number (a missing property takes the value).
    Min(String, f64),
    /// Appends the values to a list (a missing property is an empty list).
    Push(String, Vec<Value>),
    /// Appends the values the list does not have yet.
    AddToSet(String, Vec<Value>),
    /// Removes every element equal to one of the values.
    Pull(String, Vec<Value>),
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

/// Types each operation's value by the app's profile schema (`known`, plus the fields
/// earlier values of the same request infer into `adding`), as collections' fields are:
/// a value the schema cannot read, a name that is no property's, or arithmetic on a
/// property that is not a number is refused with why.
fn typed(
    known: &Schema,
    adding: &mut BTreeMap<String, FieldType>,
    op: Op,
    max_name: usize,
) -> Result<Op, String> {
    let name = match &op {
        Op::Set(n, _)
        | Op::SetOnce(n, _)
        | Op::Incr(n, _)
        | Op::Mul(n, _)
        | Op::Max(n, _)
        | Op::Min(n, _)
        | Op::Push(n, _)
        | Op::AddToSet(n, _)
        | Op::Pull(n, _)
        | Op::Unset(n) => n.clone(),
    };
    if name.is_empty() || name.starts_with('$') || name.chars().count() > max_name {
        return Err(format!("Invalid property name {name:?}"));
    }
    let read = |v: Value, adding: &mut BTreeMap<String, FieldType>| {
        let mut m = Map::new();
        m.insert(name.clone(), v);
        let read = schema::check("user profiles", known, adding, &m).map_err(|e| e.to_string())?;
        Ok::<Value, String>(read.get(&name).cloned().unwrap_or(Value::Null))
    };
    let number = |by: f64, adding: &mut BTreeMap<String, FieldType>| match known
        .fields
        .get(&name)
        .or_else(|| adding.get(&name))
        .copied()
    {
        None => {
            let inferred = if by.fract() == 0.0 {
                Scalar::Long
            } else {
                Scalar::Double
            };
            adding.insert(name.clone(), FieldType::Scalar(inferred));
            Ok(())
        }
        Some(FieldType::Scalar(Scalar::Long | Scalar::Integer)) if by.fract() != 0.0 => Err(
            format!("Property \"{name}\" is a whole number: cannot use {by} on it"),
        ),
        Some(FieldType::Scalar(Scalar::Long | Scalar::Integer | Scalar::Double)) => Ok(()),
        Some(other) => Err(format!(
            "Property \"{name}\" is {}: it is not a number",
            other.name()
        )),
    };
    let list = |vs: Vec<Value>, adding: &mut BTreeMap<String, FieldType>| match read(
        Value::Array(vs),
        adding,
    )? {
        Value::Array(vs) => Ok(vs),
        _ => Err(format!("Property \"{name}\" is not a list")),
    };
    Ok(match op {
        Op::Set(n, v) => Op::Set(n, read(v, adding)?),
        Op::SetOnce(n, v) => Op::SetOnce(n, read(v, adding)?),
        Op::Incr(n, by) => number(by, adding).map(|()| Op::Incr(n, by))?,
        Op::Mul(n, by) => number(by, adding).map(|()| Op::Mul(n, by))?,
        Op::Max(n, by) => number(by, adding).map(|()| Op::Max(n, by))?,
        Op::Min(n, by) => number(by, adding).map(|()| Op::Min(n, by))?,
        Op::Push(n, vs) => Op::Push(n, list(vs, adding)?),
        Op::AddToSet(n, vs) => Op::AddToSet(n, list(vs, adding)?),
        Op::Pull(n, vs) => Op::Pull(n, list(vs, adding)?),
        Op::Unset(n) => Op::Unset(n),
    })
}

/// Types every user's operations by the app's profile schema and adds the fields they
/// infer to it (within `max_properties`): the updates ready for [`apply`] or [`check`],
/// or why they are refused (nothing is written then).
pub async fn prepare(
    pool: &Pool,
    app: &AppId,
    updates: Vec<(String, Vec<Op>)>,
    max_name: usize,
    max_properties: usize,
) -> Result<Result<Vec<(String, Vec<Op>)>, String>, StoreError> {
    let known = schema::load_profiles(pool, app).await?;
    let mut adding = BTreeMap::new();
    let mut out = Vec::with_capacity(updates.len());
    for (user, ops) in updates {
        let mut typed_ops = Vec::with_capacity(ops.len());
        for op in ops {
            match typed(&known, &mut adding, op, max_name) {
                Ok(op) => typed_ops.push(op),
                Err(why) => return Ok(Err(why)),
            }
        }
        out.push((user, typed_ops));
    }
    if !adding.is_empty() {
        if let Added::OverLimit(msg) =
            schema::add_to_profiles(pool, app, &adding, max_properties).await?
        {
            return Ok(Err(msg));
        }
    }
    Ok(Ok(out))
}

const UPDATE_SCRIPT: &str = include_str!("profile_update.lua");

/// Whether the script writes, or only says whether it would succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    DryRun,
}

fn push_update(
    pipe: &mut redis::Pipeline,
    app: &AppId,
    user: &str,
    ops: &[Op],
    b: Bounds,
    now_ms: i64,
    mode: Mode,
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
        .arg(now_ms)
        .arg(u8::from(mode == Mode::DryRun));
    for op in ops {
        match op {
            Op::Set(n, v) => cmd.arg("set").arg(n).arg(v.to_string()),
            Op::SetOnce(n, v) => cmd.arg("once").arg(n).arg(v.to_string()),
            Op::Incr(n, by) => cmd.arg("incr").arg(n).arg(by.to_string()),
            Op::Mul(n, by) => cmd.arg("mul").arg(n).arg(by.to_string()),
            Op::Max(n, v) => cmd.arg("max").arg(n).arg(v.to_string()),
            Op::Min(n, v) => cmd.arg("min").arg(n).arg(v.to_string()),
            Op::Push(n, v) => cmd
                .arg("push")
                .arg(n)
                .arg(Value::from(v.clone()).to_string()),
            Op::AddToSet(n, v) => cmd
                .arg("addtoset")
                .arg(n)
                .arg(Value::from(v.clone()).to_string()),
            Op::Pull(n, v) => cmd
                .arg("pull")
                .arg(n)
                .arg(Value::from(v.clone()).to_string()),
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
    run(pool, app, updates, bounds, now_ms, Mode::Write).await
}

/// What [`apply`] would answer, writing nothing: for a caller that must refuse a request
/// whole before it writes anything else of it.
pub async fn check(
    pool: &Pool,
    app: &AppId,
    updates: &[(String, Vec<Op>)],
    bounds: Bounds,
) -> Result<Vec<Applied>, StoreError> {
    run(pool, app, updates, bounds, 0, Mode::DryRun).await
}

async fn run(
    pool: &Pool,
    app: &AppId,
    updates: &[(String, Vec<Op>)],
    bounds: Bounds,
    now_ms: i64,
    mode: Mode,
) -> Result<Vec<Applied>, StoreError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (user, ops) in updates {
        push_update(&mut pipe, app, user, ops, bounds, now_ms, mode);
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

const MERGE_SCRIPT: &str = r#"
local old = redis.call('HGETALL', KEYS[1])
if #old == 0 then return 0 end
for i = 1, #old, 2 do
  if old[i] ~= '$id' then redis.call('HSETNX', KEYS[2], old[i], old[i + 1]) end
end
redis.call('HSET', KEYS[2], '$id', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
"#;

/// Moves a user's profile to a new id when a Countly device id changed with merge: the
/// properties the new profile lacks are copied (Countly's `mergeUserProperties` keeps the
/// new user's values), the old profile goes. Returns whether there was one to move.
pub async fn merge(pool: &Pool, app: &AppId, old: &str, new: &str) -> Result<bool, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(MERGE_SCRIPT)
        .arg(3)
        .arg(keys::profile(app, old))
        .arg(keys::profile(app, new))
        .arg(keys::profiles(app))
        .arg(old)
        .arg(new);
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n > 0)
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
