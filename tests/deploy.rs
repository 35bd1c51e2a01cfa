//! What in deploy/ can run here, runs: redis.conf loads into a real redis-server,
//! nginx.conf routes real traffic to the split services, and redis-cluster.conf makes a
//! three-master cluster the split services run on with `REDIS_CLUSTER_URLS` alone.

mod common;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tally_redis::embedded::free_port;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// nginx stops with its workers on SIGTERM (SIGKILL would orphan the workers).
struct Nginx(Child);
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// A redis-server on `conf` (a file under deploy/), with only the port and directory of
/// this test, once it answers `PING`: (the process, its address).
fn redis_with_conf(conf: &str, tag: &str) -> (Proc, String) {
    let dir = temp_dir(tag);
    std::fs::create_dir_all(&dir).ok();
    let port = free_port().expect("port");
    let child = Command::new("redis-server")
        .arg(root().join(conf))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let addr = format!("127.0.0.1:{port}");
    let url = format!("redis://{addr}/");
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_err()
    {
        assert!(Instant::now() < deadline, "redis with {conf} did not start");
        std::thread::sleep(Duration::from_millis(30));
    }
    (Proc(child), addr)
}

/// A Redis setting as `CONFIG GET` reports it (empty when unknown).
fn config_get(c: &mut redis::Connection, key: &str) -> String {
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query(c)
        .unwrap_or_default();
    v.get(1).cloned().unwrap_or_default()
}

/// The production redis.conf.
fn redis_with_deploy_conf() -> (Proc, String) {
    let (proc, addr) = redis_with_conf("deploy/redis.conf", "deploy-redis");
    (proc, format!("redis://{addr}/"))
}

#[test]
fn redis_conf_loads_with_the_documented_settings() {
    let (_redis, url) = redis_with_deploy_conf();
    let mut c = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    assert_eq!(config_get(&mut c, "appendonly"), "yes");
    assert_eq!(config_get(&mut c, "appendfsync"), "everysec");
    assert_eq!(config_get(&mut c, "maxmemory-policy"), "noeviction");
    assert_eq!(
        config_get(&mut c, "auto-aof-rewrite-min-size"),
        "1073741824"
    );
    assert_eq!(config_get(&mut c, "rdbcompression"), "no");
}

/// `tally` without `REDIS_URL` (the first of README's two commands) starts its own
/// redis-server, with AOF and the configured rewrite threshold, and stops it on SIGTERM;
/// a setting that is not a number, or out of range, stops it at once with exit code 2, and
/// a `rediss://` URL at once with a clear message.
#[test]
fn tally_alone_runs_its_embedded_redis_as_configured() {
    let dir = temp_dir("embedded");
    let data = dir.display().to_string();
    for (name, value) in [
        ("TALLY_AOF_REWRITE_MIN_MB", "lots"),
        ("TALLY_MAX_CONNECTIONS", "0"),
        ("TALLY_CLIENT_TIMEOUT_MS", "-1"),
    ] {
        let bad = Command::new(binary("tally"))
            .env_remove("REDIS_URL")
            .env("TALLY_DATA_DIR", &data)
            .env(name, value)
            .stderr(Stdio::piped())
            .output()
            .expect("run tally");
        assert_eq!(bad.status.code(), Some(2), "{name}={value}");
        assert!(String::from_utf8_lossy(&bad.stderr).contains(name));
    }
    // TLS is not served by Tally's transport: refused at start-up, saying so, rather than
    // failing every request later.
    for url in ["rediss://127.0.0.1:6379", "REDISS://127.0.0.1:6379/0"] {
        let tls = Command::new(binary("tally"))
            .env("REDIS_URL", url)
            .env("TALLY_BIND", "127.0.0.1:0")
            .stderr(Stdio::piped())
            .output()
            .expect("run tally");
        assert_eq!(tls.status.code(), Some(1), "{url}");
        let err = String::from_utf8_lossy(&tls.stderr);
        assert!(err.contains("TLS (rediss://) is not supported"), "{err}");
    }

    let addr = format!("127.0.0.1:{}", free_port().expect("port"));
    let env = [
        ("TALLY_DATA_DIR", data.as_str()),
        ("TALLY_AOF_REWRITE_MIN_MB", "256"),
    ];
    let mut tally = Proc(start_binary("tally", "", &addr, &env));
    wait_http(&addr, "/ping");
    let url = std::fs::read_to_string(dir.join("redis.url")).expect("tally leaves its redis url");
    let mut c = redis::Client::open(url.trim())
        .and_then(|c| c.get_connection())
        .expect("connect to the embedded redis");
    assert_eq!(config_get(&mut c, "appendonly"), "yes");
    assert_eq!(config_get(&mut c, "auto-aof-rewrite-min-size"), "268435456");
    assert_eq!(config_get(&mut c, "rdbcompression"), "no");
    drop(c);
    let pid = tally.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tally.0.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "tally did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        redis::Client::open(url.trim())
            .and_then(|c| c.get_connection())
            .is_err(),
        "the embedded redis-server stopped with tally"
    );
}

