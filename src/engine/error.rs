// SPDX-License-Identifier: MPL-2.0
//! What can go wrong in the engine, with messages that say how to fix it.

use std::fmt;
use std::path::PathBuf;

use super::Provider;
use super::runtime::ORT_INSTALL_SUBDIR;
use crate::postprocess::HeadError;

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
    /// A running shared model instance was made with other options.
    InstanceMismatch {
        id: String,
        differences: Vec<String>,
    },
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
            EngineError::InstanceMismatch { id, differences } => write!(
                f,
                "model-instance-id `{id}` is already running with other options ({}): give \
                 this element the same options, or another model-instance-id",
                differences.join("; ")
            ),
        }
    }
}

impl std::error::Error for EngineError {}
