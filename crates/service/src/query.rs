//! Decoding query strings and form bodies: strict (bytes that are not UTF-8 after
//! percent-decoding are a 400, never mangled) and borrowing every part that needs no
//! decoding. Hand-written because it is on `/i`'s hot path (`docs/decisions/`); checked
//! against the `percent-encoding` crate on fixed and random input.

use crate::error::ApiError;
use std::borrow::Cow;

/// Decodes `a=1&b=x+y%20z` strictly: a pair that is not valid UTF-8 after percent-decoding
/// is a 400, never silently mangled.
pub fn decode_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    pairs(raw)
        .map(|pair| pair.map(|(k, v)| (k.into_owned(), v.into_owned())))
        .collect()
}

/// The pairs of a query or form, as [`decode_pairs`] decodes them, each part borrowed from
/// `raw` when it has nothing to decode: on `/i` that is most of them (keys, app key,
/// device id, flags), so only the JSON-bearing values are copied.
pub fn pairs(
    raw: &[u8],
) -> impl Iterator<Item = Result<(Cow<'_, str>, Cow<'_, str>), ApiError>> + '_ {
    raw.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => Ok((decode(&pair[..i])?, decode(&pair[i + 1..])?)),
            None => Ok((decode(pair)?, Cow::Borrowed(""))),
        })
}

fn not_utf8() -> ApiError {
    ApiError::bad("Request parameters are not valid UTF-8")
}

/// The value of each byte as a hex digit; `NOT_HEX` for the bytes that are not one.
const HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

/// One part of a query or form: `+` is a space, `%XX` a byte (a `%` without two hex digits
/// stays as it is), and the result must be UTF-8. Borrowed when there is nothing to
/// decode; otherwise one pass and one copy, a byte at a time: the part that needs
/// decoding is a `metrics` or `events` JSON, where escapes come every few bytes and a
/// copy call per plain run cost more than the bytes it copied.
fn decode(part: &[u8]) -> Result<Cow<'_, str>, ApiError> {
    let special = |b: &u8| *b == b'%' || *b == b'+';
    let Some(first) = part.iter().position(special) else {
        return std::str::from_utf8(part)
            .map(Cow::Borrowed)
            .map_err(|_| not_utf8());
    };
    let mut out = Vec::with_capacity(part.len());
    out.extend_from_slice(&part[..first]);
    let mut rest = &part[first..];
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => out.push(b' '),
            b'%' => match rest {
                [h, l, tail @ ..] if HEX[*h as usize] != NOT_HEX && HEX[*l as usize] != NOT_HEX => {
                    out.push(HEX[*h as usize] << 4 | HEX[*l as usize]);
                    rest = tail;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| not_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `percent_encoding` crate's decoding, with `+` as a space.
    fn reference(raw: &[u8]) -> Option<String> {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
            .ok()
    }

    #[test]
    fn decodes_like_the_url_standard() {
        for (raw, want) in [
            (&b"%zz"[..], "%zz"),
            (b"%4", "%4"),
            (b"%", "%"),
            (b"100%25+sure", "100% sure"),
            (b"%e2%82%AC", "\u{20ac}"),
            (b"a%2Bb", "a+b"),
            (b"", ""),
            (b"plain", "plain"),
            (b"++a+", "  a "),
            (b"ab%41cd%42", "abAcdB"),
            (b"x%2", "x%2"),
        ] {
            assert_eq!(decode(raw).ok().as_deref(), Some(want), "{raw:?}");
            let reference = reference(raw);
            assert_eq!(reference.as_deref(), Some(want));
        }
    }

    #[test]
    fn decodes_random_parts_like_the_reference() {
        // Parts dense in the bytes that matter: escapes, broken escapes, `+`, hex digits
        // and the start of a multi-byte character.
        let alphabet = b"%+2aAfFgG09z\xc3\xa9";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i * 5)) % alphabet.len() as u64) as usize])
                .collect();
            let reference = reference(&raw);
            assert_eq!(decode(&raw).ok().map(Cow::into_owned), reference, "{raw:?}");
        }
    }

    #[test]
    fn plain_parts_are_borrowed() {
        assert!(matches!(
            decode(b"plain-1_x"),
            Ok(Cow::Borrowed("plain-1_x"))
        ));
        assert!(matches!(
            decode("\u{e9}t\u{e9}".as_bytes()),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(decode(b"a+b"), Ok(Cow::Owned(s)) if s == "a b"));
        assert!(decode(b"\xff").is_err());
        let got: Vec<_> = pairs(b"k=v&x=%41").filter_map(Result::ok).collect();
        assert!(matches!(got[0], (Cow::Borrowed("k"), Cow::Borrowed("v"))));
        assert!(matches!(&got[1], (Cow::Borrowed("x"), Cow::Owned(a)) if a == "A"));
    }

    #[test]
    fn strict_decoding() {
        let p = decode_pairs(b"a=%3Cb%3E&c=x+y&d&&e=").unwrap_or_default();
        let want: Vec<(String, String)> = [("a", "<b>"), ("c", "x y"), ("d", ""), ("e", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(p, want);
        assert!(decode_pairs(b"a=%FF").is_err());
        assert!(decode_pairs(b"%C3%28=1").is_err());
    }
}
