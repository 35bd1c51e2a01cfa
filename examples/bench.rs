//! `deploy/bench`: starts a private redis-server, Tally (release) and the baseline server,
//! drives them with its own HTTP/1.1 load generator (keep-alive connections, real
//! sockets), and prints one table. Every figure is measured in this run; throughput is
//! also given as a ratio to the baseline measured in the same run.
//!
//! Usage: `bench [--seconds N] [--conns N] [--rounds N] [--scale] [--only TEXT]` (deploy/bench
//! builds and runs it; `--help` prints this).
//! `--scale` measures the split `collector` on one and two processes, on standalone Redis
//! and on a three-master Redis Cluster, instead (see [`scale`]).
//! The open-loop row is followed by the baseline at the same rate, and a [`StallProbe`]
//! reports how late this machine wakes a sleeping thread, at rest and during that row: the
//! floor under every p99 it prints.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_model::keys::{self, AppId};
use tally_redis::embedded::{free_port, EmbeddedOptions, EmbeddedRedis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The load generator allocates as it did when the allocator was declared by a library
/// it links (mimalloc), so figures stay comparable across versions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Builds the path (with query) of request `seq` on connection `conn`.
type MakeReq = Arc<dyn Fn(usize, u64) -> String + Send + Sync>;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Load {
    requests: u64,
    errors: u64,
    /// The first non-200 answer, to say what the errors were.
    first_error: Option<(u16, String)>,
    secs: f64,
    lat_us: Vec<u32>,
}

impl Load {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.lat_us[i]) / 1000.0
    }
}

async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Res<(u16, Vec<u8>)> {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?.to_string();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err("connection closed".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Ok((status, body));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn conn_loop(
    addr: SocketAddr,
    make: MakeReq,
    conn: usize,
    secs: f64,
    interval: Option<Duration>,
) -> Res<Load> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(16384);
    let mut out = Load::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    // Spread the connections' schedules over one interval.
    let mut next =
        start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64((conn % 97) as f64 / 97.0));
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let scheduled = match interval {
            Some(iv) => {
                let at = next;
                next += iv;
                if Instant::now() < at {
                    // The connection is free before the request is due: the request starts
                    // when it is sent. Tokio's timer wakes up to a millisecond late, and
                    // that lateness is the load generator's, not the server's.
                    tokio::time::sleep_until(at.into()).await;
                    Instant::now()
                } else {
                    // The server still held the connection when the request was due: its
                    // latency counts from when it was due (no coordinated omission).
                    at
                }
            }
            None => Instant::now(),
        };
        let path = make(conn, seq);
        seq += 1;
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let (status, body) = read_response(&mut s, &mut buf).await?;
        // A stall of the server delays every request behind it, and counts for each.
        out.lat_us
            .push(scheduled.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        out.requests += 1;
        if status != 200 {
            out.errors += 1;
            if out.first_error.is_none() {
                out.first_error = Some((status, String::from_utf8_lossy(&body).into_owned()));
            }
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    Ok(out)
}

/// Closed loop (`rate` None: as fast as `conns` connections go) or open loop at `rate`/s.
async fn load(
    addrs: &[SocketAddr],
    make: MakeReq,
    conns: usize,
    secs: f64,
    rate: Option<f64>,
) -> Res<Load> {
    let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            // Connections take turns over the servers, as a round-robin router would.
            let addr = addrs[c % addrs.len()];
            tokio::spawn(conn_loop(addr, make.clone(), c, secs, interval))
        })
        .collect();
    let mut total = Load::default();
    for t in tasks {
        let l = t.await?.map_err(|e| e.to_string())?;
        total.requests += l.requests;
        total.errors += l.errors;
        if total.first_error.is_none() {
            total.first_error = l.first_error;
        }
        total.secs = total.secs.max(l.secs);
        total.lat_us.extend(l.lat_us);
    }
    total.lat_us.sort_unstable();
    Ok(total)
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Res<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let (status, body) = read_response(&mut s, &mut buf).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn enc(s: &str) -> String {
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

fn redis_conn(url: &str) -> Res<redis::Connection> {
    Ok(redis::Client::open(url)?.get_connection()?)
}

/// Total calls of, and microseconds in, every command but INFO, from `INFO commandstats`.
fn command_stats(c: &mut redis::Connection) -> Res<(u64, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c)?;
    let field = |l: &str, name: &str| -> u64 {
        l.split(name)
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .fold((0, 0), |(c, u), l| {
            (c + field(l, "calls="), u + field(l, "usec="))
        }))
}

/// The size Redis's main key table doubled past while the keyspace grew from `from` to
/// `to` keys, if it did. Redis grows that table when its keys reach its size (a power of
/// two) and then moves every key into the new table, a step with each command and a
/// millisecond in each cron tick: about two seconds of extra Redis CPU at a million keys
/// (`perf`: `dictRehash` and key hashing), which the rows' latency shows.
fn table_doubled((from, to): (u64, u64)) -> Option<u64> {
    let next = from.max(1).checked_next_power_of_two()?;
    let next = if next == from { next * 2 } else { next };
    (to >= next && from >= 1024).then_some(next)
}

/// AOF rewrites Redis has made since it started.
fn aof_rewrites(c: &mut redis::Connection) -> Res<u64> {
    let info: String = redis::cmd("INFO").arg("persistence").query(c)?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("aof_rewrites:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

async fn metric(addr: SocketAddr, name: &str) -> Res<u64> {
    let (_, body) = http(addr, "GET", "/metrics", "").await?;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0))
}

/// The open-loop row, with what happened in Redis during it and the baseline at its rate.
struct HalfLoad {
    rate: f64,
    tally: Load,
    rewrites: u64,
    /// Keys in Redis before and after.
    keys: (u64, u64),
    baseline: Load,
}

struct Row {
    name: String,
    load: Load,
    ratio: Option<f64>,
    cmds_per_req: Option<f64>,
    trips_per_req: Option<f64>,
    redis_us_per_req: Option<f64>,
    /// CPU the row's requests cost, by part (seconds over the row).
    cpu: Option<Cpu>,
}

/// CPU seconds (user + system) of Tally's threads by part and of Redis.
#[derive(Clone, Copy, Default)]
struct Cpu {
    http: f64,
    commit: f64,
    consumer: f64,
    other: f64,
    redis: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            http: self.http - o.http,
            commit: self.commit - o.commit,
            consumer: self.consumer - o.consumer,
            other: self.other - o.other,
            redis: self.redis - o.redis,
        }
    }
}

