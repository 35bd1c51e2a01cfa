//! The app registry: an app (= project = bucket) with its timezone and its key sets.
//!
//! A key set is three keys: `write_key` is Countly's `app_key` (SDKs send it), `read_key`
//! is Countly's `api_key` (the dashboard sends it), `master_key` administers the app. An
//! app has one key set when created and may get more (Rakam's `create-api-keys`); any
//! but the last may be revoked. Lookups on the request path go through [`AppCache`], a
//! bounded in-process cache with a short TTL, so a hot `/i` costs no registry round trip;
//! a change to an app's keys is announced on a channel every process listens to
//! ([`watch`]), which empties the caches at once.

use crate::error::StoreError;
use crate::keys::{self, AppId, REGISTRY};
use crate::texthash::TextState;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_redis::{Pool, Route};

/// What a request needs its key to allow. A master key allows all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Write,
    Read,
    Master,
}

impl Role {
    /// The header Rakam's clients put this role's key in (also its name in answers).
    pub fn header(self) -> &'static str {
        match self {
            Role::Write => "write_key",
            Role::Read => "read_key",
            Role::Master => "master_key",
        }
    }
}

/// One set of an app's three keys.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySet {
    /// 0 for the set the app was created with, then counting up.
    pub id: u64,
    pub write_key: String,
    pub read_key: String,
    pub master_key: String,
    /// UNIX seconds.
    pub created: i64,
}

impl KeySet {
    fn generate(id: u64, created: i64) -> KeySet {
        KeySet {
            id,
            write_key: keys::random_hex(20),
            read_key: keys::random_hex(20),
            master_key: keys::random_hex(20),
            created,
        }
    }

    /// Whether `key` is this set's key for `role` (or its master key).
    pub fn allows(&self, key: &str, role: Role) -> bool {
        keys_equal(key, &self.master_key)
            || match role {
                Role::Write => keys_equal(key, &self.write_key),
                Role::Read => keys_equal(key, &self.read_key),
                Role::Master => false,
            }
    }

    /// The registry's index entries of this set's keys.
    fn index_keys(&self) -> [String; 3] {
        [
            keys::app_by_write_key(&self.write_key),
            keys::app_by_other_key(&self.read_key),
            keys::app_by_other_key(&self.master_key),
        ]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub id: AppId,
    pub name: String,
    pub timezone: Tz,
    /// The keys of the oldest live key set: the ones Countly's SDKs and dashboard know.
    pub write_key: String,
    pub read_key: String,
    pub master_key: String,
    /// Every live key set, oldest first (the first is the one above).
    pub key_sets: Vec<KeySet>,
    /// Reads need only the write key (`app_key`), as in the original Countly read API.
    pub public_read: bool,
    /// When set, `/i` requests must carry a valid `checksum` or `checksum256`.
    pub salt: Option<String>,
    /// Rakam's strict mode: events of a collection, and fields, that no
    /// `/project/schema/add` declared are refused instead of added to the schema.
    pub strict: bool,
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
    pub strict: bool,
}

/// The registry field of key set `id` (sets after the first: the first's keys are fields
/// of their own, as apps had them before key sets).
fn key_set_field(id: u64) -> String {
    format!("keys:{id}")
}

impl App {
    /// Whether `key` is a live key of this app for `role` (a master key is good for all).
    pub fn allows(&self, key: &str, role: Role) -> bool {
        self.key_sets.iter().any(|s| s.allows(key, role))
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("name", self.name.clone()),
            ("timezone", self.timezone.name().to_string()),
            ("write_key", self.write_key.clone()),
            ("read_key", self.read_key.clone()),
            ("master_key", self.master_key.clone()),
            ("public_read", u8::from(self.public_read).to_string()),
            ("salt", self.salt.clone().unwrap_or_default()),
            ("strict", u8::from(self.strict).to_string()),
            ("created", self.created.to_string()),
        ]
    }

