//! Countly's rules for turning SDK-sent names and values into safe counter paths.
//!
//! Counter fields are dotted paths (`22.Android.t`), so a value must never contain a dot;
//! Countly replaces `.` by `:` in values, removes dots from segment keys, strips a leading
//! `$`, and prefixes segment values `1`..`31` with `[CLY]` so they cannot be mistaken for
//! a day number in the nested answer.

use serde_json::Value;

/// Metrics Tally aggregates: the SDK name, the counter family, the meta list and the slot
/// of the device's snapshot used to detect a changed value.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: &'static str,
    pub family: &'static str,
    pub meta: &'static str,
    pub slot: usize,
}

pub const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "_os",
        family: "device_details",
        meta: "os",
        slot: 0,
    },
    MetricSpec {
        name: "_os_version",
        family: "device_details",
        meta: "os_versions",
        slot: 1,
    },
    MetricSpec {
        name: "_resolution",
        family: "device_details",
        meta: "resolutions",
        slot: 2,
    },
    MetricSpec {
        name: "_app_version",
        family: "device_details",
        meta: "app_versions",
        slot: 3,
    },
    MetricSpec {
        name: "_device_type",
        family: "device_details",
        meta: "device_type",
        slot: 4,
    },
    MetricSpec {
        name: "_device",
        family: "devices",
        meta: "devices",
        slot: 5,
    },
    MetricSpec {
        name: "_manufacturer",
        family: "devices",
        meta: "manufacturers",
        slot: 6,
    },
    MetricSpec {
        name: "_carrier",
        family: "carriers",
        meta: "carriers",
        slot: 7,
    },
    MetricSpec {
        name: "_density",
        family: "density",
        meta: "density",
        slot: 8,
    },
    MetricSpec {
        name: "_locale",
        family: "langs",
        meta: "langs",
        slot: 9,
    },
];

/// The snapshot slot of the device's country.
pub const COUNTRY_SLOT: usize = 10;

// Every slot must exist in the device state.
const _: () = {
    assert!(COUNTRY_SLOT < tally_model::device::SNAPSHOTS);
    let mut i = 0;
    while i < METRICS.len() {
        assert!(METRICS[i].slot < COUNTRY_SLOT);
        i += 1;
    }
};

/// A JSON scalar as text (`None` for null, arrays and objects).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value that becomes part of a counter path: leading `$` stripped, `.` -> `:`,
/// NUL -> `&#9647` (as Countly stores it).
pub fn value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_value(&mut out, s);
    out
}

