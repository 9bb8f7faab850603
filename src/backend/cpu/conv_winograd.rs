//! Winograd F(4x4, 3x3) convolution for 3x3 stride-1 kernels: forward, and backward-data as
//! the forward convolution of `dy` with the flipped, transposed kernel.
//!
//! Tiles of 4x4 outputs are numbered image by image, row by row, in *half-groups* of up to 8
//! consecutive tiles of one tile row; two half-groups make a group of 16 lanes, `NR / 16`
//! groups one GEMM panel. For each of the 36 transform points ξ the products are one GEMM,
//! `M_ξ (K x tiles) = U_ξ (K x C) · V_ξ (C x tiles)`, run by the packed-GEMM microkernel on
//! operands the transforms write directly in packed form: `U` (`[K panel][ξ][c][MR]`),
//! `V` (`[ξ][tile panel][c][NR]`), `M` (`[ξ][k][tile]`).
//!
//! Which of U and V is computed once for the whole call depends on which is smaller:
//! - early layers (many tiles, few channels): all of U once, then work units over blocks of
//!   tile panels, each transforming its own input;
//! - deep layers (few tiles, many channels): all of V once, then units over blocks of
//!   output-channel panels, each transforming its own kernels;
//! - when neither fits the shared budget ([`Budgets`]), U block by block, units over tile
//!   blocks.
//!
//! Units run in parallel and each writes its own outputs in a fixed order of operations, so
//! results do not depend on the thread count.

use super::gemm_kernel::{kernel, Kernel};
use super::isa::Isa;
use super::winograd::scalar;
use rayon::prelude::*;
use std::cell::RefCell;

/// Scratch sizes, in bytes, that shape the blocking (tests shrink them to reach every case).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budgets {
    /// Transformed weights or input shared by all units of one forward call.
    pub shared: usize,
    /// A unit's own transformed input or weights.
    pub unit: usize,
    /// A unit's products before they are transformed back.
    pub m: usize,
    /// Backward-filter: `dU` (36 x output channels x input channels) held at once.
    pub du: usize,
    /// Backward-filter: transformed tiles (`Z` and `V`) per block of tiles.
    pub zv: usize,
    /// Backward-filter: `Z` and `V` of all tiles, when that fits (then no `dU` is kept).
    pub zv_all: usize,
}

impl Budgets {
    /// Sized by sweeps on SegNet's layers (the shared forward budget holds U or V of every
    /// SegNet layer whole; all-tiles backward-filter takes the 32x32 and 16x16 layers).
    pub const DEFAULT: Budgets = Budgets { shared: 10 << 20, unit: 256 << 10, m: 256 << 10, du: 10 << 20, zv: 4 << 20, zv_all: 12 << 20 };
}

/// One channel group of a 3x3, stride-1 convolution as the Winograd path sees it.
#[derive(Clone, Debug)]
pub(crate) struct Problem {
    pub num: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub k: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub ph: usize,
    pub pw: usize,
    /// Elements from one image to the next in `x` and in `y`.
    pub x_img: usize,
    pub y_img: usize,
}

/// Where kernel `(k, c)` lives: `g[i][j] = w[k·ks + c·cs + (3i + j)]`, or `8 - (3i + j)`
/// when `flip`.
pub(crate) struct Weights<'a> {
    pub w: &'a [f32],
    pub ks: usize,
    pub cs: usize,
    pub flip: bool,
}

/// Up to 8 consecutive tiles of one tile row: image `n`, tile row `ti`, tile columns
/// `tj0..tj0 + cnt` (`cnt == 0`: padding past the last tile).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Half {
    pub n: usize,
    pub ti: usize,
    pub tj0: usize,
    pub cnt: usize,
}

pub(crate) struct Tiling {
    th: usize,
    tw: usize,
    /// Half-groups per tile row.
    hpr: usize,
    pub halves: usize,
}

impl Tiling {
    pub fn new(p: &Problem) -> Self {
        let (th, tw) = (p.oh.div_ceil(4), p.ow.div_ceil(4));
        let hpr = tw.div_ceil(8);
        Tiling { th, tw, hpr, halves: p.num * th * hpr }
    }
    /// Groups of 16 tiles.
    pub fn groups(&self) -> usize {
        self.halves.div_ceil(2)
    }
    /// The two half-groups of group `g`.
    #[inline]
    pub fn group(&self, g: usize) -> [Half; 2] {
        [self.half(2 * g), self.half(2 * g + 1)]
    }
    #[inline]
    fn half(&self, i: usize) -> Half {
        if i >= self.halves {
            return Half::default();
        }
        let (n, r) = (i / (self.th * self.hpr), i % (self.th * self.hpr));
        let (ti, tj0) = (r / self.hpr, (r % self.hpr) * 8);
        Half { n, ti, tj0, cnt: 8.min(self.tw - tj0) }
    }
}

