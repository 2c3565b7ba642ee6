// SPDX-License-Identifier: MPL-2.0
//! A model instance: one model on one execution provider, served by one or more inference
//! workers (one ONNX Runtime session each) through the batch [`Scheduler`]. Elements with the
//! same `model-instance-id` share one instance, in one pipeline or across pipelines; it lives
//! until the last of them lets go of it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::cuda::{DeviceFrame, GpuLetterbox};
use super::remote::{RemoteConfig, RemoteEngine, RemoteStats};
use super::scheduler::{Backend, Scheduler, SchedulerConfig, StreamHandle, WorkerStats};
use super::{Engine, EngineConfig, EngineError, EngineEvent, ModelInfo, Provider};
use crate::metrics::InstanceMetrics;

/// Everything that makes an instance what it is: elements sharing one must agree on all of it.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceConfig {
    pub engine: EngineConfig,
    /// Most frames per model call.
    pub batch_size: usize,
    /// How long a worker waits for a batch to fill.
    pub batch_timeout: Duration,
    /// Inference workers (sessions) serving the instance.
    pub workers: usize,
    /// Letterbox on the GPU (CUDA and TensorRT providers).
    pub gpu_preprocess: bool,
    /// Run the model on an inference server instead of a local session.
    pub remote: Option<RemoteConfig>,
}

impl InstanceConfig {
    pub fn new(engine: EngineConfig) -> Self {
        InstanceConfig {
            engine,
            batch_size: 1,
            batch_timeout: Duration::from_millis(10),
            workers: 1,
            gpu_preprocess: true,
            remote: None,
        }
    }

    /// What differs between `self` (the running instance) and `other`, one "name: a vs b" each.
    pub fn differences(&self, other: &InstanceConfig) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |name: &str, a: String, b: String| {
            if a != b {
                d.push(format!(
                    "{name}: the instance has {a}, this element asks for {b}"
                ));
            }
        };
        let (a, b) = (&self.engine, &other.engine);
        cmp(
            "model",
            canonical(&a.model).display().to_string(),
            canonical(&b.model).display().to_string(),
        );
        cmp(
            "execution-provider",
            a.provider.name().into(),
            b.provider.name().into(),
        );
        cmp(
            "device-id",
            a.device_id.to_string(),
            b.device_id.to_string(),
        );
        cmp(
            "num-threads",
            a.num_threads.to_string(),
            b.num_threads.to_string(),
        );
        cmp(
            "cpu-arena",
            a.cpu_arena.to_string(),
            b.cpu_arena.to_string(),
        );
        cmp(
            "CUDA options",
            format!("{:?}", a.cuda),
            format!("{:?}", b.cuda),
        );
        cmp(
            "TensorRT options",
            format!("{:?}", a.tensorrt),
            format!("{:?}", b.tensorrt),
        );
        cmp(
            "I/O binding",
            format!("{:?}", a.io_binding),
            format!("{:?}", b.io_binding),
        );
        cmp(
            "batch-size",
            self.batch_size.to_string(),
            other.batch_size.to_string(),
        );
        cmp(
            "batch-timeout",
            format!("{} ms", self.batch_timeout.as_millis()),
            format!("{} ms", other.batch_timeout.as_millis()),
        );
        cmp(
            "inference-workers",
            self.workers.to_string(),
            other.workers.to_string(),
        );
        cmp(
            "gpu-preprocess",
            self.gpu_preprocess.to_string(),
            other.gpu_preprocess.to_string(),
        );
        cmp(
            "inference server",
            format!("{:?}", self.remote),
            format!("{:?}", other.remote),
        );
        d
    }
}

