//! Test harness: every test gets its own `redis-server` on a free port, its own Tally on
//! port 0 (in-process, on a thread of its own), a pinned clock, and a small blocking HTTP
//! client that speaks real HTTP/1.1 over TCP.
#![allow(dead_code)]

pub mod mmdb;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tally_config::Config;
use tally_redis::embedded::{EmbeddedOptions, EmbeddedRedis};
use tally_service::clock::ManualClock;

/// 2024-10-22T10:30:00Z: a Tuesday, day 296, Countly week 43.
pub const NOW: i64 = 1_729_593_000;
pub const DAY: i64 = 86_400;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(sweep_stale_dirs);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("tally-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Removes the data folders of earlier test processes that have exited: `deploy/test`
/// removes its whole temporary folder at the end, but a plain `cargo test` would otherwise
/// pile them up. Linux only (a process is alive while `/proc/<pid>` exists).
fn sweep_stale_dirs() {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("tally-test-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

pub fn start_redis(tag: &str) -> EmbeddedRedis {
    let mut o = EmbeddedOptions::new(temp_dir(tag));
    o.aof = false;
    EmbeddedRedis::start(o).expect("redis-server must be installed (deploy/test installs it)")
}

/// Whether this run puts every [`TestApp`] on a Redis Cluster (`TALLY_TEST_REDIS=cluster`,
/// set by `deploy/test` for a second pass of the Countly and aggregator suites).
pub fn cluster_mode() -> bool {
    std::env::var("TALLY_TEST_REDIS").is_ok_and(|v| v == "cluster")
}

/// A real Redis Cluster of `masters` nodes (no replicas) on free loopback ports, made with
/// `redis-cli --cluster create`. A master may be down without stopping the others
/// (`cluster-require-full-coverage no`).
pub struct TestCluster {
    pub nodes: Vec<EmbeddedRedis>,
}

impl TestCluster {
    pub fn start(tag: &str, masters: usize, fsync: &str) -> TestCluster {
        let nodes = tally_redis::embedded::start_cluster(&temp_dir(tag), masters, fsync)
            .expect("a Redis Cluster starts (redis-server and redis-cli are installed)");
        TestCluster { nodes }
    }

    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}

/// Waits until every node reports `cluster_state:ok`.
pub fn wait_cluster_ok(nodes: &[&EmbeddedRedis]) {
    tally_redis::embedded::wait_cluster_ok(nodes, Duration::from_secs(30))
        .expect("the cluster becomes ok");
}

/// Creates an app through `POST /project/create` at `addr` (any server with the
/// aggregator's routes), with the tests' admin key; it must succeed.
pub fn create_project(addr: &str, name: &str, timezone: &str) -> Keys {
    create_project_with(addr, json!({"name": name, "timezone": timezone}))
}

pub fn create_project_with(addr: &str, mut body: Value) -> Keys {
    body["lock_key"] = json!("test-admin-key");
    let r = http(
        addr,
        "POST",
        "/project/create",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let s = |f: &str| v[f].as_str().unwrap_or_default().to_string();
    Keys {
        id: s("project"),
        write: s("write_key"),
        read: s("read_key"),
        master: s("master_key"),
    }
}

/// A value from `/metrics` (a line `name value`; 0 when absent).
pub fn metric_value(addr: &str, name: &str) -> f64 {
    http(addr, "GET", "/metrics", &[], b"")
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Runs a command on one Redis.
pub fn redis_on<T: redis::FromRedisValue>(node: &EmbeddedRedis, cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(node.url()).expect("redis url");
    let mut conn = client.get_connection().expect("redis connection");
    cmd.query(&mut conn).expect("redis command")
}

/// Which of `nodes` is master of the slot of `key`.
pub fn node_of(nodes: &[&EmbeddedRedis], key: &str) -> usize {
    let slot: i64 = redis_on(nodes[0], redis::cmd("CLUSTER").arg("KEYSLOT").arg(key));
    let int = |v: &redis::Value| match v {
        redis::Value::Int(i) => Some(*i),
        _ => None,
    };
    let port = redis_on::<Vec<redis::Value>>(nodes[0], redis::cmd("CLUSTER").arg("SLOTS"))
        .into_iter()
        .find_map(|r| {
            let redis::Value::Array(p) = r else {
                return None;
            };
            let (start, end) = (int(p.first()?)?, int(p.get(1)?)?);
            let Some(redis::Value::Array(m)) = p.get(2) else {
                return None;
            };
            (start <= slot && slot <= end).then(|| m.get(1).and_then(int))?
        })
        .expect("every slot has a master");
    nodes
        .iter()
        .position(|n| i64::from(n.port) == port)
        .expect("a node of this cluster")
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A query string from pairs, values encoded.
pub fn qs(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_http(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Like [`http`], but a connection that fails or breaks is an error, not a panic (for
/// load that runs while servers are killed).
pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    try_raw(addr, &req)
}

/// Sends `bytes` as they are (a request that need not be valid HTTP, or need not be
/// whole) and reads the answer until the server closes the connection.
pub fn raw(addr: &str, bytes: &[u8]) -> Resp {
    try_raw(addr, bytes).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(bytes)))
}

fn try_raw(addr: &str, bytes: &[u8]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(bytes)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: body.to_string(),
    })
}

fn start_server(
    cfg: Config,
    url: String,
    clock: Arc<ManualClock>,
) -> (
    String,
    actix_web::dev::ServerHandle,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let running = tally::start(&cfg, &url, clock).expect("tally starts");
            tx.send((running.addr, running.server.handle())).ok();
            running.run().await.ok();
        })
    });
    let (addr, server) = rx.recv().expect("server address");
    (addr.to_string(), server, thread)
}

