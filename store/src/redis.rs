//! Connections to Redis, standalone or a Redis Cluster, behind one [`Pool`].
//!
//! Every node gets two deadpool pools: plain sockets ([`RawConn`]) for the hot paths, the
//! group commit's transactions and the read path's pipelines, whose RESP Tally packs and
//! parses itself ([`crate::resp`]), and the general client's connections ([`Conn`]) for
//! the rest. A checked-out connection is used by one task until it is dropped, so
//! per-connection state (the group commit's `WATCH`, the aggregator's blocking stream
//! read) is never shared with other requests.
//! The pool uses its own small manager rather than deadpool-redis': that one sends
//! UNWATCH+PING on every checkout, an extra round trip on every request. Here a connection
//! is trusted until a command on it fails at the transport level; then it is taken out of
//! the pool so the next checkout opens a fresh one.
//!
//! # Redis Cluster
//!
//! With `REDIS_CLUSTER_URLS`, the pool learns the slot map with `CLUSTER SLOTS` from the
//! seed nodes and sends each pipeline to the master of its slot, found from the pipeline's
//! first key. Tally's own routing rather than the `redis` crate's cluster connection,
//! because a transaction needs connection affinity (`WATCH` on the connection that later
//! sends `EXEC`) and exactly-once counting forbids a client that silently re-sends an
//! `EXEC` after a dropped connection. Every key of one app shares the app's hash tag (see
//! [`crate::keys`]), so a pipeline or transaction for one app always has one slot.
//!
//! A `MOVED`/`ASK`/`TRYAGAIN`/`CLUSTERDOWN` answer or a dead connection marks the map stale:
//! it is read again (at most every [`REFRESH_EVERY`]). A redirected pipeline was not
//! executed, so [`run`] sends it once more after the refresh; everything else fails with
//! 503 and the client retries.

use crate::error::StoreError;
use crate::resp::Replies;
use deadpool::managed::{self, Metrics, RecycleResult};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, FromRedisValue, RedisError, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `redis+unix:///path/to/sock`.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`REDIS_CLUSTER_URLS`); when set, `url` is unused.
    pub cluster: Vec<String>,
    /// Connections per Redis node.
    pub pool_size: usize,
    /// Longest wait for one Redis answer before the request fails with 503.
    pub timeout: Duration,
}

fn conn_config(cfg: &RedisConfig) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.timeout))
        .set_response_timeout(Some(cfg.timeout))
}

pub struct Manager {
    client: redis::Client,
    config: AsyncConnectionConfig,
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    async fn recycle(
        &self,
        _conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        Ok(())
    }
}

/// The connections to one Redis node.
pub type NodePool = managed::Pool<Manager>;

/// A plain socket to Redis for the read path's pipelines, whose replies Tally parses
/// itself ([`crate::resp`]).
pub enum RawStream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

pub struct RawConn {
    stream: RawStream,
    /// Size of the last reply, to size the next buffer.
    last_reply: usize,
}

