// SPDX-License-Identifier: MPL-2.0
//! The inference engine: loading ONNX Runtime, creating a session on the chosen execution
//! provider, reading the model's Ultralytics metadata and detecting its output head.
//!
//! No GStreamer imports: errors are typed here and become GStreamer errors once, in the element.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::ep;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorRef, ValueType};
use parking_lot::Mutex;

use crate::labels;
use crate::postprocess::{HeadError, HeadLayout};

/// Where the project's set-up script installs ONNX Runtime, relative to `$XDG_DATA_HOME`
/// (default `~/.local/share`).
pub const ORT_INSTALL_SUBDIR: &str = "gst-yolo/onnxruntime";
const ORT_LIB_NAME: &str = "libonnxruntime.so.1";

/// Which ONNX Runtime execution provider runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
    /// TensorRT, then CUDA, then CPU: the first that initialises.
    Auto,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
            Provider::Auto => "auto",
        }
    }
}

/// CUDA execution provider options that change speed or results.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaOptions {
    /// cuDNN convolution algorithm search: exhaustive benchmarking at start (slower start,
    /// fastest kernels) instead of heuristics.
    pub exhaustive_conv_search: bool,
    /// TF32 tensor-core maths: faster, moves boxes by ~1 px.
    pub tf32: bool,
    /// Capture the model in a CUDA graph (static shapes only).
    pub cuda_graph: bool,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            exhaustive_conv_search: true,
            tf32: false,
            cuda_graph: false,
        }
    }
}

/// TensorRT execution provider options.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TensorRtOptions {
    pub fp16: bool,
    pub int8: bool,
    pub int8_calibration_table: Option<PathBuf>,
    /// Engine cache directory; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub timing_cache: bool,
    /// Builder optimisation level 0..=5 (TensorRT's default is 3).
    pub builder_optimization_level: u8,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    pub model: PathBuf,
    pub provider: Provider,
    pub device_id: i32,
    /// ONNX Runtime intra-op threads; 0 = one per available core.
    pub num_threads: usize,
    /// ONNX Runtime's CPU memory arena. On by default: measured (BENCHMARKS.md, "CPU arena")
    /// it is freed with the session, keeps resident memory lower and steadier across 50
    /// start/stop cycles than plain malloc, and runs no slower.
    pub cpu_arena: bool,
    pub cuda: CudaOptions,
    pub tensorrt: TensorRtOptions,
}

impl EngineConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        EngineConfig {
            model: model.into(),
            provider: Provider::Cpu,
            device_id: 0,
            num_threads: 0,
            cpu_arena: true,
            cuda: CudaOptions::default(),
            tensorrt: TensorRtOptions::default(),
        }
    }
}

/// What the model is, from its Ultralytics metadata and its input/output shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub input_name: String,
    pub output_name: String,
    /// Model input (width, height).
    pub input_width: u32,
    pub input_height: u32,
    /// Fixed batch size, or `None` when the batch dimension is dynamic.
    pub batch: Option<usize>,
    /// Class names from the model's `names` metadata, if present.
    pub names: Option<Vec<String>>,
    pub stride: Option<u32>,
    pub task: Option<String>,
    pub head: HeadLayout,
    /// Concrete output shape for batch 1.
    pub output_shape: Vec<i64>,
}

