// SPDX-License-Identifier: MPL-2.0
//! Prometheus metrics, without GStreamer: one registry per process and, when
//! `GST_YOLO_METRICS_ADDR` (e.g. `127.0.0.1:9464`) is set when the plugin loads, one HTTP
//! listener serving it at `/metrics` for every element of the process.
//!
//! Per element (`element` = its path, e.g. `/pipeline0/yolodetect0`): frames, inferences,
//! skipped frames by reason, errors, model swaps, stage latency histograms and the active
//! provider. Per model instance (`instance` = its `model-instance-id`, or `private-<n>`): batches,
//! frames in them and their size. Per GPU: memory in use. Elements and instances remove their
//! series when they go, so that memory does not grow with pipelines made and dropped.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The environment variable naming the listen address.
pub const ADDR_ENV: &str = "GST_YOLO_METRICS_ADDR";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct El {
    element: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ElReason {
    element: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ElStage {
    element: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ElProvider {
    element: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Inst {
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Dev {
    device: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn stage_histogram() -> Histogram {
    // 0.25 ms to ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 9))
}

struct Metrics {
    registry: Registry,
    frames: Family<El, Counter>,
    inferences: Family<El, Counter>,
    skipped: Family<ElReason, Counter>,
    errors: Family<El, Counter>,
    swaps: Family<El, Counter>,
    stage: HistogramFamily<ElStage>,
    provider: Family<ElProvider, Gauge>,
    batches: Family<Inst, Counter>,
    batch_frames: Family<Inst, Counter>,
    batch_size: HistogramFamily<Inst>,
    gpu_used: Family<Dev, Gauge>,
    gpu_total: Family<Dev, Gauge>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut r = Registry::with_prefix("yolo");
        let m = Metrics {
            registry: Registry::default(),
            frames: Family::default(),
            inferences: Family::default(),
            skipped: Family::default(),
            errors: Family::default(),
            swaps: Family::default(),
            stage: Family::new_with_constructor(stage_histogram),
            provider: Family::default(),
            batches: Family::default(),
            batch_frames: Family::default(),
            batch_size: Family::new_with_constructor(batch_histogram),
            gpu_used: Family::default(),
            gpu_total: Family::default(),
        };
        r.register(
            "frames",
            "Frames that passed through the element",
            m.frames.clone(),
        );
        r.register(
            "inferences",
            "Frames the model ran on",
            m.inferences.clone(),
        );
        r.register(
            "skipped_frames",
            "Frames passed on without inference, by reason (interval, qos)",
            m.skipped.clone(),
        );
        r.register(
            "errors",
            "Frames that failed (an error on the bus)",
            m.errors.clone(),
        );
        r.register(
            "model_swaps",
            "Model swaps while running",
            m.swaps.clone(),
        );
        r.register_with_unit(
            "stage_duration",
            "Time per frame in each stage: pre (letterbox), infer (queue wait + model), post (decode + NMS)",
            Unit::Seconds,
            m.stage.clone(),
        );
        r.register(
            "active_provider",
            "1 for the execution provider running the element's model",
            m.provider.clone(),
        );
        r.register(
            "instance_batches",
            "Model runs of the model instance",
            m.batches.clone(),
        );
        r.register(
            "instance_batch_frames",
            "Frames in the model instance's runs (divided by instance_batches: the mean batch fill)",
            m.batch_frames.clone(),
        );
        r.register(
            "instance_batch_size",
            "Frames per model run",
            m.batch_size.clone(),
        );
        r.register_with_unit(
            "gpu_memory_used",
            "GPU memory in use on the device (all processes)",
            Unit::Bytes,
            m.gpu_used.clone(),
        );
        r.register_with_unit(
            "gpu_memory_total",
            "GPU memory of the device",
            Unit::Bytes,
            m.gpu_total.clone(),
        );
        Metrics { registry: r, ..m }
    })
}

/// Owners of each label value: elements of the same path in two pipelines, and an instance and
/// its successor after a model swap, share their series, removed with the last owner.
fn own(key: String, acquire: bool) -> bool {
    static OWNERS: parking_lot::Mutex<Option<std::collections::HashMap<String, usize>>> =
        parking_lot::Mutex::new(None);
    let mut owners = OWNERS.lock();
    let map = owners.get_or_insert_with(Default::default);
    if acquire {
        *map.entry(key).or_insert(0) += 1;
        return false;
    }
    match map.get_mut(&key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        _ => {
            map.remove(&key);
            true
        }
    }
}

/// The metrics in Prometheus' text format (OpenMetrics).
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}

/// One element's series.
pub struct ElementMetrics {
    element: String,
    frames: Counter,
    inferences: Counter,
    skipped_interval: Counter,
    skipped_qos: Counter,
    errors: Counter,
    swaps: Counter,
    pre: Histogram,
    infer: Histogram,
    post: Histogram,
    provider: Option<String>,
}

impl ElementMetrics {
    pub fn new(element: &str) -> ElementMetrics {
        own(format!("element {element}"), true);
        let m = metrics();
        let el = El {
            element: element.to_string(),
        };
        let reason = |reason| ElReason {
            element: element.to_string(),
            reason,
        };
        let stage = |stage| ElStage {
            element: element.to_string(),
            stage,
        };
        ElementMetrics {
            element: element.to_string(),
            frames: m.frames.get_or_create_owned(&el),
            inferences: m.inferences.get_or_create_owned(&el),
            skipped_interval: m.skipped.get_or_create_owned(&reason("interval")),
            skipped_qos: m.skipped.get_or_create_owned(&reason("qos")),
            errors: m.errors.get_or_create_owned(&el),
            swaps: m.swaps.get_or_create_owned(&el),
            pre: m.stage.get_or_create_owned(&stage("pre")),
            infer: m.stage.get_or_create_owned(&stage("infer")),
            post: m.stage.get_or_create_owned(&stage("post")),
            provider: None,
        }
    }

    /// A frame the model ran on, with its stage times in seconds.
    pub fn inferred(&self, pre: f64, infer: f64, post: f64) {
        self.frames.inc();
        self.inferences.inc();
        self.pre.observe(pre);
        self.infer.observe(infer);
        self.post.observe(post);
    }

    /// A frame passed on without inference: `qos` (late) or `inference-interval`.
    pub fn skipped(&self, qos: bool) {
        self.frames.inc();
        if qos {
            self.skipped_qos.inc();
        } else {
            self.skipped_interval.inc();
        }
    }

    pub fn error(&self) {
        self.errors.inc();
    }

    pub fn swapped(&self) {
        self.swaps.inc();
    }

    /// The provider running the model now.
    pub fn set_provider(&mut self, provider: &str) {
        let m = metrics();
        if let Some(old) = self.provider.take() {
            m.provider.remove(&ElProvider {
                element: self.element.clone(),
                provider: old,
            });
        }
        m.provider
            .get_or_create(&ElProvider {
                element: self.element.clone(),
                provider: provider.to_string(),
            })
            .set(1);
        self.provider = Some(provider.to_string());
    }
}

impl Drop for ElementMetrics {
    fn drop(&mut self) {
        if !own(format!("element {}", self.element), false) {
            return;
        }
        let m = metrics();
        let el = El {
            element: self.element.clone(),
        };
        m.frames.remove(&el);
        m.inferences.remove(&el);
        m.errors.remove(&el);
        m.swaps.remove(&el);
        for reason in ["interval", "qos"] {
            m.skipped.remove(&ElReason {
                element: self.element.clone(),
                reason,
            });
        }
        for stage in ["pre", "infer", "post"] {
            m.stage.remove(&ElStage {
                element: self.element.clone(),
                stage,
            });
        }
        if let Some(provider) = self.provider.take() {
            m.provider.remove(&ElProvider {
                element: self.element.clone(),
                provider,
            });
        }
    }
}

/// One model instance's series.
pub struct InstanceMetrics {
    instance: String,
    batches: Counter,
    frames: Counter,
    size: Histogram,
}

impl InstanceMetrics {
    pub fn new(instance: &str) -> InstanceMetrics {
        own(format!("instance {instance}"), true);
        let m = metrics();
        let l = Inst {
            instance: instance.to_string(),
        };
        InstanceMetrics {
            instance: instance.to_string(),
            batches: m.batches.get_or_create_owned(&l),
            frames: m.batch_frames.get_or_create_owned(&l),
            size: m.batch_size.get_or_create_owned(&l),
        }
    }

    pub fn batch(&self, frames: usize) {
        self.batches.inc();
        self.frames.inc_by(frames as u64);
        self.size.observe(frames as f64);
    }
}

impl Drop for InstanceMetrics {
    fn drop(&mut self) {
        if !own(format!("instance {}", self.instance), false) {
            return;
        }
        let m = metrics();
        let l = Inst {
            instance: self.instance.clone(),
        };
        m.batches.remove(&l);
        m.batch_frames.remove(&l);
        m.batch_size.remove(&l);
    }
}

/// GPU memory of `device` (used, total bytes), from whoever last looked.
pub fn set_gpu_memory(device: i32, used: u64, total: u64) {
    let m = metrics();
    let d = Dev {
        device: device.to_string(),
    };
    m.gpu_used.get_or_create(&d).set(used as i64);
    m.gpu_total.get_or_create(&d).set(total as i64);
}

/// Starts the listener named by `GST_YOLO_METRICS_ADDR`, once per process. `None` when the
/// variable is unset; else the address it listens on, or why it could not.
pub fn serve_from_env() -> Option<&'static Result<std::net::SocketAddr, String>> {
    static SERVER: OnceLock<Option<Result<std::net::SocketAddr, String>>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let addr = std::env::var(ADDR_ENV).ok().filter(|a| !a.is_empty())?;
            Some(serve(&addr))
        })
        .as_ref()
}

