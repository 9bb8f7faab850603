//! Tokens of the protobuf text format, recognised with nom: whitespace and `#` comments,
//! identifiers, number literals and quoted strings with their escapes.
//!
//! The rules follow protobuf's own tokenizer: a number that starts with `0x` is hex, one that
//! starts with `0` and a digit is octal, and a decimal number with a `.`, an exponent or an
//! `f` suffix is a float; a number must not run into a letter; a string literal ends on its
//! own line.

use super::ast::IntLit;
use super::diag::Diag;
use nom::Parser;
use nom::branch::alt;
use nom::bytes::complete::{tag_no_case, take_while, take_while_m_n, take_while1};
use nom::character::complete::{char, one_of};
use nom::combinator::{opt, recognize};
use nom::multi::many0_count;
use nom::sequence::preceded;

/// What every lexer and grammar function returns.
pub type PResult<'a, T> = nom::IResult<&'a str, T, Diag>;

/// A failure that no alternative can recover from.
pub fn fail<'a, T>(at: &'a str, msg: impl Into<String>) -> PResult<'a, T> {
    Err(nom::Err::Failure(Diag::at(at, msg)))
}

/// A number literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number<'a> {
    /// An integer literal.
    Int(IntLit<'a>),
    /// A float literal: its value and its text.
    Float(f64, &'a str),
}

fn is_space(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\x0b'
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Skips whitespace and `#` comments; never fails.
pub fn skip(input: &str) -> &str {
    let comment = preceded(char('#'), take_while(|c| c != '\n'));
    let mut blank = many0_count(alt((take_while1(is_space), comment)));
    let skipped: PResult<'_, usize> = blank.parse(input);
    match skipped {
        Ok((rest, _)) => rest,
        Err(_) => input,
    }
}

/// An identifier: a letter or `_`, then letters, digits and `_`.
pub fn identifier(input: &str) -> PResult<'_, &str> {
    recognize((
        take_while_m_n(1, 1, is_ident_start),
        take_while(is_ident_char),
    ))
    .parse(input)
}

/// Whether `input` starts a number: a digit, or a `.` followed by one.
pub fn starts_number(input: &str) -> bool {
    let mut chars = input.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('.') => chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// A number literal (without sign).
pub fn number(input: &str) -> PResult<'_, Number<'_>> {
    let digits = |i| -> PResult<'_, &str> { take_while(|c: char| c.is_ascii_digit()).parse(i) };
    let (rest, num) = if let Ok((rest, _)) = tag_no_case::<_, _, Diag>("0x").parse(input) {
        let (rest, hex) = take_while(|c: char| c.is_ascii_hexdigit()).parse(rest)?;
        if hex.is_empty() {
            return fail(input, "`0x` must be followed by hex digits");
        }
        let text = &input[..input.len() - rest.len()];
        (
            rest,
            Number::Int(IntLit {
                text,
                value: u64::from_str_radix(hex, 16).ok(),
            }),
        )
    } else if input.starts_with('0') && input[1..].starts_with(|c: char| c.is_ascii_digit()) {
        let (rest, oct) = take_while(|c: char| ('0'..='7').contains(&c)).parse(input)?;
        if let Some(d) = rest.chars().next().filter(|c| c.is_ascii_digit()) {
            return fail(
                rest,
                format!("a number with a leading zero is octal; `{d}` is not an octal digit"),
            );
        }
        let text = &input[..input.len() - rest.len()];
        (
            rest,
            Number::Int(IntLit {
                text,
                value: u64::from_str_radix(oct, 8).ok(),
            }),
        )
    } else {
        let (rest, (int, frac)) = (digits, opt(preceded(char('.'), digits))).parse(input)?;
        let (rest, exp) = opt(preceded(one_of("eE"), opt(one_of("+-")))).parse(rest)?;
        let rest = match exp {
            Some(_) => {
                let (after, e) = digits(rest)?;
                if e.is_empty() {
                    return fail(rest, "an exponent `e` must be followed by digits");
                }
                after
            }
            None => rest,
        };
        let text = &input[..input.len() - rest.len()];
        let (rest, suffix) = opt(one_of("fF")).parse(rest)?;
        if frac.is_none() && exp.is_none() && suffix.is_none() {
            (
                rest,
                Number::Int(IntLit {
                    text,
                    value: int.parse().ok(),
                }),
            )
        } else {
            match text.parse::<f64>() {
                Ok(v) => (rest, Number::Float(v, text)),
                Err(_) => return fail(input, format!("invalid number `{text}`")),
            }
        }
    };
    match rest.chars().next() {
        Some(c) if is_ident_char(c) => {
            fail(rest, "a number must be followed by a space, not a letter")
        }
        Some('.') => match num {
            Number::Float(..) => fail(rest, "a second decimal point or a point after an exponent"),
            Number::Int(_) => fail(rest, "hex and octal numbers must be integers"),
        },
        _ => Ok((rest, num)),
    }
}

/// One quoted string literal (`"..."` or `'...'`), escapes resolved to bytes.
pub fn string_literal(input: &str) -> PResult<'_, Vec<u8>> {
    let (mut rest, quote) = one_of("\"'").parse(input)?;
    let mut out = Vec::new();
    loop {
        let (r, run) = take_while(|c| c != quote && c != '\\' && c != '\n').parse(rest)?;
        out.extend_from_slice(run.as_bytes());
        match r.chars().next() {
            Some(c) if c == quote => return Ok((&r[1..], out)),
            Some('\\') => {
                let (r, ()) = escape(&r[1..], &mut out)?;
                rest = r;
            }
            _ => return fail(input, "string literal is not closed on its line"),
        }
    }
}

/// The escape after a backslash; appends its bytes to `out`.
fn escape<'a>(input: &'a str, out: &mut Vec<u8>) -> PResult<'a, ()> {
    let Some(c) = input.chars().next() else {
        return fail(input, "string literal ends in a backslash");
    };
    let simple = match c {
        'a' => Some(0x07),
        'b' => Some(0x08),
        'f' => Some(0x0c),
        'n' => Some(b'\n'),
        'r' => Some(b'\r'),
        't' => Some(b'\t'),
        'v' => Some(0x0b),
        '\\' | '?' | '\'' | '"' => Some(c as u8),
        _ => None,
    };
    if let Some(b) = simple {
        out.push(b);
        return Ok((&input[1..], ()));
    }
    let hex_run = |i, min, max| -> PResult<'_, &str> {
        take_while_m_n(min, max, |c: char| c.is_ascii_hexdigit()).parse(i)
    };
    match c {
        '0'..='7' => {
            let (rest, digits) = take_while_m_n(1, 3, |c| ('0'..='7').contains(&c)).parse(input)?;
            match u8::from_str_radix(digits, 8) {
                Ok(b) => out.push(b),
                Err(_) => return fail(input, format!("octal escape `\\{digits}` is above 255")),
            }
            Ok((rest, ()))
        }
        'x' | 'X' => match hex_run(&input[1..], 1, 2) {
            Ok((rest, digits)) => {
                out.push(u8::from_str_radix(digits, 16).unwrap_or(0));
                Ok((rest, ()))
            }
            Err(_) => fail(input, "`\\x` must be followed by hex digits"),
        },
        'u' | 'U' => {
            let n = if c == 'u' { 4 } else { 8 };
            let Ok((rest, digits)) = hex_run(&input[1..], n, n) else {
                return fail(input, format!("`\\{c}` must be followed by {n} hex digits"));
            };
            let code = u32::from_str_radix(digits, 16)
                .ok()
                .and_then(char::from_u32);
            let Some(ch) = code else {
                return fail(
                    input,
                    format!("`\\{c}{digits}` is not a Unicode scalar value"),
                );
            };
            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            Ok((rest, ()))
        }
        _ => fail(input, format!("unknown escape `\\{c}` in string literal")),
    }
}

