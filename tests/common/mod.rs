// SPDX-License-Identifier: MPL-2.0
//! Shared test helpers: plugin registration, paths to ../shared, running pipelines and
//! comparing detections with the reference under the tolerance of `reference/README.md`.
#![allow(dead_code)]

pub mod onnx;

use std::path::PathBuf;
use std::sync::Once;

use gst::prelude::*;
use gstyolo::meta::{Detection, DetectionMeta};

pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().expect("gst::init");
        gstyolo::plugin_register_static().expect("register gstyolo");
    });
}

/// `../shared` next to the repository, or `$GST_YOLO_SHARED`.
pub fn shared() -> PathBuf {
    std::env::var_os("GST_YOLO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

pub fn model(name: &str) -> PathBuf {
    shared().join("models").join(name)
}

pub fn media(rel: &str) -> PathBuf {
    shared().join("media").join(rel)
}

pub fn reference(name: &str) -> serde_json::Value {
    let p = shared().join("reference").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("reference JSON")
}

/// A detection as the reference gives it.
#[derive(Debug, Clone)]
pub struct RefDet {
    pub class_id: u32,
    pub conf: f32,
    pub bbox: [f32; 4],
}

pub fn ref_dets(v: &serde_json::Value) -> Vec<RefDet> {
    v.as_array()
        .expect("detections array")
        .iter()
        .map(|d| {
            let b = d["box_xyxy"].as_array().expect("box");
            RefDet {
                class_id: d["class_id"].as_u64().expect("class_id") as u32,
                conf: d["conf"].as_f64().expect("conf") as f32,
                bbox: [0, 1, 2, 3].map(|i| b[i].as_f64().expect("coord") as f32),
            }
        })
        .collect()
}

pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if ua <= 0.0 { 0.0 } else { inter / ua }
}

/// The two tiers of `reference/README.md`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub min_conf: f32,
    pub min_iou: f32,
    pub max_conf_diff: f32,
}

pub const EXACT: Tolerance = Tolerance {
    min_conf: 0.30,
    min_iou: 0.95,
    max_conf_diff: 0.02,
};
pub const DECODED: Tolerance = Tolerance {
    min_conf: 0.35,
    min_iou: 0.8,
    max_conf_diff: 0.15,
};

/// Checks `out` against `reference` under `tol`; returns the list of problems (empty = match).
pub fn compare(what: &str, out: &[Detection], reference: &[RefDet], tol: Tolerance) -> Vec<String> {
    let mut problems = Vec::new();
    for r in reference.iter().filter(|r| r.conf >= tol.min_conf) {
        let ok = out.iter().any(|o| {
            o.class_id == r.class_id
                && iou(o.bbox(), r.bbox) >= tol.min_iou
                && (o.confidence - r.conf).abs() <= tol.max_conf_diff
        });
        if !ok {
            let best = out
                .iter()
                .filter(|o| o.class_id == r.class_id)
                .map(|o| (iou(o.bbox(), r.bbox), o.confidence))
                .fold((0.0f32, 0.0f32), |a, b| if b.0 > a.0 { b } else { a });
            problems.push(format!(
                "{what}: reference {r:?} unmatched (best same-class IoU {:.3}, conf {:.3})",
                best.0, best.1
            ));
        }
    }
    for o in out.iter().filter(|o| o.confidence >= tol.min_conf) {
        let ok = reference
            .iter()
            .any(|r| r.class_id == o.class_id && iou(o.bbox(), r.bbox) >= 0.5);
        if !ok {
            problems.push(format!("{what}: extra output {o:?} with no reference box"));
        }
    }
    problems
}

/// `$GST_YOLO_TEST_PROVIDER` (e.g. `cuda` on a GPU host): the execution provider every test
/// pipeline's yolodetect uses; unset = the element's default (CPU).
pub fn test_provider() -> Option<String> {
    std::env::var("GST_YOLO_TEST_PROVIDER")
        .ok()
        .filter(|p| !p.is_empty())
}

