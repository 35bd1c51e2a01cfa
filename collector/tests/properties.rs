//! Property tests of the request parser and the increment planner: no input makes them
//! panic, and whatever they accept plans only well-formed writes. Bounded for CI
//! (`PROPTEST_CASES`, default 256 per property).

use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;
use tally_collector::params::Params;
use tally_collector::plan::{plan_item, Item, Memo};
use tally_collector::request::WriteRequest;
use tally_config::Limits;
use tally_model::apps::App;
use tally_model::commit::Batch;
use tally_model::counters::{month_field, summed, week_field};
use tally_model::keys::AppId;

const NOW: i64 = 1_729_593_000;

fn app() -> Arc<App> {
    Arc::new(App {
        id: AppId::generate(),
        name: "p".into(),
        timezone: chrono_tz::Europe::Istanbul,
        write_key: "w".into(),
        read_key: "r".into(),
        master_key: "m".into(),
        key_sets: Vec::new(),
        public_read: false,
        salt: None,
        strict: false,
        created: 0,
    })
}

/// Small JSON values of any shape.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        "[a.$ 1]{0,6}".prop_map(Value::from),
        prop_oneof![
            Just("$x.y"),
            Just("5"),
            Just("31"),
            Just("a\u{0}b"),
            Just(""),
            Just("[CLY]_view")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Event lists close to what SDKs send, with hostile values mixed in.
fn events() -> impl Strategy<Value = Value> {
    let event = (
        prop_oneof![
            ".{0,20}".prop_map(Value::from),
            "[a.$]{0,4}".prop_map(Value::from),
            json_value()
        ],
        prop_oneof![(0i64..1000).prop_map(Value::from), json_value()],
        json_value(),
        prop::collection::btree_map("[a.$ 1]{0,4}|.{0,10}", json_value(), 0..5),
        prop_oneof![
            Just(Value::Null),
            (946_684_800i64..NOW).prop_map(Value::from),
            json_value()
        ],
    )
        .prop_map(|(key, count, sum, seg, ts)| {
            json!({"key": key, "count": count, "sum": sum,
                "segmentation": Value::Object(seg.into_iter().collect()), "timestamp": ts})
        });
    prop_oneof![
        prop::collection::vec(event, 0..8).prop_map(Value::Array),
        json_value()
    ]
}

fn check_plan(p: &Params) {
    let limits = Limits::default();
    let Ok(req) = WriteRequest::from_params(p, &limits, NOW, Default::default()) else {
        return;
    };
    let app = app();
    let tag = format!("{{{}}}:", app.id);
    let item = Item::new(app, req, NOW * 1000);
    let mut batch = Batch::default();
    let keep = tally_config::AggregatorConfig::default().retention();
    plan_item(&mut batch, &mut Memo::default(), &item, &limits, keep);
    for (key, field, value) in batch.increments() {
        assert!(key.starts_with(&tag), "{key}");
        if key.starts_with(&format!("{tag}r:")) {
            // The minute and hour rollups: session begins and ends.
            assert!(["sb", "se"].contains(&field.as_str()), "{key} {field:?}");
            assert_eq!(value, "1", "{key} {field}");
            continue;
        }
        // Countly's paths: at most 3 levels below the hash (`22.Android.t`, `w43.f.1`), no
        // empty level, and a counter name (or a range under f, l, ds) at the end. A value
        // with a dot left in it would break this.
        let parts: Vec<&str> = field.split('.').collect();
        assert!(
            parts.len() <= 3 && parts.iter().all(|c| !c.is_empty()),
            "{key} {field:?}"
        );
        let leaf = parts[parts.len() - 1];
        let range = parts.len() >= 2
            && ["f", "l", "ds"].contains(&parts[parts.len() - 2])
            && leaf.parse::<u32>().is_ok();
        assert!(
            range || ["t", "n", "u", "e", "d", "c", "s", "dur"].contains(&leaf),
            "{key} {field:?}"
        );
        let v: f64 = value.parse().unwrap_or(f64::NAN);
        assert!(v.is_finite(), "{key} {field} {value}");
        // A year hash holds no year or month total the reader sums from the days: that
        // would count it twice.
        let year_hash = key
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|y| y >= 1000);
        if year_hash && !week_field(&field) {
            let total = month_field(&field).map_or(field.as_str(), |(_, rest)| rest);
            assert!(!summed(total), "{key} {field:?}");
        }
    }
}

fn metric_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("_os".to_string()),
        Just("_os_version".to_string()),
        Just("_device".to_string()),
        Just("_carrier".to_string()),
        Just("_app_version".to_string()),
        Just("_density".to_string()),
        Just("_locale".to_string()),
        ".{0,6}".prop_map(String::from),
    ]
}