/// [`value`], appended to `out`.
fn push_value(out: &mut String, s: &str) {
    let s = s.trim_start_matches('$');
    let mut rest = s;
    // A byte search: both are ASCII, so `i` is always a character boundary.
    while let Some(i) = rest.bytes().position(|b| b == b'.' || b == 0) {
        out.push_str(&rest[..i]);
        out.push_str(if rest.as_bytes()[i] == b'.' {
            ":"
        } else {
            "&#9647"
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// A segmentation key: leading `$` and every dot removed.
pub fn segment_key(s: &str) -> String {
    s.trim_start_matches('$').replace(['.', '\0'], "")
}

/// A segmentation value: as [`value`], and `1`..`31` prefixed with `[CLY]`.
pub fn segment_value(s: &str) -> String {
    let v = value(s);
    match v.parse::<u32>() {
        Ok(n) if (1..=31).contains(&n) && !v.starts_with('0') && !v.starts_with('+') => {
            format!("[CLY]{v}")
        }
        _ => v,
    }
}

/// Countly's one- or two-letter OS prefix for `_os_version` and `_density`, appended to
/// `out` (nothing without an OS).
fn push_os_prefix(out: &mut String, os: Option<&str>) {
    const PREFIXES: [(&str, &str); 17] = [
        ("android", "a"),
        ("ios", "i"),
        ("ipados", "ip"),
        ("watchos", "wo"),
        ("tvos", "t"),
        ("macos", "o"),
        ("mac os x", "o"),
        ("mac os", "o"),
        ("osx", "o"),
        ("windows", "mw"),
        ("windows phone", "w"),
        ("linux", "l"),
        ("blackberry", "b"),
        ("chrome os", "c"),
        ("chromeos", "c"),
        ("roku", "r"),
        ("web", "web"),
    ];
    let os = os.unwrap_or_default().trim();
    if os.is_empty() {
        return;
    }
    match PREFIXES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(os))
    {
        Some((_, prefix)) => out.push_str(prefix),
        None => {
            out.push('[');
            out.push_str(os);
            out.push(']');
        }
    }
}

/// Appends the sanitized value of metric `name` to `out`, as Countly stores it; `false`
/// (and `out` as it was) when the value is dropped. `os` is the request's `_os`, which
/// prefixes `_os_version` and `_density`. Appending lets a request keep all its metric
/// values in one buffer instead of one allocation each.
pub fn push_metric_value(out: &mut String, name: &str, raw: &str, os: Option<&str>) -> bool {
    let start = out.len();
    let kept = push_metric(out, name, raw.trim(), os);
    if !kept || out.len() == start {
        out.truncate(start);
        return false;
    }
    true
}

fn push_metric(out: &mut String, name: &str, raw: &str, os: Option<&str>) -> bool {
    if raw.is_empty() {
        return false;
    }
    let start = out.len();
    match name {
        "_os_version" => {
            push_os_prefix(out, os);
            push_value(out, raw);
        }
        "_app_version" => {
            push_value(out, raw);
            if !out[start..].contains(':') {
                out.push_str(":0");
            }
        }
        "_carrier" => match carrier(raw) {
            Some(titled) => push_value(out, &titled),
            None => return false,
        },
        "_density" => {
            let raw = raw.trim_end_matches("dpi");
            let Ok(d) = raw.parse::<f64>() else {
                return false;
            };
            push_os_prefix(out, os);
            match two_decimals(raw) {
                Some((int, frac)) => {
                    out.push_str(int);
                    out.push(':');
                    out.push_str(frac);
                    for _ in frac.len()..2 {
                        out.push('0');
                    }
                }
                None => push_value(out, &format!("{d:.2}")),
            }
        }
        "_locale" => {
            // Countly's `langs` keeps the language, not the region. Lower-casing after
            // the value rules is the same as before them: they touch no letter.
            let lang = raw.split(['_', '-']).next().unwrap_or(raw);
            push_value(out, lang);
            out[start..].make_ascii_lowercase();
        }
        _ => push_value(out, raw),
    }
    true
}

/// A plain decimal with at most two decimals (`2`, `2.7`, `2.75`, no leading zero, few
/// digits): its `{:.2}` spelling is itself, padded, so the float formatter (slow for
/// exact decimals) is not needed. Returns the integer and fraction digits.
fn two_decimals(raw: &str) -> Option<(&str, &str)> {
    let (int, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let plain_int = (1..=9).contains(&int.len()) && (int == "0" || !int.starts_with('0'));
    (plain_int && digits(int) && frac.len() <= 2 && digits(frac)).then_some((int, frac))
}

/// Carrier names in Title Case; Countly drops 16-character space-free values (identifiers,
/// not names) and bare MCC+MNC codes.
fn carrier(raw: &str) -> Option<String> {
    if raw.len() == 16 && !raw.contains(' ') {
        return None;
    }
    if (5..=6).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut titled = String::with_capacity(raw.len());
    for (i, w) in raw.split(' ').enumerate() {
        if i > 0 {
            titled.push(' ');
        }
        let mut c = w.chars();
        if let Some(f) = c.next() {
            titled.extend(f.to_uppercase());
            titled.extend(c.flat_map(char::to_lowercase));
        }
    }
    Some(titled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`push_metric_value`] after other text, as a request's buffer has it: what it
    /// appended, and the buffer untouched when it dropped the value.
    fn metric_value(name: &str, raw: &str, os: Option<&str>) -> Option<String> {
        let mut out = String::from("before|");
        if push_metric_value(&mut out, name, raw, os) {
            out.strip_prefix("before|").map(str::to_string)
        } else {
            assert_eq!(
                out, "before|",
                "a dropped value leaves the buffer as it was"
            );
            None
        }
    }

    #[test]
    fn values_never_hold_a_dot_or_a_nul() {
        assert_eq!(value("$$a.b\0c.."), "a:b&#9647c::");
        assert_eq!(value("plain"), "plain");
        assert_eq!(value("é.ü"), "é:ü");
        assert_eq!(value(""), "");
    }

    #[test]
    fn densities_spell_as_the_float_formatter_does() {
        for raw in [
            "2",
            "2.",
            "2.7",
            "2.75",
            "0",
            "0.5",
            "00.5",
            "02",
            "2.755",
            "-1",
            "+1",
            "1e3",
            ".5",
            "123456789",
            "1234567890.25",
            "2.75dpi",
            "160dpi",
            "nan",
            "inf",
        ] {
            let slow = raw
                .trim_end_matches("dpi")
                .parse::<f64>()
                .ok()
                .map(|d| format!("a{}", value(&format!("{d:.2}"))));
            assert_eq!(
                metric_value("_density", raw, Some("Android")),
                slow,
                "{raw}"
            );
        }
    }

    #[test]
    fn countly_metric_values() {
        assert_eq!(
            metric_value("_os_version", "4.4", Some("Android")).as_deref(),
            Some("a4:4")
        );
        assert_eq!(
            metric_value("_os_version", "7.1", Some("IOS")).as_deref(),
            Some("i7:1")
        );
        assert_eq!(
            metric_value("_os_version", "4.4", None).as_deref(),
            Some("4:4")
        );
        assert_eq!(
            metric_value("_os_version", "2.3", Some("Tizen")).as_deref(),
            Some("[Tizen]2:3")
        );
        assert_eq!(
            metric_value("_app_version", "1", None).as_deref(),
            Some("1:0")
        );
        assert_eq!(
            metric_value("_app_version", "1.2", None).as_deref(),
            Some("1:2")
        );
        assert_eq!(
            metric_value("_carrier", "vodafone tr", None).as_deref(),
            Some("Vodafone Tr")
        );
        assert_eq!(metric_value("_carrier", "28601", None), None);
        assert_eq!(metric_value("_carrier", "abcdefghijklmnop", None), None);
        assert_eq!(
            metric_value("_density", "2", Some("Android")).as_deref(),
            Some("a2:00")
        );
        assert_eq!(
            metric_value("_locale", "en_US", None).as_deref(),
            Some("en")
        );
        assert_eq!(
            metric_value("_device", "$Nexus 5.1", None).as_deref(),
            Some("Nexus 5:1")
        );
        assert_eq!(metric_value("_device", "  ", None), None);
    }

    #[test]
    fn segments() {
        assert_eq!(segment_key("$a.b.c"), "abc");
        assert_eq!(segment_value("1.0"), "1:0");
        assert_eq!(segment_value("5"), "[CLY]5");
        assert_eq!(segment_value("31"), "[CLY]31");
        assert_eq!(segment_value("32"), "32");
        assert_eq!(segment_value("05"), "05");
        assert_eq!(segment_value("ç\u{0}gA"), "ç&#9647gA");
    }
}
