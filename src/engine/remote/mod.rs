// SPDX-License-Identifier: MPL-2.0
//! The remote backend: the model runs on an inference server that speaks KServe's Open Inference
//! Protocol ("v2") over gRPC (NVIDIA Triton, KServe, OpenVINO Model Server, Seldon MLServer).
//! A batch of letterboxed frames becomes one `ModelInfer` request; what comes back is decoded
//! by the same post-processing as a local session's output.
//!
//! The client code in `inference.rs` is generated from the published `.proto`
//! (`proto/open-inference-protocol`) by `scripts/gen-proto.sh` and committed, so building the
//! plugin needs no `protoc`.

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
#[rustfmt::skip]
mod inference;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use byte_slice_cast::AsByteSlice;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use inference::{ModelInferRequest, ModelMetadataRequest, model_infer_request};

use super::model::detect_head;
use super::{EngineError, ModelInfo};
use crate::labels;
use crate::postprocess::HeadLayout;

/// Largest message either way: a batch of 640x640 FP32 frames is 4.9 MB each.
const MAX_MESSAGE: usize = 1 << 30;

/// Where the model runs and how hard to try.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteConfig {
    /// `grpc://host:port` or `grpcs://host:port` (TLS).
    pub url: String,
    pub model: String,
    /// Empty: the server's choice.
    pub version: String,
    /// PEM file of the CA that signed the server's certificate (`grpcs://`); none: the system's.
    pub ca_file: Option<PathBuf>,
    /// Longest a single request may take.
    pub request_timeout: Duration,
    /// How long a failing request is retried before the frame fails.
    pub retry_timeout: Duration,
    /// First wait between retries; doubles up to a second.
    pub retry_backoff: Duration,
}

impl RemoteConfig {
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        RemoteConfig {
            url: url.into(),
            model: model.into(),
            version: String::new(),
            ca_file: None,
            request_timeout: Duration::from_secs(5),
            retry_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
        }
    }

    /// The `http(s)://` URI tonic dials, and whether it is TLS.
    fn endpoint_uri(&self) -> Result<(String, bool), String> {
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("grpcs://") {
            (true, r)
        } else if let Some(r) = self.url.strip_prefix("grpc://") {
            (false, r)
        } else {
            return Err(format!(
                "inference-server `{}` is not grpc://host:port or grpcs://host:port",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(format!(
                "inference-server `{}` is not grpc://host:port or grpcs://host:port",
                self.url
            ));
        }
        let scheme = if tls { "https" } else { "http" };
        Ok((format!("{scheme}://{rest}"), tls))
    }
}

/// One process-wide runtime for every remote instance: a couple of threads that drive the gRPC
/// connections, whatever the number of streams (the callers block on their own requests).
fn runtime() -> Result<Arc<tokio::runtime::Runtime>, EngineError> {
    static RT: std::sync::OnceLock<Result<Arc<tokio::runtime::Runtime>, String>> =
        std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("yolo-grpc")
            .enable_all()
            .build()
            .map(Arc::new)
            .map_err(|e| format!("cannot start the gRPC runtime: {e}"))
    })
    .clone()
    .map_err(EngineError::Inference)
}

/// Counters shared by an instance's remote workers.
#[derive(Debug, Default)]
pub struct RemoteStats {
    /// Requests that failed and were tried again.
    pub retries: AtomicU64,
    /// Frames that failed after retrying for `retry_timeout`.
    pub failed: AtomicU64,
}

/// A model served by an inference server: what [`super::Engine`] is to a local session.
#[derive(Clone)]
pub struct RemoteEngine {
    rt: Arc<tokio::runtime::Runtime>,
    client: GrpcInferenceServiceClient<Channel>,
    cfg: RemoteConfig,
    info: ModelInfo,
    /// The server's input batch dimension when it is fixed (requests are split to fit).
    stats: Arc<RemoteStats>,
}

impl std::fmt::Debug for RemoteEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEngine")
            .field("cfg", &self.cfg)
            .field("info", &self.info)
            .finish()
    }
}

fn server_error(cfg: &RemoteConfig, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Server {
        url: cfg.url.clone(),
        reason: reason.to_string(),
    }
}

/// A status worth retrying: the server is away, overloaded or slow, not refusing the request.
fn transient(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
    )
}

