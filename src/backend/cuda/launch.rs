//! Kernels: the families' sources, their modules (compiled on first use), typed kernel handles
//! and one launch helper.
//!
//! Adding a primitive: write an `extern "C" __global__` kernel in the family's `.cu` file,
//! declare `const K: Kernel = Kernel::new(Family::X, "crema_name")` beside its launch code, and
//! launch it with [`Launch`], naming each argument (the names appear in error messages).

use super::device::Device;
use super::nvrtc::{self, Arch, Cache, Output};
use super::CudaBuf;
use crate::{Error, Result};
use cudarc::driver::{result as drv, sys};
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::Mutex;

/// Prepended to every family's source.
const COMMON: &str = include_str!("kernels/common.cuh");

/// A family of primitives: one `.cu` file, one CUDA module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `kernels/math.cu`.
    Math,
    /// `kernels/act.cu`.
    Activations,
    /// `kernels/conv.cu`.
    Convolution,
    /// `kernels/pool.cu`.
    Pooling,
    /// `kernels/norm.cu`.
    Normalization,
    /// `kernels/loss.cu`.
    Losses,
    /// `kernels/solver.cu`.
    Solver,
    /// `kernels/tensor.cu`.
    Tensor,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 8] = [
        Family::Math,
        Family::Activations,
        Family::Convolution,
        Family::Pooling,
        Family::Normalization,
        Family::Losses,
        Family::Solver,
        Family::Tensor,
    ];

    /// The file name without `.cu`.
    pub fn file(self) -> &'static str {
        match self {
            Family::Math => "math",
            Family::Activations => "act",
            Family::Convolution => "conv",
            Family::Pooling => "pool",
            Family::Normalization => "norm",
            Family::Losses => "loss",
            Family::Solver => "solver",
            Family::Tensor => "tensor",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Family::Math => include_str!("kernels/math.cu"),
            Family::Activations => include_str!("kernels/act.cu"),
            Family::Convolution => include_str!("kernels/conv.cu"),
            Family::Pooling => include_str!("kernels/pool.cu"),
            Family::Normalization => include_str!("kernels/norm.cu"),
            Family::Losses => include_str!("kernels/loss.cu"),
            Family::Solver => include_str!("kernels/solver.cu"),
            Family::Tensor => include_str!("kernels/tensor.cu"),
        }
    }

    /// The source NVRTC compiles: the common prelude, then the family's file.
    pub fn source(self) -> String {
        format!("{COMMON}\n#line 1 \"{}.cu\"\n{}", self.file(), self.body())
    }
}

/// A kernel: its family (module) and its `extern "C"` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    family: Family,
    name: &'static str,
    /// Written with `FOR_EACH_PLANE` (common.cuh): launched on a [`Launch::planes`] grid only.
    plane_loops: bool,
}

impl Kernel {
    /// A handle to `name` in `family`'s file.
    pub const fn new(family: Family, name: &'static str) -> Self {
        Kernel { family, name, plane_loops: false }
    }

    /// A handle to a kernel written with `FOR_EACH_PLANE`. Any grid covers every element, but
    /// another grid than [`Launch::planes`]'s can leave all but a few blocks idle, so a launch
    /// with one is refused.
    pub const fn plane_loops(family: Family, name: &'static str) -> Self {
        Kernel { family, name, plane_loops: true }
    }
}

struct Module(sys::CUmodule);
// SAFETY: a CUmodule handle may be used from any thread with its context bound.
unsafe impl Send for Module {}

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: loaded once and unloaded once; the device binds its context before dropping.
        let _ = unsafe { drv::module::unload(self.0) };
    }
}

#[derive(Clone, Copy)]
struct Func(sys::CUfunction);
// SAFETY: a CUfunction handle may be launched from any thread with its context bound.
unsafe impl Send for Func {}

/// The modules and functions loaded so far on one device.
pub(crate) struct Kernels {
    state: Mutex<(HashMap<Family, Module>, HashMap<Kernel, Func>)>,
    cache: Cache,
    arch: Arch,
    output: Output,
}

