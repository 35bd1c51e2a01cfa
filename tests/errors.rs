//! Every bad input gets a clear 4xx with a JSON body, and writes nothing.

mod common;
use common::*;
use serde_json::json;

fn result(r: &Resp) -> String {
    r.json()["result"].as_str().unwrap_or_default().to_string()
}

#[test]
fn write_errors_are_countly_shaped_and_write_nothing() {
    let t = TestApp::spawn_with(|c| c.limits.max_body_bytes = 2048);
    let k = t.create_app("UTC");
    let before = t.key_count();
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/i".into(),
            400,
            "Missing parameter \"app_key\" or \"device_id\"",
        ),
        (
            format!("/i?app_key={}", k.write),
            400,
            "Missing parameter \"app_key\" or \"device_id\"",
        ),
        (
            "/i?app_key=nope&device_id=d".into(),
            400,
            "App does not exist",
        ),
        (
            format!("/i?app_key={}&device_id=d&events=%5B%7B", k.write),
            400,
            "events JSON is not properly formed",
        ),
        (
            format!("/i?app_key={}&device_id=d&metrics=nope", k.write),
            400,
            "metrics JSON is not properly formed",
        ),
        (
            format!(
                "/i?app_key={}&device_id=d&begin_session=1&metrics=%5B1%5D",
                k.write
            ),
            400,
            "metrics JSON is not properly formed",
        ),
        (
            // Nested past TALLY_MAX_JSON_DEPTH (16) under a key Tally does not read.
            format!(
                "/i?app_key={}&device_id=d&begin_session=1&metrics=%7B%22x%22%3A{}1{}%7D",
                k.write,
                "%5B".repeat(16),
                "%5D".repeat(16)
            ),
            400,
            "metrics JSON is not properly formed",
        ),
        (
            format!("/i?app_key={}&device_id=%FF", k.write),
            400,
            "Request parameters are not valid UTF-8",
        ),
        (
            format!(
                "/i?app_key={}&device_id=d&timestamp=12345678901234567890",
                k.write
            ),
            400,
            "Invalid parameter \"timestamp\": too far in the future",
        ),
        (
            format!("/i?app_key={}&device_id=d&timestamp=100", k.write),
            400,
            "Invalid parameter \"timestamp\": before the year 2000",
        ),
        (
            format!("/i?app_key={}&device_id=d&session_duration=x", k.write),
            400,
            "Invalid parameter \"session_duration\"",
        ),
    ];
    for (path, status, msg) in &cases {
        let r = t.get(path);
        assert_eq!((r.status, result(&r).as_str()), (*status, *msg), "{path}");
        assert!(r
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"));
    }
    let typed = [
        json!([{"key": "a", "count": "1"}]),
        json!([{"key": "a", "count": -1}]),
        json!([{"key": "a", "sum": "NaN"}]),
        json!([{"key": "k".repeat(300)}]),
        json!([{"key": "a", "segmentation": {"s": "v".repeat(2000)}}]),
    ];
    for e in typed {
        let r = t.i(
            &k,
            &[
                p("device_id", "d"),
                p("begin_session", 1),
                p("events", e.to_string()),
            ],
        );
        assert_eq!(r.status, 400, "{e}: {}", r.body);
    }
    // Too large a body: 413 with JSON.
    let big = format!("app_key={}&device_id=d&x={}", k.write, "a".repeat(4096));
    let r = t.post("/i", "application/x-www-form-urlencoded", &big);
    assert_eq!(r.status, 413);
    assert!(result(&r).contains("larger than 2048"));
    // Too many events.
    let many: Vec<_> = (0..1001).map(|i| json!({"key": format!("e{i}")})).collect();
    let r = t.post(
        "/i",
        "application/json",
        &json!({"app_key": k.write, "device_id": "d", "events": many}).to_string(),
    );
    assert!(r.status == 400 || r.status == 413, "{}", r.status);
    // Metrics sent as JSON in a JSON body: not an object, or nested too deeply (which the
    // body's own depth rule catches first, the body being one level deeper).
    let deep: serde_json::Value =
        serde_json::from_str(&format!("{}1{}", "[".repeat(16), "]".repeat(16))).unwrap_or_default();
    for (metrics, msg) in [
        (json!([1]), "metrics JSON is not properly formed"),
        (json!({ "x": deep }), "Request body is nested too deeply"),
    ] {
        let body =
            json!({"app_key": k.write, "device_id": "d", "begin_session": 1, "metrics": metrics});
        let r = t.post("/i", "application/json", &body.to_string());
        assert_eq!((r.status, result(&r).as_str()), (400, msg), "{body}");
    }
    // Nothing of any of that was written.
    assert_eq!(t.key_count(), before);
    // The all-zero IDFA is acknowledged but ignored.
    let r = t.i(
        &k,
        &[
            p("device_id", "00000000-0000-0000-0000-000000000000"),
            p("begin_session", 1),
        ],
    );
    assert_eq!((r.status, result(&r).as_str()), (200, "Ignoring device_id"));
    assert_eq!(t.key_count(), before);
}

