//! One GPU as the backend holds it: context, stream, library handles, kernels, the shared
//! workspace and the memory counters. Every raw driver call of the backend goes through here.

use super::blas::Blas;
use super::dnn::Dnn;
use super::launch::Kernels;
use super::loader::{self, Lib};
use super::nvrtc::{self, guard, Arch, Cache};
use super::{CudaOptions, Precision};
use crate::backend::Activity;
use crate::{Error, Result};
use cudarc::driver::{result as drv, sys, CudaContext, CudaStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Taken for writing while crema times cuDNN's algorithms, for reading while a GPU is opened:
/// one search at a time in the process, so that two searches do not time each other's work
/// (other work that threads queue meanwhile, on this GPU or on the same stream, is not kept
/// out, and may slow the candidates it overlaps).
/// Opening a GPU waits too because, when cuDNN's own search (`cudnnFind*`) ran, doing so on an
/// H200 (cuDNN 9.14, CUDA 13.0) failed with `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED` (as calls
/// that may synchronise do while some thread captures a stream in CUDA's global mode); crema's
/// own search makes only the calls a training step makes, but that has not run on a GPU yet.
pub(crate) static EXCLUSIVE: RwLock<()> = RwLock::new(());

/// Held while a cuDNN or cuBLAS handle is created or destroyed, which therefore happens in one
/// thread at a time: cuDNN's guide asks that the first `cudnnCreate` be made alone before threads
/// create their own handles, and destroying a handle synchronises the device. Taken only around
/// those calls (never while holding another lock of this module).
pub(crate) fn handles_lock() -> std::sync::MutexGuard<'static, ()> {
    static HANDLES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HANDLES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Blocks of every reduction's first pass: fixed, so that sums do not depend on the GPU.
pub const REDUCE_BLOCKS: usize = 512;

/// Regions of the scratch buffer ([`Device::scratch`]), in 8-byte words from its start.
pub(crate) mod scratch {
    use super::REDUCE_BLOCKS;
    /// The first pass's partial sums: `REDUCE_BLOCKS` doubles.
    pub const PARTIAL: usize = 0;
    /// A reduction's result: one double.
    pub const OUT: usize = REDUCE_BLOCKS;
    /// A flag (`all_finite`).
    pub const FLAG: usize = REDUCE_BLOCKS + 1;
    /// The first pass's partial counts: `REDUCE_BLOCKS` doubles (exact below 2^53).
    pub const COUNTS: usize = REDUCE_BLOCKS + 2;
    /// A first-bad-index word (an atomic minimum, `u64::MAX` when none) and a second flag.
    pub const BAD: usize = 2 * REDUCE_BLOCKS + 2;
    /// A loss result read back in one copy: loss (double), valid count, first bad position,
    /// the label value there (f32 bits).
    pub const RESULT: usize = 2 * REDUCE_BLOCKS + 4;
    /// Words in all.
    pub const WORDS: usize = 2 * REDUCE_BLOCKS + 8;

    /// The device address of word `word` of the scratch buffer at `base`.
    pub fn at(base: u64, word: usize) -> u64 {
        base + 8 * word as u64
    }
}

/// Device memory the backend owns outside user buffers (scratch, workspace).
pub(crate) struct DevMem {
    /// Device address (0 when empty).
    pub ptr: u64,
    /// Size in bytes.
    pub bytes: usize,
}

/// The growable workspace shared by every convolution and reduction that needs scratch memory.
pub(crate) struct Workspace {
    mem: DevMem,
}

impl Workspace {
    /// A device pointer to at least `bytes` bytes, valid until the next call (grows by freeing
    /// and reallocating; the free is ordered on the stream after the work that used it).
    pub fn get(&mut self, dev: &Device, bytes: usize) -> Result<u64> {
        if bytes > self.mem.bytes {
            let old = std::mem::replace(&mut self.mem, DevMem { ptr: 0, bytes: 0 });
            dev.free(old);
            // Round up to 1 MiB so that slowly growing requests do not reallocate every time;
            // the exact size where the device has no room for that.
            let size = bytes.div_ceil(1 << 20) * (1 << 20);
            self.mem = match dev.alloc_raw(size) {
                Err(Error::OutOfMemory { .. }) if size > bytes => dev.alloc_raw(bytes)?,
                other => other?,
            };
        }
        Ok(self.mem.ptr)
    }

    /// The device address of what is held now (0 when nothing is).
    pub fn ptr(&self) -> u64 {
        self.mem.ptr
    }

    /// Bytes held now.
    pub fn capacity(&self) -> usize {
        self.mem.bytes
    }
}

/// Device memory held for one operation and freed (in stream order) when dropped: an
/// algorithm search's own workspace and output.
pub(crate) struct TempMem<'a> {
    dev: &'a Device,
    mem: DevMem,
}

