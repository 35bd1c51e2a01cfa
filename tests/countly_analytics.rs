//! Countly's `/o/analytics/*` (api/parts/data/fetch.js: fetchDashboard, fetchCountries,
//! fetchSessions, fetchMetric, fetchTops, fetchLoyalty/Frequency/Durations, fetchEvents)
//! and `method=all_apps`, over real HTTP and Redis: the figures agree with what `/o`
//! answers for the same data, with Countly's change, bar and label rules.

mod common;
use common::*;
use serde_json::{json, Value};

fn analytics(t: &TestApp, k: &Keys, action: &str, extra: &[(&'static str, String)]) -> Resp {
    let mut all = vec![("app_id", k.id.clone()), ("api_key", k.read.clone())];
    all.extend_from_slice(extra);
    t.get(&format!("/o/analytics/{action}?{}", qs(&all)))
}

fn ok(t: &TestApp, k: &Keys, action: &str, extra: &[(&'static str, String)]) -> Value {
    let r = analytics(t, k, action, extra);
    assert_eq!(r.status, 200, "{action}: {}", r.body);
    r.json()
}

/// Today (the 22nd, UTC) 3 devices begin; 10 days ago 1 device; 40 days ago 2.
fn seed(t: &TestApp, k: &Keys) {
    let begin = |d: &str, ts: i64, os: &str, carrier: &str, cc: &str, dur: i64| {
        t.ok(
            k,
            &[
                p("device_id", d),
                p("begin_session", 1),
                p("timestamp", ts),
                p("country_code", cc),
                p(
                    "metrics",
                    json!({"_os": os, "_os_version": "1", "_resolution": "1080x1920", "_carrier": carrier})
                        .to_string(),
                ),
            ],
        );
        t.ok(
            k,
            &[
                p("device_id", d),
                p("end_session", 1),
                p("session_duration", dur),
                p("timestamp", ts + dur),
                p(
                    "events",
                    json!([{"key": "buy", "count": 2, "sum": 3, "segmentation": {"plan": "pro"}}])
                        .to_string(),
                ),
            ],
        );
    };
    begin("a", NOW, "Android", "Vodafone", "TR", 60);
    begin("b", NOW + 60, "Android", "Turkcell", "TR", 120);
    begin("c", NOW + 120, "iOS", "Vodafone", "DE", 30);
    begin("d", NOW - 10 * DAY, "iOS", "Vodafone", "DE", 60);
    begin("e", NOW - 40 * DAY, "Android", "Vodafone", "US", 60);
    begin("f", NOW - 40 * DAY, "Android", "Vodafone", "US", 60);
}

#[test]
fn analytics_dashboard_agrees_with_the_counters() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + 3600) * 1000);
    let k = t.create_app("UTC");
    seed(&t, &k);
    let d = ok(&t, &k, "dashboard", &[]);
    let keys: Vec<&String> = d
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 3, "30days, 7days and today: {d}");
    let month = &d["30days"]["dashboard"];
    // 4 sessions in the last 30 days, 2 in the 30 before: +100%.
    assert_eq!(
        month["total_sessions"],
        json!({"total": 4, "change": "100%", "trend": "u"})
    );
    assert_eq!(
        month["new_users"],
        json!({"total": 4, "change": "100%", "trend": "u"})
    );
    assert_eq!(month["total_users"]["total"], json!(4));
    assert_eq!(month["total_users"]["is_estimate"], json!(true));
    // 270 s in all this period: 4.5 minutes.
    assert_eq!(month["total_time"]["total"], json!("4.5 min"));
    assert_eq!(month["avg_time"]["total"], json!("1.1 min"));
    let today = &d["today"];
    assert_eq!(today["dashboard"]["total_sessions"]["total"], json!(3));
    assert_eq!(
        today["dashboard"]["total_users"]["is_estimate"],
        json!(false)
    );
    assert_eq!(today["dashboard"]["total_sessions"]["change"], json!("NA"));
    assert_eq!(today["period"], json!("00:00 - 11:30"));
    assert_eq!(d["7days"]["period"], json!("16 Oct - 22 Oct"));
    // Bars: top three with their share of all.
    assert_eq!(
        d["30days"]["top"]["platforms"],
        json!([{"name": "Android", "value": 2, "percent": 50}, {"name": "iOS", "value": 2, "percent": 50}])
    );
    assert_eq!(
        d["30days"]["top"]["carriers"],
        json!([{"name": "Vodafone", "value": 3, "percent": 75}, {"name": "Turkcell", "value": 1, "percent": 25}])
    );
    assert_eq!(
        today["top"]["users"],
        json!([{"name": "10:00", "value": 3, "percent": 100}])
    );
    // Another period: one block under its own name.
    let y = ok(&t, &k, "dashboard", &[p("period", "month")]);
    assert_eq!(y["month"]["dashboard"]["total_sessions"]["total"], json!(6));
    assert_eq!(y["month"]["period"], json!("Jan - Oct"));
}

