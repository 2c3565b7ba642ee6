// SPDX-License-Identifier: MPL-2.0
//! What the GPU providers need to know about the machine, found without linking CUDA or
//! TensorRT: the GPU's name and compute capability (CUDA driver API, `libcuda.so.1`), whether
//! TensorRT and ONNX Runtime's TensorRT provider library can be loaded, their versions, and the
//! key under which a built TensorRT engine is cached.

use std::ffi::{CStr, c_char, c_int, c_uint};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where TensorRT engines are cached by default, relative to `$XDG_CACHE_HOME` (default
/// `~/.cache`).
pub const TRT_CACHE_SUBDIR: &str = "gst-yolo/tensorrt";

/// The TensorRT library sonames tried, newest first (JetPack 5 ships TensorRT 8).
const NVINFER_SONAMES: &[&str] = &["libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so.8"];
/// ONNX Runtime loads its TensorRT provider from the directory holding `libonnxruntime.so`.
pub const TRT_PROVIDER_LIB: &str = "libonnxruntime_providers_tensorrt.so";

/// `$XDG_CACHE_HOME/gst-yolo/tensorrt` (or `~/.cache/...`); `None` without either variable.
pub fn default_trt_cache_dir() -> Option<PathBuf> {
    trt_cache_dir_from(|k| std::env::var_os(k))
}

/// [`default_trt_cache_dir`] with the environment passed in (tests need not set variables).
fn trt_cache_dir_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    env("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|p| !p.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|d| d.join(TRT_CACHE_SUBDIR))
}

/// A CUDA device as the driver names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuDevice {
    pub name: String,
    /// (major, minor), e.g. (9, 0) for an H100.
    pub compute_capability: (i32, i32),
}

/// Asks the CUDA driver (`libcuda.so.1`, present wherever the NVIDIA driver is) for the name
/// and compute capability of CUDA device `ordinal` (after `CUDA_VISIBLE_DEVICES`).
pub fn query_device(ordinal: i32) -> Result<GpuDevice, String> {
    type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
    type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
    const CC_MAJOR: c_int = 75; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    const CC_MINOR: c_int = 76;

    // SAFETY: libcuda.so.1 is the NVIDIA driver library; loading it runs no code that depends on
    // our state, and the symbols below are looked up with their documented C signatures.
    let lib = unsafe { libloading::Library::new("libcuda.so.1") }
        .map_err(|e| format!("the CUDA driver library libcuda.so.1 cannot be loaded: {e}"))?;
    // SAFETY: the signatures match cuda.h (CUresult is an int, CUdevice an int).
    unsafe {
        let init: libloading::Symbol<CuInit> = lib.get(b"cuInit\0").map_err(|e| e.to_string())?;
        let get: libloading::Symbol<CuDeviceGet> =
            lib.get(b"cuDeviceGet\0").map_err(|e| e.to_string())?;
        let get_name: libloading::Symbol<CuDeviceGetName> =
            lib.get(b"cuDeviceGetName\0").map_err(|e| e.to_string())?;
        let get_attr: libloading::Symbol<CuDeviceGetAttribute> = lib
            .get(b"cuDeviceGetAttribute\0")
            .map_err(|e| e.to_string())?;
        let rc = init(0);
        if rc != 0 {
            return Err(format!(
                "cuInit failed with CUDA error {rc} (no usable GPU?)"
            ));
        }
        let mut dev: c_int = 0;
        let rc = get(&mut dev, ordinal);
        if rc != 0 {
            return Err(format!(
                "there is no CUDA device {ordinal} (CUDA error {rc})"
            ));
        }
        let mut name = [0 as c_char; 256];
        if get_name(name.as_mut_ptr(), name.len() as c_int - 1, dev) != 0 {
            return Err("cuDeviceGetName failed".into());
        }
        let (mut major, mut minor) = (0, 0);
        get_attr(&mut major, CC_MAJOR, dev);
        get_attr(&mut minor, CC_MINOR, dev);
        let name = CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
        Ok(GpuDevice {
            name,
            compute_capability: (major, minor),
        })
    }
}

/// The ONNX Runtime version string of the library at `path` (already loaded by ort).
pub fn ort_version(path: &Path) -> Option<String> {
    #[repr(C)]
    struct OrtApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const c_char,
    }
    // SAFETY: the library is ONNX Runtime (ort already loaded it from this path, so this only
    // takes another reference); OrtGetApiBase returns a pointer to a static OrtApiBase whose
    // layout is the two function pointers above, and the version string is static.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let base: libloading::Symbol<unsafe extern "C" fn() -> *const OrtApiBase> =
            lib.get(b"OrtGetApiBase\0").ok()?;
        let base = base();
        if base.is_null() {
            return None;
        }
        let v = ((*base).get_version_string)();
        (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

/// TensorRT as found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRtLibs {
    /// The soname that loaded, e.g. `libnvinfer.so.10`.
    pub soname: String,
    /// `getInferLibVersion()`, e.g. 100300 for 10.3.0.
    pub version: i32,
}