/// CPU seconds from a /proc stat line: utime + stime (fields 14 and 15, clock ticks of
/// 100 a second on Linux), after the command name (which may hold spaces).
fn stat_secs(stat: &str) -> f64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// Tally's CPU by thread name (the HTTP workers are actix's `actix-rt|system:0|arbiter:N`,
/// the group commit runs on the main thread `tally`, the stream consumer on
/// `tally-aggregator`), and Redis's.
fn cpu_now(tally: u32, redis: Option<u32>) -> Cpu {
    let mut c = Cpu::default();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{tally}/task")) {
        for t in tasks.flatten() {
            let p = t.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            let secs = stat_secs(&std::fs::read_to_string(p.join("stat")).unwrap_or_default());
            let comm = comm.trim();
            if comm.starts_with("actix") {
                c.http += secs;
            } else if comm == "tally" {
                c.commit += secs;
            } else if comm.starts_with("tally-aggregato") {
                c.consumer += secs;
            } else {
                c.other += secs;
            }
        }
    }
    if let Some(pid) = redis {
        c.redis =
            stat_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default());
    }
    c
}

impl Row {
    /// What is left where a row was taken out of its round.
    fn empty() -> Row {
        Row {
            name: String::new(),
            load: Load::default(),
            ratio: None,
            cmds_per_req: None,
            trips_per_req: None,
            redis_us_per_req: None,
            cpu: None,
        }
    }
}

/// The device id of the `s`-th begin_session of connection `c` in round `round`.
fn begin_device(round: usize, c: usize, s: u64) -> String {
    if round == 0 {
        format!("d{c}-{s}")
    } else {
        format!("d{c}-{s}r{round}")
    }
}

