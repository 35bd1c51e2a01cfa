//! Countly's consents: each device's current consent per feature (`sessions`, `events`,
//! `users`, ...), as its SDKs send them with `consent`, and day counters of the changes
//! (given `i`, taken back `o`, in all and per feature) that `/o?method=consents` reads like
//! any time object. A change is recorded by one script that compares with the device's
//! last consent, so sending the same consent again (an SDK's retry) counts nothing.

use crate::error::StoreError;
use crate::keys::{self, AppId, Family, Period};
use serde_json::{Map, Value};
use tally_redis::Pool;

/// The counter family of consent changes.
pub fn family() -> Family {
    Family::metric("consents")
}

/// The meta list of the features consents were given or taken for.
pub const FEATURES: &str = "feature";

const RECORD: &str = include_str!("consent.lua");

/// Records `sent` (feature -> given) for a device on a day (its local year, month and
/// day). Returns how many features changed.
pub async fn record(
    pool: &Pool,
    app: &AppId,
    device: &str,
    (y, m, d): (i32, u32, u32),
    sent: &Map<String, Value>,
) -> Result<u64, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(RECORD)
        .arg(3)
        .arg(keys::consents(app))
        .arg(keys::counters(app, &family(), Period::Month(y, m)))
        .arg(keys::meta(app, FEATURES))
        .arg(device)
        .arg(d)
        .arg(Value::Object(sent.clone()).to_string());
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n)
}

/// A device's current consents (an empty object when it never sent any).
pub async fn current(
    pool: &Pool,
    app: &AppId,
    device: &str,
) -> Result<Map<String, Value>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGET").arg(keys::consents(app)).arg(device);
    let (v,): (Option<String>,) = pool.run(keys::route(app), &pipe).await?;
    Ok(v.and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

/// Forgets a device's consents.
pub async fn forget(pool: &Pool, app: &AppId, device: &str) -> Result<(), StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HDEL")
        .arg(keys::consents(app))
        .arg(device)
        .ignore();
    pool.run::<()>(keys::route(app), &pipe).await?;
    Ok(())
}
