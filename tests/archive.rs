//! The Parquet archive and SQL over it, end to end over HTTP on a real Redis: events from
//! `/i` and Rakam's collect API are queryable at once and after archiving with the same
//! answers; another engine (DuckDB) reads the same files and counts the same; a key sees
//! only its own tables; every limit answers a clear error; forgetting a device rewrites the
//! archive; and archiving is exactly once with archivers killed with SIGKILL mid-batch.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tally_archive::{Archive, Archiver};
use tally_config::Config;

fn post_json(addr: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    http(addr, "POST", path, &all, body.to_string().as_bytes())
}

/// `/query/execute` with `key` as the read key; the raw answer.
fn sql_resp(addr: &str, key: &str, query: &str) -> Resp {
    post_json(
        addr,
        "/query/execute",
        &[("read_key", key)],
        &json!({"query": query, "export_type": "JSON"}),
    )
}

/// `/query/execute` that must succeed: its rows.
fn sql(addr: &str, key: &str, query: &str) -> Vec<Value> {
    let r = sql_resp(addr, key, query);
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    let v = r.json();
    let width = v["metadata"].as_array().map_or(0, Vec::len);
    let rows = v["result"].as_array().cloned().unwrap_or_default();
    assert!(v["properties"].is_object(), "{}", r.body);
    assert!(
        rows.iter()
            .all(|r| r.as_array().map(Vec::len) == Some(width)),
        "{}",
        r.body
    );
    rows
}

fn collect(addr: &str, write_key: &str, collection: &str, props: Value) {
    let r = post_json(
        addr,
        "/event/collect",
        &[],
        &json!({"collection": collection, "api": {"api_key": write_key}, "properties": props}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

fn events(t: &TestApp, k: &Keys, device: &str, events: Value) {
    t.ok(
        k,
        &[
            p("device_id", device),
            p("timestamp", NOW),
            p("events", events.to_string()),
        ],
    );
}

/// An archiver of the test's Redis writing to `dir`, run pass by pass by the test on a
/// runtime of its own (its connections live there).
struct TestArchiver {
    a: Archiver,
    rt: tokio::runtime::Runtime,
}

impl TestArchiver {
    fn pass(&self) {
        self.rt.block_on(self.a.pass("test")).expect("archive pass");
    }

    fn chores(&self) {
        self.rt.block_on(self.a.chores()).expect("chores");
    }
}

fn archiver(t: &TestApp, dir: &Path, tweak: impl FnOnce(&mut Config)) -> TestArchiver {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut cfg = Config::for_tests(&t.redis.url());
    cfg.redis_cluster = t.cluster.clone();
    tweak(&mut cfg);
    let shared =
        tally_service::Shared::new(&cfg, &t.redis.url(), t.clock.clone()).expect("shared state");
    let archive = Archive::local(dir.to_path_buf()).expect("archive dir");
    let a = Archiver {
        shared,
        archive: Some(archive.clone()),
        cfg: cfg.archive.clone(),
        stream_max_age: cfg.commit.stream_max_age,
        engine: std::sync::Arc::new(tally_archive::Engine::new(Some(archive), cfg.sql.clone())),
        stats: Default::default(),
    };
    TestArchiver { a, rt }
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Runs `query` in DuckDB over the archive's files (Hive partitioning on); its rows as
/// JSON. `None` when the test interpreter is not set (deploy/test sets it).
fn duckdb(dir: &Path, query: &str) -> Option<Value> {
    let python = match std::env::var("TALLY_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            eprintln!("SKIPPED the DuckDB cross-check: TALLY_TEST_PYTHON is not set (deploy/test sets it)");
            return None;
        }
    };
    let script = r#"
import duckdb, json, sys
d, q = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{d}/**/*.parquet', hive_partitioning = true, union_by_name = true)")
print(json.dumps(con.execute(q).fetchall(), default=str))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, &dir.display().to_string(), query])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("duckdb json"))
}

