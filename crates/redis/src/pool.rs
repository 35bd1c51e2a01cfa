//! Pools of [`Conn`]s to standalone Redis or a Redis Cluster, behind one [`Pool`], with
//! one policy for failures ([`Pool::failed`]) and one retry loop ([`Pool::run_reads`]).
//!
//! The pool is deadpool's generic one with Tally's own manager rather than
//! deadpool-redis: that one sends `UNWATCH`+`PING` on every checkout, an extra round trip
//! on every request. Here a connection is trusted until an exchange on it fails in a way
//! that leaves its state unknown; then it is closed so the next checkout opens a fresh one
//! (`docs/decisions/`).
//!
//! # Redis Cluster
//!
//! With `REDIS_CLUSTER_URLS`, the pool learns the slot map with `CLUSTER SLOTS` from the
//! seed nodes and sends each exchange to the master of its [`Route`]: callers name the
//! hash tag their keys share (an app's id), so nothing re-parses finished commands. Tally
//! routes by itself rather than with the `redis` crate's cluster connection because a
//! transaction needs connection affinity (`WATCH` on the connection that later sends
//! `EXEC`) and exactly-once counting forbids a client that silently re-sends an `EXEC`
//! after a dropped connection.
//!
//! A redirect or a dead connection marks the map stale: it is read again (at most every
//! [`REFRESH_EVERY`]). A redirected exchange ran nowhere, so [`Pool::run_reads`] sends it
//! again after the refresh; everything else fails with 503 and the client retries.

use crate::conn::{self, Conn};
use crate::error::Error;
use crate::resp::Replies;
use deadpool::managed::{self, Metrics, RecycleResult};
use redis::{ConnectionAddr, FromRedisValue, IntoConnectionInfo, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tally_config::RedisConfig;

/// Where an exchange must go.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// The node that owns the keys with this hash tag (the text between `{` and `}`:
    /// an app's id, or the registry's `tally`).
    Tag(&'a str),
    /// Any node (standalone Redis has one).
    Any,
}

impl Route<'_> {
    /// The cluster slot, as the Redis Cluster specification computes it for a key whose
    /// hash tag is this one (CRC16/XMODEM modulo 16384, with the crate the `redis`
    /// client itself uses; its own slot type has no public accessor).
    pub fn slot(&self) -> Option<u16> {
        match self {
            Route::Tag(t) => Some(slot_of_tag(t.as_bytes())),
            Route::Any => None,
        }
    }
}

fn slot_of_tag(tag: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag) % 16384
}

/// The slot of a whole key: its hash tag's, or the whole key's when it has none.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    slot_of_tag(tagged.unwrap_or(key))
}

pub struct Manager {
    addr: ConnectionAddr,
    settings: redis::RedisConnectionInfo,
    timeout: Duration,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = Error;

    async fn create(&self) -> Result<Conn, Error> {
        Conn::connect(&self.addr, &self.settings, self.timeout).await
    }

    async fn recycle(&self, _conn: &mut Conn, _: &Metrics) -> RecycleResult<Error> {
        Ok(())
    }
}

/// The connections to one Redis node.
type NodePool = managed::Pool<Manager>;

/// A connection checked out for one task; it goes back to its pool when dropped, unless
/// [`Pool::failed`] or [`Pool::close`] took it out.
pub type PooledConn = managed::Object<Manager>;

