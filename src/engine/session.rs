// SPDX-License-Identifier: MPL-2.0
//! One ONNX Runtime session on one execution provider, with its input and output memory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ort::ep;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::binding::{DeviceIo, Memory};
use super::model::{alloc_input, detect_head, read_model_info, static_output_shape};
use super::providers::{
    TrtSetup, check_available, cuda_ep, cuda_options, prepare_tensorrt, provider_error, tensorrt_ep,
};
use super::runtime::{Runtime, runtime};
use super::{EngineConfig, EngineError, IoBindingMode, ModelInfo, Provider};

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
    /// A result taken by [`Engine::upgrade_ready`], for the next [`Engine::poll`].
    ready: Option<Result<Box<Engine>, EngineError>>,
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
    // Dropped before the session they are bound to.
    io: Io,
    /// Device-input bindings for batches, by batch size (GPU pre-processing), made on first use.
    buckets: Vec<(usize, DeviceIo)>,
    /// `Some(device)` when the model's I/O lives in CUDA memory.
    cuda_device: Option<i32>,
    /// Padding for the last chunk of a static-batch model.
    scratch: Vec<f32>,
    session: Session,
    info: ModelInfo,
    provider: Provider,
    runtime_path: PathBuf,
    model_path: PathBuf,
    /// Providers `auto` skipped, and why.
    fallbacks: Vec<(Provider, String)>,
    /// ONNX Runtime's warning that some nodes run on its CPU provider (GPU sessions).
    cpu_nodes: Option<String>,
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
                    ready: None,
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
        let (session, warnings) =
            super::runtime::capture_warnings(|| create_session(rt, cfg, provider, trt));
        let session = session?;
        // "Some nodes were not assigned to the preferred execution providers ...": those run on
        // ONNX Runtime's CPU provider inside this GPU session.
        let cpu_nodes = warnings
            .into_iter()
            .find(|w| w.contains("not assigned to the preferred execution provider"));
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
        let inputs = [
            alloc_input(input_len, &cfg.model)?,
            alloc_input(input_len, &cfg.model)?,
        ];
        let mut engine = Engine {
            io: Io::Host(HostIo {
                inputs,
                outputs: [Vec::new(), Vec::new()],
                out_shape: Vec::new(),
                has_last: false,
            }),
            session,
            info,
            provider,
            runtime_path: rt.path.clone(),
            model_path: cfg.model.clone(),
            cpu_nodes,
            fallbacks: Vec::new(),
            events: Vec::new(),
            upgrade: None,
            cuda_graph,
            buckets: Vec::new(),
            cuda_device: (bind && gpu).then_some(cfg.device_id),
            scratch: Vec::new(),
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
    /// ONNX Runtime's warning, when some of the model's nodes run on its CPU provider inside a
    /// GPU session.
    pub fn cpu_nodes(&self) -> Option<&str> {
        self.cpu_nodes.as_deref()
    }

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
            let next = match up.ready.take() {
                Some(r) => Ok(r.map(|e| *e)),
                None => up.rx.try_recv(),
            };
            match next {
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

    /// Whether the next [`Engine::poll`] switches engines (or reports a failed build). A caller
    /// with frames in flight in this engine's buffers (`pipelined`) finishes them first: the
    /// new engine has its own buffers.
    pub fn upgrade_ready(&mut self) -> bool {
        let Some(up) = &mut self.upgrade else {
            return false;
        };
        if up.ready.is_none() {
            match up.rx.try_recv() {
                Ok(r) => up.ready = Some(r.map(Box::new)),
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => {}
            }
        }
        true
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

    /// Number of f32 values in one batch item of the output tensor.
    pub fn output_item_len(&self) -> usize {
        self.info
            .output_shape
            .iter()
            .skip(1)
            .map(|&d| d.max(0) as usize)
            .product()
    }

    /// The batch sizes a call may have: a static-batch model's own, else powers of two up to
    /// `max`, so that a dynamic model sees few distinct shapes (each costs cuDNN an algorithm
    /// search and ONNX Runtime its own memory plan).
    pub fn batch_for(&self, n: usize, max: usize) -> usize {
        match self.info.batch {
            Some(b) => b.max(1),
            None => n.next_power_of_two().min(max.max(1)).max(1),
        }
    }

    /// Runs `n` letterboxed items (NCHW, contiguous in `input`) and appends each item's output to
    /// `out`. A static-batch model runs them in calls of its batch size, the last one padded.
    pub fn run_items(
        &mut self,
        input: &[f32],
        n: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        let (len, out_len) = (self.input_len(), self.output_item_len());
        let input = input.get(..n * len).ok_or_else(|| {
            EngineError::Inference(format!(
                "input has {} values, need {}",
                input.len(),
                n * len
            ))
        })?;
        let b = self.batch_for(n, n);
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut r = Ok(());
        for chunk in input.chunks(b * len) {
            let k = chunk.len() / len;
            let data = if k == b {
                chunk
            } else {
                scratch.clear();
                scratch.extend_from_slice(chunk);
                scratch.resize(b * len, crate::preprocess::PAD_VALUE as f32 / 255.0);
                &scratch[..]
            };
            r = self.run(data, b, |_, d| {
                out.extend_from_slice(&d[..(k * out_len).min(d.len())]);
            });
            if r.is_err() {
                break;
            }
        }
        self.scratch = scratch;
        r
    }

    /// GPU pre-processing: runs `n` items whose model input `fill(device_ptr, jobs)` writes
    /// straight into the bound device input (`jobs` is the range of items to write, at
    /// `device_ptr`, `device_ptr + input_len * 4`, ...); `copy_out(device_ptr, dst)` copies each
    /// call's output into `out[first item * output_item_len..]` (`out` grows as needed and is
    /// never cleared, so a reused buffer costs no zeroing).
    pub fn run_device_items(
        &mut self,
        n: usize,
        max_batch: usize,
        mut fill: impl FnMut(u64, std::ops::Range<usize>) -> Result<(), String>,
        mut copy_out: impl FnMut(u64, &mut [f32]) -> Result<(), String>,
        out: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        let Some(device_id) = self.cuda_device else {
            return Err(EngineError::Inference(
                "GPU pre-processing needs the model's input bound to CUDA memory".into(),
            ));
        };
        if self.cuda_graph {
            return Err(EngineError::Inference(
                "cuda-graph and GPU pre-processing do not go together yet".into(),
            ));
        }
        let out_len = self.output_item_len();
        let mut start = 0;
        while start < n {
            let b = self.batch_for(n - start, max_batch);
            let k = b.min(n - start);
            let idx = match self.buckets.iter().position(|(s, _)| *s == b) {
                Some(i) => i,
                None => {
                    let (w, h) = (self.info.input_width as i64, self.info.input_height as i64);
                    let mut oshape = self.info.output_shape.clone();
                    if let Some(d) = oshape.first_mut() {
                        *d = b as i64;
                    }
                    let io = DeviceIo::new_device_input(
                        &self.session,
                        Memory::Cuda { device_id },
                        &self.info.input_name,
                        &self.info.output_name,
                        &[b as i64, 3, h, w],
                        &oshape,
                    )
                    .map_err(|e| EngineError::Inference(format!("binding a batch of {b}: {e}")))?;
                    self.buckets.push((b, io));
                    self.buckets.len() - 1
                }
            };
            let Engine {
                buckets, session, ..
            } = self;
            let io = &mut buckets[idx].1;
            fill(io.device_input_ptr(), start..start + k).map_err(EngineError::Inference)?;
            let dev_out = io.run_device_raw(session).map_err(EngineError::Inference)?;
            if out.len() < (start + k) * out_len {
                out.resize((start + k) * out_len, 0.0);
            }
            copy_out(dev_out, &mut out[start * out_len..(start + k) * out_len])
                .map_err(EngineError::Inference)?;
            start += k;
        }
        Ok(())
    }

    /// The CUDA device the model's I/O is bound to, if any.
    pub fn cuda_device(&self) -> Option<i32> {
        self.cuda_device
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
        let head = detect_head(&self.info, &shape).map_err(|error| EngineError::Head {
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

/// Creates and drops `n` bare sessions of `cfg` on its provider (no I/O buffers; with `run`, one
/// inference each), calling `each(i)` after each: for the soak tool, to tell ONNX Runtime's own
/// memory per session from the engine's.
pub fn churn_sessions(
    cfg: &EngineConfig,
    n: usize,
    run: bool,
    mut each: impl FnMut(usize),
) -> Result<(), EngineError> {
    let rt = runtime()?;
    for i in 0..n {
        let mut session = create_session(&rt, cfg, cfg.provider, None)?;
        // `run`: one inference on plain host tensors, ONNX Runtime's own API and nothing of ours
        // (no binding, no device buffers), to tell its per-session memory from ours.
        if run {
            let info = read_model_info(&session, &cfg.model)?;
            let input = vec![0.0f32; 3 * info.input_width as usize * info.input_height as usize];
            run_host(&mut session, &info, &input, 1, |_, _| ())?;
        }
        drop(session);
        each(i);
    }
    Ok(())
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
        Provider::Remote => {
            return Err(provider_error(
                provider,
                "runs on an inference server, not in ONNX Runtime",
            ));
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
