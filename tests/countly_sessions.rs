//! Sessions, users, uniques, ranges and metrics through real HTTP and a real Redis.

mod common;
use common::*;
use serde_json::json;

fn metrics() -> String {
    json!({
        "_os": "Android", "_os_version": "4.4", "_device": "Nexus 5",
        "_resolution": "1080x1920", "_carrier": "vodafone", "_app_version": "1.2",
        "_ua": "ignored"
    })
    .to_string()
}

#[test]
fn first_session_with_metrics() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    t.ok(
        &k,
        &[
            p("device_id", "d1"),
            p("begin_session", 1),
            p("metrics", metrics()),
            p("timestamp", NOW),
        ],
    );

    let unknown = json!({"t": 1, "n": 1, "u": 1});
    let sessions = t.o(&k, "sessions", &[]);
    assert_eq!(
        sessions,
        json!({
            "2024": {
                "t": 1, "n": 1, "u": 1, "e": 1, "f": {"0": 1}, "l": {"0": 1}, "Unknown": unknown,
                "w43": {"u": 1, "f": {"0": 1}, "l": {"0": 1}, "Unknown": {"u": 1}},
                "10": {
                    "t": 1, "n": 1, "u": 1, "e": 1, "f": {"0": 1}, "l": {"0": 1}, "Unknown": unknown,
                    "22": {
                        "t": 1, "n": 1, "u": 1, "e": 1, "f": {"0": 1}, "l": {"0": 1}, "Unknown": unknown,
                        "10": {"t": 1, "n": 1, "u": 1, "e": 1}
                    }
                }
            },
            "meta": {"countries": ["Unknown"], "f-ranges": ["0"], "l-ranges": ["0"]}
        })
    );
    // users and locations are the same document, as in Countly.
    assert_eq!(t.o(&k, "users", &[]), sessions);
    assert_eq!(t.o(&k, "locations", &[]), sessions);

    let details = t.o(&k, "device_details", &[]);
    let one = json!({"t": 1, "n": 1, "u": 1});
    for v in ["Android", "a4:4", "1080x1920", "1:2"] {
        assert_eq!(at(&details, &["2024", v]), &one, "{v}");
        assert_eq!(at(&details, &["2024", "10", "22", v]), &one, "{v}");
        assert_eq!(at(&details, &["2024", "w43", v]), &json!({"u": 1}), "{v}");
    }
    assert_eq!(
        details["meta"],
        json!({"os": ["Android"], "os_versions": ["a4:4"], "resolutions": ["1080x1920"], "app_versions": ["1:2"]})
    );
    assert_eq!(t.o(&k, "app_versions", &[]), details);
    let devices = t.o(&k, "devices", &[]);
    assert_eq!(at(&devices, &["2024", "10", "22", "Nexus 5"]), &one);
    assert_eq!(devices["meta"], json!({"devices": ["Nexus 5"]}));
    let carriers = t.o(&k, "carriers", &[]);
    assert_eq!(at(&carriers, &["2024", "10", "Vodafone"]), &one);
    assert_eq!(carriers["meta"], json!({"carriers": ["Vodafone"]}));
}

