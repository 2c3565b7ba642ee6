// SPDX-License-Identifier: MPL-2.0
//! GPU pre-processing: colour conversion and letterbox in one CUDA kernel, so a raw frame (NV12,
//! I420 or packed RGB, at its own size) goes up once and the model input is made in device
//! memory, straight into the session's bound input tensor.
//!
//! Route: the kernel is CUDA C compiled at run time with NVRTC for the GPU at hand and launched
//! through the driver API, both loaded with dlopen. So the plugin needs no CUDA toolkit to build,
//! runs on any GPU generation the driver knows (Jetson included), and nothing changes for
//! CPU-only users. It runs in the device's primary context, the one ONNX Runtime's CUDA provider
//! uses, so the kernel writes the session's own input tensor. Frames already in CUDA memory (from
//! `nvh264dec`, in the decoder's own context) are copied device to device into a buffer of ours
//! (unified addressing lets the driver copy across contexts): no pixel crosses PCIe.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::Arc;

use once_cell::sync::OnceCell;
use parking_lot::Mutex;

use crate::frame::{FrameRef, PixelLayout, YuvColor, YuvMatrix};
use crate::preprocess::{Letterbox, PAD_VALUE};

type CuResult = c_int;
type CuDevice = c_int;
type CuContext = *mut c_void;
type CuModule = *mut c_void;
type CuFunction = *mut c_void;
type CuStream = *mut c_void;
pub type DevicePtr = u64;

const CU_MEMORYTYPE_HOST: c_uint = 1;
const CU_MEMORYTYPE_UNIFIED: c_uint = 4;
const CU_STREAM_NON_BLOCKING: c_uint = 1;
const CU_ATTR_CC_MAJOR: c_int = 75;
const CU_ATTR_CC_MINOR: c_int = 76;

/// `CUDA_MEMCPY2D` (driver API, v2).
#[repr(C)]
#[derive(Default)]
struct Memcpy2D {
    src_x_in_bytes: usize,
    src_y: usize,
    src_memory_type: c_uint,
    /// Pointers as integers (same size and ABI) so the struct can derive `Default`.
    src_host: usize,
    src_device: DevicePtr,
    src_array: usize,
    src_pitch: usize,
    dst_x_in_bytes: usize,
    dst_y: usize,
    dst_memory_type: c_uint,
    dst_host: usize,
    dst_device: DevicePtr,
    dst_array: usize,
    dst_pitch: usize,
    width_in_bytes: usize,
    height: usize,
}

/// The driver API entry points used here.
struct Driver {
    _lib: libloading::Library,
    init: unsafe extern "C" fn(c_uint) -> CuResult,
    device_get: unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult,
    device_attr: unsafe extern "C" fn(*mut c_int, c_int, CuDevice) -> CuResult,
    primary_retain: unsafe extern "C" fn(*mut CuContext, CuDevice) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(CuContext) -> CuResult,
    module_load_data: unsafe extern "C" fn(*mut CuModule, *const c_void) -> CuResult,
    module_get_function: unsafe extern "C" fn(*mut CuFunction, CuModule, *const c_char) -> CuResult,
    launch: unsafe extern "C" fn(
        CuFunction,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        CuStream,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CuResult,
    stream_create: unsafe extern "C" fn(*mut CuStream, c_uint) -> CuResult,
    stream_sync: unsafe extern "C" fn(CuStream) -> CuResult,
    stream_destroy: unsafe extern "C" fn(CuStream) -> CuResult,
    mem_alloc: unsafe extern "C" fn(*mut DevicePtr, usize) -> CuResult,
    mem_free: unsafe extern "C" fn(DevicePtr) -> CuResult,
    memcpy_2d_async: unsafe extern "C" fn(*const Memcpy2D, CuStream) -> CuResult,
    memcpy_dtoh_async: unsafe extern "C" fn(*mut c_void, DevicePtr, usize, CuStream) -> CuResult,
    error_string: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    mem_get_info: unsafe extern "C" fn(*mut usize, *mut usize) -> CuResult,
}

macro_rules! sym {
    ($lib:expr, $name:literal) => {
        // SAFETY: the symbol is a driver API function whose C signature matches the field's
        // type (CUDA's cuda.h); the library stays loaded as long as `Driver` lives.
        unsafe {
            *$lib
                .get(concat!($name, "\0").as_bytes())
                .map_err(|e| format!("{}: {e}", $name))?
        }
    };
}

impl Driver {
    fn load() -> Result<Driver, String> {
        // SAFETY: loading the NVIDIA driver library runs its initialisers, which have no
        // preconditions.
        let lib = unsafe { libloading::Library::new("libcuda.so.1") }
            .map_err(|e| format!("the NVIDIA driver library libcuda.so.1 cannot be loaded: {e}"))?;
        Ok(Driver {
            init: sym!(lib, "cuInit"),
            device_get: sym!(lib, "cuDeviceGet"),
            device_attr: sym!(lib, "cuDeviceGetAttribute"),
            primary_retain: sym!(lib, "cuDevicePrimaryCtxRetain"),
            ctx_set_current: sym!(lib, "cuCtxSetCurrent"),
            module_load_data: sym!(lib, "cuModuleLoadData"),
            module_get_function: sym!(lib, "cuModuleGetFunction"),
            launch: sym!(lib, "cuLaunchKernel"),
            stream_create: sym!(lib, "cuStreamCreate"),
            stream_sync: sym!(lib, "cuStreamSynchronize"),
            stream_destroy: sym!(lib, "cuStreamDestroy_v2"),
            mem_alloc: sym!(lib, "cuMemAlloc_v2"),
            mem_free: sym!(lib, "cuMemFree_v2"),
            memcpy_2d_async: sym!(lib, "cuMemcpy2DAsync_v2"),
            memcpy_dtoh_async: sym!(lib, "cuMemcpyDtoHAsync_v2"),
            error_string: sym!(lib, "cuGetErrorString"),
            mem_get_info: sym!(lib, "cuMemGetInfo_v2"),
            _lib: lib,
        })
    }

