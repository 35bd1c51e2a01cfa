//! The app's raw stream as its readers see it: one entry a request (`t` = `r`, written by
//! the collector with its events as a JSON array in `ev`), read back into one [`Entry`] per
//! session begin, event and session end. The rollup consumer, the bucket API, the realtime
//! reports and the archive all read entries through this one parser.

use serde_json::{Map, Value};

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
