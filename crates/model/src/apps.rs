//! The app registry: an app (= project = bucket) with its timezone and its keys.
//!
//! `write_key` is Countly's `app_key` (SDKs send it), `read_key` is Countly's `api_key`
//! (the dashboard sends it), `master_key` administers the app. Lookups on the request path
//! go through [`AppCache`], a bounded in-process cache with a short TTL, so a hot `/i`
//! costs no registry round trip.

use crate::error::StoreError;
use crate::keys::{self, AppId, REGISTRY};
use crate::texthash::TextState;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_redis::{Pool, Route};

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub id: AppId,
    pub name: String,
    pub timezone: Tz,
    pub write_key: String,
    pub read_key: String,
    pub master_key: String,
    /// Reads need only the write key (`app_key`), as in the original Countly read API.
    pub public_read: bool,
    /// When set, `/i` requests must carry a valid `checksum` or `checksum256`.
    pub salt: Option<String>,
    /// UNIX seconds.
    pub created: i64,
}

/// What `create` needs; keys are generated.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub name: String,
    pub timezone: Tz,
    pub public_read: bool,
    pub salt: Option<String>,
}

impl App {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("name", self.name.clone()),
            ("timezone", self.timezone.name().to_string()),
            ("write_key", self.write_key.clone()),
            ("read_key", self.read_key.clone()),
            ("master_key", self.master_key.clone()),
            ("public_read", u8::from(self.public_read).to_string()),
            ("salt", self.salt.clone().unwrap_or_default()),
            ("created", self.created.to_string()),
        ]
    }

    fn from_fields(id: AppId, mut f: HashMap<String, String>) -> Result<App, StoreError> {
        let mut take = |k: &str| f.remove(k).unwrap_or_default();
        let timezone = take("timezone");
        Ok(App {
            timezone: timezone
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("app {id}: timezone {timezone:?}")))?,
            name: take("name"),
            write_key: take("write_key"),
            read_key: take("read_key"),
            master_key: take("master_key"),
            public_read: take("public_read") == "1",
            salt: Some(take("salt")).filter(|s| !s.is_empty()),
            created: take("created").parse().unwrap_or(0),
            id,
        })
    }
}

/// Creates an app with fresh random keys.
pub async fn create(pool: &Pool, new: NewApp, now_secs: i64) -> Result<App, StoreError> {
    let app = App {
        id: AppId::generate(),
        name: new.name,
        timezone: new.timezone,
        write_key: keys::random_hex(20),
        read_key: keys::random_hex(20),
        master_key: keys::random_hex(20),
        public_read: new.public_read,
        salt: new.salt,
        created: now_secs,
    };
    let mut pipe = redis::pipe();
    pipe.atomic()
        .hset_multiple(keys::app_record(&app.id), &app.fields())
        .ignore()
        .set(keys::app_by_write_key(&app.write_key), app.id.as_str())
        .ignore()
        .set(keys::app_by_other_key(&app.read_key), app.id.as_str())
        .ignore()
        .set(keys::app_by_other_key(&app.master_key), app.id.as_str())
        .ignore()
        .sadd(keys::APPS, app.id.as_str())
        .ignore();
    pool.run::<()>(REGISTRY, &pipe).await?;
    Ok(app)
}

pub async fn by_id(pool: &Pool, id: &AppId) -> Result<Option<App>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.hgetall(keys::app_record(id));
    let (fields,): (HashMap<String, String>,) = pool.run(REGISTRY, &pipe).await?;
    if fields.is_empty() {
        return Ok(None);
    }
    App::from_fields(id.clone(), fields).map(Some)
}

pub async fn by_write_key(pool: &Pool, write_key: &str) -> Result<Option<App>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.get(keys::app_by_write_key(write_key));
    let (id,): (Option<String>,) = pool.run(REGISTRY, &pipe).await?;
    match id.as_deref().and_then(AppId::parse) {
        Some(id) => by_id(pool, &id).await,
        None => Ok(None),
    }
}

/// The app a read or master key belongs to.
pub async fn by_other_key(pool: &Pool, key: &str) -> Result<Option<App>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.get(keys::app_by_other_key(key));
    let (id,): (Option<String>,) = pool.run(REGISTRY, &pipe).await?;
    match id.as_deref().and_then(AppId::parse) {
        Some(id) => by_id(pool, &id).await,
        None => Ok(None),
    }
}