    fn check(&self, r: CuResult, what: &str) -> Result<(), String> {
        if r == 0 {
            return Ok(());
        }
        let mut s: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorString writes a pointer to a static string (or leaves it null).
        unsafe { (self.error_string)(r, &mut s) };
        let text = if s.is_null() {
            format!("CUDA error {r}")
        } else {
            // SAFETY: non-null: a NUL-terminated static string owned by the driver.
            unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
        };
        Err(format!("{what}: {text}"))
    }
}

static DRIVER: OnceCell<Result<Arc<Driver>, String>> = OnceCell::new();

fn driver() -> Result<Arc<Driver>, String> {
    DRIVER
        .get_or_init(|| {
            let d = Driver::load()?;
            // SAFETY: plain driver call with a flags argument of 0.
            d.check(unsafe { (d.init)(0) }, "cuInit")?;
            Ok(Arc::new(d))
        })
        .clone()
}

/// NVRTC, for compiling the kernel at run time.
fn compile_ptx(src: &str, major: c_int, minor: c_int) -> Result<Vec<u8>, String> {
    let names = [
        "libnvrtc.so.13",
        "libnvrtc.so.12",
        "libnvrtc.so.11.2",
        "libnvrtc.so",
    ];
    let mut errs = Vec::new();
    let lib = names
        .iter()
        .find_map(|n| {
            // SAFETY: loading NVRTC runs its initialisers, which have no preconditions.
            unsafe { libloading::Library::new(*n) }
                .map_err(|e| errs.push(format!("{n}: {e}")))
                .ok()
        })
        .ok_or_else(|| {
            format!(
                "NVRTC (CUDA's run-time compiler, needed to build the GPU pre-processing kernel) \
                 cannot be loaded ({}); install the CUDA runtime's libnvrtc, or set \
                 gpu-preprocess=false",
                errs.join("; ")
            )
        })?;
    type Prog = *mut c_void;
    let create: unsafe extern "C" fn(
        *mut Prog,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int = sym!(lib, "nvrtcCreateProgram");
    let compile: unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> c_int =
        sym!(lib, "nvrtcCompileProgram");
    let ptx_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int = sym!(lib, "nvrtcGetPTXSize");
    let get_ptx: unsafe extern "C" fn(Prog, *mut c_char) -> c_int = sym!(lib, "nvrtcGetPTX");
    let log_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int =
        sym!(lib, "nvrtcGetProgramLogSize");
    let get_log: unsafe extern "C" fn(Prog, *mut c_char) -> c_int = sym!(lib, "nvrtcGetProgramLog");
    let destroy: unsafe extern "C" fn(*mut Prog) -> c_int = sym!(lib, "nvrtcDestroyProgram");

    let csrc = CString::new(src).map_err(|e| e.to_string())?;
    let name = c"letterbox.cu";
    let arch = CString::new(format!("--gpu-architecture=compute_{major}{minor}"))
        .map_err(|e| e.to_string())?;
    let opts = [arch.as_ptr(), c"--use_fast_math".as_ptr()];
    let mut prog: Prog = std::ptr::null_mut();
    // SAFETY: NVRTC calls with valid NUL-terminated strings and out-pointers; the program is
    // destroyed on every path below.
    unsafe {
        if create(
            &mut prog,
            csrc.as_ptr(),
            name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        ) != 0
        {
            return Err("nvrtcCreateProgram failed".into());
        }
        let r = compile(prog, opts.len() as c_int, opts.as_ptr());
        let result = if r != 0 {
            let mut n = 0usize;
            log_size(prog, &mut n);
            let mut log = vec![0u8; n.max(1)];
            get_log(prog, log.as_mut_ptr().cast());
            Err(format!(
                "NVRTC could not compile the pre-processing kernel for compute_{major}{minor}: {}",
                String::from_utf8_lossy(&log).trim_end_matches('\0')
            ))
        } else {
            let mut n = 0usize;
            ptx_size(prog, &mut n);
            let mut ptx = vec![0u8; n.max(1)];
            get_ptx(prog, ptx.as_mut_ptr().cast());
            Ok(ptx)
        };
        destroy(&mut prog);
        result
    }
}

const KERNEL: &str = r#"
// One thread per model-input pixel: pad, or sample the frame with OpenCV's INTER_LINEAR
// (half-pixel centres, edge clamp, no anti-aliasing), converting YUV to RGB first.
__device__ __forceinline__ void rgb_at(
    const unsigned char* p0, const unsigned char* p1, const unsigned char* p2,
    int s0, int s1, int s2, int fmt, int bpp, int ro, int go, int bo, int x, int y,
    const float* k, float* rgb)
{
    if (fmt == 0) {
        const unsigned char* p = p0 + (size_t)y * s0 + (size_t)x * bpp;
        rgb[0] = p[ro]; rgb[1] = p[go]; rgb[2] = p[bo];
        return;
    }
    float Y = p0[(size_t)y * s0 + x];
    float U, V;
    int cx = x >> 1, cy = y >> 1;
    if (fmt == 1) {
        U = p1[(size_t)cy * s1 + cx];
        V = p2[(size_t)cy * s2 + cx];
    } else {
        const unsigned char* uv = p1 + (size_t)cy * s1 + 2 * cx;
        U = uv[0]; V = uv[1];
    }
    float yy = k[0] * (Y - k[1]);
    U -= 128.f; V -= 128.f;
    rgb[0] = yy + k[2] * V;
    rgb[1] = yy + k[3] * U + k[4] * V;
    rgb[2] = yy + k[5] * U;
}

extern "C" __global__ void letterbox(
    const unsigned char* p0, const unsigned char* p1, const unsigned char* p2,
    int s0, int s1, int s2, int fmt, int bpp, int ro, int go, int bo,
    int sw, int sh, float* dst, int dw, int dh, int nw, int nh, int left, int top,
    float k0, float k1, float k2, float k3, float k4, float k5, float pad)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dw || y >= dh) return;
    size_t plane = (size_t)dw * dh, o = (size_t)y * dw + x;
    int ix = x - left, iy = y - top;
    if (ix < 0 || iy < 0 || ix >= nw || iy >= nh) {
        dst[o] = pad; dst[o + plane] = pad; dst[o + 2 * plane] = pad;
        return;
    }
    const float k[6] = {k0, k1, k2, k3, k4, k5};
    double fx = (ix + 0.5) * ((double)sw / nw) - 0.5;
    double fy = (iy + 0.5) * ((double)sh / nh) - 0.5;
    int x0 = (int)floor(fx), y0 = (int)floor(fy);
    float ax = (float)(fx - x0), ay = (float)(fy - y0);
    if (x0 < 0) { x0 = 0; ax = 0.f; }
    if (y0 < 0) { y0 = 0; ay = 0.f; }
    if (x0 >= sw - 1) { x0 = sw - 1; ax = 0.f; }
    if (y0 >= sh - 1) { y0 = sh - 1; ay = 0.f; }
    int x1 = min(x0 + 1, sw - 1), y1 = min(y0 + 1, sh - 1);
    float a[3], b[3], c[3], d[3];
    rgb_at(p0, p1, p2, s0, s1, s2, fmt, bpp, ro, go, bo, x0, y0, k, a);
    rgb_at(p0, p1, p2, s0, s1, s2, fmt, bpp, ro, go, bo, x1, y0, k, b);
    rgb_at(p0, p1, p2, s0, s1, s2, fmt, bpp, ro, go, bo, x0, y1, k, c);
    rgb_at(p0, p1, p2, s0, s1, s2, fmt, bpp, ro, go, bo, x1, y1, k, d);
    for (int ch = 0; ch < 3; ch++) {
        float top_ = a[ch] + ax * (b[ch] - a[ch]);
        float bot_ = c[ch] + ax * (d[ch] - c[ch]);
        float v = top_ + ay * (bot_ - top_);
        v = fminf(fmaxf(v, 0.f), 255.f);
        dst[o + ch * plane] = rintf(v) * (1.f / 255.f);
    }
}
"#;

