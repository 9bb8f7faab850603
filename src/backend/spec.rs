//! Geometry of the structured primitives (convolution, pooling, strided copies), shared by
//! every backend. A layer computes its spec from its parameters and bottom shapes; a backend
//! only reads it.

/// Geometry of an N-d convolution over `num` images of `channels` channels.
///
/// The weight blob has shape `(out_channels, channels / group, kernel...)`. Spatial vectors
/// (`in_shape`, `out_shape`, `kernel`, `stride`, `pad`, `dilation`) all have one entry per
/// spatial axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvSpec {
    /// Number of images (the product of the axes before the channel axis).
    pub num: usize,
    /// Input channels.
    pub channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channel groups: input and output channels are split into `group` independent parts.
    pub group: usize,
    /// Input spatial shape.
    pub in_shape: Vec<usize>,
    /// Output spatial shape.
    pub out_shape: Vec<usize>,
    /// Kernel extent per spatial axis.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis.
    pub stride: Vec<usize>,
    /// Zero padding per spatial axis (both sides).
    pub pad: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilation: Vec<usize>,
}

impl ConvSpec {
    /// Elements of one input image (`channels * prod(in_shape)`).
    pub fn in_image_len(&self) -> usize {
        self.channels * self.in_shape.iter().product::<usize>()
    }
    /// Elements of one output image.
    pub fn out_image_len(&self) -> usize {
        self.out_channels * self.out_shape.iter().product::<usize>()
    }
    /// Spatial size of one input plane.
    pub fn in_spatial(&self) -> usize {
        self.in_shape.iter().product()
    }
    /// Spatial size of one output plane.
    pub fn out_spatial(&self) -> usize {
        self.out_shape.iter().product()
    }
    /// Elements of one kernel (`prod(kernel)`).
    pub fn kernel_len(&self) -> usize {
        self.kernel.iter().product()
    }
    /// Elements of the weight blob.
    pub fn weight_len(&self) -> usize {
        self.out_channels * (self.channels / self.group) * self.kernel_len()
    }
    /// Multiply-adds of the forward pass, times two: the FLOPs of one forward.
    pub fn forward_flops(&self) -> u64 {
        2 * self.num as u64
            * self.out_image_len() as u64
            * (self.channels / self.group) as u64
            * self.kernel_len() as u64
    }
    /// The output extent Caffe computes for one axis:
    /// `(in + 2 pad - (dilation (k - 1) + 1)) / stride + 1`, or `None` when the kernel does
    /// not fit.
    pub fn output_extent(input: usize, kernel: usize, stride: usize, pad: usize, dilation: usize) -> Option<usize> {
        let extent = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
        let padded = input.checked_add(2 * pad)?;
        if padded < extent || stride == 0 {
            return None;
        }
        Some((padded - extent) / stride + 1)
    }
    /// Checks the geometry the im2col primitives read (at least one spatial axis, one entry
    /// per axis in every spatial vector, each output extent the one
    /// [`ConvSpec::output_extent`] gives) and returns the element counts of their image and
    /// column buffers: `num * channels * in_spatial` and `num * channels * kernel_len *
    /// out_spatial`.
    pub fn im2col_lens(&self) -> crate::Result<(usize, usize)> {
        let bad = |why: String| crate::Error::Internal(format!("im2col geometry {self:?}: {why}"));
        let nd = self.kernel.len();
        if nd == 0 {
            return Err(bad("no spatial axis".into()));
        }
        if [self.in_shape.len(), self.out_shape.len(), self.stride.len(), self.pad.len(), self.dilation.len()].iter().any(|&l| l != nd) {
            return Err(bad("spatial vectors of different lengths".into()));
        }
        for a in 0..nd {
            if Self::output_extent(self.in_shape[a], self.kernel[a], self.stride[a], self.pad[a], self.dilation[a]) != Some(self.out_shape[a]) {
                return Err(bad(format!("output extent of axis {a} does not follow from the input, kernel, stride, pad and dilation")));
            }
        }
        let product = |v: &[usize], init: Option<usize>| v.iter().try_fold(init?, |acc, &d| acc.checked_mul(d));
        let planes = self.num.checked_mul(self.channels);
        let x = product(&self.in_shape, planes);
        let col = product(&self.kernel, planes).and_then(|c| product(&self.out_shape, Some(c)));
        x.zip(col).ok_or_else(|| bad("sizes overflow".into()))
    }
}

