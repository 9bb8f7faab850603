//! The canonical text form of a message, as protobuf's C++ `TextFormat::Print` writes it
//! (and so as Caffe writes its files): set fields in field-number order, one `name: value`
//! line per value, nested messages as `name {` ... `}` indented by two spaces, strings
//! C-escaped in double quotes, enums by name, floats in the shortest of `%.6g`/`%.9g`
//! (doubles `%.15g`/`%.17g`) that reads back to the same value.

use super::build::text_name;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value};
use std::fmt::Write;

/// The text form of `msg`. Unknown fields and extensions are not printed.
pub fn print_message(msg: &DynamicMessage) -> String {
    let mut out = String::new();
    write_message(&mut out, msg, 0);
    out
}

fn write_message(out: &mut String, msg: &DynamicMessage, indent: usize) {
    let mut fields: Vec<_> = msg.descriptor().fields().collect();
    fields.sort_by_key(|fd| fd.number());
    for fd in fields {
        if !msg.has_field(&fd) {
            continue;
        }
        let name = text_name(&fd);
        let kind = fd.kind();
        match &*msg.get_field(&fd) {
            Value::List(items) => {
                for item in items {
                    write_field(out, indent, &name, &kind, item);
                }
            }
            Value::Map(map) => {
                let Kind::Message(entry_desc) = &kind else {
                    continue;
                };
                let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (key, value) in entries {
                    let mut entry = DynamicMessage::new(entry_desc.clone());
                    entry.set_field(&entry_desc.map_entry_key_field(), Value::from(key.clone()));
                    entry.set_field(&entry_desc.map_entry_value_field(), value.clone());
                    write_field(out, indent, &name, &kind, &Value::Message(entry));
                }
            }
            value => write_field(out, indent, &name, &kind, value),
        }
    }
}

fn write_field(out: &mut String, indent: usize, name: &str, kind: &Kind, value: &Value) {
    for _ in 0..indent {
        out.push_str("  ");
    }
    out.push_str(name);
    if let Value::Message(m) = value {
        out.push_str(" {\n");
        write_message(out, m, indent + 1);
        for _ in 0..indent {
            out.push_str("  ");
        }
        out.push_str("}\n");
        return;
    }
    out.push_str(": ");
    // Writing to a String cannot fail.
    let _ = match value {
        Value::Bool(b) => write!(out, "{b}"),
        Value::I32(v) => write!(out, "{v}"),
        Value::I64(v) => write!(out, "{v}"),
        Value::U32(v) => write!(out, "{v}"),
        Value::U64(v) => write!(out, "{v}"),
        Value::F32(v) => write!(out, "{}", format_f32(*v)),
        Value::F64(v) => write!(out, "{}", format_f64(*v)),
        Value::String(s) => write!(out, "\"{}\"", c_escape(s.as_bytes())),
        Value::Bytes(b) => write!(out, "\"{}\"", c_escape(b)),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => match e.get_value(*n) {
                Some(v) => write!(out, "{}", v.name()),
                None => write!(out, "{n}"),
            },
            _ => write!(out, "{n}"),
        },
        Value::Message(_) | Value::List(_) | Value::Map(_) => Ok(()),
    };
    out.push('\n');
}

/// Escapes bytes as protobuf's `CEscape` does: `\n \r \t \" \' \\` by name, other bytes
/// outside printable ASCII as three octal digits.
pub fn c_escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out
}

/// A float as protobuf's `SimpleFtoa` writes it: `%.6g` when that reads back to the same
/// value, otherwise `%.9g` (which always does).
pub fn format_f32(v: f32) -> String {
    if let Some(s) = non_finite(v.into()) {
        return s;
    }
    let short = format_g(v.into(), 6);
    if short.parse::<f32>() == Ok(v) {
        short
    } else {
        format_g(v.into(), 9)
    }
}

/// A double as protobuf's `SimpleDtoa` writes it: `%.15g`, or `%.17g` when that is needed
/// to read back to the same value.
pub fn format_f64(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let short = format_g(v, 15);
    if short.parse::<f64>() == Ok(v) {
        short
    } else {
        format_g(v, 17)
    }
}

fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("nan".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        None
    }
}

/// C's `printf("%.{precision}g", v)` for a finite `v`.
fn format_g(v: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // The exponent %g decides by is that of the value rounded to `precision` digits.
    let sci = format!("{:.*e}", precision - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let mantissa = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

/// Drops trailing zeros after a decimal point, and the point if nothing follows it.
fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_format_matches_c() {
        // Reference values from C's printf.
        assert_eq!(format_g(0.001, 6), "0.001");
        assert_eq!(format_g(1e-5, 6), "1e-05");
        assert_eq!(format_g(0.0001, 6), "0.0001");
        assert_eq!(format_g(123456.0, 6), "123456");
        assert_eq!(format_g(1234567.0, 6), "1.23457e+06");
        assert_eq!(format_g(1e100, 6), "1e+100");
        assert_eq!(format_g(-2.5, 6), "-2.5");
        assert_eq!(format_g(9.9999999, 6), "10");
        assert_eq!(format_g(999999.5, 6), "1e+06");
        assert_eq!(format_g(0.1, 17), "0.10000000000000001");
        assert_eq!(format_g(100.0, 1), "1e+02");
        assert_eq!(format_g(-0.0, 6), "-0");
    }

    #[test]
    fn floats_as_protobuf_prints_them() {
        assert_eq!(format_f32(0.9), "0.9");
        assert_eq!(format_f32(0.01), "0.01");
        assert_eq!(format_f32(5e-5), "5e-05");
        assert_eq!(format_f32(1.0 / 255.0), "0.00392156886");
        assert_eq!(format_f32(0.00390625), "0.00390625");
        assert_eq!(format_f32(1e10), "1e+10");
        assert_eq!(format_f32(16777216.0), "16777216");
        assert_eq!(format_f32(f32::INFINITY), "inf");
        assert_eq!(format_f32(f32::NEG_INFINITY), "-inf");
        assert_eq!(format_f32(f32::NAN), "nan");
        assert_eq!(format_f32(f32::MIN_POSITIVE / 4.0), "2.93873588e-39");
        assert_eq!(format_f64(0.1), "0.1");
        assert_eq!(format_f64(1.0 / 3.0), "0.33333333333333331");
        assert_eq!(format_f64(1e-300), "1e-300");
    }

    #[test]
    fn floats_read_back_exactly() {
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x);
            if v.is_finite() {
                assert_eq!(
                    format_f32(v).parse::<f32>().map(f32::to_bits),
                    Ok(x),
                    "{v:e}"
                );
                // Through a double first, as the parser reads floats.
                assert_eq!(
                    format_f32(v).parse::<f64>().map(|d| (d as f32).to_bits()),
                    Ok(x),
                    "{v:e}"
                );
            }
        }
    }

    #[test]
    fn escapes_as_c_escape() {
        assert_eq!(c_escape(b"a\"b'c\\d\n\r\t"), "a\\\"b\\'c\\\\d\\n\\r\\t");
        assert_eq!(c_escape(b"\x00\x07\x7f\xff"), "\\000\\007\\177\\377");
        assert_eq!(c_escape("é".as_bytes()), "\\303\\251");
    }
}