#[test]
fn read_errors() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let r = t.get("/o");
    assert_eq!(
        (r.status, result(&r).as_str()),
        (400, "Missing parameter \"app_id\"")
    );
    let r = t.get(&format!(
        "/o?app_key={}&api_key={}&method=nope",
        k.write, k.read
    ));
    assert_eq!((r.status, result(&r).as_str()), (400, "Invalid method"));
    let r = t.get(&format!(
        "/o?app_id=short&api_key={}&method=sessions",
        k.read
    ));
    assert_eq!(
        (r.status, result(&r).as_str()),
        (400, "Invalid parameter \"app_id\"")
    );
    let r = t.get(&format!(
        "/o?app_id={}&api_key={}&method=sessions",
        "a".repeat(24),
        k.read
    ));
    assert_eq!(r.status, 401);
    // An empty app reads as {} for every metric method, and get_events as the limits.
    for m in [
        "sessions",
        "users",
        "locations",
        "devices",
        "carriers",
        "device_details",
        "app_versions",
        "events",
    ] {
        assert_eq!(t.o(&k, m, &[]), json!({}), "{m}");
    }
    assert_eq!(
        t.o(&k, "get_events", &[]),
        json!({"limits": {"event_limit": 500, "event_segmentation_limit": 100, "event_segmentation_value_limit": 1000}})
    );
    assert_eq!(t.o(&k, "top_events", &[]), json!(false));
}

#[test]
fn admin_and_protocol_errors() {
    let t = TestApp::spawn();
    let create =
        |body: serde_json::Value| t.post("/project/create", "application/json", &body.to_string());
    assert_eq!(
        create(json!({"name": "x", "lock_key": "wrong"})).status,
        403
    );
    assert_eq!(create(json!({"name": "x"})).status, 403);
    let r = create(json!({"name": "x", "timezone": "Mars/Base", "lock_key": "test-admin-key"}));
    assert_eq!(r.status, 400);
    assert!(result(&r).contains("timezone"));
    assert_eq!(
        create(json!({"name": "", "lock_key": "test-admin-key"})).status,
        400
    );
    assert_eq!(
        t.post("/project/create", "application/json", "{nope")
            .status,
        400
    );
    // No admin key configured: nobody can create apps.
    let locked = TestApp::spawn_with(|c| c.admin_key = None);
    let r = locked.post(
        "/project/create",
        "application/json",
        &json!({"name": "x", "lock_key": ""}).to_string(),
    );
    assert_eq!(r.status, 403);
    // Unknown routes: JSON 404; preflights: 200 with CORS.
    let r = t.get("/nope");
    assert_eq!((r.status, result(&r).as_str()), (404, "Not found"));
    let r = http(
        &t.addr,
        "OPTIONS",
        "/i",
        &[("Origin", "https://x.example")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(t.get("/ping").body, "pong");
    assert_eq!(t.get("/ready").status, 200);
    assert_eq!(
        t.post("/o/sdk", "application/x-www-form-urlencoded", "method=sc")
            .body,
        "{}"
    );
}

#[test]
fn checksums_when_the_app_has_a_salt() {
    use sha2::Digest;
    let t = TestApp::spawn();
    let k =
        t.create_app_with(json!({"name": "salty", "timezone": "UTC", "salt": "sodiumchloride"}));
    let payload = format!("app_key={}&device_id=D", k.write);
    let sha1 = |s: &str| tally_model::keys::hex(&sha1::Sha1::digest(s.as_bytes())).to_uppercase();
    let sha256 = |s: &str| tally_model::keys::hex(&sha2::Sha256::digest(s.as_bytes()));
    let r = t.get(&format!("/i?{payload}"));
    assert_eq!(
        (r.status, result(&r).as_str()),
        (400, "Request does not have checksum")
    );
    let r = t.get(&format!(
        "/i?{payload}&checksum={}",
        sha1(&format!("{payload}saltyfish"))
    ));
    assert_eq!(
        (r.status, result(&r).as_str()),
        (400, "Request does not match checksum")
    );
    let r = t.get(&format!(
        "/i?{payload}&checksum={}",
        sha1(&format!("{payload}sodiumchloride"))
    ));
    assert_eq!((r.status, result(&r).as_str()), (200, "Success"));
    let body = format!(
        "{payload}&checksum256={}",
        sha256(&format!("{payload}sodiumchloride"))
    );
    let r = t.post("/i", "application/x-www-form-urlencoded", &body);
    assert_eq!(
        (r.status, result(&r).as_str()),
        (200, "Success"),
        "{}",
        r.body
    );
}

/// Rakam's admin routes answer what is true of Tally, and each Rakam route Tally does not
/// serve answers 501 with a JSON reason, not a bare 404.
#[test]
fn rakam_admin_and_routes_not_served() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let r = http(
        &t.addr,
        "GET",
        "/admin/types",
        &[("master_key", &k.master)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ARRAY_LONG"], json!("array of long"));
    assert_eq!(r.json().as_object().map(|o| o.len()), Some(30));
    let r = http(
        &t.addr,
        "GET",
        "/admin/types",
        &[("read_key", &k.read)],
        b"",
    );
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (403, json!(403))
    );
    for path in ["/admin/configurations", "/admin/event_mappers"] {
        let r = http(&t.addr, "GET", path, &[("master_key", &k.master)], b"");
        assert_eq!((r.status, r.body.as_str()), (200, "[]"), "{path}");
    }
    let lock = |key: &str| {
        let body = json!({"lock_key": key}).to_string();
        http(&t.addr, "POST", "/admin/lock_key", &[], body.as_bytes()).body
    };
    assert_eq!(
        (lock("test-admin-key").as_str(), lock("nope").as_str()),
        ("true", "false")
    );
    for (path, why) in [
        ("/funnel/analyze", "funnels are not built yet"),
        (
            "/user/action/email/single",
            "out of scope: Tally sends no email",
        ),
        (
            "/continuous-query/create",
            "continuous queries are not built yet",
        ),
    ] {
        let r = http(&t.addr, "POST", path, &[("read_key", &k.read)], b"{}");
        assert_eq!(r.status, 501, "{path}");
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.starts_with(&format!("{path}: {why}")), "{path}: {msg}");
    }
}