/// Describes what starts at `input` (after blanks), for "found ..." in messages.
pub fn describe(input: &str) -> String {
    let input = skip(input);
    let Some(c) = input.chars().next() else {
        return "end of input".to_string();
    };
    if c == '"' || c == '\'' {
        return match string_literal(input) {
            Ok((_, bytes)) => format!("string {}", super::diag::quote_bytes(&bytes)),
            Err(_) => "an unclosed string".to_string(),
        };
    }
    if starts_number(input) {
        let end = input
            .find(|c: char| !(is_ident_char(c) || c == '.'))
            .unwrap_or(input.len());
        return format!("`{}`", truncate(&input[..end]));
    }
    if let Ok((_, id)) = identifier(input) {
        return format!("`{}`", truncate(id));
    }
    if c.is_control() || c.is_whitespace() {
        format!("character {c:?}")
    } else {
        format!("`{c}`")
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(s: &str) -> Option<u64> {
        match number(s) {
            Ok((_, Number::Int(lit))) => lit.value,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn float(s: &str) -> f64 {
        match number(s) {
            Ok((_, Number::Float(v, _))) => v,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn err(r: PResult<'_, impl std::fmt::Debug>) -> String {
        match r {
            Err(nom::Err::Failure(d)) => d.msg,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn skips_blanks_and_comments() {
        assert_eq!(skip("  # c\n\t# d\r\n x"), "x");
        assert_eq!(skip("# only a comment"), "");
        assert_eq!(skip("x # c"), "x # c");
        assert_eq!(skip("\x0b\x0cx"), "x");
    }

    #[test]
    fn integers_in_every_radix() {
        assert_eq!(int("0"), Some(0));
        assert_eq!(int("42 "), Some(42));
        assert_eq!(int("0x1F"), Some(31));
        assert_eq!(int("0XfF"), Some(255));
        assert_eq!(int("017"), Some(15));
        assert_eq!(int("18446744073709551615"), Some(u64::MAX));
        assert_eq!(int("18446744073709551616"), None);
        assert_eq!(int("0xffffffffffffffffff"), None);
    }

    #[test]
    fn floats_in_every_form() {
        assert_eq!(float("1.5"), 1.5);
        assert_eq!(float(".5"), 0.5);
        assert_eq!(float("5."), 5.0);
        assert_eq!(float("1e3"), 1000.0);
        assert_eq!(float("1E-3"), 0.001);
        assert_eq!(float("2.5e+2"), 250.0);
        assert_eq!(float("1.5f"), 1.5);
        assert_eq!(float("1F"), 1.0);
        assert_eq!(float("0.25"), 0.25);
        assert_eq!(float("0e0"), 0.0);
    }

    #[test]
    fn bad_numbers() {
        assert!(err(number("0x")).contains("hex digits"));
        assert!(err(number("09")).contains("not an octal digit"));
        assert!(err(number("1e")).contains("exponent"));
        assert!(err(number("1e+")).contains("exponent"));
        assert!(err(number("12abc")).contains("followed by a space"));
        assert!(err(number("1.2.3")).contains("second decimal point"));
        assert!(err(number("0x1.5")).contains("must be integers"));
    }

    fn string(s: &str) -> Vec<u8> {
        match string_literal(s) {
            Ok((_, b)) => b,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(string(r#""abc""#), b"abc");
        assert_eq!(string(r#"'a"b'"#), b"a\"b");
        assert_eq!(string(r#""a'b""#), b"a'b");
        assert_eq!(
            string(r#""\n\t\r\"\'\\\a\b\f\v\?""#),
            b"\n\t\r\"'\\\x07\x08\x0c\x0b?"
        );
        assert_eq!(string(r#""\101\0\12\3770""#), b"A\0\n\xff0");
        assert_eq!(string(r#""\x41\x4a\xa""#), b"AJ\n");
        assert_eq!(string(r#""\u00e9\U0001F600""#), "é😀".as_bytes());
        assert_eq!(string("\"é\""), "é".as_bytes());
    }

    #[test]
    fn bad_strings() {
        assert!(err(string_literal("\"abc")).contains("not closed"));
        assert!(err(string_literal("\"ab\ncd\"")).contains("not closed"));
        assert!(err(string_literal(r#""\q""#)).contains("unknown escape `\\q`"));
        assert!(err(string_literal(r#""\x""#)).contains("hex digits"));
        assert!(err(string_literal(r#""\u12""#)).contains("4 hex digits"));
        assert!(err(string_literal(r#""\ud800""#)).contains("not a Unicode scalar"));
        assert!(err(string_literal(r#""\777""#)).contains("above 255"));
        assert!(err(string_literal("\"abc\\")).contains("backslash"));
    }

    #[test]
    fn descriptions() {
        assert_eq!(describe("  "), "end of input");
        assert_eq!(describe(" foo bar"), "`foo`");
        assert_eq!(describe("1.5e3,"), "`1.5e3`");
        assert_eq!(describe("'ab' x"), "string \"ab\"");
        assert_eq!(describe("}"), "`}`");
        assert_eq!(describe("\u{1}"), "character '\\u{1}'");
    }
}