fn print_rows(rows: &[Row]) {
    for r in rows {
        if let Some((status, body)) = &r.load.first_error {
            eprintln!(
                "{}: {} errors, the first: {status} {body}",
                r.name, r.load.errors
            );
        }
    }
    println!("\n| scenario | req/s | p50 ms | p99 ms | vs baseline | Redis cmds/req | Redis round trips/req | Redis µs/req | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let f = |v: Option<f64>, d: usize| v.map_or("".to_string(), |x| format!("{x:.d$}"));
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
            r.name,
            r.load.rps(),
            r.load.pct(0.5),
            r.load.pct(0.99),
            f(r.ratio, 2),
            f(r.cmds_per_req, 2),
            f(r.trips_per_req, 3),
            f(r.redis_us_per_req, 0),
            r.load.errors
        );
    }
    // CPU by part: what each request cost this machine, whatever its speed at the time
    // (a request's share of each part's CPU over the row).
    let with_cpu: Vec<&Row> = rows.iter().filter(|r| r.cpu.is_some()).collect();
    if with_cpu.is_empty() {
        return;
    }
    println!("\nCPU per request (µs), by part:\n");
    println!("| scenario | HTTP workers | group commit | stream consumer | other Tally | Tally | Redis | Tally + Redis |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in with_cpu {
        let (Some(c), n) = (r.cpu, r.load.requests.max(1) as f64) else {
            continue;
        };
        let us = |x: f64| x * 1e6 / n;
        let tally = c.http + c.commit + c.consumer + c.other;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.name,
            us(c.http),
            us(c.commit),
            us(c.consumer),
            us(c.other),
            us(tally),
            us(c.redis),
            us(tally + c.redis)
        );
    }
}

/// How late a thread that sleeps 0.5 ms at a time wakes up: a stall of the machine (the
/// hypervisor pausing a vCPU, or the guest's run queue) that the open-loop row's latency
/// includes. Every server thread on a paused vCPU waits as long, and Tally's requests pass
/// through two single threads (the group commit and Redis), so one stall of either
/// delays all requests in flight, where the baseline's stalls delay only one worker's.
struct StallProbe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Stalls>,
}

/// What a [`StallProbe`] saw.
#[derive(Debug, Default)]
struct Stalls {
    secs: f64,
    /// Wake-ups at least 2 ms late.
    over_2ms: u32,
    longest_ms: f64,
}

impl StallProbe {
    const NAP: Duration = Duration::from_micros(500);

    fn start() -> StallProbe {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut out = Stalls::default();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(Self::NAP);
                let late = t.elapsed().saturating_sub(Self::NAP);
                if late >= Duration::from_millis(2) {
                    out.over_2ms += 1;
                }
                out.longest_ms = out.longest_ms.max(late.as_secs_f64() * 1000.0);
            }
            out.secs = start.elapsed().as_secs_f64();
            out
        });
        StallProbe { stop, thread }
    }

    fn stop(self) -> Stalls {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

impl std::fmt::Display for Stalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} wake-ups at least 2 ms late in {:.0} s, the latest {:.1} ms late",
            self.over_2ms, self.secs, self.longest_ms
        )
    }
}

/// Starts the baseline server (`bench_baseline`) on a free port and waits for it.
fn start_baseline(release: &std::path::Path) -> Res<(Proc, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let proc = Proc(
        Command::new(release.join("examples").join("bench_baseline"))
            .env("TALLY_BIND", addr.to_string())
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_ping(addr)?;
    Ok((proc, addr))
}

fn wait_ping(addr: SocketAddr) -> Res<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{addr} did not start").into())
}

/// `--only <text>`: only the `/i` rows whose name contains the text (and the baseline, and
/// the half-load row when begin_session ran); the memory and `/o` parts are skipped. For quick comparisons while profiling.
fn only() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--only")?;
    args.get(i + 1).cloned()
}

const USAGE: &str = "usage: bench [--seconds N] [--conns N] [--rounds N] [--scale] [--only TEXT]";

/// Refuses what the bench would otherwise ignore (an unknown flag, a number that is not
/// one), so a typo does not silently run the whole default bench.
fn check_args() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let ok = match args[i].as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--scale" => true,
            "--only" => args.get(i + 1).is_some(),
            "--seconds" | "--conns" | "--rounds" => args
                .get(i + 1)
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0),
            _ => false,
        };
        if !ok {
            eprintln!("bench: bad argument {:?}\n{USAGE}", args[i]);
            std::process::exit(2);
        }
        i += if args[i] == "--scale" { 1 } else { 2 };
    }
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release directory the bench runs from (its binaries sit beside the examples), and
/// a fresh data directory for the Redis it starts.
fn dirs(tag: &str) -> Res<(std::path::PathBuf, std::path::PathBuf)> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(|p| p.parent())
        .ok_or("no target dir")?
        .to_path_buf();
    let data = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    Ok((release, data))
}

