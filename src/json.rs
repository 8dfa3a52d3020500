//! Writing JSON straight into a byte buffer.
//!
//! The renderer ([`crate::graphql::render`]) renders preloaded object graphs directly to
//! JSON text, without building a value tree first. It hands that text to the executor as a
//! [`Value::Binary`] (no field of this schema produces binary values), and [`write_value`],
//! which writes the response's `data`, splices it in as it is.

use async_graphql::Value;

/// Appends `s` as a JSON string (quoted and escaped, as `serde_json` escapes it).
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends the decimal digits of `n`.
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `n` as a JSON string of digits (how `ID`s are written).
pub fn push_id(out: &mut Vec<u8>, n: i64) {
    out.push(b'"');
    push_i64(out, n);
    out.push(b'"');
}

/// Appends a decimal as a JSON string, exactly as its `Display` writes it (`"12.50"`).
pub fn push_decimal(out: &mut Vec<u8>, d: &rust_decimal::Decimal) {
    // Money always has two decimals: written without the general formatter, in one piece
    // (`"`, sign, digits, `.`, two digits, `"`: at most 26 bytes).
    if let (2, Ok(cents)) = (d.scale(), i64::try_from(d.mantissa())) {
        let abs = cents.unsigned_abs();
        let mut digits = itoa::Buffer::new();
        let whole = digits.format(abs / 100).as_bytes();
        let mut buf = [0u8; 26];
        let mut at = 1;
        buf[0] = b'"';
        if cents < 0 {
            buf[1] = b'-';
            at = 2;
        }
        buf[at..at + whole.len()].copy_from_slice(whole);
        at += whole.len();
        buf[at..at + 4].copy_from_slice(&[
            b'.',
            b'0' + (abs % 100 / 10) as u8,
            b'0' + (abs % 10) as u8,
            b'"',
        ]);
        out.extend_from_slice(&buf[..at + 4]);
    } else {
        out.push(b'"');
        out.extend_from_slice(d.to_string().as_bytes());
        out.push(b'"');
    }
}

/// About how many bytes [`write_value`] writes for `v` (exact for spliced JSON text).
pub fn size_hint(v: &Value) -> usize {
    match v {
        Value::Binary(raw) => raw.len(),
        Value::String(s) => s.len() + 2,
        Value::List(items) => items.iter().map(|i| size_hint(i) + 1).sum::<usize>() + 2,
        Value::Object(fields) => {
            fields
                .iter()
                .map(|(k, i)| k.len() + 4 + size_hint(i))
                .sum::<usize>()
                + 2
        }
        _ => 8,
    }
}

/// Appends a GraphQL value as JSON. [`Value::Binary`] holds JSON text already rendered by the
/// renderer and is copied as it is.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => push_str(out, s),
        Value::Enum(e) => push_str(out, e.as_str()),
        Value::Binary(raw) => out.extend_from_slice(raw),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_str(out, k.as_str());
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{Name, Number};
    use std::str::FromStr;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        for s in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "lines\n\r\ttab \u{8}\u{c} nul \u{0} esc \u{1b} us \u{1f}",
            "unicode é ✓ 😀 \u{7f}",
        ] {
            assert_eq!(
                text(|o| push_str(o, s)),
                serde_json::to_string(s).unwrap_or_default()
            );
        }
    }

    #[test]
    fn numbers_ids_and_decimals() {
        for n in [0, 7, -7, 10, 1_234_567, i64::MAX, i64::MIN] {
            assert_eq!(text(|o| push_i64(o, n)), n.to_string());
            assert_eq!(text(|o| push_id(o, n)), format!("\"{n}\""));
        }
        for s in [
            "12.50",
            "0.05",
            "-0.05",
            "-3.00",
            "0.00",
            "99999999.99",
            "92233720368547758.07",
            "-92233720368547758.08",
            "1.5",
            "7",
        ] {
            let d = rust_decimal::Decimal::from_str(s).unwrap_or_default();
            assert_eq!(text(|o| push_decimal(o, &d)), format!("\"{d}\""));
        }
    }

    #[test]
    fn values_match_serde_json_and_splice_raw_json() {
        let mut obj = async_graphql::indexmap::IndexMap::new();
        obj.insert(Name::new("a"), Value::Number(Number::from(-3)));
        obj.insert(Name::new("b\""), Value::String("x\ny".to_owned()));
        obj.insert(Name::new("c"), Value::Enum(Name::new("COMPLETED")));
        obj.insert(
            Name::new("d"),
            Value::List(vec![
                Value::Null,
                Value::Boolean(true),
                Value::Boolean(false),
            ]),
        );
        obj.insert(
            Name::new("e"),
            Value::Number(Number::from_f64(1.5).unwrap_or(Number::from(0))),
        );
        let v = Value::Object(obj);
        assert_eq!(
            text(|o| write_value(o, &v)),
            serde_json::to_string(&v).unwrap_or_default()
        );
        let raw = Value::List(vec![Value::Binary(
            br#"{"id":"1","tags":[]}"#.to_vec().into(),
        )]);
        assert_eq!(text(|o| write_value(o, &raw)), r#"[{"id":"1","tags":[]}]"#);
    }
}
