//! Diagnostics: the parser's internal error (a position and a message) and its rendering
//! as a [`crate::Error::Prototxt`] with line, column and the offending source line.

use super::ast::Pos;
use crate::Error;
use nom::error::{ErrorKind, ParseError};

/// An error found while parsing or building: where, and what went wrong.
///
/// It is also the nom error type of the lexer and grammar; errors that nom's own
/// combinators produce carry a generic message and are always replaced by a specific one
/// before they reach a user (the grammar turns every failure into a message of its own).
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    /// Where the problem is.
    pub at: Pos,
    /// What the problem is, in words.
    pub msg: String,
}

impl Diag {
    /// A diagnostic at `at`.
    pub fn new(at: Pos, msg: impl Into<String>) -> Diag {
        Diag {
            at,
            msg: msg.into(),
        }
    }

    /// A diagnostic at the start of `rest`, a suffix of the input.
    pub fn at(rest: &str, msg: impl Into<String>) -> Diag {
        Diag::new(Pos::of(rest), msg)
    }
}

impl ParseError<&str> for Diag {
    fn from_error_kind(input: &str, kind: ErrorKind) -> Self {
        Diag::at(input, format!("syntax error ({})", kind.description()))
    }

    fn append(_: &str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
///
/// An offset at the very end of a text that ends with a newline is reported at the end of
/// the last line rather than on the empty line after it, where a reader would look for it.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = clamp_to_char(text, offset);
    let offset = if offset == text.len() && offset > 0 && text.ends_with('\n') {
        offset - 1
    } else {
        offset
    };
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

/// The largest char boundary of `text` at or before `offset`.
fn clamp_to_char(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Characters of a long source line shown on each side of the column.
const SNIPPET_HALF_WIDTH: usize = 60;

/// The source line holding byte `offset` and a second line with a caret under it.
///
/// Long lines are cut to a window around the column, control characters are shown as `?`,
/// and tabs before the column are kept in the caret line so that the caret lines up.
pub fn snippet(text: &str, offset: usize) -> String {
    let (line, col) = line_col(text, offset);
    let Some(source) = text.split('\n').nth(line - 1) else {
        return String::new();
    };
    let chars: Vec<char> = source.trim_end_matches('\r').chars().collect();
    let caret = col - 1;
    let start = caret.saturating_sub(SNIPPET_HALF_WIDTH);
    let end = chars.len().min(caret + SNIPPET_HALF_WIDTH);
    let mut shown = String::new();
    let mut under = String::new();
    if start > 0 {
        shown.push_str("...");
        under.push_str("   ");
    }
    for (i, &c) in chars.iter().enumerate().take(end).skip(start) {
        let c = if c == '\t' || !c.is_control() { c } else { '?' };
        shown.push(c);
        if i < caret {
            under.push(if c == '\t' { '\t' } else { ' ' });
        }
    }
    if end < chars.len() {
        shown.push_str("...");
    }
    under.push('^');
    format!("{shown}\n{under}")
}

/// Renders `diag`, found in `text` read from `file`, as a crate error.
pub fn to_error(text: &str, file: &str, diag: Diag) -> Error {
    let offset = diag.at.offset(text.len());
    let (line, col) = line_col(text, offset);
    Error::Prototxt {
        file: file.to_string(),
        line,
        col,
        msg: diag.msg,
        snippet: snippet(text, offset),
    }
}

/// The error for input that is not UTF-8, pointing at the first bad byte.
pub fn utf8_error(bytes: &[u8], file: &str, err: std::str::Utf8Error) -> Error {
    let good = err.valid_up_to();
    // The prefix is valid UTF-8 by construction; lossy conversion only guards the rest.
    let text = String::from_utf8_lossy(&bytes[..good]);
    let line_end = bytes[good..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| good + i);
    let shown = format!("{text}{}", String::from_utf8_lossy(&bytes[good..line_end]));
    let (line, col) = line_col(&text, good);
    let bad = bytes.get(good).copied().unwrap_or(0);
    Error::Prototxt {
        file: file.to_string(),
        line,
        col,
        msg: format!("invalid UTF-8 (byte 0x{bad:02x}): a prototxt file must be UTF-8 text"),
        snippet: snippet(&shown, good),
    }
}

/// A short description of string bytes for messages: quoted, escaped, cut when long.
pub fn quote_bytes(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let escaped = super::print::c_escape(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("\"{escaped}\"...")
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "ab\ncdé f\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 7), (2, 4));
        // End of input after a final newline points after the last line.
        assert_eq!(line_col(text, text.len()), (2, 6));
        assert_eq!(line_col("", 0), (1, 1));
    }

    #[test]
    fn snippet_puts_caret_under_column() {
        assert_eq!(snippet("a: 1\nbb: x\n", 9), "bb: x\n    ^");
        assert_eq!(snippet("\tfoo: x", 6), "\tfoo: x\n\t     ^");
    }

    #[test]
    fn snippet_windows_long_lines() {
        let line = format!("{}X{}", "a".repeat(200), "b".repeat(200));
        let s = snippet(&line, 200);
        let (shown, under) = s.split_once('\n').unwrap();
        assert!(shown.starts_with("...") && shown.ends_with("..."));
        assert_eq!(shown.chars().nth(under.len() - 1), Some('X'));
    }

    #[test]
    fn utf8_error_points_at_bad_byte() {
        let bytes = b"a: 1\nb: \"\xff\"\n".to_vec();
        let err = std::str::from_utf8(&bytes).unwrap_err();
        let e = utf8_error(&bytes, "f.prototxt", err);
        let s = e.to_string();
        assert!(
            s.starts_with("f.prototxt:2:5: invalid UTF-8 (byte 0xff)"),
            "{s}"
        );
    }
}
