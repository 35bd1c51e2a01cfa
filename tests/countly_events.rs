//! Events, bulk, JSONP, duplicates and limits through real HTTP and a real Redis.

mod common;
use common::*;
use serde_json::{json, Value};

fn ev(v: Value) -> (&'static str, String) {
    p("events", v.to_string())
}

/// Countly's event test sequence (test/3.api.write/5.write.app.events.js), in one app.
#[test]
fn countly_event_vectors() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let d = || p("device_id", "1234567890");
    let y = |v: &Value, f: &str| at(v, &["2024", f]).clone();

    for body in [json!([]), json!([{"count": 1}]), json!([{"key": "test"}])] {
        t.ok(&k, &[d(), ev(body)]);
    }
    assert_eq!(y(&t.o(&k, "events", &[]), "c"), json!(1));
    let ge = t.o(&k, "get_events", &[]);
    assert_eq!(ge["list"], json!(["test"]));
    assert!(ge.get("segments").is_none(), "{ge}");
    assert_eq!(ge["limits"]["event_limit"], json!(500));

    t.ok(&k, &[d(), ev(json!([{"key": "test", "count": 2}]))]);
    assert_eq!(y(&t.o(&k, "events", &[p("event", "test")]), "c"), json!(3));

    t.ok(&k, &[d(), ev(json!([{"key": "test1", "count": 1}]))]);
    t.ok(
        &k,
        &[
            d(),
            ev(json!([{"key": "test1", "count": 3}, {"key": "test2", "count": 2}])),
        ],
    );
    assert_eq!(y(&t.o(&k, "events", &[p("event", "test1")]), "c"), json!(4));
    let both = t.o(&k, "events", &[p("events", r#"["test1","test2"]"#)]);
    assert_eq!(y(&both, "c"), json!(6));
    // An event never segmented has no `meta` at all; several events always have one,
    // unknown keys too (Countly's fetch.js getMergedEventData).
    assert!(t
        .o(&k, "events", &[p("event", "test1")])
        .get("meta")
        .is_none());
    assert_eq!(both["meta"], json!({}));
    assert_eq!(
        t.o(&k, "events", &[p("events", r#"["nope","nada"]"#)]),
        json!({"meta": {}})
    );
    let all = t.o(&k, "events", &[p("events", r#"["test","test1","test2"]"#)]);
    assert_eq!(y(&all, "c"), json!(9));

    t.ok(
        &k,
        &[d(), ev(json!([{"key": "test1", "count": 1, "sum": 2.97}]))],
    );
    let e = t.o(&k, "events", &[p("event", "test1")]);
    assert_eq!((y(&e, "c"), y(&e, "s")), (json!(5), json!(2.97)));
    t.ok(
        &k,
        &[d(), ev(json!([{"key": "test1", "count": 1, "sum": 1.03}]))],
    );
    let e = t.o(&k, "events", &[p("event", "test1")]);
    assert_eq!((y(&e, "c"), y(&e, "s")), (json!(6), json!(4)));

    let seg = json!({"version": "1.0", "country": "Turkey"});
    t.ok(
        &k,
        &[
            d(),
            ev(json!([{"key": "test1", "count": 1, "segmentation": seg}])),
        ],
    );
    let e = t.o(&k, "events", &[p("event", "test1")]);
    assert_eq!(y(&e, "c"), json!(7));
    assert_eq!(
        e["meta"],
        json!({"version": ["1:0"], "country": ["Turkey"], "segments": ["country", "version"]})
    );
    let by_country = t.o(
        &k,
        "events",
        &[p("event", "test1"), p("segmentation", "country")],
    );
    assert_eq!(y(&by_country, "Turkey"), json!({"c": 1}));
    assert_eq!(
        at(&by_country, &["2024", "10", "22", "Turkey"]),
        &json!({"c": 1})
    );

    let seg = json!({"version": "1.2", "country": "Latvia", "market": "googleplay"});
    t.ok(
        &k,
        &[
            d(),
            ev(json!([{"key": "test1", "count": 2, "sum": 1.5, "segmentation": seg}])),
        ],
    );
    let e = t.o(&k, "events", &[p("event", "test1")]);
    assert_eq!((y(&e, "c"), y(&e, "s")), (json!(9), json!(5.5)));
    let by_country = t.o(
        &k,
        "events",
        &[p("event", "test1"), p("segmentation", "country")],
    );
    assert_eq!(y(&by_country, "Latvia"), json!({"c": 2, "s": 1.5}));

    // Arrays in segmentation are skipped with their key; NUL is stored as Countly does
    // and the answer is HTML-escaped.
    let seg = json!({"arrayValues": ["a", "b"], "test": "bat", "odd": "ç\u{0}gA"});
    t.ok(
        &k,
        &[d(), ev(json!([{"key": "segs", "segmentation": seg}]))],
    );
    let e = t.o(&k, "events", &[p("event", "segs")]);
    assert_eq!(
        e["meta"],
        json!({"odd": ["ç&amp;#9647gA"], "test": ["bat"], "segments": ["odd", "test"]})
    );
    let raw = t.o(&k, "events", &[p("event", "segs"), p("noescape", "1")]);
    assert_eq!(raw["meta"]["odd"], json!(["ç&#9647gA"]));
    // A `"` in a meta value: Countly turns it into `&quot;` in meta arrays, and its
    // output escaping then into `&amp;quot;` (api/utils/common.js escape_html).
    t.ok(
        &k,
        &[
            d(),
            ev(json!([{"key": "quoted", "segmentation": {"q": "a\"b"}}])),
        ],
    );
    let e = t.o(&k, "events", &[p("event", "quoted")]);
    assert_eq!(e["meta"]["q"], json!(["a&amp;quot;b"]), "{e}");
    let raw = t.o(&k, "events", &[p("event", "quoted"), p("noescape", "1")]);
    assert_eq!(raw["meta"]["q"], json!(["a&quot;b"]), "{raw}");

    let ge = t.o(&k, "get_events", &[]);
    // In the order the keys were first seen (Countly's `list` is pushed to as events
    // arrive: api/parts/data/events.js).
    assert_eq!(
        ge["list"],
        json!(["test", "test1", "test2", "segs", "quoted"])
    );
    assert_eq!(
        ge["segments"],
        json!({"quoted": ["q"], "segs": ["odd", "test"], "test1": ["country", "market", "version"]})
    );
    // Without `event`, the first key of the sorted list.
    assert_eq!(
        t.o(&k, "events", &[]),
        t.o(&k, "events", &[p("event", "quoted")])
    );

    let top = t.o(&k, "top_events", &[p("period", "30days")]);
    assert_eq!(top["totalCount"], json!(3 + 9 + 2 + 1 + 1));
    assert_eq!(
        top["data"][0],
        json!({"name": "test1", "count": 9, "sum": 5.5, "duration": 0})
    );
}

/// Countly's top_events document (its api/jobs/topEvents.js and fetch.js
/// fetchDataTopEvents): 15 fields, both periods' totals, zero-count events listed,
/// `limit` and `filter` honoured, `false` for a period the job does not keep.
#[test]
fn top_events_as_countly_answers_them() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + 60) * 1000);
    let k = t.create_app("UTC");
    let send = |device: &str, ts: i64, events: Value, begin: bool| {
        let mut pairs = vec![p("device_id", device), p("timestamp", ts), ev(events)];
        if begin {
            pairs.push(p("begin_session", 1));
        }
        t.ok(&k, &pairs);
    };
    // This period (the last 30 days, today the 22nd): buy 3 (sum 30), view 5; the one
    // before: buy 1 (sum 5), idle 2 (and none now).
    send(
        "a",
        NOW,
        json!([{"key": "buy", "count": 2, "sum": 20}, {"key": "view", "count": 5}]),
        true,
    );
    send(
        "b",
        NOW - 3 * DAY,
        json!([{"key": "buy", "count": 1, "sum": 10, "dur": 4}]),
        true,
    );
    send(
        "c",
        NOW - 40 * DAY,
        json!([{"key": "buy", "count": 1, "sum": 5}, {"key": "idle", "count": 2}]),
        true,
    );
    let top = t.o(&k, "top_events", &[p("period", "30days")]);
    let keys: Vec<&str> = top
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 15, "{top}");
    assert_eq!(
        top["data"],
        json!([
            {"name": "view", "count": 5, "sum": 0, "duration": 0},
            {"name": "buy", "count": 3, "sum": 30, "duration": 4},
            {"name": "idle", "count": 0, "sum": 0, "duration": 0}
        ])
    );
    assert_eq!(
        (
            &top["totalCount"],
            &top["prevTotalCount"],
            &top["totalSum"],
            &top["prevTotalSum"]
        ),
        (&json!(8), &json!(3), &json!(30), &json!(5))
    );
    assert_eq!(
        (&top["totalSessionCount"], &top["prevSessionCount"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(
        (&top["totalUsersCount"], &top["prevUsersCount"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(top["ts"], json!(NOW + 60));
    assert_eq!(top["period"], json!("30days"));
    let top = t.o(&k, "top_events", &[p("period", "30days"), p("limit", 1)]);
    assert_eq!(top["data"].as_array().map(Vec::len), Some(1));
    let top = t.o(
        &k,
        "top_events",
        &[p("period", "30days"), p("limit", "abc")],
    );
    assert_eq!(top["data"], json!([]));
    let top = t.o(
        &k,
        "top_events",
        &[p("period", "30days"), p("filter", "sum")],
    );
    assert_eq!(
        top["data"][0],
        json!({"name": "buy", "sum": 30, "trend": "u", "change": "500%"})
    );
    assert_eq!(top.as_object().map(|o| o.len()), Some(6), "{top}");
    // today: today so far against yesterday.
    let today = t.o(&k, "top_events", &[p("period", "today")]);
    assert_eq!(
        (&today["totalCount"], &today["prevTotalCount"]),
        (&json!(7), &json!(0))
    );
    assert_eq!(today["totalUsersCount"], json!(1));
    for other in ["month", "7days", ""] {
        assert_eq!(
            t.o(&k, "top_events", &[p("period", other)]),
            json!(false),
            "{other}"
        );
    }
}

#[test]
fn event_times_hours_duration_and_refresh() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + DAY) * 1000);
    let k = t.create_app("America/New_York"); // UTC-4 in October
    let events = json!([
        {"key": "play", "count": 1, "dur": 12.5, "timestamp": (NOW * 1000)},
        {"key": "play", "count": 2, "dur": 1, "timestamp": NOW - 2 * DAY},
        {"key": "play", "count": 4}
    ]);
    t.ok(
        &k,
        &[
            p("device_id", "e1"),
            p("events", events.to_string()),
            p("timestamp", NOW + DAY),
        ],
    );
    let e = t.o(&k, "events", &[p("event", "play")]);
    // NOW is 06:30 in New York on the 22nd.
    assert_eq!(
        at(&e, &["2024", "10", "22", "6"]),
        &json!({"c": 1, "dur": 12.5})
    );
    assert_eq!(at(&e, &["2024", "10", "20", "c"]), &json!(2));
    assert_eq!(at(&e, &["2024", "10", "23", "c"]), &json!(4));
    assert_eq!(at(&e, &["2024", "dur"]), &json!(13.5));
    assert_eq!(at(&e, &["2024", "c"]), &json!(7));
    // refresh: only today (the 23rd in New York).
    let today = t.o(&k, "events", &[p("event", "play"), p("action", "refresh")]);
    assert_eq!(
        today,
        json!({"2024": {"10": {"23": {"c": 4, "6": {"c": 4}}}}})
    );
    // The internal events the SDKs send are counted but not listed.
    t.ok(
        &k,
        &[
            p("device_id", "e1"),
            ev(json!([{"key": "[CLY]_orientation", "segmentation": {"mode": "portrait"}}])),
        ],
    );
    assert_eq!(t.o(&k, "get_events", &[])["list"], json!(["play"]));
    let o = t.o(&k, "events", &[p("event", "[CLY]_orientation")]);
    assert_eq!(at(&o, &["2024", "c"]), &json!(1));
}

#[test]
fn form_json_and_bulk_requests() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    // POST with a form body (the web SDK) and with a JSON body carrying real JSON.
    let form = qs(&[
        p("app_key", &k.write),
        p("device_id", "f1"),
        p("begin_session", 1),
    ]);
    let r = t.post("/i", "application/x-www-form-urlencoded", &form);
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (200, json!("Success"))
    );
    let body = json!({"app_key": k.write, "device_id": "j1", "begin_session": 1,
        "metrics": {"_os": "iOS"}, "events": [{"key": "x", "count": 2}]});
    let r = t.post("/i", "application/json", &body.to_string());
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (200, json!("Success")),
        "{}",
        r.body
    );
    // Bulk: several requests from one new device count one new user; bad items are
    // reported and skipped.
    let requests = json!([
        {"device_id": "b1", "begin_session": 1, "timestamp": NOW - 100},
        {"device_id": "b1", "session_duration": 30, "timestamp": NOW - 70},
        {"device_id": "b1", "end_session": 1, "events": [{"key": "x"}], "timestamp": NOW - 60},
        {"begin_session": 1},
        {"device_id": "b2", "events": "[{"},
        {"device_id": "b3", "app_key": "nope", "begin_session": 1},
        7
    ]);
    let form = qs(&[p("app_key", &k.write), p("requests", requests.to_string())]);
    let r = t.post("/i/bulk", "application/x-www-form-urlencoded", &form);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["result"].clone(), v["accepted"].clone()),
        (json!("Success"), json!(3))
    );
    let rejected: Vec<i64> = v["rejected"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["index"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(rejected, vec![3, 4, 5, 6]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(at(&s, &["2024", "n"]), &json!(3));
    assert_eq!(at(&s, &["2024", "t"]), &json!(3));
    assert_eq!(at(&s, &["2024", "d"]), &json!(30));
    assert_eq!(at(&s, &["2024", "ds"]), &json!({"1": 1}));
    assert_eq!(
        at(&t.o(&k, "events", &[p("event", "x")]), &["2024", "c"]),
        &json!(3)
    );
    // The node SDK's bulk: a JSON body with objects and numbers.
    let body = json!({"app_key": k.write, "requests": [{"device_id": "n1", "begin_session": 1, "metrics": {"_os": "Linux"}}]});
    let r = t.post("/i/bulk", "application/json", &body.to_string());
    assert_eq!(r.json()["accepted"], json!(1), "{}", r.body);
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "n"]), &json!(4));
    // Bulk errors.
    assert_eq!(t.get(&format!("/i/bulk?app_key={}", k.write)).status, 400);
    assert_eq!(
        t.get(&format!("/i/bulk?app_key={}&requests=%7B%7D", k.write))
            .status,
        400
    );
}

#[test]
fn jsonp_and_public_reads() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    t.ok(&k, &[p("device_id", "j"), p("begin_session", 1)]);
    let path = |cb: &str| {
        format!(
            "/o?app_key={}&api_key={}&method=sessions&callback={cb}",
            k.write, k.read
        )
    };
    let r = t.get(&path("myCb"));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/javascript"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let plain = t.o(&k, "sessions", &[]);
    assert_eq!(r.body, format!("myCb({plain});"));
    for bad in ["alert(1)", "a-b", "1x", "x%3Bdelete"] {
        assert_eq!(t.get(&path(bad)).status, 400, "{bad}");
    }
    // Without the read key: 400 as Countly answers it (its Errata); a public app needs
    // only app_key, as in the seed API.
    let no_key = format!("/o?app_key={}&method=sessions", k.write);
    let r = t.get(&no_key);
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (
            400,
            json!("Missing parameter \"api_key\" or \"auth_token\"")
        )
    );
    // A key that is nobody's: 401 `User does not exist` (Countly's api/utils/common.js
    // validateUser after its member lookup); another app's read key: no right.
    let r = t.get(&format!(
        "/o?app_key={}&api_key=nobodys&method=sessions",
        k.write
    ));
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (401, json!("User does not exist"))
    );
    let other = t.create_app("UTC");
    let r = t.get(&format!(
        "/o?app_id={}&api_key={}&method=sessions",
        k.id, other.read
    ));
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (401, json!("User does not have right"))
    );
    assert_eq!(
        t.get(&format!(
            "/o?app_key={}&api_key=wrong&method=sessions",
            k.write
        ))
        .status,
        401
    );
    // The write key is not a read key.
    assert_eq!(
        t.get(&format!(
            "/o?app_key={}&api_key={}&method=sessions",
            k.write, k.write
        ))
        .status,
        401
    );
    // app_id + read key in a header works too.
    let r = http(
        &t.addr,
        "GET",
        &format!("/o?app_id={}&method=sessions", k.id),
        &[("read_key", &k.read)],
        b"",
    );
    assert_eq!(r.json(), plain);
    let public = t.create_app_with(json!({"name": "pub", "timezone": "UTC", "public_read": true}));
    let r = t.get(&format!("/o?app_key={}&method=sessions", public.write));
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));
}