/// Countly's own session test sequence (test/3.api.write/2.write.app.sessions.js).
#[test]
fn countly_session_vectors() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let d = || p("device_id", "1234567890");
    let y = |v: &serde_json::Value, f: &str| at(v, &["2024", f]).clone();

    // 1: a request without a session shows nothing yet.
    t.ok(&k, &[d()]);
    assert_eq!(t.o(&k, "sessions", &[]), json!({}));
    // 2: begin_session; the earlier request now counts in e.
    t.ok(&k, &[d(), p("begin_session", 1)]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(
        (y(&s, "u"), y(&s, "n"), y(&s, "t"), y(&s, "e")),
        (json!(1), json!(1), json!(1), json!(2))
    );
    assert_eq!(y(&s, "f"), json!({"0": 1}));
    assert_eq!(y(&s, "Unknown"), json!({"u": 1, "t": 1, "n": 1}));
    // 3: begin_session again closes the open session (0 s -> range 0).
    t.ok(&k, &[d(), p("begin_session", 1)]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(
        (y(&s, "u"), y(&s, "t"), y(&s, "e")),
        (json!(1), json!(2), json!(3))
    );
    assert_eq!(
        (y(&s, "f"), y(&s, "ds")),
        (json!({"0": 1, "1": 1}), json!({"0": 1}))
    );
    assert_eq!(s["meta"]["d-ranges"], json!(["0"]));
    // 4: a second device.
    t.ok(&k, &[p("device_id", "12345678902"), p("begin_session", 1)]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(
        (y(&s, "u"), y(&s, "n"), y(&s, "t"), y(&s, "e")),
        (json!(2), json!(2), json!(3), json!(4))
    );
    assert_eq!(y(&s, "f"), json!({"0": 2, "1": 1}));
    // 5: heartbeat.
    t.ok(&k, &[d(), p("session_duration", 30)]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!((y(&s, "e"), y(&s, "d")), (json!(5), json!(30)));
    // 6: end_session records the 30 s session in range 1 (11-30 s).
    t.ok(&k, &[d(), p("end_session", 1)]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(
        (y(&s, "e"), y(&s, "ds")),
        (json!(6), json!({"0": 1, "1": 1}))
    );
    // 7: another heartbeat.
    t.ok(&k, &[d(), p("session_duration", 30)]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!((y(&s, "e"), y(&s, "d")), (json!(7), json!(60)));
    // 8: a device that never had a session changes nothing visible.
    t.ok(&k, &[p("device_id", "A"), p("end_session", 1)]);
    assert_eq!(t.o(&k, "sessions", &[]), s);
}

#[test]
fn uniques_per_hour_day_week_month_year() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + 60 * DAY) * 1000);
    let k = t.create_app("UTC");
    // 2024-10-22 10:30, 11:30; 10-23 (same week 43); 10-28 (week 44); 11-02 (week 44, new month).
    for ts in [NOW, NOW + 3600, NOW + DAY, NOW + 6 * DAY, NOW + 11 * DAY] {
        t.ok(
            &k,
            &[
                p("device_id", "d1"),
                p("begin_session", 1),
                p("timestamp", ts),
            ],
        );
    }
    let s = t.o(&k, "sessions", &[]);
    let g = |path: &[&str]| at(&s, path).clone();
    assert_eq!(
        (g(&["2024", "t"]), g(&["2024", "u"]), g(&["2024", "n"])),
        (json!(5), json!(1), json!(1))
    );
    assert_eq!(
        (g(&["2024", "10", "t"]), g(&["2024", "10", "u"])),
        (json!(4), json!(1))
    );
    assert_eq!(
        (g(&["2024", "11", "t"]), g(&["2024", "11", "u"])),
        (json!(1), json!(1))
    );
    assert_eq!(
        (g(&["2024", "w43", "u"]), g(&["2024", "w44", "u"])),
        (json!(1), json!(1))
    );
    assert_eq!(
        (g(&["2024", "10", "22", "t"]), g(&["2024", "10", "22", "u"])),
        (json!(2), json!(1))
    );
    // Hours come with the last TALLY_HOURLY_DAYS (7) days of a period: not in this
    // year-long answer read in December, but in one that ends close to the 22nd.
    assert_eq!(g(&["2024", "10", "22", "10"]), json!(null));
    let range = format!("[{},{}]", (NOW - DAY) * 1000, (NOW + 5 * DAY) * 1000);
    let near = t.o(&k, "sessions", &[p("period", range)]);
    let h = |path: &[&str]| at(&near, path).clone();
    assert_eq!(
        (
            h(&["2024", "10", "22", "10", "u"]),
            h(&["2024", "10", "22", "11", "u"])
        ),
        (json!(1), json!(1))
    );
    for day in ["23", "28"] {
        assert_eq!(g(&["2024", "10", day, "u"]), json!(1), "{day}");
    }
    assert_eq!(g(&["2024", "11", "2", "u"]), json!(1));
    // Frequency: first session, then < 24 h, 24-48 h, 5 days (120-144 h), 5 days.
    assert_eq!(g(&["2024", "f"]), json!({"0": 1, "1": 2, "6": 2}));
    // Loyalty is counted where the session is unique: year, month, week, day.
    assert_eq!(g(&["2024", "l"]), json!({"0": 1}));
    assert_eq!(g(&["2024", "11", "l"]), json!({"2": 1}));

    // The next year is unique again.
    t.clock.set_ms((NOW + 80 * DAY) * 1000);
    t.ok(
        &k,
        &[
            p("device_id", "d1"),
            p("begin_session", 1),
            p("timestamp", NOW + 75 * DAY),
        ],
    );
    let s = t.o(&k, "sessions", &[p("period", "60days")]);
    assert_eq!(
        (at(&s, &["2025", "u"]), at(&s, &["2025", "n"])),
        (&json!(1), &json!(null))
    );
}

#[test]
fn out_of_order_sessions_count_each_bucket_once() {
    let t = TestApp::spawn();
    let base = NOW + 40 * DAY; // 2024-12-01 10:30
    t.clock.set_ms((base + DAY) * 1000);
    let k = t.create_app("UTC");
    let at_ts = |ts: i64| {
        t.ok(
            &k,
            &[
                p("device_id", "offline"),
                p("begin_session", 1),
                p("timestamp", ts),
            ],
        );
    };
    at_ts(base); // 12-01 10:30
    at_ts(base - 20 * DAY); // 11-11: new day and month, same year
    at_ts(base - 20 * DAY + 7200); // 11-11 12:30: new hour only
    at_ts(base - 20 * DAY + 60); // 11-11 10:31: nothing new
    at_ts(base - 30 * DAY); // 11-01: new day, same month (replayed after 11-11)
    at_ts(base - 3 * DAY); // 11-28
    let s = t.o(&k, "sessions", &[]);
    let g = |path: &[&str]| at(&s, path).clone();
    assert_eq!(
        (g(&["2024", "t"]), g(&["2024", "u"]), g(&["2024", "n"])),
        (json!(6), json!(1), json!(1))
    );
    assert_eq!(
        (g(&["2024", "11", "u"]), g(&["2024", "12", "u"])),
        (json!(1), json!(1))
    );
    assert_eq!(
        (g(&["2024", "11", "11", "t"]), g(&["2024", "11", "11", "u"])),
        (json!(3), json!(1))
    );
    // The hours of the 11th, from a period that ends there.
    let range = format!(
        "[{},{}]",
        (base - 21 * DAY) * 1000,
        (base - 20 * DAY) * 1000
    );
    let hours = t.o(&k, "sessions", &[p("period", range)]);
    let h = |path: &[&str]| at(&hours, path).clone();
    assert_eq!(
        (
            h(&["2024", "11", "11", "10", "u"]),
            h(&["2024", "11", "11", "12", "u"])
        ),
        (json!(1), json!(1))
    );
    assert_eq!(h(&["2024", "11", "11", "10", "t"]), json!(2));
    assert_eq!(
        (g(&["2024", "11", "1", "u"]), g(&["2024", "11", "28", "u"])),
        (json!(1), json!(1))
    );
    // The first session the server saw is the new user.
    assert_eq!(
        (g(&["2024", "12", "n"]), g(&["2024", "11", "n"])),
        (json!(1), json!(null))
    );
    // Weeks: 11-01 (w44), 11-11 (w46), 11-28 (w48), 12-01 (w48).
    for w in ["w44", "w46", "w48"] {
        assert_eq!(g(&["2024", w, "u"]), json!(1), "{w}");
    }
}

#[test]
fn dst_days_and_hours_in_the_app_timezone() {
    let t = TestApp::spawn();
    t.clock.set_ms(1_730_000_000_000); // 2024-10-27T03:33Z
    let k = t.create_app("Europe/Berlin");
    // Berlin leaves DST on 2024-10-27: 02:00-03:00 local happens twice.
    let sessions = [
        ("a", 1_729_981_800), // 10-26T22:30Z = 10-27 00:30 CEST
        ("b", 1_729_989_000), // 10-27T00:30Z = 02:30 CEST
        ("c", 1_729_992_600), // 10-27T01:30Z = 02:30 CET
        ("d", 1_729_978_200), // 10-26T21:30Z = 10-26 23:30 CEST
    ];
    for (dev, ts) in sessions {
        t.ok(
            &k,
            &[
                p("device_id", dev),
                p("begin_session", 1),
                p("timestamp", ts),
            ],
        );
    }
    let s = t.o(&k, "sessions", &[]);
    let g = |path: &[&str]| at(&s, path).clone();
    assert_eq!(g(&["2024", "10", "27", "t"]), json!(3));
    assert_eq!(g(&["2024", "10", "27", "0", "t"]), json!(1));
    assert_eq!(g(&["2024", "10", "27", "2", "t"]), json!(2));
    assert_eq!(g(&["2024", "10", "27", "2", "u"]), json!(2));
    assert_eq!(g(&["2024", "10", "26", "23", "t"]), json!(1));

    // Istanbul is UTC+3 all year: 21:30Z is already the next day.
    let k2 = t.create_app("Europe/Istanbul");
    t.ok(
        &k2,
        &[
            p("device_id", "x"),
            p("begin_session", 1),
            p("timestamp", 1_729_632_600),
        ],
    ); // 10-22T21:30Z
    let s = t.o(&k2, "sessions", &[]);
    assert_eq!(at(&s, &["2024", "10", "23", "0", "t"]), &json!(1));
}

#[test]
fn heartbeats_end_session_and_cooldown() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + DAY) * 1000);
    let k = t.create_app("UTC");
    let dev = || p("device_id", "hb");
    t.ok(&k, &[dev(), p("begin_session", 1), p("timestamp", NOW)]);
    t.ok(
        &k,
        &[dev(), p("session_duration", 30), p("timestamp", NOW + 30)],
    );
    t.ok(
        &k,
        &[
            dev(),
            p("session_duration", 20),
            p("end_session", 1),
            p("timestamp", NOW + 50),
        ],
    );
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(at(&s, &["2024", "10", "22", "10", "d"]), &json!(50));
    assert_eq!(at(&s, &["2024", "ds"]), &json!({"2": 1})); // 50 s: 31-60
                                                           // A new session 10 s after the end continues the old one: no new session, and the
                                                           // range is recorded again for the whole length when it ends.
    t.ok(
        &k,
        &[dev(), p("begin_session", 1), p("timestamp", NOW + 60)],
    );
    t.ok(
        &k,
        &[
            dev(),
            p("session_duration", 20),
            p("end_session", 1),
            p("timestamp", NOW + 80),
        ],
    );
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(at(&s, &["2024", "t"]), &json!(1));
    // The continuing begin adds nothing to `e` either (Countly's usage.js counts no part
    // of an extension): begin, heartbeat, end, end.
    assert_eq!(at(&s, &["2024", "e"]), &json!(4));
    assert_eq!(at(&s, &["2024", "d"]), &json!(70));
    assert_eq!(at(&s, &["2024", "ds"]), &json!({"3": 1})); // 70 s: 61-180
    assert_eq!(at(&s, &["2024", "w43", "ds"]), &json!({"3": 1}));
    // After the cooldown a begin_session is a new session.
    t.ok(
        &k,
        &[dev(), p("begin_session", 1), p("timestamp", NOW + 200)],
    );
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(at(&s, &["2024", "t"]), &json!(2));
    // The cooldown is strict: a begin 14 s after an end continues, one 15 s after is new.
    let end_at = |ts: i64| t.ok(&k, &[dev(), p("end_session", 1), p("timestamp", ts)]);
    end_at(NOW + 210);
    t.ok(
        &k,
        &[dev(), p("begin_session", 1), p("timestamp", NOW + 224)],
    );
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "t"]), &json!(2));
    end_at(NOW + 230);
    t.ok(
        &k,
        &[dev(), p("begin_session", 1), p("timestamp", NOW + 245)],
    );
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "t"]), &json!(3));
    // Durations are capped (86400 by default) and non-positive ones ignored.
    t.ok(
        &k,
        &[
            dev(),
            p("session_duration", 999_999),
            p("timestamp", NOW + 300),
        ],
    );
    t.ok(
        &k,
        &[dev(), p("session_duration", -5), p("timestamp", NOW + 301)],
    );
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(at(&s, &["2024", "d"]), &json!(70 + 86_400));
}

