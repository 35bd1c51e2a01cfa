//! Materialized views' definitions, per app: table name -> the definition as JSON (its
//! shape is `tally-archive`'s, which computes the views and keeps their results).

use crate::error::StoreError;
use crate::keys::{self, AppId};
use tally_redis::Pool;

/// One view's definition.
pub async fn get(pool: &Pool, app: &AppId, table: &str) -> Result<Option<String>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGET").arg(keys::views(app)).arg(table);
    let (v,): (Option<String>,) = pool.run(keys::route(app), &pipe).await?;
    Ok(v)
}

/// Every view of the app: (table name, definition).
pub async fn all(pool: &Pool, app: &AppId) -> Result<Vec<(String, String)>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL").arg(keys::views(app));
    let (v,): (Vec<(String, String)>,) = pool.run(keys::route(app), &pipe).await?;
    Ok(v)
}

/// How many views the app has.
pub async fn count(pool: &Pool, app: &AppId) -> Result<usize, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HLEN").arg(keys::views(app));
    let (n,): (usize,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n)
}

const ADD: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// What [`add`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Added,
    Exists,
    OverLimit,
}

/// Adds a view unless one of that name exists or the app has `max` already.
pub async fn add(
    pool: &Pool,
    app: &AppId,
    table: &str,
    definition: &str,
    max: usize,
) -> Result<Added, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(ADD)
        .arg(1)
        .arg(keys::views(app))
        .arg(table)
        .arg(definition)
        .arg(max);
    let (n,): (i64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(match n {
        1 => Added::Added,
        0 => Added::Exists,
        _ => Added::OverLimit,
    })
}

const REPLACE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Replaces a view's definition (its refresh time) unless it was deleted meanwhile.
pub async fn replace(
    pool: &Pool,
    app: &AppId,
    table: &str,
    definition: &str,
) -> Result<bool, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(REPLACE)
        .arg(1)
        .arg(keys::views(app))
        .arg(table)
        .arg(definition);
    let (n,): (i64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n == 1)
}

/// Deletes a view's definition; false when there was none.
pub async fn delete(pool: &Pool, app: &AppId, table: &str) -> Result<bool, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HDEL").arg(keys::views(app)).arg(table);
    let (n,): (i64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(n == 1)
}
