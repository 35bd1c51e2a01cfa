//! A typed, validated `/i` request. Everything is checked here, before anything is
//! written: a request that fails any check is a 400 and never reaches Redis.

use crate::params::Params;
use crate::sanitize::{self, MetricSpec, METRICS};
use serde_json::Value;
use tally_config::Limits;
use tally_model::keys::hash64;
use tally_service::ApiError;

/// Earliest accepted timestamp: 2000-01-01T00:00:00Z.
pub const MIN_TIMESTAMP: i64 = 946_684_800;

/// `[CLY]_` events the SDKs send on their own; any other `[CLY]_` key is dropped, as in
/// Countly. They are counted, but hidden from the event list.
pub const INTERNAL_EVENTS: &[&str] = &[
    "[CLY]_view",
    "[CLY]_action",
    "[CLY]_orientation",
    "[CLY]_crash",
    "[CLY]_star_rating",
    "[CLY]_nps",
    "[CLY]_survey",
    "[CLY]_push_action",
    "[CLY]_consent",
];

/// The largest `count` one event may carry.
pub const MAX_EVENT_COUNT: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub key: String,
    pub internal: bool,
    pub count: i64,
    pub sum: Option<f64>,
    pub dur: Option<f64>,
    /// Sanitized (segment key, segment value) pairs.
    pub segments: Vec<(String, String)>,
    /// The segmentation as sent (scalar values as text), for the raw event stream.
    pub raw_segments: serde_json::Map<String, Value>,
    /// UNIX seconds: the event's own timestamp, else the request's.
    pub time: i64,
}

/// A request's sanitized metric values, kept in one buffer: a begin_session carries up
/// to ten, and one allocation for all of them is cheaper than one each.
#[derive(Debug, Clone, Default)]
pub struct MetricValues {
    text: String,
    /// Each value's metric and where its text ends in `text` (it starts where the one
    /// before it ends).
    ends: Vec<(&'static MetricSpec, usize)>,
}

impl MetricValues {
    /// Adds the sanitized value of `spec` ([`sanitize::push_metric_value`]), unless it is
    /// dropped.
    fn push(&mut self, spec: &'static MetricSpec, raw: &str, os: Option<&str>) {
        if sanitize::push_metric_value(&mut self.text, spec.name, raw, os) {
            self.ends.push((spec, self.text.len()));
        }
    }

    /// The values in the order of [`METRICS`].
    pub fn iter(&self) -> impl Iterator<Item = (&'static MetricSpec, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(spec, end)| {
            let v = self.text.get(start..end).unwrap_or_default();
            start = end;
            (spec, v)
        })
    }
}

#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub device_id: String,
    /// UNIX seconds: `timestamp`, else the time of arrival.
    pub time: i64,
    pub begin_session: bool,
    pub end_session: bool,
    /// Seconds to add (0 = none), already capped.
    pub session_duration: u32,
    /// Sanitized metric values; used on begin_session only, as in Countly.
    pub metrics: MetricValues,
    /// ISO country code; `None` is `Unknown`.
    pub country: Option<String>,
    /// The city (`city`, else from a GeoIP city database), as a counter value; `None`
    /// when unknown (then no city is counted).
    pub city: Option<String>,
    pub events: Vec<Event>,
    /// Identity of the request for duplicate detection; only requests with a `timestamp`
    /// have one (without it a retry cannot be told from a new request).
    pub fingerprint: Option<u64>,
    /// False for an SDK health check, which is answered but not counted.
    pub counted: bool,
    /// Countly's `old_device_id`: the device's id before it changed with merge; the new
    /// id takes over its history first.
    pub old_device_id: Option<String>,
    /// Countly's `consent`: feature -> given, recorded after the request's counters.
    pub consent: Option<serde_json::Map<String, Value>>,
}

/// Features one `consent` may name.
const MAX_CONSENT_FEATURES: usize = 64;

