//! Nothing acknowledged is lost, nothing is counted twice: crashes of Redis and of Tally,
//! Redis outages, graceful shutdown and retries, with real processes.

mod common;
use common::*;
use serde_json::json;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_redis::embedded::{free_port, EmbeddedOptions, EmbeddedRedis};

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
                        // Pacing, not waiting: no busy loop while the server is away.
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
    wait_until(
        "/ready to answer 200 again",
        Duration::from_secs(10),
        || (t.get("/ready").status == 200).then_some(()),
    );
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
    let app = tally_model::keys::AppId::parse(&a.id).expect("app id");
    let device = tally_model::keys::device(&app, "poisoned");
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
    let stream = tally_model::keys::stream(&app);
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
    let r = wait_until("a retry that is not a 503", Duration::from_secs(10), || {
        Some(t.i(&k, &req)).filter(|r| r.status != 503)
    });
    assert_eq!(r.json(), json!({"result": "Success"}));
    // Order 2: the write succeeded, the answer was lost, the SDK retries: counted once.
    assert_eq!(
        t.i(&k, &req).json(),
        json!({"result": "Success", "info": "Request ignored: Duplicate request"})
    );
    assert_eq!(count_of(&t, &k), 1);
}

/// How many writes must be acknowledged before Redis is killed, and again after it is
/// back: enough that a server acknowledging nothing (or little) cannot pass.
const ACKED_BEFORE_CRASH: u64 = 200;
const ACKED_AFTER_RESTART: u64 = 100;

#[test]
fn acknowledged_writes_survive_a_redis_crash() {
    let redis = strict_redis("crash");
    let mut t = TestApp::spawn_on(redis, |c| c.redis_timeout = Duration::from_millis(500));
    let k = t.create_app("UTC");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let addr = Arc::new(std::sync::Mutex::new(t.addr.clone()));
    let workers = load(addr, k.write.clone(), 8, stop.clone(), tally.clone());
    let acked_now = || tally.acked.load(Ordering::SeqCst);
    // The crash lands on a running load with many acknowledged writes behind it.
    let before_crash = wait_until(
        &format!("{ACKED_BEFORE_CRASH} acknowledged writes before the crash"),
        Duration::from_secs(30),
        || Some(acked_now()).filter(|n| *n >= ACKED_BEFORE_CRASH),
    );
    let unavailable = tally.unavailable.load(Ordering::SeqCst);
    t.redis.kill();
    wait_until("a 503 while Redis is down", Duration::from_secs(10), || {
        (tally.unavailable.load(Ordering::SeqCst) > unavailable).then_some(())
    });
    t.redis.restart().expect("redis restarts");
    let at_restart = acked_now();
    wait_until(
        &format!("{ACKED_AFTER_RESTART} acknowledged writes after the restart"),
        Duration::from_secs(30),
        || (acked_now() >= at_restart + ACKED_AFTER_RESTART).then_some(()),
    );
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
    assert!(
        before_crash >= ACKED_BEFORE_CRASH && acked >= before_crash + ACKED_AFTER_RESTART,
        "acked {before_crash} before the crash, {acked} in all"
    );
    let counted = count_of(&t, &k) as u64;
    // Every acknowledged request is counted; a failed one may have been applied before
    // its answer was lost, so the count may exceed the acknowledgements, never `sent`.
    assert!(
        counted >= acked && counted <= sent,
        "sent {sent}, acked {acked} ({before_crash} before the crash), counted {counted}"
    );
}

/// Runs load against a real `tally` process, stops it with `signal`, starts it again and
/// checks that every acknowledged request is counted.
fn process_stop_loses_nothing(signal: &str) {
    let redis = start_redis("proc");
    let bind = format!("127.0.0.1:{}", free_port().expect("port"));
    // A `Proc`, so a failed wait or assertion does not leave it running.
    let mut child = Proc(start_binary("tally", &redis.url(), &bind, &[]));
    wait_http(&bind, "/ping");
    let k = create_project(&bind, "p", "UTC");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let addr = Arc::new(std::sync::Mutex::new(bind.clone()));
    let workers = load(addr, k.write.clone(), 8, stop.clone(), tally.clone());
    // The stop lands on a running load with acknowledged writes behind it.
    wait_until("100 acknowledged writes", Duration::from_secs(30), || {
        (tally.acked.load(Ordering::SeqCst) > 100).then_some(())
    });
    let status = Command::new("kill")
        .arg(signal)
        .arg(child.0.id().to_string())
        .status();
    assert!(status.map(|s| s.success()).unwrap_or(false));
    let exit = child.0.wait().expect("tally exits");
    if signal == "-TERM" {
        assert!(exit.success(), "a graceful stop exits 0, got {exit}");
    }
    // A sleep, not a wait: the load keeps meeting the stopped server for a while.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().ok();
    }
    let mut again = Proc(start_binary("tally", &redis.url(), &bind, &[]));
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
    again.0.kill().ok();
    again.0.wait().ok();
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
