//! Tally on a real three-master Redis Cluster: keys spread over every master, each app's
//! keys stay in its slot, and a master killed mid-load fails only its own apps' requests
//! (503) and loses nothing it acknowledged once it is back.
//!
//! The Countly and aggregator suites also run whole on a cluster: `deploy/test` runs them a
//! second time with `TALLY_TEST_REDIS=cluster`.

mod common;
use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tally_model::keys::{self, AppId};
use tally_redis::pool::slot;

#[derive(Default)]
struct Seen {
    sent: AtomicU64,
    acked: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
}

fn sessions(t: &TestApp, k: &Keys) -> (i64, i64) {
    let s = t.o(k, "sessions", &[]);
    let n = |f: &str| at(&s, &["2024", f]).as_i64().unwrap_or(0);
    (n("t"), n("u"))
}

#[test]
fn keys_spread_over_three_masters_and_a_killed_master_loses_nothing() {
    let cluster = TestCluster::start("kill", 3, "always");
    // Apps are looked up once and then served from the cache, as in production.
    let mut t = TestApp::spawn_on_cluster(cluster, |c| {
        c.app_cache_ttl = Duration::from_secs(600);
    });
    let registry = node_of(&t.nodes(), keys::APPS);

    // Apps until every master owns at least two.
    let mut apps: Vec<(Keys, usize)> = Vec::new();
    for _ in 0..200 {
        let k = t.create_app("Europe/Berlin");
        let id = AppId::parse(&k.id).expect("an app id");
        let node = node_of(&t.nodes(), &keys::stream(&id));
        apps.push((k, node));
        let per_node = (0..3).map(|n| apps.iter().filter(|a| a.1 == n).count());
        if per_node.clone().all(|c| c >= 2) {
            break;
        }
    }
    for (k, _) in &apps {
        t.ok(
            k,
            &[
                p("device_id", "first"),
                p("begin_session", 1),
                p("timestamp", NOW),
            ],
        );
    }
    // Every master holds keys, and every key of an app is on the app's master.
    for (n, node) in t.nodes().into_iter().enumerate() {
        let keys: Vec<String> = redis_on(node, redis::cmd("KEYS").arg("*"));
        assert!(!keys.is_empty(), "master {n} holds no keys");
        for key in keys {
            let owner = apps.iter().find(|(k, _)| {
                AppId::parse(&k.id)
                    .is_some_and(|id| slot(key.as_bytes()) == slot(keys::stream(&id).as_bytes()))
            });
            match owner {
                Some((_, home)) => assert_eq!(*home, n, "{key} is off its app's master"),
                None => assert_eq!(
                    slot(key.as_bytes()),
                    slot(keys::APPS.as_bytes()),
                    "{key} belongs to no app and is not in the registry's slot"
                ),
            }
        }
    }

    // Load on every app; kill a master that does not hold the registry, then bring it back.
    let victim = (0..3).find(|n| *n != registry).unwrap_or(1);
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<HashMap<String, Seen>> = Arc::new(
        apps.iter()
            .map(|(k, _)| (k.id.clone(), Seen::default()))
            .collect(),
    );
    let targets: Vec<(String, String)> = apps
        .iter()
        .map(|(k, _)| (k.id.clone(), k.write.clone()))
        .collect();
    let addr = t.addr.clone();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, seen, targets, addr) =
                (stop.clone(), seen.clone(), targets.clone(), addr.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    for (id, key) in targets.iter().skip(w).step_by(4) {
                        i += 1;
                        let path = format!(
                            "/i?{}",
                            qs(&[
                                p("app_key", key),
                                p("device_id", format!("w{w}-{i}")),
                                p("begin_session", 1),
                                p("timestamp", NOW),
                            ])
                        );
                        let Some(s) = seen.get(id) else { continue };
                        s.sent.fetch_add(1, Ordering::SeqCst);
                        match try_http(&addr, "GET", &path, &[], b"") {
                            Ok(r) if r.status == 200 => s.acked.fetch_add(1, Ordering::SeqCst),
                            Ok(r) if r.status == 503 => {
                                assert!(r.json()["result"].is_string(), "{}", r.body);
                                s.unavailable.fetch_add(1, Ordering::SeqCst)
                            }
                            _ => s.other.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    t.node_mut(victim).kill();
    std::thread::sleep(Duration::from_millis(700));
    // Still ready (the other masters' apps are served), but degraded.
    let ready = t.get("/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["status"], "degraded", "{}", ready.body);
    assert_eq!(ready.json()["redis_down"].as_array().map(Vec::len), Some(1));
    std::thread::sleep(Duration::from_millis(800));
    t.node_mut(victim).restart().expect("the master restarts");
    wait_cluster_ok(&t.nodes());
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(t.get("/ready").json()["status"], "ready");
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("load thread");
    }

    let mut victim_failures = 0;
    for (k, node) in &apps {
        let s = &seen[&k.id];
        let (sent, acked, unavailable, other) = (
            s.sent.load(Ordering::SeqCst) as i64,
            s.acked.load(Ordering::SeqCst) as i64,
            s.unavailable.load(Ordering::SeqCst),
            s.other.load(Ordering::SeqCst),
        );
        assert_eq!(other, 0, "app {}: answers other than 200 and 503", k.id);
        let (total, users) = sessions(&t, k);
        // `first` plus every distinct device of the load.
        if *node == victim {
            victim_failures += unavailable;
            assert!(
                (acked + 1..=sent + 1).contains(&total),
                "app {} on the killed master: acked {acked}, counted {total}, sent {sent}",
                k.id
            );
        } else {
            assert_eq!(unavailable, 0, "app {} on a live master got 503s", k.id);
            assert_eq!(total, acked + 1, "app {} on a live master", k.id);
        }
        assert_eq!(users, total, "app {}: one session per device", k.id);
        assert!(acked > 0, "app {} was never written", k.id);
    }
    eprintln!("503s for the killed master's apps: {victim_failures}");
    assert!(victim_failures > 0, "the kill did not hit the load");

    // Writes after the return land on the restarted master.
    let (k, _) = apps
        .iter()
        .find(|(_, n)| *n == victim)
        .expect("an app on the victim");
    let before = sessions(&t, k).0;
    t.ok(
        k,
        &[
            p("device_id", "after"),
            p("begin_session", 1),
            p("timestamp", NOW),
        ],
    );
    assert_eq!(sessions(&t, k).0, before + 1);
}
