// SPDX-License-Identifier: MPL-2.0

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use parking_lot::Mutex;

use crate::detection::Detection;
use crate::engine::cuda::{DeviceBuffer, DeviceFrame};
use crate::engine::instance::{FrameInput, FrameOutput, Instance, InstanceConfig};
use crate::engine::scheduler::StreamHandle;
use crate::engine::{self, EngineConfig, EngineError, Provider};
use crate::filters::parse_classes;
use crate::frame::{FrameRef, PixelLayout, YuvColor};
use crate::labels;
use crate::meta::DetectionMeta;
use crate::postprocess::{PostParams, Postprocessor};
use crate::preprocess::{Letterbox, Preprocessor, Rect};
use crate::stats::{FrameTimes, StageStats, Summary};
use crate::video::{CudaFrame, frame_ref, layout_of};

use super::providers::{self, GpuSettings};

#[path = "filtering.rs"]
mod filtering;
#[path = "live.rs"]
mod live;
#[path = "pipelined.rs"]
mod pipelined;
#[path = "remote.rs"]
mod remote;
#[path = "swap.rs"]
mod swap;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "yolodetect",
        gst::DebugColorFlags::empty(),
        Some("YOLO object detection"),
    )
});

/// ONNX Runtime's own log output.
static ORT_CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "yoloort",
        gst::DebugColorFlags::empty(),
        Some("ONNX Runtime log output for yolodetect"),
    )
});

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstYoloExecutionProvider")]
pub enum ExecutionProvider {
    #[default]
    #[enum_value(name = "CPU (ONNX Runtime's default provider)", nick = "cpu")]
    Cpu = 0,
    #[enum_value(name = "NVIDIA CUDA", nick = "cuda")]
    Cuda = 1,
    #[enum_value(name = "NVIDIA TensorRT", nick = "tensorrt")]
    TensorRt = 2,
    #[enum_value(
        name = "TensorRT, then CUDA, then CPU: the first that starts",
        nick = "auto"
    )]
    Auto = 3,
}

impl From<ExecutionProvider> for Provider {
    fn from(p: ExecutionProvider) -> Provider {
        match p {
            ExecutionProvider::Cpu => Provider::Cpu,
            ExecutionProvider::Cuda => Provider::Cuda,
            ExecutionProvider::TensorRt => Provider::TensorRt,
            ExecutionProvider::Auto => Provider::Auto,
        }
    }
}

/// How I420/NV12 chroma is upsampled (see [`crate::preprocess::ChromaUpsampling`]).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstYoloChromaUpsampling")]
pub enum ChromaUpsampling {
    #[default]
    #[enum_value(name = "Bilinear, centred chroma siting", nick = "bilinear")]
    Bilinear = 0,
    #[enum_value(
        name = "Nearest neighbour, as FFmpeg/OpenCV (and so Ultralytics on video) convert",
        nick = "nearest"
    )]
    Nearest = 1,
}

impl From<ChromaUpsampling> for crate::preprocess::ChromaUpsampling {
    fn from(c: ChromaUpsampling) -> Self {
        match c {
            ChromaUpsampling::Bilinear => Self::Bilinear,
            ChromaUpsampling::Nearest => Self::Nearest,
        }
    }
}

const DEFAULT_CONF: f32 = 0.25;
const DEFAULT_IOU: f32 = 0.7;
const DEFAULT_MAX_DET: u32 = 300;
const DEFAULT_BATCH_TIMEOUT_MS: u32 = 10;
/// Frames between updates of the latency estimate.
const LATENCY_EVERY: u64 = 16;

/// Property values. `Default` is the single source of defaults.
#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    label_file: Option<PathBuf>,
    conf_threshold: f32,
    iou_threshold: f32,
    agnostic_nms: bool,
    max_detections: u32,
    /// Class ids to keep; empty keeps all. Shared so the per-frame copy does not allocate.
    classes: Arc<[u32]>,
    /// `classes` as the user wrote it (ids and/or names); names resolve against the labels.
    classes_text: String,
    num_threads: u32,
    execution_provider: ExecutionProvider,
    device_id: i32,
    /// Milliseconds between `yolodetect-stats` element messages; 0 posts none.
    stats_interval: u32,
    chroma_upsampling: ChromaUpsampling,
    /// CUDA and TensorRT options (see `providers.rs`).
    gpu: GpuSettings,
    /// The inference server, when the model runs remotely.
    remote: remote::RemoteSettings,
    /// Elements with the same id share one model instance.
    model_instance_id: Option<String>,
    batch_size: u32,
    batch_timeout_ms: u32,
    inference_workers: u32,
    gpu_preprocess: bool,
    /// Run the model on every Nth frame.
    inference_interval: u32,
    /// Frames the model skips carry the last detections (marked repeated).
    repeat_detections: bool,
    /// Per-class thresholds, box sizes, region of interest (see `filtering.rs`).
    filters: filtering::FilterSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            label_file: None,
            conf_threshold: DEFAULT_CONF,
            iou_threshold: DEFAULT_IOU,
            agnostic_nms: false,
            max_detections: DEFAULT_MAX_DET,
            classes: Arc::from(Vec::new()),
            classes_text: String::new(),
            num_threads: 0,
            execution_provider: ExecutionProvider::Cpu,
            device_id: 0,
            stats_interval: 0,
            chroma_upsampling: ChromaUpsampling::default(),
            gpu: GpuSettings::default(),
            remote: remote::RemoteSettings::default(),
            model_instance_id: None,
            batch_size: 1,
            batch_timeout_ms: DEFAULT_BATCH_TIMEOUT_MS,
            inference_workers: 1,
            gpu_preprocess: true,
            inference_interval: 1,
            repeat_detections: false,
            filters: Default::default(),
        }
    }
}