/// Checks that TensorRT can actually start next to the ONNX Runtime at `runtime`: its provider
/// library must sit beside `libonnxruntime.so.1` and TensorRT's own library must load. The
/// error says which is missing and how to get it.
pub fn check_tensorrt(runtime: &Path) -> Result<TensorRtLibs, String> {
    if let Some(dir) = runtime.parent().filter(|d| !d.as_os_str().is_empty()) {
        let p = dir.join(TRT_PROVIDER_LIB);
        if !p.exists() {
            return Err(format!(
                "ONNX Runtime's TensorRT provider library {} is missing (this ONNX Runtime \
                 package has no TensorRT support). {}",
                p.display(),
                TRT_HOWTO
            ));
        }
    }
    let mut errs = Vec::new();
    for soname in NVINFER_SONAMES {
        // SAFETY: loading TensorRT's library runs its static initialisers only; the symbol
        // has the C signature `int32_t getInferLibVersion(void)` in every TensorRT release.
        match unsafe { libloading::Library::new(*soname) } {
            Ok(lib) => {
                let version = unsafe {
                    lib.get::<unsafe extern "C" fn() -> i32>(b"getInferLibVersion\0")
                        .map(|f| f())
                        .unwrap_or(0)
                };
                return Ok(TensorRtLibs {
                    soname: soname.to_string(),
                    version,
                });
            }
            Err(e) => errs.push(format!("{soname}: {e}")),
        }
    }
    Err(format!(
        "the TensorRT libraries are not installed or not on the library path ({}). {}",
        errs.join("; "),
        TRT_HOWTO
    ))
}

const TRT_HOWTO: &str = "TensorRT needs an ONNX Runtime build with the TensorRT provider plus \
    the TensorRT release it was built against: on x86-64 the PyPI onnxruntime-gpu wheel (it holds \
    libonnxruntime_providers_tensorrt.so) and NVIDIA's TensorRT libraries (PyPI \
    tensorrt-cu12-libs / tensorrt-cu13-libs, or the TensorRT tarball) on LD_LIBRARY_PATH; on Jetson \
    JetPack's TensorRT with an onnxruntime-gpu wheel built for that JetPack. Or use \
    execution-provider=cuda (or auto, which falls back to CUDA)";

/// Everything that makes a built TensorRT engine valid for reuse. A change in any of them
/// must never pick up an old engine, so they all go into the cache subdirectory's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrtCacheKey {
    /// Content hash of the ONNX file.
    pub model_hash: u128,
    pub model_stem: String,
    pub fp16: bool,
    pub int8: bool,
    /// Content hash of the INT8 calibration table, when one is used.
    pub calibration_hash: Option<u128>,
    pub builder_optimization_level: u8,
    /// Device name and compute capability, or `device<N>` where the driver could not be asked.
    pub gpu: String,
    pub tensorrt_version: i32,
    pub ort_version: String,
}

impl TrtCacheKey {
    pub fn precision(&self) -> &'static str {
        match (self.int8, self.fp16) {
            (true, true) => "int8-fp16",
            (true, false) => "int8",
            (false, true) => "fp16",
            (false, false) => "fp32",
        }
    }

    /// The timing cache's directory name: timings depend on the GPU and TensorRT only.
    pub fn timing_dir_name(&self) -> String {
        format!("{}-trt{}", slug(&self.gpu), self.tensorrt_version)
    }

    /// A readable, filesystem-safe directory name ending in a hash of every field.
    pub fn dir_name(&self) -> String {
        let mut all = String::new();
        let _ = write!(
            all,
            "{:032x}|{}|{}|{}|{:?}|{}|{}|{}|{}",
            self.model_hash,
            self.model_stem,
            self.fp16,
            self.int8,
            self.calibration_hash,
            self.builder_optimization_level,
            self.gpu,
            self.tensorrt_version,
            self.ort_version
        );
        let h = fnv1a128(all.as_bytes());
        format!(
            "{}-{}-{}-trt{}-ort{}-{:016x}",
            slug(&self.model_stem),
            self.precision(),
            slug(&self.gpu),
            self.tensorrt_version,
            slug(&self.ort_version),
            (h >> 64) as u64
        )
    }
}

