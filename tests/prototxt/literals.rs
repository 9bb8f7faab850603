//! Every literal form and every piece of syntax the text format allows, on the test schema.

use crate::common::{desc, parse_as, scalar, top};
use prost_reflect::Value;

fn list(m: &prost_reflect::DynamicMessage, field: &str) -> Vec<Value> {
    m.get_field_by_name(field)
        .and_then(|v| v.as_list().map(<[Value]>::to_vec))
        .unwrap_or_default()
}

fn strings(m: &prost_reflect::DynamicMessage, field: &str) -> Vec<String> {
    list(m, field)
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn integers_in_every_radix_and_sign() {
    assert_eq!(scalar("i32", "i32: 42"), Value::I32(42));
    assert_eq!(scalar("i32", "i32: -42"), Value::I32(-42));
    assert_eq!(scalar("i32", "i32: 0x7fffffff"), Value::I32(i32::MAX));
    assert_eq!(scalar("i32", "i32: -0x80000000"), Value::I32(i32::MIN));
    assert_eq!(scalar("i32", "i32: 0X1a"), Value::I32(26));
    assert_eq!(scalar("i32", "i32: 017"), Value::I32(15));
    assert_eq!(scalar("i32", "i32: -017"), Value::I32(-15));
    assert_eq!(scalar("i32", "i32: 0"), Value::I32(0));
    assert_eq!(scalar("i32", "i32: -0"), Value::I32(0));
    assert_eq!(scalar("i32", "i32: - 5"), Value::I32(-5));
    assert_eq!(
        scalar("i64", "i64: -9223372036854775808"),
        Value::I64(i64::MIN)
    );
    assert_eq!(
        scalar("i64", "i64: 9223372036854775807"),
        Value::I64(i64::MAX)
    );
    assert_eq!(scalar("u32", "u32: 4294967295"), Value::U32(u32::MAX));
    assert_eq!(
        scalar("u64", "u64: 18446744073709551615"),
        Value::U64(u64::MAX)
    );
    assert_eq!(
        scalar("u64", "u64: 0xFFFFFFFFFFFFFFFF"),
        Value::U64(u64::MAX)
    );
    assert_eq!(scalar("s32", "s32: -2147483648"), Value::I32(i32::MIN));
    assert_eq!(scalar("s64", "s64: -1"), Value::I64(-1));
    assert_eq!(scalar("fx32", "fx32: 4294967295"), Value::U32(u32::MAX));
    assert_eq!(
        scalar("fx64", "fx64: 01777777777777777777777"),
        Value::U64(u64::MAX)
    );
    assert_eq!(scalar("sfx32", "sfx32: -2147483648"), Value::I32(i32::MIN));
    assert_eq!(
        scalar("sfx64", "sfx64: -0x8000000000000000"),
        Value::I64(i64::MIN)
    );
}

#[test]
fn floats_in_every_form() {
    let f = |text: &str| {
        scalar("fl", &format!("fl: {text}"))
            .as_f32()
            .unwrap_or(f32::NAN)
    };
    let d = |text: &str| {
        scalar("db", &format!("db: {text}"))
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    assert_eq!(f("1.5"), 1.5);
    assert_eq!(f("-1.5"), -1.5);
    assert_eq!(f(".5"), 0.5);
    assert_eq!(f("-.5"), -0.5);
    assert_eq!(f("5."), 5.0);
    assert_eq!(f("1e3"), 1000.0);
    assert_eq!(f("1E-3"), 0.001);
    assert_eq!(f("2.5e+2"), 250.0);
    assert_eq!(f("1.5f"), 1.5);
    assert_eq!(f("2F"), 2.0);
    assert_eq!(f("3"), 3.0);
    assert_eq!(f("-3"), -3.0);
    assert_eq!(f("0x10"), 16.0);
    assert_eq!(f("010"), 8.0);
    assert_eq!(f("inf"), f32::INFINITY);
    assert_eq!(f("-inf"), f32::NEG_INFINITY);
    assert_eq!(f("Infinity"), f32::INFINITY);
    assert_eq!(f("-INFINITY"), f32::NEG_INFINITY);
    assert_eq!(f("1e39"), f32::INFINITY);
    assert!(f("nan").is_nan());
    assert!(f("NaN").is_nan());
    assert!(f("-0").is_sign_negative() && f("-0") == 0.0);
    assert!(f("-0.0").is_sign_negative());
    assert!(!f("0").is_sign_negative());
    assert_eq!(d("0.1"), 0.1);
    assert_eq!(d("1e-300"), 1e-300);
    assert_eq!(d("100000000000000000000000"), 1e23);
    assert_eq!(d("-inf"), f64::NEG_INFINITY);
    // A float field reads the literal as a double first and rounds that, as protobuf does.
    assert_eq!(f("0.1"), 0.1f64 as f32);
}

#[test]
fn bools_in_every_spelling() {
    for (text, want) in [
        ("true", true),
        ("True", true),
        ("t", true),
        ("1", true),
        ("false", false),
        ("False", false),
        ("f", false),
        ("0", false),
        ("0x1", true),
    ] {
        assert_eq!(
            scalar("b", &format!("b: {text}")),
            Value::Bool(want),
            "{text}"
        );
    }
}

#[test]
fn enums_by_name_and_number() {
    assert_eq!(scalar("color", "color: GREEN"), Value::EnumNumber(1));
    assert_eq!(scalar("color", "color: 2"), Value::EnumNumber(2));
    assert_eq!(scalar("color", "color: -1"), Value::EnumNumber(-1));
    assert_eq!(scalar("color", "color: INFRARED"), Value::EnumNumber(-1));
    let m = top("rcolor: RED rcolor: [BLUE, 1]");
    assert_eq!(
        list(&m, "rcolor"),
        [
            Value::EnumNumber(0),
            Value::EnumNumber(2),
            Value::EnumNumber(1)
        ]
    );
    // proto3 enums are open: a number without a name is kept.
    let m = parse_as("tt3.P3", "e: 7 es: [ONE, 9]");
    assert_eq!(
        m.get_field_by_name("e").map(|v| v.into_owned()),
        Some(Value::EnumNumber(7))
    );
}

#[test]
fn strings_quotes_escapes_and_concatenation() {
    let s = |text: &str| {
        scalar("s", &format!("s: {text}"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(s(r#""double""#), "double");
    assert_eq!(s("'single'"), "single");
    assert_eq!(s(r#"'it''s' "a" 'b'"#), "itsab");
    assert_eq!(s("\"a\" # comment\n  'b'"), "ab");
    assert_eq!(
        s(r#""\n\t\r\"\'\\\a\b\f\v\?""#),
        "\n\t\r\"'\\\x07\x08\x0c\x0b?"
    );
    assert_eq!(s(r#""\101\102\7""#), "AB\x07");
    assert_eq!(s(r#""\x41\x7e""#), "A~");
    assert_eq!(s(r#""\u00e9\U0001F600""#), "é😀");
    assert_eq!(s(r#""\303\251""#), "é");
    assert_eq!(s("\"plain é\""), "plain é");
    assert_eq!(s("\"\""), "");
    let b = scalar("by", r#"by: "\xff\000a" '\377'"#);
    assert_eq!(
        b.as_bytes().map(|b| b.to_vec()),
        Some(b"\xff\0a\xff".to_vec())
    );
}

#[test]
fn message_delimiters_and_colons() {
    for text in [
        "scalars { i32: 1 }",
        "scalars: { i32: 1 }",
        "scalars < i32: 1 >",
        "scalars: < i32: 1 >",
        "scalars {i32:1}",
        "scalars\n{\n  i32\n  :\n  1\n}\n",
    ] {
        let m = top(text);
        let inner = m
            .get_field_by_name("scalars")
            .unwrap_or_else(|| panic!("{text}"));
        let inner = inner.as_message().unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            inner.get_field_by_name("i32").map(|v| v.into_owned()),
            Some(Value::I32(1)),
            "{text}"
        );
    }
    // An empty message is still set.
    let m = top("scalars {}");
    assert!(m.has_field_by_name("scalars"));
}

#[test]
fn repeated_fields_as_lines_and_lists() {
    let m = top("ri32: 1 ri32: [2, 3] ri32: 4 ri32: [] packed_i64: [-1, 0x10] packed_i64: 5");
    assert_eq!(
        list(&m, "ri32"),
        [Value::I32(1), Value::I32(2), Value::I32(3), Value::I32(4)]
    );
    assert_eq!(
        list(&m, "packed_i64"),
        [Value::I64(-1), Value::I64(16), Value::I64(5)]
    );
    let m = top("many { i32: 1 } many [ { i32: 2 }, < i32: 3 > ] many: [ {i32: 4} ] many: []");
    let ids: Vec<_> = list(&m, "many")
        .iter()
        .map(|v| {
            v.as_message()
                .and_then(|m| m.get_field_by_name("i32"))
                .map(|v| v.into_owned())
        })
        .collect();
    assert_eq!(ids, [1, 2, 3, 4].map(|i| Some(Value::I32(i))));
    // An empty list sets nothing.
    assert!(!top("ri32: []").has_field_by_name("ri32"));
    assert_eq!(top("ri32: []"), top(""));
}

#[test]
fn interleaved_repeated_fields_keep_their_own_order() {
    // SegNet's files interleave `bottom` and `top` lines.
    let m = top("bottom: 'a' top: 'x' bottom: 'b' top: 'y' top: 'z' bottom: 'c'");
    assert_eq!(strings(&m, "bottom"), ["a", "b", "c"]);
    assert_eq!(strings(&m, "top"), ["x", "y", "z"]);
}

#[test]
fn separators_comments_and_whitespace() {
    let m = top("# head\nname: 'n';ri32: 1,ri32: 2 ;\n\t ri32:3# tail\r\nscalars{i32:4;};");
    assert_eq!(
        m.get_field_by_name("name").map(|v| v.into_owned()),
        Some(Value::String("n".into()))
    );
    assert_eq!(
        list(&m, "ri32"),
        [Value::I32(1), Value::I32(2), Value::I32(3)]
    );
    assert_eq!(top(""), top("  \n# only comments\n  # more\n"));
}

#[test]
fn fields_in_any_order_make_the_same_message() {
    assert_eq!(
        top("name: 'a' scalars { i32: 1 } ri32: 2"),
        top("ri32: 2 scalars { i32: 1 } name: 'a'")
    );
}

#[test]
fn groups_by_their_type_name() {
    let m = top("Grp { gval: 3 }");
    let grp = m.get_field_by_name("grp").map(|v| v.into_owned());
    let gval = grp
        .as_ref()
        .and_then(|g| g.as_message())
        .and_then(|g| g.get_field_by_name("gval"));
    assert_eq!(gval.map(|v| v.into_owned()), Some(Value::I32(3)));
}

#[test]
fn map_entries() {
    let m = top(
        "counts { key: 'a' value: 1 } counts [ { key: 'b' value: 2 }, { key: 'a' value: 3 } ] counts {}",
    );
    let map = m.get_field_by_name("counts").map(|v| v.into_owned());
    let map = map
        .as_ref()
        .and_then(Value::as_map)
        .cloned()
        .unwrap_or_default();
    assert_eq!(map.len(), 3);
    assert_eq!(
        map.get(&prost_reflect::MapKey::String("a".into())),
        Some(&Value::I32(3))
    );
    assert_eq!(
        map.get(&prost_reflect::MapKey::String(String::new())),
        Some(&Value::I32(0))
    );
}

#[test]
fn required_fields_present() {
    let m = top("req { id: 1 } reqs { id: 2 label: 'x' }");
    assert!(m.has_field_by_name("req"));
    parse_as("tt.Req", "id: 0");
}

#[test]
fn proto3_presence() {
    let m = parse_as("tt3.P3", "x: 0 s: '' opt: 0");
    assert!(!m.has_field_by_name("x"));
    assert!(m.has_field_by_name("opt"));
    assert_eq!(crema::prototxt::print_dynamic(&m), "opt: 0\n");
}

#[test]
fn typed_parse_through_the_caffe_pool() {
    // BlobShape is in every version of caffe.proto.
    let shape: crema::proto::BlobShape =
        crema::prototxt::parse("dim: 1 dim: [3, 224] dim: 0x10", "shape.prototxt")
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shape.dim, [1, 3, 224, 16]);
    let text = crema::prototxt::print(&shape).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text, "dim: 1\ndim: 3\ndim: 224\ndim: 16\n");
    let back: crema::proto::BlobShape =
        crema::prototxt::parse(&text, "printed").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, shape);
    assert!(desc("tt.Top").full_name() == "tt.Top");
}

#[test]
fn read_file_names_the_path() {
    let dir = std::env::temp_dir().join(format!("crema-prototxt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let good = dir.join("good.prototxt");
    std::fs::write(&good, "dim: 2\n").unwrap_or_else(|e| panic!("{e}"));
    let shape: crema::proto::BlobShape =
        crema::prototxt::read_file(&good).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shape.dim, [2]);
    let bad = dir.join("bad.prototxt");
    std::fs::write(&bad, "dim: 2\ndim: x\n").unwrap_or_else(|e| panic!("{e}"));
    let err = crema::prototxt::read_file::<crema::proto::BlobShape>(&bad)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            format!(
                "{}:2:6: field `dim` (int64) expects an integer, found `x`\ndim: x\n     ^",
                bad.display()
            )
            .as_str()
        )
    );
    let missing = dir.join("missing.prototxt");
    let err = crema::prototxt::read_file::<crema::proto::BlobShape>(&missing)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.starts_with(&missing.display().to_string())));
    let _ = std::fs::remove_dir_all(&dir);
}
