//! The binary formats against the files real Caffe (and the SegNet fork's numbering) wrote in
//! `../shared/conformance` (or `$CREMA_CONFORMANCE`): every caffemodel and solverstate reads,
//! writes back and reads again to the same blobs, and every .npy reads with its shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crema::io::{
    BlobData, BlobRef, SolverStateFile, WeightsFile, read_npy, read_solverstate, read_weights,
    write_caffemodel, write_npy,
};
use crema::proto::NetParameter;
use prost::Message;

fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("CREMA_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    assert!(
        dir.is_dir(),
        "conformance folder {} not found (set CREMA_CONFORMANCE)",
        dir.display()
    );
    dir
}

fn files(dir: &Path, keep: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, keep, out);
        } else if p.file_name().and_then(|n| n.to_str()).is_some_and(keep) {
            out.push(p);
        }
    }
}

fn find(keep: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(&conformance_dir(), keep, &mut out);
    out
}

fn is_weights_file(name: &str) -> bool {
    name == "weights.caffemodel"
        || name == "init.caffemodel"
        || (name.ends_with(".caffemodel")
            && (name.starts_with("iter_") || name.starts_with("snap_iter_")))
}

/// Names, types, shapes and bit patterns of data (and diff) are equal.
fn assert_same_blobs(a: &WeightsFile, b: &WeightsFile, what: &Path) {
    assert_eq!(a.layers.len(), b.layers.len(), "{}", what.display());
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        assert_eq!(
            (&la.name, &la.type_name),
            (&lb.name, &lb.type_name),
            "{}",
            what.display()
        );
        assert_eq!(
            la.blobs.len(),
            lb.blobs.len(),
            "{} {}",
            what.display(),
            la.name
        );
        for (x, y) in la.blobs.iter().zip(&lb.blobs) {
            assert_same_blob(x, y, &format!("{} layer {}", what.display(), la.name));
        }
    }
}

fn assert_same_blob(x: &BlobData, y: &BlobData, what: &str) {
    assert_eq!(x.shape, y.shape, "{what}");
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&x.data), bits(&y.data), "{what}");
    assert_eq!(bits(&x.diff), bits(&y.diff), "{what}");
}

#[test]
fn every_caffemodel_reads_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let models = find(&is_weights_file);
    assert!(
        models.len() >= 100,
        "only {} caffemodels found",
        models.len()
    );
    let (mut segnet, mut byte_identical, mut total_blobs) = (0, 0, 0);
    for path in &models {
        let w = read_weights(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!w.layers.is_empty(), "{}", path.display());
        total_blobs += w.layers.iter().map(|l| l.blobs.len()).sum::<usize>();
        for l in &w.layers {
            for b in &l.blobs {
                assert_eq!(b.data.len(), b.count(), "{} {}", path.display(), l.name);
            }
        }

        // Through the weights view: name, type, blobs.
        let out = tmp.path().join("back.caffemodel");
        w.write(&out).unwrap();
        assert_same_blobs(&w, &read_weights(&out).unwrap(), path);

        let bytes = std::fs::read(path).unwrap();
        if path.to_string_lossy().contains("segnet_") {
            segnet += 1;
            continue;
        }
        // Through the caffemodel writer with the full definition: the BVLC-numbered files
        // decode strictly, and writing them back gives Caffe's bytes exactly.
        let net = NetParameter::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let blobs: Vec<Vec<BlobRef<'_>>> = w
            .layers
            .iter()
            .map(|l| l.blobs.iter().map(BlobRef::of).collect())
            .collect();
        write_caffemodel(&out, &net, &blobs, false).unwrap();
        assert_same_blobs(&w, &read_weights(&out).unwrap(), path);
        assert!(
            std::fs::read(&out).unwrap() == bytes,
            "{} is not rewritten byte for byte",
            path.display()
        );
        byte_identical += 1;
    }
    assert!(segnet >= 3, "expected the segnet_* cases, found {segnet}");
    assert!(total_blobs > 200, "only {total_blobs} blobs");
    println!(
        "{} caffemodels ({total_blobs} blobs) read and round-tripped; {segnet} in the SegNet fork's numbering, {byte_identical} rewritten byte for byte",
        models.len()
    );
}

