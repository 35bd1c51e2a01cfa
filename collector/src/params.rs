//! Request parameters from a query string, a form body or a JSON body, as one map.
//!
//! SDKs send the same parameters three ways: `GET /i?...`, `POST` with a form body, and
//! `POST` with a JSON body where `events`, `metrics` and `requests` may be real JSON
//! instead of JSON-in-a-string. Body fields override query fields, as in Countly.
//! Decoding is strict: a query or form that is not valid UTF-8 after percent-decoding is
//! a 400, never silently mangled.

use serde_json::Value;
use std::borrow::Cow;
use tally_model::texthash::TextMap;
use tally_service::ApiError;

/// One parameter: text from a query/form (borrowed from the request unless it had to be
/// percent-decoded), or a JSON value from a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub enum Param<'a> {
    Text(Cow<'a, str>),
    Json(Value),
}

impl Param<'_> {
    /// The text of a query/form parameter or of a JSON string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Text(s) => Some(s),
            Param::Json(Value::String(s)) => Some(s),
            Param::Json(_) => None,
        }
    }
}

/// The parameters of one request, borrowing from its query string and body.
#[derive(Debug, Default, Clone)]
pub struct Params<'a>(pub TextMap<Cow<'a, str>, Param<'a>>);

/// Room reserved up front for the pairs of a query or form: what the SDKs send (a dozen
/// or so), so the map does not grow while it is filled; a longer query grows it as usual.
const RESERVE_PAIRS: usize = 16;

/// Adds the pairs of a query string or form body (strictly decoded).
pub fn parse_urlencoded<'a>(raw: &'a [u8], into: &mut Params<'a>) -> Result<(), ApiError> {
    into.0.reserve(RESERVE_PAIRS);
    for pair in tally_service::pairs(raw) {
        let (k, v) = pair?;
        into.0.insert(k, Param::Text(v));
    }
    Ok(())
}