/// Another server on a [`TestApp`]'s Redis.
pub struct Peer {
    pub addr: String,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            actix_web::rt::System::new().block_on(self.server.clone().stop(true));
            t.join().ok();
        }
    }
}

pub struct Keys {
    pub id: String,
    pub write: String,
    pub read: String,
    pub master: String,
}

pub struct TestApp {
    pub addr: String,
    /// The Redis, or in cluster mode the cluster's first node.
    pub redis: EmbeddedRedis,
    /// The other nodes, in cluster mode.
    pub others: Vec<EmbeddedRedis>,
    /// The cluster's seed URLs (empty on standalone Redis).
    pub cluster: Vec<String>,
    pub clock: Arc<ManualClock>,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestApp {
    pub fn spawn() -> TestApp {
        Self::spawn_with(|_| {})
    }

    /// Starts Tally with the test defaults, changed by `tweak`.
    /// Starts Tally with the test defaults, changed by `tweak`, on a Redis of its own (a
    /// three-master cluster in [`cluster_mode`]).
    pub fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        if cluster_mode() {
            return Self::spawn_on_cluster(TestCluster::start("app", 3, "everysec"), tweak);
        }
        let redis = start_redis("app");
        Self::spawn_on(redis, tweak)
    }

    /// Starts Tally on a cluster of one's own.
    pub fn spawn_on_cluster(c: TestCluster, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let seeds = c.seeds();
        let mut nodes = c.nodes.into_iter();
        let first = nodes.next().expect("a node");
        Self::spawn_cluster(first, nodes.collect(), seeds, tweak)
    }

    /// Every Redis node (one on standalone Redis).
    pub fn nodes(&self) -> Vec<&EmbeddedRedis> {
        std::iter::once(&self.redis).chain(&self.others).collect()
    }

    pub fn node_mut(&mut self, i: usize) -> &mut EmbeddedRedis {
        if i == 0 {
            &mut self.redis
        } else {
            &mut self.others[i - 1]
        }
    }

    pub fn spawn_on(redis: EmbeddedRedis, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_cluster(redis, Vec::new(), Vec::new(), tweak)
    }

    fn spawn_cluster(
        redis: EmbeddedRedis,
        others: Vec<EmbeddedRedis>,
        cluster: Vec<String>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut cfg = Config::for_tests(&redis.url());
        cfg.redis_cluster = cluster.clone();
        tweak(&mut cfg);
        let clock = ManualClock::new(NOW * 1000);
        let (addr, server, thread) = start_server(cfg, redis.url(), clock.clone());
        TestApp {
            addr,
            redis,
            others,
            cluster,
            clock,
            server,
            thread: Some(thread),
        }
    }