pub async fn list(pool: &Pool) -> Result<Vec<AppId>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.smembers(keys::APPS);
    let (ids,): (Vec<String>,) = pool.run(REGISTRY, &pipe).await?;
    let mut ids: Vec<AppId> = ids.iter().filter_map(|s| AppId::parse(s)).collect();
    ids.sort();
    Ok(ids)
}

/// Compares secrets in time independent of where they differ.
pub fn keys_equal(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A found app and when it was read from the registry.
type Found = (Instant, Arc<App>);

/// Lookups by write key or id, bounded and cached for `ttl`. Found apps and unknown keys
/// are kept apart: a flood of random keys fills only the short-lived cache of misses
/// (so it neither evicts the real apps nor reaches Redis once per request), and the
/// found apps are evicted least-recently-and-frequently-used first, never all at once.
/// While Redis cannot answer, an app found before is served however old its entry, so
/// apps already known keep working while the registry's node (one slot on a cluster) is
/// down.
///
/// Keys are hashed with the process's keyed hasher ([`TextState`]): clients choose them.
/// Found entries have no expiry of their own (their age is checked on every hit, and an
/// app the registry no longer has is dropped then), so a hit costs no clock read in the
/// cache.
pub struct AppCache {
    ttl: Duration,
    by_write_key: Cache<String, Found>,
    by_id: Cache<AppId, Found>,
    /// Write keys and ids the registry did not know, each for `ttl`.
    unknown_keys: Cache<String, ()>,
    unknown_ids: Cache<AppId, ()>,
}

type Cache<K, V> = moka::sync::Cache<K, V, TextState>;

impl AppCache {
    /// `max_entries` bounds each of the four caches.
    pub fn new(ttl: Duration, max_entries: u64) -> AppCache {
        fn found<K: std::hash::Hash + Eq + Send + Sync + 'static>(max: u64) -> Cache<K, Found> {
            moka::sync::Cache::builder()
                .max_capacity(max)
                .build_with_hasher(TextState::default())
        }
        // Misses are kept for the TTL (at least a millisecond: moka needs a positive one;
        // a zero TTL is never consulted).
        fn missing<K: std::hash::Hash + Eq + Send + Sync + 'static>(
            max: u64,
            ttl: Duration,
        ) -> Cache<K, ()> {
            moka::sync::Cache::builder()
                .max_capacity(max)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build_with_hasher(TextState::default())
        }
        AppCache {
            ttl,
            by_write_key: found(max_entries),
            by_id: found(max_entries),
            unknown_keys: missing(max_entries, ttl),
            unknown_ids: missing(max_entries, ttl),
        }
    }

    fn fresh(&self, found: Option<Found>) -> Option<Arc<App>> {
        found
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, app)| app)
    }

    pub async fn by_write_key(
        &self,
        pool: &Pool,
        key: &str,
    ) -> Result<Option<Arc<App>>, StoreError> {
        if let Some(app) = self.fresh(self.by_write_key.get(key)) {
            return Ok(Some(app));
        }
        if !self.ttl.is_zero() && self.unknown_keys.contains_key(key) {
            return Ok(None);
        }
        // Boxed: the Redis query's future is large, and every request's handler future
        // would carry (and be copied with) its room though nearly all lookups hit.
        match Box::pin(by_write_key(pool, key)).await {
            Ok(Some(app)) => {
                let app = Arc::new(app);
                self.by_write_key
                    .insert(key.to_string(), (Instant::now(), app.clone()));
                Ok(Some(app))
            }
            Ok(None) => {
                self.by_write_key.invalidate(key);
                self.unknown_keys.insert(key.to_string(), ());
                Ok(None)
            }
            Err(e) => self.by_write_key.get(key).map(|(_, a)| Some(a)).ok_or(e),
        }
    }

    pub async fn by_id(&self, pool: &Pool, id: &AppId) -> Result<Option<Arc<App>>, StoreError> {
        if let Some(app) = self.fresh(self.by_id.get(id)) {
            return Ok(Some(app));
        }
        if !self.ttl.is_zero() && self.unknown_ids.contains_key(id) {
            return Ok(None);
        }
        match Box::pin(by_id(pool, id)).await {
            Ok(Some(app)) => {
                let app = Arc::new(app);
                self.by_id.insert(id.clone(), (Instant::now(), app.clone()));
                Ok(Some(app))
            }
            Ok(None) => {
                self.by_id.invalidate(id);
                self.unknown_ids.insert(id.clone(), ());
                Ok(None)
            }
            Err(e) => self.by_id.get(id).map(|(_, a)| Some(a)).ok_or(e),
        }
    }

    /// Forgets everything (after an app changed or was deleted in this process).
    pub fn clear(&self) {
        self.by_write_key.invalidate_all();
        self.by_id.invalidate_all();
        self.unknown_keys.invalidate_all();
        self.unknown_ids.invalidate_all();
    }
}