#[test]
fn duplicate_requests_are_counted_once() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let req = |rr: u32| {
        t.i(
            &k,
            &[
                p("device_id", "dup"),
                p("begin_session", 1),
                p("timestamp", NOW * 1000),
                p("rr", rr),
            ],
        )
    };
    assert_eq!(req(1).json(), json!({"result": "Success"}));
    // The web SDK's retry differs only in rr.
    assert_eq!(
        req(2).json(),
        json!({"result": "Success", "info": "Request ignored: Duplicate request"})
    );
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "t"]), &json!(1));
    // Concurrent copies of one request: one counts.
    let ev = json!([{"key": "tap", "count": 1}]).to_string();
    let path = format!(
        "/i?{}",
        qs(&[
            p("app_key", &k.write),
            p("device_id", "dup"),
            p("events", &ev),
            p("timestamp", NOW - 5)
        ])
    );
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (addr, path) = (t.addr.clone(), path.clone());
            std::thread::spawn(move || http(&addr, "GET", &path, &[], b"").status)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap_or(0), 200);
    }
    assert_eq!(
        at(&t.o(&k, "events", &[p("event", "tap")]), &["2024", "c"]),
        &json!(1)
    );
    assert!(metric_value(&t.addr, "tally_dedup_hits_total") >= 1.0);
    // Without a timestamp, a retry cannot be told from a new request: both count.
    t.ok(&k, &[p("device_id", "dup"), p("events", &ev)]);
    t.ok(&k, &[p("device_id", "dup"), p("events", &ev)]);
    assert_eq!(
        at(&t.o(&k, "events", &[p("event", "tap")]), &["2024", "c"]),
        &json!(3)
    );
}

