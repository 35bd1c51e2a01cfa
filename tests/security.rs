//! Least privilege, rate limits, erasure and deletion, and exactness across collectors.

mod common;
use common::*;
use serde_json::json;
use std::sync::Arc;

#[test]
fn keys_only_do_their_own_job() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    // The read key cannot write; the write key cannot read (tested in jsonp_and_public_reads).
    let r = t.get(&format!(
        "/i?app_key={}&device_id=d&begin_session=1",
        k.read
    ));
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (400, json!("App does not exist"))
    );
    let r = t.get(&format!(
        "/i?app_key={}&device_id=d&begin_session=1",
        k.master
    ));
    assert_eq!(r.status, 400);
    // The master key reads too (it administers the app).
    let r = t.get(&format!(
        "/o?app_key={}&api_key={}&method=sessions",
        k.write, k.master
    ));
    assert_eq!(r.status, 200);
    // Neither the read nor the write key administers.
    for key in [&k.read, &k.write, &"x".to_string()] {
        let body = json!({"project": k.id, "master_key": key}).to_string();
        let r = http(
            &t.addr,
            "DELETE",
            "/project/delete",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 403, "{}", r.body);
    }
    let r = http(
        &t.addr,
        "DELETE",
        &format!("/project/delete?project={}", k.id),
        &[],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = http(
        &t.addr,
        "DELETE",
        &format!("/project/delete?project={}", "a".repeat(24)),
        &[("master_key", "x")],
        b"",
    );
    assert_eq!(r.status, 404);
}

#[test]
fn a_runaway_app_is_rate_limited() {
    let t = TestApp::spawn_with(|c| {
        c.limits.rate_limit = 1.0;
        c.limits.rate_burst = 5.0;
    });
    let k = t.create_app("UTC");
    let other = t.create_app("UTC");
    for i in 0..5 {
        t.ok(
            &k,
            &[p("device_id", format!("d{i}")), p("begin_session", 1)],
        );
    }
    let before = t.key_count();
    let r = t.i(&k, &[p("device_id", "x"), p("begin_session", 1)]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.json()["result"].is_string());
    assert_eq!(t.key_count(), before, "a limited request writes nothing");
    // A bulk counts its requests (one larger than the burst passes only on a full bucket).
    t.ok(&other, &[p("device_id", "first"), p("begin_session", 1)]);
    let bulk = json!({"app_key": other.write, "requests": (0..6).map(|i| json!({"device_id": format!("b{i}")})).collect::<Vec<_>>()});
    assert_eq!(
        t.post("/i/bulk", "application/json", &bulk.to_string())
            .status,
        429
    );
    // Other apps are not affected.
    t.ok(&other, &[p("device_id", "y"), p("begin_session", 1)]);
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "t"]), &json!(5));
}