/// `device` as a cache-key string: "NVIDIA H100 80GB HBM3 sm90", or "device0" when unknown.
pub fn gpu_key(device: Option<&GpuDevice>, device_id: i32) -> String {
    match device {
        Some(d) => format!(
            "{} sm{}{}",
            d.name, d.compute_capability.0, d.compute_capability.1
        ),
        None => format!("device{device_id}"),
    }
}

/// Lower-case ASCII letters, digits, '.', and '-' for everything else (runs collapsed).
fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// 128-bit FNV-1a: a stable content hash (the std hasher may change between Rust releases,
/// which would orphan every cached engine).
pub fn fnv1a128(data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for &b in data {
        h ^= b as u128;
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// Formats `getInferLibVersion()` (TensorRT 10: major*10000 + minor*100 + patch; 8:
/// major*1000 + minor*100 + patch).
pub fn trt_version_string(v: i32) -> String {
    if v >= 10000 {
        format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    } else if v > 0 {
        format!("{}.{}.{}", v / 1000, v / 100 % 10, v % 100)
    } else {
        "unknown".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TrtCacheKey {
        TrtCacheKey {
            model_hash: fnv1a128(b"model"),
            model_stem: "yolov8n".into(),
            fp16: false,
            int8: false,
            calibration_hash: None,
            builder_optimization_level: 3,
            gpu: gpu_key(
                Some(&GpuDevice {
                    name: "NVIDIA H100 80GB HBM3".into(),
                    compute_capability: (9, 0),
                }),
                0,
            ),
            tensorrt_version: 100300,
            ort_version: "1.31.1".into(),
        }
    }

    #[test]
    fn cache_dir_name_is_readable_and_stable() {
        let k = key();
        let d = k.dir_name();
        assert!(
            d.starts_with("yolov8n-fp32-nvidia-h100-80gb-hbm3-sm90-trt100300-ort1.31.1-"),
            "{d}"
        );
        assert_eq!(d, key().dir_name());
        assert!(
            d.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        );
    }

    #[test]
    fn every_field_changes_the_cache_dir() {
        let base = key().dir_name();
        let variants: [fn(&mut TrtCacheKey); 8] = [
            |k| k.model_hash = fnv1a128(b"other model"),
            |k| k.fp16 = true,
            |k| k.int8 = true,
            |k| k.calibration_hash = Some(1),
            |k| k.builder_optimization_level = 5,
            |k| k.gpu = gpu_key(None, 0),
            |k| k.tensorrt_version = 100301,
            |k| k.ort_version = "1.32.0".into(),
        ];
        for (i, f) in variants.iter().enumerate() {
            let mut k = key();
            f(&mut k);
            assert_ne!(k.dir_name(), base, "variant {i}");
        }
    }

    #[test]
    fn gpu_key_falls_back_to_the_device_id() {
        assert_eq!(gpu_key(None, 3), "device3");
    }

    #[test]
    fn fnv_differs_on_one_byte() {
        assert_ne!(fnv1a128(b"abc"), fnv1a128(b"abd"));
        assert_eq!(fnv1a128(b""), 0x6c62272e07bb014262b821756295c58d);
    }

    #[test]
    fn trt_versions() {
        assert_eq!(trt_version_string(100300), "10.3.0");
        assert_eq!(trt_version_string(8601), "8.6.1");
        assert_eq!(trt_version_string(0), "unknown");
    }

    #[test]
    fn missing_tensorrt_is_a_clear_error() {
        // A runtime directory without the provider library: the error names the file and says
        // how to get TensorRT.
        let dir = std::env::temp_dir().join(format!("gst-yolo-trt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = check_tensorrt(&dir.join("libonnxruntime.so.1")).unwrap_err();
        assert!(e.contains(TRT_PROVIDER_LIB), "{e}");
        assert!(e.contains("execution-provider=cuda"), "{e}");
    }

    #[test]
    fn default_cache_dir_ends_in_the_project_subdir() {
        let env = |xdg: &'static str, home: &'static str| {
            move |k: &str| match k {
                "XDG_CACHE_HOME" => Some(xdg.into()),
                "HOME" => Some(home.into()),
                _ => None,
            }
        };
        assert_eq!(
            trt_cache_dir_from(env("/c", "/h")),
            Some(PathBuf::from("/c").join(TRT_CACHE_SUBDIR))
        );
        assert_eq!(
            trt_cache_dir_from(env("", "/h")),
            Some(PathBuf::from("/h/.cache").join(TRT_CACHE_SUBDIR))
        );
        assert_eq!(trt_cache_dir_from(env("", "")), None);
    }
}