/// A buffer shared by parallel tasks that each write their own disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct Shared(pub *mut f32, pub usize);
impl Shared {
    /// The address of element `i` (a method, so that closures capture the whole `Shared`).
    #[inline]
    pub fn at(&self, i: usize) -> *mut f32 {
        debug_assert!(i < self.1);
        self.0.wrapping_add(i)
    }
}

// SAFETY: every use writes disjoint elements from different tasks (see each call site).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

thread_local! {
    /// Shared transformed weights or input of a call (on the calling thread).
    static SHARED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// One output-channel panel's kernels, copied compact before their transform.
    static WBUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A unit's own transformed input, its own transformed weights, and its products.
    static UNIT: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// `len` floats of scratch in `v`, growing it when needed, starting on a 64-byte boundary
/// (the allocator only promises 16: every vector access would straddle two cache lines).
pub(crate) fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    super::gemm::aligned(v, len)
}

/// The geometry of one call: kernel tile, panels and groups.
struct Geo {
    kern: Kernel,
    /// Bytes of products a unit transforms back at a time.
    m_budget: usize,
    mr: usize,
    nr: usize,
    /// Groups per tile panel.
    gpp: usize,
    /// Tile panels, output-channel panels.
    panels: usize,
    kpanels: usize,
}

impl Geo {
    /// Lanes of tile panel `tp` up to the last group that has tiles.
    fn lanes(&self, tl: &Tiling, tp: usize) -> usize {
        let groups = tl.groups();
        16 * groups.saturating_sub(tp * self.gpp).min(self.gpp)
    }
}

/// Where a unit finds V: shared for all panels, or its own (computed for its panels).
#[derive(Clone, Copy)]
enum Src<'a> {
    Shared(&'a [f32]),
    Own,
}

/// `y = conv3x3(x, w)` for one channel group (`y` overwritten).
pub(crate) fn forward(isa: Isa, p: &Problem, x: &[f32], wts: &Weights, y: &mut [f32]) {
    forward_with(isa, p, x, wts, y, &Budgets::DEFAULT)
}

/// [`forward`] with explicit scratch budgets.
pub(crate) fn forward_with(isa: Isa, p: &Problem, x: &[f32], wts: &Weights, y: &mut [f32], b: &Budgets) {
    assert!(p.num > 0 && y.len() >= (p.num - 1) * p.y_img + p.k * p.oh * p.ow, "winograd: y too short");
    assert!(x.len() >= (p.num - 1) * p.x_img + p.c * p.h * p.w, "winograd: x too short");
    assert!(wts.w.len() > (p.k.max(1) - 1) * wts.ks + (p.c.max(1) - 1) * wts.cs + 8, "winograd: w too short");
    if p.k == 0 || p.oh == 0 || p.ow == 0 {
        return;
    }
    let kern = kernel(isa);
    let (mr, nr) = (kern.mr, kern.nr);
    let tl = Tiling::new(p);
    let groups = tl.halves.div_ceil(2);
    let geo = Geo { kern, m_budget: b.m, mr, nr, gpp: nr / 16, panels: groups.div_ceil(nr / 16), kpanels: p.k.div_ceil(mr) };
    let c = p.c.max(1);
    let (u_all, v_all) = (36 * c * geo.kpanels * mr * 4, 36 * c * geo.panels * nr * 4);
    let threads = rayon::current_num_threads();
    let yp = Shared(y.as_mut_ptr(), y.len());
    SHARED.with(|sh| {
        let mut sh = sh.borrow_mut();
        if v_all <= b.shared && (v_all < u_all || u_all > b.shared) {
            // All of V once; units over blocks of output-channel panels.
            let v = grow(&mut sh, v_all / 4);
            input_all(isa, p, &tl, &geo, x, v);
            let v = &*v;
            let per = (b.unit / (36 * c * mr * 4)).clamp(1, geo.kpanels.div_ceil(2 * threads));
            let units = geo.kpanels.div_ceil(per);
            (0..units).into_par_iter().for_each(|i| {
                let (ka, kb) = (i * per, ((i + 1) * per).min(geo.kpanels));
                // SAFETY: this unit writes output channels of panels ka..kb only.
                unsafe { unit(isa, p, &tl, &geo, x, wts, Src::Shared(v), Src::Own, 0, geo.panels, ka, kb, yp) };
            });
        } else {
            // U block by block (one block when it fits); units over blocks of tile panels.
            let kper = geo.kpanels.div_ceil(u_all.div_ceil(b.shared));
            let kblocks = geo.kpanels.div_ceil(kper);
            let per = (b.unit / (36 * c * nr * 4)).clamp(1, geo.panels.div_ceil(2 * threads));
            let units = geo.panels.div_ceil(per);
            for kblk in 0..kblocks {
                let (ka, kb) = (kblk * kper, ((kblk + 1) * kper).min(geo.kpanels));
                let u = grow(&mut sh, 36 * c * (kb - ka) * mr);
                u.par_chunks_mut(36 * c * mr).enumerate().for_each(|(i, blk)| weights_panel(isa, p, wts, &geo, ka + i, blk));
                let u = &*u;
                (0..units).into_par_iter().for_each(|i| {
                    let (pa, pb) = (i * per, ((i + 1) * per).min(geo.panels));
                    // SAFETY: this unit writes the tiles of panels pa..pb only.
                    unsafe { unit(isa, p, &tl, &geo, x, wts, Src::Own, Src::Shared(u), pa, pb, ka, kb, yp) };
                });
            }
        }
    });
}