impl Kernels {
    /// No module loaded yet; they compile for `arch` on first use.
    pub fn new(arch: Arch, output: Output, cache: Cache) -> Self {
        Kernels { state: Mutex::new((HashMap::new(), HashMap::new())), cache, arch, output }
    }

    /// Unloads every module (the device's context must be bound).
    pub fn clear(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1.clear();
        s.0.clear();
    }

    fn function(&self, dev: &Device, k: Kernel) -> Result<Func> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = s.1.get(&k) {
            return Ok(*f);
        }
        let module = match s.0.entry(k.family) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.load(dev, k.family)?),
        };
        let name = CString::new(k.name).map_err(|_| Error::Internal("kernel name with a NUL byte".into()))?;
        // SAFETY: `module` is loaded in the bound context.
        let f = unsafe { drv::module::get_function(module.0, name) }.map_err(|e| {
            dev.driver_error(&format!("finding kernel {} in kernels/{}.cu", k.name, k.family.file()), e)
        })?;
        s.1.insert(k, Func(f));
        Ok(Func(f))
    }

    /// Compiles (or takes from the cache) and loads a family's module. A cached image the driver
    /// rejects is removed and compiled again.
    fn load(&self, dev: &Device, family: Family) -> Result<Module> {
        let source = family.source();
        let (image, cached) = nvrtc::compile_cached(&self.cache, family.file(), &source, self.arch, self.output)?;
        match load_image(&image) {
            Ok(m) => Ok(m),
            Err(_) if cached => {
                self.cache.remove(&Cache::key(family.file(), &source, self.arch, self.output, nvrtc::version()?));
                let image = nvrtc::compile(family.file(), &source, self.arch, self.output)?;
                let _ = self.cache.put(&Cache::key(family.file(), &source, self.arch, self.output, nvrtc::version()?), &image);
                load_image(&image).map_err(|e| dev.driver_error(&format!("loading kernels/{}.cu", family.file()), e))
            }
            Err(e) => Err(dev.driver_error(&format!("loading kernels/{}.cu", family.file()), e)),
        }
    }
}

fn load_image(image: &[u8]) -> std::result::Result<Module, drv::DriverError> {
    // SAFETY: `image` is a whole CUBIN, or PTX ending in NUL, as NVRTC produced it (or as the
    // checksummed cache returned it); the driver validates it.
    unsafe { drv::module::load_data(image.as_ptr() as *const c_void) }.map(Module)
}

/// A plain-data struct passed to a kernel by value; its layout matches a struct in a `.cu`
/// file.
///
/// # Safety
/// Implementors are `#[repr(C)]`, contain no pointers to host memory and no padding the kernel
/// reads.
pub(crate) unsafe trait KernelStruct: Copy + 'static {}

/// One kernel argument, kept until the launch.
enum Arg {
    Ptr { ptr: u64, len: usize },
    U64(u64),
    I32(i32),
    F32(f32),
    F64(f64),
    Struct { words: Box<[u64]>, type_name: &'static str },
}

impl Arg {
    fn param(&mut self) -> *mut c_void {
        match self {
            Arg::Ptr { ptr, .. } => ptr as *mut u64 as *mut c_void,
            Arg::U64(v) => v as *mut u64 as *mut c_void,
            Arg::I32(v) => v as *mut i32 as *mut c_void,
            Arg::F32(v) => v as *mut f32 as *mut c_void,
            Arg::F64(v) => v as *mut f64 as *mut c_void,
            Arg::Struct { words, .. } => words.as_mut_ptr() as *mut c_void,
        }
    }

    fn describe(&self, name: &str) -> String {
        match self {
            Arg::Ptr { len, .. } => format!("{name}: {len} floats"),
            Arg::U64(v) => format!("{name}={v}"),
            Arg::I32(v) => format!("{name}={v}"),
            Arg::F32(v) => format!("{name}={v}"),
            Arg::F64(v) => format!("{name}={v}"),
            Arg::Struct { type_name, .. } => format!("{name}: {type_name}"),
        }
    }
}

/// Threads per block of element-wise kernels.
pub const BLOCK: u32 = 256;

/// A kernel launch being built: grid, block and named arguments in the kernel's order.
pub(crate) struct Launch<'a> {
    dev: &'a Device,
    kernel: Kernel,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    /// The grid came from [`Launch::planes`].
    plane_grid: bool,
    args: Vec<(&'static str, Arg)>,
}

impl<'a> Launch<'a> {
    /// A launch of `kernel` on `dev`'s stream (configure the grid before running).
    pub fn new(dev: &'a Device, kernel: Kernel) -> Self {
        Launch { dev, kernel, grid: (0, 1, 1), block: (BLOCK, 1, 1), plane_grid: false, args: Vec::new() }
    }

