//! Every real BVLC net and solver under `prototxt/` of the conformance folder, current and in
//! the V0/V1 formats, read and upgraded by crema, against Caffe's own upgrade of it
//! (`<name>.expected.pb`, written by `upgrade_net_proto_text` / `upgrade_solver_proto_text`).
//!
//! The comparison is byte for byte: prost, like protobuf's C++ library, writes fields in
//! field-number order, so equal messages encode to equal bytes. A failure names the file and
//! the first field (as a path) where the two messages differ. The printed upgrade (what
//! `crema upgrade` writes) must also equal Caffe's `<name>.expected.prototxt` byte for byte.
//!
//! The conformance folder is `../shared/conformance` beside the crate, or `$CREMA_CONFORMANCE`.

use crema::proto::{NetParameter, SolverParameter};
use crema::upgrade::{self, FileFormat};
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage, Value};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    let root = match std::env::var_os("CREMA_CONFORMANCE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    };
    root.join("prototxt")
}

/// `kind.txt`: (name, "net" | "solver") per line.
fn cases() -> Vec<(String, String)> {
    let path = dir().join("kind.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(name), Some(kind), None) => (name.to_string(), kind.to_string()),
                _ => panic!("kind.txt line {line:?} is not `<name> <kind>`"),
            }
        })
        .collect()
}

fn dynamic(desc: &MessageDescriptor, bytes: &[u8]) -> DynamicMessage {
    DynamicMessage::decode(desc.clone(), bytes).unwrap_or_else(|e| panic!("decode as {}: {e}", desc.name()))
}

fn show(v: &Value) -> String {
    match v {
        Value::Message(m) => format!("{{ {} }}", crema::prototxt::print_dynamic(m).replace('\n', " ").trim()),
        Value::List(items) => format!("[{} items]", items.len()),
        other => format!("{other:?}"),
    }
}

/// The path of the first field where `a` (crema's) and `b` (Caffe's) differ, with both values.
fn first_difference(a: &DynamicMessage, b: &DynamicMessage, at: &str) -> Option<String> {
    for field in a.descriptor().fields() {
        let here = if at.is_empty() { field.name().to_string() } else { format!("{at}.{}", field.name()) };
        let (has_a, has_b) = (a.has_field(&field), b.has_field(&field));
        if !has_a && !has_b {
            continue;
        }
        if has_a != has_b {
            let (va, vb) = (a.get_field(&field), b.get_field(&field));
            let say = |has: bool, v: &Value| if has { show(v) } else { "(unset)".to_string() };
            return Some(format!("{here}: crema {} vs Caffe {}", say(has_a, &va), say(has_b, &vb)));
        }
        let (va, vb) = (a.get_field(&field), b.get_field(&field));
        match (&*va, &*vb) {
            (Value::Message(ma), Value::Message(mb)) => {
                if let Some(d) = first_difference(ma, mb, &here) {
                    return Some(d);
                }
            }
            (Value::List(la), Value::List(lb)) => {
                for (i, (x, y)) in la.iter().zip(lb.iter()).enumerate() {
                    let item = format!("{here}[{i}]");
                    match (x, y) {
                        (Value::Message(mx), Value::Message(my)) => {
                            if let Some(d) = first_difference(mx, my, &item) {
                                return Some(d);
                            }
                        }
                        _ if x != y => return Some(format!("{item}: crema {} vs Caffe {}", show(x), show(y))),
                        _ => {}
                    }
                }
                if la.len() != lb.len() {
                    return Some(format!("{here}: crema has {} entries, Caffe {}", la.len(), lb.len()));
                }
            }
            (x, y) if x != y => return Some(format!("{here}: crema {} vs Caffe {}", show(x), show(y))),
            _ => {}
        }
    }
    None
}

/// Compares crema's encoding of its upgraded message with Caffe's bytes; Err says where.
fn compare<M: Message + prost::Name>(ours: &M, expected: &[u8]) -> Result<(), String> {
    let bytes = ours.encode_to_vec();
    if bytes == expected {
        return Ok(());
    }
    let desc = crema::prototxt::descriptor_of::<M>().map_err(|e| e.to_string())?;
    let (a, b) = (dynamic(&desc, &bytes), dynamic(&desc, expected));
    match first_difference(&a, &b, "") {
        Some(d) => Err(format!("first difference at {d}")),
        None => Err(format!(
            "messages are equal but the bytes differ ({} vs {} bytes): field order or packing",
            bytes.len(),
            expected.len()
        )),
    }
}

