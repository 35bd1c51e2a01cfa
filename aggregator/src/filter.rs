//! The filter language of realtime reports: a small boolean expression over an event.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | atom
//! atom    := "(" expr ")"
//!          | name op literal            op: = != < <= > >=
//!          | name ["not"] "in" "(" literal ("," literal)* ")"
//!          | name "is" ["not"] "null"
//! literal := 'text' | number
//! name    := a segmentation key, or one of the event's own fields:
//!            event, device_id, count, sum, dur
//! ```
//!
//! Example: `country = 'TR' and platform in ('ios', 'android')`. Keywords are
//! case-insensitive; a missing value compares false (except `is null`). Two numbers
//! compare as numbers, anything else as text.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Text(String),
    Num(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Lit),
    In(String, Vec<Lit>),
    IsNull(String),
}

/// Longest filter accepted.
pub const MAX_LEN: usize = 2000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Text(String),
    Num(f64),
    Op(Op),
    Open,
    Close,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '\'' => {
                let mut t = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => return Err("unterminated string".into()),
                        // '' inside a string is a quote.
                        Some('\'') if cs.get(i + 1) == Some(&'\'') => {
                            t.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            t.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Text(t));
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1;
            }
            '!' | '<' | '>' => {
                let next = cs.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    _ => return Err(format!("unexpected {c:?}")),
                };
                out.push(Tok::Op(op));
                i += len;
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let start = i;
                i += 1;
                while i < cs.len()
                    && (cs[i].is_ascii_digit() || matches!(cs[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    i += 1;
                }
                let t: String = cs[start..i].iter().collect();
                out.push(Tok::Num(
                    t.parse().map_err(|_| format!("bad number {t:?}"))?,
                ));
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '"' => {
                // "quoted names" may hold any character but a double quote.
                if c == '"' {
                    let end = cs[i + 1..]
                        .iter()
                        .position(|&x| x == '"')
                        .ok_or("unterminated name")?;
                    out.push(Tok::Word(cs[i + 1..i + 1 + end].iter().collect()));
                    i += end + 2;
                } else {
                    let start = i;
                    while i < cs.len()
                        && (cs[i].is_alphanumeric() || matches!(cs[i], '_' | '$' | '.' | '-'))
                    {
                        i += 1;
                    }
                    out.push(Tok::Word(cs[start..i].iter().collect()));
                }
            }
            c => return Err(format!("unexpected {c:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        if self.next() == Some(t) {
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }
    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("filter nested too deeply".into());
        }
        Ok(())
    }
    fn or(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let mut parts = vec![self.and()?];
        while self.peek_kw("or") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.not()?];
        while self.peek_kw("and") {
            self.pos += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }
    fn not(&mut self) -> Result<Expr, String> {
        if self.peek_kw("not") {
            self.pos += 1;
            self.enter()?;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.atom()
    }
    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Tok::Text(t)) => Ok(Lit::Text(t)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            _ => Err("expected a 'text' or number".into()),
        }
    }
    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Open) => {
                let e = self.or()?;
                self.expect(Tok::Close, "')'")?;
                Ok(e)
            }
            Some(Tok::Word(name)) => {
                if self.peek_kw("is") {
                    self.pos += 1;
                    let negate = self.peek_kw("not");
                    if negate {
                        self.pos += 1;
                    }
                    if !self.peek_kw("null") {
                        return Err("expected null".into());
                    }
                    self.pos += 1;
                    let e = Expr::IsNull(name);
                    return Ok(if negate { Expr::Not(Box::new(e)) } else { e });
                }
                let negate = self.peek_kw("not");
                if negate {
                    self.pos += 1;
                }
                if self.peek_kw("in") {
                    self.pos += 1;
                    self.expect(Tok::Open, "'(' after in")?;
                    let mut list = vec![self.literal()?];
                    while self.toks.get(self.pos) == Some(&Tok::Comma) {
                        self.pos += 1;
                        list.push(self.literal()?);
                    }
                    self.expect(Tok::Close, "')'")?;
                    let e = Expr::In(name, list);
                    return Ok(if negate { Expr::Not(Box::new(e)) } else { e });
                }
                if negate {
                    return Err("expected in after not".into());
                }
                match self.next() {
                    Some(Tok::Op(op)) => Ok(Expr::Cmp(name, op, self.literal()?)),
                    _ => Err(format!("expected an operator after {name}")),
                }
            }
            _ => Err("expected a name or '('".into()),
        }
    }
}

/// Parses a filter; the error says what is wrong.
pub fn parse(s: &str) -> Result<Expr, String> {
    if s.len() > MAX_LEN {
        return Err(format!("filter longer than {MAX_LEN} characters"));
    }
    let mut p = Parser {
        toks: lex(s)?,
        pos: 0,
        depth: 0,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err("unexpected text after the filter".into());
    }
    Ok(e)
}

fn cmp(value: &str, lit: &Lit) -> Option<Ordering> {
    match lit {
        Lit::Num(n) => value.parse::<f64>().ok()?.partial_cmp(n),
        Lit::Text(t) => Some(value.cmp(t.as_str())),
    }
}

impl Expr {
    /// Evaluates against an event; `get` answers a name's value, if any.
    pub fn eval(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Expr::Or(v) => v.iter().any(|e| e.eval(get)),
            Expr::And(v) => v.iter().all(|e| e.eval(get)),
            Expr::Not(e) => !e.eval(get),
            Expr::IsNull(n) => get(n).is_none(),
            Expr::In(n, list) => {
                get(n).is_some_and(|v| list.iter().any(|l| cmp(&v, l) == Some(Ordering::Equal)))
            }
            Expr::Cmp(n, op, lit) => get(n).and_then(|v| cmp(&v, lit)).is_some_and(|o| match op {
                Op::Eq => o == Ordering::Equal,
                Op::Ne => o != Ordering::Equal,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                Op::Ge => o != Ordering::Less,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: &str, pairs: &[(&str, &str)]) -> bool {
        let e = parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        let get = |n: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        e.eval(&get)
    }

    #[test]
    fn evaluates() {
        let ev = [
            ("country", "TR"),
            ("platform", "ios"),
            ("sum", "9.5"),
            ("it's", "x"),
        ];
        assert!(check(
            "country = 'TR' and platform in ('ios','android')",
            &ev
        ));
        assert!(!check("country = 'TR' and platform in ('web')", &ev));
        assert!(check("country != 'DE' OR nope = 'x'", &ev));
        assert!(check("sum > 9 and sum <= 9.5 and not (sum < 1)", &ev));
        assert!(check("missing is null and country is not null", &ev));
        assert!(!check("missing = 'x'", &ev));
        assert!(!check("missing != 'x'", &ev));
        assert!(check("platform not in ('web', 'android')", &ev));
        assert!(check("\"it's\" = 'x'", &ev));
        assert!(check("country = 'T''R' or country = 'TR'", &ev));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "",
            "country =",
            "country = TR",
            "(country = 'x'",
            "country ~ 'x'",
            "a in ()",
            "'x' = country",
            "a = 'x' b = 'y'",
            "a is 'x'",
            "a = 'open",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&"(".repeat(100)).is_err());
        assert!(parse(&format!("a = '{}'", "x".repeat(3000))).is_err());
    }
}