/// YUV -> RGB as used by the kernel: `yy = k0 * (Y - k1)`, `R = yy + k2 V`,
/// `G = yy + k3 U + k4 V`, `B = yy + k5 U` (U, V centred on 128).
pub fn yuv_kernel_coeffs(color: YuvColor) -> [f32; 6] {
    let (kr, kb) = match color.matrix {
        YuvMatrix::Bt601 => (0.299, 0.114),
        YuvMatrix::Bt709 => (0.2126, 0.0722),
        YuvMatrix::Bt2020 => (0.2627, 0.0593),
    };
    let kg = 1.0 - kr - kb;
    let (ys, yo, cs): (f64, f64, f64) = if color.full_range {
        (1.0, 0.0, 1.0)
    } else {
        (255.0 / 219.0, 16.0, 255.0 / 224.0)
    };
    [
        ys as f32,
        yo as f32,
        (cs * 2.0 * (1.0 - kr)) as f32,
        (-cs * 2.0 * (1.0 - kb) * kb / kg) as f32,
        (-cs * 2.0 * (1.0 - kr) * kr / kg) as f32,
        (cs * 2.0 * (1.0 - kb)) as f32,
    ]
}

/// A frame in device memory, as the kernel reads it.
#[derive(Clone, Copy, Debug)]
pub struct DeviceFrame {
    pub layout: PixelLayout,
    pub color: YuvColor,
    pub width: u32,
    pub height: u32,
    /// (address, row pitch in bytes) per plane; unused planes are (0, 0).
    pub planes: [(DevicePtr, usize); 3],
}

