//! The app registry: an app (= project = bucket) with its timezone and its keys.
//!
//! `write_key` is Countly's `app_key` (SDKs send it), `read_key` is Countly's `api_key`
//! (the dashboard sends it), `master_key` administers the app. Lookups on the request path
//! go through [`AppCache`], an in-process cache with a short TTL, so a hot `/i` costs no
//! registry round trip.

use crate::error::StoreError;
use crate::keys::{self, AppId};
use crate::redis::{run, run_at, Pool};
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    run::<()>(pool, &pipe).await?;
    Ok(app)
}

pub async fn by_id(pool: &Pool, id: &AppId) -> Result<Option<App>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.hgetall(keys::app_record(id));
    let (fields,): (HashMap<String, String>,) = run(pool, &pipe).await?;
    if fields.is_empty() {
        return Ok(None);
    }
    App::from_fields(id.clone(), fields).map(Some)
}

pub async fn by_write_key(pool: &Pool, write_key: &str) -> Result<Option<App>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.get(keys::app_by_write_key(write_key));
    let (id,): (Option<String>,) = run(pool, &pipe).await?;
    match id.as_deref().and_then(AppId::parse) {
        Some(id) => by_id(pool, &id).await,
        None => Ok(None),
    }
}

/// The app a read or master key belongs to.
pub async fn by_other_key(pool: &Pool, key: &str) -> Result<Option<App>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.get(keys::app_by_other_key(key));
    let (id,): (Option<String>,) = run(pool, &pipe).await?;
    match id.as_deref().and_then(AppId::parse) {
        Some(id) => by_id(pool, &id).await,
        None => Ok(None),
    }
}

pub async fn list(pool: &Pool) -> Result<Vec<AppId>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.smembers(keys::APPS);
    let (ids,): (Vec<String>,) = run(pool, &pipe).await?;
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

/// Cached lookups: when they were made, and the app (or that there is none).
type CacheMap<K> = Mutex<crate::texthash::TextMap<K, (Instant, Option<Arc<App>>)>>;

/// Lookups by write key or id, cached for `ttl`, including misses (so a flood of unknown
/// keys does not become a flood of Redis reads). Bounded: when full it starts afresh.
/// While Redis cannot answer, an app found before is served from its expired entry.
pub struct AppCache {
    ttl: Duration,
    max_entries: usize,
    by_write_key: CacheMap<String>,
    by_id: CacheMap<AppId>,
}

impl AppCache {
    pub fn new(ttl: Duration, max_entries: usize) -> AppCache {
        AppCache {
            ttl,
            max_entries,
            by_write_key: Mutex::default(),
            by_id: Mutex::default(),
        }
    }

    fn cached<K, Q>(&self, map: &CacheMap<K>, k: &Q) -> Option<Option<Arc<App>>>
    where
        K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let map = map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, app)| app.clone())
    }

    /// A found app however old its entry: used when Redis cannot be asked, so apps already
    /// known keep working while the registry's node (one slot on a cluster) is down.
    fn stale<K, Q>(&self, map: &CacheMap<K>, k: &Q) -> Option<Arc<App>>
    where
        K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let map = map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k).and_then(|(_, app)| app.clone())
    }

    fn store<K: std::hash::Hash + Eq>(&self, map: &CacheMap<K>, k: K, app: Option<Arc<App>>) {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_entries {
            map.clear();
        }
        map.insert(k, (Instant::now(), app));
    }

    pub async fn by_write_key(
        &self,
        pool: &Pool,
        key: &str,
    ) -> Result<Option<Arc<App>>, StoreError> {
        if let Some(hit) = self.cached(&self.by_write_key, key) {
            return Ok(hit);
        }
        // Boxed: the Redis query's future is large, and every request's handler future
        // would carry (and be copied with) its room though nearly all lookups hit.
        let app = match Box::pin(by_write_key(pool, key)).await {
            Ok(app) => app.map(Arc::new),
            Err(e) => return self.stale(&self.by_write_key, key).map(Some).ok_or(e),
        };
        self.store(&self.by_write_key, key.to_string(), app.clone());
        Ok(app)
    }

    pub async fn by_id(&self, pool: &Pool, id: &AppId) -> Result<Option<Arc<App>>, StoreError> {
        if let Some(hit) = self.cached(&self.by_id, id) {
            return Ok(hit);
        }
        let app = match Box::pin(by_id(pool, id)).await {
            Ok(app) => app.map(Arc::new),
            Err(e) => return self.stale(&self.by_id, id).map(Some).ok_or(e),
        };
        self.store(&self.by_id, id.clone(), app.clone());
        Ok(app)
    }

    /// Forgets everything (after an app changed or was deleted in this process).
    pub fn clear(&self) {
        self.by_write_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.by_id.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// How many keys one SCAN step returns and one UNLINK removes.
const DELETE_BATCH: usize = 500;

/// Deletes every key of an app, then the app itself. Keys are found with SCAN and removed
/// with UNLINK, a batch at a time, so Redis is never blocked (no KEYS, no huge DEL).
/// Returns the number of keys removed.
pub async fn delete(pool: &Pool, app: &App) -> Result<u64, StoreError> {
    let deleted = unlink_matching(pool, &keys::app_pattern(&app.id)).await?;
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
    run::<()>(pool, &pipe).await?;
    Ok(deleted + 4)
}

/// Deletes an app's raw event stream and its rollups, not its Countly counters.
pub async fn delete_events(pool: &Pool, app: &AppId) -> Result<u64, StoreError> {
    let rollups = unlink_matching(pool, &keys::rollup_pattern(app)).await?;
    let mut pipe = redis::pipe();
    pipe.cmd("UNLINK").arg(keys::stream(app));
    let (n,): (u64,) = run(pool, &pipe).await?;
    Ok(rollups + n)
}

/// UNLINKs every key matching `pattern`, found with SCAN a batch at a time. The pattern
/// must start with a hash tag (all of one app's keys, or of the registry).
pub async fn unlink_matching(pool: &Pool, pattern: &str) -> Result<u64, StoreError> {
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
        // SCAN names no key: send it to the node of the pattern's hash tag (on a
        // cluster every key of one app is there).
        let ((next, batch),): ((u64, Vec<String>),) =
            run_at(pool, Some(pattern.as_bytes()), &scan).await?;
        if !batch.is_empty() {
            let mut unlink = redis::pipe();
            unlink.cmd("UNLINK").arg(&batch);
            let (n,): (u64,) = run(pool, &unlink).await?;
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
    let (n,): (u64,) = run(pool, &pipe).await?;
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
        let (entries,): (crate::counters::StreamPage,) = run(pool, &page).await?;
        let mine: Vec<&String> = entries
            .iter()
            .filter(|(_, f)| f.iter().any(|(k, v)| k == "d" && v == device_id))
            .map(|(id, _)| id)
            .collect();
        if !mine.is_empty() {
            let mut del = redis::pipe();
            del.cmd("XDEL").arg(&stream).arg(&mine);
            let (d,): (u64,) = run(pool, &del).await?;
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