fn main() -> Res<()> {
    check_args();
    let secs = arg("--seconds", 8.0);
    let conns = arg("--conns", 64.0) as usize;
    let rounds_wanted = (arg("--rounds", 3.0) as usize).max(1);
    let only = only();
    if std::env::args().any(|a| a == "--scale") {
        return scale::run(secs, conns);
    }
    let (release, data) = dirs("tally-bench")?;
    let mut redis_opts = EmbeddedOptions::new(&data);
    redis_opts.aof = true; // the documented default: AOF, fsync every second
    let redis = EmbeddedRedis::start(redis_opts)?;
    let url = redis.url();

    let tally_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let tally = Proc(
        Command::new(release.join("tally"))
            .env("REDIS_URL", &url)
            .env("TALLY_BIND", tally_addr.to_string())
            .env("TALLY_ADMIN_KEY", "bench")
            // The bench measures the ceiling; the per-app limit would cap it.
            .env("TALLY_RATE_LIMIT", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let tally_pid = tally.0.id();
    let redis_pid = redis.pid();
    let (_base, base_addr) = start_baseline(&release)?;
    wait_ping(tally_addr)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rc = redis_conn(&url)?;

    rt.block_on(async {
        let create = |name: &str| {
            let body = json!({"name": name, "timezone": "UTC", "lock_key": "bench"}).to_string();
            async move {
                let (st, b) = http(tally_addr, "POST", "/project/create", &body).await?;
                if st != 200 {
                    return Err::<Value, Box<dyn std::error::Error + Send + Sync>>(format!("create app: {st} {b}").into());
                }
                Ok(serde_json::from_str::<Value>(&b)?)
            }
        };
        let app = create("bench").await?;
        let wk = app["write_key"].as_str().unwrap_or_default().to_string();
        let rk = app["read_key"].as_str().unwrap_or_default().to_string();
        let app_id = AppId::parse(app["project"].as_str().unwrap_or_default()).ok_or("app id")?;

        let metrics = enc(&json!({"_os": "Android", "_os_version": "14", "_device": "Pixel 8",
            "_resolution": "1080x2400", "_carrier": "Vodafone", "_app_version": "3.2.1",
            "_density": "2.75", "_locale": "en_US"}).to_string());
        // Each round's begin_sessions come from devices never seen before.
        let begin_in = |round: usize| -> MakeReq {
            let (wk, m) = (wk.clone(), metrics.clone());
            Arc::new(move |c, s| format!("/i?app_key={wk}&device_id={}&begin_session=1&sdk_version=24.10&metrics={m}", begin_device(round, c, s)))
        };
        let begin = begin_in(0);
        let events = enc(&Value::Array((0..10).map(|i| json!({"key": format!("event{}", i % 5), "count": 1, "sum": 1.5,
            "segmentation": {"plan": if i % 2 == 0 { "free" } else { "pro" }, "screen": format!("s{}", i % 3)}})).collect()).to_string());
        let ev: MakeReq = {
            let (wk, e) = (wk.clone(), events.clone());
            Arc::new(move |c, s| format!("/i?app_key={wk}&device_id=e{}&events={e}", (c as u64 * 7919 + s) % 10_000))
        };
        // N events with a key, count, sum and one segmentation value each: what the SDKs
        // batch (3 a request is typical, 20 a full batch).
        let n_events = |n: usize| -> MakeReq {
            let e = enc(&Value::Array((0..n).map(|i| json!({"key": format!("event{}", i % 5), "count": 1, "sum": 1.5,
                "segmentation": {"plan": if i % 2 == 0 { "free" } else { "pro" }}})).collect()).to_string());
            let wk = wk.clone();
            Arc::new(move |c, s| format!("/i?app_key={wk}&device_id=v{}&events={e}", (c as u64 * 7919 + s) % 10_000))
        };
        let heartbeat: MakeReq = {
            let wk = wk.clone();
            Arc::new(move |c, s| format!("/i?app_key={wk}&device_id=h{}&session_duration=30", (c as u64 * 7919 + s) % 10_000))
        };

        // Rounds: the baseline, then each /i row against the baseline of its own round, so
        // a slow spell of this shared machine shows in both; each row reports its median
        // round (by ratio).
        let mut rounds: Vec<Vec<Row>> = Vec::new();
        let mut half: Option<HalfLoad> = None;
        // The machine's own stalls, with every server idle: the floor under any p99.
        let probe = StallProbe::start();
        tokio::time::sleep(Duration::from_secs_f64(secs / 2.0)).await;
        let at_rest = probe.stop();
        let mut under_load: Option<Stalls> = None;
        let rewrites_before = aof_rewrites(&mut rc)?;
        for round in 0..rounds_wanted {
            let mut rows = Vec::new();
            let base = load(&[base_addr], begin.clone(), conns, secs, None).await?;
            let base_rps = base.rps();
            rows.push(Row { name: "baseline: fixed Success, no Redis".into(), load: base, ratio: Some(1.0), cmds_per_req: None, trips_per_req: None, redis_us_per_req: None, cpu: None });
            for (name, make) in [
                ("/i begin_session + 8 metrics, new devices", begin_in(round)),
                ("/i 3 events, one segmentation each", n_events(3)),
                ("/i 10 events with segmentation", ev.clone()),
                ("/i 20 events, one segmentation each", n_events(20)),
                ("/i heartbeat (session_duration)", heartbeat.clone()),
            ] {
                if only.as_deref().is_some_and(|o| !name.contains(o)) {
                    continue;
                }
                let (c0, u0) = command_stats(&mut rc)?;
                let t0 = metric(tally_addr, "tally_commit_round_trips_total").await?;
                let cpu0 = cpu_now(tally_pid, redis_pid);
                let l = load(&[tally_addr], make, conns, secs, None).await?;
                let cpu1 = cpu_now(tally_pid, redis_pid);
                let (c1, u1) = command_stats(&mut rc)?;
                let t1 = metric(tally_addr, "tally_commit_round_trips_total").await?;
                let n = l.requests.max(1) as f64;
                rows.push(Row {
                    name: name.into(),
                    ratio: Some(l.rps() / base_rps),
                    cmds_per_req: Some((c1 - c0) as f64 / n),
                    trips_per_req: Some((t1 - t0) as f64 / n),
                    redis_us_per_req: Some((u1 - u0) as f64 / n),
                    cpu: Some(cpu1 - cpu0),
                    load: l,
                });
            }
            rounds.push(rows);
            // The open-loop row runs once, after the first round, at half of that round's
            // begin_session rate: where it always ran, before later rounds have grown the
            // AOF towards a rewrite (counted below: a rewrite forks and copies the data).
            if round == 0 {
                if let Some(max) = rounds[0].iter().find(|r| r.name.starts_with("/i begin_session")).map(|r| r.load.rps()) {
                    let w0 = aof_rewrites(&mut rc)?;
                    let k0: u64 = redis::cmd("DBSIZE").query(&mut rc)?;
                    let probe = StallProbe::start();
                    let l = load(&[tally_addr], begin_in(rounds_wanted), conns, secs, Some(max / 2.0)).await?;
                    under_load = Some(probe.stop());
                    let rewrites = aof_rewrites(&mut rc)? - w0;
                    let k1: u64 = redis::cmd("DBSIZE").query(&mut rc)?;
                    // The same HTTP stack at the same rate: what the machine's stalls cost a
                    // server whose requests share no thread.
                    let b = load(&[base_addr], begin.clone(), conns, secs, Some(max / 2.0)).await?;
                    half = Some(HalfLoad { rate: max / 2.0, tally: l, rewrites, keys: (k0, k1), baseline: b });
                }
            }
        }
        let rows_per_round = rounds.first().map_or(0, Vec::len);
        if rounds_wanted > 1 {
            println!("\nRatios to the baseline of each of {rounds_wanted} rounds (the table shows each row's median round):");
            for i in 1..rows_per_round {
                let all: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r[i].ratio.unwrap_or(0.0))).collect();
                println!("- {}: {}", rounds[0][i].name, all.join(", "));
            }
        }
        let mut rows: Vec<Row> = Vec::new();
        for i in 0..rows_per_round {
            // The baseline row: its median round by requests/s; the others by ratio.
            let key = |r: &Row| if i == 0 { r.load.rps() } else { r.ratio.unwrap_or(0.0) };
            let mut picked: Vec<Row> = rounds.iter_mut().map(|r| std::mem::replace(&mut r[i], Row::empty())).collect();
            picked.sort_by(|a, b| key(a).total_cmp(&key(b)));
            let median = picked.len() / 2;
            rows.push(picked.swap_remove(median));
        }
        let base_rps = rows.first().map_or(1.0, |r| r.load.rps());
        if let Some(HalfLoad { rate, tally: l, rewrites, keys, baseline: b }) = half {
            let mut during = if rewrites > 0 { format!(", {rewrites} AOF rewrite(s) during it") } else { String::new() };
            if let Some(size) = table_doubled(keys) {
                during.push_str(&format!(", keyspace past {size} keys during it"));
            }
            rows.push(Row { name: format!("/i begin_session at half max ({rate:.0}/s, open loop{during})"), ratio: None, cmds_per_req: None, trips_per_req: None, redis_us_per_req: None, cpu: None, load: l });
            rows.push(Row { name: format!("baseline at the same rate ({rate:.0}/s, open loop)"), ratio: None, cmds_per_req: None, trips_per_req: None, redis_us_per_req: None, cpu: None, load: b });
        }
        println!("\nAOF rewrites during the /i rows: {}", aof_rewrites(&mut rc)? - rewrites_before);
        let during = under_load.map_or(String::new(), |s| format!("; during the half-load row {s}"));
        println!("Stalls of this machine (a thread sleeping 0.5 ms at a time): at rest {at_rest}{during}");
        if only.is_some() {
            print_rows(&rows);
            return Ok(());
        }

        // Memory per device: the states of devices the first /i row created.
        let mut sample = 0u64;
        let mut bytes = 0u64;
        for c in 0..conns.min(50) {
            for s in 0..20u64 {
                let k = keys::device(&app_id, &begin_device(0, c, s));
                let used: Option<u64> = redis::cmd("MEMORY").arg("USAGE").arg(&k).arg("SAMPLES").arg(0).query(&mut rc)?;
                if let Some(u) = used {
                    sample += 1;
                    bytes += u;
                }
            }
        }
        let per_device = bytes as f64 / sample.max(1) as f64;

        // A year of hourly data in a second app: 2 sessions and 2 events every hour.
        let year_app = create("year").await?;
        let ywk = year_app["write_key"].as_str().unwrap_or_default().to_string();
        let yrk = year_app["read_key"].as_str().unwrap_or_default().to_string();
        let year_id = AppId::parse(year_app["project"].as_str().unwrap_or_default()).ok_or("app id")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        let hours = 365 * 24;
        let mut items = Vec::new();
        for h in 0..hours {
            for d in 0..2 {
                let plan = if d == 0 { "free" } else { "pro" };
                items.push(json!({"device_id": format!("y{}", (h * 2 + d) % 200), "begin_session": 1,
                    "timestamp": now - h * 3600 - 60 - d,
                    "events": [{"key": "purchase", "count": 1, "sum": 4.99, "segmentation": {"plan": plan}}]}));
            }
            if items.len() >= 500 || h == hours - 1 {
                let body = json!({"app_key": ywk, "requests": items}).to_string();
                let (st, b) = http(tally_addr, "POST", "/i/bulk", &body).await?;
                if st != 200 {
                    return Err(format!("seeding: {st} {b}").into());
                }
                items.clear();
            }
        }
        let mut cursor = 0u64;
        let mut app_bytes = 0u64;
        let mut device_bytes = 0u64;
        let devices: std::collections::HashSet<String> = (0..200).map(|i| keys::device(&year_id, &format!("y{i}"))).collect();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(keys::app_pattern(&year_id)).arg("COUNT").arg(1000).query(&mut rc)?;
            for k in batch {
                let used: Option<u64> = redis::cmd("MEMORY").arg("USAGE").arg(&k).arg("SAMPLES").arg(0).query(&mut rc)?;
                let used = used.unwrap_or(0);
                app_bytes += used;
                if devices.contains(&k) {
                    device_bytes += used;
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let per_app_day = (app_bytes - device_bytes) as f64 / 365.0;

        for (name, method, period) in [
            ("/o sessions, a year of hourly data, period=30days", "sessions", "30days"),
            ("/o sessions, a year of hourly data, period=365days", "sessions", "365days"),
            ("/o events, a year of hourly data, period=30days", "events", "30days"),
            ("/o events, a year of hourly data, period=365days", "events", "365days"),
        ] {
            let (yw, yr) = (ywk.clone(), yrk.clone());
            let make: MakeReq = Arc::new(move |_, _| format!("/o?app_key={yw}&api_key={yr}&method={method}&period={period}"));
            let (st, body) = http(tally_addr, "GET", &make(0, 0), "").await?;
            if st != 200 || body.len() < 1000 {
                return Err(format!("{method} answer looks wrong: {st} {} bytes", body.len()).into());
            }
            let (c0, u0) = command_stats(&mut rc)?;
            let cpu0 = cpu_now(tally_pid, redis_pid);
            // One connection: the latency of one read, without queueing behind others.
            let l = load(&[tally_addr], make, 1, secs, None).await?;
            let cpu1 = cpu_now(tally_pid, redis_pid);
            let (c1, u1) = command_stats(&mut rc)?;
            let n = l.requests.max(1) as f64;
            rows.push(Row {
                name: format!("{name}, {} kB answer, 1 conn", body.len() / 1024),
                ratio: Some(l.rps() / base_rps),
                cmds_per_req: Some((c1 - c0) as f64 / n),
                trips_per_req: Some(1.0),
                redis_us_per_req: Some((u1 - u0) as f64 / n),
                cpu: Some(cpu1 - cpu0),
                load: l,
            });
        }
        let _ = rk;

        print_rows(&rows);
        println!("\nRedis memory per device state: {per_device:.0} bytes (MEMORY USAGE, {sample} devices)");
        println!("Redis memory per app-day of hourly data (2 devices x 2 sessions and 2 events an hour): {per_app_day:.0} bytes");
        let info: String = redis::cmd("INFO").arg("memory").query(&mut rc)?;
        let used: HashMap<&str, &str> = info.lines().filter_map(|l| l.split_once(':')).collect();
        println!("Redis used_memory at the end: {}", used.get("used_memory_human").unwrap_or(&"?"));
        println!("Settings: {conns} connections, {secs} s per row, {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    // Tally first: stopped after Redis, it would log the lost connection.
    drop(tally);
    drop(redis);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// `--scale`: the split `collector` as one and as two processes, on standalone Redis and
/// on a three-master Redis Cluster, with the CPU each process spent per request, and from
/// those a paper estimate for more collectors and masters.
mod scale {
    use super::*;

    /// CPU seconds (user + system) a process has used, from /proc.
    fn cpu_secs(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
        (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
    }

    struct Measured {
        name: String,
        load: Load,
        collector_cpu: f64,
        redis_cpu: f64,
    }

    struct Stack {
        _procs: Vec<Proc>,
        collectors: Vec<(SocketAddr, u32)>,
        redis_pids: Vec<u32>,
        apps: Vec<String>,
    }

    fn spawn(bin: &std::path::Path, env: &[(&str, String)]) -> Res<(Proc, SocketAddr)> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut cmd = Command::new(bin);
        cmd.env("TALLY_BIND", addr.to_string())
            .env("TALLY_ADMIN_KEY", "bench")
            .env("TALLY_RATE_LIMIT", "0")
            .env("TALLY_AGGREGATOR", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let p = Proc(cmd.spawn()?);
        wait_ping(addr)?;
        Ok((p, addr))
    }

    /// Two collectors and an aggregator (for creating apps) on the Redis `env` names, and
    /// six apps (on a cluster they spread over the masters).
    async fn stack(
        release: &std::path::Path,
        env: &[(&str, String)],
        redis_pids: Vec<u32>,
    ) -> Res<Stack> {
        let mut procs = Vec::new();
        let (a, admin) = spawn(&release.join("aggregator"), env)?;
        procs.push(a);
        let mut collectors = Vec::new();
        for _ in 0..2 {
            let (p, addr) = spawn(&release.join("collector"), env)?;
            collectors.push((addr, p.0.id()));
            procs.push(p);
        }
        let mut apps = Vec::new();
        for i in 0..6 {
            let body = json!({"name": format!("scale{i}"), "timezone": "UTC", "lock_key": "bench"})
                .to_string();
            let (st, b) = http(admin, "POST", "/project/create", &body).await?;
            if st != 200 {
                return Err(format!("create app: {st} {b}").into());
            }
            let v: Value = serde_json::from_str(&b)?;
            apps.push(v["write_key"].as_str().unwrap_or_default().to_string());
        }
        Ok(Stack {
            _procs: procs,
            collectors,
            redis_pids,
            apps,
        })
    }

    async fn measure(
        name: &str,
        st: &Stack,
        n: usize,
        conns: usize,
        secs: f64,
        tag: &'static str,
    ) -> Res<Measured> {
        let apps = st.apps.clone();
        let make: MakeReq = Arc::new(move |c, s| {
            format!("/i?app_key={}&device_id={tag}{c}-{s}&begin_session=1&metrics=%7B%22_os%22%3A%22Android%22%7D", apps[c % apps.len()])
        });
        let used = &st.collectors[..n];
        let c0: f64 = used.iter().map(|c| cpu_secs(c.1)).sum();
        let r0: f64 = st.redis_pids.iter().map(|p| cpu_secs(*p)).sum();
        let addrs: Vec<SocketAddr> = used.iter().map(|c| c.0).collect();
        let l = load(&addrs, make, conns, secs, None).await?;
        let c1: f64 = used.iter().map(|c| cpu_secs(c.1)).sum();
        let r1: f64 = st.redis_pids.iter().map(|p| cpu_secs(*p)).sum();
        Ok(Measured {
            name: name.into(),
            load: l,
            collector_cpu: c1 - c0,
            redis_cpu: r1 - r0,
        })
    }

    pub fn run(secs: f64, conns: usize) -> Res<()> {
        let (release, data) = dirs("tally-bench-scale")?;
        let (_base, base_addr) = start_baseline(&release)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut rows = Vec::new();
        rt.block_on(async {
            let ping: MakeReq = Arc::new(|_, _| "/ping".to_string());
            let base = load(&[base_addr], ping, conns, secs, None).await?;
            let base_rps = base.rps();

            let mut o = EmbeddedOptions::new(data.join("single"));
            o.aof = true;
            let single = EmbeddedRedis::start(o)?;
            let env = [("REDIS_URL", single.url())];
            let st = stack(&release, &env, single.pid().into_iter().collect()).await?;
            rows.push(measure("1 collector, standalone Redis", &st, 1, conns, secs, "a").await?);
            rows.push(measure("2 collectors, standalone Redis", &st, 2, conns, secs, "b").await?);
            drop(st);
            drop(single);

            let nodes = tally_redis::embedded::start_cluster(&data.join("cluster"), 3, "everysec")?;
            let seeds = nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
            let env = [("REDIS_CLUSTER_URLS", seeds)];
            let st = stack(&release, &env, nodes.iter().filter_map(|n| n.pid()).collect()).await?;
            rows.push(measure("1 collector, 3-master Redis Cluster", &st, 1, conns, secs, "c").await?);
            rows.push(measure("2 collectors, 3-master Redis Cluster", &st, 2, conns, secs, "d").await?);
            drop(st);
            drop(nodes);

            println!("\n/i begin_session with a metric, 6 apps, new devices; {conns} connections spread round-robin over the collectors.\n");
            println!("| setup | req/s | p50 ms | p99 ms | vs baseline | collector CPU µs/req | Redis CPU µs/req (all nodes) | errors |");
            println!("|---|---:|---:|---:|---:|---:|---:|---:|");
            println!("| baseline: fixed answer, no Redis | {:.0} | {:.2} | {:.2} | 1.00 | | | {} |", base_rps, base.pct(0.5), base.pct(0.99), base.errors);
            for r in &rows {
                let n = r.load.requests.max(1) as f64;
                println!(
                    "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {} |",
                    r.name, r.load.rps(), r.load.pct(0.5), r.load.pct(0.99), r.load.rps() / base_rps,
                    r.collector_cpu * 1e6 / n, r.redis_cpu * 1e6 / n, r.load.errors
                );
            }
            // Paper estimate: a collector process is bounded by the CPU it spends per request,
            // a Redis master by its own (single-threaded) CPU per request; apps spread over
            // the masters, so M masters carry M times one master's share.
            let one = &rows[0];
            let n = one.load.requests.max(1) as f64;
            let per_core = n / one.collector_cpu.max(1e-9);
            let per_node = n / one.redis_cpu.max(1e-9);
            println!("\nFrom the 1-collector standalone row: one collector core ≈ {per_core:.0} req/s; one Redis master ≈ {per_node:.0} req/s.");
            println!("Estimate (cores for collectors, masters with apps spread evenly): min(cores × {per_core:.0}, masters × {per_node:.0}) req/s.\n");
            println!("| collector cores \\ masters | 1 | 3 | 6 |");
            println!("|---|---:|---:|---:|");
            for cores in [2.0, 4.0, 8.0, 16.0] {
                let cell = |m: f64| format!("{:.0}k", (cores * per_core).min(m * per_node) / 1000.0);
                println!("| {cores} | {} | {} | {} |", cell(1.0), cell(3.0), cell(6.0));
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })?;
        let _ = std::fs::remove_dir_all(&data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::table_doubled;

    #[test]
    fn a_doubling_is_a_power_of_two_passed() {
        assert_eq!(table_doubled((950_000, 1_190_000)), Some(1 << 20));
        assert_eq!(table_doubled((1 << 20, (1 << 20) + 5)), None);
        assert_eq!(table_doubled((1 << 20, (1 << 21) + 1)), Some(1 << 21));
        assert_eq!(table_doubled((600_000, 1_000_000)), None);
        // A nearly empty keyspace doubles all the time; that is not worth a note.
        assert_eq!(table_doubled((5, 900)), None);
    }
}