fn canonical(p: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// What a stream submits: its frame, letterboxed or raw.
pub enum FrameInput {
    /// Letterboxed on the stream's thread into one NCHW item (handed back with the result, so
    /// the stream reuses it).
    Tensor(Vec<f32>),
    /// A raw frame in CUDA memory, letterboxed on the GPU by the worker. Its memory must stay
    /// valid until the result is back (the stream waits for it, holding the frame mapped).
    Device(DeviceFrame),
}

/// One frame's model output (a slice of its batch's output, shared without copying).
pub struct FrameOutput {
    /// The input, given back.
    pub input: FrameInput,
    batch: Arc<Vec<f32>>,
    offset: usize,
    len: usize,
}

impl FrameOutput {
    /// The model's output for this frame (one batch item).
    pub fn data(&self) -> &[f32] {
        &self.batch[self.offset..self.offset + self.len]
    }
}

/// Engine events (TensorRT build, switch-over) for every element of the instance to report.
#[derive(Default)]
struct EventLog {
    events: Vec<(u64, EngineEvent)>,
    next: u64,
}

/// Events kept for elements that poll late.
const EVENT_LOG_LEN: usize = 64;

impl EventLog {
    fn push(&mut self, evs: Vec<EngineEvent>) {
        for e in evs {
            if self.events.len() == EVENT_LOG_LEN {
                self.events.remove(0);
            }
            self.events.push((self.next, e));
            self.next += 1;
        }
    }
}

struct Worker {
    /// `None` on a remote instance.
    engine: Option<Arc<Mutex<Engine>>>,
    /// The inference server's client on a remote instance.
    remote: Option<RemoteEngine>,
    gpu: Option<Arc<GpuLetterbox>>,
    max_batch: usize,
    batch: Vec<f32>,
    /// Output buffers; one whose only owner is the pool is reused.
    pool: Vec<Arc<Vec<f32>>>,
    log: Arc<Mutex<EventLog>>,
    provider: Arc<Mutex<Provider>>,
    metrics: Arc<InstanceMetrics>,
}

impl Worker {
    fn take_buffer(&mut self) -> (usize, Vec<f32>) {
        let i = match self.pool.iter().position(|b| Arc::strong_count(b) == 1) {
            Some(i) => i,
            None => {
                self.pool.push(Arc::new(Vec::new()));
                self.pool.len() - 1
            }
        };
        let v = Arc::get_mut(&mut self.pool[i]).map(std::mem::take);
        (i, v.unwrap_or_default())
    }
}

impl Backend for Worker {
    type Job = FrameInput;
    type Output = FrameOutput;

    fn run(&mut self, jobs: Vec<FrameInput>) -> Vec<Result<FrameOutput, String>> {
        let n = jobs.len();
        let Some(engine) = self.engine.clone() else {
            return self.run_remote(jobs);
        };
        let (slot, mut out) = self.take_buffer();
        let mut engine = engine.lock();
        // A frame boundary: where `auto` switches to a TensorRT engine built meanwhile.
        let events = engine.poll();
        if let Some(EngineEvent::Switched { to, .. }) = events
            .iter()
            .rev()
            .find(|e| matches!(e, EngineEvent::Switched { .. }))
        {
            *self.provider.lock() = *to;
        }
        self.log.lock().push(events);
        let out_len = engine.output_item_len();
        let r = match jobs.first() {
            Some(FrameInput::Tensor(t)) if n == 1 => {
                out.clear();
                engine.run_items(t, 1, &mut out)
            }
            Some(FrameInput::Tensor(_)) => {
                out.clear();
                let len = engine.input_len();
                self.batch.clear();
                for j in &jobs {
                    match j {
                        FrameInput::Tensor(t) if t.len() >= len => {
                            self.batch.extend_from_slice(&t[..len])
                        }
                        _ => {
                            return errors(n, "a batch mixed letterboxed and raw frames");
                        }
                    }
                }
                engine.run_items(&self.batch, n, &mut out)
            }
            Some(FrameInput::Device(_)) => match &self.gpu {
                Some(gpu) => {
                    let len = engine.input_len();
                    let (w, h) = (engine.info().input_width, engine.info().input_height);
                    engine.run_device_items(
                        n,
                        self.max_batch,
                        |ptr, range| {
                            for (k, j) in jobs[range].iter().enumerate() {
                                let FrameInput::Device(f) = j else {
                                    return Err("a batch mixed letterboxed and raw frames".into());
                                };
                                let dst = ptr + (k * len * std::mem::size_of::<f32>()) as u64;
                                gpu.letterbox(f, dst, w, h)?;
                            }
                            gpu.sync()
                        },
                        |src, dst| gpu.copy_to_host(src, dst),
                        &mut out,
                    )
                }
                None => return errors(n, "GPU pre-processing is not available on this instance"),
            },
            None => Ok(()),
        };
        drop(engine);
        if let Err(e) = r {
            return errors(n, &e.to_string());
        }
        if out.len() < n * out_len {
            return errors(n, "the model returned fewer outputs than frames");
        }
        self.finish(jobs, slot, out, out_len)
    }
}

impl Worker {
    /// A remote instance's batch: the letterboxed frames become one `ModelInfer` request.
    fn run_remote(&mut self, jobs: Vec<FrameInput>) -> Vec<Result<FrameOutput, String>> {
        let n = jobs.len();
        let (slot, mut out) = self.take_buffer();
        let Some(remote) = self.remote.as_mut() else {
            return errors(n, "the instance has no model");
        };
        let (len, out_len) = (remote.input_len(), remote.output_item_len());
        out.clear();
        self.batch.clear();
        for j in &jobs {
            match j {
                FrameInput::Tensor(t) if t.len() >= len => self.batch.extend_from_slice(&t[..len]),
                _ => {
                    return errors(
                        n,
                        "a remote model takes letterboxed frames in system memory",
                    );
                }
            }
        }
        if let Err(e) = remote.run_items(&self.batch, n, &mut out) {
            return errors(n, &e.to_string());
        }
        self.finish(jobs, slot, out, out_len)
    }

    /// Hands each frame its slice of the batch's output.
    fn finish(
        &mut self,
        jobs: Vec<FrameInput>,
        slot: usize,
        out: Vec<f32>,
        out_len: usize,
    ) -> Vec<Result<FrameOutput, String>> {
        self.metrics.batch(jobs.len());
        let buf = Arc::new(out);
        self.pool[slot] = buf.clone();
        jobs.into_iter()
            .enumerate()
            .map(|(i, input)| {
                Ok(FrameOutput {
                    input,
                    batch: buf.clone(),
                    offset: i * out_len,
                    len: out_len,
                })
            })
            .collect()
    }
}

/// The instance's metrics label: its id, or `private-N`.
fn instance_label(id: &Option<String>) -> String {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match id {
        Some(id) => id.clone(),
        None => format!(
            "private-{}",
            SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    }
}

fn first_device(engines: &[Arc<Mutex<Engine>>]) -> i32 {
    engines[0].lock().cuda_device().unwrap_or(0)
}

fn errors(n: usize, e: &str) -> Vec<Result<FrameOutput, String>> {
    (0..n).map(|_| Err(e.to_string())).collect()
}

/// A model instance.
pub struct Instance {
    id: Option<String>,
    cfg: InstanceConfig,
    info: ModelInfo,
    fallbacks: Vec<(Provider, String)>,
    runtime_path: PathBuf,
    engines: Vec<Arc<Mutex<Engine>>>,
    gpu: Option<Arc<GpuLetterbox>>,
    gpu_error: Option<String>,
    log: Arc<Mutex<EventLog>>,
    provider: Arc<Mutex<Provider>>,
    /// How long loading took (sessions, warm-up).
    load_time: Duration,
    /// Retry and failure counts of a remote instance.
    remote_stats: Option<Arc<RemoteStats>>,
    /// The instance that replaces this one (a model swap while playing): each element moves to
    /// it at its next frame boundary, and this one goes with the last element that lets go.
    successor: Mutex<Option<Arc<Instance>>>,
    // Dropped first: joins the workers before the engines go.
    scheduler: Scheduler<Worker>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// Returns free heap memory of every malloc arena to the system (glibc's `malloc_trim`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes a padding size and has no preconditions; it is thread-safe.
    unsafe { malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

static INSTANCES: Mutex<Option<HashMap<String, Weak<Instance>>>> = Mutex::new(None);

/// See [`Instance::retiring`].
static RETIRING: AtomicUsize = AtomicUsize::new(0);

impl Instance {
    /// The instance `id` names (made with `cfg` if none is running), or a private one for `None`.
    /// A running instance made with other options is an error naming each difference.
    pub fn acquire(id: Option<&str>, cfg: &InstanceConfig) -> Result<Arc<Instance>, EngineError> {
        let Some(id) = id else {
            return Ok(Arc::new(Instance::new(None, cfg)?));
        };
        // Held while a new instance loads, so that elements starting together make one.
        let mut reg = INSTANCES.lock();
        let map = reg.get_or_insert_with(HashMap::new);
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(inst) = map.get(id).and_then(Weak::upgrade) {
            let diff = inst.cfg.differences(cfg);
            if !diff.is_empty() {
                return Err(EngineError::InstanceMismatch {
                    id: id.to_string(),
                    differences: diff,
                });
            }
            return Ok(inst);
        }
        let inst = Arc::new(Instance::new(Some(id.to_string()), cfg)?);
        map.insert(id.to_string(), Arc::downgrade(&inst));
        Ok(inst)
    }

    /// Loads `cfg` as this instance's successor under the same id, warmed up so that its first
    /// frame is not slower than the others; the old instance keeps serving meanwhile. Nothing
    /// changes until [`Instance::hand_over`].
    pub fn load_successor(&self, cfg: &InstanceConfig) -> Result<Arc<Instance>, EngineError> {
        let start = std::time::Instant::now();
        let mut new = Instance::new(self.id.clone(), cfg)?;
        new.warm_up()?;
        new.load_time = start.elapsed();
        Ok(Arc::new(new))
    }

    /// Makes `new` this instance's successor: the id names it from now on, and every element
    /// of this instance moves to it at its next frame boundary.
    pub fn hand_over(&self, new: Arc<Instance>) {
        if let Some(id) = &self.id {
            let mut reg = INSTANCES.lock();
            reg.get_or_insert_with(HashMap::new)
                .insert(id.clone(), Arc::downgrade(&new));
        }
        *self.successor.lock() = Some(new);
    }

    /// Lets go of `old`, an instance a swap replaced, on a thread of its own, then hands the
    /// memory its sessions freed back to the system. The successor was loaded on another
    /// thread, and glibc keeps memory freed in that thread's arena: without the trim, resident
    /// memory grew ~145 KiB per swap on the CPU (1,000 swaps: +142 MiB; +2 MiB for 300 with
    /// `MALLOC_ARENA_MAX=1`). A thread per swap measured better than one long-lived thread
    /// (1,000 swaps: +19 against +36 MiB; BENCHMARKS.md, live operation). GPU instances are
    /// dropped on the caller's thread instead: on the H200, CUDA swaps grew host memory
    /// ~2.9 MiB each with the retire thread against ~165 KiB without, once warmed up.
    pub fn retire(old: Arc<Instance>) {
        if matches!(old.provider(), Provider::Cuda | Provider::TensorRt) {
            drop(old);
            return;
        }
        RETIRING.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("yolo-retire".into())
            .spawn(move || {
                drop(old);
                trim_heap();
                RETIRING.fetch_sub(1, Ordering::SeqCst);
            });
        // Without a thread, the closure (and `old` with it) was dropped here already.
        if spawned.is_err() {
            trim_heap();
            RETIRING.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Instances [`Instance::retire`] is still letting go of: a memory soak samples when none
    /// is, so that it sees what a swap keeps rather than what it is still freeing.
    pub fn retiring() -> usize {
        RETIRING.load(Ordering::SeqCst)
    }

    /// The newest instance that replaced this one, if any.
    pub fn successor(&self) -> Option<Arc<Instance>> {
        let mut next = self.successor.lock().clone()?;
        loop {
            let after = next.successor.lock().clone();
            match after {
                Some(a) => next = a,
                None => return Some(next),
            }
        }
    }

    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// One run per worker at batch 1 and at the largest batch on the host path (the GPU path
    /// ran every batch shape in `new`): ONNX Runtime's first run of a shape plans its memory
    /// and is several times slower than the next.
    fn warm_up(&mut self) -> Result<(), EngineError> {
        if self.gpu.is_some() {
            return Ok(());
        }
        let max_batch = self.scheduler.config().max_batch;
        let mut out = Vec::new();
        for e in &self.engines {
            let mut e = e.lock();
            let len = e.input_len();
            for n in [1, max_batch] {
                let zeros = vec![0.0f32; len * n];
                out.clear();
                e.run_items(&zeros, n, &mut out)?;
                if max_batch == 1 {
                    break;
                }
            }
        }
        Ok(())
    }

    fn new(id: Option<String>, cfg: &InstanceConfig) -> Result<Instance, EngineError> {
        if let Some(rc) = &cfg.remote {
            return Self::new_remote(id, cfg, rc);
        }
        let start = std::time::Instant::now();
        let workers = cfg.workers.max(1);
        let mut engines = Vec::with_capacity(workers);
        let mut log = EventLog::default();
        for _ in 0..workers {
            let mut e = Engine::new(&cfg.engine)?;
            log.push(e.poll());
            engines.push(e);
        }
        let first = &engines[0];
        let info = first.info().clone();
        let fallbacks = first.fallbacks().to_vec();
        let runtime_path = first.runtime_path().to_path_buf();
        let provider = first.provider();
        let (gpu, gpu_error) = match first.cuda_device() {
            Some(dev) if cfg.gpu_preprocess => match GpuLetterbox::new(dev) {
                Ok(g) => (Some(Arc::new(g)), None),
                Err(e) => (None, Some(e)),
            },
            _ => (None, None),
        };
        let max_batch = match info.batch {
            Some(b) => b.max(cfg.batch_size).max(1),
            None => cfg.batch_size.max(1),
        };
        // Every batch shape a worker may run, once each, one session at a time, before any
        // frame: cuDNN's algorithm search for a new shape takes a while (a stall mid-stream
        // otherwise), and it captures CUDA graphs, during which another session's device-wide
        // synchronisation fails.
        if let Some(g) = &gpu {
            let mut scratch = Vec::new();
            for e in &mut engines {
                let mut n = 1;
                loop {
                    e.run_device_items(
                        n,
                        max_batch,
                        |_, _| Ok(()),
                        |src, dst| g.copy_to_host(src, dst),
                        &mut scratch,
                    )?;
                    if n >= max_batch || info.batch.is_some() {
                        break;
                    }
                    n = (n * 2).min(max_batch);
                }
            }
        }
        let log = Arc::new(Mutex::new(log));
        let provider = Arc::new(Mutex::new(provider));
        let engines: Vec<_> = engines
            .into_iter()
            .map(|e| Arc::new(Mutex::new(e)))
            .collect();
        // One kernel stream per worker: with one shared stream, a worker's output copy waited for
        // the other's kernels and the workers ran in lockstep (measured on an H200: 2 workers
        // slower than 1).
        let mut worker_gpu = Vec::with_capacity(engines.len());
        for i in 0..engines.len() {
            worker_gpu.push(match &gpu {
                Some(g) if i == 0 => Some(g.clone()),
                Some(_) => Some(Arc::new(
                    GpuLetterbox::new(first_device(&engines)).map_err(EngineError::Inference)?,
                )),
                None => None,
            });
        }
        let metrics = Arc::new(InstanceMetrics::new(&instance_label(&id)));
        let backends = engines
            .iter()
            .zip(worker_gpu)
            .map(|(e, gpu)| Worker {
                metrics: metrics.clone(),
                engine: Some(e.clone()),
                remote: None,
                gpu,
                max_batch,
                batch: Vec::new(),
                pool: Vec::new(),
                log: log.clone(),
                provider: provider.clone(),
            })
            .collect();
        let scheduler = Scheduler::new(
            backends,
            SchedulerConfig {
                max_batch,
                timeout: cfg.batch_timeout,
            },
        )
        .map_err(EngineError::Inference)?;
        Ok(Instance {
            id,
            cfg: cfg.clone(),
            info,
            fallbacks,
            runtime_path,
            engines,
            gpu,
            gpu_error,
            log,
            provider,
            load_time: start.elapsed(),
            remote_stats: None,
            successor: Mutex::new(None),
            scheduler,
        })
    }

    /// An instance whose model runs on an inference server: one client per worker over one
    /// connection, so that several workers keep several requests in flight.
    fn new_remote(
        id: Option<String>,
        cfg: &InstanceConfig,
        rc: &RemoteConfig,
    ) -> Result<Instance, EngineError> {
        let start = std::time::Instant::now();
        let model = &cfg.engine.model;
        let onnx = (!model.as_os_str().is_empty()).then_some(model.as_path());
        let remote = RemoteEngine::connect(rc, onnx)?;
        let info = remote.info().clone();
        let max_batch = match info.batch {
            Some(b) => b.max(cfg.batch_size).max(1),
            None => cfg.batch_size.max(1),
        };
        let metrics = Arc::new(InstanceMetrics::new(&instance_label(&id)));
        let log = Arc::new(Mutex::new(EventLog::default()));
        let provider = Arc::new(Mutex::new(Provider::Remote));
        let backends = (0..cfg.workers.max(1))
            .map(|_| Worker {
                metrics: metrics.clone(),
                engine: None,
                remote: Some(remote.clone()),
                gpu: None,
                max_batch,
                batch: Vec::new(),
                pool: Vec::new(),
                log: log.clone(),
                provider: provider.clone(),
            })
            .collect();
        let scheduler = Scheduler::new(
            backends,
            SchedulerConfig {
                max_batch,
                timeout: cfg.batch_timeout,
            },
        )
        .map_err(EngineError::Inference)?;
        Ok(Instance {
            id,
            cfg: cfg.clone(),
            info,
            fallbacks: Vec::new(),
            runtime_path: PathBuf::new(),
            engines: Vec::new(),
            gpu: None,
            gpu_error: None,
            log,
            provider,
            load_time: start.elapsed(),
            remote_stats: Some(remote.stats().clone()),
            successor: Mutex::new(None),
            scheduler,
        })
    }

    /// Retry and failure counts when the model runs on an inference server.
    pub fn remote_stats(&self) -> Option<&Arc<RemoteStats>> {
        self.remote_stats.as_ref()
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The provider running the model now (resolved from `auto`, updated on a switch-over).
    pub fn provider(&self) -> Provider {
        *self.provider.lock()
    }

    pub fn fallbacks(&self) -> &[(Provider, String)] {
        &self.fallbacks
    }

    /// ONNX Runtime's warning when some nodes run on its CPU provider inside the GPU session.
    pub fn cpu_nodes(&self) -> Option<String> {
        self.engines.first()?.lock().cpu_nodes().map(str::to_owned)
    }

    pub fn runtime_path(&self) -> &std::path::Path {
        &self.runtime_path
    }

    /// The GPU letterbox, when frames are pre-processed on the GPU.
    pub fn gpu(&self) -> Option<&Arc<GpuLetterbox>> {
        self.gpu.as_ref()
    }

    /// Why GPU pre-processing was wanted but is off (frames are letterboxed on the CPU).
    pub fn gpu_error(&self) -> Option<&str> {
        self.gpu_error.as_deref()
    }

    /// A stream's connection to the batch scheduler.
    pub fn stream(&self) -> StreamHandle<FrameInput, FrameOutput> {
        self.scheduler.stream()
    }

    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.scheduler.stats()
    }

    /// The first worker's engine, for a private instance's `pipelined` mode, which drives the
    /// session itself (its worker then has nothing to do). `None` on a remote instance (the
    /// element refuses `pipelined` with `inference-server`).
    pub fn engine(&self) -> Option<&Arc<Mutex<Engine>>> {
        self.engines.first()
    }

    /// Engine events after `cursor` (which moves on). `pipelined` mode polls the engine itself.
    pub fn events_since(&self, cursor: &mut u64, poll_engine: bool) -> Vec<EngineEvent> {
        if poll_engine && let Some(engine) = self.engines.first() {
            let evs = engine.lock().poll();
            if let Some(EngineEvent::Switched { to, .. }) = evs
                .iter()
                .rev()
                .find(|e| matches!(e, EngineEvent::Switched { .. }))
            {
                *self.provider.lock() = *to;
            }
            self.log.lock().push(evs);
        }
        let log = self.log.lock();
        let out = log
            .events
            .iter()
            .filter(|(seq, _)| *seq >= *cursor)
            .map(|(_, e)| e.clone())
            .collect();
        *cursor = log.next;
        out
    }
}