/// Transforms the input of every tile panel into `v` (`[ξ][panel][c][nr]`), in parallel over
/// channel ranges.
fn input_all(isa: Isa, p: &Problem, tl: &Tiling, geo: &Geo, x: &[f32], v: &mut [f32]) {
    let vp = Shared(v.as_mut_ptr(), v.len());
    let chunk = p.c.div_ceil(4 * rayon::current_num_threads()).max(1);
    (0..p.c.div_ceil(chunk)).into_par_iter().for_each(|i| {
        let (c0, c1) = (i * chunk, ((i + 1) * chunk).min(p.c));
        // SAFETY: tasks write disjoint channel ranges of every [ξ][panel] row of v.
        unsafe { input_stage(isa, p, tl, geo, x, c0, c1, 0, geo.panels, vp) };
    });
}

/// Transforms the kernels of output-channel panel `kp` into `blk` (`[ξ][c][mr]`).
fn weights_panel(isa: Isa, p: &Problem, wts: &Weights, geo: &Geo, kp: usize, blk: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 was detected (or chosen by a test among the available ISAs).
        Isa::Avx512 => unsafe { avx::weights_panel(p, wts, geo.mr, kp, blk) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA available, as above; the AVX2 kernel's mr is 6.
        Isa::Avx2 => unsafe { avx2::weights_panel(p, wts, geo.mr, kp, blk) },
        _ => weights_panel_scalar(p, wts, geo.mr, kp, blk),
    }
}

/// Input transform of channels `c0..c1` for tile panels `pa..pb` into `v`
/// (`[ξ][panel - pa][c][nr]`, `pb - pa` panels).
///
/// # Safety
/// `v` must hold `36 · (pb - pa) · c · nr` floats, with no other task writing these channels.
#[allow(clippy::too_many_arguments)]
unsafe fn input_stage(isa: Isa, p: &Problem, tl: &Tiling, geo: &Geo, x: &[f32], c0: usize, c1: usize, pa: usize, pb: usize, v: Shared) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 available; the rest forwarded.
        Isa::Avx512 => unsafe { avx::input_stage(p, tl, geo, x, c0, c1, pa, pb, v) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA available; the rest forwarded.
        Isa::Avx2 => unsafe { avx2::input_stage(p, tl, geo, x, c0, c1, pa, pb, v) },
        // SAFETY: forwarded.
        _ => unsafe { input_stage_scalar(p, tl, geo, x, c0, c1, pa, pb, v) },
    }
}