    /// A second Tally process-equivalent (own committer, own pool) on the same Redis.
    pub fn peer(&self) -> Peer {
        let mut cfg = Config::for_tests(&self.redis.url());
        cfg.redis_cluster = self.cluster.clone();
        let (addr, server, thread) = start_server(cfg, self.redis.url(), self.clock.clone());
        Peer {
            addr,
            server,
            thread: Some(thread),
        }
    }

    /// Stops the server gracefully (flushing the write queue) and waits for it.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let h = self.server.clone();
            actix_web::rt::System::new().block_on(h.stop(true));
            t.join().ok();
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, content_type: &str, body: &str) -> Resp {
        http(
            &self.addr,
            "POST",
            path,
            &[("Content-Type", content_type)],
            body.as_bytes(),
        )
    }

    pub fn create_app(&self, timezone: &str) -> Keys {
        self.create_app_with(json!({"name": "test", "timezone": timezone}))
    }

    pub fn create_app_with(&self, body: Value) -> Keys {
        create_project_with(&self.addr, body)
    }

    /// `GET /i` with `app_key` and the given pairs; asserts nothing.
    pub fn i(&self, k: &Keys, pairs: &[(&str, String)]) -> Resp {
        let mut all = vec![("app_key", k.write.clone())];
        all.extend_from_slice(pairs);
        self.get(&format!("/i?{}", qs(&all)))
    }

    /// `GET /i` that must succeed.
    pub fn ok(&self, k: &Keys, pairs: &[(&str, String)]) {
        let r = self.i(k, pairs);
        assert_eq!(
            (r.status, r.json()["result"].clone()),
            (200, json!("Success")),
            "{}",
            r.body
        );
    }

    /// `GET /o?method=...` with the read key; the answer must be 200 JSON.
    pub fn o(&self, k: &Keys, method: &str, extra: &[(&str, String)]) -> Value {
        let mut all = vec![
            ("app_key", k.write.clone()),
            ("api_key", k.read.clone()),
            ("method", method.to_string()),
        ];
        all.extend_from_slice(extra);
        let r = self.get(&format!("/o?{}", qs(&all)));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Keys in the database (over every node of a cluster).
    pub fn key_count(&self) -> usize {
        self.nodes()
            .into_iter()
            .map(|n| redis_on::<usize>(n, &mut redis::cmd("DBSIZE")))
            .sum()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Shorthand for a `(name, value)` pair.
pub fn p(k: &'static str, v: impl ToString) -> (&'static str, String) {
    (k, v.to_string())
}

/// Walks a JSON object by keys.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

/// A child process killed (and reaped) when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One of the project's binaries (`tally`, `collector`, `reader`, `aggregator`).
pub fn binary(name: &str) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_BIN_EXE_tally")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo test --workspace, as deploy/test does)",
        path.display()
    );
    path
}

/// Calls `check` every 20 ms until it gives a value, and returns it; panics naming `what`
/// once `deadline` has passed. Tests wait for a condition, not for a fixed time: a slow
/// machine then makes a test slower instead of failing it, and a fast one does not idle.
pub fn wait_until<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "gave up after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `addr` answers `path` with 200.
pub fn wait_http(addr: &str, path: &str) {
    wait_until(
        &format!("{addr}{path} to answer 200"),
        Duration::from_secs(20),
        || {
            try_http(addr, "GET", path, &[], b"")
                .is_ok_and(|r| r.status == 200)
                .then_some(())
        },
    );
}

/// Starts binary `name` on `bind` against `redis_url` with the test admin key and `env`,
/// without waiting for it.
pub fn start_binary(
    name: &str,
    redis_url: &str,
    bind: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    binary_command(name, redis_url, bind, env)
        .spawn()
        .expect("start the binary")
}

