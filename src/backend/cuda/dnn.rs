//! cuDNN convolutions: descriptors per shape, algorithms chosen once per shape by timing the
//! candidates cuDNN's heuristics list (`cudnnGetConvolution*Algorithm_v7`) on the GPU, run with
//! the device's shared workspace.
//!
//! Choice rules: among the candidates that ran, those whose workspace fits in half the free
//! memory (and in [`super::CudaOptions::workspace_limit`] where set); in strict FP32 only FMA
//! arithmetic and no FFT or Winograd transforms (their rounding is not that of a direct sum of
//! products, which is what a comparison with the CPU expects);
//! never a math type that converts FP32 data to FP16 (`CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION`);
//! then, by default, the fastest deterministic one (reproducible gradients: where cuDNN has none
//! for a shape, its pass runs as im2col + GEMM, which is), or ([`ConvAlgorithms::Fastest`]) the
//! fastest, deterministic or not, where results within 2% of that one's time count as equally
//! fast and the one needing the least workspace wins. A shape with no usable algorithm is
//! remembered as such and the caller takes the im2col + GEMM path instead.
//!
//! The timings are those of the GPU as it is: work that other threads queue on the same stream
//! meanwhile (one device shared by threads, as in the test binaries) falls inside them, so a
//! choice made under such load may differ from one made alone. Either choice computes the
//! same convolution; under the default policy, both are deterministic.

use super::cudnn_api::{status_text, AlgoPerf, DataAlgo, Determinism, FilterAlgo, FwdAlgo, Math, Status};
use super::cudnn_api::Api;
use super::device::Device;
use super::ConvAlgorithms;
use crate::backend::ConvSpec;
use crate::{Error, Result};
use cudarc::cudnn::sys as d;
use cudarc::driver::sys::CUstream;
use std::collections::HashMap;
use std::ffi::c_void;

/// The three convolution passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    Forward,
    BackwardData,
    BackwardFilter,
}

#[derive(Clone, Copy, Debug)]
enum Algo {
    Fwd(FwdAlgo),
    Data(DataAlgo),
    Filter(FilterAlgo),
}

impl Algo {
    /// Whether cudarc's bindings name this algorithm (a newer cuDNN may list others).
    fn known(self) -> bool {
        match self {
            Algo::Fwd(a) => a.known().is_some(),
            Algo::Data(a) => a.known().is_some(),
            Algo::Filter(a) => a.known().is_some(),
        }
    }
}

/// The algorithm chosen for one pass of one shape.
#[derive(Clone, Copy, Debug)]
struct Choice {
    algo: Algo,
    math: Math,
    workspace: usize,
    deterministic: bool,
    /// This algorithm's time as the search measured it, in ms.
    time_ms: f32,
    /// The fastest usable algorithm whatever its determinism, its time, and whether it is
    /// deterministic, where that is not this one (what preferring reproducible gradients, or
    /// less workspace, costs).
    fastest: Option<(Algo, f32, bool)>,
}

/// The descriptors of one shape and what was chosen for each pass (`Some(None)`: measured, and
/// nothing usable).
struct Plan {
    x: Desc<d::cudnnTensorDescriptor_t>,
    y: Desc<d::cudnnTensorDescriptor_t>,
    w: Desc<d::cudnnFilterDescriptor_t>,
    conv: Desc<d::cudnnConvolutionDescriptor_t>,
    chosen: [Option<Option<Choice>>; 3],
    /// Per pass, where nothing was usable: what cuDNN answered (for logs and errors).
    refused: [String; 3],
}

/// A cuDNN descriptor, destroyed on drop.
struct Desc<T: Copy> {
    raw: T,
    destroy: unsafe extern "C" fn(T) -> Status,
}

impl<T: Copy> Drop for Desc<T> {
    fn drop(&mut self) {
        // SAFETY: created once by the matching create call, destroyed once.
        let _ = unsafe { (self.destroy)(self.raw) };
    }
}

/// The cuDNN handle of a device and its plans (used under the device's lock).
pub(crate) struct Dnn {
    api: &'static Api,
    handle: d::cudnnHandle_t,
    plans: HashMap<ConvSpec, Plan>,
    /// Convolution passes queued (for [`super::Activity`]).
    calls: u64,
    /// Algorithm searches made, and the wall time they took, in seconds.
    searches: (u64, f64),
}

// SAFETY: the handle and descriptors are used by one thread at a time (under a Mutex) with the
// context bound.
unsafe impl Send for Dnn {}

/// Whether cuDNN takes this geometry: 1 to 3 spatial axes, sizes within `int`.
pub(crate) fn supports(spec: &ConvSpec) -> bool {
    let nd = spec.kernel.len();
    let fits = |v: usize| v <= i32::MAX as usize;
    (1..=3).contains(&nd)
        && spec.group > 0
        && [spec.channels, spec.out_channels, spec.group].into_iter().chain(spec.in_shape.iter().copied()).all(fits)
        && spec.kernel.iter().chain(&spec.stride).chain(&spec.pad).chain(&spec.dilation).all(|&v| fits(v))
}

impl Dnn {
    /// A handle queued on `stream`.
    pub fn new(stream: CUstream) -> Result<Dnn> {
        let api = Api::get()?;
        let mut handle: d::cudnnHandle_t = std::ptr::null_mut();
        let created = {
            let _one_at_a_time = super::device::handles_lock();
            // SAFETY: a valid out-pointer.
            unsafe { (api.create)(&mut handle) }
        };
        check(created).map_err(|e| dnn_err("cudnnCreate", e))?;
        let dnn = Dnn { api, handle, plans: HashMap::new(), calls: 0, searches: (0, 0.0) };
        // SAFETY: a live handle and our live stream (the same C type under two names).
        check(unsafe { (api.set_stream)(handle, stream as d::cudaStream_t) }).map_err(|e| dnn_err("cudnnSetStream", e))?;
        Ok(dnn)
    }

