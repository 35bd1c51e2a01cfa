//! Countly's `user_details`: a device's profile (name, username, email, organization,
//! phone, picture, gender, birth year) and its `custom` properties with Countly's
//! operators, written to the one profile store that Rakam's `/user/*` reads
//! ([`tally_model::profiles`]): the device id is the user id.
//!
//! A request's profile changes are typed and checked (a dry run of the same script that
//! writes them) before its counters are committed, so a refused profile is a 400 that
//! writes nothing; they are applied after the commit, and not for a request the commit
//! found to be a retry already counted (an `$inc` must not count twice).

use crate::params::Params;
use serde_json::{Map, Value};
use tally_config::Limits;
use tally_model::apps::App;
use tally_model::profiles::{self, Applied, Bounds, Op};
use tally_service::{ApiError, Shared};

/// Countly's own profile fields, stored under these names.
const FIELDS: [&str; 7] = [
    "name",
    "username",
    "email",
    "organization",
    "phone",
    "picture",
    "gender",
];

const INVALID: &str = "Invalid parameter \"user_details\"";

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad(format!("{INVALID}: {why}"))
}

/// The profile operations of a request's `user_details` (`None` without one).
pub fn parse(p: &Params<'_>, limits: &Limits) -> Result<Option<Vec<Op>>, ApiError> {
    let Some(v) = p.json("user_details", INVALID, limits.max_json_depth)? else {
        return Ok(None);
    };
    let Value::Object(details) = v else {
        return Err(bad("not a JSON object"));
    };
    let mut ops = Vec::new();
    for (k, v) in &details {
        match k.as_str() {
            "custom" => match v {
                Value::Object(custom) => custom_ops(custom, &mut ops)?,
                Value::Null => {}
                _ => return Err(bad("\"custom\" is not an object")),
            },
            "byear" => ops.push(match v {
                Value::Null => Op::Unset("byear".into()),
                Value::String(s) if s.is_empty() => Op::Unset("byear".into()),
                _ => Op::Set("byear".into(), Value::from(birth_year(v)?)),
            }),
            f if FIELDS.contains(&f) => ops.push(match v {
                Value::Null => Op::Unset(f.into()),
                Value::String(s) if s.is_empty() => Op::Unset(f.into()),
                Value::String(_) => Op::Set(f.into(), v.clone()),
                Value::Number(n) => Op::Set(f.into(), Value::String(n.to_string())),
                _ => return Err(bad(format!("\"{f}\" is not text"))),
            }),
            // Countly's SDKs send nothing else here; other keys are ignored, as there.
            _ => {}
        }
    }
    if ops.len() > limits.user_properties {
        return Err(bad(format!(
            "more than {} properties (TALLY_USER_PROPERTY_LIMIT)",
            limits.user_properties
        )));
    }
    Ok(Some(ops))
}

fn birth_year(v: &Value) -> Result<i64, ApiError> {
    let y = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    y.filter(|y| y.fract() == 0.0 && (1800.0..=9999.0).contains(y))
        .map(|y| y as i64)
        .ok_or_else(|| bad("\"byear\" is not a year"))
}

fn number(key: &str, op: &str, v: &Value) -> Result<f64, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n: &f64| n.is_finite())
        .ok_or_else(|| bad(format!("custom.{key}.{op} is not a number")))
}

fn values(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// `custom`: a plain value sets the property (`""` unsets it, as the SDKs' `unset`
/// sends); an object of operators applies each.
fn custom_ops(custom: &Map<String, Value>, ops: &mut Vec<Op>) -> Result<(), ApiError> {
    for (key, v) in custom {
        let name = key.clone();
        match v {
            Value::String(s) if s.is_empty() => ops.push(Op::Unset(name)),
            Value::Null => ops.push(Op::Unset(name)),
            Value::Object(o) if o.keys().any(|k| k.starts_with('$')) => {
                for (op, arg) in o {
                    ops.push(match op.as_str() {
                        "$set" => Op::Set(name.clone(), arg.clone()),
                        "$setOnce" => Op::SetOnce(name.clone(), arg.clone()),
                        "$inc" => Op::Incr(name.clone(), number(key, op, arg)?),
                        "$mul" => Op::Mul(name.clone(), number(key, op, arg)?),
                        "$max" => Op::Max(name.clone(), number(key, op, arg)?),
                        "$min" => Op::Min(name.clone(), number(key, op, arg)?),
                        "$push" => Op::Push(name.clone(), values(arg)),
                        "$addToSet" => Op::AddToSet(name.clone(), values(arg)),
                        "$pull" => Op::Pull(name.clone(), values(arg)),
                        "$unset" => Op::Unset(name.clone()),
                        other => {
                            return Err(bad(format!(
                                "custom.{key}: unknown operator {other:?} (Countly's are $set, $setOnce, $inc, $mul, $max, $min, $push, $addToSet, $pull, $unset)"
                            )))
                        }
                    });
                }
            }
            Value::Object(_) => return Err(bad(format!("custom.{key} is an object"))),
            _ => ops.push(Op::Set(name, v.clone())),
        }
    }
    Ok(())
}

fn bounds(limits: &Limits) -> Bounds {
    Bounds {
        properties: limits.user_properties,
        bytes: limits.user_profile_bytes,
    }
}

/// Types the operations by the app's profile schema and checks that the profile can take
/// them: the operations to apply after the commit, or a 400 naming why not.
pub async fn check(
    shared: &Shared,
    app: &App,
    device: &str,
    ops: Vec<Op>,
) -> Result<Vec<Op>, ApiError> {
    let limits = &shared.limits;
    let mut prepared = profiles::prepare(
        &shared.pool,
        &app.id,
        vec![(device.to_string(), ops)],
        limits.max_key_length,
        limits.user_properties,
    )
    .await?
    .map_err(bad)?;
    if let Some(Applied::Refused(why)) =
        profiles::check(&shared.pool, &app.id, &prepared, bounds(limits))
            .await?
            .into_iter()
            .next()
    {
        return Err(bad(why));
    }
    Ok(prepared.pop().map(|(_, ops)| ops).unwrap_or_default())
}

/// Applies checked operations. A refusal now means a concurrent change took the profile
/// to its bounds after the check: the counters are already in, so it is logged, not
/// answered.
pub async fn apply(shared: &Shared, app: &App, device: &str, ops: Vec<Op>) -> Result<(), ApiError> {
    let now = shared.clock.now_ms();
    let done = profiles::apply(
        &shared.pool,
        &app.id,
        &[(device.to_string(), ops)],
        bounds(&shared.limits),
        now,
    )
    .await?;
    if let Some(Applied::Refused(why)) = done.first() {
        tracing::warn!(app = %app.id, device, why, "user_details refused after its check");
    }
    Ok(())
}
