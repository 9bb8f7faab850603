//! The structure of the text format, on top of the lexer's tokens:
//!
//! ```text
//! message := field*
//! field   := name ( ":" value | ":"? "{" message "}" | ":"? "<" message ">" | ":"? list ) (";" | ",")?
//! value   := scalar | "{" message "}" | "<" message ">" | list
//! list    := "[" ( item ( "," item )* )? "]"        -- without ":", items must be messages
//! scalar  := string+ | "-"? number | "-"? identifier
//! ```
//!
//! Nesting is bounded by [`MAX_DEPTH`], checked before each descent, so that deep input
//! fails with a message instead of overflowing the stack.

use super::ast::{Field, Message, Pos, Scalar, Value};
use super::diag::{Diag, line_col};
use super::lexer::{
    Number, PResult, describe, fail, identifier, number, skip, starts_number, string_literal,
};

/// Deepest nesting of messages accepted (protobuf's own parser uses the same limit).
pub const MAX_DEPTH: usize = 100;

/// Parses a whole document: the fields of the top-level message, up to the end of input.
pub fn document(text: &str) -> Result<Message<'_>, Diag> {
    let parser = Grammar { text };
    match parser.fields(text, 0, None) {
        Ok((_, message)) => Ok(message),
        Err(nom::Err::Error(d) | nom::Err::Failure(d)) => Err(d),
        Err(nom::Err::Incomplete(_)) => Err(Diag::new(Pos { rest: 0 }, "unexpected end of input")),
    }
}

/// What closes a nested message: its delimiter, and the field that opened it.
#[derive(Clone, Copy)]
struct Closer<'a> {
    delim: char,
    field: &'a str,
    open: Pos,
}

struct Grammar<'a> {
    text: &'a str,
}

impl<'a> Grammar<'a> {
    /// "line L, column C" of a position, for messages that refer to another place.
    fn where_is(&self, pos: Pos) -> String {
        let (line, col) = line_col(self.text, pos.offset(self.text.len()));
        format!("line {line}, column {col}")
    }

    /// The fields of a message, after its opening delimiter (or at the start of input),
    /// and its closing delimiter (or the end of input).
    fn fields(
        &self,
        mut input: &'a str,
        depth: usize,
        closer: Option<Closer<'a>>,
    ) -> PResult<'a, Message<'a>> {
        let open = closer.map_or(Pos::of(input), |c| c.open);
        let mut fields = Vec::new();
        loop {
            let rest = skip(input);
            let next = rest.chars().next();
            match (next, closer) {
                (None, None) => {
                    return Ok((
                        rest,
                        Message {
                            open,
                            close: Pos::of(rest),
                            fields,
                        },
                    ));
                }
                (None, Some(c)) => {
                    return fail(
                        rest,
                        format!(
                            "unexpected end of input: `{}` opened at {} is not closed with `{}`",
                            c.field,
                            self.where_is(c.open),
                            c.delim
                        ),
                    );
                }
                (Some(d), Some(c)) if d == c.delim => {
                    return Ok((
                        &rest[1..],
                        Message {
                            open,
                            close: Pos::of(rest),
                            fields,
                        },
                    ));
                }
                (Some(d @ ('}' | '>')), None) => {
                    return fail(rest, format!("unexpected `{d}`: no message is open here"));
                }
                (Some(d @ ('}' | '>')), Some(c)) => {
                    return fail(
                        rest,
                        format!(
                            "expected `{}` to close `{}` opened at {}, found `{d}`",
                            c.delim,
                            c.field,
                            self.where_is(c.open)
                        ),
                    );
                }
                _ => {
                    let (r, field) = self.field(rest, depth)?;
                    fields.push(field);
                    input = r;
                }
            }
        }
    }

    /// One field with its value and an optional `;` or `,` after it.
    fn field(&self, input: &'a str, depth: usize) -> PResult<'a, Field<'a>> {
        let pos = Pos::of(input);
        if input.starts_with('[') {
            return fail(
                input,
                "extension and `Any` fields (`[...]`) are not supported",
            );
        }
        let Ok((rest, name)) = identifier(input) else {
            return fail(
                input,
                format!("expected a field name, found {}", describe(input)),
            );
        };
        let rest = skip(rest);
        let (rest, colon) = match rest.strip_prefix(':') {
            Some(r) => (skip(r), true),
            None => (rest, false),
        };
        let (rest, value) = match rest.chars().next() {
            Some('{' | '<') => {
                let (r, m) = self.message(rest, depth, name)?;
                (r, Value::Message(m))
            }
            Some('[') => self.list(rest, depth, name, colon)?,
            _ if !colon => {
                return fail(
                    rest,
                    format!(
                        "expected `:` or `{{` after field name `{name}`, found {}",
                        describe(rest)
                    ),
                );
            }
            _ => match self.scalar(rest)? {
                (r, Some(s)) => (r, Value::Scalar(s, Pos::of(rest))),
                (_, None) => {
                    return fail(
                        rest,
                        format!(
                            "expected a value for field `{name}`, found {}",
                            describe(rest)
                        ),
                    );
                }
            },
        };
        let rest = skip(rest);
        let rest = rest.strip_prefix([';', ',']).unwrap_or(rest);
        Ok((rest, Field { name, pos, value }))
    }

