// SPDX-License-Identifier: MPL-2.0
//! What can go wrong in the engine, with messages that say how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

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
    /// The inference server (remote backend) cannot be reached or failed a request.
    Server {
        url: String,
        reason: String,
    },
    /// The inference server is up but cannot serve the model asked for (unknown name or
    /// version, not a YOLO detector).
    ServerModel {
        url: String,
        model: String,
        reason: String,
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
                "model file {} {}: set the `model` property to a YOLO ONNX file \
                 (export one with `yolo export model=yolov8n.pt format=onnx`)",
                p.display(),
                not_a_file_because(p)
            ),
            EngineError::ModelLoad { path, reason } => write!(
                f,
                "ONNX Runtime could not load model {}: {}. Is the file complete and an ONNX \
                 model? Re-export it with `yolo export format=onnx`",
                path.display(),
                // ONNX Runtime's messages often end in a full stop of their own.
                reason.trim_end().trim_end_matches('.')
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
            EngineError::Server { url, reason } => {
                write!(f, "inference server {url}: {reason}")
            }
            EngineError::ServerModel { url, model, reason } => write!(
                f,
                "inference server {url} cannot serve model `{model}` (server-model): {reason}"
            ),
        }
    }
}

impl std::error::Error for EngineError {}

/// Why `p` is not a model file: missing, a directory, or something other than a regular file.
fn not_a_file_because(p: &Path) -> &'static str {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => "is a directory, not a file",
        Ok(m) if !m.is_file() => "is not a regular file (a device, FIFO or socket)",
        Ok(_) => "could not be read",
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            "cannot be accessed (permission denied)"
        }
        Err(_) => "does not exist",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_not_found_says_what_the_path_is() {
        let dir = std::env::temp_dir();
        let e = EngineError::ModelNotFound(dir.clone()).to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = EngineError::ModelNotFound("/dev/null".into()).to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = EngineError::ModelNotFound(dir.join("no-such-model-here.onnx")).to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn model_load_has_one_full_stop() {
        let e = EngineError::ModelLoad {
            path: "m.onnx".into(),
            reason: "Protobuf parsing failed.".into(),
        }
        .to_string();
        assert!(e.contains("Protobuf parsing failed. Is the file"), "{e}");
        assert!(!e.contains(".."), "{e}");
    }
}
