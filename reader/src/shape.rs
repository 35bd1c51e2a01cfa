//! Countly's nested time object, built from counter hash fields.
//!
//! A field `22.t` of the month hash of 2024-10 becomes `{"2024":{"10":{"22":{"t":…}}}}`;
//! fields of the year hash sit under the year. Building it is the hot part of a read, so
//! [`Tree`] does not build nested maps: it collects flat paths borrowed from the Redis
//! reply, sorts them, adds up equal paths (several events summed into one answer) and
//! streams the JSON out in one pass.

use std::fmt::Write as _;

/// Countly's output escaping of keys and strings (unless `noescape=1`).
/// A value of a meta list as Countly answers it: its `"` first become `&quot;` (Countly
/// does that to meta arrays whatever `noescape` says), then the answer's own escaping
/// applies, which makes them `&amp;quot;`.
pub fn escape_meta(s: &str, on: bool) -> String {
    if s.contains('"') {
        escape(&s.replace('"', "&quot;"), on)
    } else {
        escape(s, on)
    }
}

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

/// A counter value: whole numbers stay integers; others are rounded to 5 decimals (float
/// sums drift in the last digits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn parse(text: &str) -> Option<Num> {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Num::Int(i));
        }
        let f: f64 = text.parse().ok().filter(|f: &f64| f.is_finite())?;
        Some(Num::Float(f).normal())
    }

    fn normal(self) -> Num {
        match self {
            Num::Float(f) => {
                let r = (f * 100_000.0).round() / 100_000.0;
                if r.fract() == 0.0 && r.abs() < 9e15 {
                    Num::Int(r as i64)
                } else {
                    Num::Float(r)
                }
            }
            i => i,
        }
    }

    pub fn plus(self, o: Num) -> Num {
        match (self, o) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a.saturating_add(b)),
            (a, b) => Num::Float(a.as_f64() + b.as_f64()).normal(),
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    pub fn is_zero(self) -> bool {
        self.as_f64() == 0.0
    }

    pub fn to_json(self) -> serde_json::Value {
        match self {
            Num::Int(i) => i.into(),
            Num::Float(f) => serde_json::Number::from_f64(f).map_or(0.into(), Into::into),
        }
    }

    fn write(self, out: &mut String) {
        match self {
            Num::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Num::Float(f) => {
                out.push_str(&serde_json::Number::from_f64(f).map_or("0".into(), |n| n.to_string()))
            }
        }
    }
}

/// Deepest path accepted (year, month, day, hour, value, field, and room to spare).
const MAX_DEPTH: usize = 8;

/// One value: its path in the arena and its number.
struct Entry {
    start: u32,
    end: u32,
    value: Num,
}

/// Flat (path, number) entries that render as one nested JSON object. Paths are written
/// once into one byte arena, components separated by `\0`; since `\0` sorts below every
/// other byte, sorting the joined bytes sorts by components, with one `memcmp` a
/// comparison and 16-byte moves.
#[derive(Default)]
pub struct Tree {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `value` (counter text) at `prefix` + the dotted `field`; zeros are left out.
    pub fn add(&mut self, prefix: &[&str], field: &str, value: &str) {
        if let Some(v) = Num::parse(value) {
            self.add_num(prefix, field, v);
        }
    }

    /// [`Tree::add`] of a number already parsed.
    pub fn add_num(&mut self, prefix: &[&str], field: &str, v: Num) {
        if v.is_zero()
            || field.contains('\0')
            || prefix.len() + field.split('.').count() > MAX_DEPTH
        {
            return;
        }
        let start = self.arena.len() as u32;
        for p in prefix {
            self.arena.extend_from_slice(p.as_bytes());
            self.arena.push(0);
        }
        self.arena
            .extend(field.bytes().map(|b| if b == b'.' { 0 } else { b }));
        let end = self.arena.len() as u32;
        self.entries.push(Entry {
            start,
            end,
            value: v,
        });
    }

    /// Adds every field of a hash under `prefix` that `keep` accepts.
    pub fn add_hash(
        &mut self,
        prefix: &[&str],
        fields: &[(&str, &str)],
        keep: impl Fn(&str) -> bool,
    ) {
        for (f, v) in fields {
            if keep(f) {
                self.add(prefix, f, v);
            }
        }
    }