/// Adds `execution-provider=$GST_YOLO_TEST_PROVIDER` to every yolodetect in `desc`.
pub fn with_test_provider(desc: &str) -> String {
    match test_provider() {
        Some(p) => desc.replace(
            "yolodetect ",
            &format!("yolodetect execution-provider={p} "),
        ),
        None => desc.to_string(),
    }
}

/// Detections of each buffer that reaches the appsink named `sink`, in order.
pub fn run_pipeline(desc: &str) -> Result<Vec<(gst::Buffer, Vec<Detection>)>, String> {
    init();
    let desc = &with_test_provider(desc);
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| format!("parse {desc}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("sink")
        .expect("appsink named sink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    sink.set_property("sync", false);
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out2 = out.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buf = sample.buffer_owned().ok_or(gst::FlowError::Error)?;
                let dets = buf
                    .meta::<DetectionMeta>()
                    .map(|m| m.detections().to_vec())
                    .unwrap_or_default();
                out2.lock().unwrap().push((buf, dets));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let res = run_to_eos(&pipeline);
    pipeline.set_state(gst::State::Null).ok();
    res?;
    let v = std::mem::take(&mut *out.lock().unwrap());
    Ok(v)
}

/// Plays `pipeline` until EOS; an error message on the bus becomes `Err(text)`.
pub fn run_to_eos(pipeline: &gst::Pipeline) -> Result<(), String> {
    let bus = pipeline.bus().expect("bus");
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        // The error message (if any) says why.
        if let Some(msg) =
            bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        {
            return Err(error_text(&msg));
        }
        return Err(format!("state change failed: {e}"));
    }
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(300)) {
        match msg.view() {
            gst::MessageView::Eos(..) => return Ok(()),
            gst::MessageView::Error(_) => return Err(error_text(&msg)),
            _ => {}
        }
    }
    Err("timed out waiting for EOS".into())
}

pub fn error_text(msg: &gst::Message) -> String {
    match msg.view() {
        gst::MessageView::Error(e) => format!(
            "{} ({})",
            e.error(),
            e.debug().map(|d| d.to_string()).unwrap_or_default()
        ),
        _ => format!("{msg:?}"),
    }
}

/// Runs one still image through `decoder ! videoconvert ! caps ! yolodetect`.
pub fn detect_image(
    path: &std::path::Path,
    decoder: &str,
    format: &str,
    extra: &str,
) -> Vec<Detection> {
    let desc = format!(
        "filesrc location=\"{}\" ! {decoder} ! videoconvert ! video/x-raw,format={format} ! yolodetect {extra} ! appsink name=sink",
        path.display()
    );
    let mut v = run_pipeline(&desc).unwrap_or_else(|e| panic!("{desc}: {e}"));
    assert_eq!(v.len(), 1, "one frame expected from {desc}");
    v.pop().unwrap().1
}

/// A folder holding only this build's libgstyolo.so, for the `GST_PLUGIN_PATH` of child
/// processes (gst-launch-1.0 samples, Python). `cargo test` leaves the cdylib next to the test
/// executable in `<target>/<profile>/deps/`, among proc-macro libraries GStreamer would try to
/// load as plugins, so it is copied into `<target>/<profile>/gst-plugin/` when newer.
pub fn plugin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let deps = exe.parent().expect("test executable in <target>/<profile>/deps");
        let built = deps.join("libgstyolo.so");
        assert!(
            built.is_file(),
            "{} missing: `cargo test` builds the cdylib there (crate-type cdylib in Cargo.toml); run `cargo build --release` and retry",
            built.display()
        );
        let dir = deps.parent().unwrap_or(deps).join("gst-plugin");
        let dest = dir.join("libgstyolo.so");
        let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if mtime(&dest) < mtime(&built) {
            std::fs::create_dir_all(&dir).expect("create gst-plugin folder");
            // Copy then rename, so a concurrent reader never sees half a library.
            let tmp = dir.join(format!(".libgstyolo.so.{}", std::process::id()));
            std::fs::copy(&built, &tmp).expect("copy libgstyolo.so");
            std::fs::rename(&tmp, &dest).expect("rename libgstyolo.so");
        }
        dir
    })
    .clone()
}