/// A stream's device memory for its frames, with a CUDA stream of its own. Copies go on that
/// non-blocking stream: a copy on the legacy default stream would wait for every model run
/// in the context (ONNX Runtime's streams block with it), serialising all streams' uploads
/// behind inference.
pub struct DeviceBuffer {
    drv: Arc<Driver>,
    ctx: CuContext,
    ptr: DevicePtr,
    len: usize,
    stream: CuStream,
}

// SAFETY: a device allocation is usable from any thread that makes its context current, which
// every method here does first.
unsafe impl Send for DeviceBuffer {}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `stream` came from cuMemAlloc and cuStreamCreate in `ctx`, the
        // retained primary context.
        unsafe {
            (self.drv.ctx_set_current)(self.ctx);
            (self.drv.stream_sync)(self.stream);
            (self.drv.mem_free)(self.ptr);
            (self.drv.stream_destroy)(self.stream);
        }
    }
}

/// The compiled kernel in one device's primary context.
pub struct GpuLetterbox {
    drv: Arc<Driver>,
    ctx: CuContext,
    func: CuFunction,
    /// One stream per worker thread would be nicer; one shared stream under a lock is simpler
    /// and the kernel takes microseconds.
    stream: Mutex<CuStream>,
}

// SAFETY: the context, function and stream handles are plain driver handles usable from any
// thread once the context is current (done before each use); the stream is used under a lock.
unsafe impl Send for GpuLetterbox {}
// SAFETY: as above; nothing is mutated without the lock.
unsafe impl Sync for GpuLetterbox {}

