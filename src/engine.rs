// SPDX-License-Identifier: MPL-2.0
//! The inference engine: loading ONNX Runtime, creating a session on the chosen execution
//! provider, reading the model's Ultralytics metadata and detecting its output head.
//!
//! No GStreamer imports: errors are typed here and become GStreamer errors once, in the element.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ort::ep::{self, ExecutionProvider as _};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorRef, ValueType};
use parking_lot::Mutex;

use crate::labels;
use crate::postprocess::{HeadError, HeadLayout};

pub mod binding;
pub mod gpu;

use binding::{DeviceIo, Memory};

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

/// How cuDNN picks convolution algorithms (ONNX Runtime's `cudnn_conv_algo_search`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConvAlgoSearch {
    /// Benchmark every algorithm at the first run: slower start, fastest kernels.
    #[default]
    Exhaustive,
    /// cuDNN's heuristics: fast start, usually close.
    Heuristic,
    /// Always the implicit-precomputed GEMM algorithm: least workspace memory.
    Default,
}

impl ConvAlgoSearch {
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgoSearch::Exhaustive => "exhaustive",
            ConvAlgoSearch::Heuristic => "heuristic",
            ConvAlgoSearch::Default => "default",
        }
    }
}

/// CUDA execution provider options that change speed or results.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaOptions {
    pub conv_algo_search: ConvAlgoSearch,
    /// TF32 tensor-core maths: faster, moves boxes by ~1 px. Off by default so CUDA matches
    /// the CPU and the reference (ONNX Runtime's own default is on).
    pub tf32: bool,
    /// Capture the model in a CUDA graph (static shapes only; needs I/O binding).
    pub cuda_graph: bool,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            conv_algo_search: ConvAlgoSearch::Exhaustive,
            tf32: false,
            cuda_graph: false,
        }
    }
}

/// When the model's input and output are bound to preallocated device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoBindingMode {
    /// On the GPU providers.
    #[default]
    Gpu,
    /// Never: ONNX Runtime copies host tensors in and out on every run.
    Off,
    /// Also on the CPU provider (host memory on both sides; exercises the same code in tests).
    Always,
}

/// TensorRT execution provider options.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRtOptions {
    pub fp16: bool,
    pub int8: bool,
    pub int8_calibration_table: Option<PathBuf>,
    /// Engine cache root; each model/precision/GPU/version combination gets its own
    /// subdirectory (see [`gpu::TrtCacheKey`]). `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub timing_cache: bool,
    /// Builder optimisation level 0..=5 (TensorRT's default is 3).
    pub builder_optimization_level: u8,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        TensorRtOptions {
            fp16: false,
            int8: false,
            int8_calibration_table: None,
            cache_dir: gpu::default_trt_cache_dir(),
            timing_cache: true,
            builder_optimization_level: 3,
        }
    }
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
    pub io_binding: IoBindingMode,
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
            io_binding: IoBindingMode::default(),
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

/// What a TensorRT session needs beyond the options: where its engine and timing caches go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrtSetup {
    pub libs: gpu::TensorRtLibs,
    /// `<cache_dir>/<key>`: engines built for exactly this model, precision, GPU and versions.
    pub engine_cache: Option<PathBuf>,
    /// `<cache_dir>/timing/<gpu>-trt<version>`: shared by every model on this GPU.
    pub timing_cache: Option<PathBuf>,
}

/// Something that happened to an engine after it started, for the element to report.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// `auto`: frames are served by `serving` while TensorRT builds its engine.
    TensorRtBuildStarted {
        serving: Provider,
        engine_cache: Option<PathBuf>,
    },
    /// Still building (TensorRT reports no finer progress through ONNX Runtime).
    TensorRtBuildProgress { elapsed: Duration },
    /// The build failed; frames stay on the provider serving them.
    TensorRtBuildFailed { reason: String, elapsed: Duration },
    /// From this frame on, `to` runs the model.
    Switched {
        from: Provider,
        to: Provider,
        build_time: Duration,
    },
}

