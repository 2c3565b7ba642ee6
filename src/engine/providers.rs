// SPDX-License-Identifier: MPL-2.0
//! Execution providers: checking that CUDA and TensorRT can start, their options, and the
//! TensorRT cache directories.

use std::fmt;
use std::path::PathBuf;

use ort::ep::{self, ExecutionProvider as _};

use super::runtime::Runtime;
use super::{ConvAlgoSearch, EngineConfig, EngineError, Provider, gpu};

/// What a TensorRT session needs beyond the options: where its engine and timing caches go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrtSetup {
    pub libs: gpu::TensorRtLibs,
    /// `<cache_dir>/<key>`: engines built for exactly this model, precision, GPU and versions.
    pub engine_cache: Option<PathBuf>,
    /// `<cache_dir>/timing/<gpu>-trt<version>`: shared by every model on this GPU.
    pub timing_cache: Option<PathBuf>,
}

/// Checks that TensorRT can start here and works out its cache directories; the error says
/// what is missing and how to get it.
pub(super) fn prepare_tensorrt(rt: &Runtime, cfg: &EngineConfig) -> Result<TrtSetup, String> {
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

pub(super) fn provider_error(provider: Provider, e: impl fmt::Display) -> EngineError {
    EngineError::Provider {
        provider,
        reason: e.to_string(),
    }
}

pub(super) fn check_available<E: ep::ExecutionProvider>(
    provider: Provider,
) -> Result<(), EngineError> {
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
pub(super) fn cuda_options(cfg: &EngineConfig) -> ep::CUDA {
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

pub(super) fn cuda_ep(cfg: &EngineConfig) -> ep::ExecutionProviderDispatch {
    cuda_options(cfg).build()
}

/// The TensorRT provider's options for `cfg`, caching under the directories of `trt`.
pub(super) fn tensorrt_options(cfg: &EngineConfig, trt: Option<&TrtSetup>) -> ep::TensorRT {
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

pub(super) fn tensorrt_ep(
    cfg: &EngineConfig,
    trt: Option<&TrtSetup>,
) -> ep::ExecutionProviderDispatch {
    tensorrt_options(cfg, trt).build()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
