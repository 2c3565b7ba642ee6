// SPDX-License-Identifier: MPL-2.0
//! Loading ONNX Runtime (once per process) from the first library that loads.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use super::EngineError;

/// Where the project's set-up script installs ONNX Runtime, relative to `$XDG_DATA_HOME`
/// (default `~/.local/share`).
pub const ORT_INSTALL_SUBDIR: &str = "gst-yolo/onnxruntime";
const ORT_LIB_NAME: &str = "libonnxruntime.so.1";

/// A log line from ONNX Runtime, handed to whoever installed a sink (the plugin routes it into
/// GStreamer's debug log).
pub type LogSink = Arc<dyn Fn(ort::logging::LogLevel, &str) + Send + Sync>;

static LOG_SINK: Mutex<Option<LogSink>> = Mutex::new(None);

thread_local! {
    /// Warnings ONNX Runtime logs on this thread while [`capture_warnings`] runs.
    static CAPTURE: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (e.g. creating a session, which ONNX Runtime does on the calling thread) and returns
/// the warnings ONNX Runtime logged meanwhile, such as nodes placed on the CPU provider.
pub(super) fn capture_warnings<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    CAPTURE.set(Some(Vec::new()));
    let r = f();
    (r, CAPTURE.take().unwrap_or_default())
}

/// Installs where ONNX Runtime's own log lines go. Call before the first engine is created.
pub fn set_log_sink(sink: LogSink) {
    *LOG_SINK.lock() = Some(sink);
}

// ort allows one environment per process, ever: keep it for the life of the process.
static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

#[derive(Clone)]
pub(super) struct Runtime {
    pub(super) env: ort::environment::Environment,
    pub(super) path: PathBuf,
}

/// The candidates, in order: `ORT_DYLIB_PATH` alone if set; else the project's install
/// location, then the system's library by name.
pub fn runtime_candidates() -> Vec<PathBuf> {
    candidates_from(|k| std::env::var_os(k))
}

/// [`runtime_candidates`] with the environment passed in, so tests need not set process-wide
/// variables.
fn candidates_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    if let Some(p) = env("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut v = Vec::new();
    let data_home = env("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/share")));
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

pub(super) fn runtime() -> Result<Runtime, EngineError> {
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
                let builder = builder
                    .with_name("gst-yolo")
                    .with_telemetry(false)
                    .with_logger(Arc::new(|level, _cat, _id, loc, msg| {
                        if level >= ort::logging::LogLevel::Warning {
                            CAPTURE.with_borrow_mut(|c| {
                                if let Some(c) = c {
                                    c.push(msg.to_string());
                                }
                            });
                        }
                        if let Some(sink) = LOG_SINK.lock().clone() {
                            sink(level, &format!("{loc}: {msg}"));
                        }
                    }));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_honour_ort_dylib_path_alone() {
        /// A fake environment of `vars`.
        fn env<'a>(
            vars: &'a [(&'a str, &'a str)],
        ) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
            move |k| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        }
        let set = [
            ("ORT_DYLIB_PATH", "/opt/ort/libonnxruntime.so.1"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            candidates_from(env(&set)),
            [PathBuf::from("/opt/ort/libonnxruntime.so.1")]
        );
        // Unset or empty: the install location under XDG_DATA_HOME (else HOME), then the
        // system-wide ones.
        for vars in [
            &[("HOME", "/home/u")][..],
            &[("ORT_DYLIB_PATH", ""), ("HOME", "/home/u")],
        ] {
            let c = candidates_from(env(vars));
            assert_eq!(
                c[0],
                PathBuf::from("/home/u/.local/share")
                    .join(ORT_INSTALL_SUBDIR)
                    .join(ORT_LIB_NAME)
            );
            assert_eq!(c.last(), Some(&PathBuf::from(ORT_LIB_NAME)));
            assert_eq!(c.len(), 3);
        }
        let c = candidates_from(env(&[("XDG_DATA_HOME", "/data"), ("HOME", "/home/u")]));
        assert!(c[0].starts_with("/data"), "{c:?}");
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
}