/// Geometry of 2-d pooling over `planes` = N*C independent planes, each `in_h x in_w` in,
/// `out_h x out_w` out (row-major, planes contiguous).
///
/// Output cell `(ph, pw)` pools the window whose top-left corner is
/// `(ph * stride_h - pad_h, pw * stride_w - pad_w)` in input coordinates, of extent
/// `kernel_h x kernel_w`. The layer computes `out_h`/`out_w` with Caffe's rounding rules, so a
/// window may reach past the input (and, with no padding and a stride larger than the kernel,
/// lie entirely outside it); each primitive documents how it treats such windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Number of planes (num * channels).
    pub planes: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Stride along height.
    pub stride_h: usize,
    /// Stride along width.
    pub stride_w: usize,
    /// Padding along height.
    pub pad_h: usize,
    /// Padding along width.
    pub pad_w: usize,
}

impl PoolSpec {
    /// Elements of one input plane (`in_h * in_w`).
    pub fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }
    /// Elements of one output plane (`out_h * out_w`).
    pub fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }
    /// Elements of the whole input (`planes * in_plane`).
    pub fn in_len(&self) -> usize {
        self.planes * self.in_plane()
    }
    /// Elements of the whole output (`planes * out_plane`).
    pub fn out_len(&self) -> usize {
        self.planes * self.out_plane()
    }
    /// The input window of output index `o` along one axis as Caffe's max pooling clips it:
    /// `[max(start, 0), min(start + kernel, in))`, empty (`lo >= hi`) when it lies outside.
    pub fn max_window(o: usize, kernel: usize, stride: usize, pad: usize, input: usize) -> (usize, usize) {
        let start = (o * stride) as i64 - pad as i64;
        let end = (start + kernel as i64).min(input as i64);
        (start.max(0) as usize, end.max(0) as usize)
    }
    /// The window along one axis as Caffe's average pooling clips it, and the extent it
    /// divides by: `end = min(start + kernel, in + pad)`, `size = end - start` (taken before
    /// clipping to the image, so padding inside the padded input counts, padding past it does
    /// not), then `[max(start, 0), min(end, in))`. `size` is zero or negative for a window
    /// wholly past the padded input, as in Caffe.
    pub fn ave_window(o: usize, kernel: usize, stride: usize, pad: usize, input: usize) -> (usize, usize, i64) {
        let start = (o * stride) as i64 - pad as i64;
        let end = (start + kernel as i64).min((input + pad) as i64);
        let size = end - start;
        (start.max(0) as usize, end.min(input as i64).max(0) as usize, size)
    }
}

/// An N-d strided copy: `dst[dst_offset + sum(i_k * dst_strides[k])] (+)= src[src_offset +
/// sum(i_k * src_strides[k])]` for every index `i` in `shape`. A source stride of 0 repeats
/// (Tile); `accumulate` adds instead of overwriting (gradients of Split, Tile, Crop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StridedCopy {
    /// Extent of each axis.
    pub shape: Vec<usize>,
    /// Offset of the first source element.
    pub src_offset: usize,
    /// Source stride per axis, in elements.
    pub src_strides: Vec<usize>,
    /// Offset of the first destination element.
    pub dst_offset: usize,
    /// Destination stride per axis, in elements.
    pub dst_strides: Vec<usize>,
}

impl StridedCopy {
    /// A copy of a contiguous `outer x inner` block into the `outer x dst_inner` layout at
    /// `dst_col` (and its reverse when `reverse`): the shape of Concat and Slice.
    pub fn block(outer: usize, inner: usize, src_inner: usize, src_col: usize, dst_inner: usize, dst_col: usize) -> Self {
        StridedCopy {
            shape: vec![outer, inner],
            src_offset: src_col,
            src_strides: vec![src_inner, 1],
            dst_offset: dst_col,
            dst_strides: vec![dst_inner, 1],
        }
    }
    /// Number of elements copied.
    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Row-major strides of a shape.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Checks the buffer lengths of an LSTM unit op (`Activations::lstm_unit_forward` and
/// `_backward`) over `num` rows of `dim` cells: every buffer in `cells` must hold `num * dim`
/// values, every one in `gates` `4 * num * dim`, and `cont` `num`. Returns `num * dim`.
pub fn lstm_unit_cells(what: &str, num: usize, dim: usize, cells: &[usize], gates: &[usize], cont: usize) -> crate::Result<usize> {
    let n = num.checked_mul(dim).and_then(|n| n.checked_mul(4).map(|g| (n, g)));
    match n {
        Some((n, g)) if cells.iter().all(|&l| l == n) && gates.iter().all(|&l| l == g) && cont == num => Ok(n),
        _ => Err(crate::Error::Internal(format!(
            "{what}: {num} rows of {dim} cells do not fit buffers of {cells:?} cells, {gates:?} gate inputs and {cont} \
             indicators"
        ))),
    }
}