/// The command [`start_binary`] runs (its stderr discarded unless the caller sets it).
pub fn binary_command(
    name: &str,
    redis_url: &str,
    bind: &str,
    env: &[(&str, &str)],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(binary(name));
    cmd.env("REDIS_URL", redis_url)
        .env("TALLY_BIND", bind)
        .env("TALLY_ADMIN_KEY", "test-admin-key")
        .env("RUST_LOG", "warn")
        // Never an archive beside the working directory: a test that wants one names it.
        .env("TALLY_ARCHIVE_URL", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts binary `name` on a free port and waits until it answers `/ping`.
pub fn spawn_binary(name: &str, redis_url: &str, env: &[(&str, &str)]) -> (Proc, String) {
    let addr = format!(
        "127.0.0.1:{}",
        tally_redis::embedded::free_port().expect("port")
    );
    let child = Proc(start_binary(name, redis_url, &addr, env));
    wait_http(&addr, "/ping");
    (child, addr)
}

/// The sum of an event's hour histogram over `days` (bucket events API, read key).
pub fn rolled_up(addr: &str, project: &str, read_key: &str, event: &str, days: u32) -> i64 {
    let auth = format!("Bearer {read_key}");
    let body = json!({"event_name": event, "days": days, "interval": "hour"}).to_string();
    let r = http(
        addr,
        "POST",
        &format!("/api/bucket/{project}/data/events/stats"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    r.json()
        .as_array()
        .map(|a| a.iter().map(|p| p[1].as_i64().unwrap_or(0)).sum())
        .unwrap_or(-1)
}

/// Waits until the aggregator has rolled up every entry of app `id`'s raw stream, asking
/// Redis itself: `/ready`'s backlog is measured only every 2 s, so it may be stale.
pub fn settle(nodes: &[&EmbeddedRedis], id: &str) {
    let app = tally_model::keys::AppId::parse(id).expect("app id");
    let stream = tally_model::keys::stream(&app);
    // On a cluster the stream lives on the master of its slot.
    let node = if nodes.len() > 1 {
        nodes[node_of(nodes, &stream)]
    } else {
        nodes[0]
    };
    wait_until(
        &format!("the aggregator to roll up {stream}"),
        Duration::from_secs(20),
        || caught_up(node, &stream).then_some(()),
    );
}

/// Whether a consumer group reads `stream` and has acknowledged every entry of it: it
/// has been delivered the newest entry and has nothing pending. A batch's rollups and
/// its `XACK` go in one transaction, so acknowledged means rolled up.
pub fn caught_up(node: &EmbeddedRedis, stream: &str) -> bool {
    let info: std::collections::HashMap<String, redis::Value> =
        redis_on(node, redis::cmd("XINFO").arg("STREAM").arg(stream));
    let newest = info
        .get("last-generated-id")
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
    let readers = groups(node, stream);
    !readers.is_empty()
        && readers
            .iter()
            .all(|(last, pending)| Some(last) == newest.as_ref() && *pending == 0)
}

/// Each consumer group of `stream` (which must exist): the id of the newest entry it was
/// delivered (`0-0` before any) and how many delivered entries are not acknowledged yet.
pub fn groups(node: &EmbeddedRedis, stream: &str) -> Vec<(String, i64)> {
    let infos: Vec<std::collections::HashMap<String, redis::Value>> =
        redis_on(node, redis::cmd("XINFO").arg("GROUPS").arg(stream));
    infos
        .iter()
        .map(|g| {
            let last = g
                .get("last-delivered-id")
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
            let pending = g
                .get("pending")
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok());
            (last.unwrap_or_default(), pending.unwrap_or(-1))
        })
        .collect()
}

/// Why the JavaScript side of a test cannot run, if it cannot: node, the npm test
/// packages `packages` under tests/sdk/node_modules, and (with `browser`) Chromium.
/// deploy/test installs them all; a bare `cargo test` may not have them.
pub fn js_ready(packages: &[&str], browser: bool) -> Result<(), String> {
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/node_modules");
    match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return Err("node is not installed".into()),
    }
    if let Some(missing) = packages.iter().find(|p| !modules.join(p).exists()) {
        return Err(format!(
            "tests/sdk/node_modules/{missing} is missing: run `npm ci --prefix tests/sdk` (deploy/test does)"
        ));
    }
    if browser {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if !std::path::Path::new(&chromium).exists() {
            return Err(format!(
                "{chromium} is missing: apt-get install chromium (deploy/test does)"
            ));
        }
    }
    Ok(())
}

/// Tally on the wall clock, for the real SDKs (they stamp their requests with it), and
/// now in milliseconds.
pub fn spawn_on_wall_clock() -> (TestApp, i64) {
    let t = TestApp::spawn();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    t.clock.set_ms(now_ms);
    (t, now_ms)
}
