//! The raw event stream, the rollup consumer and the bucket events API, end to end.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tally_redis::embedded::free_port;

fn bucket(t: &TestApp, k: &Keys, method: &str, path: &str, key: &str, body: Value) -> Resp {
    let auth = format!("Bearer {key}");
    http(
        &t.addr,
        method,
        &format!("/api/bucket/{}{path}", k.id),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn stats(t: &TestApp, k: &Keys, body: Value) -> Vec<(i64, i64)> {
    let r = bucket(t, k, "POST", "/data/events/stats", &k.read, body);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| (p[0].as_i64().unwrap_or(-1), p[1].as_i64().unwrap_or(-1)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn bucket_api_over_events_sent_to_i() {
    let t = TestApp::spawn_with(|c| c.aggregator.enabled = true);
    // NOW is 16:00 in Kolkata (UTC+5:30): local hours start at :30 UTC.
    let k = t.create_app("Asia/Kolkata");
    let send = |dev: &str, ts: i64, key: &str, app: &str, server: &str| {
        let e = json!([{"key": key, "count": 1, "sum": 2, "segmentation": {"app_name": app, "server_name": server, "n": 5}}]);
        t.ok(
            &k,
            &[
                p("device_id", dev),
                p("timestamp", ts),
                p("events", e.to_string()),
            ],
        );
    };
    send("a", NOW - 1200, "buy", "web", "s1"); // 15:40 local
    send("b", NOW - 600, "buy", "api", "s1"); // 15:50
    send("c", NOW - 600, "buy", "web", "s2"); // 15:50
    send("d", NOW - 3600, "buy", "web", "s1"); // 15:00
    send("e", NOW - 16 * 3600, "buy", "web", "s1"); // 00:00 on the 22nd
    send("f", NOW - 16 * 3600 - 60, "buy", "web", "s1"); // 23:59 on the 21st
    send("g", NOW - 60, "view", "web", "s1");
    t.ok(&k, &[p("device_id", "a"), p("begin_session", 1)]);
    settle(&t.nodes(), &k.id);

    // Raw events, newest first, filtered and paged.
    let get = |body: Value| {
        let r = bucket(&t, &k, "POST", "/data/events", &k.read, body);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json().as_array().cloned().unwrap_or_default()
    };
    let all = get(json!({"event_name": "buy"}));
    let devices: Vec<&str> = all.iter().filter_map(|e| e["device_id"].as_str()).collect();
    assert_eq!(
        devices,
        ["f", "e", "d", "c", "b", "a"],
        "newest first (by arrival)"
    );
    assert_eq!(
        all[0]["segmentation"],
        json!({"app_name": "web", "server_name": "s1", "n": "5"})
    );
    assert_eq!(
        (all[0]["count"].clone(), all[0]["sum"].clone()),
        (json!(1), json!(2.0))
    );
    assert_eq!(all[0]["timestamp"], json!((NOW - 16 * 3600 - 60) * 1000));
    let web = get(json!({"event_name": "buy", "app_name": "web"}));
    assert_eq!(web.len(), 5);
    let page = get(
        json!({"event_name": "buy", "app_name": "web", "server_name": "s1", "limit": 2, "offset": 1}),
    );
    let devices: Vec<&str> = page
        .iter()
        .filter_map(|e| e["device_id"].as_str())
        .collect();
    assert_eq!(devices, ["e", "d"]);

    // Minute histogram over a day: 1440 points, zero-filled, UTC minutes.
    let minutes = stats(&t, &k, json!({"event_name": "buy", "days": 1}));
    assert_eq!(minutes.len(), 1440);
    assert_eq!(minutes.last().map(|p| p.0), Some(NOW / 60 * 60_000));
    let at_min = |secs: i64| {
        minutes
            .iter()
            .find(|p| p.0 == secs / 60 * 60_000)
            .map(|p| p.1)
    };
    assert_eq!(at_min(NOW - 600), Some(2));
    assert_eq!(at_min(NOW - 1200), Some(1));
    assert_eq!(minutes.iter().map(|p| p.1).sum::<i64>(), 6);
    assert_eq!(minutes.iter().filter(|p| p.1 == 0).count(), 1440 - 5);
    // Hours over two days: local hours, so each starts at :30 UTC.
    let hours = stats(
        &t,
        &k,
        json!({"event_name": "buy", "days": 2, "interval": "hour"}),
    );
    assert_eq!(hours.len(), 48);
    assert!(
        hours.iter().all(|p| p.0 % 3_600_000 == 1_800_000),
        "{hours:?}"
    );
    let at_hour = |ts: i64| hours.iter().find(|p| p.0 == ts).map(|p| p.1);
    // 15:00-16:00 local is 09:30-10:30 UTC.
    assert_eq!(at_hour((NOW - 3600) * 1000), Some(4));
    // Midnight local (18:30 UTC on the 21st): one event; the hour before it: one.
    assert_eq!(at_hour((NOW - 16 * 3600) * 1000), Some(1));
    assert_eq!(at_hour((NOW - 17 * 3600) * 1000), Some(1));
    // Days: the 21st and the 22nd, starting at local midnight.
    let days = stats(
        &t,
        &k,
        json!({"event_name": "buy", "days": 2, "interval": "day"}),
    );
    assert_eq!(
        days,
        vec![
            ((NOW - 16 * 3600 - 86_400) * 1000, 1),
            ((NOW - 16 * 3600) * 1000, 5)
        ]
    );
    // Filters narrow the histograms too.
    let api = stats(
        &t,
        &k,
        json!({"event_name": "buy", "days": 2, "interval": "day", "app_name": "api"}),
    );
    assert_eq!(api.iter().map(|p| p.1).sum::<i64>(), 1);
    let s2 = stats(
        &t,
        &k,
        json!({"event_name": "buy", "days": 2, "interval": "day", "server_name": "s2", "app_name": "web"}),
    );
    assert_eq!(s2.iter().map(|p| p.1).sum::<i64>(), 1);

    let r = http(
        &t.addr,
        "GET",
        &format!("/api/bucket/{}/data/eventsKeysByApp", k.id),
        &[("Authorization", &format!("Bearer {}", k.read))],
        b"",
    );
    let mut groups = r.json().as_array().cloned().unwrap_or_default();
    groups.sort_by_key(|g| g["app_name"].as_str().unwrap_or("").to_string());
    assert_eq!(
        groups,
        vec![
            json!({"app_name": "api", "events": ["buy"]}),
            json!({"app_name": "web", "events": ["buy", "view"]})
        ]
    );

    // Errors: parameters 400, keys 401/403, each with a JSON body.
    for (body, status) in [
        (json!({}), 400),
        (json!({"event_name": "buy", "limit": 0}), 400),
        (json!({"event_name": "buy", "limit": 100000}), 400),
        (json!({"event_name": "buy", "offset": -1}), 400),
    ] {
        let r = bucket(&t, &k, "POST", "/data/events", &k.read, body);
        assert_eq!(r.status, status, "{}", r.body);
        assert!(r.json()["result"].is_string());
    }
    for body in [
        json!({"event_name": "buy", "interval": "week"}),
        json!({"event_name": "buy", "days": 3}),
        json!({"event_name": "buy", "days": 0, "interval": "hour"}),
    ] {
        assert_eq!(
            bucket(&t, &k, "POST", "/data/events/stats", &k.read, body).status,
            400
        );
    }
    assert_eq!(
        bucket(
            &t,
            &k,
            "POST",
            "/data/events",
            &k.write,
            json!({"event_name": "buy"})
        )
        .status,
        403
    );
    let r = http(
        &t.addr,
        "POST",
        &format!("/api/bucket/{}/data/events", k.id),
        &[],
        b"{}",
    );
    assert_eq!(r.status, 401);

    // delete_all: master key only; raw events and rollups go, Countly counters stay.
    assert_eq!(
        bucket(
            &t,
            &k,
            "DELETE",
            "/data/events/delete_all",
            &k.read,
            json!({})
        )
        .status,
        403
    );
    let r = bucket(
        &t,
        &k,
        "DELETE",
        "/data/events/delete_all",
        &k.master,
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(json!({"event_name": "buy"})), Vec::<Value>::new());
    assert_eq!(
        stats(
            &t,
            &k,
            json!({"event_name": "buy", "days": 2, "interval": "day"})
        )
        .iter()
        .map(|p| p.1)
        .sum::<i64>(),
        0
    );
    let range = format!("[{},{}]", (NOW - 2 * DAY) * 1000, NOW * 1000);
    assert_eq!(
        at(
            &t.o(&k, "events", &[p("event", "buy"), p("period", range)]),
            &["2024", "c"]
        ),
        &json!(6)
    );
    // New events after the deletion are rolled up again (the consumer group comes back).
    send("h", NOW - 30, "buy", "web", "s1");
    settle(&t.nodes(), &k.id);
    assert_eq!(get(json!({"event_name": "buy"})).len(), 1);
}

/// Fast takeovers and small batches, so a kill lands in the middle of the work.
const AGG_ENV: [(&str, &str); 3] = [
    ("TALLY_AGG_CLAIM_IDLE_MS", "1000"),
    ("TALLY_AGG_BLOCK_MS", "100"),
    ("TALLY_AGG_BATCH", "50"),
];

#[test]
fn a_killed_aggregator_neither_loses_nor_double_counts() {
    let redis = start_redis("agg-kill");
    let (a_addr, b_addr) = (
        format!("127.0.0.1:{}", free_port().expect("port")),
        format!("127.0.0.1:{}", free_port().expect("port")),
    );
    // In `Proc`s, so a failed wait or assertion does not leave them running.
    let mut a = Proc(start_binary("tally", &redis.url(), &a_addr, &AGG_ENV));
    wait_http(&a_addr, "/ping");
    let Keys {
        id,
        write: wk,
        read: rk,
        ..
    } = create_project(&a_addr, "k", "Europe/Berlin");
    // Load through A, which also aggregates; kill it in the middle of it.
    let progress = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (addr, wk, progress) = (a_addr.clone(), wk.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut sent = 0;
            for i in 0..3000 {
                let e = json!([{"key": "k", "count": 1 + i % 3}]).to_string();
                let path = format!(
                    "/i?{}",
                    qs(&[
                        p("app_key", &wk),
                        p("device_id", format!("d{}", i % 50)),
                        p("events", e)
                    ])
                );
                if try_http(&addr, "GET", &path, &[], b"").is_ok_and(|r| r.status == 200) {
                    sent += 1;
                    progress.store(sent, Ordering::SeqCst);
                } else {
                    break;
                }
            }
            sent
        })
    };
    // Kill A once it is rolling up (it finds a new app within about 2 s), so that it dies
    // with work in hand rather than before it started.
    let app = tally_model::keys::AppId::parse(&id).expect("app id");
    let stream = tally_model::keys::stream(&app);
    let rolling = || {
        groups(&redis, &stream)
            .iter()
            .any(|(last, _)| last != "0-0")
    };
    // An acknowledged request has written the stream, so `rolling` may ask about it.
    wait_until(
        "A to roll up some of the load",
        Duration::from_secs(30),
        || (progress.load(Ordering::SeqCst) >= 100 && rolling()).then_some(()),
    );
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(a.0.id().to_string())
        .status();
    a.0.wait().ok();
    let acked = sender.join().unwrap_or(0);
    assert!(acked > 50, "load ran: {acked}");
    // B takes over A's pending entries and everything not yet read.
    let mut b = Proc(start_binary("tally", &redis.url(), &b_addr, &AGG_ENV));
    wait_http(&b_addr, "/ping");
    settle(&[&redis], &id);
    // B measures its lag gauge only every 2 s, so it may trail the stream.
    wait_until("B's lag gauge to reach 0", Duration::from_secs(10), || {
        let metrics = http(&b_addr, "GET", "/metrics", &[], b"").body;
        metrics.contains("tally_aggregator_lag 0").then_some(())
    });
    let o = http(
        &b_addr,
        "GET",
        &format!("/o?app_id={id}&api_key={rk}&method=events&event=k"),
        &[],
        b"",
    )
    .json();
    let year = o
        .as_object()
        .and_then(|m| m.keys().find(|k| k.len() == 4).cloned())
        .unwrap_or_default();
    let counted = at(&o, &[&year, "c"]).as_i64().unwrap_or(0);
    let rolled = rolled_up(&b_addr, &id, &rk, "k", 2);
    let metrics = http(&b_addr, "GET", "/metrics", &[], b"").body;
    b.0.kill().ok();
    b.0.wait().ok();
    // The rollups hold exactly what the counters hold: nothing lost, nothing twice.
    assert!(counted > 0);
    assert_eq!(
        rolled, counted,
        "rollups {rolled} vs Countly counters {counted}\n{metrics}"
    );
    assert!(metrics.contains("tally_aggregator_lag 0"), "{metrics}");
}

#[test]
fn realtime_reports_match_a_brute_force_computation() {
    let t = TestApp::spawn_with(|c| c.aggregator.enabled = true);
    let k = t.create_app("UTC");
    let rt = |path: &str, header: (&str, &str), body: Value| {
        http(
            &t.addr,
            "POST",
            path,
            &[header, ("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let send = |i: i64| {
        let country = ["TR", "DE", "US"][(i % 3) as usize];
        let platform = ["ios", "android", "web"][(i % 4 % 3) as usize];
        let key = ["buy", "refund", "view"][(i % 5 % 3) as usize];
        let e = json!([{"key": key, "count": 1 + i % 3, "sum": (i * 7 % 11) as f64,
            "segmentation": {"country": country, "platform": platform}}]);
        t.ok(
            &k,
            &[
                p("device_id", format!("d{}", i % 13)),
                p("timestamp", NOW - (i % 5) * 60 - 5),
                p("events", e.to_string()),
            ],
        );
        (
            key,
            country,
            platform,
            1 + i % 3,
            (i * 7 % 11) as f64,
            format!("d{}", i % 13),
            (NOW - (i % 5) * 60 - 5) / 60,
        )
    };
    // Before the report exists: not counted.
    send(1000);
    t.clock.advance_secs(1);
    let measures = [
        "COUNT:count",
        "SUM:sum",
        "AVERAGE:sum",
        "MINIMUM:sum",
        "MAXIMUM:sum",
        "COUNT_UNIQUE:device_id",
        "APPROXIMATE_UNIQUE:device_id",
    ];
    let m = |s: &str| {
        let (a, c) = s.split_once(':').unwrap_or(("", ""));
        json!({"column": c, "aggregation": a})
    };
    let def = json!({"name": "Sales", "table_name": "sales", "collections": ["buy", "refund"],
        "measures": measures.iter().map(|s| m(s)).collect::<Vec<_>>(), "dimensions": ["country"],
        "filter": "platform in ('ios', 'android') and sum >= 1"});
    // Creating needs the master key.
    assert_eq!(
        rt("/realtime/create", ("read_key", &k.read), def.clone()).status,
        401
    );
    assert_eq!(
        rt("/realtime/create", ("master_key", &k.read), def.clone()).status,
        403
    );
    let r = rt("/realtime/create", ("master_key", &k.master), def.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        rt("/realtime/create", ("master_key", &k.master), def.clone()).status,
        400,
        "duplicate"
    );
    let mut bad = def.clone();
    bad["table_name"] = json!("other");
    bad["filter"] = json!("platform in (");
    assert_eq!(
        rt("/realtime/create", ("master_key", &k.master), bad).status,
        400
    );

    let events: Vec<_> = (0..60).map(send).collect();
    settle(&t.nodes(), &k.id);

    // Brute force over the same events.
    let kept: Vec<_> = events
        .iter()
        .filter(|(key, _, platform, _, sum, _, _)| {
            ["buy", "refund"].contains(key) && ["ios", "android"].contains(platform) && *sum >= 1.0
        })
        .collect();
    assert!(kept.len() > 10);
    let range = json!({"date_start": (NOW - 600) * 1000, "date_end": NOW * 1000});
    for measure in measures {
        let mut q = range.clone();
        q["table_name"] = json!("sales");
        q["measure"] = m(measure);
        q["dimensions"] = json!(["country"]);
        q["aggregate"] = json!(true);
        let r = rt("/realtime/get", ("read_key", &k.read), q);
        assert_eq!(r.status, 200, "{}", r.body);
        let got = r.json()["result"].clone();
        for country in ["TR", "DE", "US"] {
            let rows: Vec<_> = kept.iter().filter(|e| e.1 == country).collect();
            let sums: Vec<f64> = rows.iter().map(|e| e.4).collect();
            let devices: std::collections::BTreeSet<&String> = rows.iter().map(|e| &e.5).collect();
            let expected = match measure {
                "COUNT:count" => json!(rows.iter().map(|e| e.3).sum::<i64>()),
                "SUM:sum" => json!(sums.iter().sum::<f64>()),
                "AVERAGE:sum" => json!(sums.iter().sum::<f64>() / sums.len() as f64),
                "MINIMUM:sum" => json!(sums.iter().cloned().fold(f64::MAX, f64::min)),
                "MAXIMUM:sum" => json!(sums.iter().cloned().fold(f64::MIN, f64::max)),
                _ => json!(devices.len()),
            };
            let g = &got[country];
            if measure.starts_with("APPROXIMATE") {
                // An estimate; exact for sets this small in practice, allowed one off.
                assert!(
                    (g.as_i64().unwrap_or(-9) - expected.as_i64().unwrap_or(0)).abs() <= 1,
                    "{measure} {country}: {g} vs {expected}"
                );
            } else if rows.is_empty() {
                assert!(g.is_null(), "{measure} {country}: {g}");
            } else {
                let (a, b) = (
                    g.as_f64().unwrap_or(f64::NAN),
                    expected.as_f64().unwrap_or(0.0),
                );
                assert!(
                    (a - b).abs() < 1e-9,
                    "{measure} {country}: {g} vs {expected}"
                );
            }
        }
    }
    // Per minute, without dimensions: the counts of each minute.
    let mut q = range.clone();
    q["table_name"] = json!("sales");
    q["measure"] = m("COUNT:count");
    let per_minute = rt("/realtime/get", ("read_key", &k.read), q).json();
    let result = per_minute["result"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(result.len(), 11, "every minute of the range");
    for (ts, v) in &result {
        let minute = ts.parse::<i64>().unwrap_or(0) / 60_000;
        let expected: i64 = kept.iter().filter(|e| e.6 == minute).map(|e| e.3).sum();
        assert_eq!(v, &json!(expected), "minute {ts}");
    }
    // Errors, list, delete.
    let mut q = range.clone();
    q["table_name"] = json!("sales");
    q["measure"] = json!({"column": "sum", "aggregation": "COUNT"});
    assert_eq!(rt("/realtime/get", ("read_key", &k.read), q).status, 400);
    let mut q = range.clone();
    q["table_name"] = json!("nope");
    q["measure"] = m("COUNT:count");
    assert_eq!(rt("/realtime/get", ("read_key", &k.read), q).status, 404);
    let list = rt("/realtime/list", ("read_key", &k.read), json!({})).json();
    assert_eq!(list[0]["table_name"], json!("sales"));
    assert!(list[0]["query"]
        .as_str()
        .unwrap_or("")
        .starts_with("SELECT COUNT(count), SUM(sum)"));
    assert_eq!(
        rt(
            "/realtime/delete",
            ("master_key", &k.master),
            json!({"table_name": "sales"})
        )
        .status,
        200
    );
    assert_eq!(
        rt("/realtime/list", ("read_key", &k.read), json!({})).json(),
        json!([])
    );
}

/// Session begins and ends are rolled up by the collector, in the request's own
/// transaction: `/o?method=live` counts them with no stream consumer running, a retry
/// counts once, and a request without events writes no raw stream entry.
#[test]
fn session_begins_roll_up_without_the_consumer() {
    let t = TestApp::spawn(); // the test default: no stream consumer
    let k = t.create_app("UTC");
    for d in ["a", "b", "c"] {
        let begin = [
            p("device_id", d),
            p("begin_session", 1),
            p("timestamp", NOW - 120),
        ];
        t.ok(&k, &begin);
        if d == "a" {
            // A retry of the same request: counted once.
            t.ok(&k, &begin);
        }
    }
    t.ok(
        &k,
        &[
            p("device_id", "a"),
            p("end_session", 1),
            p("session_duration", 30),
            p("timestamp", NOW - 60),
        ],
    );
    let live = t.o(&k, "live", &[]);
    assert_eq!(live["sessions"], json!(3), "{live}");
    let minute = (NOW - 120).div_euclid(60) * 60_000;
    let point = live["points"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p[0] == json!(minute)))
        .cloned()
        .unwrap_or_default();
    assert_eq!(point, json!([minute, 3, 0, 3]), "{live}");

    let app = tally_model::keys::AppId::parse(&k.id).expect("app id");
    let nodes = t.nodes();
    let node = if cluster_mode() {
        nodes[node_of(&nodes, &tally_model::keys::stream(&app))]
    } else {
        &t.redis
    };
    let len: i64 = redis_on(
        node,
        redis::cmd("XLEN").arg(tally_model::keys::stream(&app)),
    );
    assert_eq!(len, 0, "no events, no raw stream entries");
    let rollup = tally_model::keys::rollup_minute(&app, (NOW - 120).div_euclid(60));
    let begins: Option<i64> = redis_on(node, redis::cmd("HGET").arg(&rollup).arg("sb"));
    assert_eq!(begins, Some(3));
    let ttl: i64 = redis_on(node, redis::cmd("TTL").arg(&rollup));
    assert!(ttl > 0, "the minute rollup expires: {ttl}");
    let end_minute = tally_model::keys::rollup_minute(&app, (NOW - 60).div_euclid(60));
    let se: Option<i64> = redis_on(node, redis::cmd("HGET").arg(&end_minute).arg("se"));
    assert_eq!(se, Some(1));
}