fn node_pool(info: &redis::ConnectionInfo, cfg: &RedisConfig) -> Result<NodePool, Error> {
    let manager = Manager {
        addr: info.addr().clone(),
        settings: info.redis_settings().clone(),
        timeout: cfg.timeout,
    };
    managed::Pool::builder(manager)
        .max_size(cfg.pool_size.max(1))
        .wait_timeout(Some(cfg.timeout))
        .create_timeout(Some(cfg.timeout))
        .recycle_timeout(Some(cfg.timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Pool(e.to_string()))
}

impl From<managed::PoolError<Error>> for Error {
    fn from(e: managed::PoolError<Error>) -> Self {
        match e {
            managed::PoolError::Timeout(_) => Error::Timeout,
            managed::PoolError::Backend(e) => e,
            other => Error::Pool(other.to_string()),
        }
    }
}

/// Parses a URL, refusing what the plain socket cannot do.
fn connection_info(url: &str) -> Result<redis::ConnectionInfo, Error> {
    let tls = || {
        Error::Config(format!(
            "{url}: TLS (rediss://) is not supported; reach Redis over a private network, \
             a unix socket, or a local TLS tunnel (stunnel, spiped)"
        ))
    };
    if url.trim_start().to_ascii_lowercase().starts_with("rediss") {
        return Err(tls());
    }
    let info = url
        .into_connection_info()
        .map_err(|e| Error::Config(format!("{url}: {e}")))?;
    match info.addr() {
        ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(..) => Ok(info),
        _ => Err(tls()),
    }
}

/// The shared handle to Redis. Cheap to clone.
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

struct Inner {
    /// What the pool was built from, for [`Pool::fresh`].
    cfg: RedisConfig,
    topology: Topology,
    timeout: Duration,
    /// Failed exchanges, for `/metrics`: shared with the pools made by [`Pool::fresh`].
    errors: Arc<AtomicU64>,
}

enum Topology {
    Single(NodePool),
    Cluster(Box<Cluster>),
}

/// Builds the pool. Connections open lazily, so this succeeds while Redis is down;
/// requests then fail with 503 until it is back. A URL the transport cannot serve
/// (`rediss://`) is refused here, at start-up.
pub fn pool(cfg: &RedisConfig) -> Result<Pool, Error> {
    pool_counting(cfg, Arc::default())
}

fn pool_counting(cfg: &RedisConfig, errors: Arc<AtomicU64>) -> Result<Pool, Error> {
    let topology = if cfg.cluster.is_empty() {
        Topology::Single(node_pool(&connection_info(&cfg.url)?, cfg)?)
    } else {
        let seeds = cfg
            .cluster
            .iter()
            .map(|u| {
                let u = u.trim();
                if u.contains("://") {
                    connection_info(u)
                } else {
                    connection_info(&format!("redis://{u}"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Topology::Cluster(Box::new(Cluster {
            cfg: cfg.clone(),
            seeds,
            map: RwLock::new(Arc::new(SlotMap::default())),
            nodes: Mutex::new(HashMap::new()),
            stale: AtomicBool::new(true),
            last_refresh: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }))
    };
    Ok(Pool(Arc::new(Inner {
        cfg: cfg.clone(),
        topology,
        timeout: cfg.timeout,
        errors,
    })))
}

impl Pool {
    /// A new pool to the same Redis, with connections of its own. A connection's socket
    /// is driven by the runtime (thread) that opened it: one a request handler opened
    /// and the group commit later uses wakes the commit through another thread's I/O
    /// loop, which cost the group commit's read phase a third more time under load
    /// (`docs/benchmarks.md`). So a task that runs on a runtime of its own and talks to
    /// Redis all the time (the group commit, the stream consumer) takes a pool of its own.
    /// Its failures count in this pool's [`Pool::errors`].
    pub fn fresh(&self) -> Result<Pool, Error> {
        pool_counting(&self.0.cfg, self.0.errors.clone())
    }

    /// The longest one exchange may take (connecting has its own timeout).
    pub fn timeout(&self) -> Duration {
        self.0.timeout * 2
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.0.topology, Topology::Cluster(_))
    }

    /// A connection to the master that owns `route`. A node that cannot be reached makes
    /// a cluster's slot map be read again.
    pub async fn get(&self, route: Route<'_>) -> Result<PooledConn, Error> {
        let node = match &self.0.topology {
            Topology::Single(p) => p.clone(),
            Topology::Cluster(c) => c.node(&c.owner(route.slot()).await?)?,
        };
        node.get().await.map_err(|e| {
            self.note_error();
            self.mark_stale();
            e.into()
        })
    }

    /// A connection to one master by its address from [`Pool::masters`].
    async fn get_at(&self, addr: &str) -> Result<PooledConn, Error> {
        let node = match &self.0.topology {
            Topology::Single(p) => p.clone(),
            Topology::Cluster(c) => c.node(addr)?,
        };
        Ok(node.get().await?)
    }

    /// One exchange on `conn`, bounded by the pool's timeout plus `extra` (a blocking
    /// command's own wait). Error replies are returned as replies; see [`conn::check`].
    pub async fn exchange(
        &self,
        conn: &mut Conn,
        packed: &[u8],
        n: usize,
        extra: Duration,
    ) -> Result<Replies, Error> {
        match tokio::time::timeout(self.timeout() + extra, conn.exchange(packed, n)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Runs `pipe` on a connection the caller holds (for `WATCH` ... `EXEC` sequences),
    /// with typed results. On an error the caller hands the connection to
    /// [`Pool::failed`].
    pub async fn query<T: FromRedisValue>(
        &self,
        conn: &mut Conn,
        pipe: &redis::Pipeline,
        extra: Duration,
    ) -> Result<T, Error> {
        let replies = self
            .exchange(
                conn,
                &pipe.get_packed_pipeline(),
                conn::reply_count(pipe),
                extra,
            )
            .await?;
        conn::check(&replies)?;
        conn::compose(pipe, &replies)
    }

    /// The failure policy, in one place: counts the failure; a connection whose state is
    /// unknown is closed, one that holds a `WATCH` (`watching`) is closed too, any other
    /// goes back to its pool; a redirect or a dead connection makes a cluster read its
    /// slot map again. Returns whether the exchange may be sent again (it ran nowhere).
    pub fn failed(&self, conn: PooledConn, e: &Error, watching: bool) -> bool {
        self.note_error();
        if e.breaks_connection() || watching {
            Pool::close(conn);
        }
        if e.breaks_connection() || e.is_redirect() {
            self.mark_stale();
        }
        e.is_redirect() && self.is_cluster()
    }

    /// Closes a connection that must not be reused (it holds a `WATCH`) although Redis
    /// did nothing wrong.
    pub fn close(conn: PooledConn) {
        drop(managed::Object::take(conn));
    }

    fn mark_stale(&self) {
        if let Topology::Cluster(c) = &self.0.topology {
            c.stale.store(true, Ordering::Relaxed);
        }
    }

    fn note_error(&self) {
        self.0.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed Redis exchanges so far: errors, timeouts, lost connections, redirects.
    pub fn errors(&self) -> u64 {
        self.0.errors.load(Ordering::Relaxed)
    }

    /// Runs a pipeline on the node of `route` in one round trip and returns its replies
    /// for parsing in place ([`crate::resp`]). An error reply fails the call; a redirected
    /// pipeline ran nowhere and is sent to the slot's new owner (up to three tries).
    pub async fn run_reads(
        &self,
        route: Route<'_>,
        pipe: &redis::Pipeline,
    ) -> Result<Replies, Error> {
        self.run_replies(route, pipe, true).await
    }

    /// [`Pool::run_reads`] for pipelines whose commands may fail one by one (each a script
    /// that refuses its own input): error replies are returned as replies, except a
    /// redirect, which is followed as there.
    pub async fn run_each(
        &self,
        route: Route<'_>,
        pipe: &redis::Pipeline,
    ) -> Result<Replies, Error> {
        self.run_replies(route, pipe, false).await
    }

    async fn run_replies(
        &self,
        route: Route<'_>,
        pipe: &redis::Pipeline,
        errors_fail: bool,
    ) -> Result<Replies, Error> {
        let packed = pipe.get_packed_pipeline();
        let n = conn::reply_count(pipe);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.get(route).await?;
            let result = match self.exchange(&mut conn, &packed, n, Duration::ZERO).await {
                Ok(replies) if errors_fail => conn::check(&replies).map(|()| replies),
                Ok(replies) => match conn::check(&replies) {
                    Err(e) if e.is_redirect() => Err(e),
                    _ => Ok(replies),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(replies) => return Ok(replies),
                Err(e) => {
                    if self.failed(conn, &e, false) && attempt < 3 {
                        if attempt > 1 {
                            tokio::time::sleep(REFRESH_EVERY).await;
                        }
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// [`Pool::run_reads`] with typed results.
    pub async fn run<T: FromRedisValue>(
        &self,
        route: Route<'_>,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        let replies = self.run_reads(route, pipe).await?;
        conn::compose(pipe, &replies)
    }

    /// The address of every master (one entry, empty, for standalone Redis).
    pub async fn masters(&self) -> Result<Vec<String>, Error> {
        match &self.0.topology {
            Topology::Single(..) => Ok(vec![String::new()]),
            Topology::Cluster(c) => {
                let map = c.ensure_map().await?;
                let mut addrs: Vec<String> = map.ranges.iter().map(|r| r.2.clone()).collect();
                addrs.sort();
                addrs.dedup();
                Ok(addrs)
            }
        }
    }

    /// Runs `pipe` on one master by its address from [`Pool::masters`] (scans of every
    /// node), with the same failure policy.
    pub async fn run_at<T: FromRedisValue>(
        &self,
        addr: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        let mut conn = self.get_at(addr).await?;
        match self.query(&mut conn, pipe, Duration::ZERO).await {
            Ok(v) => Ok(v),
            Err(e) => {
                self.failed(conn, &e, false);
                Err(e)
            }
        }
    }

    /// `PING`s every master and returns the addresses of those that did not answer; an
    /// error when none did. On a cluster with one master down only that master's apps
    /// are affected, so readiness must not take every Tally process out of rotation.
    pub async fn ping_all(&self) -> Result<Vec<String>, Error> {
        let masters = self.masters().await?;
        let mut down = Vec::new();
        let mut last_err = None;
        let mut ping = redis::pipe();
        ping.cmd("PING");
        for addr in &masters {
            if let Err(e) = self.run_at::<(String,)>(addr, &ping).await {
                down.push(addr.clone());
                last_err = Some(e);
            }
        }
        match last_err {
            Some(e) if down.len() == masters.len() => Err(e),
            _ => Ok(down),
        }
    }
}

/// Longest a stale slot map is trusted before it is read again; also the shortest time
/// between two reads, so a dead node does not turn every request into `CLUSTER SLOTS`.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);

#[derive(Default, Debug)]
struct SlotMap {
    /// (first slot, last slot, master address), sorted.
    ranges: Vec<(u16, u16, String)>,
}

impl SlotMap {
    fn owner(&self, slot: u16) -> Option<&str> {
        let i = self.ranges.partition_point(|r| r.1 < slot);
        self.ranges
            .get(i)
            .filter(|r| r.0 <= slot)
            .map(|r| r.2.as_str())
    }
}

struct Cluster {
    cfg: RedisConfig,
    seeds: Vec<redis::ConnectionInfo>,
    map: RwLock<Arc<SlotMap>>,
    nodes: Mutex<HashMap<String, NodePool>>,
    stale: AtomicBool,
    last_refresh: Mutex<Option<Instant>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Cluster {
    fn current(&self) -> Arc<SlotMap> {
        match self.map.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// How to reach a node: the seed's credentials and database, the node's address.
    fn info(&self, addr: &str) -> Result<redis::ConnectionInfo, Error> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| Error::Pool(format!("bad cluster node address {addr:?}")))?;
        let seed = self
            .seeds
            .first()
            .ok_or_else(|| Error::Pool("REDIS_CLUSTER_URLS is empty".into()))?;
        Ok(seed.clone().set_addr(ConnectionAddr::Tcp(host, port)))
    }

    fn node(&self, addr: &str) -> Result<NodePool, Error> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = nodes.get(addr) {
            return Ok(p.clone());
        }
        let pool = node_pool(&self.info(addr)?, &self.cfg)?;
        nodes.insert(addr.to_string(), pool.clone());
        Ok(pool)
    }

    /// The master that owns `slot`, or any master.
    async fn owner(&self, slot: Option<u16>) -> Result<String, Error> {
        let map = self.ensure_map().await?;
        match slot {
            Some(s) => map
                .owner(s)
                .map(str::to_string)
                .ok_or_else(|| Error::Pool(format!("cluster slot {s} has no master"))),
            None => map
                .ranges
                .first()
                .map(|r| r.2.clone())
                .ok_or_else(|| Error::Pool("cluster has no slots".into())),
        }
    }

    async fn ensure_map(&self) -> Result<Arc<SlotMap>, Error> {
        let map = self.current();
        let recent = |at: &Option<Instant>| at.is_some_and(|t| t.elapsed() < REFRESH_EVERY);
        if !self.stale.load(Ordering::Relaxed) && !map.ranges.is_empty() {
            return Ok(map);
        }
        // With a map in hand, nobody waits for a refresh: one request refreshes, the others
        // route by the map they have (a seed that does not answer may take a whole
        // connection timeout). Only the very first lookup has to wait.
        let _guard = if map.ranges.is_empty() {
            self.refreshing.lock().await
        } else {
            match self.refreshing.try_lock() {
                Ok(g) => g,
                Err(_) => return Ok(map),
            }
        };
        let last = *self.last_refresh.lock().unwrap_or_else(|p| p.into_inner());
        let map = self.current();
        if !map.ranges.is_empty() && (!self.stale.load(Ordering::Relaxed) || recent(&last)) {
            return Ok(map);
        }
        let mut candidates: Vec<String> = self
            .seeds
            .iter()
            .filter_map(|s| match s.addr() {
                ConnectionAddr::Tcp(h, p) => Some(format!("{h}:{p}")),
                _ => None,
            })
            .collect();
        for r in &map.ranges {
            if !candidates.contains(&r.2) {
                candidates.push(r.2.clone());
            }
        }
        let mut last_err = Error::Pool("no cluster seed node is reachable".into());
        for addr in candidates {
            match self.read_slots(&addr).await {
                Ok(fresh) if !fresh.ranges.is_empty() => {
                    let fresh = Arc::new(fresh);
                    *self.map.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                    self.stale.store(false, Ordering::Relaxed);
                    *self.last_refresh.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Instant::now());
                    return Ok(fresh);
                }
                Ok(_) => last_err = Error::Pool(format!("{addr}: no slots assigned")),
                Err(e) => last_err = e,
            }
        }
        *self.last_refresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if map.ranges.is_empty() {
            Err(last_err)
        } else {
            // Every node we know failed to answer: keep routing by the old map.
            Ok(map)
        }
    }

    async fn read_slots(&self, addr: &str) -> Result<SlotMap, Error> {
        let mut conn = self.node(addr)?.get().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("CLUSTER").arg("SLOTS");
        let exchanged = tokio::time::timeout(
            self.cfg.timeout * 2,
            conn.exchange(&pipe.get_packed_pipeline(), 1),
        )
        .await
        .unwrap_or(Err(Error::Timeout))
        .and_then(|r| conn::check(&r).map(|()| r));
        let replies = match exchanged {
            Ok(r) => r,
            Err(e) => {
                if e.breaks_connection() {
                    Pool::close(conn);
                }
                return Err(e);
            }
        };
        let reply = replies
            .value(0)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let asked_host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
        Ok(parse_slots(&reply, asked_host))
    }
}

/// `CLUSTER SLOTS` → the masters' ranges. An empty host means the node that answered.
fn parse_slots(reply: &Value, asked_host: &str) -> SlotMap {
    let int = |v: &Value| match v {
        Value::Int(i) => u16::try_from(*i).ok(),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut ranges = Vec::new();
    if let Value::Array(items) = reply {
        for item in items {
            let Value::Array(parts) = item else { continue };
            let (Some(start), Some(end)) =
                (parts.first().and_then(int), parts.get(1).and_then(int))
            else {
                continue;
            };
            let Some(Value::Array(master)) = parts.get(2) else {
                continue;
            };
            let (Some(host), Some(port)) =
                (master.first().and_then(text), master.get(1).and_then(int))
            else {
                continue;
            };
            let host = if host.is_empty() || host == "?" {
                asked_host.to_string()
            } else {
                host
            };
            ranges.push((start, end, format!("{host}:{port}")));
        }
    }
    ranges.sort();
    SlotMap { ranges }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // Test vectors of the Redis Cluster specification.
        assert_eq!(
            crc16::State::<crc16::XMODEM>::calculate(b"123456789"),
            0x31C3
        );
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot_of_tag(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
        assert_eq!(Route::Tag("bar").slot(), Some(slot(b"{bar}:x")));
        assert_eq!(Route::Any.slot(), None);
    }

    #[test]
    fn tls_is_refused_at_start_up() {
        let cfg = RedisConfig {
            url: "rediss://127.0.0.1:6379".into(),
            cluster: Vec::new(),
            pool_size: 1,
            timeout: Duration::from_secs(1),
        };
        let err = pool(&cfg).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("TLS (rediss://) is not supported"), "{err}");
    }

    #[test]
    fn slot_map_finds_owners() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                Value::Array(vec![
                    Value::BulkString(b"127.0.0.1".to_vec()),
                    Value::Int(7001),
                ]),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![Value::BulkString(Vec::new()), Value::Int(7000)]),
            ]),
        ]);
        let m = parse_slots(&reply, "10.0.0.1");
        assert_eq!(m.owner(0), Some("10.0.0.1:7000"));
        assert_eq!(m.owner(5460), Some("10.0.0.1:7000"));
        assert_eq!(m.owner(5461), Some("127.0.0.1:7001"));
        assert_eq!(m.owner(10922), Some("127.0.0.1:7001"));
        assert_eq!(m.owner(10923), None);
    }
}