impl TempMem<'_> {
    /// The device address (0 when empty).
    pub fn ptr(&self) -> u64 {
        self.mem.ptr
    }
}

impl Drop for TempMem<'_> {
    fn drop(&mut self) {
        self.dev.free(std::mem::replace(&mut self.mem, DevMem { ptr: 0, bytes: 0 }));
    }
}

/// Events recorded on the device's stream, to time work on the GPU (destroyed when dropped).
pub(crate) struct Timer<'a> {
    dev: &'a Device,
    events: Vec<sys::CUevent>,
}

impl Timer<'_> {
    /// Records event `i` on the stream, after everything queued so far.
    pub fn record(&self, i: usize) -> Result<()> {
        // SAFETY: a live event of ours on the device's live stream.
        unsafe { drv::event::record(self.events[i], self.dev.cu_stream()) }.map_err(|e| self.dev.driver_error("recording a timing event", e))
    }

    /// Waits until event `i` has happened on the GPU.
    pub fn wait(&self, i: usize) -> Result<()> {
        self.dev.counters.syncs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a live, recorded event of ours.
        unsafe { drv::event::synchronize(self.events[i]) }
            .map_err(|e| self.dev.driver_error("waiting for the GPU (an error from an earlier kernel or copy shows up here)", e))
    }

    /// Milliseconds between events `a` and `b`, both recorded and waited for.
    pub fn elapsed(&self, a: usize, b: usize) -> Result<f32> {
        // SAFETY: live events of ours, recorded on one stream and completed.
        unsafe { drv::event::elapsed(self.events[a], self.events[b]) }.map_err(|e| self.dev.driver_error("reading a timing event", e))
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        for &e in &self.events {
            // SAFETY: created by `Device::timer`, destroyed once.
            let _ = unsafe { drv::event::destroy(e) };
        }
    }
}

/// The device's side of [`Activity`] (library calls are counted by their handles).
#[derive(Default)]
pub(crate) struct Counters {
    kernels: AtomicU64,
    syncs: AtomicU64,
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    downloads: AtomicU64,
    download_bytes: AtomicU64,
    allocations: AtomicU64,
}

/// Counts one copy of `bytes` in a pair of [`Counters`] (uploads or downloads).
fn count_copy(copies: &AtomicU64, total: &AtomicU64, bytes: usize) {
    copies.fetch_add(1, Ordering::Relaxed);
    total.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// Checks of the data the device has made for the host (a pooling mask entry that is not an
/// index, ...), read at the host's next wait rather than each at its own: a kernel records the
/// first bad position in a slot (an atomic minimum of a packed word), and [`Device::sync`]
/// reads every pending slot with the same wait, so a training step waits for the GPU only where
/// it reads a result.
///
/// Threads may share a device. A slot is handed out with the lock held ([`CheckSlot`]) until
/// its kernel is queued, so a wait sees the kernel of every check registered before it queued;
/// every wait reads and resets all pending slots, and a finding goes to the thread that queued
/// the check (kept in `found` until that thread next waits).
pub(crate) struct Checks {
    /// `CHECK_SLOTS` words, each `NO_FINDING` until a kernel records something.
    mem: DevMem,
    /// Slots `0..pending.len()` in use, in the order they were handed out.
    pending: Vec<Pending>,
    /// Findings of checks whose thread has not waited since they were read.
    found: Vec<(std::thread::ThreadId, Error)>,
}

/// Words of [`Checks`]: checks queued between two waits before one is forced.
const CHECK_SLOTS: usize = 256;

/// The value of a check slot that found nothing.
const NO_FINDING: u64 = u64::MAX;

/// A queued check: the thread that queued it, the layer it ran in (see [`set_layer`]) and how
/// to report a finding (the slot's word, `finding()` in kernels/common.cuh: the first bad flat
/// index in the high 32 bits, the f32 bits of the value there in the low 32).
struct Pending {
    thread: std::thread::ThreadId,
    layer: Option<(String, String)>,
    report: Box<dyn FnOnce(usize, f32) -> Error + Send>,
}

/// A check slot handed out by [`Device::check_slot`]: its device address, holding
/// [`NO_FINDING`]. Keep it until the kernel that writes the slot is queued.
pub(crate) struct CheckSlot<'a> {
    /// The slot's device address.
    pub addr: u64,
    _held: std::sync::MutexGuard<'a, Checks>,
}