#[test]
fn forgetting_a_device_and_deleting_an_app() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let keep = t.create_app("UTC");
    for i in 0..50 {
        t.ok(
            &k,
            &[
                p("device_id", format!("d{i}")),
                p("begin_session", 1),
                p(
                    "events",
                    json!([{"key": format!("e{}", i % 7), "segmentation": {"s": i}}]).to_string(),
                ),
            ],
        );
    }
    t.ok(&keep, &[p("device_id", "d0"), p("begin_session", 1)]);
    // Forget d0: its state goes, so it is a new user again; the counters keep what it did.
    let forget = |device: &str| {
        let body = json!({"project": k.id, "device_id": device}).to_string();
        http(
            &t.addr,
            "DELETE",
            "/project/device",
            &[
                ("master_key", &k.master),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .json()
    };
    // Its raw events (in the app's stream, read here through the bucket API) go too.
    let raw = |device: &str| {
        let auth = format!("Bearer {}", k.read);
        let body = json!({"event_name": "e0", "limit": 1000}).to_string();
        let r = http(
            &t.addr,
            "POST",
            &format!("/api/bucket/{}/data/events", k.id),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        r.json()
            .as_array()
            .map(|a| a.iter().filter(|e| e["device_id"] == json!(device)).count())
            .unwrap_or(0)
    };
    assert_eq!((raw("d0"), raw("d7")), (1, 1));
    // One raw stream entry: its request (session begin and event together).
    assert_eq!(
        forget("d0"),
        json!({"result": "Success", "forgotten": true, "raw_entries_deleted": 1})
    );
    assert_eq!(
        forget("d0"),
        json!({"result": "Success", "forgotten": false, "raw_entries_deleted": 0})
    );
    assert_eq!(
        (raw("d0"), raw("d7")),
        (0, 1),
        "other devices' raw events stay"
    );
    t.ok(&k, &[p("device_id", "d0"), p("begin_session", 1)]);
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "n"]), &json!(51));
    // Delete the app: every key of it goes, the other app stays.
    // (Every node: on a cluster the other app may live on another master.)
    let keep_keys: usize = t
        .nodes()
        .into_iter()
        .map(|node| {
            let mut cursor = 0u64;
            let mut n = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis_on(
                    node,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{{{}}}:*", keep.id)),
                );
                n += batch.len();
                cursor = next;
                if cursor == 0 {
                    break n;
                }
            }
        })
        .sum();
    let before = t.key_count();
    let r = http(
        &t.addr,
        "DELETE",
        &format!("/project/delete?project={}", k.id),
        &[("master_key", &k.master)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let deleted = r.json()["deleted_keys"].as_u64().unwrap_or(0) as usize;
    assert!(deleted > 50, "{deleted}");
    // Left: the other app's keys, its record and three keys, and the app set.
    assert_eq!(t.key_count(), keep_keys + 5);
    assert_eq!(before - deleted, t.key_count());
    let r = t.i(&k, &[p("device_id", "d1"), p("begin_session", 1)]);
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (400, json!("App does not exist"))
    );
    assert_eq!(
        t.get(&format!(
            "/o?app_key={}&api_key={}&method=sessions",
            k.write, k.read
        ))
        .status,
        401
    );
    assert_eq!(at(&t.o(&keep, "sessions", &[]), &["2024", "t"]), &json!(1));
}