impl Drop for GpuLetterbox {
    fn drop(&mut self) {
        // SAFETY: the stream was created in `ctx`; the primary context and the kernel's module
        // stay for the process (`kernel`), as ONNX Runtime keeps the context too.
        unsafe {
            (self.drv.ctx_set_current)(self.ctx);
            (self.drv.stream_destroy)(*self.stream.get_mut());
        }
    }
}

/// A device's primary context and the letterbox kernel loaded into it.
#[derive(Clone, Copy)]
struct Kernel(CuContext, CuFunction);
// SAFETY: plain driver handles, valid for the process (the primary context stays retained and
// the module loaded), usable from any thread once the context is current.
unsafe impl Send for Kernel {}

/// Compiles the kernel with NVRTC and loads it into `device`'s primary context once per
/// process: a module per session start cost ~1 s of NVRTC and leaked the module (host and GPU
/// memory grew with every model swap and state cycle on the GPU host).
fn kernel(d: &Driver, device: i32) -> Result<(CuContext, CuFunction), String> {
    static KERNELS: Mutex<Vec<(i32, Kernel)>> = Mutex::new(Vec::new());
    let mut kernels = KERNELS.lock();
    if let Some((_, k)) = kernels.iter().find(|(dev, _)| *dev == device) {
        return Ok((k.0, k.1));
    }
    let mut dev: CuDevice = 0;
    let (mut major, mut minor) = (0, 0);
    let mut ctx: CuContext = std::ptr::null_mut();
    // SAFETY: driver calls with valid out-pointers.
    unsafe {
        d.check((d.device_get)(&mut dev, device), "cuDeviceGet")?;
        d.check(
            (d.device_attr)(&mut major, CU_ATTR_CC_MAJOR, dev),
            "compute capability",
        )?;
        d.check(
            (d.device_attr)(&mut minor, CU_ATTR_CC_MINOR, dev),
            "compute capability",
        )?;
        d.check(
            (d.primary_retain)(&mut ctx, dev),
            "cuDevicePrimaryCtxRetain",
        )?;
        d.check((d.ctx_set_current)(ctx), "cuCtxSetCurrent")?;
    }
    let ptx = compile_ptx(KERNEL, major, minor)?;
    let mut module: CuModule = std::ptr::null_mut();
    let mut func: CuFunction = std::ptr::null_mut();
    // SAFETY: `ptx` is NUL-terminated PTX from NVRTC; out-pointers are valid.
    unsafe {
        d.check(
            (d.module_load_data)(&mut module, ptx.as_ptr().cast()),
            "loading the pre-processing kernel",
        )?;
        d.check(
            (d.module_get_function)(&mut func, module, c"letterbox".as_ptr()),
            "cuModuleGetFunction",
        )?;
    }
    kernels.push((device, Kernel(ctx, func)));
    Ok((ctx, func))
}

impl GpuLetterbox {
    /// The kernel for `device` (compiled and loaded once per process, see [`kernel`]) with a
    /// stream of its own.
    pub fn new(device: i32) -> Result<GpuLetterbox, String> {
        let drv = driver()?;
        let (ctx, func) = kernel(&drv, device)?;
        let mut stream: CuStream = std::ptr::null_mut();
        // SAFETY: `ctx` is the retained primary context; the out-pointer is valid.
        unsafe {
            drv.check((drv.ctx_set_current)(ctx), "cuCtxSetCurrent")?;
            drv.check(
                (drv.stream_create)(&mut stream, CU_STREAM_NON_BLOCKING),
                "cuStreamCreate",
            )?;
        }
        Ok(GpuLetterbox {
            drv,
            ctx,
            func,
            stream: Mutex::new(stream),
        })
    }

    fn make_current(&self) -> Result<(), String> {
        // SAFETY: `ctx` is the retained primary context.
        self.drv.check(
            unsafe { (self.drv.ctx_set_current)(self.ctx) },
            "cuCtxSetCurrent",
        )
    }

