// SPDX-License-Identifier: MPL-2.0
//! yolodetect's CUDA and TensorRT properties, and the element messages that report what the
//! execution providers do after start (TensorRT building in the background under `auto`, the
//! switch-over). Kept apart from `imp.rs` so the provider options stay in one place.

use std::path::PathBuf;
use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

use crate::engine::{ConvAlgoSearch, EngineConfig, EngineEvent, TensorRtOptions, gpu};

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstYoloCudaConvAlgoSearch")]
pub enum CudaConvAlgoSearch {
    #[default]
    #[enum_value(
        name = "Benchmark every cuDNN algorithm at start (slower start, fastest kernels)",
        nick = "exhaustive"
    )]
    Exhaustive = 0,
    #[enum_value(name = "cuDNN's heuristics (fast start)", nick = "heuristic")]
    Heuristic = 1,
    #[enum_value(
        name = "cuDNN's default algorithm (implicit precomputed GEMM; least memory)",
        nick = "default"
    )]
    Default = 2,
}

impl From<CudaConvAlgoSearch> for ConvAlgoSearch {
    fn from(s: CudaConvAlgoSearch) -> Self {
        match s {
            CudaConvAlgoSearch::Exhaustive => ConvAlgoSearch::Exhaustive,
            CudaConvAlgoSearch::Heuristic => ConvAlgoSearch::Heuristic,
            CudaConvAlgoSearch::Default => ConvAlgoSearch::Default,
        }
    }
}

/// The CUDA and TensorRT property values. `Default` follows the engine's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSettings {
    pub conv_algo_search: CudaConvAlgoSearch,
    pub tf32: bool,
    pub cuda_graph: bool,
    pub trt_fp16: bool,
    pub trt_int8: bool,
    pub trt_int8_calibration_table: Option<PathBuf>,
    /// `None`: no engine cache.
    pub trt_engine_cache_dir: Option<PathBuf>,
    pub trt_timing_cache: bool,
    pub trt_builder_optimization_level: u32,
    /// Letterbox frame N+1 and decode frame N-1 while the model runs on frame N (`pipelined.rs`).
    pub pipelined: bool,
}

impl Default for GpuSettings {
    fn default() -> Self {
        let cuda = crate::engine::CudaOptions::default();
        let trt = TensorRtOptions::default();
        GpuSettings {
            conv_algo_search: match cuda.conv_algo_search {
                ConvAlgoSearch::Exhaustive => CudaConvAlgoSearch::Exhaustive,
                ConvAlgoSearch::Heuristic => CudaConvAlgoSearch::Heuristic,
                ConvAlgoSearch::Default => CudaConvAlgoSearch::Default,
            },
            tf32: cuda.tf32,
            cuda_graph: cuda.cuda_graph,
            trt_fp16: trt.fp16,
            trt_int8: trt.int8,
            trt_int8_calibration_table: trt.int8_calibration_table,
            trt_engine_cache_dir: trt.cache_dir,
            trt_timing_cache: trt.timing_cache,
            trt_builder_optimization_level: trt.builder_optimization_level as u32,
            pipelined: false,
        }
    }
}

impl GpuSettings {
    /// Copies the settings into the engine configuration.
    pub fn apply(&self, cfg: &mut EngineConfig) {
        cfg.cuda.conv_algo_search = self.conv_algo_search.into();
        cfg.cuda.tf32 = self.tf32;
        cfg.cuda.cuda_graph = self.cuda_graph;
        cfg.tensorrt = TensorRtOptions {
            fp16: self.trt_fp16,
            int8: self.trt_int8,
            int8_calibration_table: self.trt_int8_calibration_table.clone(),
            cache_dir: self.trt_engine_cache_dir.clone(),
            timing_cache: self.trt_timing_cache,
            builder_optimization_level: self.trt_builder_optimization_level.min(5) as u8,
        };
    }
}

fn path_value(p: &Option<PathBuf>) -> glib::Value {
    p.as_ref().map(|p| p.display().to_string()).to_value()
}