/// crema's text form of its upgrade against Caffe's `<name>.expected.prototxt`, line by line.
fn compare_text<M: Message + prost::Name>(ours: &M, expected: &Path) -> Result<(), String> {
    let text = crema::prototxt::print(ours).map_err(|e| e.to_string())?;
    let want = std::fs::read_to_string(expected).map_err(|e| format!("read {}: {e}", expected.display()))?;
    if text == want {
        return Ok(());
    }
    let line = text
        .lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(text.lines().count().min(want.lines().count()));
    Err(format!(
        "printed upgrade differs from {} at line {}: crema {:?} vs Caffe {:?}",
        expected.display(),
        line + 1,
        text.lines().nth(line),
        want.lines().nth(line)
    ))
}

/// Reads `<name>.prototxt` through crema's loader and checks it against `<name>.expected.pb`
/// (bytes) and `<name>.expected.prototxt` (printed text), then checks that Caffe's upgraded
/// file (text and binary) reads back unchanged.
fn check(name: &str, kind: &str) -> Result<(), String> {
    let source = dir().join(format!("{name}.prototxt"));
    let expected_pb = dir().join(format!("{name}.expected.pb"));
    let expected_txt = dir().join(format!("{name}.expected.prototxt"));
    let expected = std::fs::read(&expected_pb).map_err(|e| format!("read {}: {e}", expected_pb.display()))?;
    match kind {
        "net" => {
            let loaded = upgrade::load_net(&source).map_err(|e| e.to_string())?;
            if loaded.format != FileFormat::Text {
                return Err(format!("read as {:?}, not text", loaded.format));
            }
            compare::<NetParameter>(&loaded.message, &expected)?;
            compare_text(&loaded.message, &expected_txt)?;
            let again = upgrade::load_net(&expected_txt).map_err(|e| e.to_string())?;
            compare::<NetParameter>(&again.message, &expected)
                .map_err(|e| format!("{}: {e}", expected_txt.display()))?;
            let binary = upgrade::load_net(&expected_pb).map_err(|e| e.to_string())?;
            if !matches!(binary.format, FileFormat::Binary(_)) || !binary.notes.is_empty() {
                return Err(format!(
                    "{}: read as {:?} with notes {:?}",
                    expected_pb.display(),
                    binary.format,
                    binary.notes
                ));
            }
            compare::<NetParameter>(&binary.message, &expected).map_err(|e| format!("{}: {e}", expected_pb.display()))
        }
        "solver" => {
            let loaded = upgrade::load_solver(&source).map_err(|e| e.to_string())?;
            compare::<SolverParameter>(&loaded.message, &expected)?;
            compare_text(&loaded.message, &expected_txt)?;
            let again = upgrade::load_solver(&expected_txt).map_err(|e| e.to_string())?;
            compare::<SolverParameter>(&again.message, &expected)
                .map_err(|e| format!("{}: {e}", expected_txt.display()))
        }
        other => Err(format!("unknown kind {other:?} in kind.txt")),
    }
}