#[test]
fn metric_uniques_and_changed_values() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + DAY) * 1000);
    let k = t.create_app("UTC");
    let m = |v: &str| json!({"_app_version": v}).to_string();
    t.ok(
        &k,
        &[
            p("device_id", "u1"),
            p("begin_session", 1),
            p("metrics", m("1.0")),
            p("timestamp", NOW),
        ],
    );
    t.ok(
        &k,
        &[
            p("device_id", "u1"),
            p("begin_session", 1),
            p("metrics", m("1.0")),
            p("timestamp", NOW + 100),
        ],
    );
    // An upgrade the same day: the new version counts the device as unique.
    t.ok(
        &k,
        &[
            p("device_id", "u1"),
            p("begin_session", 1),
            p("metrics", m("1.1")),
            p("timestamp", NOW + 200),
        ],
    );
    let v = t.o(&k, "app_versions", &[]);
    assert_eq!(
        at(&v, &["2024", "10", "22", "1:0"]),
        &json!({"t": 2, "n": 1, "u": 1})
    );
    assert_eq!(
        at(&v, &["2024", "10", "22", "1:1"]),
        &json!({"t": 1, "u": 1})
    );
    assert_eq!(v["meta"]["app_versions"], json!(["1:0", "1:1"]));
    // Metrics without begin_session are not counted (the web SDK sends _ua everywhere).
    t.ok(&k, &[p("device_id", "u2"), p("metrics", m("9.9"))]);
    assert_eq!(
        t.o(&k, "app_versions", &[])["meta"]["app_versions"],
        json!(["1:0", "1:1"])
    );
    // ...but they update the device's values, as Countly keeps them from every request
    // that carries metrics: after 1.2 arrives between sessions, a begin with 1.2 is no
    // change, so the device, unique today already, is not unique under 1.2 again.
    t.ok(
        &k,
        &[
            p("device_id", "u1"),
            p("metrics", m("1.2")),
            p("timestamp", NOW + 300),
        ],
    );
    t.ok(
        &k,
        &[
            p("device_id", "u1"),
            p("begin_session", 1),
            p("metrics", m("1.2")),
            p("timestamp", NOW + 400),
        ],
    );
    let v = t.o(&k, "app_versions", &[]);
    assert_eq!(
        at(&v, &["2024", "10", "22", "1:2"]),
        &json!({"t": 1}),
        "{v}"
    );
    // Country from country_code, uppercased.
    t.ok(
        &k,
        &[
            p("device_id", "u3"),
            p("begin_session", 1),
            p("country_code", "tr"),
        ],
    );
    let s = t.o(&k, "locations", &[]);
    assert_eq!(at(&s, &["2024", "TR"]), &json!({"t": 1, "n": 1, "u": 1}));
    assert_eq!(s["meta"]["countries"], json!(["TR", "Unknown"]));
}

