//! Every error the parser reports, with its message and position.

use crate::common::{desc, error, error_as, scalar_error};
use crema::Error;

#[test]
fn display_shows_position_line_and_caret() {
    let err = crema::prototxt::parse_dynamic(
        "name: 'a'\nscalars {\n  i32: 'x'\n}\n",
        "net.prototxt",
        &desc("tt.Top"),
    );
    let text = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        text,
        "net.prototxt:3:8: field `i32` (int32) expects an integer, found string \"x\"\n  i32: 'x'\n       ^"
    );
}

#[test]
fn syntax_errors_say_what_was_expected() {
    assert_eq!(
        error_as("tt.Top", "name 'a'"),
        (
            1,
            6,
            "expected `:` or `{` after field name `name`, found string \"a\"".into()
        )
    );
    assert_eq!(
        error("scalars {\n i32: 1\n"),
        "unexpected end of input: `scalars` opened at line 1, column 9 is not closed with `}`"
    );
    assert_eq!(
        error("scalars { i32: 1 } }"),
        "unexpected `}`: no message is open here"
    );
    assert_eq!(
        error("scalars < i32: 1 }"),
        "expected `>` to close `scalars` opened at line 1, column 9, found `}`"
    );
    assert_eq!(
        error("name: "),
        "expected a value for field `name`, found end of input"
    );
    assert_eq!(error(": 1"), "expected a field name, found `:`");
    assert_eq!(
        error("ri32: [1, 2"),
        "expected `,` or `]` in the list of `ri32`, found end of input"
    );
    assert_eq!(
        error("ri32 [1]"),
        "expected `{` in the list of `ri32` (a list of values needs `:` after the field name), found `1`"
    );
    assert_eq!(
        error("[tt.ext]: 1"),
        "extension and `Any` fields (`[...]`) are not supported"
    );
    assert_eq!(
        error("[type.googleapis.com/tt.Req] { id: 1 }"),
        "extension and `Any` fields (`[...]`) are not supported"
    );
    assert_eq!(
        error("name: \"abc"),
        "string literal is not closed on its line"
    );
    assert_eq!(
        error("name: 'a\\qb'"),
        "unknown escape `\\q` in string literal"
    );
    assert_eq!(
        error("ri32: 12abc"),
        "a number must be followed by a space, not a letter"
    );
    assert_eq!(
        error("ri32: 08"),
        "a number with a leading zero is octal; `8` is not an octal digit"
    );
    assert_eq!(error("ri32: 0x"), "`0x` must be followed by hex digits");
    assert_eq!(
        error("rfloat: 1e"),
        "an exponent `e` must be followed by digits"
    );
    assert_eq!(
        error("rfloat: 1.5.2"),
        "a second decimal point or a point after an exponent"
    );
    assert_eq!(
        error("ri32: -'a'"),
        "expected a number after `-`, found string \"a\""
    );
    assert_eq!(error("name: 'a' @"), "expected a field name, found `@`");
}

#[test]
fn unknown_fields_suggest_the_closest_name() {
    assert_eq!(
        error_as("tt.Top", "\n  nme: 'a'"),
        (
            2,
            3,
            "unknown field `nme` in tt.Top; did you mean `name`?".into()
        )
    );
    assert_eq!(
        scalar_error("i33: 1"),
        "unknown field `i33` in tt.Scalars; did you mean `i32`?"
    );
    assert_eq!(
        error("scalar { }"),
        "unknown field `scalar` in tt.Top; did you mean `scalars`?"
    );
    assert_eq!(
        error("completely_different: 1"),
        "unknown field `completely_different` in tt.Top"
    );
    // A group goes by its type's name, not its field's.
    assert_eq!(
        error("grp { gval: 1 }"),
        "unknown field `grp` in tt.Top; did you mean `Grp`?"
    );
}

#[test]
fn values_of_the_wrong_type() {
    assert_eq!(
        scalar_error("i32: 'abc'"),
        "field `i32` (int32) expects an integer, found string \"abc\""
    );
    assert_eq!(
        scalar_error("u32: 1.5"),
        "field `u32` (uint32) expects an integer, found number `1.5`"
    );
    assert_eq!(
        scalar_error("i64: 1e3"),
        "field `i64` (int64) expects an integer, found number `1e3`"
    );
    assert_eq!(
        scalar_error("i32: inf"),
        "field `i32` (int32) expects an integer, found `inf`"
    );
    assert_eq!(
        scalar_error("fl: 'x'"),
        "field `fl` (float) expects a number, found string \"x\""
    );
    assert_eq!(
        scalar_error("db: infinite"),
        "field `db` (double) expects a number, found `infinite`"
    );
    assert_eq!(
        scalar_error("b: 2"),
        "field `b` (bool) expects `true` or `false`, found integer `2`"
    );
    assert_eq!(
        scalar_error("b: TRUE"),
        "field `b` (bool) expects `true` or `false`, found `TRUE`"
    );
    assert_eq!(
        scalar_error("b: -1"),
        "field `b` (bool) expects `true` or `false`, found integer `-1`"
    );
    assert_eq!(
        scalar_error("s: 5"),
        "field `s` (string) expects a string, found integer `5`"
    );
    assert_eq!(
        scalar_error("by: abc"),
        "field `by` (bytes) expects a string, found `abc`"
    );
    assert_eq!(
        scalar_error("color: 'RED'"),
        "field `color` (tt.Color) expects an enum value, found string \"RED\""
    );
    assert_eq!(
        scalar_error("color: 1.0"),
        "field `color` (tt.Color) expects an enum value, found number `1.0`"
    );
}

