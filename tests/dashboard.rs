//! The dashboard in a real browser: headless Chromium (Debian's) driven by playwright-core
//! (tests/sdk/dashboard.js) against a running Tally with seeded data. The numbers the page
//! shows must equal what `/o` answers; screenshots go to the test's output directory.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Sum of `field` over the day nodes of `days` (Y, M, D) in `v`.
fn day_sum(v: &Value, days: &[(i32, u32, u32)], field: &str) -> i64 {
    days.iter()
        .map(|(y, m, d)| {
            at(v, &[&y.to_string(), &m.to_string(), &d.to_string(), field])
                .as_i64()
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn dashboard_shows_what_the_api_answers() {
    if let Err(why) = js_ready(&["playwright-core"], true) {
        eprintln!("SKIPPED dashboard test: {why}");
        return;
    }
    let t = TestApp::spawn_with(|c| c.aggregator.enabled = true);
    let k = t.create_app("Europe/Istanbul"); // NOW is 13:30 on 2024-10-22 there
    let empty = t.create_app("UTC");
    let sess = |dev: String, ts: i64, os: &str, cc: &str| {
        t.ok(&k, &[p("device_id", &dev), p("begin_session", 1), p("timestamp", ts), p("country_code", cc),
            p("metrics", json!({"_os": os, "_os_version": "14", "_app_version": "2.0", "_device": "Phone"}).to_string())]);
        t.ok(
            &k,
            &[
                p("device_id", &dev),
                p("end_session", 1),
                p("session_duration", 60),
                p("timestamp", ts + 60),
            ],
        );
    };
    for i in 0..8 {
        sess(
            format!("a{i}"),
            NOW - 600 - i * 300,
            if i % 2 == 0 { "Android" } else { "iOS" },
            if i < 5 { "TR" } else { "DE" },
        );
    }
    for i in 0..5 {
        sess(format!("b{i}"), NOW - DAY - i * 600, "Android", "TR");
    }
    for i in 0..3 {
        sess(format!("c{i}"), NOW - 3 * DAY, "iOS", "GB");
    }
    for i in 0..4 {
        sess(format!("d{i}"), NOW - 10 * DAY, "Android", "TR");
    }
    let event = |dev: &str, ts: i64, e: Value| {
        t.ok(
            &k,
            &[
                p("device_id", dev),
                p("timestamp", ts),
                p("events", e.to_string()),
            ],
        )
    };
    for (i, plan) in ["pro", "pro", "pro", "free", "free"].iter().enumerate() {
        event(
            &format!("a{i}"),
            NOW - 100 - i as i64,
            json!([{"key": "purchase", "count": 1, "sum": 9.99, "segmentation": {"plan": plan}}]),
        );
    }
    for i in 0..4 {
        event(
            &format!("a{i}"),
            NOW - 200 - i,
            json!([{"key": "level", "count": 2}]),
        );
    }
    event(
        "c0",
        NOW - 3 * DAY + 100,
        json!([{"key": "purchase", "count": 2, "sum": 5, "segmentation": {"plan": "free"}}]),
    );

    // Let the aggregator roll everything up before the page reads the live section.
    settle(&t.nodes(), &k.id);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out).ok();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/dashboard.js");
    let run = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", t.addr))
        .args([&k.write, &k.read, &empty.write, &empty.read])
        .arg(&out)
        .output()
        .expect("run node");
    assert!(
        run.status.success(),
        "dashboard script failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let shown: Value = serde_json::from_slice(&run.stdout).expect("the script prints JSON");
    eprintln!("screenshots in {}", out.display());

    // Today (Istanbul): the day node of `period=hour`.
    let today = [(2024, 10, 22)];
    let week: Vec<(i32, u32, u32)> = (16..=22).map(|d| (2024, 10, d)).collect();
    let s_today = t.o(&k, "sessions", &[p("period", "hour")]);
    let s_week = t.o(&k, "sessions", &[p("period", "7days")]);
    let d = &shown["today"];
    assert_eq!(d["state"], json!("content"), "{shown}");
    assert_eq!(
        d["visible"],
        json!(["content"]),
        "only the content is shown"
    );
    assert_eq!(d["sessions"], json!(day_sum(&s_today, &today, "t")));
    assert_eq!(d["sessions"], json!(8));
    assert_eq!(d["newUsers"], json!(day_sum(&s_today, &today, "n")));
    assert_eq!(d["unique"], json!(day_sum(&s_today, &today, "u")));
    assert_eq!(d["avg"], json!("1m 0s"));
    assert!(d["charts"].as_u64().unwrap_or(0) >= 3, "{d}");
    // Live: the last 30 minutes of the minute rollups, as /o?method=live answers.
    let live = t.o(&k, "live", &[]);
    assert_eq!(d["liveSessions"], live["sessions"]);
    assert_eq!(d["liveEvents"], live["events"]);
    // Sessions that began 10-25 minutes ago (a0..a3); 5 purchases and 4 x 2 levels.
    assert_eq!(
        (live["sessions"].clone(), live["events"].clone()),
        (json!(4), json!(13))
    );
    let purchase_today = t.o(&k, "events", &[p("event", "purchase"), p("period", "hour")]);
    // The first event key of get_events' list (the first seen) is selected.
    assert_eq!(
        d["event"],
        t.o(&k, "get_events", &[])["list"][0],
        "the first event key is selected"
    );
    let details = t.o(&k, "device_details", &[p("period", "hour")]);
    let os_rows: Vec<(String, i64)> = ["Android", "iOS"]
        .iter()
        .map(|os| {
            (
                os.to_string(),
                at(&details, &["2024", "10", "22", os, "t"])
                    .as_i64()
                    .unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(d["os"], json!(os_rows));
    assert_eq!(d["countries"], json!([["TR", 5], ["DE", 3]]));

    // Seven days: sums of the day nodes; the unique card is the busiest day.
    let w = &shown["week"];
    assert_eq!(w["sessions"], json!(day_sum(&s_week, &week, "t")));
    assert_eq!(w["sessions"], json!(16));
    assert_eq!(w["newUsers"], json!(day_sum(&s_week, &week, "n")));
    let busiest = week
        .iter()
        .map(|day| day_sum(&s_week, &[*day], "u"))
        .max()
        .unwrap_or(0);
    assert_eq!(w["unique"], json!(busiest));
    // The previous 7 days had the 4 sessions of the d devices: 16 vs 4 is +300%.
    assert_eq!(w["change"], json!("+300% vs previous period"));
    let level = t.o(&k, "events", &[p("event", "level"), p("period", "7days")]);
    assert_eq!(
        shown["weekLevel"]["eventCount"],
        json!(day_sum(&level, &week, "c"))
    );
    assert_eq!(shown["weekLevel"]["eventCount"], json!(8));
    let purchase = t.o(
        &k,
        "events",
        &[p("event", "purchase"), p("period", "7days")],
    );
    let plan = &shown["weekPlan"];
    assert_eq!(plan["eventCount"], json!(day_sum(&purchase, &week, "c")));
    assert_eq!(plan["eventSum"], json!(54.95));
    assert_eq!(plan["segments"], json!([["free", 4], ["pro", 3]]));
    assert_eq!(day_sum(&purchase_today, &today, "c"), 5);

    // The same through JSONP.
    assert_eq!(w["visible"], json!(["content"]));
    assert_eq!(shown["jsonp"]["sessions"], w["sessions"]);
    assert_eq!(shown["jsonp"]["eventCount"], w["eventCount"]);
    // Phone width: nothing wider than the screen.
    assert!(
        shown["phoneScroll"].as_u64().unwrap_or(9999) <= 390,
        "{}",
        shown["phoneScroll"]
    );
    // A wrong key shows the error state; an app without data the empty state.
    assert_eq!(shown["wrongKey"]["state"], json!("error"));
    assert!(shown["wrongKey"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("not right"));
    assert_eq!(shown["empty"]["state"], json!("empty"));
    assert!(shown["empty"]["curl"]
        .as_str()
        .unwrap_or("")
        .contains(&format!("/i?app_key={}", empty.write)));
    assert_eq!(shown["pageErrors"], json!([]));
    for f in [
        "dashboard-today.png",
        "dashboard-7days.png",
        "dashboard-dark.png",
        "dashboard-phone.png",
    ] {
        assert!(
            out.join(f)
                .metadata()
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "{f}"
        );
    }
}