    /// A grid-stride launch over `n` elements (nothing runs when `n == 0`).
    pub fn elems(mut self, n: usize) -> Self {
        let blocks = n.div_ceil(BLOCK as usize).min(self.dev.max_blocks() as usize);
        self.grid = (blocks as u32, 1, 1);
        self.block = (BLOCK, 1, 1);
        self.plane_grid = false;
        self
    }

    /// A grid for the plane loops of kernels declared with [`Kernel::plane_loops`]
    /// (`FOR_EACH_PLANE` in common.cuh): `planes` runs of `inner`
    /// elements, at most [`Device::max_blocks`] blocks in all, as many planes side by side as
    /// that allows and the rest of the blocks across each plane.
    pub fn planes(mut self, planes: usize, inner: usize) -> Self {
        let most = self.dev.max_blocks() as usize;
        let y = planes.clamp(1, most.min(65535));
        let x = inner.div_ceil(BLOCK as usize).clamp(1, (most / y).max(1));
        self.grid = if planes == 0 || inner == 0 { (0, 1, 1) } else { (x as u32, y as u32, 1) };
        self.block = (BLOCK, 1, 1);
        self.plane_grid = true;
        self
    }

    /// An explicit grid and block.
    pub fn dims(mut self, grid: (u32, u32, u32), block: (u32, u32, u32)) -> Self {
        self.grid = grid;
        self.block = block;
        self.plane_grid = false;
        self
    }

    /// A buffer, from its start.
    pub fn buf(self, name: &'static str, b: &CudaBuf) -> Self {
        self.raw(name, b.ptr, b.len)
    }

    /// A buffer from element `offset` on (the caller has checked `offset <= len`).
    pub fn buf_at(self, name: &'static str, b: &CudaBuf, offset: usize) -> Self {
        self.raw(name, b.ptr + 4 * offset as u64, b.len.saturating_sub(offset))
    }

    /// An optional buffer: a null pointer to no elements when absent.
    pub fn opt_buf(self, name: &'static str, b: Option<&CudaBuf>) -> Self {
        match b {
            Some(b) => self.buf(name, b),
            None => self.raw(name, 0, 0),
        }
    }

    /// A device pointer to `len` elements (scratch memory).
    pub fn raw(mut self, name: &'static str, ptr: u64, len: usize) -> Self {
        self.args.push((name, Arg::Ptr { ptr, len }));
        self
    }

    /// An `unsigned long long`.
    pub fn u64(mut self, name: &'static str, v: usize) -> Self {
        self.args.push((name, Arg::U64(v as u64)));
        self
    }

    /// An `int`.
    pub fn i32(mut self, name: &'static str, v: i32) -> Self {
        self.args.push((name, Arg::I32(v)));
        self
    }

    /// A `float`.
    pub fn f32(mut self, name: &'static str, v: f32) -> Self {
        self.args.push((name, Arg::F32(v)));
        self
    }

    /// A `double`.
    pub fn f64(mut self, name: &'static str, v: f64) -> Self {
        self.args.push((name, Arg::F64(v)));
        self
    }

    /// A struct by value.
    pub fn value<T: KernelStruct>(mut self, name: &'static str, v: &T) -> Self {
        let size = std::mem::size_of::<T>();
        let mut words = vec![0u64; size.div_ceil(8)].into_boxed_slice();
        // SAFETY: `words` has at least `size` bytes, is 8-aligned (enough for any KernelStruct,
        // whose fields are at most 8 bytes), and does not overlap `v`.
        unsafe { std::ptr::copy_nonoverlapping(v as *const T as *const u8, words.as_mut_ptr() as *mut u8, size) };
        self.args.push((name, Arg::Struct { words, type_name: std::any::type_name::<T>().rsplit("::").next().unwrap_or("struct") }));
        self
    }

