//! The im2col matrix of an N-d convolution, described as runs rather than stored.
//!
//! Row `(c, kk)` of the im2col matrix of one image holds, for every output position, the
//! input value that kernel offset `kk` of channel `c` meets there (zero in the padding).
//! Along the last spatial axis those values are a strided run of one input row, so any part
//! of a matrix row is a few runs: zeros, a strided slice of the image, zeros. Packers and
//! col2im walk these runs instead of computing an index per element.

use crate::backend::ConvSpec;

/// Geometry for walking im2col rows of one spec.
pub(crate) struct Im2col<'a> {
    spec: &'a ConvSpec,
    /// Input strides (in elements) of the spatial axes within one channel plane.
    in_strides: Vec<usize>,
}

/// One run of an im2col row: `len` output positions from `start`, reading the input plane at
/// `src + i * step` (`Some`), or zeros (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub start: usize,
    pub len: usize,
    pub src: Option<usize>,
    pub step: usize,
}

impl<'a> Im2col<'a> {
    pub fn new(spec: &'a ConvSpec) -> Self {
        Im2col { spec, in_strides: crate::backend::strides_of(&spec.in_shape) }
    }

    /// The kernel offset (one index per axis) of flattened kernel index `kk`.
    pub fn kernel_offset(&self, kk: usize, koff: &mut [usize]) {
        unravel(kk, &self.spec.kernel, koff);
    }

    /// Calls `f` for the runs that make up output positions `j0..j1` of the im2col row with
    /// kernel offset `koff`, in order.
    pub fn runs(&self, koff: &[usize], j0: usize, j1: usize, mut f: impl FnMut(Run)) {
        let s = self.spec;
        let nd = s.kernel.len();
        let last = nd - 1;
        let ol = s.out_shape[last];
        if j0 >= j1 || ol == 0 {
            return;
        }
        // Output positions along the last axis whose input index is inside the row.
        let (st, dl, pd, il) = (s.stride[last], s.dilation[last], s.pad[last] as isize, s.in_shape[last] as isize);
        let first = (koff[last] * dl) as isize - pd; // input index of output 0
        let lo = if first >= 0 { 0 } else { ((-first) as usize).div_ceil(st) }.min(ol);
        let hi = if first >= il { 0 } else { (((il - 1 - first) as usize) / st + 1).min(ol) }.max(lo);
        let mut r = j0 / ol;
        let mut oidx = vec![0usize; last];
        while r * ol < j1 {
            let (a, b) = ((r * ol).max(j0) - r * ol, ((r + 1) * ol).min(j1) - r * ol);
            // Input offset of this output row along the outer axes, if inside the image.
            unravel(r, &s.out_shape[..last], &mut oidx);
            let mut base = Some(0usize);
            for ax in 0..last {
                let pos = (oidx[ax] * s.stride[ax] + koff[ax] * s.dilation[ax]) as isize - s.pad[ax] as isize;
                if pos < 0 || pos >= s.in_shape[ax] as isize {
                    base = None;
                    break;
                }
                base = base.map(|b| b + pos as usize * self.in_strides[ax]);
            }
            let row0 = r * ol;
            match base {
                None => f(Run { start: row0 + a, len: b - a, src: None, step: 0 }),
                Some(base) => {
                    let (vlo, vhi) = (lo.clamp(a, b), hi.clamp(a, b));
                    if vlo > a {
                        f(Run { start: row0 + a, len: vlo - a, src: None, step: 0 });
                    }
                    if vhi > vlo {
                        let src = base + (first + (vlo * st) as isize) as usize;
                        f(Run { start: row0 + vlo, len: vhi - vlo, src: Some(src), step: st });
                    }
                    if b > vhi {
                        f(Run { start: row0 + vhi, len: b - vhi, src: None, step: 0 });
                    }
                }
            }
            r += 1;
        }
    }

    /// Writes output positions `j0..j1` of the im2col row with kernel offset `koff` of the
    /// channel plane `plane` into `out` (`j1 - j0` values; zeros in the padding).
    pub fn fill_row(&self, koff: &[usize], j0: usize, j1: usize, plane: &[f32], out: &mut [f32]) {
        self.runs(koff, j0, j1, |r| {
            let out = &mut out[r.start - j0..r.start - j0 + r.len];
            match r.src {
                None => out.fill(0.0),
                Some(src) if r.step == 1 => out.copy_from_slice(&plane[src..src + r.len]),
                Some(src) => out.iter_mut().enumerate().for_each(|(i, v)| *v = plane[src + i * r.step]),
            }
        });
    }

    /// Adds the columns `j0..j1` of an im2col matrix `col` (`(channels * kernel_len) x
    /// (j1 - j0)`) back into image `dx` (col2im: the adjoint of im2col).
    pub fn add_back(&self, channels: usize, col: &[f32], j0: usize, j1: usize, dx: &mut [f32]) {
        let (kl, isp, w) = (self.spec.kernel_len(), self.spec.in_spatial(), j1 - j0);
        let mut koff = vec![0usize; self.spec.kernel.len()];
        for c in 0..channels {
            let plane = &mut dx[c * isp..(c + 1) * isp];
            for kk in 0..kl {
                self.kernel_offset(kk, &mut koff);
                let row = &col[(c * kl + kk) * w..(c * kl + kk + 1) * w];
                self.runs(&koff, j0, j1, |r| {
                    if let Some(s) = r.src {
                        let src = &row[r.start - j0..r.start - j0 + r.len];
                        if r.step == 1 {
                            plane[s..s + r.len].iter_mut().zip(src).for_each(|(d, v)| *d += v);
                        } else {
                            src.iter().enumerate().for_each(|(i, v)| plane[s + i * r.step] += v);
                        }
                    }
                });
            }
        }
    }
}

/// Row-major unravel of flat index `i` over `shape` into `out`.
pub(crate) fn unravel(mut i: usize, shape: &[usize], out: &mut [usize]) {
    for a in (0..shape.len()).rev() {
        out[a] = i % shape[a];
        i /= shape[a];
    }
}
