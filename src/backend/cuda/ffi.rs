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
            fn cell() -> &'static std::sync::OnceLock<$api> {
                static API: std::sync::OnceLock<$api> = std::sync::OnceLock::new();
                &API
            }

            /// The table, where an earlier [`Self::get`] has read it (never opens the library).
            #[allow(dead_code)]
            pub fn loaded() -> Option<&'static $api> {
                Self::cell().get()
            }

            /// The table, from the library file the loader opens (or has opened).
            pub fn get() -> crate::Result<&'static $api> {
                let cell = Self::cell();
                if let Some(api) = cell.get() {
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
                Ok(cell.get_or_init(|| api))
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

/// Declares `$name`, the integer behind a C enum of cudarc's bindings (`$enum`) that a library
/// hands back: a status it returns, a field of a result it fills in. Read into the bindings'
/// Rust enum, a value they lack (one a newer library added: cuDNN 9's status sub-codes grew
/// from 9.1 to 9.2, NVRTC's result codes with nearly every CUDA release) would be undefined
/// behaviour; held as its integer, it is only a number to report. Values crema passes in are
/// made from the bindings' variants (`From`). With a list of variants, `known()` gives the
/// bindings' variant of a value and `Debug` its name (else `$name(value)`); without one, the
/// type implements `Debug` itself (statuses ask their library for the name).
macro_rules! c_enum {
    ($(#[$doc:meta])* $name:ident = $enum:ty $({ $($v:ident),* $(,)? })?) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) struct $name(pub u32);

        impl From<$enum> for $name {
            fn from(v: $enum) -> Self {
                $name(v as u32)
            }
        }

        $(
            impl $name {
                /// The bindings' variant of this value, where they have one.
                #[allow(dead_code)]
                pub fn known(self) -> Option<$enum> {
                    type E = $enum;
                    [$(E::$v),*].into_iter().find(|&v| v as u32 == self.0)
                }
            }

            impl std::fmt::Debug for $name {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    match self.known() {
                        Some(v) => write!(f, "{v:?}"),
                        None => write!(f, "{}({})", stringify!($name), self.0),
                    }
                }
            }
        )?
    };
}
pub(crate) use c_enum;

/// A library's name for a status value and the value, `NAME (value)`, from one of its
/// `*GetErrorString`-like functions (which return a static NUL-terminated string, or null), else
/// `what (value)`.
pub(crate) fn status_name(f: Option<unsafe extern "C" fn(u32) -> *const std::ffi::c_char>, what: &str, value: u32) -> String {
    // SAFETY: such functions take any value and return a static string or null.
    let p = f.map_or(std::ptr::null(), |f| unsafe { f(value) });
    // SAFETY: a NUL-terminated static string.
    let name = if p.is_null() { String::new() } else { unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().trim().to_string() };
    format!("{} ({value})", if name.is_empty() { what } else { &name })
}