/// Runtime data, built in `start`/`set_caps`, dropped in `stop`.
struct State {
    instance: Arc<Instance>,
    /// This stream's place in the instance's batch scheduler.
    stream: StreamHandle<FrameInput, FrameOutput>,
    /// The letterboxed frame (CPU pre-processing), lent to the scheduler for each frame.
    input: Vec<f32>,
    /// The frame in device memory (GPU pre-processing).
    upload: Option<DeviceBuffer>,
    /// Frames arrive in CUDA memory.
    cuda_memory: bool,
    /// Engine events already reported.
    event_cursor: u64,
    labels: Vec<Arc<str>>,
    pre: Preprocessor,
    post: Postprocessor,
    detections: Vec<Detection>,
    info: Option<gst_video::VideoInfo>,
    layout: Option<(PixelLayout, YuvColor)>,
    /// Frames in flight in `pipelined` mode.
    pipe: pipelined::Pipe,
    /// The settings the model instance was made from (restored when a swap fails).
    serving: Settings,
}

/// Stage timings, behind their own lock so reading `stats` never waits for inference.
#[derive(Default)]
struct Stats {
    stages: StageStats,
    provider: &'static str,
    /// The model instance, without keeping it alive after `stop`.
    instance: std::sync::Weak<Instance>,
    /// Its batch size, workers and counters when last seen (kept after `stop`).
    batching: Batching,
    /// Model swaps while running.
    swaps: u64,
    /// Prometheus series, from start to stop.
    metrics: Option<crate::metrics::ElementMetrics>,
}

#[derive(Default, Clone)]
struct Batching {
    batch_size: u32,
    workers: Vec<crate::engine::scheduler::WorkerStats>,
}

impl Stats {
    fn batching(&mut self) -> &Batching {
        if let Some(inst) = self.instance.upgrade() {
            self.batching = Batching {
                batch_size: inst.config().batch_size as u32,
                workers: inst.worker_stats(),
            };
        }
        &self.batching
    }
}

#[derive(Default)]
pub struct YoloDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<Stats>,
    reload: Mutex<swap::Reload>,
    live: Mutex<live::Live>,
    roi_note: Mutex<filtering::RoiNote>,
    /// Frames passed on without detections after a failed inference (`pass-on-error`).
    passed_on_error: remote::Passed,
}