/// A client that sends broken request lines gets 400s and leaves no trace in the server's
/// log: actix would log each at ERROR, a line per request for anyone to fill the log with.
#[test]
fn broken_requests_do_not_fill_the_log() {
    let (_redis, url) = redis_with_deploy_conf();
    let dir = temp_dir("quiet-log");
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("stderr.log");
    let addr = format!("127.0.0.1:{}", free_port().expect("port"));
    let tally = Proc(
        binary_command("tally", &url, &addr, &[])
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start tally"),
    );
    wait_http(&addr, "/ping");
    let broken: [&[u8]; 4] = [
        b"GET /i?device_id=a\"b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /i?metrics=<x> HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /i?device_id=\x80\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ];
    for _ in 0..20 {
        for req in broken {
            let answer = raw(&addr, req);
            assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(req));
        }
    }
    assert_eq!(http(&addr, "GET", "/ping", &[], b"").status, 200);
    drop(tally);
    let written = std::fs::read_to_string(&log).expect("read the log");
    assert!(
        !written.contains("parse error"),
        "the log holds the clients' mistakes:\n{written}"
    );
}

#[test]
fn nginx_conf_routes_to_the_split_services() {
    let Ok(out) = Command::new("nginx").arg("-v").output() else {
        panic!("nginx is not installed (deploy/test installs it)");
    };
    assert!(out.status.success());
    let (_redis, url) = redis_with_deploy_conf();
    let env = [("TALLY_WORKERS", "1")];
    let (_c, collector) = spawn_binary("collector", &url, &env);
    let (_r, reader) = spawn_binary("reader", &url, &env);
    let (_a, aggregator) = spawn_binary("aggregator", &url, &env);
    let dir = temp_dir("nginx");
    std::fs::create_dir_all(&dir).ok();
    let front = format!("127.0.0.1:{}", free_port().expect("port"));
    let conf = std::fs::read_to_string(root().join("deploy/nginx.conf"))
        .expect("deploy/nginx.conf")
        .replace("server collector:3001;", &format!("server {collector};"))
        .replace("server reader:3001;", &format!("server {reader};"))
        .replace("server aggregator:3001;", &format!("server {aggregator};"))
        .replace("listen 8080;", &format!("listen {front};"))
        .replace(
            "pid /tmp/tally-nginx.pid;",
            &format!("pid {}/nginx.pid;", dir.display()),
        );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write conf");
    let _nginx = Nginx(
        Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while try_http(&front, "GET", "/ping", &[], b"").is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Everything through the one front address.
    let Keys {
        write: wk,
        read: rk,
        ..
    } = create_project(&front, "via nginx", "UTC");
    // Rakam's collection goes to the collector, its schema to the aggregator, and its
    // clients' `read_key` header (an underscore in the name) gets through.
    let event = json!({"collection": "signup", "api": {"api_key": wk},
        "properties": {"_user": "n3", "plan": "pro"}})
    .to_string();
    let r = http(
        &front,
        "POST",
        "/event/collect",
        &[("Content-Type", "application/json")],
        event.as_bytes(),
    );
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    let r = http(
        &front,
        "POST",
        "/project/collection",
        &[("read_key", &rk), ("Content-Type", "application/json")],
        b"",
    );
    assert_eq!((r.status, r.json()), (200, json!(["signup"])), "{}", r.body);
    let r = http(
        &front,
        "GET",
        &format!("/i?app_key={wk}&device_id=n1&begin_session=1"),
        &[],
        b"",
    );
    assert_eq!(
        (r.status, r.json()["result"].clone()),
        (200, json!("Success")),
        "{}",
        r.body
    );
    let bulk =
        json!({"app_key": wk, "requests": [{"device_id": "n2", "begin_session": 1}]}).to_string();
    assert_eq!(
        http(
            &front,
            "POST",
            "/i/bulk",
            &[("Content-Type", "application/json")],
            bulk.as_bytes()
        )
        .status,
        200
    );
    let s = http(
        &front,
        "GET",
        &format!("/o?app_key={wk}&api_key={rk}&method=sessions&action=refresh"),
        &[],
        b"",
    )
    .json();
    let year = s
        .as_object()
        .and_then(|m| m.keys().find(|k| k.len() == 4).cloned())
        .unwrap_or_default();
    assert_eq!(s[&year]["u"], json!(2), "{s}");
    assert!(http(&front, "GET", "/dashboard", &[], b"")
        .body
        .contains("Tally dashboard"));
    // Each request reached the service that owns its path.
    let count = |addr: &str, route: &str| {
        let m = http(addr, "GET", "/metrics", &[], b"").body;
        m.lines()
            .filter(|l| l.starts_with(&format!("tally_http_requests_total{{route=\"{route}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(count(&collector, "/i"), 1);
    assert_eq!(count(&collector, "/i/bulk"), 1);
    assert_eq!(count(&reader, "/o"), 1);
    assert_eq!(count(&aggregator, "/project/create"), 1);
    assert_eq!(count(&collector, "/event/collect"), 1);
    assert_eq!(count(&aggregator, "/project/collection"), 1);
}

/// Three masters from deploy/redis-cluster.conf (only port, address and directory
/// changed), joined with `redis-cli --cluster create` as its comment says.
fn cluster_with_deploy_conf() -> (Vec<Proc>, String) {
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..3 {
        let (node, addr) =
            redis_with_conf("deploy/redis-cluster.conf", &format!("deploy-cluster-{i}"));
        nodes.push(node);
        addrs.push(addr);
    }
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = addrs.iter().all(|a| {
            redis::Client::open(format!("redis://{a}/"))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|i| i.contains("cluster_state:ok"))
        });
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
        std::thread::sleep(Duration::from_millis(100));
    }
    let seeds = addrs
        .iter()
        .map(|a| format!("redis://{a}"))
        .collect::<Vec<_>>()
        .join(",");
    (nodes, seeds)
}

#[test]
fn split_services_run_on_the_example_redis_cluster() {
    let (_nodes, seeds) = cluster_with_deploy_conf();
    // REDIS_CLUSTER_URLS alone (REDIS_URL empty) configures every service.
    let env = [
        ("TALLY_WORKERS", "1"),
        ("REDIS_CLUSTER_URLS", seeds.as_str()),
        ("TALLY_AGG_BLOCK_MS", "100"),
    ];
    let (_c, collector) = spawn_binary("collector", "", &env);
    let (_r, reader) = spawn_binary("reader", "", &env);
    let (_a, aggregator) = spawn_binary("aggregator", "", &env);
    for addr in [&collector, &reader, &aggregator] {
        assert_eq!(http(addr, "GET", "/ready", &[], b"").status, 200, "{addr}");
    }
    let mut apps = Vec::new();
    for n in 0..6 {
        let k = create_project(&aggregator, &format!("c{n}"), "UTC");
        apps.push((k.id, k.write, k.read));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (n, (_, wk, _)) in apps.iter().enumerate() {
        for d in 0..=n {
            let path = format!(
                "/i?{}",
                qs(&[
                    p("app_key", wk),
                    p("device_id", format!("d{d}")),
                    p("begin_session", 1),
                    p("timestamp", now),
                    p("events", json!([{"key": "buy", "count": 2}]).to_string()),
                ])
            );
            let r = http(&collector, "GET", &path, &[], b"");
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    for (n, (id, wk, rk)) in apps.iter().enumerate() {
        let q = qs(&[
            p("app_key", wk),
            p("api_key", rk),
            p("method", "events"),
            p("event", "buy"),
        ]);
        let v = http(&reader, "GET", &format!("/o?{q}"), &[], b"").json();
        let year = chrono::DateTime::from_timestamp(now as i64, 0)
            .map(|t| chrono::Datelike::year(&t))
            .unwrap_or(0);
        assert_eq!(
            v[year.to_string()]["c"],
            json!(2 * (n + 1)),
            "app {id}: {v}"
        );
        // The aggregators' consumer rolls each app's stream up on its own node.
        let deadline = Instant::now() + Duration::from_secs(20);
        while rolled_up(&aggregator, id, rk, "buy", 1) != 2 * (n + 1) as i64 {
            assert!(
                Instant::now() < deadline,
                "app {id} was not rolled up: {}",
                rolled_up(&aggregator, id, rk, "buy", 1)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