/// Countly's `consent` parameter: a JSON object of feature -> `true`/`false` (the web SDK
/// may send them as text). A feature name loses `.` and leading `$`, as segment keys do.
fn parse_consent(
    p: &Params,
    limits: &Limits,
) -> Result<Option<serde_json::Map<String, Value>>, ApiError> {
    const BAD: &str = "Invalid parameter \"consent\"";
    let Some(v) = p.json("consent", BAD, limits.max_json_depth)? else {
        return Ok(None);
    };
    let Value::Object(sent) = v else {
        return Err(ApiError::bad(format!("{BAD}: not a JSON object")));
    };
    if sent.len() > MAX_CONSENT_FEATURES {
        return Err(ApiError::bad(format!(
            "{BAD}: more than {MAX_CONSENT_FEATURES} features"
        )));
    }
    let mut out = serde_json::Map::new();
    for (k, v) in sent {
        let given = match v {
            Value::Bool(b) => b,
            Value::String(s) if s == "true" => true,
            Value::String(s) if s == "false" => false,
            _ => return Err(ApiError::bad(format!("{BAD}: {k:?} is not true or false"))),
        };
        let name = sanitize::segment_key(&k);
        if name.is_empty() || longer_than(&name, limits.max_key_length) {
            return Err(ApiError::bad(format!("{BAD}: feature {k:?}")));
        }
        out.insert(name, Value::Bool(given));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Whether `s` has more than `max` characters. Limits count characters, as Countly does;
/// a text of at most `max` bytes cannot have more, so most texts are not walked.
fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// Parses `timestamp`-like values: seconds (10 digits, maybe with a fraction) or
/// milliseconds (13 digits). Out of range is a 400; slightly in the future is "now".
pub fn parse_timestamp(raw: &str, name: &str, now: i64, limits: &Limits) -> Result<i64, ApiError> {
    let v: f64 = raw
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| ApiError::invalid_param(name))?;
    let secs = if v >= 1e11 { v / 1000.0 } else { v };
    let secs = secs.floor() as i64;
    if secs < MIN_TIMESTAMP {
        return Err(ApiError::bad(format!(
            "Invalid parameter \"{name}\": before the year 2000"
        )));
    }
    if secs > now + limits.max_future_secs {
        return Err(ApiError::bad(format!(
            "Invalid parameter \"{name}\": too far in the future"
        )));
    }
    Ok(secs.min(now))
}

fn json_number(v: &Value, what: &str) -> Result<Option<f64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("Invalid event {what}"))),
        _ => Err(ApiError::bad(format!("Invalid event {what}: not a number"))),
    }
}

fn round5(v: f64) -> f64 {
    (v * 100_000.0).round() / 100_000.0
}