/// How often a background TensorRT build reports that it is still running.
const BUILD_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A TensorRT engine being built on a background thread (`auto`).
struct Upgrade {
    rx: mpsc::Receiver<Result<Engine, EngineError>>,
    started: Instant,
    last_progress: Instant,
}

/// The model's input and output: plain host memory handed to ONNX Runtime per run, or bound
/// to preallocated device memory.
enum Io {
    Host(HostIo),
    Bound(Box<DeviceIo>),
}

/// Host memory I/O, double-buffered for [`Engine::run_overlapped`].
struct HostIo {
    /// `[current, next]`.
    inputs: [Vec<f32>; 2],
    /// Outputs of overlapped runs: `[last, other]`.
    outputs: [Vec<f32>; 2],
    out_shape: Vec<i64>,
    has_last: bool,
}

/// A loaded model on one execution provider.
pub struct Engine {
    // Dropped before the session it is bound to.
    io: Io,
    session: Session,
    info: ModelInfo,
    provider: Provider,
    runtime_path: PathBuf,
    model_path: PathBuf,
    /// Providers `auto` skipped, and why.
    fallbacks: Vec<(Provider, String)>,
    events: Vec<EngineEvent>,
    upgrade: Option<Upgrade>,
    cuda_graph: bool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("info", &self.info)
            .field("provider", &self.provider)
            .field("io_bound", &matches!(self.io, Io::Bound(_)))
            .finish()
    }
}

impl Engine {
    /// Loads ONNX Runtime if needed, creates the session, reads the model's metadata and detects
    /// its head from a warm-up run (which also resolves dynamic output shapes).
    ///
    /// `auto` serves frames on CUDA (else the CPU) at once and, where TensorRT can start, builds
    /// its engine on a background thread; [`Engine::poll`] switches over at a frame boundary.
    pub fn new(cfg: &EngineConfig) -> Result<Engine, EngineError> {
        if !cfg.model.is_file() {
            return Err(EngineError::ModelNotFound(cfg.model.clone()));
        }
        let rt = runtime()?;
        match cfg.provider {
            Provider::Auto => Self::new_auto(&rt, cfg),
            Provider::TensorRt => {
                let trt = prepare_tensorrt(&rt, cfg)
                    .map_err(|reason| provider_error(Provider::TensorRt, reason))?;
                Self::with_provider(&rt, cfg, Provider::TensorRt, Some(&trt))
            }
            p => Self::with_provider(&rt, cfg, p, None),
        }
    }

    fn new_auto(rt: &Runtime, cfg: &EngineConfig) -> Result<Engine, EngineError> {
        let mut fallbacks = Vec::new();
        let trt = match prepare_tensorrt(rt, cfg) {
            Ok(t) => Some(t),
            Err(reason) => {
                fallbacks.push((Provider::TensorRt, reason));
                None
            }
        };
        let mut engine = match Self::with_provider(rt, cfg, Provider::Cuda, None) {
            Ok(e) => e,
            // A broken model fails the same way on every provider.
            Err(e @ (EngineError::ModelLoad { .. } | EngineError::ModelNotFound(_))) => {
                return Err(e);
            }
            Err(e) => {
                fallbacks.push((Provider::Cuda, e.to_string()));
                Self::with_provider(rt, cfg, Provider::Cpu, None)?
            }
        };
        engine.fallbacks = fallbacks;
        if let Some(trt) = trt
            && engine.provider == Provider::Cuda
        {
            engine.build_in_background(rt, cfg, Provider::TensorRt, Some(trt));
        }
        Ok(engine)
    }