#[test]
fn messages_for_scalars_and_scalars_for_messages() {
    assert_eq!(
        scalar_error("i32 { }"),
        "field `i32` (int32) expects an integer, found a message `{ ... }`"
    );
    assert_eq!(
        error("ri32: [1, {}]"),
        "field `ri32` (int32) expects an integer, found a message `{ ... }`"
    );
    assert_eq!(
        error("scalars: 5"),
        "field `scalars` is a message (tt.Scalars) and expects `{ ... }`, found integer `5`"
    );
    assert_eq!(
        error("many: [{}, 'x']"),
        "field `many` is a message (tt.Scalars) and expects `{ ... }`, found string \"x\""
    );
    assert_eq!(
        error("counts: 1"),
        "map field `counts` expects entries `{ key: ... value: ... }`, found integer `1`"
    );
}

#[test]
fn integers_out_of_range() {
    let cases = [
        ("i32", "2147483648", "int32: -2147483648 to 2147483647"),
        ("i32", "-2147483649", "int32: -2147483648 to 2147483647"),
        ("s32", "0x80000000", "sint32: -2147483648 to 2147483647"),
        (
            "sfx32",
            "-0x80000001",
            "sfixed32: -2147483648 to 2147483647",
        ),
        (
            "i64",
            "9223372036854775808",
            "int64: -9223372036854775808 to 9223372036854775807",
        ),
        (
            "s64",
            "-9223372036854775809",
            "sint64: -9223372036854775808 to 9223372036854775807",
        ),
        (
            "sfx64",
            "99999999999999999999999",
            "sfixed64: -9223372036854775808 to 9223372036854775807",
        ),
        ("u32", "4294967296", "uint32: 0 to 4294967295"),
        ("u32", "-1", "uint32: 0 to 4294967295"),
        ("fx32", "-0", "fixed32: 0 to 4294967295"),
        (
            "u64",
            "18446744073709551616",
            "uint64: 0 to 18446744073709551615",
        ),
        ("fx64", "-1", "fixed64: 0 to 18446744073709551615"),
        ("color", "2147483648", "tt.Color: -2147483648 to 2147483647"),
    ];
    for (field, value, range) in cases {
        assert_eq!(
            scalar_error(&format!("{field}: {value}")),
            format!("integer `{value}` is out of range for field `{field}` ({range})"),
        );
    }
    assert_eq!(
        scalar_error("db: 0x10000000000000000"),
        "integer `0x10000000000000000` is out of range for field `db`"
    );
}

#[test]
fn unknown_enum_values_list_the_valid_ones() {
    assert_eq!(
        scalar_error("color: GREEEN"),
        "unknown value `GREEEN` for field `color` (enum tt.Color); did you mean `GREEN`? valid values: RED, GREEN, BLUE, INFRARED"
    );
    assert_eq!(
        scalar_error("color: PURPLE"),
        "unknown value `PURPLE` for field `color` (enum tt.Color); valid values: RED, GREEN, BLUE, INFRARED"
    );
    assert_eq!(
        scalar_error("color: 7"),
        "7 is not a value of enum tt.Color (field `color`); valid values: RED, GREEN, BLUE, INFRARED"
    );
    assert_eq!(
        scalar_error("color: -RED"),
        "field `color` (tt.Color) expects an enum value, found `-RED`"
    );
}

#[test]
fn singular_fields_given_twice() {
    assert_eq!(
        error_as("tt.Top", "name: 'a'\n\nname: 'b'"),
        (3, 1, "field `name` given twice (first at line 1)".into())
    );
    assert_eq!(
        error("scalars {} scalars {}"),
        "field `scalars` given twice (first at line 1)"
    );
    assert_eq!(
        error("scalars { i32: 1\n i32: 2 }"),
        "field `i32` given twice (first at line 1)"
    );
    assert_eq!(
        error("name: ['a']"),
        "field `name` is not repeated; it cannot take a list"
    );
    assert_eq!(
        error("choice_int: 1\nchoice_str: 'x'"),
        "field `choice_str` and field `choice_int` (line 1) are both in oneof `choice`; only one may be set"
    );
}

#[test]
fn required_fields_missing() {
    assert_eq!(
        error_as("tt.Top", "req {\n  label: 'x'\n}"),
        (3, 1, "missing required field `id` in tt.Req".into())
    );
    assert_eq!(
        error("reqs { id: 1 } reqs { }"),
        "missing required field `id` in tt.Req"
    );
    assert_eq!(
        error_as("tt.Req", "label: 'x'\n"),
        (1, 11, "missing required field `id` in tt.Req".into())
    );
    assert_eq!(
        error_as("tt.Req", ""),
        (1, 1, "missing required field `id` in tt.Req".into())
    );
}

#[test]
fn strings_must_be_utf8_in_string_fields() {
    assert_eq!(
        scalar_error(r#"s: "\xff""#),
        "field `s` (string) must be valid UTF-8, but the string has other bytes (binary data belongs in a `bytes` field)"
    );
}

#[test]
fn invalid_utf8_input() {
    let err = crema::prototxt::parse_dynamic_bytes(
        b"name: 'a'\nri32: \xc3\x28\n",
        "bad.prototxt",
        &desc("tt.Top"),
    );
    match err {
        Err(Error::Prototxt { line, col, msg, .. }) => {
            assert_eq!((line, col), (2, 7));
            assert_eq!(
                msg,
                "invalid UTF-8 (byte 0xc3): a prototxt file must be UTF-8 text"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_in_nested_messages_point_into_them() {
    let text = "children {\n  children {\n    scalars { u32: -3 }\n  }\n}\n";
    assert_eq!(
        error_as("tt.Top", text),
        (
            3,
            20,
            "integer `-3` is out of range for field `u32` (uint32: 0 to 4294967295)".into()
        )
    );
}
