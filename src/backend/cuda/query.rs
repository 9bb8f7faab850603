//! `device_query`: what crema knows about a GPU and the CUDA libraries it loaded, for
//! `crema device_query --gpu N`.

use super::loader::{self, Lib};
use super::nvrtc::{self, guard};
use super::{blas, dnn};
use crate::{Error, Result};
use cudarc::driver::{result as drv, sys, CudaContext};
use std::fmt;
use std::path::PathBuf;

/// A GPU and the CUDA software crema uses on it.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// The GPU's number.
    pub ordinal: usize,
    /// How many GPUs the driver sees.
    pub device_count: usize,
    /// The GPU's name ("NVIDIA H100 80GB HBM3").
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// Streaming multiprocessors.
    pub multiprocessors: u32,
    /// Global memory in bytes.
    pub total_memory: usize,
    /// Free global memory in bytes, now.
    pub free_memory: usize,
    /// The CUDA version the driver supports, as `major * 1000 + minor * 10` (13000 = 13.0).
    pub driver_version: i32,
    /// NVRTC's version (major, minor).
    pub nvrtc_version: (i32, i32),
    /// cuBLAS's version as `major * 10000 + minor * 100 + patch`.
    pub cublas_version: i32,
    /// cuDNN's version as cuDNN 9 numbers it (`major * 10000 + minor * 100 + patch`).
    pub cudnn_version: usize,
    /// The CUDA runtime version cuDNN was built with (`major * 1000 + minor * 10`).
    pub cudnn_cuda_version: usize,
    /// Each library crema opened: what it is, and the file.
    pub libraries: Vec<(String, PathBuf)>,
}

/// How many GPUs the driver sees (loads only the driver). Fails with [`Error::Cuda`] naming
/// the library and where crema looked when there is no CUDA driver.
pub fn device_count() -> Result<usize> {
    loader::ensure(&[Lib::Driver])?;
    let _exclusive = super::device::EXCLUSIVE.read().unwrap_or_else(|p| p.into_inner());
    guard("counting GPUs", || {
        let err = |e: drv::DriverError| Error::Cuda { what: "counting GPUs".into(), detail: super::device::driver_message(e) };
        drv::init().map_err(err)?;
        Ok(drv::device::get_count().map_err(err)?.max(0) as usize)
    })
}

/// Loads the CUDA libraries and describes GPU `ordinal`, without compiling anything.
pub fn device_query(ordinal: usize) -> Result<DeviceInfo> {
    let loaded = loader::ensure(&Lib::ALL)?;
    let _exclusive = super::device::EXCLUSIVE.read().unwrap_or_else(|p| p.into_inner());
    let what = format!("querying GPU {ordinal}");
    guard(&what.clone(), move || {
        let err = |e: drv::DriverError| Error::Cuda { what: what.clone(), detail: super::device::driver_message(e) };
        drv::init().map_err(err)?;
        let count = drv::device::get_count().map_err(err)?.max(0) as usize;
        if ordinal >= count {
            return Err(Error::Cuda { what: what.clone(), detail: format!("the driver sees {count} GPU(s) (numbered from 0)") });
        }
        let ctx = CudaContext::new(ordinal).map_err(err)?;
        let (major, minor) = ctx.compute_capability().map_err(err)?;
        let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(err)?;
        let (free_memory, _) = ctx.mem_get_info().map_err(err)?;
        let mut driver_version = 0;
        // SAFETY: a valid out-pointer; the driver is loaded and initialised.
        unsafe { sys::cuDriverGetVersion(&mut driver_version) }.result().map_err(err)?;
        let (cudnn_version, cudnn_cuda_version) = dnn::versions()?;
        let mut libraries = Vec::new();
        for l in &loaded {
            libraries.push((l.what.to_string(), l.path.clone()));
            libraries.extend(l.companions.iter().map(|c| (format!("  (with {})", l.what), c.clone())));
        }
        Ok(DeviceInfo {
            ordinal,
            device_count: count,
            name: ctx.name().map_err(err)?,
            compute_capability: (major.max(0) as u32, minor.max(0) as u32),
            multiprocessors: sms.max(0) as u32,
            total_memory: ctx.total_mem().map_err(err)?,
            free_memory,
            driver_version,
            nvrtc_version: nvrtc::version()?,
            cublas_version: blas::version()?,
            cudnn_version,
            cudnn_cuda_version,
            libraries,
        })
    })
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cuda = |v: i64| format!("{}.{}", v / 1000, (v % 1000) / 10);
        let triple = |v: i64| format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
        writeln!(f, "Device id:                 {} (of {})", self.ordinal, self.device_count)?;
        writeln!(f, "Name:                      {}", self.name)?;
        writeln!(f, "Compute capability:        {}.{}", self.compute_capability.0, self.compute_capability.1)?;
        writeln!(f, "Multiprocessors:           {}", self.multiprocessors)?;
        writeln!(f, "Total global memory:       {} bytes ({:.1} GiB)", self.total_memory, gib(self.total_memory))?;
        writeln!(f, "Free global memory:        {} bytes ({:.1} GiB)", self.free_memory, gib(self.free_memory))?;
        writeln!(f, "CUDA driver version:       {}", cuda(self.driver_version as i64))?;
        writeln!(f, "NVRTC version:             {}.{}", self.nvrtc_version.0, self.nvrtc_version.1)?;
        writeln!(f, "cuBLAS version:            {}", triple(self.cublas_version as i64))?;
        writeln!(f, "cuDNN version:             {} (built for CUDA {})", triple(self.cudnn_version as i64), cuda(self.cudnn_cuda_version as i64))?;
        writeln!(f, "Libraries:")?;
        for (what, path) in &self.libraries {
            writeln!(f, "  {what}: {}", path.display())?;
        }
        Ok(())
    }
}