#[test]
fn limits_keep_cardinality_bounded() {
    let t = TestApp::spawn_with(|c| {
        c.limits.event_keys = 3;
        c.limits.values_per_metric = 2;
        c.limits.segments_per_event = 1;
        c.limits.values_per_segment = 2;
    });
    let k = t.create_app("UTC");
    for i in 0..300 {
        let events =
            json!([{"key": format!("k{i}"), "segmentation": {"a": format!("v{i}"), "b": "x"}}]);
        t.ok(
            &k,
            &[
                p("device_id", format!("dev{i}")),
                p("begin_session", 1),
                ev(events),
                p(
                    "metrics",
                    json!({"_device": format!("model{i}")}).to_string(),
                ),
            ],
        );
    }
    let ge = t.o(&k, "get_events", &[]);
    assert_eq!(ge["list"].as_array().map(Vec::len), Some(3));
    let first = ge["list"][0].as_str().unwrap_or_default().to_string();
    let e = t.o(&k, "events", &[p("event", &first)]);
    assert_eq!(e["meta"]["segments"].as_array().map(Vec::len), Some(1));
    let d = t.o(&k, "devices", &[]);
    assert_eq!(d["meta"]["devices"].as_array().map(Vec::len), Some(2));
    // Sessions are still all counted.
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "t"]), &json!(300));
    // Keys stay bounded: app record and key, 300 device states, a fixed set of counter
    // hashes and meta sets, and the session rollups of the one minute and hour (3 keys
    // that expire).
    assert!(t.key_count() < 300 + 43, "{} keys", t.key_count());
    // Every batch and drop shows in /metrics.
    assert!(metric_value(&t.addr, "tally_limit_drops_total") > 0.0);
    assert!(metric_value(&t.addr, "tally_commit_batch_requests_count") >= 1.0);
    assert!(metric_value(&t.addr, "tally_commit_flush_seconds_count") >= 1.0);
}