#[glib::object_subclass]
impl ObjectSubclass for YoloDetect {
    const NAME: &'static str = "GstYoloDetect";
    type Type = super::YoloDetect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for YoloDetect {
    fn constructed(&self) {
        self.parent_constructed();
        // As GStreamer's video filters: on by default. Late frames skip inference, never drop.
        self.obj().set_qos(true);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let s = Settings::default();
            let mut v = vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Path to a YOLO ONNX model (YOLOv5/v8/11 heads or end-to-end [B,K,6] exports). Set while PLAYING, the new model instance loads in the background and replaces the old one at a frame boundary (yolodetect-model-changed message; on failure a warning and the old one keeps serving)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("label-file")
                    .nick("Label file")
                    .blurb("Text file with one class name per line, overriding the model's own names; set while PLAYING it is swapped in with the model")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("conf-threshold")
                    .nick("Confidence threshold")
                    .blurb("Keep detections whose confidence is strictly greater than this")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(s.conf_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("iou-threshold")
                    .nick("IoU threshold")
                    .blurb("Non-maximum suppression drops a box overlapping a better one by more than this IoU")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(s.iou_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("agnostic-nms")
                    .nick("Class-agnostic NMS")
                    .blurb("Suppress overlapping boxes across classes (default: only within a class)")
                    .default_value(s.agnostic_nms)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-detections")
                    .nick("Maximum detections")
                    .blurb("Keep at most this many detections per frame, best first")
                    .minimum(1)
                    .maximum(10_000)
                    .default_value(s.max_detections)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("classes")
                    .nick("Classes")
                    .blurb("Comma-separated class ids or names to keep, e.g. \"0,2\" or \"person,car\"; empty keeps all; an unknown name or id is an error at start")
                    .default_value(Some(""))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("num-threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads; 0 = one per available CPU core; set while PLAYING: a model swap")
                    .minimum(0)
                    .maximum(256)
                    .default_value(s.num_threads)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("execution-provider", s.execution_provider)
                    .nick("Execution provider")
                    .blurb("ONNX Runtime execution provider; an explicit GPU provider that cannot start is an error; set while PLAYING: a model swap")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecInt::builder("device-id")
                    .nick("Device id")
                    .blurb("GPU index for the CUDA and TensorRT providers; set while PLAYING: a model swap")
                    .minimum(0)
                    .maximum(1024)
                    .default_value(s.device_id)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("active-provider")
                    .nick("Active provider")
                    .blurb("The execution provider actually running the model (empty until started)")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("yolodetect-stats structure: frames, fps, window, execution-provider and per stage (pre, infer = queue wait + model, post, meta, added = all but infer, total) <stage>-p50-ms and <stage>-p99-ms over the last frames (frames of pipelined=true are not counted yet); for the model instance: batch-size, inference-workers, instance-frames, instance-batches, mean-batch-fill, queue-wait-p99-ms and per worker worker<i>-batches, -mean-batch-fill, -queue-wait-p50-ms, -queue-wait-p99-ms")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("stats-interval")
                    .nick("Statistics interval")
                    .blurb("Post the `stats` structure as an element message every this many milliseconds; 0 = never")
                    .maximum(3_600_000)
                    .default_value(s.stats_interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("model-instance-id")
                    .nick("Model instance id")
                    .blurb("Elements with the same id share one model instance (one session, cross-stream batching), in one pipeline or across pipelines of the process; they must agree on model, provider, device and the other model options. Empty: a private instance. Changeable in NULL or READY")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Most frames per model call, gathered from all streams of the model instance (a static-batch model runs its own batch size, padded).; set while PLAYING: a model swap")
                    .minimum(1)
                    .maximum(256)
                    .default_value(s.batch_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("batch-timeout")
                    .nick("Batch timeout")
                    .blurb("Milliseconds a batch waits to fill before it runs with what it has (it never waits when every active stream has a frame queued).; set while PLAYING: a model swap")
                    .maximum(10_000)
                    .default_value(s.batch_timeout_ms)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("inference-workers")
                    .nick("Inference workers")
                    .blurb("Inference workers (ONNX Runtime sessions, each on its own thread) serving the model instance, like DL Streamer's nireq.; set while PLAYING: a model swap")
                    .minimum(1)
                    .maximum(64)
                    .default_value(s.inference_workers)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("gpu-preprocess")
                    .nick("GPU pre-processing")
                    .blurb("With the CUDA and TensorRT providers, convert and letterbox frames on the GPU (a kernel compiled with NVRTC); frames in CUDA memory need it. Changeable in NULL or READY")
                    .default_value(s.gpu_preprocess)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("inference-interval")
                    .nick("Inference interval")
                    .blurb("Run the model on every Nth frame (1 = all); the frames between pass through with no fresh detections (see repeat-detections)")
                    .minimum(1)
                    .maximum(100_000)
                    .default_value(s.inference_interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("repeat-detections")
                    .nick("Repeat detections")
                    .blurb("Frames the model skips (inference-interval, qos) carry the last frame's detections, marked as repeated (DetectionMeta::is_repeated, `repeated` in the ROI params); else none")
                    .default_value(s.repeat_detections)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("chroma-upsampling", s.chroma_upsampling)
                    .nick("Chroma upsampling")
                    .blurb("How I420/NV12 chroma is upsampled: bilinear, or nearest as FFmpeg/OpenCV do (closer to Ultralytics' boxes on video); changeable in NULL or READY")
                    .mutable_ready()
                    .build(),
                        ];
            v.extend(filtering::properties());
            v.extend(providers::properties());
            v.extend(remote::properties());
            v
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self.refused_while_running(pspec) {
            return;
        }
        let swap = swap::SWAP_PROPERTIES.contains(&pspec.name()) && self.state.lock().is_some();
        self.apply_property(value, pspec);
        if swap {
            self.request_reload();
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock();
        match pspec.name() {
            "model" => s.model.as_ref().map(|p| p.display().to_string()).to_value(),
            "label-file" => s
                .label_file
                .as_ref()
                .map(|p| p.display().to_string())
                .to_value(),
            "conf-threshold" => s.conf_threshold.to_value(),
            "iou-threshold" => s.iou_threshold.to_value(),
            "agnostic-nms" => s.agnostic_nms.to_value(),
            "max-detections" => s.max_detections.to_value(),
            "classes" => s.classes_text.to_value(),
            "num-threads" => s.num_threads.to_value(),
            "execution-provider" => s.execution_provider.to_value(),
            "device-id" => s.device_id.to_value(),
            "stats-interval" => s.stats_interval.to_value(),
            "model-instance-id" => s.model_instance_id.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "batch-timeout" => s.batch_timeout_ms.to_value(),
            "inference-workers" => s.inference_workers.to_value(),
            "gpu-preprocess" => s.gpu_preprocess.to_value(),
            "inference-interval" => s.inference_interval.to_value(),
            "repeat-detections" => s.repeat_detections.to_value(),
            "chroma-upsampling" => s.chroma_upsampling.to_value(),
            "stats" => {
                drop(s);
                self.stats_structure().to_value()
            }
            "active-provider" => {
                drop(s);
                self.state
                    .lock()
                    .as_ref()
                    .map(|st| st.instance.provider().name())
                    .unwrap_or("")
                    .to_value()
            }
            name => filtering::get(&s.filters, name)
                .or_else(|| providers::get(&s.gpu, name))
                .or_else(|| remote::get(&s.remote, name))
                .unwrap_or_else(|| unimplemented!()),
        }
    }
}

impl GstObjectImpl for YoloDetect {}

impl ElementImpl for YoloDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "YOLO object detector",
                "Filter/Analyzer/Video",
                "Detects objects with a YOLO ONNX model through ONNX Runtime and attaches them as metadata",
                "gst-yolo developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::video::detect_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl YoloDetect {
    /// The model instance the settings ask for.
    fn instance_config(s: &Settings) -> Result<InstanceConfig, gst::ErrorMessage> {
        let remote = s
            .remote
            .config(s.model.as_deref())
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{e}")))?;
        if remote.is_some() && s.gpu.pipelined {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("pipelined=true drives a local session; with inference-server, use inference-workers > 1 to keep several requests in flight")
            ));
        }
        // A remote model's file is optional (it only gives the class names).
        let model = s
            .model
            .clone()
            .or_else(|| remote.as_ref().map(|_| PathBuf::new()));
        let Some(model) = model else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("no model set: set the `model` property to a YOLO ONNX file, e.g. yolodetect model=yolov8n.onnx")
            ));
        };
        let mut cfg = EngineConfig::new(model);
        cfg.provider = s.execution_provider.into();
        cfg.device_id = s.device_id;
        cfg.num_threads = s.num_threads as usize;
        s.gpu.apply(&mut cfg);
        let shared = s.model_instance_id.is_some() || s.batch_size > 1 || s.inference_workers > 1;
        if s.gpu.pipelined && shared {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("pipelined=true drives a private model instance itself: it cannot be combined with model-instance-id, batch-size > 1 or inference-workers > 1 (batching already keeps the model busy)")
            ));
        }
        Ok(InstanceConfig {
            engine: cfg,
            batch_size: s.batch_size as usize,
            batch_timeout: std::time::Duration::from_millis(s.batch_timeout_ms.into()),
            workers: s.inference_workers as usize,
            gpu_preprocess: s.gpu_preprocess && !s.gpu.pipelined && remote.is_none(),
            remote,
        })
    }

    fn build_state(&self, s: &Settings) -> Result<State, gst::ErrorMessage> {
        let icfg = Self::instance_config(s)?;
        let cfg = &icfg.engine;
        let instance = Instance::acquire(s.model_instance_id.as_deref(), &icfg)
            .map_err(|e| engine_error_msg(&e))?;
        if let Some(e) = instance.gpu_error() {
            gst::warning!(
                CAT,
                imp = self,
                "GPU pre-processing is off, frames are letterboxed on the CPU: {e}"
            );
        }
        let info = instance.info().clone();
        gst::info!(
            CAT,
            imp = self,
            "loaded {} ({}x{}, head {}, {} names) on {} with ONNX Runtime from {}",
            cfg.model.display(),
            info.input_width,
            info.input_height,
            info.head.describe(),
            info.names.as_ref().map_or(0, Vec::len),
            instance.provider().name(),
            instance.runtime_path().display()
        );
        let labels = self.load_labels(s, &info)?;
        let input = vec![0.0; 3 * info.input_width as usize * info.input_height as usize];
        self.resolve_classes(&s.classes_text, &labels)?;
        self.resolve_filters(&s.filters, &labels)?;
        Ok(State {
            stream: instance.stream(),
            instance,
            input,
            upload: None,
            cuda_memory: false,
            event_cursor: 0,
            labels,
            pre: preprocessor(s),
            post: Postprocessor::new(),
            detections: Vec::with_capacity(DEFAULT_MAX_DET as usize),
            info: None,
            layout: None,
            pipe: Default::default(),
            serving: s.clone(),
        })
    }

    fn load_labels(
        &self,
        s: &Settings,
        info: &engine::ModelInfo,
    ) -> Result<Vec<Arc<str>>, gst::ErrorMessage> {
        let num_classes = info.head.num_classes();
        let names: Vec<String> = if let Some(path) = &s.label_file {
            let text = labels::read_label_file(path).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("cannot read label file {}: {e}", path.display())
                )
            })?;
            let labels = labels::parse_label_file(&text).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("label file {}: {e}", path.display())
                )
            })?;
            if let Some(n) = num_classes {
                labels::check_count(&labels, n).map_err(|e| {
                    gst::error_msg!(
                        gst::ResourceError::Settings,
                        ("label file {}: {e}", path.display())
                    )
                })?;
            }
            labels
        } else if let Some(names) = &info.names {
            names.clone()
        } else {
            gst::warning!(
                CAT,
                imp = self,
                "model has no class names and no label-file is set: labels will be class ids"
            );
            (0..num_classes.unwrap_or(0))
                .map(|i| format!("class{i}"))
                .collect()
        };
        Ok(names.into_iter().map(Arc::from).collect())
    }
}