#[test]
fn segnet_caffemodels_have_their_layers_and_bn_blobs() {
    let dir = conformance_dir().join("layers");
    let up = read_weights(dir.join("segnet_upsample/weights.caffemodel")).unwrap();
    let types: Vec<_> = up.layers.iter().map(|l| l.type_name.as_str()).collect();
    assert_eq!(types, ["Convolution", "Pooling", "Upsample"]);
    let bn = read_weights(dir.join("segnet_bn_learn/weights.caffemodel")).unwrap();
    let bn_layer = bn
        .layers
        .iter()
        .find(|l| l.type_name == "BN")
        .expect("a BN layer");
    assert_eq!(bn_layer.blobs.len(), 2);
    for b in &bn_layer.blobs {
        assert_eq!(
            (b.shape.len(), b.shape[0], b.shape[2], b.shape[3]),
            (4, 1, 1, 1)
        );
    }
}

#[test]
fn every_solverstate_reads_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let states = find(&|n| n.ends_with(".solverstate"));
    assert!(!states.is_empty());
    for path in &states {
        let s = read_solverstate(path).unwrap_or_else(|e| panic!("{e}"));
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let iter: i64 = stem.rsplit('_').next().unwrap().parse().unwrap();
        assert_eq!(s.iter, iter, "{}", path.display());
        assert!(
            s.learned_net.ends_with(&format!("{stem}.caffemodel")),
            "{}: {}",
            path.display(),
            s.learned_net
        );

        // The history cycles through the shapes of the net's learnable blobs (once for SGD,
        // twice for Adam), as the snapshot caffemodel beside it holds them.
        let model = read_weights(path.with_extension("caffemodel")).unwrap();
        let shapes: Vec<_> = model
            .layers
            .iter()
            .flat_map(|l| &l.blobs)
            .map(|b| b.shape.clone())
            .collect();
        assert!(
            !s.history.is_empty() && s.history.len() % shapes.len() == 0,
            "{}",
            path.display()
        );
        for (i, h) in s.history.iter().enumerate() {
            assert_eq!(
                h.shape,
                shapes[i % shapes.len()],
                "{} history {i}",
                path.display()
            );
        }

        let out = tmp.path().join("back.solverstate");
        s.write(&out).unwrap();
        let back: SolverStateFile = read_solverstate(&out).unwrap();
        assert_eq!(
            (back.iter, &back.learned_net, back.current_step),
            (s.iter, &s.learned_net, s.current_step)
        );
        for (i, (x, y)) in s.history.iter().zip(&back.history).enumerate() {
            assert_same_blob(x, y, &format!("{} history {i}", path.display()));
        }
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(path).unwrap(),
            "{} not byte for byte",
            path.display()
        );
    }
    println!(
        "{} solverstates read and round-tripped byte for byte",
        states.len()
    );
}

#[test]
fn every_npy_reads_with_its_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let arrays = find(&|n| n.ends_with(".npy"));
    assert!(arrays.len() >= 300, "only {} .npy found", arrays.len());
    for path in &arrays {
        let a = read_npy(path).unwrap_or_else(|e| panic!("{e}"));
        let count: usize = a.shape.iter().product();
        assert_eq!(a.data.len(), count, "{}", path.display());
        // The shape accounts for every byte after the header, and NumPy's own header
        // layout is reproduced exactly.
        let bytes = std::fs::read(path).unwrap();
        let out = tmp.path().join("back.npy");
        write_npy(&out, &a.shape, &a.data).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == bytes,
            "{} not rewritten byte for byte",
            path.display()
        );
    }

    // Parameter gradients have the shapes of the parameters they belong to.
    let mut checked = 0;
    for case in find(&|n| n == "case.json") {
        let dir = case.parent().unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&case).unwrap()).unwrap();
        let Some(grads) = json.get("param_grad").and_then(|g| g.as_object()) else {
            continue;
        };
        let weights = read_weights(dir.join("weights.caffemodel")).unwrap();
        let by_name: BTreeMap<_, _> = weights
            .layers
            .iter()
            .map(|l| (l.name.as_str(), l))
            .collect();
        for (layer, files) in grads {
            let blobs = &by_name[layer.as_str()].blobs;
            for (i, f) in files.as_array().unwrap().iter().enumerate() {
                let a = read_npy(dir.join(f.as_str().unwrap())).unwrap();
                assert_eq!(a.shape, blobs[i].shape, "{} {layer} {i}", dir.display());
                checked += 1;
            }
        }
    }
    assert!(checked > 20);
    println!(
        "{} .npy read and rewritten byte for byte; {checked} gradient shapes match their blobs",
        arrays.len()
    );
}