#[derive(Debug)]
pub enum EngineError {
    /// No ONNX Runtime library could be loaded; lists what was tried.
    RuntimeNotFound {
        tried: Vec<(String, String)>,
    },
    ModelNotFound(PathBuf),
    /// The file exists but ONNX Runtime cannot load it (truncated, not ONNX, unsupported ops).
    ModelLoad {
        path: PathBuf,
        reason: String,
    },
    /// The model loads but is not a YOLO detector we support.
    NotADetector {
        path: PathBuf,
        reason: String,
    },
    Head {
        path: PathBuf,
        error: HeadError,
    },
    /// An explicitly requested execution provider could not be registered.
    Provider {
        provider: Provider,
        reason: String,
    },
    Inference(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::RuntimeNotFound { tried } => {
                write!(f, "could not load the ONNX Runtime library; tried:")?;
                for (what, why) in tried {
                    write!(f, "\n  {what}: {why}")?;
                }
                write!(
                    f,
                    "\nInstall it with `scripts/install-onnxruntime.sh` from gst-yolo (it unpacks the \
                     PyPI onnxruntime wheel into $XDG_DATA_HOME/{ORT_INSTALL_SUBDIR}), or point \
                     ORT_DYLIB_PATH at a libonnxruntime.so.1 (1.22 or newer)"
                )
            }
            EngineError::ModelNotFound(p) => write!(
                f,
                "model file {} does not exist: set the `model` property to a YOLO ONNX file \
                 (export one with `yolo export model=yolov8n.pt format=onnx`)",
                p.display()
            ),
            EngineError::ModelLoad { path, reason } => write!(
                f,
                "ONNX Runtime could not load model {}: {reason}. Is the file complete and an ONNX \
                 model? Re-export it with `yolo export format=onnx`",
                path.display()
            ),
            EngineError::NotADetector { path, reason } => write!(
                f,
                "model {} is not a YOLO detector: {reason}",
                path.display()
            ),
            EngineError::Head { path, error } => {
                write!(
                    f,
                    "model {} is not a supported YOLO detector: {error}",
                    path.display()
                )
            }
            EngineError::Provider { provider, reason } => write!(
                f,
                "execution provider `{}` could not be started: {reason}",
                provider.name()
            ),
            EngineError::Inference(reason) => write!(f, "inference failed: {reason}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// A log line from ONNX Runtime, handed to whoever installed a sink (the plugin routes it into
/// GStreamer's debug log).
pub type LogSink = Arc<dyn Fn(ort::logging::LogLevel, &str) + Send + Sync>;

static LOG_SINK: Mutex<Option<LogSink>> = Mutex::new(None);

/// Installs where ONNX Runtime's own log lines go. Call before the first engine is created.
pub fn set_log_sink(sink: LogSink) {
    *LOG_SINK.lock() = Some(sink);
}

// ort allows one environment per process, ever: keep it for the life of the process.
static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

#[derive(Clone)]
struct Runtime {
    env: ort::environment::Environment,
    path: PathBuf,
}

/// The candidates, in order: `ORT_DYLIB_PATH` alone if set; else the project's install
/// location, then the system's library by name.
pub fn runtime_candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut v = Vec::new();
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(d) = data_home {
        v.push(d.join(ORT_INSTALL_SUBDIR).join(ORT_LIB_NAME));
    }
    v.push(PathBuf::from("/usr/local/lib/gst-yolo").join(ORT_LIB_NAME));
    v.push(PathBuf::from(ORT_LIB_NAME));
    v
}

/// Loads ONNX Runtime (once per process) and returns the library path it came from.
pub fn load_runtime() -> Result<PathBuf, EngineError> {
    Ok(runtime()?.path)
}

fn runtime() -> Result<Runtime, EngineError> {
    let mut guard = RUNTIME.lock();
    if let Some(rt) = guard.as_ref() {
        return Ok(rt.clone());
    }
    let mut tried = Vec::new();
    for cand in runtime_candidates() {
        // An absolute path that is not there: say so without asking the loader.
        if cand.is_absolute() && !cand.exists() {
            tried.push((cand.display().to_string(), "no such file".to_string()));
            continue;
        }
        match ort::init_from(&cand) {
            Ok(builder) => {
                let mut builder = builder.with_name("gst-yolo").with_telemetry(false);
                if let Some(sink) = LOG_SINK.lock().clone() {
                    builder = builder.with_logger(Arc::new(move |level, _cat, _id, loc, msg| {
                        sink(level, &format!("{loc}: {msg}"))
                    }));
                }
                let env = builder.build().map_err(|e| EngineError::RuntimeNotFound {
                    tried: vec![(cand.display().to_string(), e.to_string())],
                })?;
                let rt = Runtime { env, path: cand };
                *guard = Some(rt.clone());
                return Ok(rt);
            }
            Err(e) => tried.push((cand.display().to_string(), e.to_string())),
        }
    }
    Err(EngineError::RuntimeNotFound { tried })
}

/// A loaded model on one execution provider.
pub struct Engine {
    session: Session,
    info: ModelInfo,
    provider: Provider,
    runtime_path: PathBuf,
    model_path: PathBuf,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("info", &self.info)
            .field("provider", &self.provider)
            .finish()
    }
}

impl Engine {
    /// Loads ONNX Runtime if needed, creates the session, reads the model's metadata and detects
    /// its head from a warm-up run (which also resolves dynamic output shapes).
    pub fn new(cfg: &EngineConfig) -> Result<Engine, EngineError> {
        if !cfg.model.is_file() {
            return Err(EngineError::ModelNotFound(cfg.model.clone()));
        }
        let rt = runtime()?;
        let (session, provider) = match cfg.provider {
            Provider::Auto => {
                let mut last = None;
                let mut found = None;
                for p in [Provider::TensorRt, Provider::Cuda, Provider::Cpu] {
                    match create_session(&rt, cfg, p) {
                        Ok(s) => {
                            found = Some((s, p));
                            break;
                        }
                        // A broken model fails the same way on every provider.
                        Err(e @ EngineError::ModelLoad { .. }) => return Err(e),
                        Err(e) => last = Some(e),
                    }
                }
                match found {
                    Some(f) => f,
                    None => {
                        return Err(last.unwrap_or(EngineError::Inference("no provider".into())));
                    }
                }
            }
            p => (create_session(&rt, cfg, p)?, p),
        };
        let mut engine = Engine {
            info: read_model_info(&session, &cfg.model)?,
            session,
            provider,
            runtime_path: rt.path.clone(),
            model_path: cfg.model.clone(),
        };
        engine.resolve_head()?;
        Ok(engine)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The provider that actually runs (resolved from `auto`).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    pub fn runtime_path(&self) -> &Path {
        &self.runtime_path
    }

    /// Number of f32 values in one batch item of the input tensor.
    pub fn input_len(&self) -> usize {
        3 * self.info.input_width as usize * self.info.input_height as usize
    }

    /// Runs the model on `batch` items laid out NCHW in `input` and hands the output's shape and
    /// data to `f` (the output lives in ONNX Runtime's memory only for the call).
    pub fn run<R>(
        &mut self,
        input: &[f32],
        batch: usize,
        f: impl FnOnce(&[i64], &[f32]) -> R,
    ) -> Result<R, EngineError> {
        let shape = [
            batch as i64,
            3,
            self.info.input_height as i64,
            self.info.input_width as i64,
        ];
        let need = batch * self.input_len();
        let input = input.get(..need).ok_or_else(|| {
            EngineError::Inference(format!("input has {} values, need {need}", input.len()))
        })?;
        let tensor = TensorRef::from_array_view((shape, input))
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.info.input_name.as_str() => tensor])
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        let out = outputs
            .get(&self.info.output_name)
            .ok_or_else(|| EngineError::Inference("model produced no output".into()))?;
        let (oshape, data) = out
            .try_extract_tensor::<f32>()
            .map_err(|e| EngineError::Inference(format!("output is not an f32 tensor: {e}")))?;
        Ok(f(oshape, data))
    }