    /// Runs one pass for `spec` (whose `num` cuDNN's 32-bit sizes can take) on device addresses:
    /// forward `y = conv(x, w)`, backward data `x = conv^T(y, w)` (both overwrite), backward
    /// filter `w += corr(x, y)`. Returns `false`, having done nothing, when cuDNN has no usable
    /// algorithm for the shape.
    pub fn run(&mut self, dev: &Device, pass: Pass, spec: &ConvSpec, x: u64, w: u64, y: u64) -> Result<bool> {
        if !self.plans.contains_key(spec) {
            let plan = self.plan(spec)?;
            self.plans.insert(spec.clone(), plan);
        }
        let (api, handle) = (self.api, self.handle);
        let plan = self.plans.get_mut(spec).ok_or_else(|| Error::Internal("cuDNN plan vanished".into()))?;
        let slot = pass as usize;
        let what = || format!("cuDNN convolution {pass:?} ({})", shape(spec));
        let mut searched_again = false;
        loop {
            let choice = match plan.chosen[slot] {
                Some(c) => c,
                None => {
                    let started = std::time::Instant::now();
                    let (c, refused) = find(dev, api, handle, plan, pass, spec, Buffers { x, w, y })?;
                    self.searches.0 += 1;
                    self.searches.1 += started.elapsed().as_secs_f64();
                    plan.chosen[slot] = Some(c);
                    plan.refused[slot] = refused;
                    c
                }
            };
            let Some(choice) = choice else { return Ok(false) };
            // SAFETY: a live descriptor.
            check(unsafe { (api.set_math_type)(plan.conv.raw, choice.math) }).map_err(|e| dnn_err(&what(), e))?;
            // The lock is held until the pass is queued: another thread growing the workspace in
            // between would queue the free of this memory ahead of the pass.
            let mut shared = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
            let ws = match shared.get(dev, choice.workspace) {
                Ok(ws) => ws,
                // The memory free at the search is taken since (by this net or another): the
                // shape is searched again, within what is free now; if even that choice finds no
                // room, this pass runs as im2col + GEMM.
                Err(Error::OutOfMemory { .. }) if !searched_again => {
                    drop(shared);
                    plan.chosen[slot] = None;
                    searched_again = true;
                    continue;
                }
                Err(Error::OutOfMemory { .. }) => return Ok(false),
                Err(e) => return Err(e),
            };
            // SAFETY: descriptors describe the buffers at these addresses, whose extents the
            // caller checked; the workspace holds at least `choice.workspace` bytes; the
            // workspace lock is released after queueing, which is safe because every later use
            // is queued on the same stream.
            let status = unsafe { execute(api, handle, plan, choice.algo, Buffers { x, w, y }, ws, choice.workspace) };
            drop(shared);
            check(status).map_err(|e| Error::Cuda { what: format!("{} with {:?} on GPU {}", what(), choice.algo, dev.ordinal), detail: status_text(e) })?;
            self.calls += 1;
            return Ok(true);
        }
    }

    /// Per pass (forward, backward data, backward filter): the measured times of the
    /// algorithms chosen, summed over the shapes seen, and the same sum with the fastest
    /// usable algorithm of each (deterministic or not), in ms.
    pub fn measured_times(&self) -> [(f64, f64); 3] {
        let mut sums = [(0.0, 0.0); 3];
        for plan in self.plans.values() {
            for (sum, c) in sums.iter_mut().zip(&plan.chosen) {
                if let Some(Some(c)) = c {
                    sum.0 += c.time_ms as f64;
                    sum.1 += c.fastest.map_or(c.time_ms, |f| f.1.min(c.time_ms)) as f64;
                }
            }
        }
        sums
    }

    /// Convolution passes queued so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Algorithm searches made so far (one per shape and pass), and the seconds they took.
    pub fn searches(&self) -> (u64, f64) {
        self.searches
    }

    /// What was chosen so far, one line per shape and pass (for logs and tests).
    pub fn describe_choices(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (spec, plan) in &self.plans {
            let passes = [Pass::Forward, Pass::BackwardData, Pass::BackwardFilter];
            for ((pass, c), refused) in passes.iter().zip(&plan.chosen).zip(&plan.refused) {
                match c {
                    Some(Some(c)) => out.push(format!(
                        "{} {pass:?}: {:?}, {:?}, {} bytes of workspace{}, {:.3} ms measured{}",
                        shape(spec),
                        c.algo,
                        c.math,
                        c.workspace,
                        if c.deterministic { "" } else { ", non-deterministic" },
                        c.time_ms,
                        match c.fastest {
                            Some((a, t, det)) => format!(" (fastest: {a:?}{}, {t:.3} ms)", if det { "" } else { ", non-deterministic" }),
                            None => String::new(),
                        }
                    )),
                    Some(None) => out.push(format!("{} {pass:?}: no cuDNN algorithm ({refused}), im2col + GEMM", shape(spec))),
                    None => {}
                }
            }
        }
        out.sort();
        out
    }

