//! Rakam's project routes beyond creation, end to end over HTTP on a real Redis: key sets
//! (created, checked, revoked at once in every process), strict mode, project statistics
//! and the list of projects, recipes, and Countly's `user_details` landing in the profile
//! store Rakam's `/user/get` reads.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn post_json(addr: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    http(addr, "POST", path, &all, body.to_string().as_bytes())
}

/// One event into `collection` through `/event/collect` with `write_key` in the body.
fn collect(addr: &str, write_key: &str, collection: &str, props: Value) -> Resp {
    post_json(
        addr,
        "/event/collect",
        &[],
        &json!({"collection": collection, "api": {"api_key": write_key}, "properties": props}),
    )
}

fn key_set(v: &Value) -> Keys {
    let s = |f: &str| v[f].as_str().unwrap_or_default().to_string();
    Keys {
        id: String::new(),
        write: s("write_key"),
        read: s("read_key"),
        master: s("master_key"),
    }
}

/// Environment for a separate service process on the test's Redis (or cluster).
fn service_env(t: &TestApp) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("TALLY_WORKERS", "1".to_string()),
        // Cached for a minute: only the announcement can make a revocation felt at once.
        ("TALLY_APP_CACHE_MS", "60000".to_string()),
    ];
    if !t.cluster.is_empty() {
        env.push(("REDIS_CLUSTER_URLS", t.cluster.join(",")));
    }
    env
}

