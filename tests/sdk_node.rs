//! The real `countly-sdk-nodejs` (from npm, pinned in tests/sdk/package.json) against a
//! running Tally: a scripted session with events from two devices, then exact totals.

mod common;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

#[test]
fn node_sdk_sessions_and_events_are_counted_exactly() {
    if let Err(why) = js_ready(&["countly-sdk-nodejs"], false) {
        // CI installs node and the SDK (deploy/test); a bare `cargo test` may not have them.
        eprintln!("SKIPPED node_sdk test: {why}");
        return;
    }
    let (t, now_ms) = spawn_on_wall_clock();
    let k = t.create_app("UTC");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/node_scenario.js");
    for device in ["sdk-device-a", "sdk-device-b"] {
        let storage = temp_dir("sdk");
        std::fs::create_dir_all(&storage).ok();
        let out = Command::new("node")
            .arg(&script)
            .arg(format!("http://{}", t.addr))
            .arg(&k.write)
            .arg(device)
            .arg(&storage)
            .output()
            .expect("run node");
        assert!(
            out.status.success(),
            "node scenario failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let year = chrono::Datelike::year(&tally_model::time::local_date(
        now_ms / 1000,
        chrono_tz::UTC,
    ))
    .to_string();
    let s = t.o(&k, "sessions", &[p("period", "60days")]);
    let y = |f: &str| at(&s, &[year.as_str(), f]).clone();
    assert_eq!(
        (y("t"), y("n"), y("u")),
        (json!(2), json!(2), json!(2)),
        "{s}"
    );
    assert_eq!(y("d"), json!(60));
    assert_eq!(y("ds"), json!({"1": 2}));
    // begin_session, the events, end_session: three requests per device.
    assert_eq!(y("e"), json!(6));
    let details = t.o(&k, "device_details", &[p("period", "60days")]);
    assert_eq!(
        at(&details, &[year.as_str(), "Linux"]),
        &json!({"t": 2, "n": 2, "u": 2})
    );
    assert_eq!(details["meta"]["app_versions"], json!(["2:1"]));
    let purchase = t.o(
        &k,
        "events",
        &[p("event", "purchase"), p("period", "60days")],
    );
    assert_eq!(
        (
            at(&purchase, &[year.as_str(), "c"]),
            at(&purchase, &[year.as_str(), "s"])
        ),
        (&json!(4), &json!(19.96))
    );
    let by_plan = t.o(
        &k,
        "events",
        &[
            p("event", "purchase"),
            p("segmentation", "plan"),
            p("period", "60days"),
        ],
    );
    assert_eq!(at(&by_plan, &[year.as_str(), "pro", "c"]), &json!(4));
    let level = t.o(&k, "events", &[p("event", "level"), p("period", "60days")]);
    assert_eq!(
        (
            at(&level, &[year.as_str(), "c"]),
            at(&level, &[year.as_str(), "dur"])
        ),
        (&json!(2), &json!(8))
    );
    // In the order the SDK first sent them.
    assert_eq!(
        t.o(&k, "get_events", &[])["list"],
        json!(["purchase", "level"])
    );
}

/// The real SDK's `change_id(id, true)`: the known user takes over the anonymous device's
/// history (Countly's app_users merge): one user, not two; its profile with the details
/// sent before the change; the anonymous id forgotten.
#[test]
fn node_sdk_change_id_with_merge_keeps_one_user_and_its_profile() {
    if let Err(why) = js_ready(&["countly-sdk-nodejs"], false) {
        eprintln!("SKIPPED node_sdk test: {why}");
        return;
    }
    let (t, now_ms) = spawn_on_wall_clock();
    let k = t.create_app("UTC");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/node_change_id.js");
    let storage = temp_dir("sdk-change");
    std::fs::create_dir_all(&storage).ok();
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", t.addr))
        .arg(&k.write)
        .arg("anon-7f3a")
        .arg("user-42")
        .arg(&storage)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "node scenario failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let today = tally_model::time::local_date(now_ms / 1000, chrono_tz::UTC);
    let (y, m, d) = (
        chrono::Datelike::year(&today).to_string(),
        chrono::Datelike::month(&today).to_string(),
        chrono::Datelike::day(&today).to_string(),
    );
    let s = t.o(&k, "sessions", &[p("period", "hour")]);
    // One user, new once, unique once. The known user's begin comes within 15 s of the
    // anonymous session's end, which it took over: the session goes on (Countly's cooldown
    // on the merged user), 5 + 7 seconds long.
    assert_eq!(at(&s, &[&y, &m, &d, "t"]), &json!(1), "{s}");
    assert_eq!(at(&s, &[&y, &m, &d, "d"]), &json!(12), "{s}");
    assert_eq!(at(&s, &[&y, &m, &d, "n"]), &json!(1), "{s}");
    assert_eq!(at(&s, &[&y, &m, &d, "u"]), &json!(1), "{s}");
    assert_eq!(
        t.o(&k, "total_users", &[p("period", "hour")]),
        json!([{"_id": "users", "u": 1}])
    );
    let get = |user: &str| {
        http(
            &t.addr,
            "POST",
            "/user/get",
            &[("read_key", &k.read), ("Content-Type", "application/json")],
            json!({"user": user}).to_string().as_bytes(),
        )
    };
    let r = get("user-42");
    assert_eq!(r.status, 200, "{}", r.body);
    let props = &r.json()["properties"];
    assert_eq!(props["name"], json!("Ada Lovelace"), "{props}");
    assert_eq!(props["byear"], json!(1815), "{props}");
    assert_eq!(props["plan"], json!("pro"), "{props}");
    assert_eq!(props["logins"], json!(2), "{props}");
    assert_eq!(props["tags"], json!(["early"]), "{props}");
    assert_eq!(get("anon-7f3a").status, 404);
}