    fn plan(&self, spec: &ConvSpec) -> Result<Plan> {
        let what = format!("describing a convolution to cuDNN ({})", shape(spec));
        let e = |err| Error::Cuda { what: what.clone(), detail: status_text(err) };
        let api = self.api;
        let int = |v: usize| v as i32;
        // One spatial axis is described as two (height 1), which cuDNN's 2-d kernels take.
        let pad1 = |v: &[usize], fill: usize| -> Vec<i32> {
            if v.len() == 1 { vec![int(fill), int(v[0])] } else { v.iter().map(|&a| int(a)).collect() }
        };
        let (in_sp, out_sp, k) = (pad1(&spec.in_shape, 1), pad1(&spec.out_shape, 1), pad1(&spec.kernel, 1));
        let (stride, pad, dil) = (pad1(&spec.stride, 1), pad1(&spec.pad, 0), pad1(&spec.dilation, 1));
        let dims = |c: usize, sp: &[i32]| -> Vec<i32> { [int(spec.num), int(c)].into_iter().chain(sp.iter().copied()).collect() };
        let (xd, yd) = (dims(spec.channels, &in_sp), dims(spec.out_channels, &out_sp));
        let wd: Vec<i32> = [int(spec.out_channels), int(spec.channels / spec.group)].into_iter().chain(k.iter().copied()).collect();
        let x = tensor(api, &xd).map_err(e)?;
        let y = tensor(api, &yd).map_err(e)?;
        let w = Desc { raw: create(api.create_filter).map_err(e)?, destroy: api.destroy_filter };
        let conv = Desc { raw: create(api.create_conv).map_err(e)?, destroy: api.destroy_conv };
        // SAFETY: live descriptors; every array has the length passed with it.
        unsafe {
            check((api.set_filter_nd)(w.raw, d::cudnnDataType_t::CUDNN_DATA_FLOAT, d::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW, wd.len() as i32, wd.as_ptr())).map_err(e)?;
            check((api.set_conv_nd)(conv.raw, k.len() as i32, pad.as_ptr(), stride.as_ptr(), dil.as_ptr(), d::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION, d::cudnnDataType_t::CUDNN_DATA_FLOAT)).map_err(e)?;
            check((api.set_group_count)(conv.raw, int(spec.group))).map_err(e)?;
            let mut out = vec![0i32; yd.len()];
            check((api.forward_output_dim)(conv.raw, x.raw, w.raw, out.len() as i32, out.as_mut_ptr())).map_err(e)?;
            if out != yd {
                return Err(Error::Cuda { what, detail: format!("cuDNN computes an output of {out:?}, the layer expects {yd:?}") });
            }
        }
        Ok(Plan { x, y, w, conv, chosen: [None, None, None], refused: Default::default() })
    }
}

impl Drop for Dnn {
    fn drop(&mut self) {
        self.plans.clear();
        let _one_at_a_time = super::device::handles_lock();
        // SAFETY: created once, destroyed once, after its descriptors.
        let _ = unsafe { (self.api.destroy)(self.handle) };
    }
}

/// `Err(status)` unless cuDNN answered success.
fn check(status: Status) -> std::result::Result<(), Status> {
    if status == Status::SUCCESS { Ok(()) } else { Err(status) }
}

/// A new descriptor from one of cuDNN's create functions.
fn create<T>(f: unsafe extern "C" fn(*mut T) -> Status) -> std::result::Result<T, Status> {
    let mut raw = std::mem::MaybeUninit::<T>::uninit();
    // SAFETY: a valid out-pointer; on success cuDNN has written the descriptor.
    check(unsafe { f(raw.as_mut_ptr()) })?;
    // SAFETY: written by the successful call above.
    Ok(unsafe { raw.assume_init() })
}

fn tensor(api: &Api, dims: &[i32]) -> std::result::Result<Desc<d::cudnnTensorDescriptor_t>, Status> {
    let desc = Desc { raw: create(api.create_tensor)?, destroy: api.destroy_tensor };
    let mut strides = vec![1i32; dims.len()];
    for i in (0..dims.len() - 1).rev() {
        strides[i] = strides[i + 1].saturating_mul(dims[i + 1]);
    }
    // SAFETY: a live descriptor; both arrays have `dims.len()` entries.
    check(unsafe { (api.set_tensor_nd)(desc.raw, d::cudnnDataType_t::CUDNN_DATA_FLOAT, dims.len() as i32, dims.as_ptr(), strides.as_ptr()) })?;
    Ok(desc)
}

/// One candidate algorithm, whatever the pass: what cuDNN's heuristics said of it, and what
/// timing it found.
struct Perf {
    algo: Algo,
    /// The heuristics' status, or what cuDNN answered when it was run.
    status: Status,
    memory: usize,
    deterministic: bool,
    math: Math,
    /// The fastest of [`REPEATS`] timed runs, in ms (infinite: not timed).
    time_ms: f32,
}

/// The buffers of one pass, as the caller passes them to [`Dnn::run`].
#[derive(Clone, Copy)]
struct Buffers {
    x: u64,
    w: u64,
    y: u64,
}

/// Whether the algorithm ran when timed.
fn ran(p: &Perf) -> bool {
    p.status == Status::SUCCESS && p.time_ms.is_finite()
}

/// Whether strict FP32 refuses a candidate: tensor-op math (TF32 for float data), an FFT or
/// Winograd transform, or an algorithm or math type cudarc's bindings do not name (a newer
/// cuDNN's, whose arithmetic crema cannot vouch for). Any other candidate runs under
/// CUDNN_FMA_MATH there, whatever math type the heuristics named.
fn fp32_refuses(p: &Perf) -> bool {
    use d::cudnnMathType_t as M;
    !matches!(p.math.known(), Some(M::CUDNN_DEFAULT_MATH | M::CUDNN_FMA_MATH)) || !p.algo.known() || transforms(p.algo)
}