impl RawConn {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match &mut self.stream {
            RawStream::Tcp(s) => s.write_all(bytes).await,
            RawStream::Unix(s) => s.write_all(bytes).await,
        }
    }

    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match &mut self.stream {
            RawStream::Tcp(s) => s.read_buf(buf).await,
            RawStream::Unix(s) => s.read_buf(buf).await,
        }
    }

    /// Sends a packed pipeline and reads its `n` replies.
    pub async fn exchange(&mut self, packed: &[u8], n: usize) -> Result<Replies, StoreError> {
        self.write_all(packed).await.map_err(io_error)?;
        // Sized like the last reply on this socket (bounded: one huge answer must not make
        // every later buffer huge).
        let mut replies = Replies::with_capacity(self.last_reply.clamp(4096, 1 << 20));
        loop {
            if replies
                .advance(n)
                .map_err(|e| StoreError::Pool(e.to_string()))?
            {
                break;
            }
            let got = self.read_buf(replies.buffer()).await.map_err(io_error)?;
            if got == 0 {
                return Err(io_error(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        if replies.trailing() > 0 {
            return Err(StoreError::Pool("redis sent more than was asked".into()));
        }
        self.last_reply = replies.buffer().len();
        Ok(replies)
    }
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Redis(e.into())
}

pub struct RawManager {
    addr: ConnectionAddr,
    settings: redis::RedisConnectionInfo,
    timeout: Duration,
}

impl managed::Manager for RawManager {
    type Type = RawConn;
    type Error = StoreError;

    async fn create(&self) -> Result<RawConn, StoreError> {
        let connect = async {
            let stream = match &self.addr {
                ConnectionAddr::Tcp(host, port) => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(io_error)?;
                    s.set_nodelay(true).map_err(io_error)?;
                    RawStream::Tcp(s)
                }
                ConnectionAddr::Unix(path) => RawStream::Unix(
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(io_error)?,
                ),
                other => {
                    return Err(StoreError::Pool(format!(
                        "unsupported redis address {other:?}"
                    )))
                }
            };
            let mut conn = RawConn {
                stream,
                last_reply: 0,
            };
            // The same handshake the general client does: credentials, then the database.
            let mut hello = redis::pipe();
            if let Some(pw) = self.settings.password() {
                let auth = hello.cmd("AUTH");
                if let Some(user) = self.settings.username() {
                    auth.arg(user);
                }
                auth.arg(pw);
            }
            if self.settings.db() != 0 {
                hello.cmd("SELECT").arg(self.settings.db());
            }
            if !hello.is_empty() {
                let r = conn
                    .exchange(&hello.get_packed_pipeline(), hello.len())
                    .await?;
                if let Some(e) = r.first_error() {
                    return Err(StoreError::Pool(format!(
                        "redis refused the handshake: {e}"
                    )));
                }
            }
            Ok(conn)
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| StoreError::Timeout)?
    }

    async fn recycle(&self, _conn: &mut RawConn, _: &Metrics) -> RecycleResult<StoreError> {
        Ok(())
    }
}

/// Plain sockets to one Redis node, for [`run_reads`] and the group commit.
pub type RawPool = managed::Pool<RawManager>;

/// A plain socket checked out for one task; it goes back to its pool when dropped.
pub type RawObj = managed::Object<RawManager>;

fn raw_pool(info: &redis::ConnectionInfo, cfg: &RedisConfig) -> Result<RawPool, StoreError> {
    let manager = RawManager {
        addr: info.addr().clone(),
        settings: info.redis_settings().clone(),
        timeout: cfg.timeout,
    };
    sized(managed::Pool::builder(manager), cfg)
}

/// Either pool of a node: `TALLY_REDIS_POOL` connections, every wait bounded by the timeout.
fn sized<M: managed::Manager>(
    builder: managed::PoolBuilder<M>,
    cfg: &RedisConfig,
) -> Result<managed::Pool<M>, StoreError> {
    builder
        .max_size(cfg.pool_size.max(1))
        .wait_timeout(Some(cfg.timeout))
        .create_timeout(Some(cfg.timeout))
        .recycle_timeout(Some(cfg.timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Pool(e.to_string()))
}

impl From<managed::PoolError<StoreError>> for StoreError {
    fn from(e: managed::PoolError<StoreError>) -> Self {
        match e {
            managed::PoolError::Timeout(_) => StoreError::Timeout,
            managed::PoolError::Backend(e) => e,
            other => StoreError::Pool(other.to_string()),
        }
    }
}

/// A connection checked out for one task; it goes back to its pool when dropped.
pub type Conn = managed::Object<Manager>;

fn node_pool(client: redis::Client, cfg: &RedisConfig) -> Result<NodePool, StoreError> {
    let manager = Manager {
        client,
        config: conn_config(cfg),
    };
    sized(managed::Pool::builder(manager), cfg)
}

/// The shared handle to Redis. Cheap to clone.
#[derive(Clone)]
pub struct Pool(Arc<Topology>, Duration, Arc<AtomicU64>);

enum Topology {
    Single(NodePool, RawPool),
    Cluster(Box<Cluster>),
}

/// Builds the pool. Connections open lazily, so this succeeds while Redis is down;
/// requests then fail with 503 until it is back.
pub fn pool(cfg: &RedisConfig) -> Result<Pool, StoreError> {
    if cfg.cluster.is_empty() {
        let client = redis::Client::open(cfg.url.as_str())?;
        let raw = raw_pool(client.get_connection_info(), cfg)?;
        return Ok(Pool(
            Arc::new(Topology::Single(node_pool(client, cfg)?, raw)),
            cfg.timeout,
            Arc::default(),
        ));
    }
    let seeds = cfg
        .cluster
        .iter()
        .map(|u| {
            let u = u.trim();
            let u = if u.contains("://") {
                u.to_string()
            } else {
                format!("redis://{u}")
            };
            redis::Client::open(u.as_str()).map(|c| c.get_connection_info().clone())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Pool(
        Arc::new(Topology::Cluster(Box::new(Cluster {
            cfg: cfg.clone(),
            seeds,
            map: RwLock::new(Arc::new(SlotMap::default())),
            nodes: Mutex::new(HashMap::new()),
            raw_nodes: Mutex::new(HashMap::new()),
            stale: AtomicBool::new(true),
            last_refresh: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }))),
        cfg.timeout,
        Arc::default(),
    ))
}

impl Pool {
    /// The longest one pipeline may take (each connection also has its own timeout).
    pub fn timeout(&self) -> Duration {
        self.1 * 2
    }

    /// The routing key of a pipeline: only a cluster needs one, so standalone Redis skips
    /// looking for it (it copies the key) on every request.
    fn route(&self, pipe: &redis::Pipeline) -> Option<Vec<u8>> {
        if self.is_cluster() {
            route_of(pipe)
        } else {
            None
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(*self.0, Topology::Cluster(_))
    }

    /// A connection to the master that owns `route` (any key, or a key pattern, of the
    /// slot: only its hash tag counts), or to any node when `route` is `None`.
    pub async fn conn(&self, route: Option<&[u8]>) -> Result<Conn, StoreError> {
        match &*self.0 {
            Topology::Single(p, _) => Ok(p.get().await?),
            Topology::Cluster(c) => c.conn(route).await,
        }
    }

    /// Reports that a command on `conn` failed with `e`: a broken connection leaves the
    /// pool, and on a cluster a redirect or a dead node makes the slot map be read again.
    /// Returns whether the failure was a redirect (the command was not executed).
    pub fn failed(&self, conn: Conn, e: &RedisError) -> bool {
        self.note_error();
        let transport = is_transport_error(e);
        if transport {
            let _ = managed::Object::take(conn);
        }
        let redirect = is_redirect(e);
        if let Topology::Cluster(c) = &*self.0 {
            if transport || redirect {
                c.stale.store(true, Ordering::Relaxed);
            }
        }
        redirect
    }

    /// A plain socket to the master that owns `route` (any node when `None`). A node that
    /// cannot be reached makes a cluster's slot map be read again.
    pub async fn raw(&self, route: Option<&[u8]>) -> Result<RawObj, StoreError> {
        let rp = match &*self.0 {
            Topology::Single(_, raw) => raw.clone(),
            Topology::Cluster(c) => c.raw_node(&c.owner(route).await?)?,
        };
        rp.get().await.map_err(|e| {
            self.note_error();
            self.mark_stale();
            e.into()
        })
    }

    /// Closes a plain socket after a failed or timed-out exchange: its state is unknown.
    /// Counted as a Redis error; a cluster reads its slot map again.
    pub fn discard_raw(&self, conn: RawObj) {
        self.note_error();
        self.mark_stale();
        Pool::close_raw(conn);
    }

    /// Closes a plain socket that must not be reused (it holds a `WATCH`) although Redis
    /// did nothing wrong.
    pub fn close_raw(conn: RawObj) {
        drop(managed::Object::take(conn));
    }

    /// After a redirect or a dead node: a cluster reads its slot map again.
    pub fn mark_stale(&self) {
        if let Topology::Cluster(c) = &*self.0 {
            c.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Counts a failed Redis exchange (for `/metrics`).
    pub fn note_error(&self) {
        self.2.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed Redis exchanges so far: errors, timeouts, lost connections, redirects.
    pub fn errors(&self) -> u64 {
        self.2.load(Ordering::Relaxed)
    }

    /// Closes a connection whose state is unknown (a timed-out or half-done exchange)
    /// instead of returning it to its pool.
    pub fn discard(conn: Conn) {
        drop(managed::Object::take(conn));
    }

    /// The address of every master (one entry, the URL, for standalone Redis).
    pub async fn masters(&self) -> Result<Vec<String>, StoreError> {
        match &*self.0 {
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

    /// `PING`s every master and returns the addresses of those that did not answer; an
    /// error when none did. On a cluster with one master down only that master's apps
    /// are affected, so readiness must not take every Tally process out of rotation.
    pub async fn ping_all(&self) -> Result<Vec<String>, StoreError> {
        let masters = self.masters().await?;
        let mut down = Vec::new();
        let mut last_err = None;
        for addr in &masters {
            let mut conn = match self.conn_to(addr).await {
                Ok(c) => c,
                Err(e) => {
                    down.push(addr.clone());
                    last_err = Some(e);
                    continue;
                }
            };
            let res: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut *conn).await;
            if let Err(e) = res {
                self.failed(conn, &e);
                down.push(addr.clone());
                last_err = Some(store_error(e));
            }
        }
        match last_err {
            Some(e) if down.len() == masters.len() => Err(e),
            _ => Ok(down),
        }
    }

    /// A connection to one master by its address from [`Pool::masters`].
    pub async fn conn_to(&self, addr: &str) -> Result<Conn, StoreError> {
        match &*self.0 {
            Topology::Single(p, _) => Ok(p.get().await?),
            Topology::Cluster(c) => Ok(c.node(addr)?.get().await?),
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
    raw_nodes: Mutex<HashMap<String, RawPool>>,
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
    fn info(&self, addr: &str) -> Result<redis::ConnectionInfo, StoreError> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| StoreError::Pool(format!("bad cluster node address {addr:?}")))?;
        let seed = self
            .seeds
            .first()
            .ok_or_else(|| StoreError::Pool("REDIS_CLUSTER_URLS is empty".into()))?;
        Ok(seed.clone().set_addr(ConnectionAddr::Tcp(host, port)))
    }

    fn node(&self, addr: &str) -> Result<NodePool, StoreError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = nodes.get(addr) {
            return Ok(p.clone());
        }
        let pool = node_pool(redis::Client::open(self.info(addr)?)?, &self.cfg)?;
        nodes.insert(addr.to_string(), pool.clone());
        Ok(pool)
    }

    fn raw_node(&self, addr: &str) -> Result<RawPool, StoreError> {
        let mut nodes = self.raw_nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = nodes.get(addr) {
            return Ok(p.clone());
        }
        let pool = raw_pool(&self.info(addr)?, &self.cfg)?;
        nodes.insert(addr.to_string(), pool.clone());
        Ok(pool)
    }

    /// The master that owns `route`, or any master.
    async fn owner(&self, route: Option<&[u8]>) -> Result<String, StoreError> {
        let map = self.ensure_map().await?;
        match route {
            Some(k) => {
                let s = slot(k);
                map.owner(s)
                    .map(str::to_string)
                    .ok_or_else(|| StoreError::Pool(format!("cluster slot {s} has no master")))
            }
            None => map
                .ranges
                .first()
                .map(|r| r.2.clone())
                .ok_or_else(|| StoreError::Pool("cluster has no slots".into())),
        }
    }

    async fn ensure_map(&self) -> Result<Arc<SlotMap>, StoreError> {
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
        let mut last_err = StoreError::Pool("no cluster seed node is reachable".into());
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
                Ok(_) => last_err = StoreError::Pool(format!("{addr}: no slots assigned")),
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

    async fn read_slots(&self, addr: &str) -> Result<SlotMap, StoreError> {
        let mut conn = self.node(addr)?.get().await?;
        let reply: Value = match redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut *conn)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                if is_transport_error(&e) {
                    let _ = managed::Object::take(conn);
                }
                return Err(e.into());
            }
        };
        let asked_host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
        Ok(parse_slots(&reply, asked_host))
    }

    async fn conn(&self, route: Option<&[u8]>) -> Result<Conn, StoreError> {
        let addr = self.owner(route).await?;
        let pool = self.node(&addr)?;
        match pool.get().await {
            Ok(c) => Ok(c),
            Err(e) => {
                self.stale.store(true, Ordering::Relaxed);
                Err(e.into())
            }
        }
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

/// The cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key when it
/// has none, modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The key that decides where a pipeline goes: the first key of its first command that
/// has one. Tally's pipelines never mix slots (one app's keys share its hash tag).
pub fn route_of(pipe: &redis::Pipeline) -> Option<Vec<u8>> {
    pipe.cmd_iter().find_map(key_of)
}

fn key_of(cmd: &redis::Cmd) -> Option<Vec<u8>> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let at = |i: usize| args.get(i).map(|k| k.to_vec());
    match name.as_slice() {
        b"MULTI" | b"EXEC" | b"DISCARD" | b"UNWATCH" | b"PING" | b"SCAN" | b"INFO" | b"CLUSTER"
        | b"DBSIZE" | b"SCRIPT" | b"CLIENT" => None,
        b"EVAL" | b"EVALSHA" | b"FCALL" => {
            let n: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if n == 0 {
                None
            } else {
                at(3)
            }
        }
        b"XGROUP" | b"XINFO" | b"OBJECT" | b"MEMORY" => at(2),
        b"XREAD" | b"XREADGROUP" => {
            let i = args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            at(i + 1)
        }
        _ => at(1),
    }
}

impl From<managed::PoolError<RedisError>> for StoreError {
    fn from(e: managed::PoolError<RedisError>) -> Self {
        match e {
            managed::PoolError::Timeout(_) => StoreError::Timeout,
            managed::PoolError::Backend(r) => StoreError::Redis(r),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

/// Whether an error means the connection itself is unusable.
pub fn is_transport_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

/// Whether the cluster refused a command because the slot is elsewhere or unavailable
/// (nothing was executed).
pub fn is_redirect(e: &RedisError) -> bool {
    ["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "EXECABORT"]
        .iter()
        .any(|c| has_code(e, c))
}

/// Whether `e`, or one of the failures of a pipeline it reports, has the error code.
pub fn has_code(e: &RedisError, code: &str) -> bool {
    // A failed pipeline quotes each command's error code in its message.
    e.code() == Some(code) || e.to_string().contains(&format!("\"{code}\""))
}

/// The error a request sees.
pub fn store_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::Redis(e)
    }
}

/// Runs one pipeline (or command) in one round trip, on the node of its first key.
pub async fn run<T: FromRedisValue>(pool: &Pool, pipe: &redis::Pipeline) -> Result<T, StoreError> {
    let route = pool.route(pipe);
    run_at(pool, route.as_deref(), pipe).await
}

/// Runs a pipeline on the node that owns `route` (for keyless commands such as `SCAN`
/// that must reach one app's node).
pub async fn run_at<T: FromRedisValue>(
    pool: &Pool,
    route: Option<&[u8]>,
    pipe: &redis::Pipeline,
) -> Result<T, StoreError> {
    let mut attempt = 0;
    loop {
        let mut conn = pool.conn(route).await?;
        match pipe.query_async::<T>(&mut *conn).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let redirect = pool.failed(conn, &e);
                attempt += 1;
                // A redirected pipeline ran nowhere: send it again to the slot's new owner.
                if redirect && pool.is_cluster() && attempt < 3 {
                    if attempt > 1 {
                        tokio::time::sleep(REFRESH_EVERY).await;
                    }
                    continue;
                }
                return Err(store_error(e));
            }
        }
    }
}

/// One exchange on a plain socket, bounded by the pool's timeout. After an error the
/// socket's state is unknown: the caller must [`Pool::discard_raw`] it.
pub async fn exchange(
    pool: &Pool,
    conn: &mut RawConn,
    packed: &[u8],
    n: usize,
) -> Result<Replies, StoreError> {
    match tokio::time::timeout(pool.timeout(), conn.exchange(packed, n)).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Timeout),
    }
}

/// Whether an error reply says the slot lives elsewhere (the command ran nowhere).
pub fn is_redirect_reply(err: &str) -> bool {
    let code = err.split(' ').next().unwrap_or("");
    matches!(code, "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN")
}

/// Runs a read-only pipeline on the node of its first key and parses the replies in place
/// ([`crate::resp`]): the read path's way to fetch many hash fields without a copy each.
/// A reply that is an error fails the whole call; a cluster redirect is followed once.
pub async fn run_reads(pool: &Pool, pipe: &redis::Pipeline) -> Result<Replies, StoreError> {
    let route = pool.route(pipe);
    let packed = pipe.get_packed_pipeline();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut conn = pool.raw(route.as_deref()).await?;
        let replies = match exchange(pool, &mut conn, &packed, pipe.len()).await {
            Ok(r) => r,
            Err(e) => {
                pool.discard_raw(conn);
                return Err(e);
            }
        };
        drop(conn);
        let Some(err) = replies.first_error() else {
            return Ok(replies);
        };
        pool.note_error();
        if is_redirect_reply(err) && pool.is_cluster() {
            pool.mark_stale();
            // A redirected read ran nowhere: ask the slot's new owner.
            if attempt < 3 {
                if attempt > 1 {
                    tokio::time::sleep(REFRESH_EVERY).await;
                }
                continue;
            }
        }
        return Err(StoreError::Pool(format!("redis: {err}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // Test vectors of the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn pipelines_route_by_their_first_key() {
        let mut p = redis::pipe();
        p.atomic().cmd("HINCRBY").arg("{a}:c").arg("f").arg(1);
        assert_eq!(route_of(&p), Some(b"{a}:c".to_vec()));
        let mut p = redis::pipe();
        p.cmd("PING");
        assert_eq!(route_of(&p), None);
        let mut p = redis::pipe();
        p.cmd("EVALSHA").arg("abc").arg(1).arg("{b}:x");
        assert_eq!(route_of(&p), Some(b"{b}:x".to_vec()));
        let mut p = redis::pipe();
        p.cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("STREAMS")
            .arg("{c}:stream")
            .arg(">");
        assert_eq!(route_of(&p), Some(b"{c}:stream".to_vec()));
        let mut p = redis::pipe();
        p.cmd("XGROUP")
            .arg("CREATE")
            .arg("{d}:stream")
            .arg("g")
            .arg("0");
        assert_eq!(route_of(&p), Some(b"{d}:stream".to_vec()));
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
