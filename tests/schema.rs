//! `proto/caffe.proto` against bytes that real Caffe wrote.
//!
//! Every binary message under the conformance folder must decode with no field the schema
//! does not know (at any depth), and encode back to the very same bytes, both through the
//! descriptor (prost-reflect) and through the generated types. A default-value check pins
//! the proto2 defaults that layer code relies on.
//!
//! The conformance folder is `../shared/conformance` beside the crate, or `$CREMA_CONFORMANCE`.

use crema::proto::{self, DESCRIPTOR_SET};
use crema::upgrade;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};
use std::fs;
use std::path::{Path, PathBuf};

fn conformance_dir() -> PathBuf {
    match std::env::var_os("CREMA_CONFORMANCE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    }
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(DESCRIPTOR_SET).expect("the embedded descriptor set decodes")
}

fn descriptor(name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(&format!("caffe.{name}"))
        .unwrap_or_else(|| panic!("caffe.{name} is in the schema"))
}

/// Sorted entries of `dir` (panics if it cannot be read: a missing folder must fail loudly).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    paths.sort();
    paths
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// Pushes the path of every unknown field in `msg` and its sub-messages onto `out`.
fn collect_unknown(msg: &DynamicMessage, at: &str, out: &mut Vec<String>) {
    for field in msg.unknown_fields() {
        out.push(format!(
            "{at} #{} ({:?})",
            field.number(),
            field.wire_type()
        ));
    }
    for (field, value) in msg.fields() {
        let here = format!("{at}.{}", field.name());
        match value {
            Value::Message(sub) => collect_unknown(sub, &here, out),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(sub) = item {
                        collect_unknown(sub, &format!("{here}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "lengths {} vs {}, first difference at byte {at}",
        a.len(),
        b.len()
    )
}

/// Decodes `bytes` as `name` through the descriptor, failing on any unknown field.
fn decode_known(bytes: &[u8], name: &str) -> Result<DynamicMessage, String> {
    let dynamic = DynamicMessage::decode(descriptor(name), bytes)
        .map_err(|e| format!("decode as {name}: {e}"))?;
    let mut unknown = Vec::new();
    collect_unknown(&dynamic, name, &mut unknown);
    if !unknown.is_empty() {
        let shown: Vec<_> = unknown.iter().take(5).collect();
        return Err(format!(
            "{} unknown field(s), e.g. {shown:?}",
            unknown.len()
        ));
    }
    Ok(dynamic)
}

/// Decodes the file at `path` as the message `T` (named `name` in the schema) both ways, and
/// returns what went wrong, if anything.
fn check<T: Message + Default>(path: &Path, name: &str) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("read: {e}"))?;
    let dynamic = decode_known(&bytes, name)?;
    let again = dynamic.encode_to_vec();
    if again != bytes {
        return Err(format!(
            "descriptor re-encoding differs: {}",
            first_difference(&bytes, &again)
        ));
    }
    let typed = T::decode(bytes.as_slice()).map_err(|e| format!("decode typed {name}: {e}"))?;
    let again = typed.encode_to_vec();
    if again != bytes {
        return Err(format!(
            "typed re-encoding differs: {}",
            first_difference(&bytes, &again)
        ));
    }
    Ok(())
}

/// Runs `check` over `files`, failing with every problem at once; returns how many passed.
fn check_all<T: Message + Default>(files: &[PathBuf], name: &str) -> usize {
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            check::<T>(path, name)
                .err()
                .map(|e| format!("{}: {e}", path.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} files fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
}

#[test]
fn prototxt_expected_pb_files_decode_losslessly() {
    let dir = conformance_dir().join("prototxt");
    let kinds = fs::read_to_string(dir.join("kind.txt")).expect("prototxt/kind.txt");
    let (mut nets, mut solvers) = (Vec::new(), Vec::new());
    for line in kinds.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(name), Some(kind), None) = (words.next(), words.next(), words.next()) else {
            panic!("kind.txt line {line:?} is not `<name> <kind>`");
        };
        let pb = dir.join(format!("{name}.expected.pb"));
        assert!(pb.is_file(), "{} is missing", pb.display());
        match kind {
            "net" => nets.push(pb),
            "solver" => solvers.push(pb),
            other => panic!("kind.txt: unknown kind {other:?} for {name}"),
        }
    }
    let listed = nets.len() + solvers.len();
    let on_disk = entries(&dir)
        .iter()
        .filter(|p| file_name(p).ends_with(".expected.pb"))
        .count();
    assert_eq!(listed, on_disk, "kind.txt must name every .expected.pb");

    let n = check_all::<proto::NetParameter>(&nets, "NetParameter");
    let s = check_all::<proto::SolverParameter>(&solvers, "SolverParameter");
    assert!(
        n > 0 && s > 0,
        "no nets or no solvers found in {}",
        dir.display()
    );
    println!("checked {n} NetParameter and {s} SolverParameter files");
}

#[test]
fn layer_case_weights_decode_losslessly() {
    // segnet_* weights are in the fork's numbering (upsample_param = 137, ...), which
    // collides with BVLC's; they are read through a remapping, not this schema directly.
    let files: Vec<PathBuf> = entries(&conformance_dir().join("layers"))
        .into_iter()
        .filter(|case| !file_name(case).starts_with("segnet_"))
        .map(|case| case.join("weights.caffemodel"))
        .filter(|weights| weights.is_file())
        .collect();
    assert!(!files.is_empty(), "no layers/*/weights.caffemodel found");
    let n = check_all::<proto::NetParameter>(&files, "NetParameter");
    println!("checked {n} layer weights files");
}

#[test]
fn solver_case_caffemodels_decode_losslessly() {
    let mut files = Vec::new();
    for case in entries(&conformance_dir().join("solvers")) {
        if case.is_dir() {
            files.extend(
                entries(&case)
                    .into_iter()
                    .filter(|p| file_name(p).ends_with(".caffemodel")),
            );
        }
    }
    assert!(!files.is_empty(), "no solvers/*/*.caffemodel found");
    let n = check_all::<proto::NetParameter>(&files, "NetParameter");
    println!("checked {n} solver caffemodels");
}

#[test]
fn resume_solverstates_decode_losslessly() {
    let mut files = Vec::new();
    for case in entries(&conformance_dir().join("solvers")) {
        if file_name(&case).starts_with("resume_") {
            files.extend(
                entries(&case)
                    .into_iter()
                    .filter(|p| file_name(p).ends_with(".solverstate")),
            );
        }
    }
    assert!(!files.is_empty(), "no solvers/resume_*/*.solverstate found");
    let n = check_all::<proto::SolverState>(&files, "SolverState");
    println!("checked {n} solverstates");
}

/// The fork-side facts (BNParameter, UpsampleParameter, LossParameter's class weights) checked
/// against weights written in the fork's own numbering: each file is detected as SegNet and,
/// once renumbered per the table (`crema::upgrade::segnet_to_crema`), every field is known and
/// the SegNet settings of the case nets read back.
#[test]
fn segnet_weights_decode_after_renumbering() {
    let dir = conformance_dir().join("layers");
    let cases: Vec<PathBuf> = entries(&dir)
        .into_iter()
        .filter(|case| file_name(case).starts_with("segnet_"))
        .collect();
    assert!(!cases.is_empty(), "no layers/segnet_* cases found");
    let mut failures = Vec::new();
    let mut layers = Vec::new();
    for case in &cases {
        let path = case.join("weights.caffemodel");
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if upgrade::detect_dialect(&bytes) != upgrade::Dialect::SegNet {
            failures.push(format!("{}: not detected as SegNet numbering", path.display()));
            continue;
        }
        let renumbered = match upgrade::segnet_to_crema(&bytes, &path.display().to_string()) {
            Ok(renumbered) => renumbered,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        // Renumbering can leave fields out of number order, so compare messages, not bytes.
        let typed = proto::NetParameter::decode(renumbered.as_slice());
        match (decode_known(&renumbered, "NetParameter"), typed) {
            (Err(e), _) => failures.push(format!("{}: {e}", path.display())),
            (_, Err(e)) => failures.push(format!("{}: typed decode: {e}", path.display())),
            (Ok(dynamic), Ok(typed)) => {
                let via_descriptor: proto::NetParameter =
                    dynamic.transcode_to().expect("transcode");
                if via_descriptor != typed {
                    failures.push(format!(
                        "{}: descriptor and typed decodes differ",
                        path.display()
                    ));
                }
                layers.extend(typed.layer);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let find = |ty: &str| {
        layers
            .iter()
            .find(|l| l.r#type() == ty)
            .unwrap_or_else(|| panic!("a {ty} layer"))
    };
    let bn = find("BN").bn_param.as_ref().expect("bn_param");
    assert_eq!(bn.scale_filler.as_ref().map(|f| f.value()), Some(1.0));
    assert_eq!(bn.shift_filler.as_ref().map(|f| f.value()), Some(0.001));
    let up = find("Upsample")
        .upsample_param
        .as_ref()
        .expect("upsample_param");
    assert_eq!((up.scale(), up.upsample_h(), up.upsample_w()), (2, 7, 9));
    let loss = find("SoftmaxWithLoss")
        .loss_param
        .as_ref()
        .expect("loss_param");
    assert!(loss.weight_by_label_freqs());
    assert_eq!(loss.class_weighting, [0.3, 1.7, 2.5]);
    assert_eq!(loss.ignore_label(), 3);
    println!("checked {} SegNet-format weights files", cases.len());
}

/// Every message the schema promises, so a dropped one is noticed.
#[test]
fn schema_has_every_message() {
    let names = [
        "BlobShape",
        "BlobProto",
        "BlobProtoVector",
        "Datum",
        "FillerParameter",
        "NetParameter",
        "SolverParameter",
        "SolverState",
        "NetState",
        "NetStateRule",
        "ParamSpec",
        "LayerParameter",
        "TransformationParameter",
        "LossParameter",
        "AccuracyParameter",
        "ArgMaxParameter",
        "ClipParameter",
        "ConcatParameter",
        "BatchNormParameter",
        "BiasParameter",
        "ContrastiveLossParameter",
        "ConvolutionParameter",
        "CropParameter",
        "DataParameter",
        "DropoutParameter",
        "DummyDataParameter",
        "EltwiseParameter",
        "ELUParameter",
        "EmbedParameter",
        "ExpParameter",
        "FlattenParameter",
        "HDF5DataParameter",
        "HDF5OutputParameter",
        "HingeLossParameter",
        "ImageDataParameter",
        "InfogainLossParameter",
        "InnerProductParameter",
        "InputParameter",
        "LogParameter",
        "LRNParameter",
        "MemoryDataParameter",
        "MVNParameter",
        "ParameterParameter",
        "PoolingParameter",
        "PowerParameter",
        "PythonParameter",
        "RecurrentParameter",
        "ReductionParameter",
        "ReLUParameter",
        "ReshapeParameter",
        "ScaleParameter",
        "SigmoidParameter",
        "SliceParameter",
        "SoftmaxParameter",
        "SwishParameter",
        "TanHParameter",
        "TileParameter",
        "ThresholdParameter",
        "WindowDataParameter",
        "SPPParameter",
        "PReLUParameter",
        "V1LayerParameter",
        "V0LayerParameter",
        "BNParameter",
        "UpsampleParameter",
        "DenseImageDataParameter",
    ];
    for name in names {
        descriptor(name);
    }
    assert!(pool().get_enum_by_name("caffe.Phase").is_some());
}

/// The numbers where BVLC and SegNet disagree, as the table atop caffe.proto records them.
#[test]
fn dialect_collisions_resolved_as_documented() {
    let number = |message: &str, field: &str| {
        descriptor(message)
            .get_field_by_name(field)
            .unwrap_or_else(|| panic!("{message}.{field} exists"))
            .number()
    };
    // BVLC keeps its numbers.
    assert_eq!(number("LayerParameter", "embed_param"), 137);
    assert_eq!(number("LayerParameter", "tile_param"), 138);
    assert_eq!(number("LossParameter", "normalization"), 3);
    assert_eq!(number("DropoutParameter", "dropout_ratio"), 1);
    // SegNet fields: the fork's number where BVLC leaves it free, else a high one.
    assert_eq!(number("LayerParameter", "bn_param"), 45);
    assert_eq!(number("LayerParameter", "upsample_param"), 1137);
    assert_eq!(number("LayerParameter", "dense_image_data_param"), 1138);
    assert_eq!(number("LossParameter", "weight_by_label_freqs"), 1003);
    assert_eq!(number("LossParameter", "class_weighting"), 4);
    assert_eq!(number("DropoutParameter", "sample_weights_test"), 2);
    let layer_type = pool()
        .get_enum_by_name("caffe.V1LayerParameter.LayerType")
        .expect("LayerType");
    assert_eq!(
        layer_type.get_value_by_name("BN").map(|v| v.number()),
        Some(43)
    );
}

/// proto2 defaults that layer and solver code read through the generated accessors.
#[test]
fn defaults_match_caffe() {
    use proto::*;

    let filler = FillerParameter::default();
    assert_eq!(filler.r#type(), "constant");
    assert_eq!(
        (filler.value(), filler.min(), filler.max()),
        (0.0, 0.0, 1.0)
    );
    assert_eq!(
        (filler.mean(), filler.std(), filler.sparse()),
        (0.0, 1.0, -1)
    );
    assert_eq!(
        filler.variance_norm(),
        filler_parameter::VarianceNorm::FanIn
    );

    let param = ParamSpec::default();
    assert_eq!((param.lr_mult(), param.decay_mult()), (1.0, 1.0));
    assert_eq!(param.share_mode(), param_spec::DimCheckMode::Strict);

    assert_eq!(NetState::default().phase(), Phase::Test);
    assert!(!NetParameter::default().force_backward());

    let conv = ConvolutionParameter::default();
    assert!(conv.bias_term());
    assert_eq!(
        (conv.group(), conv.axis(), conv.pad_h(), conv.pad_w()),
        (1, 1, 0, 0)
    );
    assert_eq!(conv.engine(), convolution_parameter::Engine::Default);
    assert!(conv.pad.is_empty() && conv.stride.is_empty() && conv.dilation.is_empty());

    let pool = PoolingParameter::default();
    assert_eq!(pool.pool(), pooling_parameter::PoolMethod::Max);
    assert_eq!((pool.stride(), pool.pad(), pool.kernel_size()), (1, 0, 0));
    assert!(!pool.global_pooling());
    assert_eq!(pool.round_mode(), pooling_parameter::RoundMode::Ceil);

    let ip = InnerProductParameter::default();
    assert!(ip.bias_term() && !ip.transpose());
    assert_eq!(ip.axis(), 1);

    let bn = BatchNormParameter::default();
    assert_eq!((bn.eps(), bn.moving_average_fraction()), (1e-5, 0.999));
    assert!(
        bn.use_global_stats.is_none(),
        "use_global_stats has no default: unset means by phase"
    );

    let scale = ScaleParameter::default();
    assert_eq!(
        (scale.axis(), scale.num_axes(), scale.bias_term()),
        (1, 1, false)
    );
    let bias = BiasParameter::default();
    assert_eq!((bias.axis(), bias.num_axes()), (1, 1));

    let loss = LossParameter::default();
    assert_eq!(
        loss.normalization(),
        loss_parameter::NormalizationMode::Valid
    );
    assert!(loss.normalize.is_none() && loss.ignore_label.is_none());
    assert!(!loss.weight_by_label_freqs() && loss.class_weighting.is_empty());

    let dropout = DropoutParameter::default();
    assert_eq!(dropout.dropout_ratio(), 0.5);
    assert!(!dropout.sample_weights_test());

    assert_eq!(ReLuParameter::default().negative_slope(), 0.0);
    assert_eq!(EluParameter::default().alpha(), 1.0);
    assert_eq!(SwishParameter::default().beta(), 1.0);
    assert_eq!(ThresholdParameter::default().threshold(), 0.0);
    assert_eq!(SoftmaxParameter::default().axis(), 1);
    assert_eq!(ConcatParameter::default().axis(), 1);
    assert_eq!(SliceParameter::default().axis(), 1);
    let flatten = FlattenParameter::default();
    assert_eq!((flatten.axis(), flatten.end_axis()), (1, -1));
    let reshape = ReshapeParameter::default();
    assert_eq!((reshape.axis(), reshape.num_axes()), (0, -1));
    assert_eq!(CropParameter::default().axis(), 2);
    let tile = TileParameter::default();
    assert_eq!((tile.axis(), tile.tiles()), (1, 0));
    let reduction = ReductionParameter::default();
    assert_eq!(reduction.operation(), reduction_parameter::ReductionOp::Sum);
    assert_eq!((reduction.axis(), reduction.coeff()), (0, 1.0));
    let eltwise = EltwiseParameter::default();
    assert_eq!(eltwise.operation(), eltwise_parameter::EltwiseOp::Sum);
    assert!(eltwise.stable_prod_grad());
    let argmax = ArgMaxParameter::default();
    assert_eq!((argmax.out_max_val(), argmax.top_k()), (false, 1));
    assert!(argmax.axis.is_none());
    let accuracy = AccuracyParameter::default();
    assert_eq!((accuracy.top_k(), accuracy.axis()), (1, 1));
    let power = PowerParameter::default();
    assert_eq!(
        (power.power(), power.scale(), power.shift()),
        (1.0, 1.0, 0.0)
    );
    let exp = ExpParameter::default();
    assert_eq!((exp.base(), exp.scale(), exp.shift()), (-1.0, 1.0, 0.0));
    let log = LogParameter::default();
    assert_eq!((log.base(), log.scale(), log.shift()), (-1.0, 1.0, 0.0));
    let lrn = LrnParameter::default();
    assert_eq!(
        (lrn.local_size(), lrn.alpha(), lrn.beta(), lrn.k()),
        (5, 1.0, 0.75, 1.0)
    );
    assert_eq!(lrn.norm_region(), lrn_parameter::NormRegion::AcrossChannels);
    let mvn = MvnParameter::default();
    assert!(mvn.normalize_variance() && !mvn.across_channels());
    assert_eq!(mvn.eps(), 1e-9);
    assert!(!PReLuParameter::default().channel_shared());
    let contrastive = ContrastiveLossParameter::default();
    assert_eq!(
        (contrastive.margin(), contrastive.legacy_version()),
        (1.0, false)
    );
    assert_eq!(
        HingeLossParameter::default().norm(),
        hinge_loss_parameter::Norm::L1
    );
    let transform = TransformationParameter::default();
    assert_eq!(
        (transform.scale(), transform.mirror(), transform.crop_size()),
        (1.0, false, 0)
    );
    let data = DataParameter::default();
    assert_eq!(data.backend(), data_parameter::Db::Leveldb);
    assert_eq!((data.prefetch(), data.rand_skip()), (4, 0));
    assert_eq!(ImageDataParameter::default().batch_size(), 1);
    assert!(ImageDataParameter::default().is_color());
    assert_eq!(WindowDataParameter::default().crop_mode(), "warp");
    assert_eq!(PythonParameter::default().param_str(), "");

    let solver = SolverParameter::default();
    assert_eq!(solver.lr_policy(), "", "Caffe gives lr_policy no default");
    assert_eq!(
        (solver.momentum(), solver.weight_decay(), solver.gamma()),
        (0.0, 0.0, 0.0)
    );
    assert!(solver.momentum.is_none() && solver.base_lr.is_none());
    assert_eq!(solver.r#type(), "SGD");
    assert_eq!(solver.solver_type(), solver_parameter::SolverType::Sgd);
    assert_eq!(solver.regularization_type(), "L2");
    assert_eq!(
        (solver.delta(), solver.momentum2(), solver.rms_decay()),
        (1e-8, 0.999, 0.99)
    );
    assert_eq!((solver.clip_gradients(), solver.random_seed()), (-1.0, -1));
    assert_eq!(
        (
            solver.average_loss(),
            solver.iter_size(),
            solver.test_interval()
        ),
        (1, 1, 0)
    );
    assert!(
        solver.test_initialization() && solver.snapshot_after_train() && solver.layer_wise_reduce()
    );
    assert_eq!(
        solver.snapshot_format(),
        solver_parameter::SnapshotFormat::Binaryproto
    );
    assert_eq!(solver.solver_mode(), solver_parameter::SolverMode::Gpu);
    assert_eq!(SolverState::default().current_step(), 0);

    let v0 = V0LayerParameter::default();
    assert!(v0.biasterm());
    assert_eq!((v0.group(), v0.stride(), v0.concat_dim()), (1, 1, 1));
    assert_eq!((v0.det_fg_threshold(), v0.det_fg_fraction()), (0.5, 0.25));
    assert_eq!(v0.det_crop_mode(), "warp");

    let bn = BnParameter::default();
    assert_eq!(bn.bn_mode(), bn_parameter::BnMode::Learn);
    let upsample = UpsampleParameter::default();
    assert_eq!(upsample.scale(), 2);
    assert!(!upsample.pad_out_h() && !upsample.pad_out_w());
    assert!(upsample.upsample_h.is_none() && upsample.upsample_w.is_none());
    let dense = DenseImageDataParameter::default();
    assert!(dense.is_color() && !dense.shuffle() && !dense.mirror());
    assert_eq!(
        (dense.crop_width(), dense.crop_height(), dense.new_height()),
        (0, 0, 0)
    );
}