proptest! {
    #[test]
    fn any_query_string_is_parsed_or_refused(raw in prop::collection::vec(any::<u8>(), 0..400)) {
        let q = String::from_utf8_lossy(&raw).into_owned();
        if let Ok(p) = Params::from_request(&q, "", b"", 16) {
            check_plan(&p);
        }
        let _ = Params::from_request("", "application/json", &raw, 16);
    }

    #[test]
    fn any_json_body_is_parsed_or_refused(body in json_value()) {
        let bytes = body.to_string().into_bytes();
        if let Ok(p) = Params::from_request("", "application/json", &bytes, 16) {
            check_plan(&p);
        }
    }

    #[test]
    fn sdk_like_requests_plan_well_formed_writes(
        events in events(),
        metrics in prop::collection::btree_map(metric_name(), json_value(), 0..6),
        begin in any::<bool>(),
        end in any::<bool>(),
        duration in prop_oneof![Just(Value::Null), any::<i32>().prop_map(Value::from), json_value()],
        ts in prop_oneof![
            Just(Value::Null),
            (946_684_800i64..NOW + 100_000).prop_map(Value::from),
            (946_684_800_000i64..NOW * 1000).prop_map(Value::from),
            json_value()
        ],
        country in prop_oneof![Just(Value::Null), "[A-Za-z]{2}".prop_map(Value::from), json_value()],
    ) {
        let body = json!({
            "app_key": "w", "device_id": "d", "events": events,
            "metrics": Value::Object(metrics.into_iter().collect()),
            "begin_session": begin, "end_session": end, "session_duration": duration,
            "timestamp": ts, "country_code": country,
        });
        let text = body.to_string();
        let p = Params::from_request("", "application/json", text.as_bytes(), 16);
        prop_assert!(p.is_ok());
        if let Ok(p) = p {
            check_plan(&p);
        }
    }
}

/// A begin_session of device `device` of `app` with metrics picked from small pools, so
/// the requests of a batch share some values and differ in others.
fn begin_item(app: &Arc<App>, device: usize, pick: [usize; 4], limits: &Limits) -> Option<Item> {
    const OS: [&str; 2] = ["Android", "iOS"];
    const VERSIONS: [&str; 3] = ["1.0", "2.0", "1:0"];
    const DEVICES: [&str; 2] = ["Pixel", "SM-G991B"];
    const COUNTRIES: [&str; 3] = ["TR", "DE", "US"];
    let body = json!({
        "app_key": "w", "device_id": format!("d{device}"), "begin_session": 1,
        "timestamp": NOW - 60,
        "country_code": COUNTRIES[pick[3] % 3],
        "metrics": {"_os": OS[pick[0] % 2], "_app_version": VERSIONS[pick[1] % 3],
            "_device": DEVICES[pick[2] % 2], "_os_version": "14"},
    });
    let Value::Object(o) = body else { return None };
    let req =
        WriteRequest::from_params(&Params::from_object(o), limits, NOW, Default::default()).ok()?;
    Some(Item::new(app.clone(), req, NOW * 1000))
}

/// Counter increments summed by key and field.
fn totals(
    increments: impl IntoIterator<Item = (String, String, String)>,
) -> std::collections::BTreeMap<(String, String), f64> {
    let mut out = std::collections::BTreeMap::new();
    for (k, f, v) in increments {
        *out.entry((k, f)).or_insert(0.0) += v.parse::<f64>().unwrap_or(f64::NAN);
    }
    out
}

proptest! {
    /// What the planner remembers within a batch (targets, names, the values admitted)
    /// changes nothing: a batch of new devices' begin_sessions from two apps plans the
    /// increments and list members its requests plan one batch each.
    #[test]
    fn a_batch_plans_what_its_requests_plan_alone(
        picks in prop::collection::vec((0usize..2, any::<[usize; 4]>()), 1..24),
    ) {
        let limits = Limits::default();
        let keep = tally_config::AggregatorConfig::default().retention();
        let apps = [app(), app()];
        let items: Vec<Item> = picks
            .iter()
            .enumerate()
            .filter_map(|(i, (a, pick))| begin_item(&apps[*a], i, *pick, &limits))
            .collect();
        prop_assert_eq!(items.len(), picks.len());
        let (mut together, mut memo) = (Batch::default(), Memo::default());
        for it in &items {
            plan_item(&mut together, &mut memo, it, &limits, keep);
        }
        let (mut alone, mut added) = (Vec::new(), std::collections::BTreeSet::new());
        for it in &items {
            let mut b = Batch::default();
            plan_item(&mut b, &mut Memo::default(), it, &limits, keep);
            alone.extend(b.increments());
            added.extend(b.additions());
        }
        prop_assert_eq!(totals(together.increments()), totals(alone));
        prop_assert_eq!(together.additions(), added.into_iter().collect::<Vec<_>>());
    }
}

/// A value refused by a full list stays refused, and one admitted before stays counted,
/// whatever came between them in the batch.
#[test]
fn a_full_value_list_refuses_new_values_only() {
    let limits = Limits {
        values_per_metric: 1,
        ..Limits::default()
    };
    let keep = tally_config::AggregatorConfig::default().retention();
    let app = app();
    let (mut batch, mut memo) = (Batch::default(), Memo::default());
    for (i, os) in [0, 1, 0, 1, 0].into_iter().enumerate() {
        if let Some(it) = begin_item(&app, i, [os, 0, 0, 0], &limits) {
            plan_item(&mut batch, &mut memo, &it, &limits, keep);
        }
    }
    let t = totals(batch.increments());
    let os_total = |os: &str| {
        t.iter()
            .filter(|((k, f), _)| {
                k.contains(":c:device_details:") && f.ends_with(&format!(".{os}.t"))
            })
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    assert_eq!(os_total("Android"), 3.0);
    assert_eq!(os_total("iOS"), 0.0);
}