    fn resolve_head(&mut self) -> Result<(), EngineError> {
        // Letterbox pad value, so the warm-up sees a realistic (empty) frame.
        let input = vec![crate::preprocess::PAD_VALUE as f32 / 255.0; self.input_len()];
        let shape = self.run(&input, 1, |s, _| s.to_vec())?;
        let num_names = self.info.names.as_ref().map(Vec::len);
        let head = HeadLayout::detect(&shape, num_names).map_err(|error| EngineError::Head {
            path: self.model_path.clone(),
            error,
        })?;
        self.info.head = head;
        self.info.output_shape = shape;
        Ok(())
    }
}

fn provider_error(provider: Provider, e: impl fmt::Display) -> EngineError {
    EngineError::Provider {
        provider,
        reason: e.to_string(),
    }
}

fn create_session(
    rt: &Runtime,
    cfg: &EngineConfig,
    provider: Provider,
) -> Result<Session, EngineError> {
    let model_err = |e: &dyn fmt::Display| EngineError::ModelLoad {
        path: cfg.model.clone(),
        reason: e.to_string(),
    };
    let threads = if cfg.num_threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.num_threads
    };
    let builder = Session::builder(&rt.env).map_err(|e| model_err(&e))?;
    let builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| model_err(&e))?;
    let builder = builder
        .with_intra_threads(threads)
        .map_err(|e| model_err(&e))?;
    let builder = builder.with_inter_threads(1).map_err(|e| model_err(&e))?;
    // Spinning worker threads steal the cores that decoding and pre-processing need.
    let builder = builder
        .with_intra_op_spinning(false)
        .map_err(|e| model_err(&e))?;
    let builder = builder
        .with_inter_op_spinning(false)
        .map_err(|e| model_err(&e))?;

    let cpu = ep::CPU::default()
        .with_arena_allocator(cfg.cpu_arena)
        .build();
    let eps = match provider {
        Provider::Cpu | Provider::Auto => vec![cpu],
        Provider::Cuda => {
            check_available::<ep::CUDA>(provider)?;
            vec![cuda_ep(cfg).error_on_failure(), cpu]
        }
        Provider::TensorRt => {
            check_available::<ep::TensorRT>(provider)?;
            vec![
                tensorrt_ep(cfg).error_on_failure(),
                cuda_ep(cfg).error_on_failure(),
                cpu,
            ]
        }
    };
    // error_on_failure above: a GPU provider that fails to register is an error, never ONNX
    // Runtime's silent fall back to the CPU.
    let mut builder = builder
        .with_execution_providers(eps)
        .map_err(|e| provider_error(provider, e))?;
    let bytes = std::fs::read(&cfg.model).map_err(|e| model_err(&e))?;
    builder.commit_from_memory(&bytes).map_err(|e| {
        let msg = e.to_string();
        if provider != Provider::Cpu
            && (msg.contains("CUDA") || msg.contains("TensorRT") || msg.contains("cuda"))
        {
            provider_error(provider, msg)
        } else {
            model_err(&msg)
        }
    })
}