fn preprocessor(s: &Settings) -> Preprocessor {
    let mut pre = Preprocessor::new();
    pre.set_chroma_upsampling(s.chroma_upsampling.into());
    pre
}

/// Property checks that need the element (its state, its labels, its bus).
impl YoloDetect {
    fn apply_property(&self, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock();
        match pspec.name() {
            "model" => {
                s.model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            }
            "label-file" => {
                s.label_file = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            }
            "conf-threshold" => s.conf_threshold = value.get().expect("type checked upstream"),
            "iou-threshold" => s.iou_threshold = value.get().expect("type checked upstream"),
            "agnostic-nms" => s.agnostic_nms = value.get().expect("type checked upstream"),
            "max-detections" => s.max_detections = value.get().expect("type checked upstream"),
            "classes" => {
                let text: Option<String> = value.get().expect("type checked upstream");
                drop(s);
                self.set_classes(text.unwrap_or_default());
            }
            "num-threads" => s.num_threads = value.get().expect("type checked upstream"),
            "execution-provider" => {
                s.execution_provider = value.get().expect("type checked upstream")
            }
            "device-id" => s.device_id = value.get().expect("type checked upstream"),
            "stats-interval" => s.stats_interval = value.get().expect("type checked upstream"),
            "model-instance-id" => {
                s.model_instance_id = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|p| !p.is_empty())
            }
            "batch-size" => s.batch_size = value.get().expect("type checked upstream"),
            "batch-timeout" => s.batch_timeout_ms = value.get().expect("type checked upstream"),
            "inference-workers" => {
                s.inference_workers = value.get().expect("type checked upstream")
            }
            "gpu-preprocess" => s.gpu_preprocess = value.get().expect("type checked upstream"),
            "inference-interval" => {
                s.inference_interval = value.get().expect("type checked upstream")
            }
            "repeat-detections" => {
                s.repeat_detections = value.get().expect("type checked upstream")
            }
            "chroma-upsampling" => {
                s.chroma_upsampling = value.get().expect("type checked upstream")
            }
            name if filtering::is_filter_property(name) => {
                drop(s);
                self.set_filter(name, value);
            }
            name => {
                if !providers::set(&mut s.gpu, name, value)
                    && !remote::set(&mut s.remote, name, value)
                {
                    unimplemented!()
                }
            }
        }
    }

    /// A property that needs a reload (`mutable_ready`) set in PAUSED or PLAYING would only be
    /// half applied (`pipelined` is even re-read per buffer, and toggling it reorders buffers):
    /// refuse it with a warning instead.
    fn refused_while_running(&self, pspec: &glib::ParamSpec) -> bool {
        let flags = pspec.flags();
        if !flags.contains(gst::PARAM_FLAG_MUTABLE_READY)
            || flags.contains(gst::PARAM_FLAG_MUTABLE_PLAYING)
        {
            return false;
        }
        let state = self.obj().current_state();
        if state <= gst::State::Ready {
            return false;
        }
        gst::warning!(
            CAT,
            imp = self,
            "{} can't change in {state:?}",
            pspec.name()
        );
        gst::element_imp_warning!(
            self,
            gst::LibraryError::Settings,
            (
                "property {} can only change in the NULL or READY state, not in {state:?}; \
                 the new value is ignored",
                pspec.name()
            )
        );
        true
    }

    /// What a frame spends here: the processing time and, with `pipelined`, the two frames it
    /// holds (a live pipeline must know, or its sink drops them as late).
    fn added_latency(&self) -> gst::ClockTime {
        self.processing_latency() + self.pipelined_latency()
    }

    fn pipelined_latency(&self) -> gst::ClockTime {
        if !self.settings.lock().gpu.pipelined {
            return gst::ClockTime::ZERO;
        }
        let fps = self
            .state
            .lock()
            .as_ref()
            .and_then(|st| st.info.as_ref().map(|i| i.fps()));
        match fps {
            Some(f) if f.numer() > 0 && f.denom() > 0 => gst::ClockTime::SECOND
                .mul_div_ceil(2 * f.denom() as u64, f.numer() as u64)
                .unwrap_or(gst::ClockTime::ZERO),
            // Variable or unknown frame rate: nothing to base the delay on.
            _ => gst::ClockTime::ZERO,
        }
    }

    /// Sets `classes`. Before start only ids can be checked (names wait for the labels, and an
    /// error then fails start); while running an invalid value keeps the previous filter and
    /// posts a warning.
    fn set_classes(&self, text: String) {
        let labels = self.state.lock().as_ref().map(|st| st.labels.clone());
        let parsed = parse_classes(&text, labels.as_deref());
        let mut s = self.settings.lock();
        match (parsed, labels) {
            (Ok(ids), _) => {
                s.classes = Arc::from(ids);
                s.classes_text = text;
            }
            (Err(_), None) => {
                // Resolved (or refused) in start, once the labels are known.
                s.classes = Arc::from(Vec::new());
                s.classes_text = text;
            }
            (Err(e), Some(_)) => {
                drop(s);
                gst::element_imp_warning!(
                    self,
                    gst::LibraryError::Settings,
                    ("invalid classes \"{text}\": {e}; keeping the previous value")
                );
            }
        }
    }

    /// Resolves `classes` against the labels at start; an invalid value fails start, so that a
    /// gst-launch user sees it.
    fn resolve_classes(&self, text: &str, labels: &[Arc<str>]) -> Result<(), gst::ErrorMessage> {
        let ids = parse_classes(text, Some(labels)).map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ("invalid classes \"{text}\": {e}")
            )
        })?;
        gst::debug!(CAT, imp = self, "classes \"{text}\" -> {ids:?}");
        self.settings.lock().classes = Arc::from(ids);
        Ok(())
    }
}

