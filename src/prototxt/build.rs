//! From syntax tree to message: each field name is looked up in the message's descriptor and
//! each literal converted to the field's type, with the checks protobuf's own parser makes
//! (range of integers, enum names, a singular field or a oneof given twice, required fields).

use super::ast::{self, IntLit, Pos, Scalar};
use super::diag::{Diag, line_col, quote_bytes};
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Syntax, Value,
};
use std::collections::HashMap;

/// Builds a message of type `desc` from the top-level fields of a document.
pub fn build(
    text: &str,
    desc: &MessageDescriptor,
    doc: &ast::Message<'_>,
) -> Result<DynamicMessage, Diag> {
    Builder { text }.message(desc, doc)
}

/// The type of a field as the `.proto` spells it, for messages.
pub fn kind_name(kind: &Kind) -> String {
    let name = match kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(m) => return m.full_name().to_string(),
        Kind::Enum(e) => return e.full_name().to_string(),
    };
    name.to_string()
}

/// The name a field has in text: its own, or its type's for a group.
pub fn text_name(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(m) if field.is_group() => m.name().to_string(),
        _ => field.name().to_string(),
    }
}

/// Levenshtein distance between two short strings (by characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The candidate closest to `name`, when it is close enough to be a likely typo.
pub fn suggest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| {
            (
                edit_distance(&name.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// What a literal is, for "found ..." in messages.
fn describe(value: &ast::Value<'_>) -> String {
    match value {
        ast::Value::Scalar(s, _) => match s {
            Scalar::Ident { negative, name } => {
                format!("`{}{name}`", if *negative { "-" } else { "" })
            }
            Scalar::Int { negative, lit } => {
                format!("integer `{}{}`", if *negative { "-" } else { "" }, lit.text)
            }
            Scalar::Float { negative, text, .. } => {
                format!("number `{}{text}`", if *negative { "-" } else { "" })
            }
            Scalar::Str(bytes) => format!("string {}", quote_bytes(bytes)),
        },
        ast::Value::Message(_) => "a message `{ ... }`".to_string(),
        ast::Value::List(..) => "a list `[ ... ]`".to_string(),
    }
}

/// What a field of this kind accepts, for "expects ..." in messages.
fn expectation(kind: &Kind) -> &'static str {
    match kind {
        Kind::Double | Kind::Float => "a number",
        Kind::Bool => "`true` or `false`",
        Kind::String | Kind::Bytes => "a string",
        Kind::Enum(_) => "an enum value",
        Kind::Message(_) => "a message `{ ... }`",
        _ => "an integer",
    }
}

/// The valid names of an enum in the order the `.proto` declares them, for messages.
fn enum_names(e: &EnumDescriptor) -> Vec<String> {
    e.enum_descriptor_proto()
        .value
        .iter()
        .map(|v| v.name().to_string())
        .collect()
}

struct Builder<'t> {
    text: &'t str,
}

impl Builder<'_> {
    fn line_of(&self, pos: Pos) -> usize {
        line_col(self.text, pos.offset(self.text.len())).0
    }

    fn message(
        &self,
        desc: &MessageDescriptor,
        m: &ast::Message<'_>,
    ) -> Result<DynamicMessage, Diag> {
        let mut msg = DynamicMessage::new(desc.clone());
        let mut seen: HashMap<u32, Pos> = HashMap::new();
        let mut oneofs: HashMap<String, (String, Pos)> = HashMap::new();
        for f in &m.fields {
            let fd = self.lookup(desc, f)?;
            if fd.is_map() {
                self.map_entries(&mut msg, &fd, f)?;
            } else if fd.is_list() {
                let values = match &f.value {
                    ast::Value::List(items, _) => items.as_slice(),
                    single => std::slice::from_ref(single),
                };
                if values.is_empty() {
                    continue;
                }
                let mut converted = Vec::with_capacity(values.len());
                for v in values {
                    converted.push(self.value(&fd, v)?);
                }
                if let Value::List(list) = msg.get_field_mut(&fd) {
                    list.extend(converted);
                }
            } else {
                if let ast::Value::List(_, pos) = &f.value {
                    return Err(Diag::new(
                        *pos,
                        format!("field `{}` is not repeated; it cannot take a list", f.name),
                    ));
                }
                if let Some(first) = seen.insert(fd.number(), f.pos) {
                    return Err(Diag::new(
                        f.pos,
                        format!(
                            "field `{}` given twice (first at line {})",
                            f.name,
                            self.line_of(first)
                        ),
                    ));
                }
                if let Some(oneof) = fd.containing_oneof().filter(|o| !o.is_synthetic()) {
                    let entry = (f.name.to_string(), f.pos);
                    if let Some((other, pos)) = oneofs.insert(oneof.full_name().to_string(), entry)
                    {
                        return Err(Diag::new(
                            f.pos,
                            format!(
                                "field `{}` and field `{other}` (line {}) are both in oneof `{}`; only one may be set",
                                f.name,
                                self.line_of(pos),
                                oneof.name()
                            ),
                        ));
                    }
                }
                let value = self.value(&fd, &f.value)?;
                msg.set_field(&fd, value);
            }
        }
        for fd in desc.fields().filter(|fd| fd.is_required()) {
            if !msg.has_field(&fd) {
                return Err(Diag::new(
                    m.close,
                    format!(
                        "missing required field `{}` in {}",
                        text_name(&fd),
                        desc.full_name()
                    ),
                ));
            }
        }
        Ok(msg)
    }

    /// The descriptor of the field a text name refers to.
    fn lookup(
        &self,
        desc: &MessageDescriptor,
        f: &ast::Field<'_>,
    ) -> Result<FieldDescriptor, Diag> {
        // Groups go by their type's name, as protobuf writes them; other fields by their own.
        let found = desc
            .get_field_by_name(f.name)
            .filter(|fd| !fd.is_group())
            .or_else(|| {
                desc.fields().find(|fd| {
                    fd.is_group() && matches!(fd.kind(), Kind::Message(m) if m.name() == f.name)
                })
            });
        found.ok_or_else(|| {
            let names: Vec<String> = desc.fields().map(|fd| text_name(&fd)).collect();
            let hint = match suggest(f.name, names.iter().map(String::as_str)) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => String::new(),
            };
            Diag::new(
                f.pos,
                format!("unknown field `{}` in {}{hint}", f.name, desc.full_name()),
            )
        })
    }

    /// Adds the `{ key: ... value: ... }` entries of a map field.
    fn map_entries(
        &self,
        msg: &mut DynamicMessage,
        fd: &FieldDescriptor,
        f: &ast::Field<'_>,
    ) -> Result<(), Diag> {
        let Kind::Message(entry_desc) = fd.kind() else {
            return Err(Diag::new(
                f.pos,
                format!("map field `{}` has no entry type", f.name),
            ));
        };
        let values = match &f.value {
            ast::Value::List(items, _) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        for v in values {
            let ast::Value::Message(m) = v else {
                return Err(Diag::new(
                    v.pos(),
                    format!(
                        "map field `{}` expects entries `{{ key: ... value: ... }}`, found {}",
                        f.name,
                        describe(v)
                    ),
                ));
            };
            let entry = self.message(&entry_desc, m)?;
            let key = entry
                .get_field(&entry_desc.map_entry_key_field())
                .into_owned();
            let value = entry
                .get_field(&entry_desc.map_entry_value_field())
                .into_owned();
            let Some(key) = key.into_map_key() else {
                return Err(Diag::new(
                    m.open,
                    format!(
                        "map field `{}` has a key of a type maps cannot have",
                        f.name
                    ),
                ));
            };
            if let Value::Map(map) = msg.get_field_mut(fd) {
                map.insert(key, value);
            }
        }
        Ok(())
    }

    /// The value of one element of field `fd`.
    fn value(&self, fd: &FieldDescriptor, v: &ast::Value<'_>) -> Result<Value, Diag> {
        let kind = fd.kind();
        match (&kind, v) {
            (Kind::Message(desc), ast::Value::Message(m)) => {
                Ok(Value::Message(self.message(desc, m)?))
            }
            (Kind::Message(desc), other) => Err(Diag::new(
                other.pos(),
                format!(
                    "field `{}` is a message ({}) and expects `{{ ... }}`, found {}",
                    text_name(fd),
                    desc.full_name(),
                    describe(other)
                ),
            )),
            (_, ast::Value::Scalar(s, pos)) => self.scalar(fd, &kind, s, *pos, v),
            (_, other) => Err(self.mismatch(fd, &kind, other)),
        }
    }

    fn mismatch(&self, fd: &FieldDescriptor, kind: &Kind, v: &ast::Value<'_>) -> Diag {
        Diag::new(
            v.pos(),
            format!(
                "field `{}` ({}) expects {}, found {}",
                text_name(fd),
                kind_name(kind),
                expectation(kind),
                describe(v)
            ),
        )
    }

    fn scalar(
        &self,
        fd: &FieldDescriptor,
        kind: &Kind,
        s: &Scalar<'_>,
        pos: Pos,
        v: &ast::Value<'_>,
    ) -> Result<Value, Diag> {
        let int = |min: i128, max: i128| -> Result<i128, Diag> {
            match s {
                Scalar::Int { negative, lit } => {
                    self.integer(fd, kind, *negative, lit, min, max, pos)
                }
                _ => Err(self.mismatch(fd, kind, v)),
            }
        };
        Ok(match kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                Value::I32(int(i32::MIN.into(), i32::MAX.into())? as i32)
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                Value::I64(int(i64::MIN.into(), i64::MAX.into())? as i64)
            }
            Kind::Uint32 | Kind::Fixed32 => Value::U32(int(0, u32::MAX.into())? as u32),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(int(0, u64::MAX.into())? as u64),
            Kind::Double => Value::F64(self.float(fd, kind, s, pos, v)?),
            Kind::Float => Value::F32(self.float(fd, kind, s, pos, v)? as f32),
            Kind::Bool => Value::Bool(match s {
                Scalar::Ident {
                    negative: false,
                    name: "true" | "True" | "t",
                } => true,
                Scalar::Ident {
                    negative: false,
                    name: "false" | "False" | "f",
                } => false,
                Scalar::Int {
                    negative: false,
                    lit:
                        IntLit {
                            value: Some(b @ (0 | 1)),
                            ..
                        },
                } => *b == 1,
                _ => return Err(self.mismatch(fd, kind, v)),
            }),
            Kind::String => match s {
                Scalar::Str(bytes) => match String::from_utf8(bytes.clone()) {
                    Ok(s) => Value::String(s),
                    Err(_) => {
                        return Err(Diag::new(
                            pos,
                            format!(
                                "field `{}` (string) must be valid UTF-8, but the string has other bytes (binary data belongs in a `bytes` field)",
                                text_name(fd)
                            ),
                        ));
                    }
                },
                _ => return Err(self.mismatch(fd, kind, v)),
            },
            Kind::Bytes => match s {
                Scalar::Str(bytes) => Value::Bytes(bytes.clone().into()),
                _ => return Err(self.mismatch(fd, kind, v)),
            },
            Kind::Enum(e) => Value::EnumNumber(self.enum_value(fd, e, s, pos, v)?),
            Kind::Message(_) => return Err(self.mismatch(fd, kind, v)),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn integer(
        &self,
        fd: &FieldDescriptor,
        kind: &Kind,
        negative: bool,
        lit: &IntLit<'_>,
        min: i128,
        max: i128,
        pos: Pos,
    ) -> Result<i128, Diag> {
        let sign = if negative { "-" } else { "" };
        let out_of_range = || {
            Diag::new(
                pos,
                format!(
                    "integer `{sign}{}` is out of range for field `{}` ({}: {min} to {max})",
                    lit.text,
                    text_name(fd),
                    kind_name(kind)
                ),
            )
        };
        // Unsigned fields take no sign at all, not even `-0`, as in protobuf.
        if negative && min == 0 {
            return Err(out_of_range());
        }
        let magnitude = i128::from(lit.value.ok_or_else(out_of_range)?);
        let value = if negative { -magnitude } else { magnitude };
        if value < min || value > max {
            return Err(out_of_range());
        }
        Ok(value)
    }

    fn float(
        &self,
        fd: &FieldDescriptor,
        kind: &Kind,
        s: &Scalar<'_>,
        pos: Pos,
        v: &ast::Value<'_>,
    ) -> Result<f64, Diag> {
        let (negative, magnitude) = match s {
            Scalar::Float {
                negative, value, ..
            } => (*negative, *value),
            Scalar::Int { negative, lit } => {
                // A decimal literal too long for 64 bits is still a fine double.
                let decimal = lit.text.bytes().all(|b| b.is_ascii_digit());
                let value = match lit.value {
                    Some(v) => Some(v as f64),
                    None if decimal => lit.text.parse::<f64>().ok(),
                    None => None,
                };
                let Some(value) = value else {
                    return Err(Diag::new(
                        pos,
                        format!(
                            "integer `{}` is out of range for field `{}`",
                            lit.text,
                            text_name(fd)
                        ),
                    ));
                };
                (*negative, value)
            }
            Scalar::Ident { negative, name } => match name.to_ascii_lowercase().as_str() {
                "inf" | "infinity" => (*negative, f64::INFINITY),
                "nan" => (*negative, f64::NAN),
                _ => return Err(self.mismatch(fd, kind, v)),
            },
            Scalar::Str(_) => return Err(self.mismatch(fd, kind, v)),
        };
        Ok(if negative { -magnitude } else { magnitude })
    }

    fn enum_value(
        &self,
        fd: &FieldDescriptor,
        e: &EnumDescriptor,
        s: &Scalar<'_>,
        pos: Pos,
        v: &ast::Value<'_>,
    ) -> Result<i32, Diag> {
        match s {
            Scalar::Ident {
                negative: false,
                name,
            } => match e.get_value_by_name(name) {
                Some(value) => Ok(value.number()),
                None => {
                    let names = enum_names(e);
                    let hint = match suggest(name, names.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`? "),
                        None => String::new(),
                    };
                    Err(Diag::new(
                        pos,
                        format!(
                            "unknown value `{name}` for field `{}` (enum {}); {hint}valid values: {}",
                            text_name(fd),
                            e.full_name(),
                            names.join(", ")
                        ),
                    ))
                }
            },
            Scalar::Int { negative, lit } => {
                let kind = Kind::Enum(e.clone());
                let n = self.integer(
                    fd,
                    &kind,
                    *negative,
                    lit,
                    i32::MIN.into(),
                    i32::MAX.into(),
                    pos,
                )? as i32;
                // Enums of proto2 files are closed: a number with no name is an error there.
                if e.get_value(n).is_none() && e.parent_file().syntax() == Syntax::Proto2 {
                    return Err(Diag::new(
                        pos,
                        format!(
                            "{n} is not a value of enum {} (field `{}`); valid values: {}",
                            e.full_name(),
                            text_name(fd),
                            enum_names(e).join(", ")
                        ),
                    ));
                }
                Ok(n)
            }
            _ => Err(self.mismatch(fd, &Kind::Enum(e.clone()), v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kernal_size", "kernel_size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("ab", "ba"), 2);
    }

    #[test]
    fn suggestions_only_when_close() {
        let names = ["kernel_size", "stride", "pad", "num_output"];
        assert_eq!(suggest("kernal_size", names), Some("kernel_size"));
        assert_eq!(suggest("strides", names), Some("stride"));
        assert_eq!(suggest("Pad", names), Some("pad"));
        assert_eq!(suggest("xyz", names), None);
        assert_eq!(suggest("weight_filler", names), None);
    }
}
