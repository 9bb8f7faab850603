//! The printer's exact output: protobuf's canonical text format.

use crate::common::{parse_as, top};
use crema::prototxt::print_dynamic;

#[test]
fn canonical_layout() {
    let m = top(
        "top: 'y' name: 'net' ri32: [3, 1] scalars { s: 'x' i32: -1 } bottom: 'a' top: 'x' \
         children { name: 'c' children { } } Grp { gval: 2 } req { id: 5 }",
    );
    let want = "\
name: \"net\"
scalars {
  i32: -1
  s: \"x\"
}
ri32: 3
ri32: 1
children {
  name: \"c\"
  children {
  }
}
req {
  id: 5
}
Grp {
  gval: 2
}
bottom: \"a\"
top: \"y\"
top: \"x\"
";
    assert_eq!(print_dynamic(&m), want);
}

#[test]
fn every_scalar_type() {
    let m = parse_as(
        "tt.Scalars",
        "color: BLUE by: '\\0\\xff\"' s: 'tab\\there \\'q\\' é' b: true db: 0.1 fl: 0.1 sfx64: -5 sfx32: -4 \
         fx64: 18446744073709551615 fx32: 7 s64: -9223372036854775808 s32: -3 u64: 2 u32: 1 i64: -2 i32: 0",
    );
    let want = "\
i32: 0
i64: -2
u32: 1
u64: 2
s32: -3
s64: -9223372036854775808
fx32: 7
fx64: 18446744073709551615
sfx32: -4
sfx64: -5
fl: 0.1
db: 0.1
b: true
s: \"tab\\there \\'q\\' \\303\\251\"
by: \"\\000\\377\\\"\"
color: BLUE
";
    assert_eq!(print_dynamic(&m), want);
}

#[test]
fn floats_specials_and_defaults() {
    let m = top(
        "rfloat: [inf, -inf, nan, -0, 1e-5, 0.001, 1234567, 0.00392156886] rdouble: [0.1, 1e100] with_default: 1.5",
    );
    let want = "\
rfloat: inf
rfloat: -inf
rfloat: nan
rfloat: -0
rfloat: 1e-05
rfloat: 0.001
rfloat: 1234567
rfloat: 0.00392156886
rdouble: 0.1
rdouble: 1e+100
with_default: 1.5
";
    // A proto2 field set to its default is still printed: it has presence.
    assert_eq!(print_dynamic(&m), want);
}

#[test]
fn enum_numbers_without_names_and_maps() {
    let m = parse_as("tt3.P3", "es: [ONE, 5] e: 9");
    assert_eq!(print_dynamic(&m), "e: 9\nes: ONE\nes: 5\n");
    let m = top("counts { key: 'b' value: 2 } counts { key: 'a' value: 1 }");
    assert_eq!(
        print_dynamic(&m),
        "counts {\n  key: \"a\"\n  value: 1\n}\ncounts {\n  key: \"b\"\n  value: 2\n}\n"
    );
}

#[test]
fn empty_message_prints_nothing() {
    assert_eq!(print_dynamic(&top("")), "");
}