/// Whether the precision refuses a candidate's arithmetic: in strict FP32 as [`fp32_refuses`]
/// says; with TF32 allowed, a math type that converts the FP32 data to FP16
/// (`CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION`: narrower range and precision than TF32).
fn math_refused(p: &Perf, strict: bool) -> bool {
    if strict {
        fp32_refuses(p)
    } else {
        p.math.known() == Some(d::cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
    }
}

/// Chooses the algorithm of `pass` for the plan's shape (see the module docs): cuDNN's
/// heuristics list the candidates, and crema times each one it could use on the GPU, with the
/// pass's own buffers. Where none is usable, says what each candidate came to.
///
/// crema times the algorithms itself rather than through `cudnnFind*Algorithm`: on an H200
/// (cuDNN 9.19) with the test suite's threads sharing the GPU, one such search in a few runs
/// answered `CUDNN_STATUS_INTERNAL_ERROR` for every algorithm, for shapes that succeeded in every
/// other run; cuDNN's search also took memory of its own (14.7 GB at the lung SegNet's first
/// step, where crema's peak was 5.1 GB), which nothing bounded or counted. Here the search runs
/// the same calls a training step does, in memory crema allocates and counts.
fn find(dev: &Device, api: &Api, handle: d::cudnnHandle_t, plan: &Plan, pass: Pass, spec: &ConvSpec, bufs: Buffers) -> Result<(Option<Choice>, String)> {
    let _exclusive = super::device::EXCLUSIVE.write().unwrap_or_else(|p| p.into_inner());
    // The heuristics list only the kernels the descriptor's math type allows: TF32 tensor cores
    // permitted (CUDNN_DEFAULT_MATH) or FMA kernels only (CUDNN_FMA_MATH, strict FP32). It is set
    // here for each search (the timing sets each candidate's, and `run` the pass's choice): an
    // earlier pass's FMA choice must not hide every tensor-op algorithm from this pass's search.
    let math = Math::from(if dev.tf32() { d::cudnnMathType_t::CUDNN_DEFAULT_MATH } else { d::cudnnMathType_t::CUDNN_FMA_MATH });
    let (free, _) = cudarc::driver::result::mem_get_info().unwrap_or((usize::MAX, 0));
    let limit = free / 2 + dev.workspace.lock().map(|w| w.capacity()).unwrap_or(0);
    let mut limit = dev.options.workspace_limit.map_or(limit, |cap| cap.min(limit));
    let strict = !dev.tf32();
    let mut searches = 0;
    let mut perfs = loop {
        searches += 1;
        set_math(api, plan, math, pass, spec)?;
        let mut perfs = match heuristics(api, handle, plan, pass) {
            Ok(p) => p,
            // Unsupported shapes are the GEMM path's job; anything else is an error. (BAD_PARAM
            // is not "unsupported": cuDNN returns it for a call that is wrong, e.g. descriptors
            // that do not describe one convolution, which must not pass silently as an im2col
            // fallback.)
            Err(e) if e.class() == Status::NOT_SUPPORTED => return Ok((None, format!("cuDNN answered {}", status_text(e)))),
            // A failure inside cuDNN (e.g. CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
            // is asked again, as a failed search is.
            Err(e) if matches!(e.class(), Status::INTERNAL_ERROR | Status::EXECUTION_FAILED) && searches < SEARCHES => continue,
            Err(e) => {
                return Err(Error::Cuda {
                    what: format!("asking cuDNN's heuristics for {pass:?} algorithms ({}) on GPU {}", shape(spec), dev.ordinal),
                    detail: format!("{}; CREMA_CONV_ENGINE=im2col runs convolutions without cuDNN", status_text(e)),
                })
            }
        };
        limit = time_candidates(dev, api, handle, plan, pass, spec, bufs, &mut perfs, limit)?;
        // A search in which every candidate failed inside cuDNN is repeated, up to SEARCHES
        // times in all, before the shape goes to im2col + GEMM for good (its outputs are
        // overwritten by the pass that follows, so repeating it is safe).
        if !failed_search(&perfs) || searches >= SEARCHES {
            break perfs;
        }
    };
    // The candidates that ran, fastest first, then the others in the heuristics' order.
    perfs.sort_by(|a, b| ran(b).cmp(&ran(a)).then(a.time_ms.total_cmp(&b.time_ms)));
    let ok = |p: &Perf| p.status == Status::SUCCESS;
    let usable = |p: &Perf| ran(p) && p.memory <= limit && !math_refused(p, strict);
    let choice = choose(&perfs, usable, dev.options.algorithms);
    let refused = if choice.is_some() {
        String::new()
    } else if perfs.is_empty() {
        "cuDNN's heuristics listed no algorithm".to_string()
    } else if failed_search(&perfs) {
        let each: Vec<String> = perfs.iter().map(|p| format!("{:?}: {:?}", p.algo, p.status)).collect();
        format!("every algorithm tried failed in {searches} searches; the last: {}", each.join("; "))
    } else {
        let why = |p: &Perf| {
            if !ok(p) {
                format!("{:?}", p.status)
            } else if p.memory > limit {
                format!("needs {} bytes of workspace, over the limit of {limit}", p.memory)
            } else if math_refused(p, strict) {
                format!("{:?}{}", p.math, if transforms(p.algo) { ", a transform" } else { "" })
            } else if !ran(p) {
                "not timed".to_string()
            } else {
                "non-deterministic (`--conv-algorithms fastest` would take it)".to_string()
            }
        };
        let each: Vec<String> = perfs.iter().map(|p| format!("{:?}: {}", p.algo, why(p))).collect();
        format!("{}{}", if strict { "strict FP32 takes FMA arithmetic, no transforms; " } else { "" }, each.join("; "))
    };
    Ok((choice, refused))
}

/// cuDNN's candidates for `pass` (`cudnnGetConvolution*Algorithm_v7`), untimed, in the order of
/// its heuristics.
fn heuristics(api: &Api, handle: d::cudnnHandle_t, plan: &Plan, pass: Pass) -> std::result::Result<Vec<Perf>, Status> {
    // As many results as cuDNN says it may list (at least 16, the sum of cuDNN 9's algorithms
    // with and without tensor ops for the pass with most; at most 1,024).
    let max_count = match pass {
        Pass::Forward => api.max_count_forward,
        Pass::BackwardData => api.max_count_backward_data,
        Pass::BackwardFilter => api.max_count_backward_filter,
    };
    let mut max = 0i32;
    // SAFETY: a live handle and a valid out-pointer.
    let asked = max_count.is_some_and(|f| check(unsafe { f(handle, &mut max) }).is_ok());
    let n = if asked { (max.max(0) as usize).clamp(16, 1024) } else { 16 };
    let mut count = 0i32;
    // SAFETY (all three): live handle and descriptors; `perf` holds n results, of which cuDNN
    // fills `count`; every field of a result is a plain number, whatever value cuDNN writes.
    let listed: Vec<(Algo, AlgoPerf<()>)> = unsafe {
        match pass {
            Pass::Forward => {
                let mut perf = vec![AlgoPerf::empty(FwdAlgo(0)); n];
                check((api.heuristics_forward)(handle, plan.x.raw, plan.w.raw, plan.conv.raw, plan.y.raw, n as i32, &mut count, perf.as_mut_ptr()))?;
                perf.iter().map(|p| (Algo::Fwd(p.algo), p.untyped())).collect()
            }
            Pass::BackwardData => {
                let mut perf = vec![AlgoPerf::empty(DataAlgo(0)); n];
                check((api.heuristics_backward_data)(handle, plan.w.raw, plan.y.raw, plan.conv.raw, plan.x.raw, n as i32, &mut count, perf.as_mut_ptr()))?;
                perf.iter().map(|p| (Algo::Data(p.algo), p.untyped())).collect()
            }
            Pass::BackwardFilter => {
                let mut perf = vec![AlgoPerf::empty(FilterAlgo(0)); n];
                check((api.heuristics_backward_filter)(handle, plan.x.raw, plan.y.raw, plan.conv.raw, plan.w.raw, n as i32, &mut count, perf.as_mut_ptr()))?;
                perf.iter().map(|p| (Algo::Filter(p.algo), p.untyped())).collect()
            }
        }
    };
    let deterministic = Determinism::from(d::cudnnDeterminism_t::CUDNN_DETERMINISTIC);
    Ok(listed
        .into_iter()
        .take((count.max(0) as usize).min(n))
        .map(|(algo, p)| Perf { algo, status: p.status, memory: p.memory, deterministic: p.determinism == deterministic, math: p.math, time_ms: f32::INFINITY })
        .collect())
}

/// Timed runs of each candidate, after one untimed run (first calls may load or compile).
const REPEATS: usize = 3;

/// Times every candidate in `perfs` that the heuristics say runs, whose workspace (as cuDNN
/// gives it for the math the candidate runs under) is within `limit` and, in strict FP32, that
/// uses FMA arithmetic and no transform: sets its time, or the status cuDNN answered. Forward
/// and backward data write the pass's output, which the pass then overwrites; backward filter,
/// which adds to the net's gradient, adds to a scratch filter instead. A workspace larger than
/// the shared one is allocated for the search alone. Returns the limit kept to: lower than
/// `limit` where the device had no room for the largest candidate's workspace.
#[allow(clippy::too_many_arguments)]
fn time_candidates(dev: &Device, api: &Api, handle: d::cudnnHandle_t, plan: &Plan, pass: Pass, spec: &ConvSpec, bufs: Buffers, perfs: &mut [Perf], mut limit: usize) -> Result<usize> {
    let strict = !dev.tf32();
    let take = |p: &Perf, limit: usize| {
        p.status == Status::SUCCESS && p.memory <= limit && !math_refused(p, strict)
    };
    // What each candidate needs with the math it runs under (strict FP32 runs every one under
    // CUDNN_FMA_MATH, whose kernels may need other workspace than the heuristics' figure).
    for p in perfs.iter_mut().filter(|p| take(p, limit)) {
        let math = if strict { Math::from(d::cudnnMathType_t::CUDNN_FMA_MATH) } else { p.math };
        set_math(api, plan, math, pass, spec)?;
        match workspace_size(api, handle, plan, p.algo) {
            Ok(bytes) => (p.memory, p.math) = (p.memory.max(bytes), math),
            Err(status) => p.status = status,
        }
    }
    let Some(need) = perfs.iter().filter(|p| take(p, limit)).map(|p| p.memory).max() else { return Ok(limit) };
    let shared = dev.workspace.lock().unwrap_or_else(|p| p.into_inner());
    let filter_room = if pass == Pass::BackwardFilter { (spec.weight_len() * std::mem::size_of::<f32>()).next_multiple_of(256) } else { 0 };
    // The workspaces the shared one cannot hold, smallest first: the largest that the device
    // has room for is allocated for the search, and the candidates needing more are not timed.
    let mut sizes: Vec<usize> = perfs.iter().filter(|p| take(p, limit)).map(|p| p.memory).filter(|&m| m > shared.capacity()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (temp, own) = loop {
        let own = sizes.last().copied().unwrap_or(0);
        match dev.alloc_temp(filter_room + own) {
            Ok(t) => break (t, own),
            Err(Error::OutOfMemory { .. }) if own > 0 => {
                sizes.pop();
            }
            Err(e) => return Err(e),
        }
    };
    if need > shared.capacity() && own < need {
        limit = own.max(shared.capacity());
    }
    let ws = if own > 0 { temp.ptr() + filter_room as u64 } else { shared.ptr() };
    let out = Buffers { w: if pass == Pass::BackwardFilter { temp.ptr() } else { bufs.w }, ..bufs };
    let timer = dev.timer(REPEATS + 1)?;
    for p in perfs.iter_mut().filter(|p| take(p, limit)) {
        set_math(api, plan, p.math, pass, spec)?;
        let mut status = Status::SUCCESS;
        for r in 0..=REPEATS {
            // SAFETY: the buffers are the pass's own (or scratch of the filter's size), the
            // workspace holds at least `p.memory` bytes (the shared one is held under its lock).
            // Backward filter adds to its (zero-filled) scratch, as the pass adds to the
            // gradient: the very call the pass makes.
            status = unsafe { execute(api, handle, plan, p.algo, out, ws, p.memory) };
            if status != Status::SUCCESS {
                break;
            }
            timer.record(r)?;
        }
        if status != Status::SUCCESS {
            p.status = status;
            continue;
        }
        timer.wait(REPEATS)?;
        let mut best = f32::INFINITY;
        for r in 1..=REPEATS {
            best = best.min(timer.elapsed(r - 1, r)?);
        }
        p.time_ms = best;
    }
    Ok(limit)
}

/// Sets the convolution descriptor's math type.
fn set_math(api: &Api, plan: &Plan, math: Math, pass: Pass, spec: &ConvSpec) -> Result<()> {
    // SAFETY: a live descriptor.
    check(unsafe { (api.set_math_type)(plan.conv.raw, math) })
        .map_err(|e| Error::Cuda { what: format!("cudnnSetConvolutionMathType for {pass:?} ({})", shape(spec)), detail: status_text(e) })
}

/// The workspace `algo` needs for the plan's shape under the descriptor's math type.
fn workspace_size(api: &Api, handle: d::cudnnHandle_t, plan: &Plan, algo: Algo) -> std::result::Result<usize, Status> {
    let mut bytes = 0usize;
    // SAFETY: live handle and descriptors, a valid out-pointer.
    check(unsafe {
        match algo {
            Algo::Fwd(a) => (api.workspace_forward)(handle, plan.x.raw, plan.w.raw, plan.conv.raw, plan.y.raw, a, &mut bytes),
            Algo::Data(a) => (api.workspace_backward_data)(handle, plan.w.raw, plan.y.raw, plan.conv.raw, plan.x.raw, a, &mut bytes),
            Algo::Filter(a) => (api.workspace_backward_filter)(handle, plan.x.raw, plan.y.raw, plan.conv.raw, plan.w.raw, a, &mut bytes),
        }
    })?;
    Ok(bytes)
}

/// Queues one pass with `algo`: forward and backward data overwrite their output; backward
/// filter adds to it (the net's gradient, or the search's scratch).
///
/// # Safety
/// The plan's descriptors describe the buffers at these addresses; `ws` holds at least
/// `ws_bytes` bytes, which `algo` needs at most.
unsafe fn execute(api: &Api, handle: d::cudnnHandle_t, plan: &Plan, algo: Algo, b: Buffers, ws: u64, ws_bytes: usize) -> Status {
    let (one, zero) = (1.0f32, 0.0f32);
    let (alpha, over, add) = (&one as *const f32 as *const c_void, &zero as *const f32 as *const c_void, &one as *const f32 as *const c_void);
    let (xp, wp, yp, wsp) = (b.x as *mut c_void, b.w as *mut c_void, b.y as *mut c_void, ws as *mut c_void);
    // SAFETY: as the caller promises; alpha and beta point at floats that outlive the call.
    unsafe {
        match algo {
            Algo::Fwd(a) => (api.forward)(handle, alpha, plan.x.raw, xp, plan.w.raw, wp, plan.conv.raw, a, wsp, ws_bytes, over, plan.y.raw, yp),
            Algo::Data(a) => (api.backward_data)(handle, alpha, plan.w.raw, wp, plan.y.raw, yp, plan.conv.raw, a, wsp, ws_bytes, over, plan.x.raw, xp),
            Algo::Filter(a) => (api.backward_filter)(handle, alpha, plan.x.raw, xp, plan.y.raw, yp, plan.conv.raw, a, wsp, ws_bytes, add, plan.w.raw, wp),
        }
    }
}

/// How many times one shape's pass is searched at most, where every candidate fails.
const SEARCHES: usize = 3;


/// Whether no candidate ran and at least one failed inside cuDNN (rather than being merely
/// unsupported for the shape): a search worth repeating.
fn failed_search(perfs: &[Perf]) -> bool {
    !perfs.iter().any(ran) && perfs.iter().any(|p| matches!(p.status.class(), Status::INTERNAL_ERROR | Status::EXECUTION_FAILED))
}

/// Times within this fraction of the best are taken as equal: one algorithm's times vary by a
/// few percent from search to search.
const TIME_TIE: f32 = 0.02;

/// The choice among the timed candidates (fastest first) under `policy`, with the fastest usable
/// result where that is not the one chosen. Of the results the policy allows, those within
/// [`TIME_TIE`] of the fastest of them count as equally fast, and the one needing the least
/// workspace is taken: the workspace is part of the device memory a net needs.
fn choose(perfs: &[Perf], usable: impl Fn(&Perf) -> bool, policy: ConvAlgorithms) -> Option<Choice> {
    let usable: Vec<&Perf> = perfs.iter().filter(|p| usable(p)).collect();
    let fastest = usable.first().copied();
    // The deterministic policy takes none where no usable result is deterministic: the pass
    // then runs as im2col + GEMM, which is.
    let deterministic_only = policy == ConvAlgorithms::Deterministic;
    let allowed = || usable.iter().copied().filter(|p| !deterministic_only || p.deterministic);
    let best = allowed().map(|p| p.time_ms).fold(f32::INFINITY, f32::min);
    // The least workspace among the equally fast; of equal workspace, the faster.
    let pick = allowed()
        .filter(|p| p.time_ms <= best + best.abs() * TIME_TIE)
        .min_by(|a, b| a.memory.cmp(&b.memory).then(a.time_ms.total_cmp(&b.time_ms)))?;
    Some(Choice {
        algo: pick.algo,
        math: pick.math,
        workspace: pick.memory,
        deterministic: pick.deterministic,
        time_ms: pick.time_ms,
        fastest: fastest.filter(|f| !std::ptr::eq(*f, pick)).map(|f| (f.algo, f.time_ms, f.deterministic)),
    })
}

/// Whether an algorithm computes through FFT or Winograd transforms.
fn transforms(a: Algo) -> bool {
    use d::cudnnConvolutionBwdDataAlgo_t as D;
    use d::cudnnConvolutionBwdFilterAlgo_t as W;
    use d::cudnnConvolutionFwdAlgo_t as F;
    match a {
        Algo::Fwd(a) => matches!(
            a.known(),
            Some(
                F::CUDNN_CONVOLUTION_FWD_ALGO_FFT
                | F::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING
                | F::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD
                | F::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED
            )
        ),
        Algo::Data(a) => matches!(
            a.known(),
            Some(
                D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT
                | D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING
                | D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD
                | D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED
            )
        ),
        Algo::Filter(a) => matches!(
            a.known(),
            Some(
                W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT
                | W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING
                | W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD
                | W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED
            )
        ),
    }
}

/// "n=6 c=64 -> 64, 256x256, kernel 3x3, stride 1x1, pad 1x1, dilation 1x1, group 1".
fn shape(s: &ConvSpec) -> String {
    let j = |v: &[usize]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("x");
    format!(
        "n={} c={} -> {}, {} -> {}, kernel {}, stride {}, pad {}, dilation {}, group {}",
        s.num,
        s.channels,
        s.out_channels,
        j(&s.in_shape),
        j(&s.out_shape),
        j(&s.kernel),
        j(&s.stride),
        j(&s.pad),
        j(&s.dilation),
        s.group
    )
}

fn dnn_err(call: &str, e: Status) -> Error {
    Error::Cuda { what: format!("calling {call}"), detail: status_text(e) }
}

/// cuDNN's version and the CUDA runtime it was built with, as cuDNN numbers them.
pub(crate) fn versions() -> Result<(usize, usize)> {
    let api = Api::get()?;
    // SAFETY: both take no arguments and only report numbers.
    Ok(unsafe { ((api.get_version)(), (api.get_cudart_version)()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use d::cudnnConvolutionBwdFilterAlgo_t as W;

    fn perf(algo: W, deterministic: bool, time_ms: f32) -> Perf {
        Perf { algo: Algo::Filter(algo.into()), status: Status::SUCCESS, memory: 0, deterministic, math: d::cudnnMathType_t::CUDNN_DEFAULT_MATH.into(), time_ms }
    }

    fn filter_of(a: Algo) -> Option<W> {
        match a {
            Algo::Filter(a) => a.known(),
            _ => None,
        }
    }

    fn filter_algo(c: &Choice) -> W {
        filter_of(c.algo).unwrap_or_else(|| panic!("{:?}", c.algo))
    }

    #[test]
    fn values_newer_than_the_bindings_are_numbers_not_undefined_behaviour() {
        // A heuristics result as a newer cuDNN might write it: an algorithm, status sub-code
        // and math type that cudarc's Rust enums lack (reading those into the enums would be
        // undefined behaviour).
        let mut perf = [AlgoPerf::empty(FwdAlgo(0)); 1];
        // SAFETY: AlgoPerf is plain integers and floats; these are the bytes cuDNN would write.
        unsafe {
            let base = perf.as_mut_ptr() as *mut u8;
            std::ptr::write_unaligned(base as *mut u32, 12);
            std::ptr::write_unaligned(base.add(4) as *mut u32, 3099);
            std::ptr::write_unaligned(base.add(std::mem::offset_of!(AlgoPerf<FwdAlgo>, math)) as *mut u32, 7);
        }
        let p = perf[0];
        assert_eq!((p.algo, p.status, p.math), (FwdAlgo(12), Status(3099), Math(7)));
        assert_eq!(format!("{:?}", p.algo), "FwdAlgo(12)");
        assert_eq!(format!("{:?}", p.math), "Math(7)");
        assert_eq!(format!("{:?}", FwdAlgo::from(d::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_FFT)), "CUDNN_CONVOLUTION_FWD_ALGO_FFT");
        assert!(format!("{:?}", p.status).contains("(3099)"));
        assert_eq!(p.status.class(), Status::NOT_SUPPORTED, "a new sub-code is still of its class");
        // Strict FP32 refuses what it cannot name: an unknown algorithm, or an unknown math type.
        let known = perf_fwd(d::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM.into(), Math::from(d::cudnnMathType_t::CUDNN_FMA_MATH));
        assert!(!fp32_refuses(&known));
        assert!(fp32_refuses(&Perf { algo: Algo::Fwd(FwdAlgo(12)), ..known }));
        assert!(fp32_refuses(&Perf { math: Math(7), ..known }));
    }

    fn perf_fwd(algo: FwdAlgo, math: Math) -> Perf {
        Perf { algo: Algo::Fwd(algo), status: Status::SUCCESS, memory: 0, deterministic: true, math, time_ms: 1.0 }
    }

    #[test]
    fn only_searches_where_every_algorithm_failed_inside_cudnn_are_repeated() {
        use d::cudnnStatus_t as S;
        let with = |statuses: &[S]| -> Vec<Perf> {
            statuses.iter().map(|&status| Perf { status: status.into(), ..perf(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, true, 1.0) }).collect()
        };
        assert!(failed_search(&with(&[S::CUDNN_STATUS_INTERNAL_ERROR, S::CUDNN_STATUS_NOT_SUPPORTED])));
        assert!(failed_search(&with(&[S::CUDNN_STATUS_INTERNAL_ERROR])));
        assert!(!failed_search(&with(&[S::CUDNN_STATUS_INTERNAL_ERROR, S::CUDNN_STATUS_SUCCESS])), "one algorithm ran");
        assert!(!failed_search(&with(&[S::CUDNN_STATUS_NOT_SUPPORTED])), "unsupported is an answer, not a failure");
        assert!(!failed_search(&[]), "nothing measured is not a failure to repeat");
    }

    #[test]
    fn with_tf32_allowed_only_a_conversion_to_fp16_is_refused() {
        use d::cudnnMathType_t as M;
        let with = |algo, math: M| Perf { math: math.into(), ..perf(algo, true, 1.0) };
        for math in [M::CUDNN_DEFAULT_MATH, M::CUDNN_TENSOR_OP_MATH, M::CUDNN_FMA_MATH] {
            assert!(!math_refused(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, math), false), "{math:?}");
        }
        assert!(math_refused(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, M::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION), false));
        assert!(math_refused(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, M::CUDNN_TENSOR_OP_MATH), true), "strict: fp32_refuses");
    }

    #[test]
    fn strict_fp32_refuses_tensor_ops_and_transforms_only() {
        use d::cudnnMathType_t as M;
        let with = |algo, math: M| Perf { math: math.into(), ..perf(algo, true, 1.0) };
        assert!(!fp32_refuses(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, M::CUDNN_FMA_MATH)));
        assert!(!fp32_refuses(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, M::CUDNN_DEFAULT_MATH)), "runs under FMA math");
        assert!(fp32_refuses(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, M::CUDNN_TENSOR_OP_MATH)));
        assert!(fp32_refuses(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, M::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)));
        assert!(fp32_refuses(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, M::CUDNN_FMA_MATH)));
        assert!(fp32_refuses(&with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, M::CUDNN_FMA_MATH)));
    }

    #[test]
    fn a_candidate_ran_only_when_it_succeeded_and_was_timed() {
        use d::cudnnStatus_t as S;
        let timed = perf(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, 0.5);
        assert!(ran(&timed));
        assert!(!ran(&Perf { time_ms: f32::INFINITY, ..perf(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, 0.5) }), "listed, never timed");
        assert!(!ran(&Perf { status: S::CUDNN_STATUS_EXECUTION_FAILED.into(), ..timed }));
        // Listed but untimed (over the limit) beside one that failed inside cuDNN: nothing ran.
        let untimed = Perf { time_ms: f32::INFINITY, ..perf(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, 0.0) };
        let failed = Perf { status: S::CUDNN_STATUS_EXECUTION_FAILED.into(), ..perf(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, 0.5) };
        assert!(failed_search(&[untimed, failed]));
    }

    #[test]
    fn the_policy_picks_among_the_usable_results() {
        // cuDNN's order: fastest first.
        let perfs = [
            perf(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, false, 1.0),
            perf(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, 1.5),
            perf(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, 2.0),
        ];
        let all = |_: &Perf| true;
        let det = choose(&perfs, all, ConvAlgorithms::Deterministic).unwrap();
        assert_eq!(filter_algo(&det), W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
        assert!(det.deterministic && det.time_ms == 1.5);
        assert!(matches!(det.fastest, Some((a, t, false)) if filter_of(a) == Some(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0) && t == 1.0));

        let fast = choose(&perfs, all, ConvAlgorithms::Fastest).unwrap();
        assert_eq!(filter_algo(&fast), W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
        assert!(!fast.deterministic && fast.fastest.is_none());

        // Unusable results are never chosen, whatever the policy; with no deterministic one
        // usable, the deterministic policy takes none (the pass runs as im2col + GEMM) and the
        // other the fastest.
        let not_algo_1 = |p: &Perf| !matches!(filter_of(p.algo), Some(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 | W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT));
        assert!(choose(&perfs, not_algo_1, ConvAlgorithms::Deterministic).is_none());
        let c = choose(&perfs, not_algo_1, ConvAlgorithms::Fastest).unwrap();
        assert_eq!(filter_algo(&c), W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
        assert!(c.fastest.is_none());
        for policy in [ConvAlgorithms::Deterministic, ConvAlgorithms::Fastest] {
            assert!(choose(&perfs, |_: &Perf| false, policy).is_none());
        }
    }

    #[test]
    fn of_equally_fast_results_the_one_with_least_workspace_is_chosen() {
        let with = |algo, deterministic, time_ms, memory| Perf { memory, ..perf(algo, deterministic, time_ms) };
        let perfs = [
            with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, 1.00, 300 << 20),
            with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, 1.015, 4 << 20),
            with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, true, 1.019, 1 << 20),
            with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, true, 1.03, 0),
        ];
        let c = choose(&perfs, |_: &Perf| true, ConvAlgorithms::Deterministic).unwrap();
        // Within 2% of 1.00: FFT, ALGO_1 and FFT_TILING; the least workspace of them. ALGO_3,
        // 3% slower, is not equally fast even though it needs none.
        assert_eq!(filter_algo(&c), W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING);
        assert_eq!(c.workspace, 1 << 20);
        // The fastest is deterministic: it lost on workspace alone.
        assert!(matches!(c.fastest, Some((a, _, true)) if filter_of(a) == Some(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT)));
        // A clear winner is kept whatever its workspace.
        let clear = [with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, 1.0, 300 << 20), with(W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, 1.5, 0)];
        let c = choose(&clear, |_: &Perf| true, ConvAlgorithms::Fastest).unwrap();
        assert_eq!(filter_algo(&c), W::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT);
    }
}