fn parse_event(
    v: &Value,
    request_time: i64,
    now: i64,
    limits: &Limits,
) -> Result<Option<Event>, ApiError> {
    let o = v.as_object().ok_or_else(|| {
        ApiError::bad("events JSON is not properly formed: an event is not an object")
    })?;
    // Countly skips events without a usable key rather than failing the request.
    let Some(key) = o.get("key").and_then(sanitize::scalar_text) else {
        return Ok(None);
    };
    if key.is_empty() {
        return Ok(None);
    }
    if longer_than(&key, limits.max_key_length) {
        return Err(ApiError::bad(format!(
            "Event key longer than {} characters",
            limits.max_key_length
        )));
    }
    let internal = key.starts_with("[CLY]_");
    if internal && !INTERNAL_EVENTS.contains(&key.as_str()) {
        return Ok(None);
    }
    let count = match o.get("count") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(c) if (0..=MAX_EVENT_COUNT).contains(&c) => c,
            _ => {
                return Err(ApiError::bad(
                    "Invalid event count: must be a whole number from 0 to 1000000000",
                ))
            }
        },
        Some(_) => return Err(ApiError::bad("Invalid event count: not a number")),
    };
    let sum = o
        .get("sum")
        .map(|v| json_number(v, "sum"))
        .transpose()?
        .flatten()
        .map(round5);
    let dur = o
        .get("dur")
        .map(|v| json_number(v, "dur"))
        .transpose()?
        .flatten();
    if dur.is_some_and(|d| d < 0.0) {
        return Err(ApiError::bad("Invalid event dur: negative"));
    }
    let time = match o.get("timestamp").and_then(sanitize::scalar_text) {
        Some(t) if !t.is_empty() => parse_timestamp(&t, "timestamp", now, limits)?,
        _ => request_time,
    };
    let mut segments = Vec::new();
    let mut raw_segments = serde_json::Map::new();
    match o.get("segmentation") {
        None | Some(Value::Null) => {}
        Some(Value::Object(seg)) => {
            for (k, v) in seg {
                let k = sanitize::segment_key(k);
                // Arrays are skipped with their key, as in Countly; so are objects and
                // nulls (Countly would spell them "[object Object]" and "null").
                let Some(v) = sanitize::segment_text(v) else {
                    continue;
                };
                if k.is_empty() || v.is_empty() {
                    continue;
                }
                if longer_than(&k, limits.max_key_length) {
                    return Err(ApiError::bad(format!(
                        "Segmentation key longer than {} characters",
                        limits.max_key_length
                    )));
                }
                if longer_than(&v, limits.max_value_length) {
                    return Err(ApiError::bad(format!(
                        "Segmentation value longer than {} characters",
                        limits.max_value_length
                    )));
                }
                segments.push((k.clone(), sanitize::segment_value(&v)));
                raw_segments.insert(k, Value::String(v));
            }
            segments.sort();
            segments.dedup_by(|a, b| a.0 == b.0);
        }
        Some(_) => return Err(ApiError::bad("Invalid event segmentation: not an object")),
    }
    Ok(Some(Event {
        key,
        internal,
        count,
        sum,
        dur,
        segments,
        raw_segments,
        time,
    }))
}

impl WriteRequest {
    /// Validates a request's parameters. `device_id` is known to be present. `now` is the
    /// server time (UNIX seconds); `client` is where IP geolocation puts the client, if
    /// anywhere.
    pub fn from_params(
        p: &Params,
        limits: &Limits,
        now: i64,
        client: crate::geo::Place,
    ) -> Result<WriteRequest, ApiError> {
        let device_id = p.text("device_id").unwrap_or_default();
        if longer_than(&device_id, limits.max_device_id_length) {
            return Err(ApiError::bad(format!(
                "Invalid parameter \"device_id\": longer than {} characters",
                limits.max_device_id_length
            )));
        }
        let timestamp = p.nonempty("timestamp");
        let time = match &timestamp {
            Some(t) => parse_timestamp(t, "timestamp", now, limits)?,
            None => now,
        };
        let begin_session = p.flag("begin_session");
        let end_session = p.flag("end_session");
        let session_duration = match p.nonempty("session_duration") {
            None => 0,
            Some(s) => {
                let d: f64 = s
                    .trim()
                    .parse()
                    .ok()
                    .filter(|d: &f64| d.is_finite())
                    .ok_or_else(|| ApiError::invalid_param("session_duration"))?;
                // Countly ignores zero and negative durations (#98) and caps the rest.
                if d <= 0.0 {
                    0
                } else {
                    d.round().min(f64::from(limits.session_duration_limit)) as u32
                }
            }
        };

        let mut metric_texts = crate::device_metrics::from_params(p, limits.max_json_depth)?;
        if let Some(texts) = metric_texts.as_mut() {
            sanitize::derive_device(texts);
        }
        let mut metrics = MetricValues::default();
        if let Some(texts) = &metric_texts {
            // An OS prefix or a `:0` adds a few bytes to a value.
            let room: usize = texts.iter().flatten().map(|t| t.len() + 4).sum();
            metrics.text.reserve(room);
            metrics.ends.reserve(METRICS.len());
            // `_os` gives `_os_version` and `_density` their prefix.
            let os = METRICS
                .iter()
                .position(|m| m.name == "_os")
                .and_then(|i| texts[i].as_deref());
            for (spec, raw) in METRICS.iter().zip(texts) {
                let Some(raw) = raw else { continue };
                if longer_than(raw, limits.max_value_length) {
                    return Err(ApiError::bad(format!(
                        "Metric {} longer than {} characters",
                        spec.name, limits.max_value_length
                    )));
                }
                metrics.push(spec, raw, os);
            }
        }

        let events_json = p.json(
            "events",
            "events JSON is not properly formed",
            limits.max_json_depth,
        )?;
        let mut events = Vec::new();
        match events_json {
            None => {}
            Some(Value::Array(list)) => {
                if list.len() > limits.max_events_per_request {
                    return Err(ApiError::bad(format!(
                        "Too many events in one request (at most {})",
                        limits.max_events_per_request
                    )));
                }
                for e in &list {
                    if let Some(e) = parse_event(e, time, now, limits)? {
                        events.push(e);
                    }
                }
            }
            Some(_) => return Err(ApiError::bad("events JSON is not properly formed")),
        }

        let country = match p.nonempty("country_code") {
            Some(cc) => {
                let cc = cc.trim().to_ascii_uppercase();
                if cc.len() != 2 || !cc.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(ApiError::invalid_param("country_code"));
                }
                Some(cc)
            }
            // `location=""` on a session start is the user opting out of location.
            None if p.has("location") && p.text("location").unwrap_or_default().is_empty() => None,
            None => client.country,
        };
        let city = match p.nonempty("city") {
            Some(c) if longer_than(&c, limits.max_value_length) => {
                return Err(ApiError::bad(format!(
                    "Invalid parameter \"city\": longer than {} characters",
                    limits.max_value_length
                )))
            }
            Some(c) => Some(sanitize::value(c.trim())).filter(|c| !c.is_empty()),
            None if p.has("location") && p.text("location").unwrap_or_default().is_empty() => None,
            None => client.city.map(|c| sanitize::value(&c)),
        };