fn path_from(value: &glib::Value) -> Option<PathBuf> {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The properties. `pipelined` changes only in NULL or READY; set while PLAYING, the others swap
/// in a new model instance (see `swap.rs`).
pub fn properties() -> Vec<glib::ParamSpec> {
    static DEFAULT_CACHE: LazyLock<Option<String>> =
        LazyLock::new(|| gpu::default_trt_cache_dir().map(|p| p.display().to_string()));
    let s = GpuSettings::default();
    vec![
        glib::ParamSpecEnum::builder_with_default("cuda-conv-algo-search", s.conv_algo_search)
            .nick("CUDA convolution algorithm search")
            .blurb("How cuDNN picks convolution algorithms on the CUDA provider")
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("cuda-tf32")
            .nick("CUDA TF32")
            .blurb("Let the CUDA provider use TF32 tensor cores for FP32 maths: faster with cuda-graph, but boxes move by up to ~0.5 px against the CPU and the reference")
            .default_value(s.tf32)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("cuda-graph")
            .nick("CUDA graph")
            .blurb("Capture the model in a CUDA graph and replay it per frame (CUDA provider; models with static shapes only)")
            .default_value(s.cuda_graph)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("trt-fp16")
            .nick("TensorRT FP16")
            .blurb("Let TensorRT build FP16 kernels")
            .default_value(s.trt_fp16)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("trt-int8")
            .nick("TensorRT INT8")
            .blurb("Let TensorRT build INT8 kernels (needs trt-int8-calibration-table or a quantised model)")
            .default_value(s.trt_int8)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("trt-int8-calibration-table")
            .nick("TensorRT INT8 calibration table")
            .blurb("Path of the INT8 calibration table TensorRT reads when trt-int8 is on")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("trt-engine-cache-dir")
            .nick("TensorRT engine cache directory")
            .blurb("Where built TensorRT engines are kept, one subdirectory per model hash, precision, GPU and TensorRT/ONNX Runtime version; empty disables the cache")
            .default_value(DEFAULT_CACHE.as_deref())
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("trt-timing-cache")
            .nick("TensorRT timing cache")
            .blurb("Keep TensorRT's kernel timing cache (per GPU and TensorRT version, under trt-engine-cache-dir) to speed up later builds")
            .default_value(s.trt_timing_cache)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("pipelined")
            .nick("Pipelined")
            .blurb("Letterbox the next frame and decode the previous one on a helper thread while the model runs: higher throughput on a GPU, each buffer leaves two frames later")
            .default_value(s.pipelined)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("trt-builder-optimization-level")
            .nick("TensorRT builder optimisation level")
            .blurb("0 builds fastest, 5 searches longest for the fastest engine")
            .minimum(0)
            .maximum(5)
            .default_value(s.trt_builder_optimization_level)
            .mutable_playing()
            .build(),
    ]
}

/// Sets property `name`; false if it is not one of these.
pub fn set(s: &mut GpuSettings, name: &str, value: &glib::Value) -> bool {
    match name {
        "cuda-conv-algo-search" => s.conv_algo_search = value.get().expect("type checked upstream"),
        "cuda-tf32" => s.tf32 = value.get().expect("type checked upstream"),
        "cuda-graph" => s.cuda_graph = value.get().expect("type checked upstream"),
        "trt-fp16" => s.trt_fp16 = value.get().expect("type checked upstream"),
        "trt-int8" => s.trt_int8 = value.get().expect("type checked upstream"),
        "trt-int8-calibration-table" => s.trt_int8_calibration_table = path_from(value),
        "trt-engine-cache-dir" => s.trt_engine_cache_dir = path_from(value),
        "trt-timing-cache" => s.trt_timing_cache = value.get().expect("type checked upstream"),
        "trt-builder-optimization-level" => {
            s.trt_builder_optimization_level = value.get().expect("type checked upstream")
        }
        "pipelined" => s.pipelined = value.get().expect("type checked upstream"),
        _ => return false,
    }
    true
}

/// Reads property `name`; `None` if it is not one of these.
pub fn get(s: &GpuSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "cuda-conv-algo-search" => s.conv_algo_search.to_value(),
        "cuda-tf32" => s.tf32.to_value(),
        "cuda-graph" => s.cuda_graph.to_value(),
        "trt-fp16" => s.trt_fp16.to_value(),
        "trt-int8" => s.trt_int8.to_value(),
        "trt-int8-calibration-table" => path_value(&s.trt_int8_calibration_table),
        "trt-engine-cache-dir" => path_value(&s.trt_engine_cache_dir),
        "trt-timing-cache" => s.trt_timing_cache.to_value(),
        "trt-builder-optimization-level" => s.trt_builder_optimization_level.to_value(),
        "pipelined" => s.pipelined.to_value(),
        _ => return None,
    })
}

