//! Countly's `metrics` parameter (the device's and app's facts, such as `_os` and
//! `_app_version`; Prometheus metrics are `tally_service::metrics`), read straight from
//! its JSON text into the handful Tally aggregates: no `serde_json::Value` tree, no copy
//! of a value that needs no unescaping, and other keys skipped without being built. Every begin_session carries
//! one, so this is on the collector's hottest path.
//!
//! It accepts and refuses exactly what parsing into a `Value` and then checking it did:
//! a JSON object whose nesting (the object itself is 1) is at most `max_depth`; a scalar
//! spelled as `Value`'s `to_string` spells it; the last of repeated keys wins.

use crate::params::{Param, Params};
use crate::sanitize::{scalar_text, METRICS};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use tally_service::ApiError;

/// The text of each of [`METRICS`], in its order; `None` when absent or not a scalar.
pub type MetricTexts<'a> = [Option<Cow<'a, str>>; METRICS.len()];

/// The one answer to a `metrics` that is not JSON, not an object, or nested too deeply.
const MALFORMED: &str = "metrics JSON is not properly formed";

fn malformed() -> ApiError {
    ApiError::bad(MALFORMED)
}

/// Parses a `metrics` object from its text.
pub fn parse(text: &str, max_depth: usize) -> Result<MetricTexts<'_>, ApiError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let out = Object { max_depth }
        .deserialize(&mut de)
        .map_err(|_| malformed())?;
    de.end().map_err(|_| malformed())?;
    Ok(out)
}

/// The metrics of a request: parameter `metrics` as JSON text (a query or form) is read
/// straight from the text; as a JSON value (a JSON body) it goes through
/// [`Params::json`], whose rules the text route keeps. `Ok(None)` when absent, null or
/// blank.
pub fn from_params<'b>(
    p: &'b Params<'_>,
    max_depth: usize,
) -> Result<Option<MetricTexts<'b>>, ApiError> {
    if let Some(s) = p.0.get("metrics").and_then(Param::as_str) {
        return if s.trim().is_empty() {
            Ok(None)
        } else {
            parse(s, max_depth).map(Some)
        };
    }
    match p.json("metrics", MALFORMED, max_depth)? {
        None => Ok(None),
        Some(Value::Object(m)) => {
            let mut out: MetricTexts<'_> = Default::default();
            for (slot, spec) in out.iter_mut().zip(METRICS) {
                *slot = m.get(spec.name).and_then(scalar_text).map(Cow::Owned);
            }
            Ok(Some(out))
        }
        Some(_) => Err(malformed()),
    }
}

/// The top-level object (nesting level 1).
struct Object {
    max_depth: usize,
}

impl<'de> DeserializeSeed<'de> for Object {
    type Value = MetricTexts<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Object {
    type Value = MetricTexts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.max_depth < 1 {
            return Err(de::Error::custom("nested too deeply"));
        }
        let mut out: MetricTexts<'de> = Default::default();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let value = map.next_value_seed(Scalar {
                level: 2,
                max_depth: self.max_depth,
            })?;
            if let Some(i) = METRICS.iter().position(|m| m.name == key.0) {
                out[i] = value;
            }
        }
        Ok(out)
    }
}

/// A string, borrowed from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value at nesting level `level` if it were a container: a scalar as text, `None` for
/// null, arrays and objects (whose contents are checked for depth and skipped).
#[derive(Clone, Copy)]
struct Scalar {
    level: usize,
    max_depth: usize,
}

impl<'de> DeserializeSeed<'de> for Scalar {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Scalar {
    fn deeper<E: de::Error>(&self) -> Result<Scalar, E> {
        if self.level > self.max_depth {
            return Err(E::custom("nested too deeply"));
        }
        Ok(Scalar {
            level: self.level + 1,
            max_depth: self.max_depth,
        })
    }
}

impl<'de> Visitor<'de> for Scalar {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s.to_string())))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(if b { "true" } else { "false" })))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(serde_json::Number::from(v).to_string())))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(serde_json::Number::from(v).to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // serde_json refuses non-finite numbers in its input, so this always spells it.
        Ok(serde_json::Number::from_f64(v).map(|n| Cow::Owned(n.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let inner = self.deeper()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::depth;

    /// What the `Value` route made of the same text.
    fn by_value(text: &str, max_depth: usize) -> Result<Vec<Option<String>>, ()> {
        let v: Value = serde_json::from_str(text).map_err(|_| ())?;
        if depth(&v) > max_depth {
            return Err(());
        }
        let Value::Object(m) = v else { return Err(()) };
        Ok(METRICS
            .iter()
            .map(|s| m.get(s.name).and_then(scalar_text))
            .collect())
    }

    fn by_parse(text: &str, max_depth: usize) -> Result<Vec<Option<String>>, ()> {
        parse(text, max_depth)
            .map(|t| t.iter().map(|v| v.as_deref().map(str::to_string)).collect())
            .map_err(|_| ())
    }

    #[test]
    fn agrees_with_the_value_route() {
        let cases = [
            r#"{"_os":"Android","_os_version":"14","_density":2.75,"_locale":"en_US"}"#,
            r#"{"_os":"A\u0000nd\"roid","_device":"Pixel\n8","_carrier":null}"#,
            r#"{"_app_version":1,"_resolution":-3,"_device_type":true,"_manufacturer":1e300}"#,
            r#"{"_os":"a","_os":"b","other":{"x":[1,{"y":2}]},"_device":[1,2]}"#,
            r#"{"_density":12345678901234567890,"_locale":0.1,"_carrier":1.0}"#,
            r#"  {}  "#,
            r#"{"a":[[[[]]]]}"#,
            r#"{"a":[[[[[]]]]]}"#,
            r#"{"a":{"b":{"c":{}}}}"#,
            r#"{"a":{"b":{"c":{"d":{}}}}}"#,
            r#"[1]"#,
            r#""text""#,
            r#"7"#,
            r#"null"#,
            r#"{"a":1} x"#,
            r#"{"a":"#,
            r#"{1:2}"#,
            "",
        ];
        for text in cases {
            for max_depth in [0, 1, 2, 4, 5, 16] {
                assert_eq!(
                    by_parse(text, max_depth),
                    by_value(text, max_depth),
                    "{text} at depth {max_depth}"
                );
            }
        }
    }

    #[test]
    fn values_without_escapes_are_borrowed() {
        let t = parse(r#"{"_os":"Android","_device":"Pixel\"8"}"#, 4).unwrap_or_default();
        assert!(matches!(t[0], Some(Cow::Borrowed("Android"))));
        assert!(matches!(&t[5], Some(Cow::Owned(s)) if s == "Pixel\"8"));
    }
}
