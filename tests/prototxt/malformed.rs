//! Malformed input of every kind gives an error, never a panic, a hang or a stack overflow.

use crate::common::{Rng, desc, error};
use crema::prototxt::grammar::{MAX_DEPTH, document};
use crema::prototxt::{caffe_pool, parse_dynamic, parse_dynamic_bytes};
use prost_reflect::MessageDescriptor;
use std::path::PathBuf;

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let want = format!("nesting deeper than {MAX_DEPTH} levels");
    assert_eq!(error(&"child {".repeat(10_000)), want);
    assert_eq!(
        error(&format!(
            "{}{}",
            "child {".repeat(10_000),
            "}".repeat(10_000)
        )),
        want
    );
    assert_eq!(error(&"children [{".repeat(10_000)), want);
    assert_eq!(error(&"child <".repeat(100_000)), want);
    // Exactly the limit is fine, and prints and parses back.
    let ok = format!("{}{}", "child {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
    let m = crate::common::top(&ok);
    let printed = crema::prototxt::print_dynamic(&m);
    assert_eq!(parse_dynamic(&printed, "p", &desc("tt.Top")).ok(), Some(m));
}

#[test]
fn large_input_parses() {
    let text = "ri32: 1\nrstring: 'abc'\n".repeat(100_000);
    let m = crate::common::top(&text);
    let n = m
        .get_field_by_name("ri32")
        .and_then(|v| v.as_list().map(<[_]>::len));
    assert_eq!(n, Some(100_000));
}

#[test]
fn truncated_and_unbalanced() {
    let text = "name: 'n' scalars { i32: 1 s: \"abc\" } many [ { fl: 1.5e3 }, { color: RED } ] ri32: [1, 2]";
    for end in 0..text.len() {
        // Every prefix either parses or fails cleanly.
        let _ = parse_dynamic(&text[..end], "t", &desc("tt.Top"));
    }
    assert!(error("scalars {").starts_with("unexpected end of input"));
    assert!(
        error("scalars { many {").starts_with("unknown field `many`")
            || error("scalars { many {").starts_with("unexpected")
    );
    assert!(error("}}}").starts_with("unexpected `}`"));
    assert!(error("ri32: [1, 2").starts_with("expected `,` or `]`"));
}

#[test]
fn random_bytes() {
    let mut rng = Rng::new(99);
    let d = desc("tt.Top");
    let alphabet = b"{}<>[]:;,#'\"\\-.0123456789exfFnatrueTop_ \n\t";
    for _ in 0..3000 {
        let n = rng.below(64);
        let bytes: Vec<u8> = (0..n)
            .map(|_| {
                if rng.chance(0.7) {
                    alphabet[rng.below(alphabet.len())]
                } else {
                    rng.next() as u8
                }
            })
            .collect();
        let _ = parse_dynamic_bytes(&bytes, "random", &d);
    }
}

/// The conformance files, when present (they are real, varied prototxt).
fn conformance_texts() -> Vec<(PathBuf, String)> {
    let root = std::env::var_os("CREMA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/conformance"
            ))
        });
    let Ok(entries) = std::fs::read_dir(root.join("prototxt")) else {
        eprintln!("no conformance files; mutating only the built-in sample");
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "prototxt"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

/// One random edit: delete, duplicate, insert a special byte, or swap two spans.
fn mutate(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(5) {
            0 => {
                let len = rng.below(16).min(out.len() - at);
                out.drain(at..at + len);
            }
            1 => {
                let len = rng.below(32).min(out.len() - at);
                let piece: Vec<u8> = out[at..at + len].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, piece);
            }
            2 => {
                let special = b"{}<>[]:;,#'\"\\-.0ex\n\xff\xc3";
                out.insert(at, special[rng.below(special.len())]);
            }
            3 => out[at] = rng.next() as u8,
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn mutated_real_files() {
    let mut texts = conformance_texts();
    texts.push((
        PathBuf::from("sample"),
        "name: 'n' many { s: 'a' color: BLUE } ri32: [1, 2]".to_string(),
    ));
    let pool = caffe_pool().unwrap_or_else(|e| panic!("{e}"));
    let caffe: Vec<MessageDescriptor> = ["caffe.NetParameter", "caffe.SolverParameter"]
        .iter()
        .filter_map(|n| pool.get_message_by_name(n))
        .collect();
    let top = desc("tt.Top");
    let mut rng = Rng::new(1);
    let rounds = if texts.len() > 1 { 40 } else { 2000 };
    for (path, text) in &texts {
        for _ in 0..rounds {
            let bytes = mutate(&mut rng, text.as_bytes());
            // The grammar alone, whatever the schema.
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = document(s);
            }
            for d in caffe.iter().chain([&top]) {
                if let Err(e) = parse_dynamic_bytes(&bytes, &path.display().to_string(), d) {
                    // Every error renders with a position.
                    assert!(e.to_string().contains(':'), "{e}");
                }
            }
        }
    }
}