    /// Queues the kernel on the stream. Errors name the kernel, its grid and its arguments.
    pub fn run(mut self) -> Result<()> {
        if self.kernel.plane_loops != self.plane_grid {
            return Err(Error::Internal(format!(
                "{}: {}",
                self.describe(),
                if self.plane_grid { "a plane grid for a kernel without plane loops" } else { "plane loops need a grid from Launch::planes" }
            )));
        }
        if self.grid.0 == 0 || self.grid.1 == 0 || self.grid.2 == 0 {
            return Ok(());
        }
        let dev = self.dev;
        dev.bind()?;
        let func = dev.kernels.function(dev, self.kernel)?;
        let mut params: Vec<*mut c_void> = self.args.iter_mut().map(|(_, a)| a.param()).collect();
        // SAFETY: `func` is a loaded kernel whose C signature takes exactly these arguments in
        // this order (each launch site mirrors its kernel's signature), every pointer argument is
        // a live device allocation of at least the length its kernel reads (checked by the
        // caller), and `params` points into `self.args`, which outlives the call.
        let launched = unsafe { drv::launch_kernel(func.0, self.grid, self.block, 0, dev.cu_stream(), &mut params) };
        if launched.is_ok() {
            dev.count_launch();
        }
        let checked = launched.and_then(|_| if dev.sync_each_launch() { dev.stream_sync_raw() } else { Ok(()) });
        checked.map_err(|e| dev.driver_error(&self.describe(), e))
    }

    fn describe(&self) -> String {
        let args: Vec<String> = self.args.iter().map(|(n, a)| a.describe(n)).collect();
        format!(
            "kernel {} (kernels/{}.cu; grid {}x{}x{}, block {}x{}x{}; {})",
            self.kernel.name,
            self.kernel.family.file(),
            self.grid.0,
            self.grid.1,
            self.grid.2,
            self.block.0,
            self.block.1,
            self.block.2,
            args.join(", ")
        )
    }
}

/// Every family's full source, as NVRTC compiles it: `(file name without .cu, source)`.
pub fn kernel_sources() -> Vec<(&'static str, String)> {
    Family::ALL.iter().map(|f| (f.file(), f.source())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel the backend declares.
    fn declared() -> Vec<Kernel> {
        let all = [
            super::super::math::KERNELS,
            super::super::act::KERNELS,
            super::super::conv_gemm::KERNELS,
            super::super::pool::KERNELS,
            super::super::loss::KERNELS,
            super::super::tensor::KERNELS,
            super::super::solver::KERNELS,
            super::super::norm::KERNELS,
        ];
        all.iter().flat_map(|l| l.iter().copied()).collect()
    }

    /// The text of `k`'s definition, to the next kernel's.
    fn definition(k: Kernel) -> Option<&'static str> {
        let signature = format!("extern \"C\" __global__ void {}(", k.name);
        let body = k.family.body();
        let start = body.find(&signature)?;
        let rest = &body[start + signature.len()..];
        Some(&rest[..rest.find("extern \"C\"").unwrap_or(rest.len())])
    }

    #[test]
    fn every_declared_kernel_is_defined_in_its_family_source() {
        for k in declared() {
            assert!(definition(k).is_some(), "{} is not defined in kernels/{}.cu", k.name, k.family.file());
        }
    }

    #[test]
    fn kernels_with_plane_loops_are_declared_so() {
        for k in declared() {
            let loops = definition(k).is_some_and(|d| d.contains("FOR_EACH_PLANE("));
            assert_eq!(k.plane_loops, loops, "{}: declare it with Kernel::{}", k.name, if loops { "plane_loops" } else { "new" });
        }
    }

    #[test]
    fn sources_start_with_the_common_prelude() {
        for (name, src) in kernel_sources() {
            assert!(src.starts_with(COMMON), "{name}");
            assert!(src.contains(&format!("#line 1 \"{name}.cu\"")), "{name}");
        }
    }
}