thread_local! {
    /// The layer this thread runs now (name, type), for errors its checks find later.
    static LAYER: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

/// Names the layer whose calls follow on this thread (None: no layer), for checks found later.
pub(crate) fn set_layer(layer: Option<(&str, &str)>) {
    LAYER.with(|now| {
        let mut now = now.borrow_mut();
        match (layer, now.as_mut()) {
            (Some((n, k)), Some((name, kind))) => {
                n.clone_into(name);
                k.clone_into(kind);
            }
            (l, _) => *now = l.map(|(n, k)| (n.to_string(), k.to_string())),
        }
    });
}

/// A GPU, opened.
pub(crate) struct Device {
    pub ordinal: usize,
    pub name: String,
    pub arch: Arch,
    pub sm_count: u32,
    pub total_memory: usize,
    pub options: CudaOptions,
    sync_each_launch: bool,
    now: AtomicUsize,
    peak: AtomicUsize,
    counters: Counters,
    /// Taken after `scratch` where a call holds both.
    checks: Mutex<Checks>,
    // Dropped in this order, before the stream and the context (see Drop).
    pub kernels: Kernels,
    pub dnn: Mutex<Dnn>,
    pub workspace: Mutex<Workspace>,
    pub blas: Mutex<Blas>,
    /// Reduction partials, results and flags laid out as [`scratch`] says: used under its lock.
    pub scratch: Mutex<DevMem>,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
}

impl Device {
    /// Loads the libraries, opens GPU `ordinal` and creates the stream and handles.
    pub fn open(ordinal: usize, options: CudaOptions) -> Result<Arc<Device>> {
        loader::ensure(&Lib::ALL)?;
        let _exclusive = EXCLUSIVE.read().unwrap_or_else(|p| p.into_inner());
        guard(&format!("opening GPU {ordinal}"), || Self::open_loaded(ordinal, options))
    }

    fn open_loaded(ordinal: usize, options: CudaOptions) -> Result<Arc<Device>> {
        let what = format!("opening GPU {ordinal}");
        let err = |e: drv::DriverError| Error::Cuda { what: what.clone(), detail: driver_message(e) };
        drv::init().map_err(err)?;
        let count = drv::device::get_count().map_err(err)?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Cuda {
                what,
                detail: format!("the driver sees {count} GPU{} (numbered from 0)", if count == 1 { "" } else { "s" }),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(err)?;
        // SAFETY: crema never uses cudarc's CudaSlice, whose cross-stream events this turns off;
        // with it off, creating the stream does not synchronise the whole context either.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(err)?;
        let name = ctx.name().map_err(err)?;
        let (major, minor) = ctx.compute_capability().map_err(err)?;
        let sm_count = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(err)?;
        let total_memory = ctx.total_mem().map_err(err)?;
        let arch = Arch { major: major.max(0) as u32, minor: minor.max(0) as u32 };
        let (target_arch, output) = nvrtc::target_for(arch)?;
        let blas = Blas::new(stream.cu_stream(), options.precision)?;
        let dnn = Dnn::new(stream.cu_stream())?;
        let dev = Arc::new(Device {
            ordinal,
            name,
            arch,
            sm_count: sm_count.max(1) as u32,
            total_memory,
            options,
            sync_each_launch: std::env::var_os("CREMA_CUDA_SYNC").is_some_and(|v| v != "0" && !v.is_empty()),
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            counters: Counters::default(),
            checks: Mutex::new(Checks { mem: DevMem { ptr: 0, bytes: 0 }, pending: Vec::new(), found: Vec::new() }),
            kernels: Kernels::new(target_arch, output, Cache::from_env()),
            dnn: Mutex::new(dnn),
            workspace: Mutex::new(Workspace { mem: DevMem { ptr: 0, bytes: 0 } }),
            blas: Mutex::new(blas),
            scratch: Mutex::new(DevMem { ptr: 0, bytes: 0 }),
            stream,
            ctx,
        });
        let scratch = dev.alloc_raw(scratch::WORDS * 8)?;
        *dev.scratch.lock().unwrap_or_else(|p| p.into_inner()) = scratch;
        let slots = dev.alloc_raw(CHECK_SLOTS * 8)?;
        dev.memset(slots.ptr, 0xff, slots.bytes)?;
        dev.checks.lock().unwrap_or_else(|p| p.into_inner()).mem = slots;
        Ok(dev)
    }

    /// Makes this device's context current on the calling thread.
    pub fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| self.driver_error("binding the CUDA context to this thread", e))
    }

    /// The raw stream every call of the backend is queued on.
    pub fn cu_stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }

    /// Most blocks a grid-stride launch uses.
    pub fn max_blocks(&self) -> u32 {
        self.sm_count.saturating_mul(32).max(1)
    }

    /// Whether `CREMA_CUDA_SYNC` asked to wait after every launch (to pin errors on kernels).
    pub fn sync_each_launch(&self) -> bool {
        self.sync_each_launch
    }

    /// Whether TF32 tensor cores are allowed.
    pub fn tf32(&self) -> bool {
        self.options.precision == Precision::Tf32
    }

    /// Waits for the stream, as a raw driver result.
    pub fn stream_sync_raw(&self) -> std::result::Result<(), drv::DriverError> {
        // SAFETY: the stream is live for the device's lifetime.
        unsafe { drv::stream::synchronize(self.cu_stream()) }
    }

    /// Waits for every queued call, then reports the first finding of the checks this thread
    /// queued since its last wait (see [`Checks`]).
    pub fn sync(&self) -> Result<()> {
        self.bind()?;
        let me = std::thread::current().id();
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        let mut words = vec![NO_FINDING; checks.pending.len()];
        if !words.is_empty() {
            // SAFETY: the first `words.len()` slots of the checks buffer, held under its lock;
            // the stream is waited for below before `words` is read.
            unsafe { drv::memcpy_dtoh_async(&mut words[..], checks.mem.ptr, self.cu_stream()) }
                .map_err(|e| self.driver_error("reading the device's checks", e))?;
            count_copy(&self.counters.downloads, &self.counters.download_bytes, std::mem::size_of_val(&words[..]));
        }
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.stream_sync_raw().map_err(|e| self.driver_error("waiting for the GPU (an error from an earlier kernel or copy shows up here; CREMA_CUDA_SYNC=1 pins it on its kernel)", e))?;
        if !words.is_empty() {
            // The slots are reused: back to NO_FINDING, in stream order before any later check.
            self.memset(checks.mem.ptr, 0xff, 8 * words.len())?;
            let pending = std::mem::take(&mut checks.pending);
            for (&w, p) in words.iter().zip(pending).filter(|(w, _)| **w != NO_FINDING) {
                let e = (p.report)((w >> 32) as usize, f32::from_bits(w as u32));
                let e = match p.layer {
                    Some((name, kind)) => e.in_layer(&name, &kind),
                    None => e,
                };
                checks.found.push((p.thread, e));
            }
        }
        // This thread's first finding (those of earlier waits first); its later findings came
        // after the first went wrong and go with it.
        match checks.found.iter().position(|(t, _)| *t == me) {
            None => Ok(()),
            Some(i) => {
                let (_, e) = checks.found.remove(i);
                checks.found.retain(|(t, _)| *t != me);
                Err(e)
            }
        }
    }

    /// A slot for a check a kernel is about to make, and how to report what it finds:
    /// `report(first bad flat index, value there)`, for this thread and the layer it runs. Keep
    /// the slot until the kernel is queued; take the scratch lock, where a call needs it too,
    /// before this. Where every slot is taken, waits first (and fails with what this thread's
    /// checks found by then).
    pub fn check_slot(&self, report: Box<dyn FnOnce(usize, f32) -> Error + Send>) -> Result<CheckSlot<'_>> {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        if checks.pending.len() >= CHECK_SLOTS {
            drop(checks);
            self.sync()?;
            checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        }
        if checks.pending.len() >= CHECK_SLOTS {
            return Err(Error::Internal(format!("all {CHECK_SLOTS} check slots of GPU {} are taken", self.ordinal)));
        }
        let layer = LAYER.with(|l| l.borrow().clone());
        let addr = checks.mem.ptr + 8 * checks.pending.len() as u64;
        checks.pending.push(Pending { thread: std::thread::current().id(), layer, report });
        Ok(CheckSlot { addr, _held: checks })
    }

    /// `bytes` of device memory, zero-filled, counted in [`Device::memory_usage`].
    pub fn alloc_raw(&self, bytes: usize) -> Result<DevMem> {
        if bytes == 0 {
            return Ok(DevMem { ptr: 0, bytes: 0 });
        }
        self.bind()?;
        // SAFETY: a plain allocation on our stream (or synchronous where pools are unsupported).
        let ptr = unsafe {
            if self.ctx.has_async_alloc() { drv::malloc_async(self.cu_stream(), bytes) } else { drv::malloc_sync(bytes) }
        }
        .map_err(|e| match e.0 {
            sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => Error::OutOfMemory { bytes, device: self.describe() },
            _ => self.driver_error(&format!("allocating {bytes} bytes"), e),
        })?;
        // SAFETY: `ptr` holds `bytes` bytes.
        if let Err(e) = unsafe { drv::memset_d8_async(ptr, 0, bytes, self.cu_stream()) } {
            self.free(DevMem { ptr, bytes });
            return Err(self.driver_error(&format!("zeroing {bytes} new bytes"), e));
        }
        self.counters.allocations.fetch_add(1, Ordering::Relaxed);
        let now = self.now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Ok(DevMem { ptr, bytes })
    }

    /// [`Device::alloc_raw`] for one operation: freed when the guard goes.
    pub fn alloc_temp(&self, bytes: usize) -> Result<TempMem<'_>> {
        Ok(TempMem { dev: self, mem: self.alloc_raw(bytes)? })
    }

    /// `n` timing events on this device's stream.
    pub fn timer(&self, n: usize) -> Result<Timer<'_>> {
        self.bind()?;
        let mut timer = Timer { dev: self, events: Vec::with_capacity(n) };
        for _ in 0..n {
            let e = drv::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(|e| self.driver_error("creating a timing event", e))?;
            timer.events.push(e);
        }
        Ok(timer)
    }

    /// Frees memory from [`Device::alloc_raw`], ordered on the stream after its last use.
    pub fn free(&self, mem: DevMem) {
        if mem.ptr == 0 {
            return;
        }
        let _ = self.ctx.bind_to_thread();
        // SAFETY: `mem` came from alloc_raw and is freed once (it is moved in).
        let _ = unsafe {
            if self.ctx.has_async_alloc() { drv::free_async(mem.ptr, self.cu_stream()) } else { drv::free_sync(mem.ptr) }
        };
        self.now.fetch_sub(mem.bytes, Ordering::Relaxed);
    }

    /// Sets `bytes` bytes from device address `ptr` to `value`, in stream order.
    pub fn memset(&self, ptr: u64, value: u8, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: callers pass a range inside memory this device allocated (a buffer, the
        // scratch buffer under its lock, or the workspace under its lock).
        unsafe { drv::memset_d8_async(ptr, value, bytes, self.cu_stream()) }
            .map_err(|e| self.driver_error(&format!("setting {bytes} bytes"), e))
    }

    /// Copies `out.len()` plain values from device address `ptr` to the host and waits for
    /// the stream: the one way the backend reads anything back (results, flags, downloads).
    pub fn read_back<T: Copy>(&self, ptr: u64, out: &mut [T], what: &str) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: callers pass a device range of at least `size_of_val(out)` bytes (held under
        // its lock or owned by a live buffer); the stream is waited for before `out` is read.
        unsafe { drv::memcpy_dtoh_async(out, ptr, self.cu_stream()) }.map_err(|e| self.driver_error(what, e))?;
        count_copy(&self.counters.downloads, &self.counters.download_bytes, std::mem::size_of_val(out));
        self.sync()
    }

    /// Queues a copy of `src` to device address `ptr`. From pageable host memory the driver
    /// stages `src` before returning, so `src` may change afterwards.
    pub fn upload_raw(&self, src: &[f32], ptr: u64, what: &str) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: callers pass a device range of at least `size_of_val(src)` bytes inside a
        // live buffer.
        unsafe { drv::memcpy_htod_async(ptr, src, self.cu_stream()) }.map_err(|e| self.driver_error(what, e))?;
        count_copy(&self.counters.uploads, &self.counters.upload_bytes, std::mem::size_of_val(src));
        Ok(())
    }

    /// Counts a kernel launch.
    pub fn count_launch(&self) {
        self.counters.kernels.fetch_add(1, Ordering::Relaxed);
    }

    /// The device's counts (library calls are added by the backend).
    pub fn activity(&self) -> Activity {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Activity {
            kernels: get(&c.kernels),
            library_calls: 0,
            syncs: get(&c.syncs),
            uploads: get(&c.uploads),
            upload_bytes: get(&c.upload_bytes),
            downloads: get(&c.downloads),
            download_bytes: get(&c.download_bytes),
            allocations: get(&c.allocations),
        }
    }

    /// Bytes allocated now and at most so far.
    pub fn memory_usage(&self) -> (usize, usize) {
        (self.now.load(Ordering::Relaxed), self.peak.load(Ordering::Relaxed))
    }

    /// Sets the high-water mark to what is allocated now.
    pub fn reset_peak(&self) {
        self.peak.store(self.now.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// "NVIDIA H100 80GB HBM3 (GPU 0, sm_90, 79.1 GiB, TF32 allowed)".
    pub fn describe(&self) -> String {
        format!(
            "{} (GPU {}, sm_{}, {:.1} GiB, {})",
            self.name,
            self.ordinal,
            self.arch.number(),
            self.total_memory as f64 / (1u64 << 30) as f64,
            match self.options.precision {
                Precision::Tf32 => "TF32 allowed",
                Precision::Fp32 => "strict FP32",
            }
        )
    }

    /// An error from the driver while doing `what`.
    pub fn driver_error(&self, what: &str, e: drv::DriverError) -> Error {
        Error::Cuda { what: format!("{what} on GPU {}", self.ordinal), detail: driver_message(e) }
    }
}

/// "CUDA_ERROR_OUT_OF_MEMORY (out of memory)".
pub(crate) fn driver_message(e: drv::DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream_sync_raw();
        let ws = std::mem::replace(&mut self.workspace.get_mut().unwrap_or_else(|p| p.into_inner()).mem, DevMem { ptr: 0, bytes: 0 });
        self.free(ws);
        let scratch = std::mem::replace(self.scratch.get_mut().unwrap_or_else(|p| p.into_inner()), DevMem { ptr: 0, bytes: 0 });
        self.free(scratch);
        let slots = std::mem::replace(&mut self.checks.get_mut().unwrap_or_else(|p| p.into_inner()).mem, DevMem { ptr: 0, bytes: 0 });
        self.free(slots);
        let _ = self.stream_sync_raw();
        self.kernels.clear();
        // The cuBLAS and cuDNN handles are destroyed by their own Drop, still with the context
        // bound on this thread, before the stream and the context go.
    }
}