#[test]
fn periods_and_refresh() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    t.ok(
        &k,
        &[
            p("device_id", "p1"),
            p("begin_session", 1),
            p("timestamp", NOW - 60 * DAY),
        ],
    ); // 08-23
    t.ok(
        &k,
        &[
            p("device_id", "p1"),
            p("begin_session", 1),
            p("timestamp", NOW - DAY),
        ],
    ); // 10-21
    t.ok(
        &k,
        &[
            p("device_id", "p1"),
            p("begin_session", 1),
            p("timestamp", NOW),
        ],
    ); // 10-22
    let year = t.o(&k, "sessions", &[p("period", "month")]);
    assert_eq!(at(&year, &["2024", "8", "23", "t"]), &json!(1));
    assert_eq!(at(&year, &["2024", "10", "21", "t"]), &json!(1));
    let week = t.o(&k, "sessions", &[p("period", "7days")]);
    assert_eq!(at(&week, &["2024", "8", "23"]), &json!(null)); // that month is not loaded
                                                               // As in Countly, totals are summed from the loaded days; uniques are stored and answered.
    assert_eq!(at(&week, &["2024", "8", "t"]), &json!(null));
    assert_eq!(at(&week, &["2024", "8", "u"]), &json!(1));
    assert_eq!(at(&week, &["2024", "t"]), &json!(2));
    assert_eq!(at(&year, &["2024", "t"]), &json!(3));
    assert_eq!(at(&year, &["2024", "8", "t"]), &json!(1));
    assert_eq!(at(&week, &["2024", "10", "22", "t"]), &json!(1));
    let range = format!("[{},{}]", (NOW - 61 * DAY) * 1000, (NOW - 59 * DAY) * 1000);
    let r = t.o(&k, "sessions", &[p("period", range)]);
    assert_eq!(at(&r, &["2024", "8", "23", "t"]), &json!(1));
    assert_eq!(at(&r, &["2024", "10", "22"]), &json!(null));
    // refresh: today only, with the year's and month's u, f, ds and l and no country's u
    // (Countly's fetch.js fetchTimeObj, refresh branch).
    let today = t.o(&k, "sessions", &[p("action", "refresh")]);
    assert_eq!(
        today,
        json!({
            "2024": {
                "u": 1, "f": {"0": 1, "2": 1, "11": 1}, "ds": {"0": 2}, "l": {"0": 1},
                "10": {
                    "u": 1, "f": {"2": 1, "11": 1}, "ds": {"0": 2}, "l": {"1": 1},
                    "22": {
                        "t": 1, "u": 1, "e": 1, "f": {"2": 1}, "l": {"2": 1},
                        "Unknown": {"t": 1, "u": 1},
                        // the session of the 21st was still open: it is closed with 0 s
                        "ds": {"0": 1},
                        "10": {"t": 1, "u": 1, "e": 1}
                    }
                }
            },
            "meta": {
                "countries": ["Unknown"], "d-ranges": ["0"],
                "f-ranges": ["0", "2", "11"], "l-ranges": ["0", "1", "2"]
            }
        }),
        "{today}"
    );
    // For a metric method, refresh is today's values and the meta lists only.
    let devices = t.o(&k, "devices", &[p("action", "refresh")]);
    assert!(
        devices.get("2024").and_then(|y| y.get("u")).is_none(),
        "{devices}"
    );
    // An unknown period reads as 30days, as Countly answers it (200).
    let odd = t.o(&k, "sessions", &[p("period", "fortnight")]);
    assert_eq!(odd, t.o(&k, "sessions", &[p("period", "30days")]));
    assert_eq!(odd, t.o(&k, "sessions", &[]));
}