    fn from_fields(id: AppId, mut f: HashMap<String, String>) -> Result<App, StoreError> {
        let mut take = |k: &str| f.remove(k).unwrap_or_default();
        let timezone = take("timezone");
        let created = take("created").parse().unwrap_or(0);
        let first = KeySet {
            id: 0,
            write_key: take("write_key"),
            read_key: take("read_key"),
            master_key: take("master_key"),
            created,
        };
        let (name, public_read, salt) = (take("name"), take("public_read") == "1", take("salt"));
        let strict = take("strict") == "1";
        // The first set's fields are gone once it was revoked.
        let mut key_sets: Vec<KeySet> = (!first.master_key.is_empty())
            .then_some(first)
            .into_iter()
            .collect();
        for (field, value) in &f {
            let Some(n) = field.strip_prefix("keys:") else {
                continue;
            };
            let parts: Vec<&str> = value.split(' ').collect();
            match (n.parse(), parts.as_slice()) {
                (Ok(n), [w, r, m, c]) => key_sets.push(KeySet {
                    id: n,
                    write_key: (*w).to_string(),
                    read_key: (*r).to_string(),
                    master_key: (*m).to_string(),
                    created: c.parse().unwrap_or(0),
                }),
                _ => return Err(StoreError::Corrupt(format!("app {id}: key set {field}"))),
            }
        }
        key_sets.sort_by_key(|s| s.id);
        let primary = key_sets
            .first()
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("app {id}: no key set")))?;
        Ok(App {
            timezone: timezone
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("app {id}: timezone {timezone:?}")))?,
            name,
            write_key: primary.write_key,
            read_key: primary.read_key,
            master_key: primary.master_key,
            key_sets,
            public_read,
            salt: Some(salt).filter(|s| !s.is_empty()),
            strict,
            created,
            id,
        })
    }
}

/// Creates an app with fresh random keys.
pub async fn create(pool: &Pool, new: NewApp, now_secs: i64) -> Result<App, StoreError> {
    let first = KeySet::generate(0, now_secs);
    let app = App {
        id: AppId::generate(),
        name: new.name,
        timezone: new.timezone,
        write_key: first.write_key.clone(),
        read_key: first.read_key.clone(),
        master_key: first.master_key.clone(),
        key_sets: vec![first],
        public_read: new.public_read,
        salt: new.salt,
        strict: new.strict,
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
    let index: Vec<String> = app.key_sets.iter().flat_map(KeySet::index_keys).collect();
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("UNLINK")
        .arg(keys::app_record(&app.id))
        .arg(&index)
        .ignore()
        .srem(keys::APPS, app.id.as_str())
        .ignore();
    pool.run::<()>(REGISTRY, &pipe).await?;
    announce(pool, &app.id).await;
    Ok(deleted + 1 + index.len() as u64)
}

const KEY_SET_CREATE: &str = include_str!("key_set_create.lua");
const KEY_SET_REVOKE: &str = include_str!("key_set_revoke.lua");

/// Why a key set was not created or revoked.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySetRefused {
    /// The app has `max` key sets already.
    Limit(usize),
    /// The set is the app's last one: an app without keys could never be used again.
    Last,
    /// The app is gone.
    NoApp,
    /// No live set of the app has that master key.
    Unknown,
}

fn refused(e: tally_redis::Error) -> Result<KeySetRefused, StoreError> {
    match e.code() {
        Some("KEYSETLIMIT") => Ok(KeySetRefused::Limit(0)),
        Some("LASTKEYSET") => Ok(KeySetRefused::Last),
        Some("NOAPP") => Ok(KeySetRefused::NoApp),
        _ => Err(e.into()),
    }
}

/// Gives the app another key set (at most `max` live ones).
pub async fn create_key_set(
    pool: &Pool,
    app: &AppId,
    max: usize,
    now_secs: i64,
) -> Result<Result<KeySet, KeySetRefused>, StoreError> {
    // The id is the script's; the keys are made here (Lua has no good randomness).
    let mut set = KeySet::generate(0, now_secs);
    let [w, r, m] = set.index_keys();
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(KEY_SET_CREATE)
        .arg(4)
        .arg(keys::app_record(app))
        .arg(w)
        .arg(r)
        .arg(m)
        .arg(app.as_str())
        .arg(format!(
            "{} {} {} {}",
            set.write_key, set.read_key, set.master_key, set.created
        ))
        .arg(max);
    match pool.run::<(u64,)>(REGISTRY, &pipe).await {
        Ok((id,)) => {
            set.id = id;
            Ok(Ok(set))
        }
        Err(e) => Ok(Err(match refused(e)? {
            KeySetRefused::Limit(_) => KeySetRefused::Limit(max),
            other => other,
        })),
    }
}