fn check_available<E: ep::ExecutionProvider>(provider: Provider) -> Result<(), EngineError> {
    match E::is_available() {
        Ok(true) => Ok(()),
        Ok(false) => Err(provider_error(
            provider,
            format!(
                "this ONNX Runtime library was built without {}. Install a GPU build (PyPI \
                 `onnxruntime-gpu`, CUDA 12/13 and cuDNN 9; for TensorRT also the TensorRT \
                 libraries) and point ORT_DYLIB_PATH at its libonnxruntime.so.1, or use \
                 execution-provider=cpu",
                E::NAME
            ),
        )),
        Err(e) => Err(provider_error(provider, e)),
    }
}

fn cuda_ep(cfg: &EngineConfig) -> ep::ExecutionProviderDispatch {
    let search = if cfg.cuda.exhaustive_conv_search {
        ep::cuda::ConvAlgorithmSearch::Exhaustive
    } else {
        ep::cuda::ConvAlgorithmSearch::Heuristic
    };
    ep::CUDA::default()
        .with_device_id(cfg.device_id)
        .with_conv_algorithm_search(search)
        .with_tf32(cfg.cuda.tf32)
        .with_cuda_graph(cfg.cuda.cuda_graph)
        .build()
}

fn tensorrt_ep(cfg: &EngineConfig) -> ep::ExecutionProviderDispatch {
    let t = &cfg.tensorrt;
    let mut e = ep::TensorRT::default()
        .with_device_id(cfg.device_id)
        .with_fp16(t.fp16)
        .with_int8(t.int8)
        .with_timing_cache(t.timing_cache)
        .with_builder_optimization_level(t.builder_optimization_level);
    if let Some(table) = &t.int8_calibration_table {
        e = e.with_int8_calibration_table_name(table.display());
    }
    if let Some(dir) = &t.cache_dir {
        e = e
            .with_engine_cache(true)
            .with_engine_cache_path(dir.display())
            .with_timing_cache_path(dir.display());
    }
    e.build()
}