    /// A nested message starting at its `{` or `<`.
    fn message(&self, input: &'a str, depth: usize, field: &'a str) -> PResult<'a, Message<'a>> {
        if depth >= MAX_DEPTH {
            return fail(input, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        let delim = if input.starts_with('<') { '>' } else { '}' };
        let closer = Closer {
            delim,
            field,
            open: Pos::of(input),
        };
        self.fields(&input[1..], depth + 1, Some(closer))
    }

    /// A `[...]` list of values; without a `:` before it, only of messages.
    fn list(
        &self,
        input: &'a str,
        depth: usize,
        field: &'a str,
        colon: bool,
    ) -> PResult<'a, Value<'a>> {
        let pos = Pos::of(input);
        let mut items = Vec::new();
        let mut rest = skip(&input[1..]);
        if let Some(r) = rest.strip_prefix(']') {
            return Ok((r, Value::List(items, pos)));
        }
        loop {
            let (r, item) = match rest.chars().next() {
                Some('{' | '<') => {
                    let (r, m) = self.message(rest, depth, field)?;
                    (r, Value::Message(m))
                }
                _ if !colon => {
                    return fail(
                        rest,
                        format!(
                            "expected `{{` in the list of `{field}` (a list of values needs `:` after the field name), found {}",
                            describe(rest)
                        ),
                    );
                }
                _ => match self.scalar(rest)? {
                    (r, Some(s)) => (r, Value::Scalar(s, Pos::of(rest))),
                    (_, None) => {
                        return fail(
                            rest,
                            format!(
                                "expected a value in the list of `{field}`, found {}",
                                describe(rest)
                            ),
                        );
                    }
                },
            };
            items.push(item);
            let r = skip(r);
            if let Some(r) = r.strip_prefix(',') {
                rest = skip(r);
            } else if let Some(r) = r.strip_prefix(']') {
                return Ok((r, Value::List(items, pos)));
            } else {
                return fail(
                    r,
                    format!(
                        "expected `,` or `]` in the list of `{field}`, found {}",
                        describe(r)
                    ),
                );
            }
        }
    }

    /// A scalar literal, or `None` when none starts here.
    fn scalar(&self, input: &'a str) -> PResult<'a, Option<Scalar<'a>>> {
        if input.starts_with(['"', '\'']) {
            let (mut rest, mut bytes) = string_literal(input)?;
            loop {
                let r = skip(rest);
                if !r.starts_with(['"', '\'']) {
                    return Ok((rest, Some(Scalar::Str(bytes))));
                }
                let (r, more) = string_literal(r)?;
                bytes.extend_from_slice(&more);
                rest = r;
            }
        }
        let (rest, negative) = match input.strip_prefix('-') {
            Some(r) => (skip(r), true),
            None => (input, false),
        };
        if starts_number(rest) {
            let (r, n) = number(rest)?;
            let s = match n {
                Number::Int(lit) => Scalar::Int { negative, lit },
                Number::Float(value, text) => Scalar::Float {
                    negative,
                    value,
                    text,
                },
            };
            return Ok((r, Some(s)));
        }
        if let Ok((r, name)) = identifier(rest) {
            return Ok((r, Some(Scalar::Ident { negative, name })));
        }
        if negative {
            return fail(
                rest,
                format!("expected a number after `-`, found {}", describe(rest)),
            );
        }
        Ok((input, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prototxt::ast::IntLit;

    fn parse(text: &str) -> Message<'_> {
        match document(text) {
            Ok(m) => m,
            Err(d) => panic!("{text:?}: {d:?}"),
        }
    }

    fn error(text: &str) -> (usize, String) {
        match document(text) {
            Ok(m) => panic!("{text:?} parsed: {m:?}"),
            Err(d) => (d.at.offset(text.len()), d.msg),
        }
    }

    fn scalar<'a>(m: &'a Message<'a>, i: usize) -> &'a Scalar<'a> {
        match &m.fields[i].value {
            Value::Scalar(s, _) => s,
            v => panic!("not a scalar: {v:?}"),
        }
    }

    #[test]
    fn fields_and_separators() {
        let m = parse("a: 1; b: 'x', c { d: -2 } e: < > f: { } g [ {}, <> ] h: [1, -2.5, inf]");
        let names: Vec<_> = m.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, ["a", "b", "c", "e", "f", "g", "h"]);
        assert_eq!(
            scalar(&m, 0),
            &Scalar::Int {
                negative: false,
                lit: IntLit {
                    text: "1",
                    value: Some(1)
                }
            }
        );
        assert_eq!(scalar(&m, 1), &Scalar::Str(b"x".to_vec()));
        let Value::List(items, _) = &m.fields[5].value else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        let Value::List(items, _) = &m.fields[6].value else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert!(matches!(
            items[1],
            Value::Scalar(
                Scalar::Float {
                    negative: true,
                    value: 2.5,
                    ..
                },
                _
            )
        ));
    }

    #[test]
    fn strings_concatenate_across_blanks_and_comments() {
        let m = parse("s: \"a\" 'b' # c\n \"c\"");
        assert_eq!(scalar(&m, 0), &Scalar::Str(b"abc".to_vec()));
    }

    #[test]
    fn negative_identifiers_and_spaced_minus() {
        let m = parse("x: -inf y: - 3");
        assert_eq!(
            scalar(&m, 0),
            &Scalar::Ident {
                negative: true,
                name: "inf"
            }
        );
        assert!(matches!(scalar(&m, 1), Scalar::Int { negative: true, .. }));
    }

    #[test]
    fn positions_point_at_names_and_values() {
        let text = "a: 1\n  b { c: 'x' }";
        let m = parse(text);
        assert_eq!(m.fields[1].pos.offset(text.len()), 7);
        let Value::Message(inner) = &m.fields[1].value else {
            panic!()
        };
        assert_eq!(inner.open.offset(text.len()), 9);
        assert_eq!(inner.close.offset(text.len()), text.len() - 1);
        assert_eq!(inner.fields[0].value.pos().offset(text.len()), 14);
    }

    #[test]
    fn syntax_errors_say_what_was_expected() {
        assert_eq!(
            error("foo 5"),
            (
                4,
                "expected `:` or `{` after field name `foo`, found `5`".into()
            )
        );
        assert_eq!(
            error("foo:"),
            (
                4,
                "expected a value for field `foo`, found end of input".into()
            )
        );
        assert_eq!(
            error("foo: }"),
            (5, "expected a value for field `foo`, found `}`".into())
        );
        assert_eq!(
            error("a: 1 }"),
            (5, "unexpected `}`: no message is open here".into())
        );
        assert_eq!(
            error("5: 1"),
            (0, "expected a field name, found `5`".into())
        );
        assert_eq!(
            error("a { b: 1 >"),
            (
                9,
                "expected `}` to close `a` opened at line 1, column 3, found `>`".into()
            )
        );
        assert_eq!(
            error("a {\n b { c: 1 }\n"),
            (
                16,
                "unexpected end of input: `a` opened at line 1, column 3 is not closed with `}`"
                    .into()
            )
        );
        assert_eq!(
            error("a: [1 2]"),
            (
                6,
                "expected `,` or `]` in the list of `a`, found `2`".into()
            )
        );
        assert_eq!(
            error("a: [1,]"),
            (6, "expected a value in the list of `a`, found `]`".into())
        );
        assert!(
            error("a [1]")
                .1
                .starts_with("expected `{` in the list of `a`")
        );
        assert_eq!(
            error("a: -}"),
            (4, "expected a number after `-`, found `}`".into())
        );
        assert!(error("[ext.field]: 1").1.contains("not supported"));
        assert_eq!(error("a: 1 @").1, "expected a field name, found `@`");
        assert_eq!(
            error("a: \"abc").1,
            "string literal is not closed on its line"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "a {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        parse(&ok);
        let deep = format!(
            "{}{}",
            "a {".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            error(&deep).1,
            format!("nesting deeper than {MAX_DEPTH} levels")
        );
        let very_deep = "a {".repeat(10_000);
        assert_eq!(
            error(&very_deep).1,
            format!("nesting deeper than {MAX_DEPTH} levels")
        );
        let lists = "a: [".repeat(10_000);
        assert_eq!(
            error(&lists).1,
            "expected `,` or `]` in the list of `a`, found `:`"
        );
        let list_of_messages = "a [{".repeat(10_000);
        assert_eq!(
            error(&list_of_messages).1,
            format!("nesting deeper than {MAX_DEPTH} levels")
        );
    }

    #[test]
    fn empty_inputs() {
        assert!(parse("").fields.is_empty());
        assert!(parse("  # nothing\n").fields.is_empty());
        assert_eq!(parse("a: []").fields.len(), 1);
    }
}