/// The settings a frame needs, copied once per frame: thresholds and filters may change while
/// PLAYING, and copying these allocates nothing (unlike cloning `Settings`).
pub(super) struct FrameParams {
    conf: f32,
    iou: f32,
    agnostic: bool,
    max_det: u32,
    classes: Arc<[u32]>,
    filters: filtering::FrameFilters,
    pub(super) stats_interval: u32,
    pub(super) interval: u32,
    pub(super) repeat: bool,
}

impl FrameParams {
    pub(super) fn post_params(&self) -> PostParams<'_> {
        PostParams {
            conf_threshold: self.conf,
            iou_threshold: self.iou,
            agnostic: self.agnostic,
            max_detections: self.max_det as usize,
            classes: &self.classes,
            class_thresholds: &self.filters.class_thresholds,
            size: self.filters.size,
        }
    }
}

impl YoloDetect {
    pub(super) fn frame_params(&self) -> FrameParams {
        let s = self.settings.lock();
        FrameParams {
            conf: s.conf_threshold,
            iou: s.iou_threshold,
            agnostic: s.agnostic_nms,
            max_det: s.max_detections,
            classes: s.classes.clone(),
            filters: s.filters.frame(),
            stats_interval: s.stats_interval,
            interval: s.inference_interval,
            repeat: s.repeat_detections,
        }
    }

    /// Records one frame's stage times and posts the periodic stats message when one is due.
    fn record_stats(&self, start: Instant, t: [Instant; 5], interval_ms: u32) {
        let mut st = self.stats.lock();
        let times = FrameTimes::from_instants(t);
        st.stages.record(start, times);
        if let Some(m) = &st.metrics {
            m.inferred(
                times.pre.as_secs_f64(),
                times.infer.as_secs_f64(),
                times.post.as_secs_f64(),
            );
        }
        if st.stages.frames().is_multiple_of(LATENCY_EVERY) {
            let summary = st.stages.summary();
            drop(st);
            self.update_latency(&summary);
            self.sample_gpu_memory();
            st = self.stats.lock();
        }
        let interval = std::time::Duration::from_millis(interval_ms.into());
        if !st.stages.report_due(t[4], interval) {
            return;
        }
        drop(st);
        let s = self.stats_structure();
        self.post(s);
    }

    /// GPU memory for the metrics, where frames are letterboxed on a GPU.
    fn sample_gpu_memory(&self) {
        let gpu = self.state.lock().as_ref().and_then(|st| {
            let dev = st.instance.config().engine.device_id;
            st.instance.gpu().map(|g| (g.clone(), dev))
        });
        if let Some((g, dev)) = gpu
            && let Ok((used, total)) = g.memory_used()
        {
            crate::metrics::set_gpu_memory(dev, used, total);
        }
    }

    /// Counts a frame that failed, for the metrics.
    fn count_error<T>(&self, r: Result<T, gst::FlowError>) -> Result<T, gst::FlowError> {
        if matches!(r, Err(e) if e != gst::FlowError::Flushing)
            && let Some(m) = &self.stats.lock().metrics
        {
            m.error();
        }
        r
    }