#[test]
fn key_sets_are_created_checked_and_revoked_at_once_in_every_process() {
    let t = TestApp::spawn_with(|c| {
        c.app_cache_ttl = Duration::from_secs(60);
        c.limits.key_sets = 3;
    });
    let k = t.create_app("UTC");
    let env = service_env(&t);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = if t.cluster.is_empty() {
        t.redis.url()
    } else {
        String::new()
    };
    let (_collector, collector) = spawn_binary("collector", &url, &env);

    // A second key set: three fresh keys, the same project.
    let r = post_json(
        &t.addr,
        "/project/create-api-keys",
        &[("master_key", &k.master)],
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let second = key_set(&r.json());
    assert_eq!(second.write.len(), 40, "{}", r.body);
    assert!(second.write != k.write && second.master != k.master);
    // Its keys open the project in their roles, in the collector process too (which then
    // holds the project in its cache).
    let r = collect(&collector, &second.write, "clicks", json!({"n": 1}));
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    let r = http(
        &collector,
        "GET",
        &format!("/i?app_key={}&device_id=d1&begin_session=1", second.write),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let o = |addr: &str, read: &str| {
        http(
            addr,
            "GET",
            &format!("/o?method=sessions&app_id={}&api_key={read}", k.id),
            &[],
            b"",
        )
        .status
    };
    assert_eq!(o(&t.addr, &second.read), 200);
    // A read key is no master key.
    let r = post_json(
        &t.addr,
        "/project/create-api-keys",
        &[("master_key", &second.read)],
        &json!({}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let check = |sets: Value| {
        let r = post_json(
            &t.addr,
            "/project/check-api-keys",
            &[],
            &json!({"project": k.id, "keys": sets}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    assert_eq!(
        check(json!([
            {"write_key": second.write, "read_key": second.read, "master_key": second.master},
            {"write_key": k.write},
            {"read_key": second.write},
            {"master_key": "0123456789abcdef0123456789abcdef01234567"},
            {}
        ])),
        json!([true, true, false, false, false])
    );

    // Revoked with its own master key, as Rakam's client sends it (header only).
    let r = post_json(
        &t.addr,
        "/project/revoke-api-keys",
        &[("master_key", &second.master)],
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["success"], json!(true), "{}", r.body);
    // Every process stops taking the set's keys although its cache would keep the
    // project for a minute.
    wait_until(
        "the collector refuses the revoked write key",
        Duration::from_secs(2),
        || {
            let r = collect(&collector, &second.write, "clicks", json!({"n": 1}));
            (r.status == 403).then_some(())
        },
    );
    let r = http(
        &collector,
        "GET",
        &format!(
            "/i?app_key={}&device_id=d1&events=[{{\"key\":\"x\",\"count\":1}}]",
            second.write
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(o(&t.addr, &second.read), 401);
    assert_eq!(
        check(json!([{"write_key": second.write}, {"master_key": k.master}])),
        json!([false, true])
    );
    // The first set still works everywhere.
    let r = collect(&collector, &k.write, "clicks", json!({"n": 1}));
    assert_eq!((r.status, r.body.as_str()), (200, "1"));

    // The first set may go once another exists; the next oldest becomes the one
    // Countly's reads know.
    let r = post_json(
        &t.addr,
        "/project/create-api-keys",
        &[("master_key", &k.master)],
        &json!({}),
    );
    let third = key_set(&r.json());
    let r = post_json(
        &t.addr,
        "/project/create-api-keys",
        &[("master_key", &k.master)],
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_json(
        &t.addr,
        "/project/create-api-keys",
        &[("master_key", &k.master)],
        &json!({}),
    );
    assert_eq!(
        r.status, 400,
        "a fourth live set is over TALLY_KEY_SETS=3: {}",
        r.body
    );
    let r = post_json(
        &t.addr,
        "/project/revoke-api-keys",
        &[],
        &json!({"project": k.id, "master_key": k.master}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until(
        "the first write key is refused",
        Duration::from_secs(2),
        || (collect(&collector, &k.write, "clicks", json!({})).status == 403).then_some(()),
    );
    assert_eq!(o(&t.addr, &k.read), 401);
    assert_eq!(o(&t.addr, &third.read), 200);
    // A revoked master key revokes nothing more.
    let r = post_json(
        &t.addr,
        "/project/revoke-api-keys",
        &[("master_key", &k.master)],
        &json!({}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn the_last_key_set_cannot_be_revoked() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let r = post_json(
        &t.addr,
        "/project/revoke-api-keys",
        &[("master_key", &k.master)],
        &json!({}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("last key set"),
        "{}",
        r.body
    );
    t.ok(&k, &[p("device_id", "d"), p("begin_session", 1)]);
}

#[test]
fn strict_projects_take_only_declared_collections_and_fields() {
    let t = TestApp::spawn();
    let k = t.create_app_with(json!({"name": "strict", "timezone": "UTC", "strict": true}));
    let r = collect(&t.addr, &k.write, "purchase", json!({"amount": 5}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("strict mode"), "{}", r.body);
    let collections = || {
        post_json(
            &t.addr,
            "/project/collection",
            &[("read_key", &k.read)],
            &json!({}),
        )
        .json()
    };
    assert_eq!(collections(), json!([]), "nothing was written");
    let r = post_json(
        &t.addr,
        "/project/schema/add",
        &[("master_key", &k.master)],
        &json!({"collection": "purchase", "fields": [{"name": "amount", "type": "LONG"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = collect(&t.addr, &k.write, "purchase", json!({"amount": 5}));
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    // A field nobody declared: refused, in a batch too, and nothing of the batch is
    // written.
    let r = collect(
        &t.addr,
        &k.write,
        "purchase",
        json!({"amount": 5, "coupon": "x"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("coupon"), "{}", r.body);
    let r = post_json(
        &t.addr,
        "/event/batch",
        &[],
        &json!({"api": {"api_key": k.write}, "events": [
            {"collection": "purchase", "properties": {"amount": 1}},
            {"collection": "refund", "properties": {"amount": 1}}
        ]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let counts = t.o(&k, "events", &[p("event", "purchase")]);
    assert_eq!(
        at(&counts, &["2024", "10", "22", "c"]),
        &json!(1),
        "{counts}"
    );
    assert_eq!(collections(), json!(["purchase"]));
    let r = post_json(
        &t.addr,
        "/project/schema",
        &[("read_key", &k.read)],
        &json!({"names": ["purchase"]}),
    );
    let fields: Vec<String> = r.json()[0]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(!fields.contains(&"coupon".to_string()), "{}", r.body);
}

#[test]
fn project_stats_and_the_list_of_projects() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let other = t.create_app("Asia/Tokyo");
    // Today (2024-10-22) three events, earlier this month two, last month one.
    for (collection, time) in [
        ("a", "2024-10-22T09:00:00Z"),
        ("a", "2024-10-22T10:00:00Z"),
        ("b", "2024-10-22T10:10:00Z"),
        ("b", "2024-10-03T10:00:00Z"),
        ("a", "2024-10-01T00:00:00Z"),
        ("a", "2024-09-30T23:00:00Z"),
    ] {
        let r = collect(
            &t.addr,
            &k.write,
            collection,
            json!({"_time": time, "_user": "u1"}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = post_json(
        &t.addr,
        "/user/set_properties",
        &[],
        &json!({"id": "u1", "api": {"api_key": k.write}, "properties": {"plan": "pro"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_json(
        &t.addr,
        "/project/stats",
        &[],
        &json!([k.master, other.master]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let s = r.json();
    assert_eq!(
        s[&k.master],
        json!({"allEvents": 6, "monthlyEvents": 5, "dailyEvents": 3, "collections": 2, "users": 1, "key_sets": 1}),
        "{s}"
    );
    assert_eq!(s[&other.master]["allEvents"], json!(0), "{s}");
    // Project ids need the admin key; a read key is not enough.
    let r = post_json(
        &t.addr,
        "/project/stats",
        &[("lock_key", "test-admin-key")],
        &json!([k.id]),
    );
    assert_eq!(r.json()[&k.id]["dailyEvents"], json!(3), "{}", r.body);
    for (headers, body) in [
        (vec![], json!([k.id])),
        (vec![], json!([k.read])),
        (vec![("lock_key", "nope")], json!([k.id])),
    ] {
        let r = post_json(&t.addr, "/project/stats", &headers, &body);
        assert_eq!(r.status, 403, "{body}: {}", r.body);
    }
    let r = post_json(&t.addr, "/project/stats", &[], &json!({"projects": 1}));
    assert_eq!(r.status, 400, "{}", r.body);

    let r = post_json(
        &t.addr,
        "/project/list",
        &[],
        &json!({"lock_key": "test-admin-key"}),
    );
    let mut all = r.json().as_array().cloned().unwrap_or_default();
    all.sort_by_key(|v| v.as_str().map(String::from));
    let mut want = vec![json!(k.id), json!(other.id)];
    want.sort_by_key(|v| v.as_str().map(String::from));
    assert_eq!(all, want, "{}", r.body);
    let r = post_json(
        &t.addr,
        "/project/list",
        &[("read_key", &other.read)],
        &json!({}),
    );
    assert_eq!(r.json(), json!([other.id]), "{}", r.body);
    for body in [json!({}), json!({"lock_key": "nope"})] {
        let r = post_json(&t.addr, "/project/list", &[], &body);
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.json()["error"].is_string(), "{}", r.body);
    }
}

#[test]
fn recipes_carry_schemas_and_realtime_reports_between_projects() {
    let t = TestApp::spawn();
    let a = t.create_app("UTC");
    let b = t.create_app("UTC");
    let r = collect(
        &t.addr,
        &a.write,
        "purchase",
        json!({"amount": 5, "country": "TR", "tags": ["x"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let report = json!({
        "name": "Revenue", "table_name": "revenue", "collections": ["purchase"],
        "measures": [{"column": "amount", "aggregation": "SUM"}], "dimensions": ["country"],
        "filter": "amount > 1"
    });
    let r = post_json(
        &t.addr,
        "/realtime/create",
        &[("master_key", &a.master)],
        &report,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let export = |k: &Keys| {
        let r = http(
            &t.addr,
            "GET",
            "/recipe/export",
            &[("master_key", &k.master)],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let recipe = export(&a);
    assert_eq!(
        recipe["collections"]["purchase"]["columns"],
        json!([
            {"amount": {"type": "LONG", "category": null}},
            {"country": {"type": "STRING", "category": null}},
            {"tags": {"type": "ARRAY_STRING", "category": null}}
        ]),
        "{recipe}"
    );
    assert_eq!(recipe["realtime"], json!([report]), "{recipe}");
    assert_eq!(recipe["strategy"], json!("DEFAULT"));

    // Into a project that has a conflicting field: refused whole, nothing written.
    let r = collect(&t.addr, &b.write, "other", json!({"x": 1}));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut conflicting = recipe.clone();
    conflicting["collections"]["other"] = json!({"columns": [{"x": {"type": "STRING"}}]});
    let r = post_json(
        &t.addr,
        "/recipe/install",
        &[("master_key", &b.master)],
        &conflicting,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let before = export(&b);
    assert_eq!(before["realtime"], json!([]), "{before}");
    assert!(before["collections"].get("purchase").is_none(), "{before}");
    // Installed: the same schemas and report; installing again changes nothing.
    for _ in 0..2 {
        let r = post_json(
            &t.addr,
            "/recipe/install",
            &[("master_key", &b.master)],
            &recipe,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["success"], json!(true));
    }
    let after = export(&b);
    assert_eq!(
        after["collections"]["purchase"],
        recipe["collections"]["purchase"]
    );
    assert_eq!(after["realtime"], recipe["realtime"]);
    // The installed schema is enforced: a text amount is refused.
    let r = collect(&t.addr, &b.write, "purchase", json!({"amount": "lots"}));
    assert_eq!(r.status, 400, "{}", r.body);
    for (headers, body) in [
        (vec![("master_key", b.read.as_str())], recipe.clone()),
        (
            vec![("master_key", b.master.as_str())],
            json!({"collections": {"c": {"columns": [{"f": {"type": "NOPE"}}]}}}),
        ),
        (
            vec![("master_key", b.master.as_str())],
            json!({"continuous_queries": [{"name": "q"}]}),
        ),
    ] {
        let r = post_json(&t.addr, "/recipe/install", &headers, &body);
        assert!(r.status == 400 || r.status == 403, "{body}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{}", r.body);
    }
}

/// `/user/get` for one user of `k` (read key): its properties.
fn profile_of(t: &TestApp, k: &Keys, user: &str) -> (u16, Value) {
    let r = post_json(
        &t.addr,
        "/user/get",
        &[("read_key", &k.read)],
        &json!({"user": user}),
    );
    let props = r.json()["properties"].clone();
    (r.status, props)
}

#[test]
fn countly_user_details_write_the_profile_rakam_reads() {
    let t = TestApp::spawn_with(|c| c.limits.user_properties = 14);
    let k = t.create_app("UTC");
    let details = json!({
        "name": "Ada Lovelace", "username": "ada", "email": "ada@example.com",
        "organization": "Engines", "phone": "+44", "picture": "https://example.com/a.png",
        "gender": "F", "byear": 1815,
        "custom": {
            "plan": "pro",
            "logins": {"$inc": 2},
            "score": {"$max": 10},
            "first_seen": {"$setOnce": "2024-10-22"},
            "tags": {"$push": ["a", "b"]}
        }
    });
    // Countly's SDKs send user_details with a session or on its own; with a timestamp a
    // retry is recognised.
    let req = |details: &Value, ts: i64| {
        t.i(
            &k,
            &[
                p("device_id", "ada-phone"),
                p("timestamp", ts),
                p("user_details", details.to_string()),
            ],
        )
    };
    let r = req(&details, NOW);
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, props) = profile_of(&t, &k, "ada-phone");
    assert_eq!(status, 200);
    assert_eq!(
        props,
        json!({
            "name": "Ada Lovelace", "username": "ada", "email": "ada@example.com",
            "organization": "Engines", "phone": "+44", "picture": "https://example.com/a.png",
            "gender": "F", "byear": 1815, "plan": "pro", "logins": 2, "score": 10,
            "first_seen": "2024-10-22", "tags": ["a", "b"]
        })
    );
    // The same request again (a retry): its $inc and $push are not applied twice.
    let r = req(&details, NOW);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(profile_of(&t, &k, "ada-phone").1["logins"], json!(2));
    assert_eq!(profile_of(&t, &k, "ada-phone").1["tags"], json!(["a", "b"]));
    // Every operator, as the SDKs send them (unset is an empty string).
    let more = json!({"custom": {
        "logins": {"$inc": 1, "$mul": 10},
        "score": {"$min": 3},
        "first_seen": {"$setOnce": "2030-01-01"},
        "tags": {"$addToSet": ["b", "c"], "$pull": ["a"]},
        "plan": ""
    }});
    let r = req(&more, NOW + 1);
    assert_eq!(r.status, 200, "{}", r.body);
    let props = profile_of(&t, &k, "ada-phone").1;
    assert_eq!(
        (
            &props["logins"],
            &props["score"],
            &props["first_seen"],
            &props["tags"],
            props.get("plan")
        ),
        (
            &json!(30),
            &json!(3),
            &json!("2024-10-22"),
            &json!(["b", "c"]),
            None
        ),
        "{props}"
    );
    // Rakam's metadata types the Countly fields like any property.
    let r = http(
        &t.addr,
        "GET",
        "/user/metadata",
        &[("read_key", &k.read)],
        b"",
    );
    assert!(r.body.contains("\"byear\""), "{}", r.body);

    // Refused whole, writing nothing (not even the session): a bad operator, arithmetic
    // on text, and a profile over its property limit.
    let sessions = |t: &TestApp| at(&t.o(&k, "sessions", &[]), &["2024", "10", "22", "t"]).clone();
    let before = sessions(&t);
    for bad in [
        json!({"custom": {"x": {"$rename": "y"}}}),
        json!({"custom": {"name2": "x", "email": {"$inc": 1}}}),
        json!({"byear": "long ago"}),
        json!({"custom": {"p1": 1, "p2": 2, "p3": 3, "p4": 4}}),
        json!(["not", "an", "object"]),
    ] {
        let r = t.i(
            &k,
            &[
                p("device_id", "ada-phone"),
                p("begin_session", 1),
                p("user_details", bad.to_string()),
            ],
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(
            r.json()["result"]
                .as_str()
                .unwrap_or_default()
                .contains("user_details"),
            "{}",
            r.body
        );
    }
    assert_eq!(sessions(&t), before);
    assert_eq!(profile_of(&t, &k, "ada-phone").1, props);

    // In a bulk request too; forgetting the device removes its profile.
    let bulk = json!([
        {"device_id": "bob", "user_details": {"name": "Bob", "custom": {"n": {"$inc": 5}}}},
        {"device_id": "eve", "user_details": {"custom": {"x": {"$bogus": 1}}}}
    ]);
    let r = t.post(
        "/i/bulk",
        "application/x-www-form-urlencoded",
        &format!("app_key={}&requests={}", k.write, enc(&bulk.to_string())),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["rejected"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    assert_eq!(profile_of(&t, &k, "bob").1, json!({"name": "Bob", "n": 5}));
    assert_eq!(profile_of(&t, &k, "eve").0, 404);
    let r = http(
        &t.addr,
        "DELETE",
        &format!("/project/device?project={}&device_id=ada-phone", k.id),
        &[("master_key", &k.master)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(profile_of(&t, &k, "ada-phone").0, 404);
}

/// Rakam's generated client deletes a project with its master key alone (no `project`):
/// the key names the app; its keys stop working at once.
#[test]
fn a_project_is_deleted_by_its_master_key_alone() {
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let keep = t.create_app("UTC");
    t.ok(&k, &[p("device_id", "d"), p("begin_session", 1)]);
    let r = http(
        &t.addr,
        "DELETE",
        "/project/delete",
        &[("master_key", &k.read)],
        b"",
    );
    assert_eq!(r.status, 403, "a read key deletes nothing: {}", r.body);
    let r = http(
        &t.addr,
        "DELETE",
        "/project/delete",
        &[("master_key", &k.master)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(t.i(&k, &[p("device_id", "d")]).status, 400);
    let r = collect(&t.addr, &k.write, "clicks", json!({}));
    assert_eq!(r.status, 403, "{}", r.body);
    t.ok(&keep, &[p("device_id", "d"), p("begin_session", 1)]);
}