/// The nesting depth of a JSON value (a scalar is 0).
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl<'a> Params<'a> {
    /// Parameters of a request: the query string, then the body by its content type.
    pub fn from_request(
        query: &'a str,
        content_type: &str,
        body: &'a [u8],
        max_depth: usize,
    ) -> Result<Params<'a>, ApiError> {
        let mut p = Params::default();
        parse_urlencoded(query.as_bytes(), &mut p)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(p);
        }
        let looks_json = content_type.contains("json")
            || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if looks_json {
            let v: Value = serde_json::from_slice(body)
                .map_err(|_| ApiError::bad("Request body is not valid JSON"))?;
            if depth(&v) > max_depth {
                return Err(ApiError::bad("Request body is nested too deeply"));
            }
            match v {
                Value::Object(o) => {
                    for (k, v) in o {
                        p.0.insert(Cow::Owned(k), Param::Json(v));
                    }
                }
                _ => return Err(ApiError::bad("Request body must be a JSON object")),
            }
        } else {
            parse_urlencoded(body, &mut p)?;
        }
        Ok(p)
    }

    /// Parameters of one `/i/bulk` item (a JSON object).
    pub fn from_object(o: serde_json::Map<String, Value>) -> Params<'a> {
        Params(
            o.into_iter()
                .map(|(k, v)| (Cow::Owned(k), Param::Json(v)))
                .collect(),
        )
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A parameter as text: JSON strings as they are, numbers and booleans spelled out,
    /// `null` as absent. Objects and arrays are not text (`None`).
    /// Borrowed from the map unless it had to be spelled out.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.0.get(name)? {
            Param::Text(s) => Some(Cow::Borrowed(s)),
            Param::Json(Value::String(s)) => Some(Cow::Borrowed(s)),
            Param::Json(Value::Number(n)) => Some(Cow::Owned(n.to_string())),
            Param::Json(Value::Bool(b)) => Some(Cow::Owned(b.to_string())),
            Param::Json(_) => None,
        }
    }

    /// A non-empty text parameter.
    pub fn nonempty(&self, name: &str) -> Option<Cow<'_, str>> {
        self.text(name).filter(|s| !s.is_empty())
    }

    /// A JSON parameter: parsed from text, or taken as is from a JSON body. `Ok(None)` when
    /// absent or empty; a 400 with `error` when it is not JSON.
    pub fn json(
        &self,
        name: &str,
        error: &str,
        max_depth: usize,
    ) -> Result<Option<Value>, ApiError> {
        let v = match self.0.get(name) {
            None | Some(Param::Json(Value::Null)) => return Ok(None),
            Some(Param::Json(v)) if !v.is_string() => v.clone(),
            Some(p) => {
                let s = p.as_str().unwrap_or_default();
                if s.trim().is_empty() {
                    return Ok(None);
                }
                serde_json::from_str(s).map_err(|_| ApiError::bad(error))?
            }
        };
        if depth(&v) > max_depth {
            return Err(ApiError::bad(error));
        }
        Ok(Some(v))
    }

    /// A flag such as `begin_session=1`: present and not `0`/`false`/empty.
    pub fn flag(&self, name: &str) -> bool {
        match self.0.get(name) {
            Some(Param::Json(Value::Bool(b))) => *b,
            Some(_) => !matches!(
                self.text(name).as_deref().map(str::trim),
                None | Some("" | "0" | "false")
            ),
            None => false,
        }
    }

    /// A canonical spelling of the parameters minus `skip`, for request fingerprints:
    /// sorted by name, JSON in its compact form.
    pub fn canonical(&self, skip: &[&str]) -> String {
        let mut keys: Vec<&str> = self
            .0
            .keys()
            .map(|k| k.as_ref())
            .filter(|k| !skip.contains(k))
            .collect();
        keys.sort();
        let mut out = String::new();
        for k in keys {
            out.push_str(k);
            out.push('=');
            match &self.0[k] {
                Param::Json(v) if !v.is_string() => out.push_str(&v.to_string()),
                p => out.push_str(p.as_str().unwrap_or_default()),
            }
            out.push('\u{1}');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_form_and_json_bodies() {
        let p = Params::from_request("app_key=k&device_id=a+b%20c", "", b"", 8).unwrap_or_default();
        assert_eq!(p.text("device_id").as_deref(), Some("a b c"));
        let p = Params::from_request(
            "device_id=q",
            "application/x-www-form-urlencoded",
            b"device_id=b&events=%5B%5D",
            8,
        )
        .unwrap_or_default();
        assert_eq!(p.text("device_id").as_deref(), Some("b"));
        assert_eq!(
            p.json("events", "bad", 8).ok().flatten(),
            Some(serde_json::json!([]))
        );
        let p = Params::from_request(
            "",
            "application/json",
            br#"{"device_id":7,"events":[{"key":"a"}]}"#,
            8,
        )
        .unwrap_or_default();
        assert_eq!(p.text("device_id").as_deref(), Some("7"));
        assert_eq!(
            p.json("events", "bad", 8).ok().flatten(),
            Some(serde_json::json!([{"key": "a"}]))
        );
    }

    #[test]
    fn invalid_utf8_and_bad_json_are_rejected() {
        assert!(Params::from_request("device_id=%FF%FE", "", b"", 8).is_err());
        assert!(Params::from_request("", "application/json", b"{nope", 8).is_err());
        assert!(Params::from_request("", "application/json", b"[1]", 8).is_err());
        let deep = format!("{}{}", "[".repeat(20), "]".repeat(20));
        let query = format!("events={deep}");
        let p = Params::from_request(&query, "", b"", 8).unwrap_or_default();
        assert!(p.json("events", "bad", 8).is_err());
    }

    #[test]
    fn flags() {
        let p = Params::from_request("a=1&b=0&c=&d=true&e=false", "", b"", 8).unwrap_or_default();
        assert!(
            p.flag("a")
                && !p.flag("b")
                && !p.flag("c")
                && p.flag("d")
                && !p.flag("e")
                && !p.flag("z")
        );
    }

    #[test]
    fn canonical_ignores_order_and_skipped_params() {
        let a = Params::from_request("b=2&a=1&rr=5", "", b"", 8).unwrap_or_default();
        let b = Params::from_request("a=1&b=2&rr=6", "", b"", 8).unwrap_or_default();
        assert_eq!(a.canonical(&["rr"]), b.canonical(&["rr"]));
        assert_ne!(a.canonical(&[]), b.canonical(&[]));
    }
}