    /// The device's memory in use (by every process) and in all, in bytes, for monitoring.
    pub fn memory_used(&self) -> Result<(u64, u64), String> {
        self.make_current()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: valid out-pointers; the context is current on this thread.
        self.drv.check(
            unsafe { (self.drv.mem_get_info)(&mut free, &mut total) },
            "cuMemGetInfo",
        )?;
        Ok(((total - free.min(total)) as u64, total as u64))
    }

    /// Copies `frame`'s planes (host memory) into `buf` (grown as needed) and describes them.
    pub fn upload(
        &self,
        frame: &FrameRef<'_>,
        buf: &mut Option<DeviceBuffer>,
    ) -> Result<DeviceFrame, String> {
        let rows = plane_rows(frame.layout, frame.height);
        let widths = plane_width_bytes(frame.layout, frame.width);
        let mut sources = [(0u64, 0usize); 3];
        for (i, p) in frame
            .planes
            .iter()
            .enumerate()
            .take(frame.layout.n_planes())
        {
            let need = p.stride * rows[i].saturating_sub(1) + widths[i];
            if rows[i] > 0 && p.data.len() < need {
                return Err(format!(
                    "plane {i} has {} bytes, its geometry needs {need}",
                    p.data.len()
                ));
            }
            sources[i] = (p.data.as_ptr() as u64, p.stride);
        }
        self.copy_in(frame, sources, CU_MEMORYTYPE_HOST, buf)
    }

    /// Copies a frame that is already in CUDA memory (any context of this device, e.g. a
    /// decoder's) into `buf`, device to device.
    pub fn copy_device(
        &self,
        frame: &DeviceFrame,
        buf: &mut Option<DeviceBuffer>,
    ) -> Result<DeviceFrame, String> {
        let f = FrameRef {
            layout: frame.layout,
            width: frame.width,
            height: frame.height,
            planes: [crate::frame::Plane {
                data: &[],
                stride: 0,
            }; 3],
            color: frame.color,
        };
        self.copy_in(&f, frame.planes, CU_MEMORYTYPE_UNIFIED, buf)
    }

    fn copy_in(
        &self,
        frame: &FrameRef<'_>,
        sources: [(u64, usize); 3],
        src_type: c_uint,
        buf: &mut Option<DeviceBuffer>,
    ) -> Result<DeviceFrame, String> {
        self.make_current()?;
        let rows = plane_rows(frame.layout, frame.height);
        let widths = plane_width_bytes(frame.layout, frame.width);
        let n = frame.layout.n_planes();
        // Tightly packed, 256-byte aligned planes.
        let mut offsets = [0usize; 3];
        let mut total = 0usize;
        for i in 0..n {
            offsets[i] = total;
            total += (widths[i] * rows[i]).div_ceil(256) * 256;
        }
        if buf.as_ref().is_none_or(|b| b.len < total) {
            *buf = None; // freed before the larger one is taken
            let mut ptr: DevicePtr = 0;
            let mut stream: CuStream = std::ptr::null_mut();
            // SAFETY: valid out-pointers; the context is current.
            unsafe {
                self.drv.check(
                    (self.drv.stream_create)(&mut stream, CU_STREAM_NON_BLOCKING),
                    "cuStreamCreate",
                )?;
                if let Err(e) = self.drv.check(
                    (self.drv.mem_alloc)(&mut ptr, total.max(256)),
                    "allocating device memory for a frame",
                ) {
                    (self.drv.stream_destroy)(stream);
                    return Err(e);
                }
            }
            *buf = Some(DeviceBuffer {
                drv: self.drv.clone(),
                ctx: self.ctx,
                ptr,
                len: total.max(256),
                stream,
            });
        }
        let (base, stream) = buf
            .as_ref()
            .map_or((0, std::ptr::null_mut()), |b| (b.ptr, b.stream));
        let mut planes = [(0u64, 0usize); 3];
        for i in 0..n {
            let (src, pitch) = sources[i];
            let dst = base + offsets[i] as u64;
            let mut c = Memcpy2D {
                src_memory_type: src_type,
                src_pitch: pitch,
                dst_memory_type: CU_MEMORYTYPE_UNIFIED,
                dst_device: dst,
                dst_pitch: widths[i],
                width_in_bytes: widths[i],
                height: rows[i],
                ..Default::default()
            };
            if src_type == CU_MEMORYTYPE_HOST {
                c.src_host = src as usize;
            } else {
                c.src_device = src;
            }
            // SAFETY: the source rows lie inside the mapped frame (checked by the caller for
            // host memory; described by the frame's own mapping for device memory) and the
            // destination inside `buf`, sized above.
            self.drv.check(
                unsafe { (self.drv.memcpy_2d_async)(&c, stream) },
                "copying a frame to the GPU",
            )?;
            planes[i] = (dst, widths[i]);
        }
        // The source is only borrowed until this returns.
        // SAFETY: a stream created in this context.
        self.drv.check(
            unsafe { (self.drv.stream_sync)(stream) },
            "copying a frame to the GPU",
        )?;
        Ok(DeviceFrame {
            layout: frame.layout,
            color: frame.color,
            width: frame.width,
            height: frame.height,
            planes,
        })
    }

