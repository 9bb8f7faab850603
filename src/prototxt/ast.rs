//! The syntax tree of a text-format message, before any schema is applied.
//!
//! The tree borrows identifiers and number literals from the source text and records, for
//! every node, where it starts, so that schema errors found later (an unknown field, a value
//! of the wrong type) can point at the right column.

/// A place in the source text, as the number of bytes from it to the end of the input.
///
/// Parsers see only the remaining input, whose length is this number; the byte offset from
/// the start is `text.len() - pos.rest` (see [`Pos::offset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Bytes from this place to the end of the input.
    pub rest: usize,
}

impl Pos {
    /// The position at the start of `rest`, a suffix of the input.
    pub fn of(rest: &str) -> Pos {
        Pos { rest: rest.len() }
    }

    /// The byte offset from the start of an input of `len` bytes.
    pub fn offset(self, len: usize) -> usize {
        len.saturating_sub(self.rest)
    }
}

/// The fields of one message, in the order they were written.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// Where the message starts: its opening delimiter, or the start of the input.
    pub open: Pos,
    /// Where it ends: its closing delimiter, or the end of the input.
    pub close: Pos,
    /// Its fields, in source order.
    pub fields: Vec<Field<'a>>,
}

/// One `name: value` (or `name { ... }`) entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    /// The field name as written.
    pub name: &'a str,
    /// Where the name starts.
    pub pos: Pos,
    /// The value, or the list of values, given to the field.
    pub value: Value<'a>,
}

/// What a field is given.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A single literal.
    Scalar(Scalar<'a>, Pos),
    /// A nested message in `{ ... }` or `< ... >`.
    Message(Message<'a>),
    /// `[a, b, ...]`: each element is a scalar or a message, never another list.
    List(Vec<Value<'a>>, Pos),
}

impl Value<'_> {
    /// Where the value starts.
    pub fn pos(&self) -> Pos {
        match self {
            Value::Scalar(_, pos) | Value::List(_, pos) => *pos,
            Value::Message(m) => m.open,
        }
    }
}

/// A literal value. A leading `-` is kept apart from the literal, as the text format does,
/// because its meaning depends on the field's type (`-0` is an integer zero but a negative
/// float zero; `-inf` is only a float).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// An identifier: an enum name, `true`, `inf`, ...; `negative` when written `-name`.
    Ident { negative: bool, name: &'a str },
    /// An integer literal (decimal, `0x` hex or leading-zero octal).
    Int { negative: bool, lit: IntLit<'a> },
    /// A floating-point literal (with a `.`, an exponent or an `f` suffix).
    Float {
        negative: bool,
        value: f64,
        text: &'a str,
    },
    /// One or more adjacent quoted strings, concatenated, escapes resolved.
    Str(Vec<u8>),
}

/// An integer literal as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntLit<'a> {
    /// The literal's text, prefix included (`0x1F`, `017`, `42`).
    pub text: &'a str,
    /// Its value, or `None` when it does not fit in 64 bits.
    pub value: Option<u64>,
}
