//! The real `countly-sdk-web` (from npm, pinned in tests/sdk/package.json) in headless
//! Chromium against a running Tally: user details and a device id change with merge.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn browser_ready() -> Result<(), String> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/node_modules/countly-sdk-web");
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is not installed".into());
    }
    if !sdk.exists() {
        return Err(
            "tests/sdk/node_modules is missing: run `npm ci --prefix tests/sdk` (deploy/test does)"
                .into(),
        );
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} is missing: apt-get install chromium (deploy/test does)"
        ));
    }
    Ok(())
}

#[test]
fn web_sdk_change_id_with_merge_and_user_details() {
    if let Err(why) = browser_ready() {
        eprintln!("SKIPPED web sdk test: {why}");
        return;
    }
    let t = TestApp::spawn();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    t.clock.set_ms(now_ms);
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