/// One work unit: tile panels `pa..pb`, output-channel panels `ka..kb`. `v` is the shared
/// transformed input of all panels or `Own` (computed here for `pa..pb`); `u` the shared
/// weights of panels from `ka` on, or `Own`.
///
/// # Safety
/// No other unit may write output channels of panels `ka..kb` in tiles of panels `pa..pb`.
#[allow(clippy::too_many_arguments)]
unsafe fn unit(
    isa: Isa,
    p: &Problem,
    tl: &Tiling,
    geo: &Geo,
    x: &[f32],
    wts: &Weights,
    v: Src,
    u: Src,
    pa: usize,
    pb: usize,
    ka: usize,
    kb: usize,
    y: Shared,
) {
    let (mr, nr, c) = (geo.mr, geo.nr, p.c);
    UNIT.with(|s| {
        let mut s = s.borrow_mut();
        let (vown, uown, mbuf) = &mut *s;
        // V rows start at panel `v0` of a buffer of `vnp` panels; U panels at `ka`.
        let (v, v0, vnp): (&[f32], usize, usize) = match v {
            Src::Shared(v) => (v, 0, geo.panels),
            Src::Own => {
                let buf = grow(vown, 36 * c * (pb - pa) * nr);
                // SAFETY: the buffer is this unit's own and holds (pb - pa) panels.
                unsafe { input_stage(isa, p, tl, geo, x, 0, c, pa, pb, Shared(buf.as_mut_ptr(), buf.len())) };
                (&*buf, pa, pb - pa)
            }
        };
        let u: &[f32] = match u {
            Src::Shared(u) => u,
            Src::Own => {
                let buf = grow(uown, 36 * c * (kb - ka) * mr);
                for (i, blk) in buf.chunks_mut(36 * c * mr).enumerate() {
                    weights_panel(isa, p, wts, geo, ka + i, blk);
                }
                &*buf
            }
        };
        // Products in chunks of tile panels x output-channel panels that fit the budget.
        let per_tile_panel = 36 * nr * 4;
        let kc = (geo.m_budget / (per_tile_panel * mr)).clamp(1, kb - ka);
        let tc = (geo.m_budget / (per_tile_panel * kc * mr)).clamp(1, pb - pa);
        for k0 in (ka..kb).step_by(kc) {
            let k1 = (k0 + kc).min(kb);
            for t0 in (pa..pb).step_by(tc) {
                let t1 = (t0 + tc).min(pb);
                let (kloc, tw) = ((k1 - k0) * mr, (t1 - t0) * nr);
                let m = grow(mbuf, 36 * kloc * tw);
                for xi in 0..36 {
                    for tp in t0..t1 {
                        let b = v[((xi * vnp + tp - v0) * c) * nr..].as_ptr();
                        // A panel whose tiles fill only its first 16 lanes needs half the work.
                        let run = geo.kern.for_cols(geo.lanes(tl, tp));
                        for kp in k0..k1 {
                            let a = u[(((kp - ka) * 36 + xi) * c) * mr..].as_ptr();
                            let cm = m[(xi * kloc + (kp - k0) * mr) * tw + (tp - t0) * nr..].as_mut_ptr();
                            // SAFETY: the panels hold c x mr and c x nr floats; m has room
                            // for the whole mr x nr tile at row stride tw.
                            unsafe { run(c, a, b, cm, tw, 1.0, 0.0, mr, nr) };
                        }
                    }
                }
                let (ks, ke) = (k0 * mr, (k1 * mr).min(p.k));
                // SAFETY: this unit owns channels ks..ke of the tiles of panels t0..t1.
                unsafe { output_stage(isa, p, tl, geo, m, k0 * mr, kloc, ks, ke, t0, t1, y) };
            }
        }
    });
}

/// Output transform of channels `ks..ke` for tile panels `t0..t1` from products `m`
/// (`[ξ][k - kbase][tile]`, `kloc` rows per ξ).
///
/// # Safety
/// The caller owns these outputs of `y`.
#[allow(clippy::too_many_arguments)]
unsafe fn output_stage(isa: Isa, p: &Problem, tl: &Tiling, geo: &Geo, m: &[f32], kbase: usize, kloc: usize, ks: usize, ke: usize, t0: usize, t1: usize, y: Shared) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 available; the rest forwarded.
        Isa::Avx512 => unsafe { avx::output_stage(p, tl, geo, m, kbase, kloc, ks, ke, t0, t1, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA available; the rest forwarded.
        Isa::Avx2 => unsafe { avx2::output_stage(p, tl, geo, m, kbase, kloc, ks, ke, t0, t1, y) },
        // SAFETY: forwarded.
        _ => unsafe { output_stage_scalar(p, tl, geo, m, kbase, kloc, ks, ke, t0, t1, y) },
    }
}