        let fingerprint = timestamp
            .is_some()
            .then(|| hash64(&p.canonical(&["rr", "checksum", "checksum256"])));

        let old_device_id = match p.nonempty("old_device_id") {
            Some(old) if longer_than(&old, limits.max_device_id_length) => {
                return Err(ApiError::bad(format!(
                    "Invalid parameter \"old_device_id\": longer than {} characters",
                    limits.max_device_id_length
                )))
            }
            Some(old) if old != device_id => Some(old.into_owned()),
            _ => None,
        };

        let consent = parse_consent(p, limits)?;

        let counted = !(p.has("hc")
            && !begin_session
            && !end_session
            && session_duration == 0
            && events.is_empty());

        Ok(WriteRequest {
            device_id: device_id.into_owned(),
            time,
            begin_session,
            end_session,
            session_duration,
            metrics,
            country,
            city,
            events,
            fingerprint,
            counted,
            old_device_id,
            consent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_729_598_400; // 2024-10-22T12:00:00Z

    fn req(q: &str) -> Result<WriteRequest, ApiError> {
        let p = Params::from_request(q, "", b"", 16)?;
        WriteRequest::from_params(&p, &Limits::default(), NOW, Default::default())
    }

    #[test]
    fn timestamps_in_seconds_or_milliseconds() {
        let l = Limits::default();
        assert_eq!(
            parse_timestamp("1729598000", "t", NOW, &l).ok(),
            Some(1_729_598_000)
        );
        assert_eq!(
            parse_timestamp("1729598000123", "t", NOW, &l).ok(),
            Some(1_729_598_000)
        );
        assert_eq!(
            parse_timestamp("1729598000.5", "t", NOW, &l).ok(),
            Some(1_729_598_000)
        );
        // A little in the future is now; far in the future, before 2000, or junk is a 400.
        assert_eq!(
            parse_timestamp(&(NOW + 60).to_string(), "t", NOW, &l).ok(),
            Some(NOW)
        );
        assert!(parse_timestamp(&(NOW + 90_000).to_string(), "t", NOW, &l).is_err());
        assert!(parse_timestamp("12345678901234567890", "t", NOW, &l).is_err());
        assert!(parse_timestamp("900000000", "t", NOW, &l).is_err());
        assert!(parse_timestamp("-5", "t", NOW, &l).is_err());
        assert!(parse_timestamp("abc", "t", NOW, &l).is_err());
        assert!(parse_timestamp("NaN", "t", NOW, &l).is_err());
    }

    #[test]
    fn events_are_typed_strictly() {
        let ok = req(
            r#"device_id=d&events=[{"key":"a","count":2,"sum":1.234567,"dur":3,"segmentation":{"$x.y":"1.0","arr":[1],"n":5}}]"#,
        );
        let r = ok.expect("valid request");
        let e = &r.events[0];
        assert_eq!(
            (e.key.as_str(), e.count, e.sum, e.dur),
            ("a", 2, Some(1.23457), Some(3.0))
        );
        assert_eq!(
            e.segments,
            vec![("n".into(), "[CLY]5".into()), ("xy".into(), "1:0".into())]
        );
        for bad in [
            r#"[{"key":"a","count":"2"}]"#,
            r#"[{"key":"a","count":-1}]"#,
            r#"[{"key":"a","count":1.5}]"#,
            r#"[{"key":"a","sum":"NaN"}]"#,
            r#"[{"key":"a","dur":-1}]"#,
            r#"[{"key":"a","segmentation":[1]}]"#,
            r#"{"key":"a"}"#,
            r#"[1]"#,
            r#"[{"key":"a""#,
        ] {
            assert!(req(&format!("device_id=d&events={bad}")).is_err(), "{bad}");
        }
        // Countly's own test sends these and expects Success: keyless events are skipped.
        assert_eq!(
            req(r#"device_id=d&events=[{"count":1}]"#)
                .map(|r| r.events.len())
                .ok(),
            Some(0)
        );
        assert_eq!(
            req(r#"device_id=d&events=[{"key":"[CLY]_unknown"}]"#)
                .map(|r| r.events.len())
                .ok(),
            Some(0)
        );
        let long = "k".repeat(300);
        assert!(req(&format!(r#"device_id=d&events=[{{"key":"{long}"}}]"#)).is_err());
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        assert!(!longer_than("\u{e9}\u{e9}\u{e9}", 3));
        assert!(longer_than("\u{e9}\u{e9}\u{e9}", 2));
        assert!(!longer_than("abc", 3) && longer_than("abcd", 3));
        assert!(!longer_than("", 0));
    }

    #[test]
    fn sessions_metrics_and_location() {
        let r = req(r#"device_id=d&begin_session=1&session_duration=-5&metrics={"_os":"Android","_os_version":"4.4","_ua":"x"}&country_code=tr"#)
            .expect("valid request");
        assert!(r.begin_session && !r.end_session);
        assert_eq!(r.session_duration, 0);
        let m: Vec<(&str, &str)> = r.metrics.iter().map(|(s, v)| (s.name, v)).collect();
        assert_eq!(m, vec![("_os", "Android"), ("_os_version", "a4:4")]);
        assert_eq!(r.country.as_deref(), Some("TR"));
        assert_eq!(
            req("device_id=d&session_duration=999999")
                .map(|r| r.session_duration)
                .ok(),
            Some(86_400)
        );
        assert!(req("device_id=d&session_duration=abc").is_err());
        assert!(req("device_id=d&metrics={bad").is_err());
        assert!(req("device_id=d&country_code=TUR").is_err());
        assert!(req("device_id=d&hc=1").map(|r| !r.counted).unwrap_or(false));
    }

    #[test]
    fn fingerprints_ignore_rr_and_need_a_timestamp() {
        let a = req("device_id=d&timestamp=1729598000&rr=1").expect("valid");
        let b = req("device_id=d&timestamp=1729598000&rr=2").expect("valid");
        let c = req("device_id=d&timestamp=1729598001").expect("valid");
        assert!(a.fingerprint.is_some());
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(req("device_id=d").map(|r| r.fingerprint).ok(), Some(None));
    }
}