/// Serves `/metrics` on `addr` from a thread of its own.
fn serve(addr: &str) -> Result<std::net::SocketAddr, String> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| format!("cannot listen on {addr} ({ADDR_ENV}): {e}"))?;
    let local = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("{addr} is not an IP address ({ADDR_ENV})"))?;
    let server = Arc::new(server);
    std::thread::Builder::new()
        .name("yolo-metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let path = req.url().split('?').next().unwrap_or("");
                let resp = if path == "/metrics" || path == "/" {
                    tiny_http::Response::from_string(encode()).with_header(
                        tiny_http::Header::from_bytes(
                            "Content-Type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .expect("a valid header"),
                    )
                } else {
                    tiny_http::Response::from_string("not found: metrics are at /metrics\n")
                        .with_status_code(404)
                };
                // A client that went away is its own problem.
                let _ = req.respond(resp);
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn element_series_count_and_go_with_the_element() {
        let mut e = ElementMetrics::new("/p/unit-test-det");
        e.set_provider("cpu");
        e.inferred(0.001, 0.05, 0.0005);
        e.inferred(0.001, 0.05, 0.0005);
        e.skipped(true);
        e.skipped(false);
        e.skipped(false);
        e.swapped();
        let text = encode();
        let el = r#"{element="/p/unit-test-det"}"#;
        assert_eq!(value(&text, &format!("yolo_frames_total{el}")), Some(5.0));
        assert_eq!(
            value(&text, &format!("yolo_inferences_total{el}")),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                r#"yolo_skipped_frames_total{element="/p/unit-test-det",reason="interval"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &format!("yolo_model_swaps_total{el}")),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"yolo_stage_duration_seconds_count{element="/p/unit-test-det",stage="infer"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                r#"yolo_active_provider{element="/p/unit-test-det",provider="cpu"}"#
            ),
            Some(1.0)
        );
        e.set_provider("cuda");
        let text = encode();
        assert!(!text.contains(r#"element="/p/unit-test-det",provider="cpu""#));
        drop(e);
        assert!(
            !encode().contains("unit-test-det"),
            "series removed with the element"
        );
    }

    #[test]
    fn instance_batches() {
        let i = InstanceMetrics::new("unit-test-inst");
        i.batch(4);
        i.batch(2);
        let text = encode();
        assert_eq!(
            value(
                &text,
                r#"yolo_instance_batch_frames_total{instance="unit-test-inst"}"#
            ),
            Some(6.0)
        );
        assert_eq!(
            value(
                &text,
                r#"yolo_instance_batches_total{instance="unit-test-inst"}"#
            ),
            Some(2.0)
        );
        // A successor (model swap) under the same id continues the series.
        let next = InstanceMetrics::new("unit-test-inst");
        drop(i);
        next.batch(1);
        assert_eq!(
            value(
                &encode(),
                r#"yolo_instance_batches_total{instance="unit-test-inst"}"#
            ),
            Some(3.0)
        );
        drop(next);
        assert!(!encode().contains("unit-test-inst"));
    }
}