fn describe(s: &tonic::Status) -> String {
    let msg = s.message().trim();
    if msg.is_empty() {
        format!("{:?}", s.code())
    } else {
        format!("{:?}: {msg}", s.code())
    }
}

impl RemoteEngine {
    /// Connects, reads the model's metadata and resolves its output shape and head with one
    /// request. `onnx`, when it names a file, gives the class names (the protocol's metadata
    /// carries no Ultralytics metadata).
    pub fn connect(cfg: &RemoteConfig, onnx: Option<&Path>) -> Result<RemoteEngine, EngineError> {
        let (uri, tls) = cfg.endpoint_uri().map_err(EngineError::Inference)?;
        let rt = runtime()?;
        let mut ep = Endpoint::from_shared(uri.clone())
            .map_err(|e| server_error(cfg, e))?
            .connect_timeout(cfg.request_timeout)
            .timeout(cfg.request_timeout)
            .tcp_nodelay(true);
        if tls {
            let mut t = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &cfg.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    server_error(
                        cfg,
                        format!("cannot read server-ca-file {}: {e}", ca.display()),
                    )
                })?;
                t = t.ca_certificate(Certificate::from_pem(pem));
            }
            ep = ep.tls_config(t).map_err(|e| server_error(cfg, e))?;
        }
        // Connected once here so that an unreachable server is an error at start; afterwards
        // the channel reconnects by itself and requests are retried.
        let channel = rt
            .block_on(ep.connect())
            .map_err(|e| server_error(cfg, format!("cannot connect: {}", error_chain(&e))))?;
        let client = GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let meta = rt
            .block_on(client.clone().model_metadata(ModelMetadataRequest {
                name: cfg.model.clone(),
                version: cfg.version.clone(),
            }))
            .map_err(|s| EngineError::ServerModel {
                url: cfg.url.clone(),
                model: cfg.model.clone(),
                reason: describe(&s),
            })?
            .into_inner();
        let bad = |reason: String| EngineError::ServerModel {
            url: cfg.url.clone(),
            model: cfg.model.clone(),
            reason,
        };
        let [input] = meta.inputs.as_slice() else {
            return Err(bad(format!(
                "it has {} inputs; a YOLO detector has one image input [B, 3, H, W]",
                meta.inputs.len()
            )));
        };
        let Some(output) = meta.outputs.first() else {
            return Err(bad("it has no outputs".into()));
        };
        if input.datatype != "FP32" {
            return Err(bad(format!(
                "its input `{}` is {}; yolodetect sends FP32 images",
                input.name, input.datatype
            )));
        }
        // Triton leaves the batch dimension out of the shape when max_batch_size > 0.
        let dims: Vec<i64> = match input.shape.len() {
            3 => std::iter::once(-1)
                .chain(input.shape.iter().copied())
                .collect(),
            _ => input.shape.clone(),
        };
        if dims.len() != 4 || (dims[1] != 3 && dims[1] != -1) {
            return Err(bad(format!(
                "its input has shape {:?}; a YOLO detector takes [B, 3, H, W]",
                input.shape
            )));
        }
        let file_meta = onnx.filter(|p| p.is_file()).map(read_onnx_metadata);
        let file_meta = file_meta
            .transpose()
            .map_err(|reason| EngineError::ModelLoad {
                path: onnx.map(Path::to_path_buf).unwrap_or_default(),
                reason,
            })?;
        let custom = |k: &str| {
            file_meta
                .as_ref()
                .and_then(|m| m.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
        };
        let imgsz = custom("imgsz").and_then(|s| labels::parse_imgsz(&s));
        let (h, w) = match (dims[2], dims[3], imgsz) {
            (h, w, _) if h > 0 && w > 0 => (h as u32, w as u32),
            (_, _, Some(hw)) => hw,
            _ => (640, 640),
        };
        if h > super::model::MAX_INPUT_SIDE || w > super::model::MAX_INPUT_SIDE {
            return Err(bad(format!("its input is {w}x{h} pixels, too large")));
        }
        let info = ModelInfo {
            input_name: input.name.clone(),
            output_name: output.name.clone(),
            input_width: w,
            input_height: h,
            batch: (dims[0] > 0).then_some(dims[0] as usize),
            names: custom("names").and_then(|s| labels::parse_names(&s)),
            stride: custom("stride").and_then(|s| s.trim().parse().ok()),
            task: custom("task"),
            head: HeadLayout::EndToEnd { max_detections: 0 },
            output_shape: Vec::new(),
        };
        let mut engine = RemoteEngine {
            rt,
            client,
            cfg: cfg.clone(),
            info,
            stats: Arc::new(RemoteStats::default()),
        };
        // One request resolves the output shape (dynamic dimensions included) and proves that
        // the model answers, before the first frame.
        let zeros = vec![crate::preprocess::PAD_VALUE as f32 / 255.0; engine.input_len()];
        let (shape, _) = engine.infer(&zeros, 1, false)?;
        let mut shape = shape;
        if let Some(b) = shape.first_mut() {
            *b = 1;
        }
        engine.info.head = detect_head(&engine.info, &shape).map_err(|e| {
            bad(format!(
                "its output {shape:?} is not a YOLO detection head: {e}"
            ))
        })?;
        engine.info.output_shape = shape;
        Ok(engine)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &Arc<RemoteStats> {
        &self.stats
    }

    /// Number of f32 values in one batch item of the input.
    pub fn input_len(&self) -> usize {
        3 * self.info.input_width as usize * self.info.input_height as usize
    }

    /// Number of f32 values in one batch item of the output.
    pub fn output_item_len(&self) -> usize {
        self.info
            .output_shape
            .iter()
            .skip(1)
            .map(|&d| d.max(0) as usize)
            .product()
    }

    /// Runs `n` letterboxed items (NCHW, contiguous in `input`) as one request (a server with a
    /// fixed batch size gets requests of its size, the last one padded) and appends each item's
    /// output to `out`.
    pub fn run_items(
        &mut self,
        input: &[f32],
        n: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        let (len, out_len) = (self.input_len(), self.output_item_len());
        let input = input.get(..n * len).ok_or_else(|| {
            EngineError::Inference(format!(
                "input has {} values, need {}",
                input.len(),
                n * len
            ))
        })?;
        let b = self.info.batch.unwrap_or(n).max(1);
        let mut padded = Vec::new();
        for chunk in input.chunks(b * len) {
            let k = chunk.len() / len;
            let data = if k == b {
                chunk
            } else {
                padded.clear();
                padded.extend_from_slice(chunk);
                padded.resize(b * len, crate::preprocess::PAD_VALUE as f32 / 255.0);
                &padded[..]
            };
            let (_, values) = self.infer(data, b, true)?;
            if values.len() < k * out_len {
                return Err(EngineError::Inference(format!(
                    "the inference server at {} answered {} values for {k} frames, expected {}",
                    self.cfg.url,
                    values.len(),
                    k * out_len
                )));
            }
            out.extend_from_slice(&values[..k * out_len]);
        }
        Ok(())
    }

    /// One `ModelInfer` request of `batch` items; transient failures are retried with backoff
    /// for `retry_timeout` when `retry` is set. Returns the output's shape and values.
    fn infer(
        &mut self,
        data: &[f32],
        batch: usize,
        retry: bool,
    ) -> Result<(Vec<i64>, Vec<f32>), EngineError> {
        let (w, h) = (self.info.input_width as i64, self.info.input_height as i64);
        let request = ModelInferRequest {
            model_name: self.cfg.model.clone(),
            model_version: self.cfg.version.clone(),
            inputs: vec![model_infer_request::InferInputTensor {
                name: self.info.input_name.clone(),
                datatype: "FP32".into(),
                shape: vec![batch as i64, 3, h, w],
                ..Default::default()
            }],
            // Little-endian FP32, as the protocol's raw contents are.
            raw_input_contents: vec![data.as_byte_slice().to_vec()],
            ..Default::default()
        };
        let start = Instant::now();
        let mut backoff = self.cfg.retry_backoff.max(Duration::from_millis(1));
        loop {
            let mut req = tonic::Request::new(request.clone());
            req.set_timeout(self.cfg.request_timeout);
            let mut client = self.client.clone();
            let r = self.rt.block_on(client.model_infer(req));
            let status = match r {
                Ok(resp) => return self.decode(resp.into_inner()),
                Err(s) => s,
            };
            let elapsed = start.elapsed();
            // Retried until the timeout has passed: the last wait is cut to what is left, so a
            // long backoff never ends the retries early.
            let left = self.cfg.retry_timeout.saturating_sub(elapsed);
            if !retry || !transient(&status) || left.is_zero() {
                self.stats.failed.fetch_add(batch as u64, Ordering::Relaxed);
                let tried = if retry && transient(&status) {
                    format!(", retried for {:.1} s", elapsed.as_secs_f64())
                } else {
                    String::new()
                };
                return Err(EngineError::Server {
                    url: self.cfg.url.clone(),
                    reason: format!(
                        "inference on model `{}` failed{tried}: {}",
                        self.cfg.model,
                        describe(&status)
                    ),
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(backoff.min(left));
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// The first output (by the metadata's output name when the server sends several) as f32,
    /// from raw contents or typed `fp32_contents`.
    fn decode(
        &self,
        resp: inference::ModelInferResponse,
    ) -> Result<(Vec<i64>, Vec<f32>), EngineError> {
        let bad = |reason: String| EngineError::Server {
            url: self.cfg.url.clone(),
            reason,
        };
        let idx = resp
            .outputs
            .iter()
            .position(|o| o.name == self.info.output_name)
            .unwrap_or(0);
        let Some(out) = resp.outputs.get(idx) else {
            return Err(bad("the server answered without outputs".into()));
        };
        if out.datatype != "FP32" {
            return Err(bad(format!(
                "output `{}` is {}; yolodetect decodes FP32",
                out.name, out.datatype
            )));
        }
        let values = if let Some(raw) = resp.raw_output_contents.get(idx) {
            f32_from_le(raw)
        } else if let Some(c) = &out.contents {
            c.fp32_contents.clone()
        } else {
            return Err(bad(format!("output `{}` has no data", out.name)));
        };
        let expected: i64 = out.shape.iter().product();
        if expected < 0 || values.len() != expected as usize {
            return Err(bad(format!(
                "output `{}` has shape {:?} but {} values",
                out.name,
                out.shape,
                values.len()
            )));
        }
        Ok((out.shape.clone(), values))
    }
}

fn f32_from_le(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A transport error with its causes ("transport error: tcp connect error: Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Minimal ONNX `ModelProto` for its `metadata_props` (field 14); prost skips the graph.
#[derive(Clone, PartialEq, prost::Message)]
struct OnnxModelProto {
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<OnnxStringPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OnnxStringPair {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// The Ultralytics metadata (names, stride, imgsz, task) of an ONNX file, without ONNX Runtime.
fn read_onnx_metadata(path: &Path) -> Result<Vec<(String, String)>, String> {
    use prost::Message;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let m = OnnxModelProto::decode(bytes.as_slice()).map_err(|e| format!("not ONNX: {e}"))?;
    Ok(m.metadata_props
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = RemoteConfig::new("grpc://127.0.0.1:8001", "m");
        assert_eq!(
            c.endpoint_uri().unwrap(),
            ("http://127.0.0.1:8001".into(), false)
        );
        let c = RemoteConfig::new("grpcs://triton.example:443/", "m");
        assert_eq!(
            c.endpoint_uri().unwrap(),
            ("https://triton.example:443".into(), true)
        );
        for bad in ["http://x:1", "grpc://", "x:8001", "grpc://h:1/v2"] {
            let err = RemoteConfig::new(bad, "m").endpoint_uri().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn raw_little_endian() {
        let v = [1.5f32, -2.0, 0.0];
        let raw: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        assert_eq!(f32_from_le(&raw), v);
        // A trailing partial value is not invented.
        assert_eq!(f32_from_le(&raw[..5]), [1.5]);
    }

    #[test]
    fn onnx_metadata_of_the_reference_model() {
        let shared = std::env::var("GST_YOLO_SHARED").unwrap_or_else(|_| "../shared".into());
        let p = Path::new(&shared).join("models/yolov8n.onnx");
        let m = read_onnx_metadata(&p).expect("yolov8n.onnx metadata");
        let names = m.iter().find(|(k, _)| k == "names").expect("names");
        assert_eq!(labels::parse_names(&names.1).expect("parsed").len(), 80);
    }
}
