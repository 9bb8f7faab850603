//! `parse(print(m)) == m`, on hand-written and on random messages of the test schema.

use crate::common::{Rng, desc, pool, top};
use crema::prototxt::{parse_dynamic, print_dynamic};
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value};

fn round_trip(m: &DynamicMessage) {
    let text = print_dynamic(m);
    let back = match parse_dynamic(&text, "printed", &m.descriptor()) {
        Ok(b) => b,
        Err(e) => panic!("printed text does not parse back:\n{e}\n--- text ---\n{text}"),
    };
    assert_eq!(&back, m, "--- text ---\n{text}");
    // Equal messages can still differ in the sign of a zero; the text shows it.
    assert_eq!(print_dynamic(&back), text);
}

#[test]
fn hand_written_messages() {
    for text in [
        "",
        "name: ''",
        "scalars { }",
        "scalars { i32: -2147483648 i64: -9223372036854775808 u64: 18446744073709551615 fl: -0 db: -0 }",
        "scalars { s: '\\0\\001\\n\\\"\\'\\\\ é 😀' by: '\\377\\200' }",
        "rfloat: [inf, -inf, 3.4028235e38, 1.4e-45, 1.17549435e-38] rdouble: [4.9e-324, 1.7976931348623157e308]",
        "children { children { children { name: 'deep' } } } child { req { id: 1 } }",
        "counts { key: '' value: -1 } counts { key: 'z' value: 2 } Grp { }",
        "choice_str: 'x' rcolor: [INFRARED, RED] rbool: [true, false]",
    ] {
        round_trip(&top(text));
    }
}

/// A random value for one element of field kind `kind`.
fn random_value(rng: &mut Rng, kind: &Kind, depth: usize) -> Value {
    const INTS: [i64; 8] = [
        0,
        1,
        -1,
        i32::MIN as i64,
        i32::MAX as i64,
        i64::MIN,
        i64::MAX,
        1000,
    ];
    let int = |rng: &mut Rng| {
        if rng.chance(0.5) {
            INTS[rng.below(INTS.len())]
        } else {
            rng.next() as i64
        }
    };
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(int(rng) as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(int(rng)),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(int(rng) as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(int(rng) as u64),
        Kind::Float => Value::F32(random_f32(rng)),
        Kind::Double => Value::F64(random_f64(rng)),
        Kind::Bool => Value::Bool(rng.chance(0.5)),
        Kind::String => Value::String(random_string(rng)),
        Kind::Bytes => Value::Bytes(
            (0..rng.below(12))
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>()
                .into(),
        ),
        Kind::Enum(e) => {
            let values: Vec<i32> = e.values().map(|v| v.number()).collect();
            Value::EnumNumber(values[rng.below(values.len())])
        }
        Kind::Message(m) => Value::Message(random_message(rng, m, depth + 1)),
    }
}

fn random_f32(rng: &mut Rng) -> f32 {
    const SPECIAL: [f32; 9] = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-45,
        0.1,
        1.0 / 255.0,
    ];
    loop {
        let v = if rng.chance(0.2) {
            SPECIAL[rng.below(SPECIAL.len())]
        } else {
            f32::from_bits(rng.next() as u32)
        };
        if !v.is_nan() {
            return v;
        }
    }
}

fn random_f64(rng: &mut Rng) -> f64 {
    const SPECIAL: [f64; 8] = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        0.1,
    ];
    loop {
        let v = if rng.chance(0.2) {
            SPECIAL[rng.below(SPECIAL.len())]
        } else {
            f64::from_bits(rng.next())
        };
        if !v.is_nan() {
            return v;
        }
    }
}

fn random_string(rng: &mut Rng) -> String {
    const CHARS: [char; 16] = [
        'a', 'Z', '0', ' ', '"', '\'', '\\', '\n', '\t', '\r', '\0', '\u{7f}', 'é', '😀', '#', '{',
    ];
    (0..rng.below(10))
        .map(|_| CHARS[rng.below(CHARS.len())])
        .collect()
}

/// A random message: each field set with some probability (required fields always).
fn random_message(rng: &mut Rng, desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
    let mut m = DynamicMessage::new(desc.clone());
    for fd in desc.fields() {
        let is_message = matches!(fd.kind(), Kind::Message(_)) && !fd.is_map();
        if !fd.is_required() && (!rng.chance(0.4) || (is_message && depth >= 4)) {
            continue;
        }
        if fd.is_map() {
            let Kind::Message(entry) = fd.kind() else {
                continue;
            };
            let (key_fd, value_fd) = (entry.map_entry_key_field(), entry.map_entry_value_field());
            for _ in 0..rng.below(4) {
                let key = random_value(rng, &key_fd.kind(), depth).into_map_key();
                let value = random_value(rng, &value_fd.kind(), depth);
                if let (Some(key), Value::Map(map)) = (key, m.get_field_mut(&fd)) {
                    map.insert(key, value);
                }
            }
        } else if fd.is_list() {
            let n = 1 + rng.below(4);
            let values: Vec<Value> = (0..n)
                .map(|_| random_value(rng, &fd.kind(), depth))
                .collect();
            m.set_field(&fd, Value::List(values));
        } else {
            let value = random_value(rng, &fd.kind(), depth);
            // Without presence (proto3), a default value is the same as an unset field.
            if fd.supports_presence() || !value.is_default(&fd.kind()) {
                m.set_field(&fd, value);
            }
        }
    }
    m
}

#[test]
fn random_messages() {
    let mut rng = Rng::new(2024);
    for name in ["tt.Top", "tt.Scalars", "tt.Req", "tt3.P3"] {
        let d = desc(name);
        for _ in 0..300 {
            round_trip(&random_message(&mut rng, &d, 0));
        }
    }
    assert!(pool().get_message_by_name("tt.Top").is_some());
}

#[test]
fn random_messages_survive_binary_and_back() {
    // What the typed API does: text -> dynamic -> bytes -> dynamic gives the same message.
    use prost::Message;
    let mut rng = Rng::new(7);
    let d = desc("tt.Top");
    for _ in 0..200 {
        let m = random_message(&mut rng, &d, 0);
        let parsed =
            parse_dynamic(&print_dynamic(&m), "printed", &d).unwrap_or_else(|e| panic!("{e}"));
        let decoded = DynamicMessage::decode(d.clone(), parsed.encode_to_vec().as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(print_dynamic(&decoded), print_dynamic(&m));
    }
}