    /// Builds an engine for `provider` on a background thread; [`Engine::poll`] switches to it
    /// at a frame boundary once it is ready.
    fn build_in_background(
        &mut self,
        rt: &Runtime,
        cfg: &EngineConfig,
        provider: Provider,
        trt: Option<TrtSetup>,
    ) {
        let (tx, rx) = mpsc::channel();
        let (rt2, cfg2) = (rt.clone(), cfg.clone());
        let engine_cache = trt.as_ref().and_then(|t| t.engine_cache.clone());
        let spawned = std::thread::Builder::new()
            .name("yolo-engine-build".into())
            .spawn(move || {
                let r = Self::with_provider(&rt2, &cfg2, provider, trt.as_ref());
                // The element may have stopped meanwhile; then nobody wants the engine.
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => {
                let now = Instant::now();
                self.upgrade = Some(Upgrade {
                    rx,
                    started: now,
                    last_progress: now,
                });
                self.events.push(EngineEvent::TensorRtBuildStarted {
                    serving: self.provider,
                    engine_cache,
                });
            }
            Err(e) => self
                .fallbacks
                .push((provider, format!("cannot start a thread: {e}"))),
        }
    }

    /// Test hook: builds a second engine for `cfg` in the background as `auto` does for
    /// TensorRT, so the switch-over can be exercised without TensorRT.
    #[doc(hidden)]
    pub fn rebuild_in_background(&mut self, cfg: &EngineConfig) -> Result<(), EngineError> {
        let rt = runtime()?;
        self.build_in_background(&rt, cfg, cfg.provider, None);
        Ok(())
    }

    fn with_provider(
        rt: &Runtime,
        cfg: &EngineConfig,
        provider: Provider,
        trt: Option<&TrtSetup>,
    ) -> Result<Engine, EngineError> {
        let session = create_session(rt, cfg, provider, trt)?;
        let info = read_model_info(&session, &cfg.model)?;
        let gpu = matches!(provider, Provider::Cuda | Provider::TensorRt);
        let cuda_graph = provider == Provider::Cuda && cfg.cuda.cuda_graph;
        let bind = match cfg.io_binding {
            IoBindingMode::Gpu => gpu,
            IoBindingMode::Off => false,
            IoBindingMode::Always => true,
        };
        if cuda_graph && !bind {
            return Err(provider_error(
                provider,
                "cuda-graph needs the input and output bound to device memory (I/O binding)",
            ));
        }
        let input_len = 3 * info.input_width as usize * info.input_height as usize;
        let mut engine = Engine {
            io: Io::Host(HostIo {
                inputs: [vec![0.0; input_len], vec![0.0; input_len]],
                outputs: [Vec::new(), Vec::new()],
                out_shape: Vec::new(),
                has_last: false,
            }),
            session,
            info,
            provider,
            runtime_path: rt.path.clone(),
            model_path: cfg.model.clone(),
            fallbacks: Vec::new(),
            events: Vec::new(),
            upgrade: None,
            cuda_graph,
        };
        // The output shape: from the model when static, else from a warm-up run on host
        // tensors (a CUDA graph must never see such a run, so it needs static shapes).
        let shape = match static_output_shape(&engine.session) {
            Some(s) => s,
            None if cuda_graph => {
                return Err(provider_error(
                    provider,
                    format!(
                        "cuda-graph needs a model with static shapes, and {} has dynamic ones: \
                         export it with dynamic=False or turn cuda-graph off",
                        cfg.model.display()
                    ),
                ));
            }
            None => engine.warm_up_shape()?,
        };
        if bind {
            let memory = if gpu {
                Memory::Cuda {
                    device_id: cfg.device_id,
                }
            } else {
                Memory::Cpu
            };
            let in_shape = [
                1,
                3,
                engine.info.input_height as i64,
                engine.info.input_width as i64,
            ];
            let io = DeviceIo::new(
                &engine.session,
                memory,
                &engine.info.input_name,
                &engine.info.output_name,
                &in_shape,
                &shape,
            )
            .map_err(|e| provider_error(provider, format!("I/O binding: {e}")))?;
            engine.io = Io::Bound(Box::new(io));
        }
        engine.resolve_head()?;
        // A CUDA graph is captured on the runs after the first; do it now, not on live frames.
        if cuda_graph {
            for _ in 0..2 {
                engine.run_input(|_, _| ())?;
            }
        }
        Ok(engine)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The provider that actually runs (resolved from `auto`).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Providers `auto` passed over, with the reason each could not start.
    pub fn fallbacks(&self) -> &[(Provider, String)] {
        &self.fallbacks
    }

    /// Whether input and output are bound to preallocated device memory, and whether the host
    /// side is pinned.
    pub fn io_binding(&self) -> Option<bool> {
        match &self.io {
            Io::Host(_) => None,
            Io::Bound(d) => Some(d.pinned),
        }
    }

    pub fn runtime_path(&self) -> &Path {
        &self.runtime_path
    }

    /// Number of f32 values in one batch item of the input tensor.
    pub fn input_len(&self) -> usize {
        3 * self.info.input_width as usize * self.info.input_height as usize
    }

    /// The engine's own batch-1 input tensor (NCHW): fill it, then [`Engine::run_input`]. On a
    /// GPU it is pinned host memory copied to the device once per run.
    pub fn input_mut(&mut self) -> &mut [f32] {
        match &mut self.io {
            Io::Host(h) => &mut h.inputs[0],
            Io::Bound(d) => d.input_mut(),
        }
    }

    /// Collects what happened since the last call and, at this frame boundary, switches to a
    /// TensorRT engine that finished building in the background.
    pub fn poll(&mut self) -> Vec<EngineEvent> {
        if let Some(up) = &mut self.upgrade {
            match up.rx.try_recv() {
                Ok(Ok(mut new)) => {
                    let build_time = up.started.elapsed();
                    let from = self.provider;
                    new.fallbacks = std::mem::take(&mut self.fallbacks);
                    new.events = std::mem::take(&mut self.events);
                    // The old session (and its device memory) goes here, between frames.
                    *self = new;
                    self.events.push(EngineEvent::Switched {
                        from,
                        to: self.provider,
                        build_time,
                    });
                }
                Ok(Err(e)) => {
                    let elapsed = up.started.elapsed();
                    self.upgrade = None;
                    self.fallbacks.push((Provider::TensorRt, e.to_string()));
                    self.events.push(EngineEvent::TensorRtBuildFailed {
                        reason: e.to_string(),
                        elapsed,
                    });
                }
                Err(mpsc::TryRecvError::Empty) => {
                    if up.last_progress.elapsed() >= BUILD_PROGRESS_EVERY {
                        up.last_progress = Instant::now();
                        self.events.push(EngineEvent::TensorRtBuildProgress {
                            elapsed: up.started.elapsed(),
                        });
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    let elapsed = up.started.elapsed();
                    self.upgrade = None;
                    let reason = "the TensorRT build thread ended without a result".to_string();
                    self.events
                        .push(EngineEvent::TensorRtBuildFailed { reason, elapsed });
                }
            }
        }
        std::mem::take(&mut self.events)
    }

    /// Waits (up to `timeout`) for a background TensorRT build to end; for tools and tests.
    pub fn wait_for_upgrade(&mut self, timeout: Duration) -> Vec<EngineEvent> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        while self.upgrade.is_some() && Instant::now() < deadline {
            let ev = self.poll();
            let done = ev.iter().any(|e| {
                matches!(
                    e,
                    EngineEvent::Switched { .. } | EngineEvent::TensorRtBuildFailed { .. }
                )
            });
            events.extend(ev);
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        events.extend(self.poll());
        events
    }

    /// Runs the model on the engine's own input tensor (batch 1) and hands the output's shape
    /// and data to `f`.
    pub fn run_input<R>(&mut self, f: impl FnOnce(&[i64], &[f32]) -> R) -> Result<R, EngineError> {
        let Engine {
            io, session, info, ..
        } = self;
        match io {
            Io::Bound(d) => {
                let (shape, data) = d.run(session).map_err(EngineError::Inference)?;
                Ok(f(shape, data))
            }
            Io::Host(h) => run_host(session, info, &h.inputs[0], 1, f),
        }
    }

    /// Pipelining: runs the model on the current input while `side` runs on a scoped thread
    /// with the engine's second input buffer (to fill, e.g. letterbox the next frame) and the
    /// previous overlapped run's output (e.g. to decode it), so the model never waits for
    /// either. Afterwards the filled buffer is the current input and this run's output is
    /// [`Engine::last_output`].
    pub fn run_overlapped<P: Send>(
        &mut self,
        side: impl FnOnce(&mut [f32], Option<(&[i64], &[f32])>) -> P + Send,
    ) -> Result<P, EngineError> {
        let Engine {
            io, session, info, ..
        } = self;
        match io {
            Io::Bound(d) => {
                let (r, p) = d.run_overlapped(session, side);
                r.map_err(EngineError::Inference)?;
                Ok(p)
            }
            Io::Host(h) => {
                let HostIo {
                    inputs: [cur, next],
                    outputs: [last, new],
                    out_shape,
                    has_last,
                } = h;
                let prev = has_last.then_some((out_shape.as_slice(), last.as_slice()));
                let (r, p) = std::thread::scope(|sc| {
                    let t = sc.spawn(move || side(next, prev));
                    let r = run_host(session, info, cur, 1, |s, d| {
                        new.clear();
                        new.extend_from_slice(d);
                        s.to_vec()
                    });
                    (r, t.join())
                });
                let p = match p {
                    Ok(p) => p,
                    Err(panic) => std::panic::resume_unwind(panic),
                };
                h.inputs.swap(0, 1);
                let shape = r?;
                h.outputs.swap(0, 1);
                h.out_shape = shape;
                h.has_last = true;
                Ok(p)
            }
        }
    }

    /// The output of the last [`Engine::run_overlapped`] (on a GPU: of the last run), if any.
    pub fn last_output(&self) -> Option<(&[i64], &[f32])> {
        match &self.io {
            Io::Bound(d) => d.last_output(),
            Io::Host(h) => h
                .has_last
                .then_some((h.out_shape.as_slice(), h.outputs[0].as_slice())),
        }
    }

    /// Runs the model on `batch` items laid out NCHW in `input` and hands the output's shape and
    /// data to `f` (the output lives in ONNX Runtime's memory only for the call).
    pub fn run<R>(
        &mut self,
        input: &[f32],
        batch: usize,
        f: impl FnOnce(&[i64], &[f32]) -> R,
    ) -> Result<R, EngineError> {
        let need = batch * self.input_len();
        let input = input.get(..need).ok_or_else(|| {
            EngineError::Inference(format!("input has {} values, need {need}", input.len()))
        })?;
        if batch == 1 && matches!(self.io, Io::Bound(_)) {
            self.input_mut().copy_from_slice(input);
            return self.run_input(f);
        }
        if self.cuda_graph {
            return Err(EngineError::Inference(format!(
                "a CUDA graph runs one static shape (batch 1), not batch {batch}"
            )));
        }
        run_host(&mut self.session, &self.info, input, batch, f)
    }

    /// Output shape from a run on host tensors (resolves dynamic dimensions).
    fn warm_up_shape(&mut self) -> Result<Vec<i64>, EngineError> {
        let input = vec![crate::preprocess::PAD_VALUE as f32 / 255.0; self.input_len()];
        run_host(&mut self.session, &self.info, &input, 1, |s, _| s.to_vec())
    }

    fn resolve_head(&mut self) -> Result<(), EngineError> {
        // Letterbox pad value, so the warm-up sees a realistic (empty) frame.
        self.input_mut()
            .fill(crate::preprocess::PAD_VALUE as f32 / 255.0);
        let shape = self.run_input(|s, _| s.to_vec())?;
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

fn run_host<R>(
    session: &mut Session,
    info: &ModelInfo,
    input: &[f32],
    batch: usize,
    f: impl FnOnce(&[i64], &[f32]) -> R,
) -> Result<R, EngineError> {
    let shape = [
        batch as i64,
        3,
        info.input_height as i64,
        info.input_width as i64,
    ];
    let tensor = TensorRef::from_array_view((shape, input))
        .map_err(|e| EngineError::Inference(e.to_string()))?;
    let outputs = session
        .run(ort::inputs![info.input_name.as_str() => tensor])
        .map_err(|e| EngineError::Inference(e.to_string()))?;
    let out = outputs
        .get(&info.output_name)
        .ok_or_else(|| EngineError::Inference("model produced no output".into()))?;
    let (oshape, data) = out
        .try_extract_tensor::<f32>()
        .map_err(|e| EngineError::Inference(format!("output is not an f32 tensor: {e}")))?;
    Ok(f(oshape, data))
}

/// The first output's shape with the batch dimension set to 1, if every other dimension is
/// static.
fn static_output_shape(session: &Session) -> Option<Vec<i64>> {
    let out = session.outputs().first()?;
    let ValueType::Tensor { shape, .. } = out.dtype() else {
        return None;
    };
    let mut dims: Vec<i64> = shape.iter().copied().collect();
    if let Some(b) = dims.first_mut()
        && *b <= 0
    {
        *b = 1;
    }
    (!dims.is_empty() && dims.iter().all(|&d| d > 0)).then_some(dims)
}

/// Checks that TensorRT can start here and works out its cache directories; the error says
/// what is missing and how to get it.
fn prepare_tensorrt(rt: &Runtime, cfg: &EngineConfig) -> Result<TrtSetup, String> {
    match ep::TensorRT::is_available() {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "the ONNX Runtime library {} was built without the TensorRT execution provider. \
                 Install an ONNX Runtime GPU build with TensorRT (PyPI onnxruntime-gpu on x86-64, \
                 JetPack's onnxruntime-gpu wheel on Jetson) and point ORT_DYLIB_PATH at its \
                 libonnxruntime.so.1, or use execution-provider=cuda",
                rt.path.display()
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    let libs = gpu::check_tensorrt(&rt.path)?;
    let t = &cfg.tensorrt;
    if t.int8
        && t.int8_calibration_table
            .as_ref()
            .is_some_and(|p| !p.is_file())
    {
        return Err(format!(
            "the INT8 calibration table {} does not exist",
            t.int8_calibration_table
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
    }
    let (engine_cache, timing_cache) = match &t.cache_dir {
        None => (None, None),
        Some(root) => {
            let model = std::fs::read(&cfg.model)
                .map_err(|e| format!("cannot read {}: {e}", cfg.model.display()))?;
            let calibration_hash = match (&t.int8_calibration_table, t.int8) {
                (Some(p), true) => Some(gpu::fnv1a128(
                    &std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
                )),
                _ => None,
            };
            let device = gpu::query_device(cfg.device_id).ok();
            let key = gpu::TrtCacheKey {
                model_hash: gpu::fnv1a128(&model),
                model_stem: cfg
                    .model
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                fp16: t.fp16,
                int8: t.int8,
                calibration_hash,
                builder_optimization_level: t.builder_optimization_level,
                gpu: gpu::gpu_key(device.as_ref(), cfg.device_id),
                tensorrt_version: libs.version,
                ort_version: gpu::ort_version(&rt.path).unwrap_or_else(|| "unknown".into()),
            };
            let engines = root.join(key.dir_name());
            let timing = root.join("timing").join(key.timing_dir_name());
            for d in [&engines, &timing] {
                std::fs::create_dir_all(d).map_err(|e| {
                    format!(
                        "cannot create the TensorRT cache directory {}: {e} (set \
                         trt-engine-cache-dir to a writable directory, or to \"\" to disable \
                         the cache)",
                        d.display()
                    )
                })?;
            }
            (Some(engines), t.timing_cache.then_some(timing))
        }
    };
    Ok(TrtSetup {
        libs,
        engine_cache,
        timing_cache,
    })
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
    trt: Option<&TrtSetup>,
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
                tensorrt_ep(cfg, trt).error_on_failure(),
                // CUDA runs what TensorRT does not take; no graph capture across the two.
                cuda_options(cfg)
                    .with_cuda_graph(false)
                    .build()
                    .error_on_failure(),
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

/// The CUDA provider's options for `cfg`.
fn cuda_options(cfg: &EngineConfig) -> ep::CUDA {
    let search = match cfg.cuda.conv_algo_search {
        ConvAlgoSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
        ConvAlgoSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
        ConvAlgoSearch::Default => ep::cuda::ConvAlgorithmSearch::Default,
    };
    ep::CUDA::default()
        .with_device_id(cfg.device_id)
        .with_conv_algorithm_search(search)
        .with_tf32(cfg.cuda.tf32)
        .with_cuda_graph(cfg.cuda.cuda_graph)
}

fn cuda_ep(cfg: &EngineConfig) -> ep::ExecutionProviderDispatch {
    cuda_options(cfg).build()
}

/// The TensorRT provider's options for `cfg`, caching under the directories of `trt`.
fn tensorrt_options(cfg: &EngineConfig, trt: Option<&TrtSetup>) -> ep::TensorRT {
    let t = &cfg.tensorrt;
    let mut e = ep::TensorRT::default()
        .with_device_id(cfg.device_id)
        .with_fp16(t.fp16)
        .with_int8(t.int8)
        .with_builder_optimization_level(t.builder_optimization_level.min(5));
    if t.int8
        && let Some(table) = &t.int8_calibration_table
    {
        e = e.with_int8_calibration_table_name(table.display());
    }
    if let Some(dir) = trt.and_then(|s| s.engine_cache.as_ref()) {
        e = e
            .with_engine_cache(true)
            .with_engine_cache_path(dir.display());
    }
    if let Some(dir) = trt.and_then(|s| s.timing_cache.as_ref()) {
        e = e
            .with_timing_cache(true)
            .with_timing_cache_path(dir.display());
    }
    e
}

fn tensorrt_ep(cfg: &EngineConfig, trt: Option<&TrtSetup>) -> ep::ExecutionProviderDispatch {
    tensorrt_options(cfg, trt).build()
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
    fn cuda_options_follow_the_config() {
        let mut cfg = EngineConfig::new("m.onnx");
        cfg.device_id = 2;
        cfg.cuda.conv_algo_search = ConvAlgoSearch::Heuristic;
        cfg.cuda.tf32 = true;
        cfg.cuda.cuda_graph = true;
        let o = format!("{:?}", cuda_options(&cfg));
        for kv in [
            r#""device_id": "2""#,
            r#""cudnn_conv_algo_search": "HEURISTIC""#,
            r#""use_tf32": "true""#,
            r#""enable_cuda_graph": "true""#,
        ] {
            assert!(o.contains(kv), "{kv} not in {o}");
        }
        // Defaults: exhaustive search, TF32 and graphs off (ONNX Runtime's own TF32 default is
        // on, so it must be passed explicitly).
        let o = format!("{:?}", cuda_options(&EngineConfig::new("m.onnx")));
        for kv in [
            r#""cudnn_conv_algo_search": "EXHAUSTIVE""#,
            r#""use_tf32": "false""#,
            r#""enable_cuda_graph": "false""#,
        ] {
            assert!(o.contains(kv), "{kv} not in {o}");
        }
    }

    #[test]
    fn tensorrt_options_use_the_keyed_cache() {
        let mut cfg = EngineConfig::new("m.onnx");
        cfg.tensorrt.fp16 = true;
        cfg.tensorrt.builder_optimization_level = 9;
        let setup = TrtSetup {
            libs: gpu::TensorRtLibs {
                soname: "libnvinfer.so.10".into(),
                version: 100300,
            },
            engine_cache: Some(PathBuf::from("/c/yolov8n-fp16-x")),
            timing_cache: Some(PathBuf::from("/c/timing/gpu-trt100300")),
        };
        let o = format!("{:?}", tensorrt_options(&cfg, Some(&setup)));
        for needle in [
            "trt_fp16_enable",
            "trt_engine_cache_enable",
            "/c/yolov8n-fp16-x",
            "trt_timing_cache_path",
            "/c/timing/gpu-trt100300",
        ] {
            assert!(o.contains(needle), "{needle} not in {o}");
        }
        // The level is clamped to TensorRT's 0..=5.
        assert!(
            o.contains(r#""trt_builder_optimization_level": "5""#),
            "{o}"
        );
        // Without a cache directory no cache options are set.
        let o = format!("{:?}", tensorrt_options(&cfg, None));
        assert!(!o.contains("trt_engine_cache_enable"), "{o}");
    }

    #[test]
    fn provider_names() {
        assert_eq!(Provider::default(), Provider::Cpu);
        assert_eq!(Provider::TensorRt.name(), "tensorrt");
    }
}