    fn post(&self, s: gst::Structure) {
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    /// A frame boundary: where `auto` switches to a TensorRT engine built meanwhile.
    pub(super) fn poll_engine(&self) {
        let pipelined = self.settings.lock().gpu.pipelined;
        // The frames in flight live in the old engine's buffers: finish them there first (the
        // new engine started with blank ones, and they came out with no detections).
        let switching = pipelined
            && self
                .state
                .lock()
                .as_ref()
                .and_then(|st| st.instance.engine().cloned())
                .is_some_and(|e| e.lock().upgrade_ready());
        if switching {
            self.drain_pipelined();
        }
        let events = self
            .state
            .lock()
            .as_mut()
            .map(|st| st.instance.events_since(&mut st.event_cursor, pipelined))
            .unwrap_or_default();
        self.post_engine_events(events);
    }

    /// The negotiated video info and frame layout; an error before caps arrived. (`VideoInfo` is a
    /// plain struct, so the copy does not allocate.)
    fn negotiated(
        &self,
        st: &State,
    ) -> Result<(gst_video::VideoInfo, PixelLayout, YuvColor), gst::FlowError> {
        match (&st.info, st.layout) {
            (Some(info), Some((layout, color))) => Ok((info.clone(), layout, color)),
            _ => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ["no caps before the first buffer"]
                );
                Err(gst::FlowError::NotNegotiated)
            }
        }
    }

    /// Maps a frame read-only: the video passes through untouched, so nothing is copied.
    pub(super) fn map_readable<'a>(
        &self,
        buf: &'a gst::BufferRef,
        info: &gst_video::VideoInfo,
    ) -> Result<gst_video::VideoFrameRef<&'a gst::BufferRef>, gst::FlowError> {
        gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ["cannot map the video frame"]
            );
            gst::FlowError::Error
        })
    }

    /// The mapped frame as the GStreamer-free pre-processing sees it.
    pub(super) fn frame_view<'a>(
        &self,
        frame: &'a gst_video::VideoFrameRef<&'a gst::BufferRef>,
        layout: PixelLayout,
        color: YuvColor,
    ) -> Result<FrameRef<'a>, gst::FlowError> {
        frame_ref(frame, layout, color).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ["cannot read the frame's planes: {e}"]
            );
            gst::FlowError::Error
        })
    }

    /// Posts engine events as element messages (never under the state lock: a sync bus handler
    /// may read `active-provider`).
    fn post_engine_events(&self, events: Vec<engine::EngineEvent>) {
        for ev in &events {
            gst::info!(CAT, imp = self, "{ev:?}");
            self.post(providers::event_structure(ev));
            if let engine::EngineEvent::Switched { to, .. } = ev {
                let mut stats = self.stats.lock();
                stats.provider = to.name();
                if let Some(m) = &mut stats.metrics {
                    m.set_provider(to.name());
                }
                drop(stats);
                self.obj().notify("active-provider");
            }
        }
    }

    /// The frame as the model instance takes it: letterboxed on the CPU into the stream's own
    /// tensor, or (GPU pre-processing) copied once into device memory, from system memory or
    /// device to device from CUDA memory.
    fn prepare(
        &self,
        st: &mut State,
        buf: &gst::BufferRef,
        info: &gst_video::VideoInfo,
        layout: PixelLayout,
        color: YuvColor,
        rect: Option<Rect>,
    ) -> Result<(FrameInput, Letterbox), gst::FlowError> {
        let (w, h) = (
            st.instance.info().input_width,
            st.instance.info().input_height,
        );
        let fail = |e: String| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ["pre-processing failed: {e}"]
            );
            gst::FlowError::Error
        };
        if let Some(gpu) = st.instance.gpu().cloned() {
            // The region of interest goes up alone: the kernel letterboxes what it is given.
            let r = rect.unwrap_or(Rect::frame(info.width(), info.height()));
            let lb = Letterbox::of_rect(info.width(), info.height(), r, w, h);
            let frame = if st.cuda_memory {
                let cf = CudaFrame::map(buf, info)
                    .ok_or_else(|| fail("cannot map the frame's CUDA memory".into()))?;
                let planes = cf.planes();
                let offsets =
                    crate::preprocess::plane_offsets(layout, r, planes.map(|(_, pitch)| pitch));
                let df = DeviceFrame {
                    layout,
                    color,
                    width: r.w,
                    height: r.h,
                    planes: std::array::from_fn(|i| {
                        let (ptr, pitch) = planes[i];
                        (ptr + offsets[i] as u64, pitch)
                    }),
                };
                gpu.copy_device(&df, &mut st.upload)
            } else {
                let frame = self.map_readable(buf, info)?;
                let fr = self.frame_view(&frame, layout, color)?;
                let fr = crate::preprocess::crop(&fr, r)
                    .ok_or_else(|| fail(format!("roi {r:?} does not fit the frame")))?;
                gpu.upload(&fr, &mut st.upload)
            };
            return Ok((FrameInput::Device(frame.map_err(fail)?), lb));
        }
        let frame = self.map_readable(buf, info)?;
        let fr = self.frame_view(&frame, layout, color)?;
        let need = 3 * w as usize * h as usize;
        if st.input.len() != need {
            st.input = vec![0.0; need];
        }
        let lb = st
            .pre
            .run_rect(&fr, rect, w, h, &mut st.input)
            .map_err(|e| fail(e.to_string()))?;
        Ok((FrameInput::Tensor(std::mem::take(&mut st.input)), lb))
    }

    fn stats_structure(&self) -> gst::Structure {
        let (interval, late) = {
            let l = self.live.lock();
            (l.skipped_interval, l.skipped_late)
        };
        // Before the stats lock: elsewhere the state lock is taken first.
        let retries = self.state.lock().as_ref().and_then(|x| {
            let r = x.instance.remote_stats()?;
            Some(r.retries.load(std::sync::atomic::Ordering::Relaxed))
        });
        let mut st = self.stats.lock();
        let b = st.batching().clone();
        let mut s = stats_to_structure(&st.stages.summary(), st.provider, &b);
        s.set("skipped-interval", interval);
        s.set("skipped-qos", late);
        s.set("model-swaps", st.swaps);
        s.set("passed-on-error", self.passed_on_error.get());
        if let Some(r) = retries {
            s.set("server-retries", r);
        }
        s
    }
}

fn stats_to_structure(s: &Summary, provider: &str, batching: &Batching) -> gst::Structure {
    let w = &batching.workers;
    let frames: u64 = w.iter().map(|w| w.frames).sum();
    let batches: u64 = w.iter().map(|w| w.batches).sum();
    let mut b = gst::Structure::builder("yolodetect-stats")
        .field("frames", s.frames)
        .field("fps", s.fps)
        .field("batch-size", batching.batch_size)
        .field("inference-workers", w.len() as u32)
        .field("instance-frames", frames)
        .field("instance-batches", batches)
        .field(
            "mean-batch-fill",
            if batches == 0 {
                0.0
            } else {
                frames as f64 / batches as f64
            },
        )
        .field(
            "queue-wait-p99-ms",
            w.iter().map(|w| w.wait_p99_ms).fold(0.0, f64::max),
        );
    for (i, w) in w.iter().enumerate() {
        b = b
            .field(format!("worker{i}-batches"), w.batches)
            .field(format!("worker{i}-mean-batch-fill"), w.mean_fill)
            .field(format!("worker{i}-queue-wait-p50-ms"), w.wait_p50_ms)
            .field(format!("worker{i}-queue-wait-p99-ms"), w.wait_p99_ms);
    }
    b = b
        .field("window", s.window as u32)
        .field("execution-provider", provider);
    for p in &s.stages {
        b = b
            .field(format!("{}-p50-ms", p.stage.name()), p.p50_ms)
            .field(format!("{}-p99-ms", p.stage.name()), p.p99_ms);
    }
    b.build()
}