fn read_model_info(session: &Session, path: &Path) -> Result<ModelInfo, EngineError> {
    let not_det = |reason: String| EngineError::NotADetector {
        path: path.to_path_buf(),
        reason,
    };
    let [input] = session.inputs() else {
        return Err(not_det(format!(
            "it has {} inputs; a YOLO detector has one image input [B, 3, H, W]",
            session.inputs().len()
        )));
    };
    let Some(output) = session.outputs().first() else {
        return Err(not_det("it has no outputs".into()));
    };
    let ValueType::Tensor { shape, .. } = input.dtype() else {
        return Err(not_det("its input is not a tensor".into()));
    };
    let dims: Vec<i64> = shape.iter().copied().collect();
    if dims.len() != 4 || (dims[1] != 3 && dims[1] != -1) {
        return Err(not_det(format!(
            "its input has shape {dims:?}; a YOLO detector takes [B, 3, H, W]"
        )));
    }
    let meta = session.metadata().ok();
    let custom = |k: &str| meta.as_ref().and_then(|m| m.custom(k));
    let names = custom("names").and_then(|s| labels::parse_names(&s));
    let stride = custom("stride").and_then(|s| s.trim().parse::<u32>().ok());
    let task = custom("task");
    if let Some(t) = &task
        && t != "detect"
    {
        return Err(not_det(format!(
            "its Ultralytics metadata says task `{t}`; yolodetect runs `detect` models"
        )));
    }
    let imgsz = custom("imgsz").and_then(|s| labels::parse_imgsz(&s));
    let (h, w) = match (dims[2], dims[3], imgsz) {
        (h, w, _) if h > 0 && w > 0 => (h as u32, w as u32),
        (_, _, Some(hw)) => hw,
        // Dynamic and no metadata: Ultralytics' default size.
        _ => (640, 640),
    };
    Ok(ModelInfo {
        input_name: input.name().to_string(),
        output_name: output.name().to_string(),
        input_width: w,
        input_height: h,
        batch: (dims[0] > 0).then_some(dims[0] as usize),
        names,
        stride,
        task,
        head: HeadLayout::EndToEnd { max_detections: 0 },
        output_shape: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_honour_ort_dylib_path_alone() {
        // Only reads the environment; no library is loaded.
        let c = runtime_candidates();
        assert!(!c.is_empty());
        assert!(c.last().unwrap().ends_with(ORT_LIB_NAME));
    }

    #[test]
    fn runtime_not_found_lists_what_was_tried() {
        let e = EngineError::RuntimeNotFound {
            tried: vec![("/x/libonnxruntime.so.1".into(), "no such file".into())],
        };
        let s = e.to_string();
        assert!(s.contains("/x/libonnxruntime.so.1"));
        assert!(s.contains("ORT_DYLIB_PATH"));
    }

    #[test]
    fn provider_names() {
        assert_eq!(Provider::default(), Provider::Cpu);
        assert_eq!(Provider::TensorRt.name(), "tensorrt");
    }
}