/// Calls `f` with the kernels of output-channel panel `kp` (`rows` output channels, from 0)
/// copied compact into this thread's scratch. The panel's kernels are `rows` long runs
/// (forward: one per output channel) or many short ones (backward-data: one per input
/// channel); the vector stages gather from them all at once, too many streams for the
/// hardware prefetcher, so they are first copied, run by run, into a compact local block
/// (gathered from L2 after that).
fn with_compact_panel(p: &Problem, wts: &Weights, mr: usize, kp: usize, f: impl FnOnce(&Weights, usize)) {
    let rows = mr.min(p.k - kp * mr);
    let k0 = kp * mr * wts.ks;
    let (runs, run_len, run_step, in_run) =
        if wts.cs <= wts.ks { (rows, (p.c - 1) * wts.cs + 9, wts.ks, wts.cs) } else { (p.c, (rows - 1) * wts.ks + 9, wts.cs, wts.ks) };
    WBUF.with(|wb| {
        let mut wb = wb.borrow_mut();
        let local = grow(&mut wb, runs * run_len);
        for r in 0..runs {
            local[r * run_len..(r + 1) * run_len].copy_from_slice(&wts.w[k0 + r * run_step..k0 + r * run_step + run_len]);
        }
        // Element (kl, c, t) of the panel: local[kl·lks + c·lcs + t].
        let (lks, lcs) = if wts.cs <= wts.ks { (run_len, in_run) } else { (in_run, run_len) };
        f(&Weights { w: local, ks: lks, cs: lcs, flip: wts.flip }, rows);
    });
}

fn weights_panel_scalar(p: &Problem, wts: &Weights, mr: usize, kp: usize, blk: &mut [f32]) {
    blk.fill(0.0);
    for l in 0..mr.min(p.k - kp * mr) {
        for c in 0..p.c {
            let base = (kp * mr + l) * wts.ks + c * wts.cs;
            let g: [[f32; 3]; 3] =
                std::array::from_fn(|i| std::array::from_fn(|j| wts.w[base + if wts.flip { 8 - (3 * i + j) } else { 3 * i + j }]));
            let mut u = [0.0; 36];
            scalar::weight_tile(&g, &mut u);
            for (xi, v) in u.iter().enumerate() {
                blk[(xi * p.c + c) * mr + l] = *v;
            }
        }
    }
}

/// See [`input_stage`].
///
/// # Safety
/// See [`input_stage`].
#[allow(clippy::too_many_arguments)]
unsafe fn input_stage_scalar(p: &Problem, tl: &Tiling, geo: &Geo, x: &[f32], c0: usize, c1: usize, pa: usize, pb: usize, v: Shared) {
    let np = pb - pa;
    for c in c0..c1 {
        for gi in pa * geo.gpp..pb * geo.gpp {
            let (tp, off) = (gi / geo.gpp - pa, (gi % geo.gpp) * 16);
            for (hi, h) in tl.group(gi).iter().enumerate() {
                for j in 0..8 {
                    let d = gather_tile(p, c, h, j, x);
                    let mut out = [0.0; 36];
                    scalar::input_tile(&d, &mut out);
                    for (xi, val) in out.iter().enumerate() {
                        let o = ((xi * np + tp) * p.c + c) * geo.nr + off + hi * 8 + j;
                        debug_assert!(o < v.1);
                        // SAFETY: o is inside v (36·np·c·nr floats); channel c is ours.
                        unsafe { *v.0.add(o) = *val };
                    }
                }
            }
        }
    }
}

/// The 6x6 input tile of channel `c` under tile `j` of half-group `h` (zeros past the
/// image, and for `j >= h.cnt`).
pub(crate) fn gather_tile(p: &Problem, c: usize, h: &Half, j: usize, x: &[f32]) -> [[f32; 6]; 6] {
    let mut d = [[0.0f32; 6]; 6];
    if j < h.cnt {
        let plane = h.n * p.x_img + c * p.h * p.w;
        for (r, dr) in d.iter_mut().enumerate() {
            let ih = (4 * h.ti + r) as isize - p.ph as isize;
            if ih < 0 || ih >= p.h as isize {
                continue;
            }
            for (s, ds) in dr.iter_mut().enumerate() {
                let iw = (4 * (h.tj0 + j) + s) as isize - p.pw as isize;
                if iw >= 0 && iw < p.w as isize {
                    *ds = x[plane + ih as usize * p.w + iw as usize];
                }
            }
        }
    }
    d
}

