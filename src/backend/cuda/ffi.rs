//! Function tables of NVRTC, cuBLAS and cuDNN, resolved from the very files [`super::loader`]
//! opened.
//!
//! cudarc's bindings open each library themselves, by bare name, on first use, and they try the
//! unversioned development name first (`libcudnn.so`, `libcublas.so`, `libnvrtc.so`). On a
//! machine with two installations (a CUDA toolkit or system cuDNN beside NVIDIA's pip wheels,
//! which is how the GPU machines crema is tested on are set up), that name finds another copy
//! than the one crema chose, preloaded with its companions and reported by `device_query`. The
//! front library of one copy then runs with the companions of the other: for cuDNN that failed
//! every convolution with `CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH` on an H200 (another cuDNN,
//! 9.14 against PyTorch's wheel, 9.19). So crema calls these three libraries only through the
//! tables declared with [`library_api!`], and cudarc supplies their C types alone. The CUDA
//! driver is the exception: there is one per machine, and cudarc's open of `libcuda.so` finds
//! the same file.

use super::loader::{self, Lib};
use crate::{Error, Result};
use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
use std::sync::Mutex;

/// Handles behind the tables: kept open for the life of the process (the loader's are too).
static KEPT: Mutex<Vec<Library>> = Mutex::new(Vec::new());

/// Declares a table of C functions of one library: `field = cSymbol(arg types) -> return;`,
/// each required, then optionally `@optional { ... }` for functions only newer versions have
/// (fields of `Option` type). `Table::get()` resolves it on first use; a failure is reported
/// and tried again on the next call, as the loader's are.
macro_rules! library_api {
    (
        $(#[$doc:meta])* struct $api:ident from $lib:expr;
        $($field:ident = $sym:ident ($($arg:ty),*) $(-> $ret:ty)?;)*
        $(@optional { $($ofield:ident = $osym:ident ($($oarg:ty),*) $(-> $oret:ty)?;)* })?
    ) => {
        $(#[$doc])*
        pub(crate) struct $api {
            $(pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            $($(pub $ofield: Option<unsafe extern "C" fn($($oarg),*) $(-> $oret)?>,)*)?
        }

        impl $api {
            /// The table, from the library file the loader opens (or has opened).
            pub fn get() -> crate::Result<&'static $api> {
                static API: std::sync::OnceLock<$api> = std::sync::OnceLock::new();
                if let Some(api) = API.get() {
                    return Ok(api);
                }
                let api = crate::backend::cuda::ffi::with_library($lib, |lib| {
                    // SAFETY: each symbol is the library's C function of that name, whose
                    // signature (as its header declares it, and cudarc's bindings with it) is the
                    // field's type.
                    unsafe {
                        Ok($api {
                            $($field: *lib
                                .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(concat!(stringify!($sym), "\0").as_bytes())
                                .map_err(|e| format!("{}: {e}", stringify!($sym)))?,)*
                            $($($ofield: lib
                                .get::<unsafe extern "C" fn($($oarg),*) $(-> $oret)?>(concat!(stringify!($osym), "\0").as_bytes())
                                .ok()
                                .map(|s| *s),)*)?
                        })
                    }
                })?;
                Ok(API.get_or_init(|| api))
            }
        }
    };
}
pub(crate) use library_api;

/// Opens `lib` through the loader, then takes another reference to the very file it opened and
/// reads a table from it with `read` (which names a missing function in its error).
pub(crate) fn with_library<T>(lib: Lib, read: impl FnOnce(&Library) -> std::result::Result<T, String>) -> Result<T> {
    let loaded = loader::ensure(&[lib])?;
    let path = loaded.first().map(|l| l.path.clone()).ok_or_else(|| Error::Internal(format!("the loader returned no {lib:?}")))?;
    let what = || format!("reading the functions of {}", path.display());
    // SAFETY: the loader has this file open already, so this only takes another reference to it
    // (its initialisers have run); a bare name resolves to the object the loader opened.
    let handle = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| Error::Cuda { what: what(), detail: e.to_string() })?;
    let table = read(&handle).map_err(|detail| Error::Cuda { what: what(), detail: format!("a function is missing: {detail}") })?;
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
    Ok(table)
}