    /// Queues the letterbox of `frame` into the model input at `dst` (3 x h x w floats).
    pub fn letterbox(
        &self,
        frame: &DeviceFrame,
        dst: DevicePtr,
        w: u32,
        h: u32,
    ) -> Result<(), String> {
        if frame.width == 0 || frame.height == 0 {
            return Err("empty frame".into());
        }
        self.make_current()?;
        let lb = Letterbox::new(frame.width, frame.height, w, h);
        let (fmt, bpp, ro, go, bo): (c_int, c_int, c_int, c_int, c_int) =
            match frame.layout.packed_rgb() {
                Some((bpp, r, g, b)) => (0, bpp as c_int, r as c_int, g as c_int, b as c_int),
                None if frame.layout == PixelLayout::I420 => (1, 1, 0, 0, 0),
                None => (2, 1, 0, 0, 0),
            };
        let k = yuv_kernel_coeffs(frame.color);
        let pad = PAD_VALUE as f32 / 255.0;
        let mut p = frame.planes.map(|(ptr, _)| ptr);
        let mut s = frame.planes.map(|(_, pitch)| pitch as c_int);
        let (mut fmt, mut bpp, mut ro, mut go, mut bo) = (fmt, bpp, ro, go, bo);
        let (mut sw, mut sh) = (frame.width as c_int, frame.height as c_int);
        let mut dst = dst;
        let (mut dw, mut dh) = (w as c_int, h as c_int);
        let (mut nw, mut nh) = (lb.new_w as c_int, lb.new_h as c_int);
        let (mut left, mut top) = (lb.pad_left as c_int, lb.pad_top as c_int);
        let [mut k0, mut k1, mut k2, mut k3, mut k4, mut k5] = k;
        let mut pad = pad;
        let mut args: [*mut c_void; 27] = [
            (&mut p[0] as *mut u64).cast(),
            (&mut p[1] as *mut u64).cast(),
            (&mut p[2] as *mut u64).cast(),
            (&mut s[0] as *mut c_int).cast(),
            (&mut s[1] as *mut c_int).cast(),
            (&mut s[2] as *mut c_int).cast(),
            (&mut fmt as *mut c_int).cast(),
            (&mut bpp as *mut c_int).cast(),
            (&mut ro as *mut c_int).cast(),
            (&mut go as *mut c_int).cast(),
            (&mut bo as *mut c_int).cast(),
            (&mut sw as *mut c_int).cast(),
            (&mut sh as *mut c_int).cast(),
            (&mut dst as *mut u64).cast(),
            (&mut dw as *mut c_int).cast(),
            (&mut dh as *mut c_int).cast(),
            (&mut nw as *mut c_int).cast(),
            (&mut nh as *mut c_int).cast(),
            (&mut left as *mut c_int).cast(),
            (&mut top as *mut c_int).cast(),
            (&mut k0 as *mut f32).cast(),
            (&mut k1 as *mut f32).cast(),
            (&mut k2 as *mut f32).cast(),
            (&mut k3 as *mut f32).cast(),
            (&mut k4 as *mut f32).cast(),
            (&mut k5 as *mut f32).cast(),
            (&mut pad as *mut f32).cast(),
        ];
        let stream = self.stream.lock();
        let (bx, by) = (32u32, 8u32);
        // SAFETY: the arguments match the kernel's parameter list in order and type; the
        // kernel reads only inside the frame's planes (coordinates clamped to the frame) and
        // writes only the 3 x h x w floats at `dst`, which the caller owns.
        self.drv.check(
            unsafe {
                (self.drv.launch)(
                    self.func,
                    w.div_ceil(bx),
                    h.div_ceil(by),
                    1,
                    bx,
                    by,
                    1,
                    0,
                    *stream,
                    args.as_mut_ptr(),
                    std::ptr::null_mut(),
                )
            },
            "launching the pre-processing kernel",
        )
    }