fn engine_error_msg(e: &EngineError) -> gst::ErrorMessage {
    // The text goes into the message itself: it is what gst-launch and applications show.
    match e {
        EngineError::RuntimeNotFound { .. } | EngineError::Provider { .. } => {
            gst::error_msg!(gst::LibraryError::Init, ("{}", e))
        }
        EngineError::ModelNotFound(_) => gst::error_msg!(gst::ResourceError::NotFound, ("{}", e)),
        EngineError::ModelLoad { .. }
        | EngineError::NotADetector { .. }
        | EngineError::Head { .. } => {
            gst::error_msg!(gst::ResourceError::OpenRead, ("{}", e))
        }
        EngineError::Inference(_) => gst::error_msg!(gst::StreamError::Failed, ("{}", e)),
        EngineError::Server { .. } => gst::error_msg!(gst::ResourceError::OpenRead, ("{}", e)),
        EngineError::ServerModel { .. } => gst::error_msg!(gst::ResourceError::NotFound, ("{}", e)),
        EngineError::InstanceMismatch { .. } => {
            gst::error_msg!(gst::ResourceError::Settings, ("{}", e))
        }
    }
}

impl BaseTransformImpl for YoloDetect {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        install_ort_logger();
        let settings = self.settings.lock().clone();
        let mut state = self.build_state(&settings)?;
        let provider = state.instance.provider();
        // `auto` says which providers it passed over and why; TensorRT events follow.
        let mut started = gst::Structure::builder("yolodetect-started")
            .field("execution-provider", provider.name())
            .field(
                "requested-provider",
                Provider::from(settings.execution_provider).name(),
            );
        for (p, reason) in state.instance.fallbacks() {
            gst::info!(CAT, imp = self, "{} not used: {reason}", p.name());
            started = started.field(format!("{}-unavailable", p.name()), reason.as_str());
        }
        // Not a silent fall back: nodes the GPU provider has no kernel for (or that ONNX Runtime
        // keeps on the CPU on purpose, shape computations) run on its CPU provider.
        if let Some(w) = state.instance.cpu_nodes() {
            gst::info!(CAT, imp = self, "some nodes run on the CPU provider: {w}");
            started = started.field("cpu-nodes", w);
        }
        let events = state
            .instance
            .events_since(&mut state.event_cursor, settings.gpu.pipelined);
        let instance = Arc::downgrade(&state.instance);
        let mut metrics =
            crate::metrics::ElementMetrics::new(&element_path(self.obj().upcast_ref()));
        metrics.set_provider(provider.name());
        if let Some(Err(e)) = crate::metrics::serve_from_env() {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::OpenWrite,
                ("no metrics endpoint: {e}")
            );
        }
        *self.state.lock() = Some(state);
        *self.stats.lock() = Stats {
            stages: StageStats::default(),
            provider: provider.name(),
            instance,
            batching: Batching::default(),
            swaps: 0,
            metrics: Some(metrics),
        };
        self.post(started.build());
        self.post_engine_events(events);
        self.obj().notify("active-provider");
        Ok(())
    }

    fn submit_input_buffer(
        &self,
        is_discont: bool,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.settings.lock().gpu.pipelined {
            let r = self.submit_pipelined(inbuf);
            self.count_error(r)
        } else {
            self.parent_submit_input_buffer(is_discont, inbuf)
        }
    }

    fn generate_output(
        &self,
    ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError> {
        if self.settings.lock().gpu.pipelined {
            Ok(self.take_ready())
        } else {
            self.parent_generate_output()
        }
    }

    fn src_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Qos(q) => {
                let (_, _, diff, timestamp) = q.get();
                self.on_qos(diff, timestamp);
                // Not through the base class: with QoS on it drops late buffers, and here they
                // pass on without inference instead.
                return self.obj().sink_pad().push_event(event);
            }
            gst::EventView::Latency(l) => self.on_latency(l.latency()),
            _ => {}
        }
        self.parent_src_event(event)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Eos(_) | gst::EventView::Caps(_) => self.drain_pipelined(),
            gst::EventView::FlushStop(_) => {
                self.reset_pipelined();
                self.reset_skipping();
            }
            _ => {}
        }
        // A stream at EOS or flushing is not waited for when batches fill.
        if matches!(
            event.view(),
            gst::EventView::Eos(_) | gst::EventView::FlushStart(_)
        ) && let Some(st) = self.state.lock().as_mut()
        {
            st.stream.set_active(false);
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        let res = BaseTransformImplExt::parent_query(self, direction, query);
        if res
            && direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            let extra = self.added_latency();
            let (live, min, max) = q.result();
            gst::debug!(CAT, imp = self, "adding {extra} latency to {min}");
            q.set(live, min + extra, max.map(|m| m + extra));
            self.on_latency_query(live, min + extra);
        }
        res
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // The last counters, for `stats` after stop.
        let mut stats = self.stats.lock();
        stats.batching();
        stats.metrics = None;
        drop(stats);
        *self.state.lock() = None;
        gst::info!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {incaps}"))?;
        let layout = layout_of(&info)
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported caps {incaps}"))?;
        if info.width() == 0 || info.height() == 0 {
            return Err(gst::loggable_error!(
                CAT,
                "zero-sized frames in caps {incaps}"
            ));
        }
        gst::debug!(CAT, imp = self, "configured for {incaps}");
        let mut state = self.state.lock();
        let st = state
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
        let cuda_memory = crate::video::is_cuda_memory(incaps);
        if cuda_memory && st.instance.gpu().is_none() {
            return Err(gst::loggable_error!(
                CAT,
                "frames in CUDA memory need GPU pre-processing (execution-provider=cuda or tensorrt, gpu-preprocess=true); caps {incaps}"
            ));
        }
        st.cuda_memory = cuda_memory;
        st.info = Some(info);
        st.layout = Some(layout);
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let caps = self.parent_transform_caps(direction, caps, filter)?;
        // CUDA memory only where the frames can be letterboxed on the GPU: known once started,
        // else (linking, before start) what the settings ask for.
        let gpu = match self.state.lock().as_ref() {
            Some(st) => st.instance.gpu().is_some(),
            None => {
                let s = self.settings.lock();
                s.gpu_preprocess
                    && !s.gpu.pipelined
                    && !matches!(s.execution_provider, ExecutionProvider::Cpu)
            }
        };
        Some(if gpu {
            caps
        } else {
            crate::video::without_cuda_memory(&caps)
        })
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let r = self.transform_frame(buf);
        self.count_error(r)
    }
}

