// SPDX-License-Identifier: MPL-2.0
//! The inference engine, without GStreamer: loading ONNX Runtime (`runtime`), the options a
//! session is made from (`config`), execution-provider set-up (`providers`), one ONNX Runtime
//! session and its I/O (`session`, `binding`), what the model is (`model`), a model instance
//! shared by many streams (`instance`) and its cross-stream batch scheduler (`scheduler`).
//!
//! A frame's path: element -> [`instance::Instance`] -> [`session::Engine`] -> back to the element.
//! Errors are typed here and become GStreamer errors once, in the element.

pub mod binding;
mod config;
pub mod cuda;
mod error;
pub mod gpu;
pub mod instance;
mod model;
mod providers;
pub mod remote;
mod runtime;
pub mod scheduler;
mod session;

pub use config::{
    ConvAlgoSearch, CudaOptions, EngineConfig, IoBindingMode, Provider, TensorRtOptions,
};
pub use error::EngineError;
pub use model::ModelInfo;
pub use providers::TrtSetup;
pub use runtime::{LogSink, ORT_INSTALL_SUBDIR, load_runtime, runtime_candidates, set_log_sink};
pub use session::{Engine, EngineEvent, churn_sessions};