/// Countly's event groups (api/parts/mgmt/event_groups.js, fetch.js
/// fetchMergedEventGroups): created, ordered, switched and deleted under the master
/// key; listed and read; read as events, the sum of their source events.
#[test]
fn event_groups_read_as_the_sum_of_their_events() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    t.ok(
        &k,
        &[
            p("device_id", "g"),
            ev(json!([
                {"key": "login", "count": 1, "segmentation": {"via": "mail"}},
                {"key": "signup", "count": 2}
            ])),
        ],
    );
    let write = |path: &str, key: &str, extra: &[(&'static str, String)]| {
        let mut pairs = vec![p("api_key", key.to_string())];
        pairs.extend_from_slice(extra);
        t.get(&format!("/i/event_groups/{path}?{}", qs(&pairs)))
    };
    let group = |name: &str| {
        json!({"app_id": k.id, "name": name, "source_events": ["login", "signup"],
               "display_map": {}, "status": true, "description": "entry"})
        .to_string()
    };
    for name in ["Entry", "Second"] {
        let r = write("create", &k.master, &[p("args", group(name))]);
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, r#"{"result":"Success"}"#)
        );
    }
    // The read key may not write; a group needs its fields, typed.
    let r = write("create", &k.read, &[p("args", group("x"))]);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = write(
        "create",
        &k.master,
        &[p(
            "args",
            json!({"name": "x", "source_events": "login", "display_map": {}, "status": true})
                .to_string(),
        )],
    );
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (400, json!("Error: Invalid type for source_events"))
    );
    let groups = t.o(&k, "get_event_groups", &[]);
    // The ids by name (groups without an order list by id).
    let id_of = |name: &str| {
        groups
            .as_array()
            .and_then(|g| g.iter().find(|x| x["name"] == json!(name)))
            .and_then(|x| x["_id"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let ids = [id_of("Entry"), id_of("Second")];
    assert_eq!(groups.as_array().map(Vec::len), Some(2), "{groups}");
    assert!(
        ids.iter().all(|id| id.starts_with("[CLY]_group_")),
        "{groups}"
    );
    // Ordered as asked.
    let order = json!([ids[1], ids[0]]).to_string();
    assert_eq!(
        write("update", &k.master, &[p("event_order", order)]).status,
        200
    );
    let groups = t.o(&k, "get_event_groups", &[]);
    assert_eq!(groups[0]["_id"], json!(ids[1]));
    assert_eq!(groups[0]["order"], json!(0));
    let one = t.o(&k, "get_event_group", &[p("_id", &ids[0])]);
    assert_eq!(
        (one["name"].clone(), one["status"].clone()),
        (json!("Entry"), json!(true))
    );
    // Read as an event: login + signup, with both events' meta.
    let merged = t.o(&k, "events", &[p("event", &ids[0])]);
    assert_eq!(at(&merged, &["2024", "c"]), &json!(3), "{merged}");
    assert_eq!(merged["meta"]["via"], json!(["mail"]));
    // Switched off, renamed, deleted.
    let status = json!([ids[0]]).to_string();
    let r = write(
        "update",
        &k.master,
        &[p("update_status", status), p("status", "false")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = write(
        "update",
        &k.master,
        &[p(
            "args",
            json!({"_id": ids[0], "name": "Renamed"}).to_string(),
        )],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let one = t.o(&k, "get_event_group", &[p("_id", &ids[0])]);
    assert_eq!(
        (one["name"].clone(), one["status"].clone()),
        (json!("Renamed"), json!(false))
    );
    let r = write(
        "delete",
        &k.master,
        &[p("args", json!([ids[0]]).to_string())],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        t.o(&k, "get_event_groups", &[]).as_array().map(Vec::len),
        Some(1)
    );
    let r = t.get(&format!(
        "/o?app_id={}&api_key={}&method=get_event_group&_id={}",
        k.id,
        k.read,
        enc(&ids[0])
    ));
    assert_eq!(r.status, 404, "{}", r.body);
}