/// How many keys one SCAN step returns and one UNLINK removes.
const DELETE_BATCH: usize = 500;

/// Deletes every key of an app, then the app itself. Keys are found with SCAN and removed
/// with UNLINK, a batch at a time, so Redis is never blocked (no KEYS, no huge DEL).
/// Returns the number of keys removed.
pub async fn delete(pool: &Pool, app: &App) -> Result<u64, StoreError> {
    let deleted = unlink_matching(pool, keys::route(&app.id), &keys::app_pattern(&app.id)).await?;
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("UNLINK")
        .arg(keys::app_record(&app.id))
        .arg(keys::app_by_write_key(&app.write_key))
        .arg(keys::app_by_other_key(&app.read_key))
        .arg(keys::app_by_other_key(&app.master_key))
        .ignore()
        .srem(keys::APPS, app.id.as_str())
        .ignore();
    pool.run::<()>(REGISTRY, &pipe).await?;
    Ok(deleted + 4)
}

/// Deletes an app's raw event stream and its rollups, not its Countly counters.
pub async fn delete_events(pool: &Pool, app: &AppId) -> Result<u64, StoreError> {
    let rollups = unlink_matching(pool, keys::route(app), &keys::rollup_pattern(app)).await?;
    let mut pipe = redis::pipe();
    pipe.cmd("UNLINK").arg(keys::stream(app));
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    Ok(rollups + n)
}

/// UNLINKs every key matching `pattern`, found with SCAN a batch at a time on the node of
/// `route`: the pattern must start with that route's hash tag (on a cluster every key of
/// one app is on one node).
pub async fn unlink_matching(
    pool: &Pool,
    route: Route<'_>,
    pattern: &str,
) -> Result<u64, StoreError> {
    let mut cursor: u64 = 0;
    let mut deleted: u64 = 0;
    loop {
        let mut scan = redis::pipe();
        scan.cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(DELETE_BATCH);
        let ((next, batch),): ((u64, Vec<String>),) = pool.run(route, &scan).await?;
        if !batch.is_empty() {
            let mut unlink = redis::pipe();
            unlink.cmd("UNLINK").arg(&batch);
            let (n,): (u64,) = pool.run(route, &unlink).await?;
            deleted += n;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(deleted)
}

/// Stream entries read per page while looking for a device's raw events.
const STREAM_PAGE: usize = 1000;

/// Forgets one device: its state (first and last seen, session, activity windows, metric
/// snapshots, recent request fingerprints) and its raw events in the app's stream.
/// Pre-aggregated counters and rollups are sums over many devices and keep what the
/// device contributed. Returns whether there was a state, and how many raw events went.
pub async fn forget_device(
    pool: &Pool,
    app: &AppId,
    device_id: &str,
) -> Result<(bool, u64), StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("UNLINK").arg(keys::device(app, device_id));
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    // The device's user profile goes with it.
    crate::profiles::forget(pool, app, device_id).await?;
    let stream = keys::stream(app);
    let mut start = "-".to_string();
    let mut removed = 0u64;
    loop {
        let mut page = redis::pipe();
        page.cmd("XRANGE")
            .arg(&stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(STREAM_PAGE);
        let (entries,): (crate::counters::StreamPage,) = pool.run(keys::route(app), &page).await?;
        let mine: Vec<&String> = entries
            .iter()
            .filter(|(_, f)| f.iter().any(|(k, v)| k == "d" && v == device_id))
            .map(|(id, _)| id)
            .collect();
        if !mine.is_empty() {
            let mut del = redis::pipe();
            del.cmd("XDEL").arg(&stream).arg(&mine);
            let (d,): (u64,) = pool.run(keys::route(app), &del).await?;
            removed += d;
        }
        match entries.last() {
            Some((last, _)) if entries.len() == STREAM_PAGE => start = format!("({last}"),
            _ => break,
        }
    }
    Ok((n > 0, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparison() {
        assert!(keys_equal("abc", "abc"));
        assert!(!keys_equal("abd", "abc"));
        assert!(!keys_equal("ab", "abc"));
        assert!(!keys_equal("", ""));
    }
}
