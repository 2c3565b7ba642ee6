// SPDX-License-Identifier: MPL-2.0
//! The options an engine (an ONNX Runtime session) is made from.

use std::path::PathBuf;

use super::gpu;

/// Which ONNX Runtime execution provider runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
    /// TensorRT, then CUDA, then CPU: the first that initialises.
    Auto,
    /// An inference server runs the model (`RemoteConfig`); never asked of ONNX Runtime.
    Remote,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
            Provider::Auto => "auto",
            Provider::Remote => "remote",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names() {
        assert_eq!(Provider::default(), Provider::Cpu);
        assert_eq!(Provider::TensorRt.name(), "tensorrt");
    }
}