/// See [`output_stage`].
///
/// # Safety
/// See [`output_stage`].
#[allow(clippy::too_many_arguments)]
unsafe fn output_stage_scalar(p: &Problem, tl: &Tiling, geo: &Geo, m: &[f32], kbase: usize, kloc: usize, ks: usize, ke: usize, t0: usize, t1: usize, y: Shared) {
    let tw = (t1 - t0) * geo.nr;
    for k in ks..ke {
        for gi in t0 * geo.gpp..t1 * geo.gpp {
            for (hi, h) in tl.group(gi).iter().enumerate() {
                for j in 0..h.cnt {
                    let lane = (gi - t0 * geo.gpp) * 16 + hi * 8 + j;
                    let mm: [f32; 36] = std::array::from_fn(|xi| m[(xi * kloc + k - kbase) * tw + lane]);
                    let mut t = [[0.0; 4]; 4];
                    scalar::output_tile(&mm, &mut t);
                    let plane = h.n * p.y_img + k * p.oh * p.ow;
                    for (r, tr) in t.iter().enumerate().take(p.oh - 4 * h.ti) {
                        for (s, ts) in tr.iter().enumerate().take(p.ow - 4 * (h.tj0 + j)) {
                            let i = plane + (4 * h.ti + r) * p.ow + 4 * (h.tj0 + j) + s;
                            debug_assert!(i < y.1);
                            // SAFETY: i is inside y (forward checks its length); ours to write.
                            unsafe { *y.0.add(i) = *ts };
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "conv_winograd_avx2.rs"]
pub(crate) mod avx2;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx {
    //! AVX-512 stages: a half-group's six input columns are stride-4 phases of one
    //! contiguous input row, pulled out with two-source permutes; output rows are the
    //! reverse interleave.
    use super::*;
    use crate::backend::cpu::winograd::avx512::{input_tile, output_tile, transpose16, weight_tile};
    use std::arch::x86_64::*;

    /// Lanes `lo..hi` of a 16-bit mask.
    #[inline(always)]
    pub(crate) fn span(lo: isize, hi: isize) -> u16 {
        let (lo, hi) = (lo.clamp(0, 16) as u32, hi.clamp(0, 16) as u32);
        if hi <= lo { 0 } else { (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16 }
    }

    /// Row elements `start..start + 16`, zero outside `0..w`.
    ///
    /// # Safety
    /// `row` points at a row of `w` readable floats.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    pub(crate) unsafe fn load_row(row: *const f32, start: isize, w: usize) -> __m512 {
        let m = span(-start, w as isize - start);
        // SAFETY: only lanes inside 0..w are read (masked-off lanes do not access memory).
        unsafe { _mm512_maskz_loadu_ps(m, row.wrapping_offset(start)) }
    }

    /// See [`super::weights_panel`]: sixteen input channels per vector, gathered from one
    /// kernel row at a time (the rows are read front to back); a 16x16 transpose per ξ turns
    /// the panel's output channels into the packed lanes.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn weights_panel(p: &Problem, wts: &Weights, mr: usize, kp: usize, blk: &mut [f32]) {
        // SAFETY: forwarded (AVX-512F).
        with_compact_panel(p, wts, mr, kp, |local, rows| unsafe { weights_from(p, local, mr, rows, blk) });
    }

    /// [`weights_panel`] on the panel's kernels, `rows` output channels from 0 in `wts`.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn weights_from(p: &Problem, wts: &Weights, mr: usize, rows: usize, blk: &mut [f32]) {
        let kmask = span(0, mr as isize);
        let step = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(wts.cs as i32));
        let mut stage = [[_mm512_setzero_ps(); 36]; 16];
        for c0 in (0..p.c).step_by(16) {
            let lanes = 16.min(p.c - c0);
            let cmask = span(0, lanes as isize);
            for (kl, st) in stage.iter_mut().enumerate().take(rows) {
                let base = kl * wts.ks + c0 * wts.cs;
                assert!(base + (lanes - 1) * wts.cs + 9 <= wts.w.len());
                let mut g = [[_mm512_setzero_ps(); 3]; 3];
                for t in 0..9 {
                    let src = if wts.flip { 8 - t } else { t };
                    // SAFETY: the gathered lanes (< lanes) read w[base + l·cs + src], inside
                    // w (checked above).
                    g[t / 3][t % 3] =
                        unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), cmask, step, wts.w.as_ptr().add(base + src)) };
                }
                weight_tile(&g, st);
            }
            for xi in 0..36 {
                let r: [__m512; 16] = std::array::from_fn(|kl| if kl < rows { stage[kl][xi] } else { _mm512_setzero_ps() });
                let cols = transpose16(&r);
                let o = (xi * p.c + c0) * mr;
                assert!(o + lanes * mr <= blk.len());
                for (cl, col) in cols.iter().enumerate().take(lanes) {
                    // SAFETY: mr floats at o + cl·mr, inside blk (checked above).
                    unsafe { _mm512_mask_storeu_ps(blk.as_mut_ptr().add(o + cl * mr), kmask, *col) };
                }
            }
        }
    }

    /// `idx[s][l] = 4 (l mod 8) + s`: phase `s` of 32 floats, in both halves of a vector.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    pub(crate) fn phase_idx() -> [__m512i; 4] {
        std::array::from_fn(|s| _mm512_add_epi32(_mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28), _mm512_set1_epi32(s as i32)))
    }

    /// Prefetches the rows a half-group pair reads or writes: `rows` rows from image row
    /// `4 ti - pad` of plane `plane` (an element offset), 36 floats from column `4 tj0 - padw`.
    /// The transforms visit short stretches of many planes, too many streams for the
    /// hardware prefetcher, so each asks for the next plane's stretch while on this one.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prefetch_rows(buf: *const f32, plane: usize, img: usize, h: usize, w: usize, pad: (usize, usize), rows: usize, halves: &[Half; 2]) {
        for hf in halves.iter().filter(|hf| hf.cnt > 0) {
            for r in 0..rows {
                let ih = (4 * hf.ti + r) as isize - pad.0 as isize;
                if ih < 0 || ih >= h as isize {
                    continue;
                }
                let base = hf.n * img + plane + ih as usize * w;
                let w0 = (4 * hf.tj0) as isize - pad.1 as isize;
                for off in [0isize, 16, 32] {
                    _mm_prefetch::<_MM_HINT_T0>(buf.wrapping_offset(base as isize + w0 + off) as *const i8);
                }
            }
        }
    }

    /// The 6x6 input tiles of channel `c` under two half-groups, lanes = tiles (zeros past
    /// the image and for missing half-groups; lanes past a half's `cnt` hold whatever the
    /// image has there).
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    pub(crate) fn gather6(p: &Problem, c: usize, halves: &[Half; 2], x: &[f32], idx: &[__m512i; 4]) -> [[__m512; 6]; 6] {
        let mut d = [[_mm512_setzero_ps(); 6]; 6];
        for (r, dr) in d.iter_mut().enumerate() {
            let mut ph = [[_mm512_setzero_ps(); 6]; 2];
            for (hi, h) in halves.iter().enumerate() {
                let ih = (4 * h.ti + r) as isize - p.ph as isize;
                if h.cnt == 0 || ih < 0 || ih >= p.h as isize {
                    continue;
                }
                let rowoff = h.n * p.x_img + c * p.h * p.w + ih as usize * p.w;
                assert!(rowoff + p.w <= x.len());
                // SAFETY: rowoff..rowoff + w is one input row inside x (checked).
                unsafe {
                    let row = x.as_ptr().add(rowoff);
                    let w0 = (4 * h.tj0) as isize - p.pw as isize;
                    let (l0, l1) = (load_row(row, w0, p.w), load_row(row, w0 + 16, p.w));
                    let (s0, s1) = (load_row(row, w0 + 4, p.w), load_row(row, w0 + 20, p.w));
                    for s in 0..4 {
                        ph[hi][s] = _mm512_permutex2var_ps(l0, idx[s], l1);
                    }
                    ph[hi][4] = _mm512_permutex2var_ps(s0, idx[0], s1);
                    ph[hi][5] = _mm512_permutex2var_ps(s0, idx[1], s1);
                }
            }
            for s in 0..6 {
                dr[s] = _mm512_mask_blend_ps(0xFF00, ph[0][s], ph[1][s]);
            }
        }
        d
    }

    /// See [`super::input_stage`].
    ///
    /// # Safety
    /// See [`super::input_stage`]; AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn input_stage(p: &Problem, tl: &Tiling, geo: &Geo, x: &[f32], c0: usize, c1: usize, pa: usize, pb: usize, v: Shared) {
        let np = pb - pa;
        let idx = phase_idx();
        // Channel by channel, so that each plane's rows are read front to back.
        let hs: Vec<[Half; 2]> = (pa * geo.gpp..pb * geo.gpp).map(|gi| tl.group(gi)).collect();
        for c in c0..c1 {
            if c + 1 < c1 {
                for halves in &hs {
                    prefetch_rows(x.as_ptr(), (c + 1) * p.h * p.w, p.x_img, p.h, p.w, (p.ph, p.pw), 6, halves);
                }
            }
            for (gl, halves) in hs.iter().enumerate() {
                let gi = pa * geo.gpp + gl;
                let (tp, off) = (gi / geo.gpp - pa, (gi % geo.gpp) * 16);
                let d = gather6(p, c, halves, x, &idx);
                let mut out = [_mm512_setzero_ps(); 36];
                input_tile(&d, &mut out);
                for (xi, ov) in out.iter().enumerate() {
                    let o = ((xi * np + tp) * p.c + c) * geo.nr + off;
                    debug_assert!(o + 16 <= v.1);
                    // SAFETY: o..o + 16 is inside v; channel c is this task's.
                    unsafe { _mm512_storeu_ps(v.0.add(o), *ov) };
                }
            }
        }
    }

    /// See [`super::output_stage`].
    ///
    /// # Safety
    /// See [`super::output_stage`]; AVX-512F.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_stage(p: &Problem, tl: &Tiling, geo: &Geo, m: &[f32], kbase: usize, kloc: usize, ks: usize, ke: usize, t0: usize, t1: usize, y: Shared) {
        let tw = (t1 - t0) * geo.nr;
        // Channel by channel, so that each output plane's rows are written front to back.
        let hs: Vec<[Half; 2]> = (t0 * geo.gpp..t1 * geo.gpp).map(|gi| tl.group(gi)).collect();
        for k in ks..ke {
            if k + 1 < ke {
                for halves in &hs {
                    prefetch_rows(y.0, (k + 1) * p.oh * p.ow, p.y_img, p.oh, p.ow, (0, 0), 4, halves);
                }
            }
            for (gl, &halves) in hs.iter().enumerate() {
                if halves[0].cnt == 0 {
                    continue;
                }
                let lane0 = gl * 16;
                let mut mv = [_mm512_setzero_ps(); 36];
                for (xi, v) in mv.iter_mut().enumerate() {
                    let o = (xi * kloc + k - kbase) * tw + lane0;
                    assert!(o + 16 <= m.len());
                    // SAFETY: checked above.
                    *v = unsafe { _mm512_loadu_ps(m.as_ptr().add(o)) };
                }
                let mut t = [[_mm512_setzero_ps(); 4]; 4];
                output_tile(&mv, &mut t);
                // SAFETY: forwarded: the caller owns these outputs.
                unsafe { scatter(p, k, halves, &t, y) };
            }
        }
    }

    /// Writes the 4x4 output tiles of two half-groups for output channel `k`.
    ///
    /// # Safety
    /// `y` holds the problem's output and the caller owns these tiles of channel `k`.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn scatter(p: &Problem, k: usize, halves: [Half; 2], t: &[[__m512; 4]; 4], y: Shared) {
        for (hi, h) in halves.iter().enumerate() {
            if h.cnt == 0 {
                continue;
            }
            // Columns of this half that exist: below ow and inside its `cnt` tiles.
            let limit = p.ow.min(4 * (h.tj0 + h.cnt));
            for (r, tr) in t.iter().enumerate() {
                let oh = 4 * h.ti + r;
                if oh >= p.oh {
                    break;
                }
                let off = h.n * p.y_img + k * p.oh * p.ow + oh * p.ow;
                assert!(off + limit <= y.1);
                for q in 0..2 {
                    let col0 = 4 * h.tj0 + 16 * q;
                    if col0 >= limit {
                        break;
                    }
                    let lane = (8 * hi + 4 * q) as i32;
                    let (a, b) = (lane, lane + 16);
                    let idx = _mm512_setr_epi32(a, b, a, b, a + 1, b + 1, a + 1, b + 1, a + 2, b + 2, a + 2, b + 2, a + 3, b + 3, a + 3, b + 3);
                    let v01 = _mm512_permutex2var_ps(tr[0], idx, tr[1]);
                    let v23 = _mm512_permutex2var_ps(tr[2], idx, tr[3]);
                    let v = _mm512_mask_blend_ps(0xCCCC, v01, v23);
                    // SAFETY: masked to columns < limit of row `oh`, inside y (checked).
                    unsafe { _mm512_mask_storeu_ps(y.0.add(off + col0), span(0, (limit - col0) as isize), v) };
                }
            }
        }
    }
}