    /// Copies `dst.len()` floats of device memory at `src` into `dst` (the model's output,
    /// straight into the buffer the streams read, on the kernel stream: not the legacy one).
    pub fn copy_to_host(&self, src: DevicePtr, dst: &mut [f32]) -> Result<(), String> {
        self.make_current()?;
        let stream = self.stream.lock();
        // SAFETY: `src` holds at least `dst.len()` floats of device memory (the bound output
        // tensor) and `dst` is writable host memory of that size; the copy is complete when the
        // stream synchronises, before `dst`'s borrow ends.
        unsafe {
            self.drv.check(
                (self.drv.memcpy_dtoh_async)(
                    dst.as_mut_ptr().cast(),
                    src,
                    std::mem::size_of_val(dst),
                    *stream,
                ),
                "copying the output to the host",
            )?;
            self.drv.check(
                (self.drv.stream_sync)(*stream),
                "copying the output to the host",
            )
        }
    }

    /// Waits for the queued kernels.
    pub fn sync(&self) -> Result<(), String> {
        self.make_current()?;
        let stream = self.stream.lock();
        // SAFETY: a stream created in this context.
        self.drv.check(
            unsafe { (self.drv.stream_sync)(*stream) },
            "the pre-processing kernel",
        )
    }
}

/// Rows of each plane.
fn plane_rows(layout: PixelLayout, h: u32) -> [usize; 3] {
    let (h, ch) = (h as usize, (h as usize).div_ceil(2));
    match layout {
        PixelLayout::I420 => [h, ch, ch],
        PixelLayout::Nv12 => [h, ch, 0],
        _ => [h, 0, 0],
    }
}

/// Bytes per row of each plane (without padding).
fn plane_width_bytes(layout: PixelLayout, w: u32) -> [usize; 3] {
    let (w, cw) = (w as usize, (w as usize).div_ceil(2));
    match layout {
        PixelLayout::I420 => [w, cw, cw],
        PixelLayout::Nv12 => [w, 2 * cw, 0],
        l => [w * l.packed_rgb().map_or(3, |p| p.0), 0, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_geometry_covers_odd_sizes() {
        assert_eq!(plane_rows(PixelLayout::Nv12, 1081), [1081, 541, 0]);
        assert_eq!(plane_width_bytes(PixelLayout::Nv12, 1919), [1919, 1920, 0]);
        assert_eq!(plane_width_bytes(PixelLayout::I420, 5), [5, 3, 3]);
        assert_eq!(plane_width_bytes(PixelLayout::Bgrx, 10), [40, 0, 0]);
    }

    #[test]
    fn kernel_coefficients_give_white_and_black() {
        // Limited-range BT.601: Y=235, U=V=128 is white; Y=16 is black.
        let k = yuv_kernel_coeffs(YuvColor::default());
        let rgb = |y: f32, u: f32, v: f32| {
            let yy = k[0] * (y - k[1]);
            let (u, v) = (u - 128.0, v - 128.0);
            [yy + k[2] * v, yy + k[3] * u + k[4] * v, yy + k[5] * u]
        };
        for c in rgb(235.0, 128.0, 128.0) {
            assert!((c - 255.0).abs() < 0.01, "{c}");
        }
        for c in rgb(16.0, 128.0, 128.0) {
            assert!(c.abs() < 0.01, "{c}");
        }
        // Pure red in BT.601 limited range: (81, 90, 240).
        let r = rgb(81.0, 90.0, 240.0);
        assert!(r[0] > 250.0 && r[1] < 5.0 && r[2] < 5.0, "{r:?}");
    }

    #[test]
    fn no_gpu_is_a_clear_error() {
        // On a machine without the NVIDIA driver this must fail cleanly, naming the library;
        // with a GPU it compiles the kernel.
        match GpuLetterbox::new(0) {
            Ok(_) => {}
            Err(e) => assert!(
                e.contains("libcuda") || e.contains("NVRTC") || e.contains("CUDA"),
                "{e}"
            ),
        }
    }
}