/// One decoded image as a buffer with its caps: `caps_fields` such as `format=RGB` or
/// `format=NV12,width=405,height=540` (scaled).
pub fn decoded_frame(
    path: &std::path::Path,
    decoder: &str,
    caps_fields: &str,
) -> (gst::Caps, gst::Buffer) {
    init();
    let desc = format!(
        "filesrc location=\"{}\" ! {decoder} ! videoconvert ! videoscale ! video/x-raw,{caps_fields} ! appsink name=sink",
        path.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .expect("decode pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(30))
        .unwrap_or_else(|| panic!("no frame from {desc}"));
    pipeline.set_state(gst::State::Null).ok();
    (
        sample.caps().expect("caps").to_owned(),
        sample.buffer_owned().expect("buffer"),
    )
}

/// `appsrc ! <elements> ! appsink`, stepped one frame at a time: each [`FrameStepper::step`]
/// pushes a frame and waits for it to come out, so property changes between steps apply to a
/// known frame.
pub struct FrameStepper {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    pts: gst::ClockTime,
}

impl FrameStepper {
    pub fn new(elements: &str) -> Self {
        init();
        let desc = with_test_provider(&format!(
            "appsrc name=src format=time ! {elements} ! appsink name=sink sync=false"
        ));
        let pipeline = gst::parse::launch(&desc)
            .unwrap_or_else(|e| panic!("{desc}: {e}"))
            .downcast::<gst::Pipeline>()
            .expect("pipeline");
        let src = pipeline
            .by_name("src")
            .and_then(|s| s.downcast::<gst_app::AppSrc>().ok())
            .expect("appsrc");
        let sink = pipeline
            .by_name("sink")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .expect("appsink");
        pipeline.set_state(gst::State::Playing).expect("playing");
        FrameStepper {
            pipeline,
            src,
            sink,
            pts: gst::ClockTime::ZERO,
        }
    }

    pub fn element(&self, name: &str) -> gst::Element {
        self.pipeline.by_name(name).expect("element")
    }

    /// Pushes `buf` with `caps` (a caps change when they differ from the last) and returns the
    /// detections of the frame that comes out.
    pub fn step(&mut self, caps: &gst::Caps, buf: &gst::Buffer) -> Vec<Detection> {
        let mut buf = buf.copy();
        {
            let b = buf.get_mut().expect("copy is writable");
            b.set_pts(self.pts);
            b.set_duration(gst::ClockTime::from_mseconds(40));
        }
        self.pts += gst::ClockTime::from_mseconds(40);
        let sample = gst::Sample::builder().caps(caps).buffer(&buf).build();
        self.src.push_sample(&sample).expect("push");
        let Some(out) = self.sink.try_pull_sample(gst::ClockTime::from_seconds(60)) else {
            let err = self
                .pipeline
                .bus()
                .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
                .map(|m| error_text(&m));
            panic!("no frame came out: {err:?}");
        };
        out.buffer()
            .and_then(|b| b.meta::<DetectionMeta>())
            .map(|m| m.detections().to_vec())
            .unwrap_or_default()
    }

    pub fn finish(self) {
        let _ = self.src.end_of_stream();
        self.pipeline.set_state(gst::State::Null).ok();
    }
}

impl Drop for FrameStepper {
    fn drop(&mut self) {
        // Also on a failed assertion: a pipeline disposed in PLAYING crashes the test process.
        self.pipeline.set_state(gst::State::Null).ok();
    }
}