#[test]
fn queries_see_events_at_once_and_after_archiving_with_the_same_answers() {
    let dir = temp_dir("archive-e2e");
    let t = TestApp::spawn();
    let k = t.create_app("Europe/Berlin");
    events(
        &t,
        &k,
        "d1",
        json!([{"key": "buy", "count": 2, "sum": 3.5, "segmentation": {"plan": "pro"}},
               {"key": "view", "count": 1}]),
    );
    events(
        &t,
        &k,
        "d2",
        json!([{"key": "buy", "count": 1, "sum": 1.0, "segmentation": {"plan": "free"}}]),
    );
    // 10:00 and 23:30 UTC of the day before the test's clock; 23:30 UTC is already the
    // next day in Berlin.
    let day = NOW - NOW.rem_euclid(86_400) - 86_400;
    collect(
        &t.addr,
        &k.write,
        "purchase",
        json!({"_user": "u1", "_time": (day + 36_000) * 1000, "price": 9.5, "tags": ["a", "b"], "paid": true}),
    );
    collect(
        &t.addr,
        &k.write,
        "purchase",
        json!({"_user": "u2", "_time": (day + 84_600) * 1000, "price": 2.0, "tags": [], "paid": false}),
    );
    let berlin_next = chrono::DateTime::from_timestamp(day + 86_400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let questions = [
        "SELECT count(*) AS n, sum(count) AS c, sum(sum) AS s FROM buy",
        "SELECT plan, count(*) AS n FROM buy GROUP BY plan ORDER BY plan",
        "SELECT _user, price, tags, paid FROM purchase ORDER BY _time",
        "SELECT count(DISTINCT _user) AS users FROM purchase",
        "SELECT b._user, count(*) AS n FROM buy b JOIN view v ON b._user = v._user GROUP BY b._user",
    ];
    let before: Vec<Vec<Value>> = questions.iter().map(|q| sql(&t.addr, &k.read, q)).collect();
    assert_eq!(before[0], vec![json!([2, 3, 4.5])]);
    assert_eq!(before[1], vec![json!(["free", 1]), json!(["pro", 1])]);
    assert_eq!(
        before[2],
        vec![
            json!(["u1", 9.5, ["a", "b"], true]),
            json!(["u2", 2.0, [], false])
        ]
    );
    assert_eq!(before[3], vec![json!([2])]);
    assert_eq!(before[4], vec![json!(["d1", 1])]);
    // Rakam's type names in the metadata.
    let meta = sql_resp(
        &t.addr,
        &k.read,
        "SELECT _time, price, tags, paid, _user FROM purchase",
    )
    .json();
    let types: Vec<&str> = meta["metadata"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["TIMESTAMP", "DOUBLE", "ARRAY_STRING", "BOOLEAN", "STRING"]
    );

    let a = archiver(&t, &dir, |_| {});
    a.pass();
    let files = parquet_files(&dir);
    // buy, view (one day) and purchase on two Berlin days: 23:30 UTC is March 2nd there.
    assert_eq!(files.len(), 4, "{files:?}");
    let next_day = format!("collection=purchase/date={berlin_next}");
    assert!(
        files
            .iter()
            .any(|f| f.display().to_string().contains(&next_day)),
        "{files:?}"
    );
    let after: Vec<Vec<Value>> = questions.iter().map(|q| sql(&t.addr, &k.read, q)).collect();
    assert_eq!(before, after);
    // The stream kept what is not old (the archive only trims what it holds, by age).
    // New events after archiving: the archive and the tail together, nothing twice.
    events(
        &t,
        &k,
        "d3",
        json!([{"key": "buy", "count": 5, "segmentation": {"plan": "pro"}}]),
    );
    assert_eq!(
        sql(&t.addr, &k.read, "SELECT count(*), sum(count) FROM buy"),
        vec![json!([3, 8])]
    );
    // Another engine reads the same files and counts the same.
    if let Some(rows) = duckdb(
        &dir,
        "SELECT count(*), sum(count), sum(sum) FROM events WHERE collection = 'buy'",
    ) {
        assert_eq!(rows, json!([[2, 3, 4.5]]));
    }
    if let Some(rows) = duckdb(
        &dir,
        "SELECT count(*) FROM events WHERE collection = 'purchase' AND paid",
    ) {
        assert_eq!(rows, json!([[1]]));
    }
    a.pass();
    assert_eq!(
        sql(&t.addr, &k.read, "SELECT count(*), sum(count) FROM buy"),
        vec![json!([3, 8])]
    );
    // Compaction: a day's files become one, the answers stay.
    let c = archiver(&t, &dir, |c| c.archive.compact_files = 2);
    events(&t, &k, "d4", json!([{"key": "buy", "count": 1}]));
    c.pass();
    let buy_files: Vec<PathBuf> = parquet_files(&dir)
        .into_iter()
        .filter(|f| f.display().to_string().contains("collection=buy/"))
        .collect();
    assert_eq!(buy_files.len(), 1, "{buy_files:?}");
    assert_eq!(
        sql(&t.addr, &k.read, "SELECT count(*), sum(count) FROM buy"),
        vec![json!([4, 9])]
    );
    if let Some(rows) = duckdb(
        &dir,
        "SELECT count(*), sum(count) FROM events WHERE collection = 'buy'",
    ) {
        assert_eq!(rows, json!([[4, 9]]));
    }
    // CSV export.
    let csv = post_json(
        &t.addr,
        "/query/execute",
        &[("read_key", &k.read)],
        &json!({"query": "SELECT plan, count(*) AS n FROM buy GROUP BY plan ORDER BY plan", "export_type": "CSV"}),
    );
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert_eq!(csv.body, "plan,n\r\nfree,1\r\npro,2\r\n,1\r\n");
    // Metadata and explain.
    let m = post_json(
        &t.addr,
        "/query/metadata",
        &[("read_key", &k.read)],
        &json!({"query": "SELECT plan, count(*) AS n FROM buy GROUP BY plan"}),
    );
    assert_eq!(
        m.json(),
        json!([{"name": "plan", "type": "STRING"}, {"name": "n", "type": "LONG"}])
    );
    let e = post_json(
        &t.addr,
        "/query/explain",
        &[("read_key", &k.read)],
        &json!({"query": "SELECT count(*) FROM buy"}),
    );
    assert_eq!(e.status, 200, "{}", e.body);
    assert!(
        e.json()["logical_plan"]
            .as_str()
            .is_some_and(|p| p.contains("buy")),
        "{}",
        e.body
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_key_sees_only_its_own_tables_and_queries_only() {
    let t = TestApp::spawn();
    let a = t.create_app("UTC");
    let b = t.create_app("UTC");
    events(&t, &a, "d1", json!([{"key": "secret", "count": 1}]));
    events(&t, &b, "d1", json!([{"key": "mine", "count": 1}]));
    assert_eq!(
        sql(&t.addr, &a.read, "SELECT count(*) FROM secret"),
        vec![json!([1])]
    );
    let refused = [
        "SELECT * FROM secret",
        "SELECT * FROM public.secret",
        "SELECT * FROM other.public.secret",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'data/archive/x.parquet'",
        "SELECT * FROM read_parquet('/tmp/x.parquet')",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM information_schema.tables",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/tmp/'",
        "COPY (SELECT 1) TO '/tmp/out.parquet'",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO mine VALUES (1)",
        "DROP TABLE mine",
        "SET datafusion.execution.batch_size = 1",
        "EXPLAIN SELECT 1",
        "SELECT 1; SELECT 2",
        "SELEKT 1",
    ];
    for q in refused {
        let r = sql_resp(&t.addr, &b.read, q);
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{q}: {}",
            r.body
        );
    }
    assert!(
        sql_resp(&t.addr, &b.read, "SELECT * FROM secret").json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not exist"))
    );
    // Keys: none, a wrong one, a write key.
    let none = post_json(
        &t.addr,
        "/query/execute",
        &[],
        &json!({"query": "SELECT 1"}),
    );
    assert_eq!(none.status, 403, "{}", none.body);
    assert_eq!(sql_resp(&t.addr, "nope", "SELECT 1").status, 403);
    assert_eq!(sql_resp(&t.addr, &a.write, "SELECT 1").status, 403);
    // Bad bodies.
    for body in [
        json!({}),
        json!({"query": 5}),
        json!({"query": "SELECT 1", "limit": -1}),
        json!({"query": "SELECT 1", "export_type": "XML"}),
        json!({"query": "SELECT 1", "export_type": "AVRO"}),
    ] {
        let r = post_json(&t.addr, "/query/execute", &[("read_key", &a.read)], &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    // A query without tables works; the master key reads too.
    assert_eq!(
        sql(&t.addr, &a.master, "SELECT 1 + 1 AS two"),
        vec![json!([2])]
    );
}

/// 64 million rows, each with a string built and compared: seconds of work.
const SLOW: &str = "SELECT count(*) FROM buy a, buy b, buy c, buy d, buy e, buy f \
    WHERE concat(a.n, b.n, c.n, d.n, e.n, f.n) = 'x'";

#[test]
fn every_query_limit_answers_a_clear_error() {
    let t = TestApp::spawn_with(|c| {
        c.sql.max_rows = 3;
        c.sql.timeout = Duration::from_millis(300);
        c.sql.memory_bytes = 1 << 20;
        c.sql.per_app = 1;
        c.sql.tail_entries = 50;
    });
    let k = t.create_app("UTC");
    for i in 0..20 {
        events(
            &t,
            &k,
            &format!("d{i}"),
            json!([{"key": "buy", "count": 1, "segmentation": {"n": i.to_string()}}]),
        );
    }
    // Rows: the answer is cut at the limit; asking for more than the maximum is refused.
    assert_eq!(sql(&t.addr, &k.read, "SELECT n FROM buy").len(), 3);
    let over = post_json(
        &t.addr,
        "/query/execute",
        &[("read_key", &k.read)],
        &json!({"query": "SELECT n FROM buy", "limit": 4}),
    );
    assert_eq!(over.status, 400);
    assert!(over.body.contains("TALLY_SQL_MAX_ROWS"), "{}", over.body);
    // Memory: sorting 20 rows of 100 kB each needs more than 1 MiB.
    let big = sql_resp(
        &t.addr,
        &k.read,
        "SELECT n, repeat('x', 100000) AS pad FROM buy ORDER BY n",
    );
    assert_eq!(big.status, 400, "{}", big.body);
    assert!(big.body.contains("TALLY_SQL_MEMORY_MB"), "{}", big.body);
    // Time: a query that cannot finish in 300 ms is cancelled.
    let slow = sql_resp(&t.addr, &k.read, SLOW);
    assert_eq!(slow.status, 400, "{}", slow.body);
    assert!(slow.body.contains("TALLY_SQL_TIMEOUT_MS"), "{}", slow.body);
    // One query at a time for this app: a second one meanwhile is told to wait.
    let addr = t.addr.clone();
    let read = k.read.clone();
    // The slow one tries again while the probe below holds the only permit.
    let running = std::thread::spawn(move || loop {
        let r = sql_resp(&addr, &read, SLOW);
        if r.status != 429 {
            return r.status;
        }
    });
    let busy = wait_until(
        "a second query to be refused",
        Duration::from_secs(10),
        || {
            let r = sql_resp(&t.addr, &k.read, "SELECT 1");
            (r.status == 429).then_some(r)
        },
    );
    assert!(
        busy.body.contains("TALLY_SQL_CONCURRENT_PER_APP"),
        "{}",
        busy.body
    );
    assert_eq!(running.join().ok(), Some(400));
    // The stream's tail: more entries waiting than a query may read.
    for i in 0..40 {
        events(
            &t,
            &k,
            &format!("e{i}"),
            json!([{"key": "buy", "count": 1}]),
        );
    }
    // A cancelled query holds its permit until DataFusion stops it, at its next yield.
    let tail = wait_until(
        "the cancelled query to let go",
        Duration::from_secs(60),
        || {
            let r = sql_resp(&t.addr, &k.read, "SELECT count(*) FROM buy");
            (r.status != 429).then_some(r)
        },
    );
    assert_eq!(tail.status, 400, "{}", tail.body);
    assert!(
        tail.body.contains("TALLY_SQL_TAIL_ENTRIES"),
        "{}",
        tail.body
    );
}

#[test]
fn forgetting_a_device_removes_its_rows_from_the_archive() {
    let dir = temp_dir("archive-forget");
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    events(&t, &k, "keep", json!([{"key": "buy", "count": 1}]));
    events(
        &t,
        &k,
        "gone",
        json!([{"key": "buy", "count": 1}, {"key": "buy", "count": 1}]),
    );
    let a = archiver(&t, &dir, |_| {});
    a.pass();
    assert_eq!(
        sql(&t.addr, &k.read, "SELECT count(*) FROM buy"),
        vec![json!([3])]
    );
    let r = post_json(
        &t.addr,
        "/project/device",
        &[("master_key", &k.master)],
        &json!({"device_id": "gone"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    a.pass();
    assert_eq!(
        sql(
            &t.addr,
            &k.read,
            "SELECT _user, count(*) FROM buy GROUP BY _user"
        ),
        vec![json!(["keep", 1])]
    );
    if let Some(rows) = duckdb(&dir, "SELECT count(*) FROM events WHERE _user = 'gone'") {
        assert_eq!(rows, json!([[0]]));
    }
    // Deleting the project removes its archive (the archiver's chores).
    let del = post_json(
        &t.addr,
        "/project/delete",
        &[("master_key", &k.master)],
        &json!({}),
    );
    assert_eq!(del.status, 200, "{}", del.body);
    a.chores();
    assert!(parquet_files(&dir).is_empty(), "{:?}", parquet_files(&dir));
    std::fs::remove_dir_all(&dir).ok();
}

/// The archive state's `done` mark and whether a batch is in flight, and the stream's
/// last id, read from Redis.
fn archive_progress(t: &TestApp, app: &str) -> (String, bool, String) {
    let id = tally_model::keys::AppId::parse(app).expect("app id");
    let nodes = t.nodes();
    let state = tally_model::keys::archive_state(&id);
    let node = if nodes.len() > 1 {
        nodes[node_of(&nodes, &state)]
    } else {
        nodes[0]
    };
    let (done, intent): (Option<String>, Option<String>) = redis_on(
        node,
        redis::cmd("HMGET").arg(&state).arg("done").arg("intent"),
    );
    let info: Vec<redis::Value> = redis_on(
        node,
        redis::cmd("XINFO")
            .arg("STREAM")
            .arg(tally_model::keys::stream(&id)),
    );
    let mut last = String::new();
    for pair in info.chunks(2) {
        if let [redis::Value::BulkString(k), redis::Value::BulkString(v)] = pair {
            if k == b"last-generated-id" {
                last = String::from_utf8_lossy(v).into_owned();
            }
        }
    }
    (done.unwrap_or_default(), intent.is_some(), last)
}

#[test]
fn archiving_is_exactly_once_with_archivers_killed_mid_batch() {
    let dir = temp_dir("archive-kill");
    let t = TestApp::spawn();
    let k = t.create_app("UTC");
    let url = if t.cluster.is_empty() {
        t.redis.url()
    } else {
        t.cluster[0].clone()
    };
    let dir_s = dir.display().to_string();
    let mut env: Vec<(&str, String)> = vec![
        ("TALLY_WORKERS", "1".into()),
        ("TALLY_ARCHIVE_URL", dir_s.clone()),
        // Small batches, short leases and frequent compaction: kills land mid-batch,
        // mid-compaction, and while two archivers work the same app.
        ("TALLY_ARCHIVE_BATCH", "7".into()),
        ("TALLY_ARCHIVE_INTERVAL_MS", "5".into()),
        ("TALLY_ARCHIVE_LEASE_MS", "20".into()),
        ("TALLY_ARCHIVE_COMPACT_FILES", "3".into()),
    ];
    if !t.cluster.is_empty() {
        env.push(("REDIS_CLUSTER_URLS", t.cluster.join(",")));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut archivers = [
        spawn_binary("aggregator", &url, &env),
        spawn_binary("aggregator", &url, &env),
    ];
    let (addr, write) = (t.addr.clone(), k.write.clone());
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        for i in 0..300u64 {
            let events: Vec<Value> = (0..(1 + i % 3))
                .map(|j| {
                    sent += 1;
                    json!({"key": "tap", "count": 1, "segmentation": {"n": format!("{i}-{j}")}})
                })
                .collect();
            let q = qs(&[
                ("app_key", write.clone()),
                ("device_id", format!("d{}", i % 17)),
                ("timestamp", NOW.to_string()),
                ("events", Value::from(events).to_string()),
            ]);
            let r = http(&addr, "GET", &format!("/i?{q}"), &[], b"");
            assert_eq!(r.status, 200, "{}", r.body);
            std::thread::sleep(Duration::from_millis(3));
        }
        sent
    });
    // SIGKILL an archiver every few dozen milliseconds while events arrive, and start
    // it again.
    for round in 0..12usize {
        std::thread::sleep(Duration::from_millis(40 + 17 * (round as u64 % 4)));
        let i = round % 2;
        let old = std::mem::replace(&mut archivers[i], spawn_binary("aggregator", &url, &env));
        drop(old);
    }
    let sent = writer.join().expect("writer");
    wait_until(
        "the archive to catch up with the stream",
        Duration::from_secs(60),
        || {
            let (done, busy, last) = archive_progress(&t, &k.id);
            (!busy && !last.is_empty() && done == last).then_some(())
        },
    );
    drop(archivers);
    // Every event once: in Tally's SQL (the archive alone now), and in DuckDB's reading of
    // the files.
    let expected = json!([[sent, sent]]);
    let rows = sql(
        &t.addr,
        &k.read,
        "SELECT count(*), count(DISTINCT n) FROM tap",
    );
    assert_eq!(Value::from(rows), expected);
    if let Some(rows) = duckdb(
        &dir,
        "SELECT count(*), count(DISTINCT n) FROM events WHERE collection = 'tap'",
    ) {
        assert_eq!(rows, expected);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_materialized_view_equals_its_query_and_is_computed_again() {
    let dir = temp_dir("archive-views");
    let url = dir.display().to_string();
    let t = TestApp::spawn_with(|c| {
        c.archive.url = Some(url);
        c.sql.view_min_interval = Duration::ZERO;
        c.sql.views = 1;
    });
    let k = t.create_app("UTC");
    for (d, plan, n) in [("d1", "pro", 2), ("d2", "free", 1), ("d3", "pro", 4)] {
        events(
            &t,
            &k,
            d,
            json!([{"key": "buy", "count": n, "segmentation": {"plan": plan}}]),
        );
    }
    let mv = |path: &str, key: &str, body: Value| {
        post_json(&t.addr, path, &[("master_key", key)], &body)
    };
    let create = json!({"table_name": "by_plan", "name": "Buys by plan", "update_interval": "PT1M",
        "query": "SELECT plan, count(*) AS n, sum(count) AS c FROM buy GROUP BY plan"});
    let r = mv("/materialized-view/create", &k.master, create.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    let brute = "SELECT plan, count(*) AS n, sum(count) AS c FROM buy GROUP BY plan ORDER BY plan";
    let view = "SELECT plan, n, c FROM by_plan ORDER BY plan";
    assert_eq!(sql(&t.addr, &k.read, view), sql(&t.addr, &k.read, brute));
    assert_eq!(
        sql(&t.addr, &k.read, view),
        vec![json!(["free", 1, 1]), json!(["pro", 2, 6])]
    );
    // Kept, not live: new events show after the view is computed again.
    events(
        &t,
        &k,
        "d4",
        json!([{"key": "buy", "count": 3, "segmentation": {"plan": "free"}}]),
    );
    assert_eq!(
        sql(&t.addr, &k.read, view),
        vec![json!(["free", 1, 1]), json!(["pro", 2, 6])]
    );
    let a = archiver(&t, &dir, |c| c.sql.view_min_interval = Duration::ZERO);
    a.pass();
    assert_eq!(
        sql(&t.addr, &k.read, view),
        vec![json!(["free", 1, 1]), json!(["pro", 2, 6])]
    );
    t.clock.advance_secs(61);
    a.pass();
    assert_eq!(sql(&t.addr, &k.read, view), sql(&t.addr, &k.read, brute));
    assert_eq!(
        sql(&t.addr, &k.read, view),
        vec![json!(["free", 2, 4]), json!(["pro", 2, 6])]
    );
    // get, list, schema (read key).
    let read = |path: &str, body: Value| post_json(&t.addr, path, &[("read_key", &k.read)], &body);
    let got = read("/materialized-view/get", json!({"table_name": "by_plan"})).json();
    assert_eq!(got["query"], create["query"]);
    assert_eq!(got["name"], json!("Buys by plan"));
    assert_eq!(got["update_interval"], json!("PT1M"));
    assert!(got["last_update"].is_i64(), "{got}");
    let list = read("/materialized-view/list", json!({})).json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let schema = read("/materialized-view/schema", json!({"names": ["by_plan"]})).json();
    assert_eq!(
        schema,
        json!([{"name": "by_plan", "fields": [
            {"name": "plan", "type": "STRING"}, {"name": "n", "type": "LONG"}, {"name": "c", "type": "LONG"}]}])
    );
    // A recipe carries the view as it was created; installing one is refused, clearly.
    let recipe = http(
        &t.addr,
        "GET",
        "/recipe/export",
        &[("master_key", &k.master)],
        b"",
    )
    .json();
    let mut created = create.clone();
    created["incremental"] = json!(false);
    created["options"] = json!({});
    assert_eq!(recipe["materialized_views"], json!([created]));
    let install = mv("/recipe/install", &k.master, recipe);
    assert_eq!(install.status, 400, "{}", install.body);
    assert!(
        install.body.contains("/materialized-view/create"),
        "{}",
        install.body
    );
    // Refusals, each writing nothing.
    for (body, status) in [
        (create.clone(), 400),
        (
            json!({"table_name": "x", "name": "x", "query": "SELECT * FROM nowhere"}),
            400,
        ),
        (
            json!({"table_name": "bad name", "name": "x", "query": "SELECT 1"}),
            400,
        ),
        (
            json!({"table_name": "buy", "name": "x", "query": "SELECT 1"}),
            400,
        ),
        (
            json!({"table_name": "_users", "name": "x", "query": "SELECT 1"}),
            400,
        ),
        (
            json!({"table_name": "x", "name": "x", "query": "SELECT 1", "incremental": true}),
            400,
        ),
        (
            json!({"table_name": "x", "name": "x", "query": "SELECT 1", "update_interval": "soon"}),
            400,
        ),
        (
            json!({"table_name": "x", "name": "x", "query": "DROP TABLE buy"}),
            400,
        ),
        (json!({"table_name": "x"}), 400),
    ] {
        let r = mv("/materialized-view/create", &k.master, body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    assert_eq!(
        mv(
            "/materialized-view/create",
            &k.read,
            json!({"table_name": "y", "name": "y", "query": "SELECT 1"})
        )
        .status,
        403
    );
    assert_eq!(
        read("/materialized-view/list", json!({}))
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        read("/materialized-view/get", json!({"table_name": "nope"})).status,
        404
    );
    // Deleted: gone from SQL and from the archive.
    let file = dir
        .join(format!("app={}", k.id))
        .join("view=by_plan")
        .join("data.parquet");
    assert!(file.exists(), "{}", file.display());
    let del = mv(
        "/materialized-view/delete",
        &k.master,
        json!({"table_name": "by_plan"}),
    );
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(sql_resp(&t.addr, &k.read, view).status, 400);
    assert!(!file.exists());
    assert_eq!(
        mv(
            "/materialized-view/delete",
            &k.master,
            json!({"table_name": "by_plan"})
        )
        .status,
        404
    );
    // The project's limit of views (TALLY_VIEWS = 1 here): the second is refused, unwritten.
    let one = json!({"table_name": "one", "name": "one", "query": "SELECT 1 AS x"});
    assert_eq!(mv("/materialized-view/create", &k.master, one).status, 200);
    let two = mv(
        "/materialized-view/create",
        &k.master,
        json!({"table_name": "two", "name": "two", "query": "SELECT 2 AS x"}),
    );
    assert_eq!(two.status, 400, "{}", two.body);
    assert!(two.body.contains("TALLY_VIEWS"), "{}", two.body);
    assert!(!dir.join(format!("app={}", k.id)).join("view=two").exists());
    std::fs::remove_dir_all(&dir).ok();
}
