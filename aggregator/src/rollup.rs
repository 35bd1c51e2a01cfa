//! From raw stream entries to rollup writes: plain functions, no I/O.
//!
//! Minute rollups are keyed by UNIX minute (a minute is the same minute in every
//! timezone); hour rollups by the app's local wall-clock hour, so hour and day histograms
//! follow the app's timezone, DST included. A rollup field is
//! `{measure}\x1f{event}\x1f{app_name}\x1f{server_name}`, where an empty name means "any":
//! every event adds to the field without filters and to the ones for its `app_name` and
//! `server_name` segmentation values, which the bucket API filters by.

use chrono_tz::Tz;

use std::collections::{BTreeMap, BTreeSet};
use tally_model::keys::{self, AppId};
pub use tally_model::stream::Entry;

/// The rollup field of `measure` for an event, optionally narrowed to an `app_name` and a
/// `server_name`.
pub fn field(
    measure: &str,
    event: &str,
    app_name: Option<&str>,
    server_name: Option<&str>,
) -> String {
    // Built by hand: the consumer builds several per event.
    let (a, s) = (app_name.unwrap_or(""), server_name.unwrap_or(""));
    let mut out = String::with_capacity(measure.len() + event.len() + a.len() + s.len() + 3);
    out.push_str(measure);
    for part in [event, a, s] {
        out.push('\u{1f}');
        if part.contains('\u{1f}') {
            out.extend(part.chars().filter(|c| *c != '\u{1f}'));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// How long rollups are kept.
pub use tally_config::Retention;

/// The writes for a batch of entries of one app, merged.
#[derive(Debug, Default, PartialEq)]
pub struct Writes {
    /// (key, field) -> increment; sums and durations are floats.
    pub ints: BTreeMap<(String, String), i64>,
    pub floats: BTreeMap<(String, String), f64>,
    /// HyperLogLog key -> devices.
    pub devices: BTreeMap<String, BTreeSet<String>>,
    /// Key -> seconds it has left to live (relative, so a test clock works too).
    pub expire_in: BTreeMap<String, i64>,
    /// Set key -> members.
    pub members: BTreeMap<String, BTreeSet<String>>,
}

/// Rolls a batch of one app's entries up. Entries older than a retention add nothing to
/// the rollups of that size (they would expire at once).
pub fn rollup(app: &AppId, tz: Tz, entries: &[Entry], keep: Retention, now_secs: i64) -> Writes {
    let mut w = Writes::default();
    // The rollups of a minute are the same for every event in it (an hour is a whole
    // number of minutes in every timezone): worked out once per minute of the batch.
    let mut minutes: std::collections::HashMap<i64, keys::RollupsAt> =
        std::collections::HashMap::new();
    let app_names = keys::rollup_app_names(app);
    let mut by_app: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for e in entries {
        let secs = e.ts.div_euclid(1000);
        let at = minutes
            .entry(secs.div_euclid(60))
            .or_insert_with(|| keys::rollups_at(app, tz, secs, keep, now_secs))
            .clone();
        let mut targets = Vec::new();
        if let Some((k, hll, ttl)) = at.minute {
            w.expire_in.insert(k.clone(), ttl);
            w.expire_in.insert(hll.clone(), ttl);
            w.devices.entry(hll).or_default().insert(e.device.clone());
            targets.push(k);
        }
        if let Some((k, ttl)) = at.hour {
            w.expire_in.insert(k.clone(), ttl);
            targets.push(k);
        }
        for key in &targets {
            match e.kind.as_str() {
                "b" => *w.ints.entry((key.clone(), "sb".into())).or_default() += 1,
                "x" => *w.ints.entry((key.clone(), "se".into())).or_default() += 1,
                _ => {
                    let (a, s) = (e.seg("app_name"), e.seg("server_name"));
                    let mut scopes = vec![(None, None)];
                    if a.is_some() {
                        scopes.push((a, None));
                    }
                    if s.is_some() {
                        scopes.push((None, s));
                    }
                    if a.is_some() && s.is_some() {
                        scopes.push((a, s));
                    }
                    for (a, s) in scopes {
                        *w.ints
                            .entry((key.clone(), field("c", &e.key, a, s)))
                            .or_default() += e.count;
                    }
                    if let Some(sum) = e.sum {
                        *w.floats
                            .entry((key.clone(), field("s", &e.key, None, None)))
                            .or_default() += sum;
                    }
                    if let Some(dur) = e.dur {
                        *w.floats
                            .entry((key.clone(), field("u", &e.key, None, None)))
                            .or_default() += dur;
                    }
                }
            }
        }
        if e.kind == "e" {
            let a = e.seg("app_name").unwrap_or("");
            if !w.members.get(&app_names).is_some_and(|m| m.contains(a)) {
                w.members
                    .entry(app_names.clone())
                    .or_default()
                    .insert(a.to_string());
            }
            let keys_key = by_app
                .entry(a.to_string())
                .or_insert_with(|| keys::rollup_keys_by_app(app, a));
            if !w
                .members
                .get(keys_key.as_str())
                .is_some_and(|m| m.contains(&e.key))
            {
                w.members
                    .entry(keys_key.clone())
                    .or_default()
                    .insert(e.key.clone());
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn ev(key: &str, ts: i64, seg: Value) -> Entry {
        Entry {
            id: "1-0".into(),
            kind: "e".into(),
            device: "d".into(),
            key: key.into(),
            count: 2,
            sum: Some(1.5),
            dur: None,
            segmentation: match seg {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            ts,
            received: ts,
        }
    }

    #[test]
    fn request_entries_are_read_typed_or_field_by_field() {
        let fields = |ev: &str| {
            vec![
                ("t".to_string(), "r".to_string()),
                ("d".to_string(), "dev".to_string()),
                ("ts".to_string(), "1000".to_string()),
                ("ev".to_string(), ev.to_string()),
            ]
        };
        let typed = Entry::parse_all(
            "1-0",
            &fields(r#"[{"k":"buy","c":2,"s":1.5,"g":{"plan":"pro"},"ts":2000}]"#),
        );
        assert_eq!(typed.len(), 1);
        assert_eq!(
            (typed[0].count, typed[0].sum, typed[0].ts),
            (2, Some(1.5), 2000)
        );
        assert_eq!(typed[0].seg("plan"), Some("pro"));
        // A field of another type is left out, the event kept (as before typed reading).
        let odd = Entry::parse_all("1-0", &fields(r#"[{"k":"buy","c":"two","g":[1]}]"#));
        assert_eq!(odd.len(), 1);
        assert_eq!((odd[0].count, odd[0].ts), (1, 1000));
        assert!(odd[0].segmentation.is_empty());
    }

    #[test]
    fn events_roll_into_minutes_and_local_hours() {
        let app = AppId::generate();
        let keep = Retention {
            minute_secs: 172_800,
            hour_secs: 3_024_000,
        };
        let now = 1_729_600_000;
        let ts = 1_729_599_990_000; // 2024-10-22T12:26:30Z, 15:26 in Istanbul
        let w = rollup(
            &app,
            chrono_tz::Europe::Istanbul,
            &[ev("buy", ts, serde_json::json!({"app_name": "web"}))],
            keep,
            now,
        );
        let minute = keys::rollup_minute(&app, ts / 60_000);
        let local_hour = (ts / 1000 + 3 * 3600) / 3600;
        let hour = keys::rollup_hour(&app, local_hour);
        assert_eq!(
            w.ints.get(&(minute.clone(), field("c", "buy", None, None))),
            Some(&2)
        );
        assert_eq!(
            w.ints
                .get(&(minute.clone(), field("c", "buy", Some("web"), None))),
            Some(&2)
        );
        assert_eq!(
            w.ints
                .get(&(hour.clone(), field("c", "buy", Some("web"), None))),
            Some(&2)
        );
        assert_eq!(
            w.floats.get(&(hour, field("s", "buy", None, None))),
            Some(&1.5)
        );
        assert_eq!(w.ints.len(), 4);
        // Too old for the minute rollups: hours only.
        let old = rollup(
            &app,
            chrono_tz::UTC,
            &[ev("buy", (now - 200_000) * 1000, Value::Null)],
            keep,
            now,
        );
        assert!(old.ints.keys().all(|(k, _)| k.contains(":r:h:")));
    }
}
