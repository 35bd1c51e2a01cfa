//! Countly's nested time object, built from counter hash fields.
//!
//! A field `22.13.t` of the month hash of 2024-10 becomes `{"2024":{"10":{"22":{"13":{"t":…}}}}}`;
//! fields of the year hash sit under the year. Values inserted twice at one path add up,
//! which is how several events are summed into one answer.

use serde_json::{Map, Number, Value};

/// Countly's output escaping of keys and strings (unless `noescape=1`).
pub fn escape(s: &str, on: bool) -> String {
    if !on || !s.contains(['"', '&', '\'', '<', '>']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A counter's text (`HINCRBY`/`HINCRBYFLOAT` results) as a JSON number: whole numbers as
/// integers, others rounded to 5 decimals (float sums drift in the last digits).
pub fn number(text: &str) -> Option<Value> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f: f64 = text.parse().ok().filter(|f: &f64| f.is_finite())?;
    let r = (f * 100_000.0).round() / 100_000.0;
    if r.fract() == 0.0 && r.abs() < 9e15 {
        Some(Value::from(r as i64))
    } else {
        Number::from_f64(r).map(Value::Number)
    }
}

fn add(a: &Value, b: &Value) -> Value {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => Value::from(x.saturating_add(y)),
        _ => {
            let s = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
            number(&s.to_string()).unwrap_or(Value::from(0))
        }
    }
}

/// Adds `v` at `prefix` + the dotted `field` in `root`.
pub fn insert(root: &mut Map<String, Value>, prefix: &[&str], field: &str, v: Value, esc: bool) {
    let mut parts: Vec<&str> = prefix.to_vec();
    parts.extend(field.split('.'));
    let Some((last, path)) = parts.split_last() else {
        return;
    };
    let mut cur = root;
    for p in path {
        let entry = cur
            .entry(escape(p, esc))
            .or_insert_with(|| Value::Object(Map::new()));
        match entry {
            Value::Object(m) => cur = m,
            // A value whose name collides with a level (a metric called "5") loses.
            _ => return,
        }
    }
    let key = escape(last, esc);
    match cur.get(&key) {
        Some(existing @ Value::Number(_)) => {
            let sum = add(existing, &v);
            cur.insert(key, sum);
        }
        Some(_) => {}
        None => {
            cur.insert(key, v);
        }
    }
}

/// Inserts every numeric field of a hash under `prefix`; `keep` filters fields.
pub fn insert_hash(
    root: &mut Map<String, Value>,
    prefix: &[&str],
    fields: &[(String, String)],
    esc: bool,
    keep: impl Fn(&str) -> bool,
) {
    for (f, v) in fields {
        if !keep(f) {
            continue;
        }
        if let Some(n) = number(v) {
            if n.as_f64() != Some(0.0) {
                insert(root, prefix, f, n, esc);
            }
        }
    }
}

/// Range lists sort as numbers, other lists as text.
pub fn sort_meta(list: &mut [String]) {
    if list.iter().all(|s| s.parse::<u32>().is_ok()) {
        list.sort_by_key(|s| s.parse::<u32>().unwrap_or(0));
    } else {
        list.sort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nests_and_adds() {
        let mut m = Map::new();
        let fields = vec![
            ("22.13.t".to_string(), "1".to_string()),
            ("22.t".into(), "2".into()),
            ("22.s".into(), "4.000000000001".into()),
            ("22.zero".into(), "0".into()),
        ];
        insert_hash(&mut m, &["2024", "10"], &fields, true, |_| true);
        insert_hash(&mut m, &["2024", "10"], &fields[..2], true, |_| true);
        assert_eq!(
            Value::Object(m),
            json!({"2024": {"10": {"22": {"13": {"t": 2}, "t": 4, "s": 4}}}})
        );
    }

    #[test]
    fn escapes_like_countly() {
        assert_eq!(
            escape("<a href=\"x\">&'", true),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(escape("<a>", false), "<a>");
        assert_eq!(number("2.5"), Some(json!(2.5)));
        assert_eq!(number("x"), None);
        let mut v = vec!["10".to_string(), "2".into(), "1".into()];
        sort_meta(&mut v);
        assert_eq!(v, ["1", "2", "10"]);
    }
}