impl YoloDetect {
    /// One frame: letterbox, infer (batched with the instance's other streams), decode + NMS,
    /// attach the metas.
    fn transform_frame(
        &self,
        buf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.adopt_successor();
        self.poll_engine();
        let fp = self.frame_params();
        if self.skip_frame(buf, &fp) {
            self.attach_repeated(buf, &fp);
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut guard = self.state.lock();
        let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let (info, layout, color) = self.negotiated(st)?;
        let t0 = Instant::now();
        let (rect, roi_warning) =
            self.frame_rect(fp.filters.roi, layout, info.width(), info.height());

        // Letterboxed here (CPU) or uploaded for the GPU; read-only, so no copy-on-write.
        let (job, letterbox) = self.prepare(st, buf, &info, layout, color, rect)?;
        let t1 = Instant::now();

        // Batched with the other streams of the model instance; answers in this stream's order.
        let result = match st.stream.submit(job) {
            Ok(r) => r,
            Err(e) if self.settings.lock().remote.pass_on_error => {
                // The letterbox buffer went with the job; the next frame makes a new one.
                let n = self.passed_on_error.count();
                if n == 1 || n.is_power_of_two() {
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Failed,
                        ["frame passed on without detections ({n} so far, pass-on-error): {e}"]
                    );
                } else {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "frame {n} passed on without detections: {e}"
                    );
                }
                return Ok(gst::FlowSuccess::Ok);
            }
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ["{e}"]);
                return Err(gst::FlowError::Error);
            }
        };
        let t2 = Instant::now();

        let params = fp.post_params();
        let head = st.instance.info().head;
        st.post.run(
            &head,
            result.data(),
            &params,
            &letterbox,
            &st.labels,
            &mut st.detections,
        );
        if let FrameInput::Tensor(t) = result.input {
            st.input = t;
        }
        let t3 = Instant::now();

        let State {
            instance,
            detections,
            ..
        } = st;
        let model_input = (instance.info().input_width, instance.info().input_height);
        attach_roi_metas(buf, detections, letterbox.frame_w, letterbox.frame_h, false);
        DetectionMeta::add(buf, detections.clone(), model_input);
        let t4 = Instant::now();
        gst::log!(
            CAT,
            imp = self,
            "{} detections; pre {:?} infer {:?} post {:?} meta {:?}",
            detections.len(),
            t1 - t0,
            t2 - t1,
            t3 - t2,
            t4 - t3
        );
        // Unlocked first: a bus sync handler may read properties that take the state lock.
        drop(guard);
        self.post_roi_warning(roi_warning);
        self.record_stats(t0, [t0, t1, t2, t3, t4], fp.stats_interval);
        Ok(gst::FlowSuccess::Ok)
    }
}

/// One `GstVideoRegionOfInterestMeta` per detection with DL Streamer's `detection` structure,
/// so applications can read results without this crate. Each ROI's id is its detection's index:
/// bindings without meta iteration (PyGObject) read them with
/// `gst_buffer_get_video_region_of_interest_meta_id(buf, 0..n)`.
fn attach_roi_metas(buf: &mut gst::BufferRef, dets: &[Detection], w: u32, h: u32, repeated: bool) {
    let (fw, fh) = (w.max(1) as f64, h.max(1) as f64);
    for (i, d) in dets.iter().enumerate() {
        let x = d.x1.max(0.0).round() as u32;
        let y = d.y1.max(0.0).round() as u32;
        let rw = (d.x2.round() as u32).saturating_sub(x);
        let rh = (d.y2.round() as u32).saturating_sub(y);
        let mut roi = gst_video::VideoRegionOfInterestMeta::add(buf, &d.label, (x, y, rw, rh));
        roi.set_id(i32::try_from(i).unwrap_or(i32::MAX));
        let mut param = gst::Structure::builder("detection")
            .field("label_id", d.class_id as i32)
            .field("confidence", d.confidence as f64)
            .field("x_min", d.x1 as f64 / fw)
            .field("y_min", d.y1 as f64 / fh)
            .field("x_max", d.x2 as f64 / fw)
            .field("y_max", d.y2 as f64 / fh);
        if repeated {
            param = param.field("repeated", true);
        }
        roi.add_param(param.build());
    }
    // The same detections as GStreamer's standard analytics metadata (>= 1.24).
    #[cfg(feature = "v1_24")]
    if let Err(err) = crate::analytics::relation::add_detections(buf, dets) {
        gst::warning!(CAT, "GstAnalytics object-detection mtds: {err}");
    }
}

/// The element's names from the top-level bin down, `/pipeline0/yolodetect0` (the metrics'
/// `element` label; `path_string` also writes the type names).
fn element_path(obj: &gst::Object) -> String {
    let mut names = vec![obj.name()];
    let mut parent = obj.parent();
    while let Some(p) = parent {
        names.push(p.name());
        parent = p.parent();
    }
    names.reverse();
    format!("/{}", names.join("/"))
}

/// Routes ONNX Runtime's log lines into the `yoloort` debug category (once per process).
fn install_ort_logger() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        engine::set_log_sink(Arc::new(|level, msg| {
            use ort::logging::LogLevel as L;
            let gst_level = match level {
                L::Verbose => gst::DebugLevel::Log,
                L::Info => gst::DebugLevel::Info,
                L::Warning => gst::DebugLevel::Warning,
                L::Error | L::Fatal => gst::DebugLevel::Error,
            };
            gst::log_with_level!(ORT_CAT, gst_level, "{msg}");
        }));
    });
}
