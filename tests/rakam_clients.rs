//! Rakam's published Python clients against a running Tally: `rakam-client` 0.5 (RC,
//! generated from Rakam's API spec) and `rakam` 0.1.6 (RL), pinned and installed by
//! deploy/test in a virtual environment whose interpreter it names in TALLY_TEST_PYTHON.
//! tests/rakam/clients.py runs a scenario with them and prints what it observed as JSON;
//! these tests assert on that, and on what Countly's reads then count.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn python() -> Option<String> {
    match std::env::var("TALLY_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            // deploy/test installs the clients and sets it; a bare `cargo test` may not.
            eprintln!("SKIPPED rakam clients: TALLY_TEST_PYTHON is not set (deploy/test sets it)");
            None
        }
    }
}

/// Runs `scenario` of tests/rakam/clients.py against `t` with `k`'s keys; it must exit 0.
fn scenario(python: &str, t: &TestApp, k: &Keys, scenario: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rakam/clients.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(format!("http://{}", t.addr))
        .args([&k.write, &k.read, &k.master])
        .arg(scenario)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("RAKAM_PROJECT", &k.id)
        // RL goes through `requests`, which would send loopback traffic to a proxy set in
        // the environment.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("run the Python clients");
    assert!(
        out.status.success(),
        "scenario {scenario} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scenario {scenario} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `[[name, type], ...]`, as the script reports a collection's fields (sorted by name).
fn fields(pairs: &[(&str, &str)]) -> Value {
    // Every collection also has Countly's measures of an event, whichever API it came by.
    let builtin = [("count", "LONG"), ("dur", "DOUBLE"), ("sum", "DOUBLE")];
    let all: std::collections::BTreeMap<&str, &str> =
        pairs.iter().chain(builtin.iter()).copied().collect();
    json!(all.iter().map(|(n, t)| json!([n, t])).collect::<Vec<_>>())
}

/// A JSON list of strings, sorted (collections come in no promised order).
fn sorted(v: &Value) -> Value {
    let mut names: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|n| {
            n.as_str()
                .unwrap_or_else(|| panic!("not a name: {n}"))
                .into()
        })
        .collect();
    names.sort();
    json!(names)
}

/// The keys of a JSON object, sorted.
fn names(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Countly's `events` read of `event` (today is 2024-10-22, UTC).
fn event_counts(t: &TestApp, k: &Keys, event: &str) -> Value {
    t.o(k, "events", &[p("event", event)])
}

/// The count at `path` under 2024 in an `events` answer.
fn c(v: &Value, path: &[&str]) -> Value {
    let mut full = vec!["2024"];
    full.extend_from_slice(path);
    full.push("c");
    at(v, &full).clone()
}

#[test]
fn rakam_clients_collect_typed_events_that_countly_counts() {
    let Some(python) = python() else { return };
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    // An event key sent to Countly's /i is a collection too.
    t.ok(
        &k,
        &[
            p("device_id", "c1"),
            p("events", json!([{"key": "level_up", "count": 1}])),
        ],
    );
    let o = scenario(&python, &t, &k, "typed");

    // Every write answered as the clients expect: `1`, or `{success: true}` with a 200
    // (RL takes nothing else as success).
    assert_eq!(o["collect"], json!([1, 1, 1, 1]), "{o}");
    assert_eq!(o["batch"], json!(1), "{o}");
    for call in ["rc_bulk", "rl_bulk", "rc_commit", "rl_commit"] {
        assert_eq!(o[call], json!(true), "{call}: {o}");
    }

    // Types from the first value of each property; the later coerced values (2.0 into
    // LONG, 7 into DOUBLE, 42 and true into STRING) changed none of them.
    let purchase = fields(&[
        ("_time", "TIMESTAMP"),
        ("_user", "STRING"),
        ("attrs", "MAP_STRING"),
        ("gift", "BOOLEAN"),
        ("notes", "ARRAY_STRING"),
        ("plan", "STRING"),
        ("price", "DOUBLE"),
        ("quantity", "LONG"),
        ("sizes", "MAP_LONG"),
        ("tags", "ARRAY_STRING"),
    ]);
    let signup = fields(&[
        ("_time", "TIMESTAMP"),
        ("_user", "STRING"),
        ("campaign", "STRING"),
        ("method", "STRING"),
        ("referred", "BOOLEAN"),
        ("score", "DOUBLE"),
    ]);
    assert_eq!(o["schema_add"], signup, "{o}");
    assert_eq!(
        o["schema"],
        json!({
            "names": ["imported", "legacy", "pageview", "purchase", "signup"],
            "fields": {
                "purchase": purchase,
                "pageview": fields(&[
                    ("_time", "TIMESTAMP"),
                    ("_user", "STRING"),
                    ("load_ms", "LONG"),
                    ("url", "STRING"),
                ]),
                "signup": signup,
                "imported": fields(&[
                    ("_time", "TIMESTAMP"),
                    ("_user", "STRING"),
                    ("rows", "LONG"),
                    ("source", "STRING"),
                ]),
                "legacy": fields(&[
                    ("_time", "TIMESTAMP"),
                    ("_user", "STRING"),
                    ("kind", "STRING"),
                    ("weight", "DOUBLE"),
                ]),
            }
        })
    );
    let all = json!(["imported", "legacy", "level_up", "pageview", "purchase", "signup"]);
    assert_eq!(sorted(&o["collections"]), all, "{o}");

    // Countly's side: each collected event counts 1, on its `_time` (ISO or milliseconds)
    // or on the server's clock (10:30) without one.
    // (get_events lists them in the order first seen.)
    assert_eq!(sorted(&t.o(&k, "get_events", &[])["list"]), all);
    let e = event_counts(&t, &k, "purchase");
    assert_eq!(
        (
            c(&e, &[]),
            c(&e, &["10", "22"]),
            c(&e, &["10", "22", "9"]),
            c(&e, &["10", "22", "10"])
        ),
        (json!(5), json!(5), json!(2), json!(3)),
        "{e}"
    );
    let by = |event: &str, segment: &str| {
        t.o(
            &k,
            "events",
            &[p("event", event), p("segmentation", segment)],
        )
    };
    // Strings, integers and booleans are segments; coerced values count as their text.
    let plan = by("purchase", "plan");
    assert_eq!(
        (
            c(&plan, &["pro"]),
            c(&plan, &["basic"]),
            c(&plan, &["42"]),
            c(&plan, &["true"])
        ),
        (json!(2), json!(1), json!(1), json!(1)),
        "{plan}"
    );
    let gift = by("purchase", "gift");
    assert_eq!(
        (c(&gift, &["true"]), c(&gift, &["false"])),
        (json!(2), json!(1)),
        "{gift}"
    );
    // Countly stores the segment values 1 to 31 as `[CLY]1`..`[CLY]31` (they would be
    // taken for days of a month otherwise), and answers them so.
    let quantity = by("purchase", "quantity");
    assert_eq!(
        (
            c(&quantity, &["[CLY]3"]),
            c(&quantity, &["[CLY]2"]),
            c(&quantity, &["[CLY]1"])
        ),
        (json!(1), json!(1), json!(2)),
        "{quantity}"
    );

    let e = event_counts(&t, &k, "pageview");
    assert_eq!(
        (
            c(&e, &[]),
            c(&e, &["10", "22", "8"]),
            c(&e, &["10", "22", "10"])
        ),
        (json!(2), json!(1), json!(1)),
        "{e}"
    );
    let url = by("pageview", "url");
    assert_eq!(
        (c(&url, &["home"]), c(&url, &["pricing"])),
        (json!(1), json!(1)),
        "{url}"
    );
    let load = by("pageview", "load_ms");
    assert_eq!(
        (c(&load, &["120"]), c(&load, &["80"])),
        (json!(1), json!(1)),
        "{load}"
    );

    let e = event_counts(&t, &k, "signup");
    assert_eq!(
        (c(&e, &[]), c(&e, &["10", "22", "10"])),
        (json!(1), json!(1)),
        "{e}"
    );
    let referred = by("signup", "referred");
    assert_eq!(c(&referred, &["false"]), json!(1), "{referred}");

    // Bulk through both clients, committed through both.
    let e = event_counts(&t, &k, "imported");
    assert_eq!(
        (
            c(&e, &[]),
            c(&e, &["10", "22", "7"]),
            c(&e, &["10", "22", "10"])
        ),
        (json!(3), json!(2), json!(1)),
        "{e}"
    );
    let source = by("imported", "source");
    assert_eq!(
        (c(&source, &["csv"]), c(&source, &["api"])),
        (json!(2), json!(1)),
        "{source}"
    );
    let e = event_counts(&t, &k, "legacy");
    assert_eq!(
        (
            c(&e, &[]),
            c(&e, &["10", "22", "6"]),
            c(&e, &["10", "22", "10"])
        ),
        (json!(2), json!(1), json!(1)),
        "{e}"
    );
    assert_eq!(c(&by("legacy", "kind"), &["old"]), json!(2));
    assert_eq!(c(&event_counts(&t, &k, "level_up"), &[]), json!(1));
}

#[test]
fn rakam_clients_bad_input_is_refused_and_writes_nothing() {
    let Some(python) = python() else { return };
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let orders = fields(&[
        ("_time", "TIMESTAMP"),
        ("_user", "STRING"),
        ("gift", "BOOLEAN"),
        ("plan", "STRING"),
        ("price", "DOUBLE"),
        ("quantity", "LONG"),
        ("tags", "ARRAY_STRING"),
    ]);
    let schema = json!({"names": ["orders"], "fields": {"orders": orders}});
    let s = scenario(&python, &t, &k, "seed");
    assert_eq!(
        s,
        json!({"collect": 1, "schema": schema, "collections": ["orders"]})
    );
    let count = || c(&event_counts(&t, &k, "orders"), &[]);
    assert_eq!(count(), json!(1));
    let before = t.key_count();

    let r = scenario(&python, &t, &k, "refused");

    // A value that cannot be read as its field's type: 400, the error naming the field.
    let wrong = &r["collect_wrong_type"];
    assert_eq!(
        names(wrong),
        [
            "gift_number",
            "gift_text",
            "plan_object",
            "price_text",
            "quantity_fraction",
            "quantity_text",
            "tags_text",
            "time_text"
        ],
        "{r}"
    );
    let names_field = |case: &Value, field: &str| {
        assert_eq!(
            (&case["status"], &case["body"]["error_code"]),
            (&json!(400), &json!(400)),
            "{case}"
        );
        let error = case["body"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(field), "the error names {field}: {case}");
    };
    for (name, case) in wrong.as_object().expect("an object (above)") {
        let field = case["field"].as_str().unwrap_or_default();
        assert!(!field.is_empty(), "{name}: {case}");
        names_field(case, field);
    }
    // One bad event refuses the whole batch.
    names_field(&r["batch_wrong_type"], "quantity");
    // RL shows a 400's `error_code` and `error`.
    let rl = &r["rl_bulk_wrong_type"];
    let message = rl["message"].as_str().unwrap_or_default();
    assert_eq!(rl["exception"], json!("RakamError"), "{rl}");
    assert!(
        message.starts_with("Request failed with status: 400 error_code: 400 error: ")
            && message.contains("price"),
        "{rl}"
    );

    // A missing or wrong key: 403 with a JSON error on every route. RL raises BadKeyError
    // with the body's `error` (its own default message would mean the body had none).
    let keys = &r["keys"];
    assert_eq!(
        names(keys),
        [
            "batch_bogus_key",
            "collect_bogus_key",
            "collect_no_api",
            "collect_no_key",
            "collect_read_key",
            "collections_no_key",
            "rc_bulk_write_key",
            "rc_commit_no_key",
            "rc_commit_write_key",
            "rl_bulk_bogus_key",
            "rl_bulk_write_key",
            "rl_commit_bogus_key",
            "schema_add_read_key",
            "schema_bogus_key"
        ],
        "{r}"
    );
    for (name, case) in keys.as_object().expect("an object (above)") {
        if name.starts_with("rl_") {
            let message = case["message"].as_str().unwrap_or_default();
            assert_eq!(case["exception"], json!("BadKeyError"), "{name}: {case}");
            assert!(
                !message.is_empty()
                    && message
                        != "Wrong rakam key. Please check that you are using the key for project.",
                "{name}: {case}"
            );
        } else {
            let error = case["body"]["error"].as_str().unwrap_or_default();
            assert_eq!(
                (&case["status"], &case["body"]["error_code"]),
                (&json!(403), &json!(403)),
                "{name}: {case}"
            );
            assert!(!error.is_empty(), "{name}: {case}");
        }
    }

    // Nothing of it was written: not the good events of the refused batch (nor its new
    // collection), not the new field of the refused events, not a key in Redis.
    assert_eq!(r["schema"], schema, "{r}");
    assert_eq!(r["collections"], json!(["orders"]), "{r}");
    assert_eq!(t.key_count(), before);
    assert_eq!(count(), json!(1));
    assert_eq!(t.o(&k, "get_events", &[])["list"], json!(["orders"]));
}

/// `{id, properties}`, as `/user/get` answers and RC reads it.
fn profile(id: &str, properties: Value) -> Value {
    json!({"id": id, "properties": properties})
}

/// A 400 or 403 as RC saw it: the status and the body's `error_code` both `status`, and
/// an `error` that contains `mentions` (empty: any text).
fn refusal(case: &Value, status: u16, mentions: &str) {
    assert_eq!(
        (&case["status"], &case["body"]["error_code"]),
        (&json!(status), &json!(status)),
        "{case}"
    );
    let error = case["body"]["error"].as_str().unwrap_or_default();
    assert!(
        !error.is_empty() && error.contains(mentions),
        "{mentions}: {case}"
    );
}

/// A 400 as RL shows it: `RakamError` with the body's `error_code` and `error`.
fn rl_refusal(case: &Value, mentions: &str) {
    let message = case["message"].as_str().unwrap_or_default();
    assert_eq!(case["exception"], json!("RakamError"), "{case}");
    assert!(
        message.starts_with("Request failed with status: 400 error_code: 400 error: ")
            && message.contains(mentions),
        "{mentions}: {case}"
    );
}

#[test]
fn rakam_clients_user_profiles() {
    let Some(python) = python() else { return };
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let o = scenario(&python, &t, &k, "users");

    // RC: set and set once answer `1`; increments and unset answer `{success: true}`.
    assert_eq!((&o["set"], &o["set_once"]), (&json!(1), &json!(1)), "{o}");
    assert_eq!(o["increment"], json!([true, true, true]), "{o}");
    assert_eq!(o["unset"], json!(true), "{o}");
    // Set once set only what the profile lacked (`city`, not `plan`).
    assert_eq!(
        o["ada_set"],
        profile(
            "ada",
            json!({
                "plan": "pro",
                "age": 31,
                "score": 4.5,
                "beta": true,
                "tags": ["a", "b"],
                "langs": {"en": 1, "fr": 2},
                "city": "Oslo"
            })
        ),
        "{o}"
    );
    // An increment of 2.0 into a missing property starts at 0 and makes a whole number.
    assert_eq!(o["visits"], json!([2, 4]), "{o}");
    // Batch create answers the ids as sent (7 is a number).
    assert_eq!(o["create_users"], json!(["bob", "cy", 7]), "{o}");
    refusal(&o["no_profile"], 404, "");
    assert_eq!(o["collect"], json!([1, 1, 1, 1]), "{o}");

    // ada's events, newest first: typed properties, `_user`, `_time` in milliseconds
    // (10:00, 09:00, 08:00 UTC) and Countly's measures; not bob's.
    let measures = |mut p: Value| {
        p["_user"] = json!("ada");
        p["count"] = json!(1);
        p["sum"] = Value::Null;
        p["dur"] = Value::Null;
        p
    };
    let events = json!([
        {
            "collection": "pageview",
            "properties": measures(json!({"_time": 1729591200000_i64, "url": "pricing", "load_ms": 80}))
        },
        {
            "collection": "purchase",
            "properties": measures(json!({"_time": 1729587600000_i64, "plan": "pro", "price": 9.5}))
        },
        {
            "collection": "pageview",
            "properties": measures(json!({"_time": 1729584000000_i64, "url": "home", "load_ms": 120}))
        }
    ]);
    assert_eq!(o["events"], events, "{o}");
    assert_eq!(
        o["events_limit"],
        json!([events[0].clone(), events[1].clone()]),
        "{o}"
    );

    // RL: set, batch operations and batch update are taken (status 200); the route
    // answers `1`.
    for call in ["rl_set", "rl_batch", "rl_update"] {
        assert_eq!(o[call], json!(true), "{call}: {o}");
    }
    assert_eq!(
        o["batch_operations_answer"],
        json!({"status": 200, "body": 1}),
        "{o}"
    );

    // Refusals: 400 naming the property or the limit.
    let r = &o["refused"];
    refusal(&r["increment_text"], 400, "plan");
    refusal(&r["wrong_type"], 400, "age");
    rl_refusal(&r["rl_batch_type"], "city");
    rl_refusal(&r["rl_batch_too_large"], "");
    refusal(&r["too_large"], 400, "");
    refusal(&r["too_many"], 400, "256");
    assert_eq!(
        names(&r["bad_filters"]),
        [
            "(age > 30",
            "age >= thirty",
            "plan = ",
            "plan = 'pro' age > 1",
            "plan ~ 'pro'"
        ],
        "{o}"
    );
    for case in r["bad_filters"]
        .as_object()
        .expect("an object (above)")
        .values()
    {
        refusal(case, 400, "");
    }

    // Missing or wrong keys: 403 with a JSON error; RL's BadKeyError carries it.
    let keys = &o["keys"];
    assert_eq!(
        names(keys),
        [
            "create_segment_read_key",
            "get_user_no_key",
            "rl_batch_write_key",
            "search_bogus_key",
            "set_properties_read_key"
        ],
        "{o}"
    );
    for (name, case) in keys.as_object().expect("an object (above)") {
        if name.starts_with("rl_") {
            let message = case["message"].as_str().unwrap_or_default();
            assert_eq!(case["exception"], json!("BadKeyError"), "{name}: {case}");
            assert!(
                !message.is_empty()
                    && message
                        != "Wrong rakam key. Please check that you are using the key for project.",
                "{name}: {case}"
            );
        } else {
            refusal(case, 403, "");
        }
    }

    // Every profile as the requests that were taken left it, and nothing of the refused
    // ones (ada's `plan` and `age`, `active`, dee's `plan` and `city`, a 70,000-character
    // `city`, eli's 255 new properties).
    let profiles = json!({
        "ada": profile("ada", json!({
            "plan": "pro",
            "age": 31,
            "score": 6.5,
            "beta": true,
            "langs": {"en": 1, "fr": 2},
            "city": "Oslo",
            "visits": 4
        })),
        "bob": profile("bob", json!({"plan": "basic", "age": 26, "city": "Bern"})),
        "cy": profile("cy", json!({"plan": "pro", "age": 42, "city": "Rome"})),
        "7": profile("7", json!({"plan": "free"})),
        "dee": profile("dee", json!({"plan": "pro", "age": 35, "city": "Quito", "logins": 3})),
        "eli": profile("eli", json!({"plan": "free", "age": 19})),
    });
    assert_eq!(o["profiles"], profiles, "{o}");
    // The profile schema: `id`, then the properties by name with their first values'
    // types (`tags` stays after its unset; no `active`, no `p000`).
    assert_eq!(
        o["metadata"],
        json!({
            "columns": [
                ["id", "STRING"],
                ["age", "LONG"],
                ["beta", "BOOLEAN"],
                ["city", "STRING"],
                ["langs", "MAP_LONG"],
                ["logins", "LONG"],
                ["plan", "STRING"],
                ["score", "DOUBLE"],
                ["tags", "ARRAY_STRING"],
                ["visits", "LONG"]
            ],
            "identifier_column": "id"
        })
    );

    // Search.
    assert_eq!(
        o["search"],
        json!({
            "metadata": [["id", "STRING"], ["age", "LONG"]],
            "result": [["cy", 42], ["dee", 35], ["ada", 31]],
            "properties": {"total": 3, "scanned": 6},
            "failed": false
        })
    );
    assert_eq!(
        o["search_top"],
        json!({
            "metadata": [["id", "STRING"], ["age", "LONG"]],
            "result": [["cy", 42], ["dee", 35]],
            "properties": {"total": 6, "scanned": 6},
            "failed": false
        })
    );
    assert_eq!(
        o["filters"],
        json!({
            "plan = 'pro'": ["ada", "cy", "dee"],
            "plan != 'pro'": ["7", "bob", "eli"],
            "age > 30": ["ada", "cy", "dee"],
            "age >= 35": ["cy", "dee"],
            "age <= 26": ["bob", "eli"],
            "age < 26": ["eli"],
            "plan in ('free', 'basic')": ["7", "bob", "eli"],
            "plan not in ('free', 'basic')": ["ada", "cy", "dee"],
            "age is null": ["7"],
            "logins is not null": ["dee"],
            "not (city = 'Oslo') and city is not null": ["bob", "cy", "dee"],
            "city = 'Bern' or (plan = 'pro' and age < 35)": ["ada", "bob"],
            "id = 'eli' or id = 7": ["7", "eli"],
            "score > 6.4": ["ada"],
            "visits >= 4 and visits < 5": ["ada"],
            "id = 'nobody'": []
        })
    );
    assert_eq!(
        o["raw_search"],
        json!({
            "status": 200,
            "body": {
                "metadata": [
                    {"name": "id", "type": "STRING"},
                    {"name": "city", "type": "STRING"},
                    {"name": "age", "type": "LONG"}
                ],
                "result": [["ada", "Oslo", 31], ["cy", "Rome", 42], ["eli", null, 19]],
                "properties": {"total": 3, "scanned": 6},
                "failed": false
            }
        })
    );

    // A segment (created with the master key) is its filter, and a search's filter
    // narrows it.
    assert_eq!(o["create_segment"], json!(true), "{o}");
    let ids = |rows: Value, total: u64| {
        json!({
            "status": 200,
            "body": {
                "metadata": [{"name": "id", "type": "STRING"}],
                "result": rows,
                "properties": {"total": total, "scanned": 6},
                "failed": false
            }
        })
    };
    assert_eq!(
        o["segment_search"],
        ids(json!([["ada"], ["cy"], ["dee"]]), 3)
    );
    assert_eq!(o["segment_and_filter"], ids(json!([["ada"]]), 1));

    // Forgetting a device removes its profile (and its raw events: ada's three); the
    // other profiles stay.
    let post = |path: &str, body: Value| {
        let r = http(
            &t.addr,
            "POST",
            path,
            &[("read_key", &k.read), ("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        (r.status, r.json())
    };
    let body = json!({"project": k.id, "master_key": k.master, "device_id": "ada"}).to_string();
    let r = http(
        &t.addr,
        "DELETE",
        "/project/device",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"result": "Success", "forgotten": true, "raw_entries_deleted": 3})
        )
    );
    let (status, gone) = post("/user/get", json!({"user": "ada"}));
    assert_eq!((status, &gone["error_code"]), (404, &json!(404)), "{gone}");
    assert_eq!(
        post("/user/get", json!({"user": "bob"})),
        (200, profiles["bob"].clone())
    );
    assert_eq!(
        post("/user/get_events", json!({"user": "ada"})),
        (200, json!([]))
    );
    let (status, left) = post(
        "/user/search",
        json!({"columns": ["id"], "sorting": {"column": "id", "order": "ASC"}}),
    );
    assert_eq!(
        (status, &left["result"], &left["properties"]["total"]),
        (
            200,
            &json!([["7"], ["bob"], ["cy"], ["dee"], ["eli"]]),
            &json!(5)
        ),
        "{left}"
    );
}

#[test]
fn rakam_clients_create_check_and_revoke_key_sets() {
    let Some(python) = python() else { return };
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let obs = scenario(&python, &t, &k, "keys");
    assert_eq!(obs["second_has_keys"], json!(true), "{obs}");
    assert_eq!(obs["second_differs"], json!(true), "{obs}");
    assert_eq!(obs["check_before"], json!([true, true, false]), "{obs}");
    assert_eq!(obs["collect_with_second"], json!(1), "{obs}");
    assert_eq!(
        obs["collections_with_second_read"],
        json!(["clicks"]),
        "{obs}"
    );
    assert_eq!(obs["revoked"], json!(true), "{obs}");
    assert_eq!(obs["check_after"], json!([false, true, false]), "{obs}");
    for refusal in ["collect_with_revoked", "collections_with_revoked_read"] {
        assert_eq!(obs[refusal]["status"], json!(403), "{refusal}: {obs}");
        assert!(
            obs[refusal]["body"]["error"].is_string(),
            "{refusal}: {obs}"
        );
    }
    assert_eq!(obs["revoke_last"]["status"], json!(400), "{obs}");
    assert_eq!(obs["collect_with_first"], json!(1), "{obs}");
    assert_eq!(
        obs["rl_bulk_revoked"]["exception"],
        json!("BadKeyError"),
        "{obs}"
    );
    // Two events were taken (one with each set), none with the revoked keys.
    let counts = event_counts(&t, &k, "clicks");
    assert_eq!(c(&counts, &["10", "22"]), json!(2), "{counts}");
}

#[test]
fn rakam_clients_meet_strict_mode() {
    let Some(python) = python() else { return };
    let t = TestApp::spawn();
    let k = t.create_app_with(json!({"name": "strict", "timezone": "UTC", "strict": true}));
    let obs = scenario(&python, &t, &k, "strict");
    for refusal in ["collect_undeclared", "batch_undeclared_field"] {
        assert_eq!(obs[refusal]["status"], json!(400), "{refusal}: {obs}");
        let msg = obs[refusal]["body"]["error"].as_str().unwrap_or_default();
        assert!(msg.contains("strict mode"), "{refusal}: {obs}");
    }
    assert!(
        obs["rl_bulk_undeclared"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("strict mode")),
        "{obs}"
    );
    assert_eq!(obs["collect_declared"], json!(1), "{obs}");
    assert_eq!(obs["collections"], json!(["orders"]), "{obs}");
    // The refused batch's undeclared field was not added, and its good event not taken.
    assert_eq!(
        obs["schema"]["fields"]["orders"],
        fields(&[
            ("_time", "TIMESTAMP"),
            ("_user", "STRING"),
            ("amount", "LONG")
        ]),
        "{obs}"
    );
    let counts = event_counts(&t, &k, "orders");
    assert_eq!(c(&counts, &["10", "22"]), json!(1), "{counts}");
}

#[test]
fn rakam_clients_run_sql_over_what_they_collected() {
    let Some(python) = python() else { return };
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let obs = scenario(&python, &t, &k, "sql");
    assert_eq!(
        obs["rl_types"],
        json!([
            "STRING",
            "TIMESTAMP",
            "LONG",
            "DOUBLE",
            "BOOLEAN",
            "ARRAY_STRING",
            "STRING"
        ]),
        "{obs}"
    );
    // RL converted every cell by its type (the timestamps into datetimes).
    assert_eq!(
        obs["rl_rows"],
        json!([
            [
                "q1",
                "2024-10-22T09:00:00+00:00",
                5,
                2.5,
                true,
                ["a", "b"],
                "pro"
            ],
            [
                "q2",
                "2024-10-22T09:30:00+00:00",
                7,
                1.25,
                false,
                [],
                "free"
            ]
        ]),
        "{obs}"
    );
    assert_eq!(obs["rl_totals"], json!([[2, 12]]), "{obs}");
    assert_eq!(
        obs["rc_metadata"],
        json!([["plan", "STRING"], ["n", "LONG"]]),
        "{obs}"
    );
    assert_eq!(obs["rc_rows"], json!([["free", 1], ["pro", 1]]), "{obs}");
    assert_eq!(obs["rl_bad"]["exception"], json!("RakamError"), "{obs}");
    assert!(
        obs["rl_bad"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nowhere")),
        "{obs}"
    );
    assert_eq!(obs["rc_bad"]["status"], json!(400), "{obs}");
}