#[test]
fn country_from_the_client_ip_with_a_geoip_database() {
    let dir = temp_dir("geo");
    std::fs::create_dir_all(&dir).ok();
    let db = dir.join("country.mmdb");
    common::mmdb::write(
        &db,
        &[
            (
                "78.160.0.0"
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
                11,
                "TR",
            ),
            (
                "81.2.69.0".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST),
                24,
                "GB",
            ),
        ],
    );
    let t = TestApp::spawn_with(|c| c.geoip_db = Some(db.clone()));
    let k = t.create_app("UTC");
    t.ok(
        &k,
        &[
            p("device_id", "g1"),
            p("begin_session", 1),
            p("ip_address", "78.161.2.3"),
        ],
    );
    let fwd = format!(
        "/i?{}",
        qs(&[
            p("app_key", &k.write),
            p("device_id", "g2"),
            p("begin_session", 1)
        ])
    );
    let r = http(
        &t.addr,
        "GET",
        &fwd,
        &[("X-Forwarded-For", "81.2.69.160, 10.0.0.1")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // country_code wins over the IP; an unknown IP (here: loopback) is Unknown.
    t.ok(
        &k,
        &[
            p("device_id", "g3"),
            p("begin_session", 1),
            p("ip_address", "78.161.2.3"),
            p("country_code", "DE"),
        ],
    );
    t.ok(&k, &[p("device_id", "g4"), p("begin_session", 1)]);
    let s = t.o(&k, "locations", &[]);
    assert_eq!(s["meta"]["countries"], json!(["DE", "GB", "TR", "Unknown"]));
    for cc in ["TR", "GB", "DE", "Unknown"] {
        assert_eq!(at(&s, &["2024", cc, "u"]), &json!(1), "{cc}");
    }
    // A database that cannot be read stops start-up with a clear error.
    let bad = dir.join("missing.mmdb");
    let mut cfg = tally_config::Config::for_tests(&t.redis.url());
    cfg.geoip_db = Some(bad);
    let err = tally::start(
        &cfg,
        &t.redis.url(),
        std::sync::Arc::new(tally_service::clock::SystemClock),
    )
    .err();
    assert!(err
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("GeoIP"));
}

/// Countly's total_users (api/parts/data/fetch.js getTotalUsersObjWithOptions): devices
/// whose last session is in the period, only for a period that contains today, in all or
/// grouped by a metric's value; `[]` when none.
#[test]
fn total_users_count_devices_by_their_last_session() {
    let t = TestApp::spawn_with(|c| c.limits.total_users_scan = 3);
    t.clock.set_ms((NOW + 60) * 1000);
    let k = t.create_app("UTC");
    let begin = |device: &str, ts: i64, os: &str, version: &str| {
        t.ok(
            &k,
            &[
                p("device_id", device),
                p("begin_session", 1),
                p("timestamp", ts),
                p(
                    "metrics",
                    json!({"_os": os, "_app_version": version}).to_string(),
                ),
                p("country_code", "tr"),
            ],
        )
    };
    begin("a", NOW, "Android", "2");
    begin("b", NOW - 2 * DAY, "iOS", "2");
    begin("c", NOW - 20 * DAY, "Android", "1.5");
    let total = |extra: &[(&'static str, String)]| t.o(&k, "total_users", extra);
    assert_eq!(
        total(&[p("period", "7days")]),
        json!([{"_id": "users", "u": 2}])
    );
    assert_eq!(
        total(&[]),
        json!([{"_id": "users", "u": 3}]),
        "30days by default"
    );
    assert_eq!(
        total(&[p("period", "hour")]),
        json!([{"_id": "users", "u": 1}])
    );
    assert_eq!(
        total(&[p("period", "yesterday")]),
        json!([]),
        "not containing today"
    );
    assert_eq!(
        total(&[p("period", "30days"), p("metric", "os")]),
        json!([{"_id": "Android", "u": 2}, {"_id": "iOS", "u": 1}])
    );
    assert_eq!(
        total(&[p("period", "7days"), p("metric", "app_versions")]),
        json!([{"_id": "2:0", "u": 2}])
    );
    assert_eq!(
        total(&[p("metric", "countries")]),
        json!([{"_id": "TR", "u": 3}])
    );
    // A device's later session moves it out of earlier periods' counts only if the
    // period does not reach it: "c" comes back today.
    begin("c", NOW + 30, "Android", "1.5");
    assert_eq!(
        total(&[p("period", "hour")]),
        json!([{"_id": "users", "u": 2}])
    );
    // More devices than TALLY_TOTAL_USERS_SCAN: a 400 that says so.
    begin("d", NOW, "Android", "2");
    let r = t.get(&format!(
        "/o?app_id={}&api_key={}&method=total_users",
        k.id, k.read
    ));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("TALLY_TOTAL_USERS_SCAN"), "{}", r.body);
}

/// Countly's `cities` (its usage.js records a user's city at a session start): from the
/// `city` parameter, or from a GeoIP City database; read back by `method=cities` and
/// `total_users&metric=cities`. `countries` answers as `locations` (Countly's own
/// `countries` collection is no longer written).
#[test]
fn cities_from_the_city_parameter_and_a_city_database() {
    let dir = temp_dir("geo-city");
    std::fs::create_dir_all(&dir).ok();
    let db = dir.join("city.mmdb");
    let net = "78.160.0.0"
        .parse()
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    common::mmdb::write_places(&db, &[(net, 11, "TR", Some("Istanbul"))]);
    let t = TestApp::spawn_with(|c| c.geoip_db = Some(db.clone()));
    let k = t.create_app("UTC");
    let begin = |device: &str, extra: &[(&'static str, String)]| {
        let mut pairs = vec![p("device_id", device), p("begin_session", 1)];
        pairs.extend_from_slice(extra);
        t.ok(&k, &pairs);
    };
    begin("a", &[p("city", "Ankara"), p("country_code", "TR")]);
    begin("b", &[p("ip_address", "78.161.2.3")]);
    begin("c", &[p("ip_address", "10.0.0.1")]);
    begin("d", &[p("city", "St. Petersburg")]);
    let cities = t.o(&k, "cities", &[]);
    assert_eq!(
        at(&cities, &["2024", "10", "22", "Ankara"]),
        &json!({"t": 1, "n": 1, "u": 1})
    );
    assert_eq!(
        at(&cities, &["2024", "10", "22", "Istanbul"]),
        &json!({"t": 1, "n": 1, "u": 1})
    );
    assert_eq!(
        cities["meta"]["cities"],
        json!(["Ankara", "Istanbul", "St: Petersburg"])
    );
    let locations = t.o(&k, "locations", &[]);
    assert_eq!(at(&locations, &["2024", "TR", "u"]), &json!(2));
    assert_eq!(t.o(&k, "countries", &[]), locations);
    assert_eq!(
        t.o(&k, "total_users", &[p("metric", "cities")]),
        json!([{"_id": "Ankara", "u": 1}, {"_id": "Istanbul", "u": 1}, {"_id": "St: Petersburg", "u": 1}, {"_id": null, "u": 1}])
    );
    let r = t.i(
        &k,
        &[
            p("device_id", "e"),
            p("begin_session", 1),
            p("city", "x".repeat(5000)),
        ],
    );
    assert_eq!(r.status, 400, "{}", r.body);
}

/// Countly's `old_device_id` (its app_users merge): the new id inherits the old one's
/// first session, activity and session, so it is no new user and is not unique again
/// where the old id was; the old id is forgotten; a retried or repeated merge changes
/// nothing more; in a bulk too. Without `old_device_id` a new id is a new device.
#[test]
fn device_id_change_with_merge_counts_one_user() {
    let t = TestApp::spawn();
    t.clock.set_ms((NOW + DAY) * 1000);
    let k = t.create_app("UTC");
    let i = |pairs: &[(&'static str, String)]| t.ok(&k, pairs);
    i(&[
        p("device_id", "anon"),
        p("begin_session", 1),
        p("timestamp", NOW - DAY),
    ]);
    i(&[
        p("device_id", "anon"),
        p("end_session", 1),
        p("session_duration", 30),
        p("timestamp", NOW - DAY + 30),
    ]);
    // The SDK's merge request: old_device_id, the new id, nothing else.
    let merge = [
        p("device_id", "user-1"),
        p("old_device_id", "anon"),
        p("timestamp", NOW),
    ];
    i(&merge);
    // A retry of it is recognised; a new merge from the gone id changes nothing.
    let r = t.i(&k, &merge);
    assert_eq!(
        r.json()["info"],
        json!("Request ignored: Duplicate request"),
        "{}",
        r.body
    );
    i(&[
        p("device_id", "user-1"),
        p("old_device_id", "anon"),
        p("timestamp", NOW + 1),
    ]);
    // The known user's sessions: the 22nd is a new day (unique), October is not.
    i(&[
        p("device_id", "user-1"),
        p("begin_session", 1),
        p("timestamp", NOW + 60),
    ]);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(at(&s, &["2024", "n"]), &json!(1), "one new user: {s}");
    assert_eq!(at(&s, &["2024", "t"]), &json!(2), "{s}");
    assert_eq!(
        at(&s, &["2024", "10", "u"]),
        &json!(1),
        "unique once in the month: {s}"
    );
    assert_eq!(at(&s, &["2024", "10", "22", "u"]), &json!(1), "{s}");
    assert_eq!(at(&s, &["2024", "10", "21", "u"]), &json!(1), "{s}");
    // Frequency: the known user's second session, a day after the first (24-48 h).
    assert_eq!(at(&s, &["2024", "10", "22", "f"]), &json!({"2": 1}), "{s}");
    // The old id is gone: it comes back as a new device.
    i(&[
        p("device_id", "anon"),
        p("begin_session", 1),
        p("timestamp", NOW + 120),
    ]);
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "n"]), &json!(2));
    // Without merge, a changed id is a new device.
    i(&[
        p("device_id", "user-2"),
        p("begin_session", 1),
        p("timestamp", NOW + 180),
    ]);
    assert_eq!(at(&t.o(&k, "sessions", &[]), &["2024", "n"]), &json!(3));
    // In a bulk: a merge and the merged device's session, counted once.
    let bulk = json!([
        {"device_id": "b-old", "begin_session": 1, "timestamp": NOW - DAY},
        {"device_id": "b-new", "old_device_id": "b-old", "timestamp": NOW},
        {"device_id": "b-new", "old_device_id": "b-old", "timestamp": NOW + 1},
        {"device_id": "b-new", "begin_session": 1, "timestamp": NOW + 60}
    ]);
    let r = t.post(
        "/i/bulk",
        "application/x-www-form-urlencoded",
        &format!("app_key={}&requests={}", k.write, enc(&bulk.to_string())),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let s = t.o(&k, "sessions", &[]);
    assert_eq!(at(&s, &["2024", "n"]), &json!(4), "{s}");
    assert_eq!(at(&s, &["2024", "10", "u"]), &json!(4), "{s}");
    assert_eq!(
        t.o(&k, "total_users", &[p("period", "30days")]),
        json!([{"_id": "users", "u": 4}])
    );
}

/// Countly's `consent` (its compliance hub): each device's consent per feature is kept,
/// changes are counted by day (given `i`, taken back `o`, per feature too), the same
/// consent sent again counts nothing; read with `method=consents` and
/// `/o/consent/current`; bad consents are a 400 that writes nothing.
#[test]
fn consents_are_recorded_per_device_and_counted() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let send = |device: &str, consent: serde_json::Value| {
        t.ok(
            &k,
            &[p("device_id", device), p("consent", consent.to_string())],
        )
    };
    send(
        "a",
        json!({"sessions": true, "events": true, "users": false}),
    );
    send(
        "a",
        json!({"sessions": true, "events": true, "users": false}),
    );
    send("a", json!({"events": false}));
    send("b", json!({"sessions": true}));
    let c = t.o(&k, "consents", &[]);
    let day = at(&c, &["2024", "10", "22"]).clone();
    assert_eq!(
        day,
        json!({"i": 2, "o": 2, "sessions": {"i": 2}, "events": {"i": 1, "o": 1}, "users": {"o": 1}}),
        "{c}"
    );
    assert_eq!(c["meta"]["feature"], json!(["events", "sessions", "users"]));
    let current = |device: &str| {
        t.get(&format!(
            "/o/consent/current?app_id={}&api_key={}&device_id={device}",
            k.id, k.read
        ))
        .json()
    };
    assert_eq!(
        current("a"),
        json!({"sessions": true, "events": false, "users": false})
    );
    assert_eq!(current("nobody"), json!({}));
    for bad in [json!(["sessions"]), json!({"sessions": "maybe"})] {
        let r = t.i(&k, &[p("device_id", "c"), p("consent", bad.to_string())]);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert_eq!(current("c"), json!({}));
    // Forgetting the device forgets its consents.
    let r = http(
        &t.addr,
        "DELETE",
        &format!("/project/device?project={}&device_id=a", k.id),
        &[("master_key", &k.master)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(current("a"), json!({}));
}
