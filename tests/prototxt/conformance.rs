//! Caffe's own files from `shared/conformance/prototxt` (or `$CREMA_CONFORMANCE/prototxt`):
//! every source file parses; every `*.expected.prototxt` (Caffe's upgraded, canonical text)
//! parses to exactly the message in `*.expected.pb`; and printing that message gives the
//! expected text byte for byte.
//!
//! These need the real `caffe.proto`; with a schema that lacks NetParameter or
//! SolverParameter they print why they skip and pass.

use crema::prototxt::{caffe_pool, parse_dynamic_bytes, print_dynamic};
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use std::path::PathBuf;

/// The conformance `prototxt` folder, if present.
fn folder() -> Option<PathBuf> {
    let root = std::env::var_os("CREMA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/conformance"
            ))
        });
    let dir = root.join("prototxt");
    if dir.join("kind.txt").is_file() {
        Some(dir)
    } else {
        eprintln!("skipping: no conformance files at {}", dir.display());
        None
    }
}

/// Each case's name and the message type of its file, from `kind.txt`.
fn cases() -> Option<(PathBuf, Vec<(String, MessageDescriptor)>)> {
    let dir = folder()?;
    let pool = caffe_pool().unwrap_or_else(|e| panic!("{e}"));
    let (Some(net), Some(solver)) = (
        pool.get_message_by_name("caffe.NetParameter"),
        pool.get_message_by_name("caffe.SolverParameter"),
    ) else {
        eprintln!(
            "skipping: this caffe.proto has no NetParameter/SolverParameter (placeholder schema)"
        );
        return None;
    };
    let kinds =
        std::fs::read_to_string(dir.join("kind.txt")).unwrap_or_else(|e| panic!("kind.txt: {e}"));
    let mut cases = Vec::new();
    for line in kinds.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            panic!("kind.txt: bad line {line:?}");
        };
        let desc = match kind {
            "net" => net.clone(),
            "solver" => solver.clone(),
            other => panic!("kind.txt: unknown kind {other:?}"),
        };
        cases.push((name.to_string(), desc));
    }
    assert!(!cases.is_empty(), "kind.txt lists no cases");
    Some((dir, cases))
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fails with every collected problem at once, so one run shows them all.
fn report(failures: Vec<String>, total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_source_file_parses() {
    let Some((dir, cases)) = cases() else { return };
    let mut failures = Vec::new();
    for (name, desc) in &cases {
        let path = dir.join(format!("{name}.prototxt"));
        if let Err(e) = parse_dynamic_bytes(&read(&path), &path.display().to_string(), desc) {
            failures.push(e.to_string());
        }
    }
    report(failures, cases.len());
}

#[test]
fn expected_text_parses_to_expected_binary() {
    let Some((dir, cases)) = cases() else { return };
    let mut failures = Vec::new();
    for (name, desc) in &cases {
        let text_path = dir.join(format!("{name}.expected.prototxt"));
        let pb = read(&dir.join(format!("{name}.expected.pb")));
        let parsed =
            match parse_dynamic_bytes(&read(&text_path), &text_path.display().to_string(), desc) {
                Ok(m) => m,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
        let expected = match DynamicMessage::decode(desc.clone(), pb.as_slice()) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}.expected.pb does not decode: {e}"));
                continue;
            }
        };
        if parsed != expected {
            failures.push(format!("{name}: parsed text differs from expected.pb"));
        } else if parsed.encode_to_vec() != pb {
            failures.push(format!(
                "{name}: re-encoded message differs from the bytes of expected.pb"
            ));
        }
    }
    report(failures, cases.len());
}

#[test]
fn printing_expected_binary_gives_expected_text() {
    let Some((dir, cases)) = cases() else { return };
    let mut failures = Vec::new();
    for (name, desc) in &cases {
        let pb = read(&dir.join(format!("{name}.expected.pb")));
        let want = String::from_utf8_lossy(&read(&dir.join(format!("{name}.expected.prototxt"))))
            .into_owned();
        let got = match DynamicMessage::decode(desc.clone(), pb.as_slice()) {
            Ok(m) => print_dynamic(&m),
            Err(e) => {
                failures.push(format!("{name}.expected.pb does not decode: {e}"));
                continue;
            }
        };
        if got != want {
            let (n, (g, w)) = got
                .lines()
                .zip(want.lines())
                .enumerate()
                .find(|(_, (g, w))| g != w)
                .unwrap_or((
                    got.lines().count().min(want.lines().count()),
                    ("<end>", "<end>"),
                ));
            failures.push(format!(
                "{name}: printed text differs at line {}:\n  got:  {g}\n  want: {w}",
                n + 1
            ));
        }
    }
    report(failures, cases.len());
}