/// Revokes the app's key set whose master key is `master_key`; every process stops
/// accepting its keys when the announcement reaches it (at once while its subscription is
/// up, within the cache's TTL otherwise).
pub async fn revoke_key_set(
    pool: &Pool,
    app: &App,
    master_key: &str,
) -> Result<Result<KeySet, KeySetRefused>, StoreError> {
    let Some(set) = app
        .key_sets
        .iter()
        .find(|s| keys_equal(master_key, &s.master_key))
    else {
        return Ok(Err(KeySetRefused::Unknown));
    };
    let [w, r, m] = set.index_keys();
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(KEY_SET_REVOKE)
        .arg(4)
        .arg(keys::app_record(&app.id))
        .arg(w)
        .arg(r)
        .arg(m)
        .arg(set.id)
        .arg(&set.master_key)
        .arg(key_set_field(set.id));
    let outcome = match pool.run::<(u64,)>(REGISTRY, &pipe).await {
        Ok((1,)) => Ok(set.clone()),
        Ok(_) => Err(KeySetRefused::Unknown),
        Err(e) => Err(refused(e)?),
    };
    if outcome.is_ok() {
        announce(pool, &app.id).await;
    }
    Ok(outcome)
}

/// The channel on which a change to an app's keys (a revoked set, a deleted app) is
/// announced to every process.
pub const CHANGES: &str = "tally:app-changes";

/// Tells every process that an app's keys changed. The change is already in the registry;
/// a process that misses the notice drops its cached copy within its TTL anyway, so a
/// failure here is logged, not returned.
pub async fn announce(pool: &Pool, app: &AppId) {
    let mut pipe = redis::pipe();
    pipe.cmd("PUBLISH").arg(CHANGES).arg(app.as_str());
    if let Err(e) = pool.run::<(u64,)>(REGISTRY, &pipe).await {
        tracing::warn!(app = %app, error = %e, "could not announce a change to the app's keys");
    }
}

/// How long a subscription may be silent before it checks itself with a `PING`.
const WATCH_IDLE: Duration = Duration::from_secs(1);

/// Keeps `cache` in step with the registry from a thread of its own: the cache is
/// emptied on every announced change, and whenever the subscription was lost (a notice
/// may have been missed). While there is no subscription the cache's TTL bounds how long
/// a revoked key keeps working. The thread ends soon after the cache is dropped.
pub fn watch(cache: &Arc<AppCache>, pool: Pool) {
    let cache = Arc::downgrade(cache);
    let spawned = std::thread::Builder::new()
        .name("tally-app-watch".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "app change watcher: no runtime");
                    return;
                }
            };
            rt.block_on(watch_loop(cache, pool));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "app change watcher: no thread");
    }
}

async fn watch_loop(cache: std::sync::Weak<AppCache>, pool: Pool) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if cache.strong_count() == 0 {
            return;
        }
        match pool.subscribe(REGISTRY, CHANGES).await {
            Ok(mut sub) => {
                backoff = Duration::from_millis(50);
                // Changes made while there was no subscription were not heard.
                if let Some(c) = cache.upgrade() {
                    c.clear();
                }
                loop {
                    let Some(c) = cache.upgrade() else { return };
                    match sub.next(WATCH_IDLE).await {
                        Ok(Some(_)) => c.clear(),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "app change subscription lost");
                            c.clear();
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "app change subscription failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
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
/// device contributed; the archive loses the device's rows within an archiver pass
/// (`tally-archive`). Returns whether there was a state, and how many raw events went.
pub async fn forget_device(
    pool: &Pool,
    app: &AppId,
    device_id: &str,
) -> Result<(bool, u64), StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("UNLINK").arg(keys::device(app, device_id));
    // The archiver rewrites the archived files without the device's rows.
    pipe.cmd("SADD")
        .arg(keys::archive_forget(app))
        .arg(device_id)
        .ignore();
    let (n,): (u64,) = pool.run(keys::route(app), &pipe).await?;
    // The device's user profile and consents go with it.
    crate::profiles::forget(pool, app, device_id).await?;
    crate::consent::forget(pool, app, device_id).await?;
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