/// Every file of kind.txt, each reported by name; fails with all failures at once.
#[test]
fn every_file_upgrades_to_exactly_what_caffe_wrote() {
    let cases = cases();
    assert!(!cases.is_empty(), "no cases in {}", dir().display());
    let on_disk = std::fs::read_dir(dir()).expect("read the prototxt folder");
    for entry in on_disk.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".prototxt").filter(|n| !n.ends_with(".expected")) {
            assert!(cases.iter().any(|(n, _)| n == name), "{file} is not listed in kind.txt");
        }
    }
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, kind)| check(name, kind).err().map(|e| format!("{name} ({kind}): {e}")))
        .collect();
    for (name, kind) in &cases {
        if !failures.iter().any(|f| f.starts_with(&format!("{name} ("))) {
            println!("ok {name} ({kind})");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ from Caffe's upgrade:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} of {} files byte-identical to Caffe's upgrade", cases.len(), cases.len());
}

/// The old-format files must really take the upgrade paths they are here to test.
#[test]
fn old_format_files_are_upgraded_with_notes() {
    let net = |name: &str| upgrade::load_net(dir().join(format!("{name}.prototxt"))).map(|l| l.notes);
    let v0 = net("v0_imagenet_train").expect("v0_imagenet_train reads");
    assert_eq!(v0.first().map(String::as_str), Some(upgrade::notes::V0), "{v0:?}");
    assert!(v0.iter().any(|n| n == upgrade::notes::V1), "{v0:?}");
    let v1 = net("v1_caffenet_train_val").expect("v1_caffenet_train_val reads");
    assert!(v1.iter().any(|n| n == upgrade::notes::V1), "{v1:?}");
    let current = net("bvlc_alexnet_train_val").expect("bvlc_alexnet_train_val reads");
    assert!(current.is_empty(), "{current:?}");
}

/// Every caffemodel Caffe (or the SegNet mapping) wrote for the layer and solver cases reads
/// through `load_net` as binary, in the right numbering, already current.
#[test]
fn conformance_caffemodels_load_in_their_dialect() {
    let root = dir().join("..");
    let mut files = Vec::new();
    for group in ["layers", "solvers"] {
        let group_dir = root.join(group);
        let cases = std::fs::read_dir(&group_dir).unwrap_or_else(|e| panic!("read {}: {e}", group_dir.display()));
        for case in cases.flatten() {
            for file in std::fs::read_dir(case.path()).into_iter().flatten().flatten() {
                if file.path().extension().is_some_and(|e| e == "caffemodel") {
                    files.push(file.path());
                }
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no caffemodels under {}", root.display());
    let mut failures = Vec::new();
    for path in &files {
        let segnet = path.components().any(|c| c.as_os_str().to_string_lossy().starts_with("segnet_"));
        let want = FileFormat::Binary(if segnet { upgrade::Dialect::SegNet } else { upgrade::Dialect::Bvlc });
        match upgrade::load_net(path) {
            Ok(l) if l.format == want && l.notes.is_empty() => {}
            Ok(l) => {
                failures.push(format!("{}: {:?} with notes {:?}, want {want:?}", path.display(), l.format, l.notes))
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{} caffemodels read in their dialect", files.len());
}

/// Every net and solver file of the layer and solver cases reads through the loaders; only the
/// legacy solver case and old-style BatchNorm params need an upgrade.
#[test]
fn case_nets_and_solvers_load() {
    let root = dir().join("..");
    let mut failures = Vec::new();
    let mut count = 0;
    for group in ["layers", "solvers"] {
        let group_dir = root.join(group);
        let mut cases: Vec<_> = std::fs::read_dir(&group_dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", group_dir.display()))
            .flatten()
            .map(|c| c.path())
            .collect();
        cases.sort();
        for case in cases {
            let net = case.join("net.prototxt");
            if net.is_file() {
                count += 1;
                match upgrade::load_net(&net) {
                    // `param { lr_mult: 0 }` x3 on a BatchNorm is the old convention; Caffe zeroes
                    // decay_mult on reading it too.
                    Ok(l) if l.notes.iter().all(|n| n == upgrade::notes::BATCH_NORM) => {}
                    Ok(l) => failures.push(format!("{}: unexpected upgrade {:?}", net.display(), l.notes)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            let solver = case.join("solver.prototxt");
            if solver.is_file() {
                count += 1;
                let legacy = case.file_name().is_some_and(|n| n == "legacy_solver_type_enum");
                match upgrade::load_solver(&solver) {
                    Ok(l) if legacy => {
                        if l.notes != [upgrade::notes::SOLVER_TYPE] || l.message.r#type() != "Nesterov" {
                            failures.push(format!("{}: {:?}, type {:?}", solver.display(), l.notes, l.message.r#type));
                        }
                    }
                    Ok(l) if l.notes.is_empty() => {}
                    Ok(l) => failures.push(format!("{}: unexpected upgrade {:?}", solver.display(), l.notes)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
        }
    }
    assert!(count > 0, "no case files under {}", root.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{count} case nets and solvers read");
}