/// The element message for an engine event:
/// - `yolodetect-tensorrt-build` with `status` = `started` (`serving-provider`,
///   `engine-cache-dir`), `progress` (`elapsed-s`; TensorRT reports no finer progress through
///   ONNX Runtime) or `failed` (`reason`, `elapsed-s`; frames stay on the serving provider);
/// - `yolodetect-provider-switched` with `from`, `to` and `build-s`, posted before the first
///   frame the new provider runs.
pub fn event_structure(ev: &EngineEvent) -> gst::Structure {
    match ev {
        EngineEvent::TensorRtBuildStarted {
            serving,
            engine_cache,
        } => gst::Structure::builder("yolodetect-tensorrt-build")
            .field("status", "started")
            .field("serving-provider", serving.name())
            .field(
                "engine-cache-dir",
                engine_cache
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            )
            .build(),
        EngineEvent::TensorRtBuildProgress { elapsed } => {
            gst::Structure::builder("yolodetect-tensorrt-build")
                .field("status", "progress")
                .field("elapsed-s", elapsed.as_secs_f64())
                .build()
        }
        EngineEvent::TensorRtBuildFailed { reason, elapsed } => {
            gst::Structure::builder("yolodetect-tensorrt-build")
                .field("status", "failed")
                .field("reason", reason.as_str())
                .field("elapsed-s", elapsed.as_secs_f64())
                .build()
        }
        EngineEvent::Switched {
            from,
            to,
            build_time,
        } => gst::Structure::builder("yolodetect-provider-switched")
            .field("from", from.name())
            .field("to", to.name())
            .field("build-s", build_time.as_secs_f64())
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Provider;
    use std::time::Duration;

    #[test]
    fn settings_map_onto_the_engine_config() {
        let s = GpuSettings {
            conv_algo_search: CudaConvAlgoSearch::Heuristic,
            tf32: true,
            cuda_graph: true,
            trt_fp16: true,
            trt_int8: true,
            trt_int8_calibration_table: Some("calib.bin".into()),
            trt_engine_cache_dir: None,
            trt_timing_cache: false,
            trt_builder_optimization_level: 9,
            pipelined: true,
        };
        let mut cfg = EngineConfig::new("m.onnx");
        s.apply(&mut cfg);
        assert_eq!(cfg.cuda.conv_algo_search, ConvAlgoSearch::Heuristic);
        assert!(cfg.cuda.tf32 && cfg.cuda.cuda_graph);
        assert!(cfg.tensorrt.fp16 && cfg.tensorrt.int8);
        assert_eq!(
            cfg.tensorrt.int8_calibration_table,
            Some(PathBuf::from("calib.bin"))
        );
        assert_eq!(cfg.tensorrt.cache_dir, None);
        assert!(!cfg.tensorrt.timing_cache);
        assert_eq!(cfg.tensorrt.builder_optimization_level, 5);
    }

    #[test]
    fn defaults_follow_the_engine() {
        let mut cfg = EngineConfig::new("m.onnx");
        let before = cfg.clone();
        GpuSettings::default().apply(&mut cfg);
        assert_eq!(cfg, before);
    }

    #[test]
    fn event_messages() {
        gst::init().unwrap();
        let s = event_structure(&EngineEvent::Switched {
            from: Provider::Cuda,
            to: Provider::TensorRt,
            build_time: Duration::from_secs(2),
        });
        assert_eq!(s.name(), "yolodetect-provider-switched");
        assert_eq!(s.get::<&str>("to").unwrap(), "tensorrt");
        let s = event_structure(&EngineEvent::TensorRtBuildFailed {
            reason: "no TensorRT".into(),
            elapsed: Duration::ZERO,
        });
        assert_eq!(s.get::<&str>("status").unwrap(), "failed");
        assert_eq!(s.get::<&str>("reason").unwrap(), "no TensorRT");
    }
}
