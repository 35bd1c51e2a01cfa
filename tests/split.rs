//! Split services: two collectors, one reader and two aggregators as separate processes on
//! one Redis, load spread over the collectors, exact totals (dedup and uniques across
//! collectors; aggregators sharing the consumer group without double counting).

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn split_services_stay_exact() {
    let redis = start_redis("split");
    let url = redis.url();
    let env = [("TALLY_AGG_BLOCK_MS", "100"), ("TALLY_WORKERS", "1")];
    let (_c1, c1) = spawn_binary("collector", &url, &env);
    let (_c2, c2) = spawn_binary("collector", &url, &env);
    let (_r, r) = spawn_binary("reader", &url, &env);
    let (_a1, a1) = spawn_binary("aggregator", &url, &env);
    let (_a2, a2) = spawn_binary("aggregator", &url, &env);
    // Each serves only its own routes.
    assert_eq!(http(&c1, "GET", "/o?method=sessions", &[], b"").status, 404);
    assert_eq!(http(&r, "GET", "/i", &[], b"").status, 404);
    let Keys {
        id,
        write: wk,
        read: rk,
        ..
    } = create_project(&a1, "split", "UTC");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (c1, c2, wk) = (c1.clone(), c2.clone(), wk.clone());
            std::thread::spawn(move || {
                for i in 0..40i64 {
                    let n = t * 40 + i;
                    // Like an SDK, each device's requests come one at a time from one sender.
                    let path = format!(
                        "/i?{}",
                        qs(&[
                            p("app_key", &wk),
                            p("device_id", format!("dev{t}-{}", i % 8)),
                            p("begin_session", 1),
                            p("timestamp", now - 1000 + n),
                            p("events", json!([{"key": "tap", "count": 2}]).to_string())
                        ])
                    );
                    // The same request to both collectors: an SDK retry landing elsewhere.
                    for addr in [&c1, &c2] {
                        assert_eq!(http(addr, "GET", &path, &[], b"").status, 200);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    let s = http(
        &r,
        "GET",
        &format!("/o?app_id={id}&api_key={rk}&method=sessions"),
        &[],
        b"",
    )
    .json();
    let year = s
        .as_object()
        .and_then(|m| m.keys().find(|k| k.len() == 4).cloned())
        .unwrap_or_default();
    assert_eq!(
        (
            s[&year]["t"].clone(),
            s[&year]["n"].clone(),
            s[&year]["u"].clone()
        ),
        (json!(320), json!(64), json!(64)),
        "{s}"
    );
    let e = http(
        &r,
        "GET",
        &format!("/o?app_id={id}&api_key={rk}&method=events&event=tap"),
        &[],
        b"",
    )
    .json();
    assert_eq!(e[&year]["c"], json!(640));
    // Both aggregators share the stream; together they roll up every event once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rolled = loop {
        std::thread::sleep(Duration::from_millis(500));
        let sum = rolled_up(&a2, &id, &rk, "tap", 1);
        if sum >= 640 || Instant::now() > deadline {
            break sum;
        }
    };
    assert_eq!(rolled, 640);
    let processed = |addr: &str| {
        let m = http(addr, "GET", "/metrics", &[], b"").body;
        m.lines()
            .find_map(|l| {
                l.strip_prefix("tally_aggregator_processed_total ")
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    // 320 requests (a stream entry each, begin and event together) were rolled up once, by
    // one aggregator or the other.
    assert_eq!(processed(&a1) + processed(&a2), 320);
    let m = http(&c1, "GET", "/metrics", &[], b"").body;
    assert!(
        m.contains("tally_http_requests_total{route=\"/i\",status=\"200\"} 320"),
        "{m}"
    );
    assert!(m.contains("tally_commit_requests_total"), "{m}");
}
