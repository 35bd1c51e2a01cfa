//! The real `countly-sdk-web` (from npm, pinned in tests/sdk/package.json) in headless
//! Chromium against a running Tally: user details and a device id change with merge.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

#[test]
fn web_sdk_change_id_with_merge_and_user_details() {
    if let Err(why) = js_ready(&["countly-sdk-web", "playwright-core"], true) {
        eprintln!("SKIPPED web sdk test: {why}");
        return;
    }
    let (t, now_ms) = spawn_on_wall_clock();
    let k = t.create_app("UTC");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/web_change_id.js");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", t.addr))
        .arg(&k.write)
        .arg(&k.read)
        .arg("visitor-9")
        .arg("grace")
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "web scenario failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    assert_eq!(seen["errors"], json!([]), "{seen}");
    let props = &seen["user"]["properties"];
    assert_eq!(props["name"], json!("Grace Hopper"), "{seen}");
    assert_eq!(props["byear"], json!(1906), "{seen}");
    assert_eq!(props["plan"], json!("pro"), "{seen}");
    assert_eq!(props["visits"], json!(1), "{seen}");
    assert_eq!(props["badges"], json!(["pioneer"]), "{seen}");
    assert_eq!(
        seen["old_status"],
        json!(404),
        "the anonymous id is forgotten: {seen}"
    );
    // One user, counted once.
    let year = chrono::Datelike::year(&tally_model::time::local_date(
        now_ms / 1000,
        chrono_tz::UTC,
    ));
    let s = t.o(&k, "sessions", &[p("period", "hour")]);
    assert_eq!(at(&s, &[&year.to_string(), "n"]), &json!(1), "{s}");
    assert_eq!(
        t.o(&k, "total_users", &[p("period", "hour")]),
        json!([{"_id": "users", "u": 1}])
    );
}
