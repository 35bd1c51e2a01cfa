//! Countly's rules for turning SDK-sent names and values into safe counter paths.
//!
//! Counter fields are dotted paths (`22.Android.t`), so a value must never contain a dot;
//! Countly replaces `.` by `:` in values, removes dots from segment keys, strips a leading
//! `$`, and prefixes segment values `1`..`31` with `[CLY]` so they cannot be mistaken for
//! a day number in the nested answer.

use serde_json::Value;

pub use tally_model::device::{MetricSpec, COUNTRY_SLOT, METRICS};

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

/// Countly's OS prefixes for `_os_version` and `_density` (`common.os_mapping` of its
/// `api/utils/common.js`), by lower-cased `_os`.
const OS_PREFIXES: [(&str, &str); 38] = [
    ("webos", "webos"),
    ("brew", "brew"),
    ("unknown", "unk"),
    ("undefined", "unk"),
    ("tvos", "atv"),
    ("apple tv", "atv"),
    ("watchos", "wos"),
    ("unity editor", "uty"),
    ("qnx", "qnx"),
    ("os/2", "os2"),
    ("amazon fire tv", "aft"),
    ("amazon", "amz"),
    ("web", "web"),
    ("windows", "mw"),
    ("open bsd", "ob"),
    ("searchbot", "sb"),
    ("sun os", "so"),
    ("solaris", "so"),
    ("beos", "bo"),
    ("mac osx", "o"),
    ("macos", "o"),
    ("mac", "o"),
    ("osx", "o"),
    ("linux", "l"),
    ("unix", "u"),
    ("ios", "i"),
    ("android", "a"),
    ("blackberry", "b"),
    ("windows phone", "w"),
    ("wp", "w"),
    ("roku", "r"),
    ("symbian", "s"),
    ("chrome", "c"),
    ("debian", "d"),
    ("nokia", "n"),
    ("firefox", "f"),
    ("tizen", "t"),
    ("arch", "l"),
];

/// Appends `version` with Countly's OS prefix (as its current ingestor does): the
/// table's prefix for a known OS, unless the version already starts with it; otherwise
/// the OS itself in brackets (`[HarmonyOS]4.2`). Without an OS, the version alone.
fn push_os_prefixed(out: &mut String, os: Option<&str>, version: &str) {
    let os = os.unwrap_or_default().trim();
    if os.is_empty() {
        push_value(out, version);
        return;
    }
    match OS_PREFIXES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(os))
    {
        Some((_, prefix)) if !version.starts_with(prefix) => {
            out.push_str(prefix);
        }
        _ => {
            out.push('[');
            push_value(out, &os.replace(['[', ']'], ""));
            out.push(']');
        }
    }
    push_value(out, version);
}

/// Fills in what Countly derives when the SDK did not send it (`getPredefinedMetrics` of
/// its `usage.js`): an Apple OS's manufacturer is `Apple`; an iPhone or iPod is a
/// `mobile`, an iPad a `tablet`, an Apple Watch `wearable`, an Apple TV `smarttv`, a Mac
/// `desktop`. The OS must be spelled exactly so, as there.
pub fn derive_device(texts: &mut crate::device_metrics::MetricTexts<'_>) {
    // Slots found at compile time: this runs on every request with metrics.
    const OS: usize = slot("_os");
    const DEVICE: usize = slot("_device");
    const KIND: usize = slot("_device_type");
    const MAKER: usize = slot("_manufacturer");
    let apple = match texts[OS].as_deref() {
        Some(os @ ("iOS" | "watchOS" | "tvOS" | "macOS")) => os,
        _ => return,
    };
    if texts[KIND].is_none() {
        if let Some(d) = texts[DEVICE].as_deref() {
            let derived = match apple {
                "iOS" if d.starts_with("iPhone") || d.starts_with("iPod") => Some("mobile"),
                "iOS" if d.starts_with("iPad") => Some("tablet"),
                "watchOS" if d.starts_with("Watch") => Some("wearable"),
                "tvOS" if d.starts_with("AppleTV") => Some("smarttv"),
                "macOS" if d.starts_with("Mac") || d.starts_with("iMac") => Some("desktop"),
                _ => None,
            };
            texts[KIND] = derived.map(std::borrow::Cow::Borrowed);
        }
    }
    if texts[MAKER].is_none() {
        texts[MAKER] = Some(std::borrow::Cow::Borrowed("Apple"));
    }
}

