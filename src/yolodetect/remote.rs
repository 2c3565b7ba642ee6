// SPDX-License-Identifier: MPL-2.0
//! yolodetect's remote-backend properties: the model runs on an Open Inference Protocol (KServe
//! v2) server, `inference-server=grpc://host:8001 server-model=yolov8n`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::engine::remote::RemoteConfig;

/// The property values.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSettings {
    /// `None`: the model runs locally.
    pub server: Option<String>,
    /// `None`: the model file's stem.
    pub model: Option<String>,
    pub version: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub request_timeout_ms: u32,
    pub retry_timeout_ms: u32,
    pub retry_backoff_ms: u32,
    /// Frames whose inference failed go on without detections instead of an error.
    pub pass_on_error: bool,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        let c = RemoteConfig::new("", "");
        RemoteSettings {
            server: None,
            model: None,
            version: None,
            ca_file: None,
            request_timeout_ms: c.request_timeout.as_millis() as u32,
            retry_timeout_ms: c.retry_timeout.as_millis() as u32,
            retry_backoff_ms: c.retry_backoff.as_millis() as u32,
            pass_on_error: false,
        }
    }
}

impl RemoteSettings {
    /// The remote configuration, or `None` for a local model. `model_file` names the server's
    /// model when `server-model` is not set.
    pub fn config(&self, model_file: Option<&Path>) -> Result<Option<RemoteConfig>, String> {
        let Some(url) = &self.server else {
            return Ok(None);
        };
        let model = match (&self.model, model_file.and_then(Path::file_stem)) {
            (Some(m), _) => m.clone(),
            (None, Some(stem)) => stem.to_string_lossy().into_owned(),
            (None, None) => {
                return Err(format!(
                    "inference-server {url} is set but not which model to ask it for: set \
                     server-model (or model, whose file name without .onnx is used)"
                ));
            }
        };
        let mut c = RemoteConfig::new(url.clone(), model);
        c.version = self.version.clone().unwrap_or_default();
        c.ca_file = self.ca_file.clone();
        c.request_timeout = Duration::from_millis(self.request_timeout_ms.max(1).into());
        c.retry_timeout = Duration::from_millis(self.retry_timeout_ms.into());
        c.retry_backoff = Duration::from_millis(self.retry_backoff_ms.max(1).into());
        Ok(Some(c))
    }
}

fn string_from(value: &glib::Value) -> Option<String> {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .filter(|s| !s.is_empty())
}

/// The properties. Set while PLAYING, all but `pass-on-error` connect anew in the background
/// and swap at a frame boundary, as a new `model` does (`swap.rs`).
pub fn properties() -> Vec<glib::ParamSpec> {
    let s = RemoteSettings::default();
    vec![
        glib::ParamSpecString::builder("inference-server")
            .nick("Inference server")
            .blurb("grpc://host:port (or grpcs:// for TLS) of an Open Inference Protocol (KServe v2) server such as Triton or KServe that runs the model; frames are letterboxed here and sent as one request per batch. Empty runs the model locally. Set while PLAYING: a model swap (the new server is connected and checked while the old one serves)")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("server-model")
            .nick("Server model")
            .blurb("Name of the model on the inference server; default: the model file's name without .onnx (model is then optional and only gives the class names)")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("server-model-version")
            .nick("Server model version")
            .blurb("Version of the model on the inference server; empty: the server's choice")
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("server-ca-file")
            .nick("Server CA file")
            .blurb("PEM file of the CA that signed the inference server's certificate (grpcs://); empty: the system's CAs")
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("server-request-timeout")
            .nick("Server request timeout")
            .blurb("Longest one inference request may take, in ms")
            .minimum(1)
            .default_value(s.request_timeout_ms)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("server-retry-timeout")
            .nick("Server retry timeout")
            .blurb("How long a failing request (server away, overloaded, timed out) is retried, in ms, before the frame fails: an error on the bus, or with pass-on-error the frame goes on without detections")
            .default_value(s.retry_timeout_ms)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("server-retry-backoff")
            .nick("Server retry backoff")
            .blurb("First wait between retries in ms; it doubles up to 1 s")
            .minimum(1)
            .default_value(s.retry_backoff_ms)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("pass-on-error")
            .nick("Pass on error")
            .blurb("When inference fails (the inference server stays away past server-retry-timeout), let the frame go on without detections, with a warning, counted as passed-on-error in stats; false: an error on the bus")
            .default_value(s.pass_on_error)
            .mutable_playing()
            .build(),
    ]
}

/// Sets property `name`; false if it is not one of these.
pub fn set(s: &mut RemoteSettings, name: &str, value: &glib::Value) -> bool {
    match name {
        "inference-server" => s.server = string_from(value),
        "server-model" => s.model = string_from(value),
        "server-model-version" => s.version = string_from(value),
        "server-ca-file" => s.ca_file = string_from(value).map(PathBuf::from),
        "server-request-timeout" => {
            s.request_timeout_ms = value.get().expect("type checked upstream")
        }
        "server-retry-timeout" => s.retry_timeout_ms = value.get().expect("type checked upstream"),
        "server-retry-backoff" => s.retry_backoff_ms = value.get().expect("type checked upstream"),
        "pass-on-error" => s.pass_on_error = value.get().expect("type checked upstream"),
        _ => return false,
    }
    true
}

/// Reads property `name`; `None` if it is not one of these.
pub fn get(s: &RemoteSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "inference-server" => s.server.to_value(),
        "server-model" => s.model.to_value(),
        "server-model-version" => s.version.to_value(),
        "server-ca-file" => s
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string())
            .to_value(),
        "server-request-timeout" => s.request_timeout_ms.to_value(),
        "server-retry-timeout" => s.retry_timeout_ms.to_value(),
        "server-retry-backoff" => s.retry_backoff_ms.to_value(),
        "pass-on-error" => s.pass_on_error.to_value(),
        _ => return None,
    })
}

/// Frames that went on without detections because inference failed (`pass-on-error`).
#[derive(Debug, Default)]
pub struct Passed(AtomicU64);

impl Passed {
    /// Counts one; true for the first of a run, which deserves a warning (the rest go to the
    /// log, not to a bus flooded at frame rate).
    pub fn count(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_name_defaults_to_the_file_stem() {
        let mut s = RemoteSettings {
            server: Some("grpc://127.0.0.1:8001".into()),
            ..Default::default()
        };
        let c = s
            .config(Some(Path::new("/m/yolov8n.onnx")))
            .unwrap()
            .unwrap();
        assert_eq!(c.model, "yolov8n");
        s.model = Some("detector".into());
        let c = s.config(None).unwrap().unwrap();
        assert_eq!(c.model, "detector");
        s.model = None;
        let e = s.config(None).unwrap_err();
        assert!(e.contains("server-model"), "{e}");
        s.server = None;
        assert_eq!(s.config(None).unwrap(), None);
    }
}