    /// Renders the object, with `meta` (a rendered JSON object) as its `meta` member if
    /// given. No entries and no meta is `{}`, as Countly answers for no data.
    pub fn render(self, meta: Option<&str>, esc: bool) -> String {
        let Tree { arena, mut entries } = self;
        let path = |e: &Entry| &arena[e.start as usize..e.end as usize];
        entries.sort_unstable_by(|a, b| path(a).cmp(path(b)));
        // Equal paths add up.
        let mut merged: Vec<Entry> = Vec::with_capacity(entries.len());
        for e in entries {
            match merged.last_mut() {
                Some(last) if path(last) == path(&e) => last.value = last.value.plus(e.value),
                _ => merged.push(e),
            }
        }
        // As for a single counter, a zero sum is left out (a duration range's -1 in one
        // month and +1 in another).
        merged.retain(|e| !e.value.is_zero());
        let mut out = String::with_capacity(merged.len() * 16 + 64);
        out.push('{');
        let mut open: Vec<&[u8]> = Vec::new();
        let mut has_member = vec![false];
        for (i, e) in merged.iter().enumerate() {
            let p = path(e);
            // A value whose name collides with a level (a metric value called "5") loses.
            if let Some(next) = merged.get(i + 1) {
                let n = path(next);
                if n.len() > p.len() && n.starts_with(p) && n[p.len()] == 0 {
                    continue;
                }
            }
            let parts: Vec<&[u8]> = p.split(|b| *b == 0).collect();
            let Some((leaf, dirs)) = parts.split_last() else {
                continue;
            };
            let common = open.iter().zip(dirs).take_while(|(a, b)| a == b).count();
            while open.len() > common {
                out.push('}');
                open.pop();
                has_member.pop();
            }
            for d in &dirs[common..] {
                member(&mut out, &mut has_member, utf8(d), esc);
                out.push('{');
                open.push(d);
                has_member.push(false);
            }
            member(&mut out, &mut has_member, utf8(leaf), esc);
            e.value.write(&mut out);
        }
        for _ in 0..open.len() {
            out.push('}');
        }
        if let Some(m) = meta {
            member(&mut out, &mut has_member, "meta", false);
            out.push_str(m);
        }
        out.push('}');
        out
    }
}

/// Arena slices are cut at `\0` bytes of valid UTF-8, so they are valid UTF-8.
fn utf8(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// Writes `,"key":` (the comma when the object already has members).
fn member(out: &mut String, has_member: &mut [bool], key: &str, esc: bool) {
    if let Some(last) = has_member.last_mut() {
        if *last {
            out.push(',');
        }
        *last = true;
    }
    write_str(out, key, esc);
    out.push(':');
}

/// A JSON string, HTML-escaped as Countly does when `esc`.
pub fn write_str(out: &mut String, s: &str, esc: bool) {
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" _-.:[]()@#/+,;=!?*%$~".contains(&b));
    if plain {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(escape(s, esc)).to_string());
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
    use serde_json::{json, Value};

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn nests_adds_and_skips_zeros() {
        let mut t = Tree::new();
        let fields = [
            ("22.13.t", "1"),
            ("22.t", "2"),
            ("22.s", "4.000000000001"),
            ("22.zero", "0"),
        ];
        t.add_hash(&["2024", "10"], &fields, |_| true);
        t.add_hash(&["2024", "10"], &fields[..2], |_| true);
        t.add(&["2024"], "w43.u", "3");
        assert_eq!(
            parse(&t.render(Some(r#"{"os":["A"]}"#), true)),
            json!({"2024": {"w43": {"u": 3}, "10": {"22": {"13": {"t": 2}, "t": 4, "s": 4}}}, "meta": {"os": ["A"]}})
        );
        assert_eq!(Tree::new().render(None, true), "{}");
        assert_eq!(
            parse(&Tree::new().render(Some("{}"), true)),
            json!({"meta": {}})
        );
    }

    #[test]
    fn keys_are_escaped_and_collisions_resolved() {
        let mut t = Tree::new();
        t.add(&["2024"], "<b>\"x\".t", "1");
        t.add(&["2024"], "5", "1");
        t.add(&["2024"], "5.t", "2");
        t.add(&["2024"], "s", "2.5");
        let v = parse(&t.render(None, true));
        assert_eq!(
            v,
            json!({"2024": {"&lt;b&gt;&quot;x&quot;": {"t": 1}, "5": {"t": 2}, "s": 2.5}})
        );
        let mut t = Tree::new();
        t.add(&["2024"], "<b>.t", "1");
        assert_eq!(
            parse(&t.render(None, false)),
            json!({"2024": {"<b>": {"t": 1}}})
        );
    }

    #[test]
    fn escaping_and_meta_order() {
        assert_eq!(
            escape("<a href=\"x\">&'", true),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(escape("<a>", false), "<a>");
        assert_eq!(Num::parse("2.5"), Some(Num::Float(2.5)));
        assert_eq!(Num::parse("4.000000000001"), Some(Num::Int(4)));
        assert_eq!(Num::parse("x"), None);
        let mut v = vec!["10".to_string(), "2".into(), "1".into()];
        sort_meta(&mut v);
        assert_eq!(v, ["1", "2", "10"]);
    }
}