#[test]
fn analytics_series_metrics_tops_ranges_and_events() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + 3600) * 1000);
    let k = t.create_app("UTC");
    seed(&t, &k);
    let c = ok(&t, &k, "countries", &[]);
    assert_eq!(
        c["30days"],
        json!([
            {"country": "Germany", "code": "de", "t": 2, "u": 2, "n": 2},
            {"country": "Turkey", "code": "tr", "t": 2, "u": 2, "n": 2}
        ])
    );
    assert_eq!(c["today"].as_array().map(Vec::len), Some(2));
    let s = ok(&t, &k, "sessions", &[p("period", "7days")]);
    assert_eq!(s.as_array().map(Vec::len), Some(7));
    assert_eq!(
        s[6],
        json!({"_id": "2024-10-22", "t": 3, "n": 3, "u": 3, "d": 210, "e": 6})
    );
    let h = ok(&t, &k, "sessions", &[p("period", "hour")]);
    assert_eq!(h.as_array().map(Vec::len), Some(24));
    assert_eq!(h[10]["_id"], json!("2024-10-22 10:00"));
    assert_eq!(h[10]["t"], json!(3));
    let m = ok(
        &t,
        &k,
        "metric",
        &[p("metric", "os"), p("period", "30days")],
    );
    assert_eq!(
        m,
        json!([{"_id": "Android", "t": 2, "n": 2, "u": 2}, {"_id": "iOS", "t": 2, "n": 2, "u": 2}])
    );
    // Countly's quirk: the meta list is looked up by the metric's own name.
    assert_eq!(ok(&t, &k, "metric", &[p("metric", "platforms")]), json!([]));
    assert_eq!(analytics(&t, &k, "metric", &[]).status, 400);
    let tops = ok(&t, &k, "tops", &[]);
    for key in ["platforms", "resolutions", "carriers", "countries"] {
        assert!(tops[key].is_array(), "{key}: {tops}");
    }
    assert_eq!(tops["countries"][0]["name"], json!("Germany"));
    let f = ok(&t, &k, "frequency", &[]);
    assert_eq!(f, json!([{"f": "0", "t": 4, "percent": "100.0"}]));
    let ds = ok(&t, &k, "durations", &[]);
    let total: i64 = ds
        .as_array()
        .map(|a| a.iter().map(|r| r["t"].as_i64().unwrap_or(0)).sum())
        .unwrap_or(0);
    assert_eq!(total, 4, "{ds}");
    let e = ok(&t, &k, "events", &[p("event", "buy"), p("period", "7days")]);
    assert_eq!(e[6], json!({"_id": "2024-10-22", "c": 6, "s": 9, "dur": 0}));
    let seg = ok(
        &t,
        &k,
        "events",
        &[p("event", "buy"), p("segmentation", "plan")],
    );
    assert_eq!(seg, json!([{"_id": "pro", "c": 8, "s": 12, "dur": 0}]));
    let several = ok(&t, &k, "events", &[p("events", r#"["buy","nope"]"#)]);
    assert!(
        several["buy"].is_array() && several["nope"].is_array(),
        "{several}"
    );
    assert_eq!(analytics(&t, &k, "events", &[]).status, 400);
    let r = analytics(&t, &k, "nothing", &[]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Invalid path"), "{}", r.body);
    // The same auth as /o.
    let r = t.get(&format!("/o/analytics/dashboard?app_id={}", k.id));
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn all_apps_summarises_the_apps_a_key_reads() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + 3600) * 1000);
    let k = t.create_app("UTC");
    let other = t.create_app("UTC");
    seed(&t, &k);
    let mine = t.o(&k, "all_apps", &[]);
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine[0]["_id"], json!(k.id));
    assert_eq!(
        mine[0]["sessions"],
        json!({"total": 4, "change": "100%", "trend": "u"})
    );
    assert_eq!(
        mine[0]["charts"]["total-sessions"].as_array().map(Vec::len),
        Some(30)
    );
    assert_eq!(mine[0]["charts"]["total-sessions"][29], json!([29, 3]));
    // The admin key reads every app.
    let r = t.get(&format!(
        "/o?app_id={}&api_key=test-admin-key&method=all_apps",
        other.id
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json().as_array().map(Vec::len), Some(2));
}

/// `get_period_obj` through `/o` (Countly's api/lib/countly.common.js getPeriodObject),
/// `notes` (Tally keeps none: Countly's empty DataTables answer) and `geodata` (not
/// served: a clear 400).
#[test]
fn period_object_notes_and_geodata() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let o = t.o(&k, "get_period_obj", &[p("period", "7days")]);
    // NOW is 2024-10-22 (UTC): the 16th to the 22nd, against the 9th to the 15th.
    assert_eq!(o["currentPeriodArr"][0], json!("2024.10.16"));
    assert_eq!(o["previousPeriodArr"][6], json!("2024.10.15"));
    assert_eq!(o["daysInPeriod"], json!(7));
    assert_eq!(o["reqMonthDbDateIds"], json!(["2024:10"]));
    assert_eq!(o["periodContainsToday"], json!(true));
    // An unreadable period is 30 days, with 200.
    let odd = t.o(&k, "get_period_obj", &[p("period", "fortnight")]);
    assert_eq!(odd, t.o(&k, "get_period_obj", &[]));
    assert_eq!(odd["daysInPeriod"], json!(30));
    assert_eq!(
        t.o(&k, "notes", &[p("sEcho", "3")]),
        json!({"aaData": [], "iTotalDisplayRecords": 0, "iTotalRecords": 0, "sEcho": "3"})
    );
    let r = t.get(&format!(
        "/o?app_id={}&api_key={}&method=geodata",
        k.id, k.read
    ));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("geodata is not served"), "{}", r.body);
}
