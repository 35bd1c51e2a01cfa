//! Nothing acknowledged is lost, nothing is counted twice: crashes of Redis and of Tally,
//! Redis outages, graceful shutdown and retries, with real processes.

mod common;
use common::*;
use serde_json::json;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_store::embedded::{free_port, EmbeddedOptions, EmbeddedRedis};

fn strict_redis(tag: &str) -> EmbeddedRedis {
    let mut o = EmbeddedOptions::new(temp_dir(tag));
    o.fsync = "always".into();
    EmbeddedRedis::start(o).expect("redis-server")
}

/// Counts of what the load saw.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    acked: AtomicU64,
    unavailable: AtomicU64,
    failed_connections: AtomicU64,
    other: AtomicU64,
}

/// Sends distinct single-event requests from `threads` threads until `stop`.
fn load(
    addr: Arc<std::sync::Mutex<String>>,
    key: String,
    threads: usize,
    stop: Arc<AtomicBool>,
    t: Arc<Tally>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|th| {
            let (addr, key, stop, t) = (addr.clone(), key.clone(), stop.clone(), t.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let path = format!(
                        "/i?{}",
                        qs(&[
                            p("app_key", &key),
                            p("device_id", format!("t{th}-{i}")),
                            p("timestamp", NOW),
                            p("events", json!([{"key": "k", "count": 1}]).to_string()),
                        ])
                    );
                    t.sent.fetch_add(1, Ordering::SeqCst);
                    let a = addr.lock().map(|a| a.clone()).unwrap_or_default();
                    let Ok(r) = try_http(&a, "GET", &path, &[], b"") else {
                        t.failed_connections.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    match r.status {
                        200 if r.body.contains("Success") => t.acked.fetch_add(1, Ordering::SeqCst),
                        503 => t.unavailable.fetch_add(1, Ordering::SeqCst),
                        0 => t.failed_connections.fetch_add(1, Ordering::SeqCst),
                        _ => t.other.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect()
}

fn count_of(t: &TestApp, k: &Keys) -> i64 {
    at(&t.o(k, "events", &[p("event", "k")]), &["2024", "c"])
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn redis_outage_gives_fast_503s_and_recovers_without_restart() {
    let redis = strict_redis("outage");
    let mut t = TestApp::spawn_on(redis, |c| c.redis_timeout = Duration::from_millis(300));
    let k = t.create_app("UTC");
    t.ok(&k, &[p("device_id", "a"), p("begin_session", 1)]);
    t.redis.kill();
    let started = Instant::now();
    let r = t.i(&k, &[p("device_id", "a"), p("session_duration", 10)]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.json()["result"].is_string());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let o = t.get(&format!(
        "/o?app_key={}&api_key={}&method=sessions",
        k.write, k.read
    ));
    assert_eq!(o.status, 503);
    assert_eq!(t.get("/ready").status, 503);
    assert_eq!(t.get("/ping").status, 200);
    assert_eq!(t.get("/health").status, 200);
    assert!(metric_value(&t.addr, "tally_redis_errors_total") >= 1.0);
    t.redis.restart().expect("redis restarts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.get("/ready").status != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    t.ok(&k, &[p("device_id", "a"), p("session_duration", 10)]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(
        (at(&s, &["2024", "t"]), at(&s, &["2024", "d"])),
        (&json!(1), &json!(10))
    );
}

/// A key that something other than Tally overwrote with the wrong type makes Redis answer
/// an error, before the transaction (a device state) or inside it (the stream). The batch
/// that hit it gets a clear 503; the socket is dropped and the committer goes on serving.
#[test]
fn a_key_of_the_wrong_type_fails_its_request_not_the_committer() {
    let t = TestApp::spawn();
    let (a, b) = (t.create_app("UTC"), t.create_app("UTC"));
    let app = tally_store::keys::AppId::parse(&a.id).expect("app id");
    let device = tally_store::keys::device(&app, "poisoned");
    // Every key of the app is on one node (its master, on a cluster).
    let nodes = t.nodes();
    let node = if cluster_mode() {
        nodes[node_of(&nodes, &device)]
    } else {
        &t.redis
    };
    let _: i64 = redis_on(node, redis::cmd("HSET").arg(&device).arg("f").arg(1));
    let event = |d: &str| {
        [
            p("device_id", d.to_string()),
            p("timestamp", NOW),
            p("events", json!([{"key": "k"}]).to_string()),
        ]
    };
    let failed = t.i(&a, &event("poisoned"));
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert!(failed.json()["result"].is_string());
    t.ok(&b, &event("fine"));
    t.ok(&a, &event("fine"));

    // Inside the transaction: the app's raw stream is a plain string now.
    let stream = tally_store::keys::stream(&app);
    let _: () = redis_on(node, redis::cmd("SET").arg(&stream).arg("x"));
    let failed = t.i(&a, &event("other"));
    assert_eq!(failed.status, 503, "{}", failed.body);
    t.ok(&b, &event("fine-too"));
    assert_eq!(count_of(&t, &b), 2);
    assert!(metric_value(&t.addr, "tally_redis_errors_total") >= 2.0);
}

#[test]
fn a_retry_of_a_failed_write_counts_exactly_once() {
    let redis = strict_redis("retry");
    let mut t = TestApp::spawn_on(redis, |c| c.redis_timeout = Duration::from_millis(300));
    let k = t.create_app("UTC");
    let req = [
        p("device_id", "r"),
        p("timestamp", NOW),
        p("events", json!([{"key": "k"}]).to_string()),
    ];
    // Order 1: the write fails, the SDK retries: counted once, not zero times.
    t.redis.kill();
    assert_eq!(t.i(&k, &req).status, 503);
    t.redis.restart().expect("redis restarts");
    let mut r = t.i(&k, &req);
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.status == 503 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        r = t.i(&k, &req);
    }
    assert_eq!(r.json(), json!({"result": "Success"}));
    // Order 2: the write succeeded, the answer was lost, the SDK retries: counted once.
    assert_eq!(
        t.i(&k, &req).json(),
        json!({"result": "Success", "info": "Request ignored: Duplicate request"})
    );
    assert_eq!(count_of(&t, &k), 1);
}

#[test]
fn acknowledged_writes_survive_a_redis_crash() {
    let redis = strict_redis("crash");
    let mut t = TestApp::spawn_on(redis, |c| c.redis_timeout = Duration::from_millis(500));
    let k = t.create_app("UTC");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let addr = Arc::new(std::sync::Mutex::new(t.addr.clone()));
    let workers = load(addr, k.write.clone(), 8, stop.clone(), tally.clone());
    std::thread::sleep(Duration::from_millis(700));
    t.redis.kill();
    std::thread::sleep(Duration::from_millis(400));
    t.redis.restart().expect("redis restarts");
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().ok();
    }
    let (sent, acked) = (
        tally.sent.load(Ordering::SeqCst),
        tally.acked.load(Ordering::SeqCst),
    );
    assert_eq!(tally.other.load(Ordering::SeqCst), 0, "only 200 or 503");
    assert!(
        tally.unavailable.load(Ordering::SeqCst) > 0,
        "the crash was noticed"
    );
    let counted = count_of(&t, &k) as u64;
    // Every acknowledged request is counted; a failed one may have been applied before
    // its answer was lost, so the count may exceed the acknowledgements, never `sent`.
    assert!(
        counted >= acked && counted <= sent,
        "sent {sent}, acked {acked}, counted {counted}"
    );
}

/// Runs load against a real `tally` process, stops it with `signal`, starts it again and
/// checks that every acknowledged request is counted.
fn process_stop_loses_nothing(signal: &str) {
    let redis = start_redis("proc");
    let bind = format!("127.0.0.1:{}", free_port().expect("port"));
    let mut child = start_binary("tally", &redis.url(), &bind, &[]);
    wait_http(&bind, "/ping");
    let k = create_project(&bind, "p", "UTC");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let addr = Arc::new(std::sync::Mutex::new(bind.clone()));
    let workers = load(addr, k.write.clone(), 8, stop.clone(), tally.clone());
    std::thread::sleep(Duration::from_millis(800));
    let status = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status();
    assert!(status.map(|s| s.success()).unwrap_or(false));
    let exit = child.wait().expect("tally exits");
    if signal == "-TERM" {
        assert!(exit.success(), "a graceful stop exits 0, got {exit}");
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().ok();
    }
    let mut again = start_binary("tally", &redis.url(), &bind, &[]);
    wait_http(&bind, "/ping");
    let (sent, acked) = (
        tally.sent.load(Ordering::SeqCst),
        tally.acked.load(Ordering::SeqCst),
    );
    // The events carry NOW (2024) as their time; this process runs on the real clock.
    let period = enc(&format!("[{},{}]", (NOW - DAY) * 1000, (NOW + DAY) * 1000));
    let path = format!(
        "/o?app_key={}&api_key={}&method=events&event=k&period={period}",
        k.write, k.read
    );
    let v = http(&bind, "GET", &path, &[], b"").json();
    let counted = at(&v, &["2024", "c"]).as_u64().unwrap_or(0);
    again.kill().ok();
    again.wait().ok();
    assert!(acked > 100, "the load ran ({acked} acknowledged)");
    assert_eq!(tally.other.load(Ordering::SeqCst), 0);
    assert!(
        counted >= acked && counted <= sent,
        "{signal}: sent {sent}, acked {acked}, counted {counted}"
    );
}

#[test]
fn acknowledged_writes_survive_killing_tally() {
    process_stop_loses_nothing("-KILL");
}

#[test]
fn sigterm_drains_and_flushes_before_exit() {
    process_stop_loses_nothing("-TERM");
}

/// A unit of work for the committer: reads one device state and counts one. The first
/// time a `spoiler` one is planned, it changes its watched device key from another
/// connection, as another collector would, so its transaction must conflict.
struct Touch {
    device: String,
    counter: String,
    pause: Duration,
    /// Told when planning starts.
    planning: Option<Arc<tokio::sync::Notify>>,
    spoiler: Option<(String, AtomicBool)>,
}

impl tally_store::commit::Work for Touch {
    fn route(&self) -> &[u8] {
        self.device.as_bytes()
    }

    fn reads(&self, r: &mut tally_store::commit::ReadSet) {
        r.device(self.device.clone());
    }

    fn plan(&self, b: &mut tally_store::commit::Batch) -> Vec<tally_store::commit::Outcome> {
        if let Some(n) = &self.planning {
            n.notify_one();
        }
        std::thread::sleep(self.pause);
        if let Some((url, spoiled)) = &self.spoiler {
            if !spoiled.swap(true, Ordering::SeqCst) {
                let mut c = redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection())
                    .expect("second connection");
                let _: () = redis::cmd("SET")
                    .arg(&self.device)
                    .arg("written elsewhere")
                    .query(&mut c)
                    .expect("SET");
            }
        }
        b.device(&self.device).session_count += 1;
        let h = b.hash(&self.counter);
        let at = b.places(&[(h, tally_store::commit::Prefix::None)]);
        let (n, none) = (b.name("n"), b.name(""));
        b.incr_at(at, n, none, 1);
        vec![tally_store::commit::Outcome::Applied]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_batch_that_conflicts_is_planned_again_and_counted_once() {
    use tally_store::commit::{CommitConfig, Committer, Outcome};
    let redis = start_redis("chain");
    let pool = tally_store::redis::pool(&tally_store::redis::RedisConfig {
        url: redis.url(),
        cluster: Vec::new(),
        pool_size: 4,
        timeout: Duration::from_secs(5),
    })
    .expect("pool");
    let cfg = CommitConfig {
        linger: Duration::ZERO,
        max_batch: 100,
        queue: 100,
        max_retries: 3,
        committers: 1,
        stream_max_len: 1000,
        stream_max_age: Duration::from_secs(3600),
    };
    let (committer, stopper) = Committer::start(pool, cfg);
    let planning = Arc::new(tokio::sync::Notify::new());
    let touch = |device: &str, pause_ms: u64, spoiler: Option<String>| Touch {
        device: format!("{{t}}:dev:{device}"),
        counter: "{t}:c:chain".into(),
        pause: Duration::from_millis(pause_ms),
        planning: (pause_ms > 0).then(|| planning.clone()),
        spoiler: spoiler.map(|url| (url, AtomicBool::new(false))),
    };
    // The first batch takes 300 ms to plan; the second is queued meanwhile, so its reads
    // ride in the first batch's write, and its own write then conflicts.
    let first = {
        let c = committer.clone();
        let w = touch("a", 300, None);
        tokio::spawn(async move { c.submit(Box::new(w), 1).await })
    };
    planning.notified().await;
    let second = committer
        .submit(Box::new(touch("b", 0, Some(redis.url()))), 1)
        .await;
    let first = first.await.expect("task");
    assert_eq!(first.expect("first batch"), vec![Outcome::Applied]);
    assert_eq!(second.expect("second batch"), vec![Outcome::Applied]);
    let stats = committer.stats.clone();
    stopper.stop().await;
    assert_eq!(stats.conflicts.load(Ordering::Relaxed), 1);
    // Reads of the first batch; its write with the second's reads; the second's write
    // (aborted); the second planned again on its own: a read and a write. Without the
    // chain it would be six.
    assert_eq!(stats.round_trips.load(Ordering::Relaxed), 5);
    let mut c = redis::Client::open(redis.url().as_str())
        .and_then(|c| c.get_connection())
        .expect("connection");
    let n: i64 = redis::cmd("HGET")
        .arg("{t}:c:chain")
        .arg("n")
        .query(&mut c)
        .expect("HGET");
    assert_eq!(n, 2, "each request counted exactly once");
    // The spoiled state was replaced by the device's own (read again after the conflict).
    let state: Vec<u8> = redis::cmd("GET")
        .arg("{t}:dev:b")
        .query(&mut c)
        .expect("GET");
    assert_ne!(state, b"written elsewhere".to_vec());
}
