//! From raw stream entries to rollup writes: plain functions, no I/O.
//!
//! Minute rollups are keyed by UNIX minute (a minute is the same minute in every
//! timezone); hour rollups by the app's local wall-clock hour, so hour and day histograms
//! follow the app's timezone, DST included. A rollup field is
//! `{measure}\x1f{event}\x1f{app_name}\x1f{server_name}`, where an empty name means "any":
//! every event adds to the field without filters and to the ones for its `app_name` and
//! `server_name` segmentation values, which the bucket API filters by.

use chrono_tz::Tz;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use tally_model::keys::{self, AppId};

/// An event as a request's stream entry holds it (`collector::plan::raw_event`).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct RawEvent {
    k: Option<String>,
    c: Option<i64>,
    s: Option<f64>,
    u: Option<f64>,
    g: Option<Map<String, Value>>,
    ts: Option<i64>,
}

impl RawEvent {
    /// A request's events: read straight into their fields (no `Value` tree to walk and
    /// copy from); entries written otherwise (a field of another type) field by field,
    /// leaving out what is not of its type.
    fn all(text: &str) -> Vec<RawEvent> {
        if let Ok(events) = serde_json::from_str(text) {
            return events;
        }
        let values: Vec<Value> = serde_json::from_str(text).unwrap_or_default();
        values
            .into_iter()
            .map(|mut e| RawEvent {
                k: e.get("k").and_then(Value::as_str).map(String::from),
                c: e.get("c").and_then(Value::as_i64),
                s: e.get("s").and_then(Value::as_f64),
                u: e.get("u").and_then(Value::as_f64),
                g: match e.get_mut("g").map(Value::take) {
                    Some(Value::Object(m)) => Some(m),
                    _ => None,
                },
                ts: e.get("ts").and_then(Value::as_i64),
            })
            .collect()
    }
}

/// One raw stream entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    /// `e` event, `b` session begin, `x` session end.
    pub kind: String,
    pub device: String,
    pub key: String,
    pub count: i64,
    pub sum: Option<f64>,
    pub dur: Option<f64>,
    pub segmentation: Map<String, Value>,
    /// Event time, ms.
    pub ts: i64,
    /// Receive time, ms.
    pub received: i64,
}

impl Entry {
    /// Reads one stream entry: a request (`t` = `r`) becomes its session begin, its events
    /// and its session end. Anything this version does not know yields nothing (it is
    /// acknowledged and skipped rather than blocking the stream).
    pub fn parse_all<S: AsRef<str>>(id: &str, fields: &[(S, S)]) -> Vec<Entry> {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f.as_ref() == k)
                .map(|(_, v)| v.as_ref())
        };
        if get("t") != Some("r") {
            let owned: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
                .collect();
            return Entry::parse(id, &owned).into_iter().collect();
        }
        let device = get("d").unwrap_or_default().to_string();
        let received = get("rt").and_then(|r| r.parse().ok()).unwrap_or(0);
        let Some(ts) = get("ts").and_then(|t| t.parse::<i64>().ok()) else {
            return Vec::new();
        };
        let session = |kind: &str| Entry {
            id: id.to_string(),
            kind: kind.into(),
            device: device.clone(),
            key: String::new(),
            count: 1,
            sum: None,
            dur: None,
            segmentation: Map::new(),
            ts,
            received,
        };
        let mut out = Vec::new();
        if get("b") == Some("1") {
            out.push(session("b"));
        }
        let events = get("ev").map(RawEvent::all).unwrap_or_default();
        for e in events {
            let Some(key) = e.k else {
                continue;
            };
            out.push(Entry {
                id: id.to_string(),
                kind: "e".into(),
                device: device.clone(),
                key,
                count: e.c.unwrap_or(1),
                sum: e.s,
                dur: e.u,
                segmentation: e.g.unwrap_or_default(),
                ts: e.ts.unwrap_or(ts),
                received,
            });
        }
        if get("x") == Some("1") {
            out.push(session("x"));
        }
        out
    }

    /// Reads a single-event stream entry (`t` = `e`, `b` or `x`).
    pub fn parse(id: &str, fields: &[(String, String)]) -> Option<Entry> {
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        let kind = get("t")?.to_string();
        if !matches!(kind.as_str(), "e" | "b" | "x") {
            return None;
        }
        Some(Entry {
            id: id.to_string(),
            device: get("d").unwrap_or_default().to_string(),
            key: get("k").unwrap_or_default().to_string(),
            count: get("c").and_then(|c| c.parse().ok()).unwrap_or(1),
            sum: get("s").and_then(|s| s.parse().ok()),
            dur: get("u").and_then(|s| s.parse().ok()),
            segmentation: get("g")
                .and_then(|g| serde_json::from_str::<Value>(g).ok())
                .and_then(|v| match v {
                    Value::Object(m) => Some(m),
                    _ => None,
                })
                .unwrap_or_default(),
            ts: get("ts")?.parse().ok()?,
            received: get("rt").and_then(|r| r.parse().ok()).unwrap_or(0),
            kind,
        })
    }

    pub fn seg(&self, name: &str) -> Option<&str> {
        self.segmentation.get(name).and_then(Value::as_str)
    }

    /// As the bucket events API returns it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "event_name": self.key,
            "app_name": self.seg("app_name"),
            "server_name": self.seg("server_name"),
            "device_id": self.device,
            "count": self.count,
            "sum": self.sum,
            "dur": self.dur,
            "segmentation": self.segmentation,
            "timestamp": self.ts,
            "received": self.received,
        })
    }
}

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

    #[test]
    fn a_request_entry_expands_into_begin_events_end() {
        let f: Vec<(String, String)> = [("t", "r"), ("d", "x"), ("rt", "5"), ("ts", "1000"), ("b", "1"), ("x", "1"),
            ("ev", r#"[{"k":"buy","c":2,"s":1.5,"g":{"app_name":"web"},"ts":900},{"k":"view"},{"c":3}]"#)]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let all = Entry::parse_all("7-0", &f);
        let kinds: Vec<(&str, &str)> = all
            .iter()
            .map(|e| (e.kind.as_str(), e.key.as_str()))
            .collect();
        assert_eq!(kinds, [("b", ""), ("e", "buy"), ("e", "view"), ("x", "")]);
        assert_eq!(
            (all[1].count, all[1].sum, all[1].ts, all[1].seg("app_name")),
            (2, Some(1.5), 900, Some("web"))
        );
        assert_eq!((all[2].count, all[2].ts), (1, 1000));
        assert!(Entry::parse_all("7-1", &[("t".to_string(), "r".to_string())]).is_empty());
    }

    #[test]
    fn entries_parse_or_are_skipped() {
        let f = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let e = Entry::parse(
            "5-0",
            &f(&[
                ("t", "e"),
                ("d", "x"),
                ("k", "buy"),
                ("c", "3"),
                ("ts", "1000"),
                ("g", r#"{"app_name":"web"}"#),
            ]),
        );
        assert_eq!(
            e.as_ref().map(|e| (e.count, e.seg("app_name"))),
            Some((3, Some("web")))
        );
        assert!(Entry::parse("5-1", &f(&[("t", "?"), ("ts", "1")])).is_none());
        assert!(Entry::parse("5-2", &f(&[("t", "e")])).is_none());
    }
}