#[test]
fn two_collectors_stay_exact() {
    let t = TestApp::spawn();
    let peer = t.peer();
    let k = t.create_app("UTC");
    let addrs = Arc::new(vec![t.addr.clone(), peer.addr.clone()]);
    // The same retried request arriving at both collectors at once counts once; sessions
    // of many devices spread over both count exactly.
    let dup = format!(
        "/i?{}",
        qs(&[
            p("app_key", &k.write),
            p("device_id", "same"),
            p("timestamp", NOW),
            p("events", json!([{"key": "dup"}]).to_string())
        ])
    );
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let (addrs, dup, key) = (addrs.clone(), dup.clone(), k.write.clone());
            std::thread::spawn(move || {
                let a = &addrs[i % 2];
                let r = http(a, "GET", &dup, &[], b"");
                assert_eq!(r.status, 200, "{}", r.body);
                for j in 0..10 {
                    let path = format!(
                        "/i?{}",
                        qs(&[
                            p("app_key", &key),
                            p("device_id", format!("dev{}", (i * 10 + j) % 100)),
                            p("begin_session", 1),
                            p("timestamp", NOW + (i * 10 + j) as i64)
                        ])
                    );
                    let r = http(&addrs[(i + j) % 2], "GET", &path, &[], b"");
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(
        at(&t.o(&k, "events", &[p("event", "dup")]), &["2024", "c"]),
        &json!(1)
    );
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(
        (
            at(&s, &["2024", "t"]),
            at(&s, &["2024", "n"]),
            at(&s, &["2024", "u"])
        ),
        (&json!(240), &json!(100), &json!(100))
    );
    assert_eq!(at(&s, &["2024", "10", "22", "10", "u"]), &json!(100));
}

/// A Redis that wants a password, with Tally's data in database 3, reached over TCP by one
/// process and over a unix socket by another: both connection kinds (commands and
/// transactions, and the read path's plain sockets) log in and select the database.
#[test]
fn redis_with_a_password_a_database_and_a_unix_socket() {
    let dir = temp_dir("auth");
    let sock = dir.join("redis.sock");
    let mut o = tally_redis::embedded::EmbeddedOptions::new(&dir);
    o.aof = false;
    o.extra_args = vec![
        "--unixsocket".into(),
        sock.display().to_string(),
        "--unixsocketperm".into(),
        "700".into(),
    ];
    let redis = tally_redis::embedded::EmbeddedRedis::start(o).expect("redis-server");
    // Set after start: the readiness check pings without a password.
    let _: () = redis_on(
        &redis,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("s3cret"),
    );
    let tcp = format!("redis://:s3cret@127.0.0.1:{}/3", redis.port);
    let unix = format!("redis+unix://{}?db=3&pass=s3cret", sock.display());
    let (_w, writer) = spawn_binary("tally", &tcp, &[("TALLY_AGGREGATOR", "0")]);
    let (_r, reader) = spawn_binary("tally", &unix, &[("TALLY_AGGREGATOR", "0")]);
    for addr in [&writer, &reader] {
        assert_eq!(http(addr, "GET", "/ready", &[], b"").status, 200, "{addr}");
    }
    let k = create_project(&writer, "auth", "UTC");
    for d in ["a", "b"] {
        let path = format!(
            "/i?{}",
            qs(&[
                p("app_key", &k.write),
                p("device_id", d),
                p("begin_session", 1)
            ])
        );
        assert_eq!(http(&writer, "GET", &path, &[], b"").status, 200);
    }
    let q = qs(&[
        p("app_key", &k.write),
        p("api_key", &k.read),
        p("method", "sessions"),
    ]);
    let v = http(&reader, "GET", &format!("/o?{q}"), &[], b"").json();
    let year = chrono::Datelike::year(&chrono::Utc::now()).to_string();
    assert_eq!(at(&v, &[&year, "t"]), &json!(2), "{v}");
    // Everything is in database 3, nothing in 0.
    let size = |db: i64| -> i64 {
        let c = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/{db}", redis.port))
            .expect("url");
        let mut conn = c.get_connection().expect("connection");
        redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE")
    };
    assert!(size(3) > 0);
    assert_eq!(size(0), 0);
    // A wrong password is refused: the service says so instead of serving.
    let wrong = format!("redis://:nope@127.0.0.1:{}/3", redis.port);
    let (_x, bad) = spawn_binary("tally", &wrong, &[("TALLY_AGGREGATOR", "0")]);
    assert_eq!(http(&bad, "GET", "/ready", &[], b"").status, 503);
    let o = http(&bad, "GET", &format!("/o?{q}"), &[], b"");
    assert_eq!(o.status, 503, "{}", o.body);
    assert!(o.json()["result"].is_string());
}

/// A client that opens a connection and trickles its request, or keeps an idle connection
/// open, loses it after `TALLY_CLIENT_TIMEOUT_MS` and `TALLY_KEEP_ALIVE_SECS`, while the
/// server keeps answering others.
#[test]
fn slow_and_idle_connections_are_closed() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let t = TestApp::spawn_with(|c| {
        // actix measures both from a clock it updates every 500 ms, so a limit is kept to
        // within half a second.
        c.limits.client_timeout = Duration::from_millis(1000);
        c.limits.keep_alive = Duration::from_secs(1);
    });
    let closed_within = |s: &mut std::net::TcpStream, limit: Duration| {
        s.set_read_timeout(Some(limit)).expect("timeout");
        let started = Instant::now();
        let mut rest = Vec::new();
        // The server answers 408 or just closes; either way the read ends, before `limit`.
        match s.read_to_end(&mut rest) {
            Ok(_) => started.elapsed(),
            Err(e) => panic!(
                "the connection stayed open for {:?}: {e}",
                started.elapsed()
            ),
        }
    };
    // A head that never ends.
    let mut slow = std::net::TcpStream::connect(&t.addr).expect("connect");
    slow.write_all(b"GET /i?app_key=x&device_id=")
        .expect("send");
    let took = closed_within(&mut slow, Duration::from_secs(4));
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    // A kept-alive connection that goes quiet after one answer.
    let mut idle = std::net::TcpStream::connect(&t.addr).expect("connect");
    idle.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).expect("answer");
    assert_eq!(&first, b"HTTP/1.1 200");
    let took = closed_within(&mut idle, Duration::from_secs(4));
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    // Others are answered all along.
    assert_eq!(t.get("/ping").status, 200);
}

/// A body that trickles in slower than `TALLY_BODY_TIMEOUT_MS` gets a 408 with a JSON
/// error, and nothing of it is written.
#[test]
fn a_trickled_body_times_out_and_writes_nothing() {
    use std::time::{Duration, Instant};
    let t = TestApp::spawn_with(|c| c.limits.body_timeout = Duration::from_millis(500));
    let k = t.create_app("UTC");
    let before = t.key_count();
    let body = format!("app_key={}&device_id=slow&begin_session=1", k.write);
    // The head announces one byte more than is sent: the request can never complete.
    let request = format!(
        "POST /i HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len() + 1
    );
    let started = Instant::now();
    let answer = raw(&t.addr, request.as_bytes());
    assert_eq!(answer.status, 408, "{}", answer.body);
    assert!(
        answer
            .body
            .contains(r#"{"result":"The request body did not arrive within 500 ms"}"#),
        "{}",
        answer.body
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(t.key_count(), before, "a timed-out request writes nothing");
    // The same body, whole, is taken.
    assert_eq!(
        t.post("/i", "application/x-www-form-urlencoded", &body)
            .status,
        200
    );
}

/// `GET` commands Redis has run, over every node (the registry's lookups by key are GETs).
fn registry_gets(t: &TestApp) -> u64 {
    t.nodes()
        .iter()
        .map(|n| {
            let info: String = redis_on(n, redis::cmd("INFO").arg("commandstats"));
            info.lines()
                .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// The app cache keeps unknown keys apart from real apps: a key that does not exist is
/// looked up in Redis once per TTL, however often it is sent, and a flood of distinct
/// unknown keys neither evicts a real app nor makes its requests reach the registry.
#[test]
fn unknown_app_keys_are_remembered_and_cannot_evict_real_apps() {
    // A small cache: the flood below is three times its size.
    let t = TestApp::spawn_with(|c| {
        c.app_cache_ttl = std::time::Duration::from_secs(60);
        c.app_cache_entries = 100;
    });
    let k = t.create_app("UTC");
    let real = |t: &TestApp, n: usize| {
        t.ok(
            &k,
            &[
                ("device_id", format!("d{n}")),
                ("begin_session", "1".into()),
            ],
        )
    };
    real(&t, 0);
    let before = registry_gets(&t);
    for _ in 0..50 {
        let r = t.get("/i?app_key=not-a-key-at-all&device_id=d&begin_session=1");
        assert_eq!(r.status, 400, "{}", r.body);
    }
    assert!(
        registry_gets(&t) - before <= 1,
        "an unknown key reached Redis more than once"
    );
    for n in 0..300 {
        let r = t.get(&format!("/i?app_key=flood-{n}&device_id=d&begin_session=1"));
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let after_flood = registry_gets(&t);
    for n in 1..20 {
        real(&t, n);
    }
    assert_eq!(
        registry_gets(&t),
        after_flood,
        "the real app was evicted by the flood of unknown keys"
    );
}