/// The position of metric `name` in [`METRICS`] (a compile-time error when it has none).
const fn slot(name: &str) -> usize {
    let mut i = 0;
    while i < METRICS.len() {
        if eq(METRICS[i].name.as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("no such metric")
}

const fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A number as JavaScript prints it (`String(n)`), which is how Countly spells a number
/// it makes a segmentation value: `3.0` is `3`, `1e21` is `1e+21`, `1e-7` is `1e-7`.
pub fn js_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= 1 << 53) {
        return i.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    if f == 0.0 {
        return "0".into();
    }
    let abs = f.abs();
    if (1e-6..1e21).contains(&abs) {
        // Rust's shortest round-trip spelling, as JavaScript's, without an exponent.
        return format!("{f}");
    }
    let e = format!("{f:e}");
    match e.split_once('e') {
        Some((m, exp)) if !exp.starts_with('-') => format!("{m}e+{exp}"),
        _ => e,
    }
}

/// A segmentation value as Countly reads it: text as it is, booleans spelled out,
/// numbers as JavaScript prints them; `None` (skipped with its key) for arrays, objects
/// and null.
pub fn segment_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(js_number(n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
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
        "_os_version" => push_os_prefixed(out, os, raw),
        "_app_version" => {
            push_value(out, raw);
            // Only a number without a dot gets `:0` (`2` is `2:0`; `dev` stays `dev`).
            if !raw.contains('.') && raw.parse::<f64>().is_ok_and(f64::is_finite) {
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
            let spelled = match two_decimals(raw) {
                Some((int, frac)) => format!("{int}.{frac:0<2}"),
                None => format!("{d:.2}"),
            };
            push_os_prefixed(out, os, &spelled);
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

/// Carrier names as Countly stores them (`processCarrier` of its `api/utils/common.js`):
/// a 16-character value without spaces is an identifier, not a name, and is dropped; an
/// MCC+MNC code (5 or 6 digits) becomes its operator's name from the public mcc-mnc list
/// (`collector/data/mcc_mnc.tsv`), or is dropped when the list has none; then Title Case.
fn carrier(raw: &str) -> Option<String> {
    if raw.len() == 16 && !raw.contains(' ') {
        return None;
    }
    let name = if (5..=6).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        operator(raw)?
    } else {
        raw
    };
    Some(title_case(name))
}

/// The operator of an MCC+MNC code.
fn operator(code: &str) -> Option<&'static str> {
    static TABLE: std::sync::LazyLock<std::collections::HashMap<&'static str, &'static str>> =
        std::sync::LazyLock::new(|| {
            include_str!("../data/mcc_mnc.tsv")
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('\t'))
                .collect()
        });
    TABLE.get(code).copied()
}

/// JavaScript's `/\w\S*/g` title case, as Countly applies it: each run that starts with
/// an ASCII word character and goes on to the next white space gets its first character
/// upper-cased and the rest lower-cased (`MTS` is `Mts`, `t-mobile` is `T-mobile`).
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if c.is_whitespace() {
            in_run = false;
            out.push(c);
        } else if in_run {
            out.extend(c.to_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            in_run = true;
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
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
        // Countly's table: tvOS, watchOS, Tizen and the rest; unknown OSes in brackets.
        for (os, version, want) in [
            ("Tizen", "2.3", "t2:3"),
            ("tvOS", "17.0", "atv17:0"),
            ("watchOS", "10.1", "wos10:1"),
            ("Windows Phone", "8.1", "w8:1"),
            ("Windows", "10", "mw10"),
            ("macOS", "14.2", "o14:2"),
            ("webOS", "6", "webos6"),
            ("BlackBerry", "10.3", "b10:3"),
            ("HarmonyOS", "4.2", "[HarmonyOS]4:2"),
        ] {
            assert_eq!(
                metric_value("_os_version", version, Some(os)).as_deref(),
                Some(want),
                "{os}"
            );
        }
        assert_eq!(
            metric_value("_app_version", "1", None).as_deref(),
            Some("1:0")
        );
        assert_eq!(
            metric_value("_app_version", "1.2", None).as_deref(),
            Some("1:2")
        );
        assert_eq!(
            metric_value("_app_version", "dev", None).as_deref(),
            Some("dev")
        );
        assert_eq!(
            metric_value("_app_version", "2.0-beta", None).as_deref(),
            Some("2:0-beta")
        );
        assert_eq!(
            metric_value("_carrier", "vodafone tr", None).as_deref(),
            Some("Vodafone Tr")
        );
        // MCC+MNC codes name their operator (the public mcc-mnc list), Title Cased as
        // Countly does it; an unknown code is dropped.
        assert_eq!(
            metric_value("_carrier", "28601", None).as_deref(),
            Some("Turkcell")
        );
        assert_eq!(
            metric_value("_carrier", "310410", None).as_deref(),
            Some("At&t")
        );
        assert_eq!(metric_value("_carrier", "12345", None), None);
        assert_eq!(title_case("MTS (çell) t-mobile"), "Mts (çEll) T-mobile");
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
    fn numbers_spell_as_javascript_prints_them() {
        let n = |v: serde_json::Value| segment_text(&v);
        assert_eq!(n(serde_json::json!(3.0)).as_deref(), Some("3"));
        assert_eq!(n(serde_json::json!(1.5)).as_deref(), Some("1.5"));
        assert_eq!(n(serde_json::json!(-2)).as_deref(), Some("-2"));
        assert_eq!(n(serde_json::json!(1e21)).as_deref(), Some("1e+21"));
        assert_eq!(n(serde_json::json!(1.5e-7)).as_deref(), Some("1.5e-7"));
        assert_eq!(n(serde_json::json!(0.000001)).as_deref(), Some("0.000001"));
        assert_eq!(n(serde_json::json!(true)).as_deref(), Some("true"));
        assert_eq!(n(serde_json::json!([1])), None);
        assert_eq!(
            segment_value(&n(serde_json::json!(5.0)).unwrap_or_default()),
            "[CLY]5"
        );
    }

    #[test]
    fn apple_devices_get_their_type_and_maker() {
        use std::borrow::Cow;
        let slot = |name: &str| METRICS.iter().position(|m| m.name == name).unwrap_or(0);
        let mut t: crate::device_metrics::MetricTexts<'_> = Default::default();
        t[slot("_os")] = Some(Cow::Borrowed("iOS"));
        t[slot("_device")] = Some(Cow::Borrowed("iPad13,4"));
        derive_device(&mut t);
        assert_eq!(t[slot("_device_type")].as_deref(), Some("tablet"));
        assert_eq!(t[slot("_manufacturer")].as_deref(), Some("Apple"));
        let mut t: crate::device_metrics::MetricTexts<'_> = Default::default();
        t[slot("_os")] = Some(Cow::Borrowed("Android"));
        t[slot("_device")] = Some(Cow::Borrowed("iPhone"));
        derive_device(&mut t);
        assert_eq!(t[slot("_device_type")], None);
        assert_eq!(t[slot("_manufacturer")], None);
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
