// SPDX-License-Identifier: MPL-2.0
//! Live operation: model swaps while PLAYING (private, pipelined and shared instances, and one
//! that fails). Real model and video; the new model is a hand-written ONNX file whose one
//! detection (class 5 at a fixed place, whatever the pixels) tells which model ran on a frame.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;
use gstyolo::meta::{Detection, DetectionMeta};

fn bikes() -> String {
    media("video/bikes.mp4").display().to_string()
}

/// The constant model in a fresh temporary folder: one box, class 5 ("bus"), score 0.9, centred
/// at (320, 320) in model pixels, 100x80.
fn constant_model(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gst-yolo-live-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("constant.onnx");
    std::fs::write(
        &path,
        onnx::constant_head_model(&[(320.0, 320.0, 100.0, 80.0, 5, 0.9)]),
    )
    .expect("write model");
    path
}

/// Whether `dets` is what the constant model gives: its one class-5 box (x 270..370, y 280..360
/// in model pixels) mapped back to a bikes.mp4 frame (640x272: scale 1, 184 px of padding
/// above) or to bus.png (810x1080: scale 0.593, 80 px of padding left).
fn is_constant(dets: &[Detection]) -> bool {
    let near = |d: &Detection, b: [f32; 4]| {
        (d.x1 - b[0]).abs() < 1.5
            && (d.y1 - b[1]).abs() < 1.5
            && (d.x2 - b[2]).abs() < 1.5
            && (d.y2 - b[3]).abs() < 1.5
    };
    let r = 640.0 / 1080.0;
    dets.len() == 1
        && dets[0].class_id == 5
        && (dets[0].confidence - 0.9).abs() < 1e-4
        && (near(&dets[0], [270.0, 96.0, 370.0, 176.0])
            || near(&dets[0], [190.0 / r, 280.0 / r, 290.0 / r, 360.0 / r]))
}

fn same(a: &[Detection], b: &[Detection]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.class_id == y.class_id
                && (x.confidence - y.confidence).abs() < 1e-4
                && iou([x.x1, x.y1, x.x2, x.y2], [y.x1, y.y1, y.x2, y.y2]) > 0.999
        })
}

struct Run {
    /// (PTS, detections) of each frame, in arrival order.
    frames: Vec<(gst::ClockTime, Vec<Detection>)>,
    /// Element messages and warnings, as structures / texts.
    changed: Vec<gst::Structure>,
    warnings: Vec<String>,
    /// The elements' `model` property at the end, by element name.
    models: Vec<(String, String)>,
}

/// Plays `desc` (appsinks named sink0, sink1, ...) to EOS; when sink0 has seen `swap_after`
/// frames, another thread sets `props` on the element named `det0`.
fn run_with_swap(
    desc: &str,
    sinks: usize,
    swap_after: usize,
    props: Vec<(&'static str, String)>,
) -> Vec<Run> {
    init();
    let pipeline = gst::parse::launch(&with_test_provider(desc))
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let outs: Vec<_> = (0..sinks)
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let props = Arc::new(Mutex::new(Some(props)));
    for (i, out) in outs.iter().enumerate() {
        let sink = pipeline
            .by_name(&format!("sink{i}"))
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .expect("appsink");
        sink.set_property("sync", false);
        let out = out.clone();
        let props = props.clone();
        let det = pipeline.by_name("det0").expect("det0");
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let dets = buf
                        .meta::<DetectionMeta>()
                        .map(|m| m.detections().to_vec())
                        .unwrap_or_default();
                    let mut out = out.lock().unwrap();
                    out.push((buf.pts().expect("pts"), dets));
                    if i == 0 && out.len() == swap_after {
                        // From another thread, as an application would.
                        let props = props.lock().unwrap().take().expect("set once");
                        let det = det.clone();
                        std::thread::spawn(move || {
                            for (k, v) in props {
                                det.set_property_from_str(k, &v);
                            }
                        });
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let mut changed: Vec<Vec<gst::Structure>> = vec![Vec::new(); sinks];
    let mut warnings = Vec::new();
    let mut eos = false;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(300)) {
        match msg.view() {
            gst::MessageView::Eos(..) => {
                eos = true;
                break;
            }
            gst::MessageView::Error(_) => {
                pipeline.set_state(gst::State::Null).ok();
                panic!("{}", error_text(&msg));
            }
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e
                    .structure()
                    .filter(|s| s.name() == "yolodetect-model-changed")
                {
                    let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                    let i: usize = src.trim_start_matches("det").parse().expect("det<i>");
                    changed[i].push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    assert!(eos, "no EOS within 300 s");
    let models: Vec<_> = (0..sinks)
        .map(|i| {
            let name = format!("det{i}");
            let m: Option<String> = pipeline.by_name(&name).expect("det").property("model");
            (name, m.unwrap_or_default())
        })
        .collect();
    pipeline.set_state(gst::State::Null).ok();
    outs.into_iter()
        .zip(changed)
        .map(|(o, changed)| Run {
            frames: std::mem::take(&mut *o.lock().unwrap()),
            changed,
            warnings: warnings.clone(),
            models: models.clone(),
        })
        .collect()
}

const FRAMES: usize = 40;

fn video(extra: &str, name: &str, sink: &str) -> String {
    format!(
        "filesrc location=\"{}\" ! decodebin ! identity eos-after={FRAMES} ! videoconvert ! video/x-raw,format=I420 ! yolodetect name={name} model=\"{}\" {extra} ! appsink name={sink}",
        bikes(),
        model("yolov8n.onnx").display()
    )
}

/// Each frame of `run` is either yolov8n's (equal to `reference` at that PTS) or the constant
/// model's, with one switch from the first to the second after `swap_after` frames; returns the
/// index of the first frame of the new model.
fn check_switch(
    run: &Run,
    reference: &[(gst::ClockTime, Vec<Detection>)],
    swap_after: usize,
) -> usize {
    // `identity eos-after` lets a frame or two more through on GStreamer 1.22, not always the
    // same: compare the first FRAMES, PTS by PTS (a lost frame shifts every later PTS).
    assert!(
        run.frames.len().min(reference.len()) >= FRAMES,
        "every frame comes out, swap or not: {} of {}",
        run.frames.len(),
        reference.len()
    );
    for w in run.frames.windows(2) {
        assert!(w[0].0 < w[1].0, "PTS in order: {} then {}", w[0].0, w[1].0);
    }
    let first_new = run
        .frames
        .iter()
        .position(|(_, d)| is_constant(d))
        .unwrap_or_else(|| panic!("no frame came from the new model"));
    assert!(
        first_new >= swap_after,
        "frame {first_new} used the new model before it was set (after frame {swap_after})"
    );
    assert!(
        first_new < FRAMES - 5,
        "the swap came too late to tell ({first_new} of {})",
        run.frames.len()
    );
    let mut old_with_objects = 0;
    for (i, ((pts, dets), (rpts, rdets))) in
        run.frames.iter().zip(reference).take(FRAMES).enumerate()
    {
        assert_eq!(pts, rpts, "frame {i}");
        if i < first_new {
            assert!(
                same(dets, rdets),
                "frame {i} (old model) differs from yolov8n alone: {dets:?} vs {rdets:?}"
            );
            old_with_objects += usize::from(!rdets.is_empty());
        } else {
            assert!(
                is_constant(dets),
                "frame {i} after the swap is not the new model's: {dets:?}"
            );
        }
    }
    assert!(
        old_with_objects > 0,
        "the clip's first frames have objects to compare"
    );
    first_new
}

/// bus.png over and over: every frame full of objects, so a frame that lost its detections in
/// a swap shows.
fn photos(extra: &str, name: &str, sink: &str) -> String {
    format!(
        "multifilesrc location=\"{}\" loop=true num-buffers={FRAMES} caps=image/png,framerate=25/1 ! pngdec ! videoconvert ! video/x-raw,format=I420 ! yolodetect name={name} model=\"{}\" {extra} ! appsink name={sink}",
        media("png/bus.png").display(),
        model("yolov8n.onnx").display()
    )
}

fn reference_run(
    source: fn(&str, &str, &str) -> String,
    extra: &str,
) -> Vec<(gst::ClockTime, Vec<Detection>)> {
    let v = run_pipeline(&source(extra, "det", "sink")).expect("reference run");
    v.into_iter()
        .map(|(b, d)| (b.pts().expect("pts"), d))
        .collect()
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn model_swap_while_playing_switches_at_a_frame_boundary() {
    let _serial = serial();
    let reference = reference_run(video, "");
    let new = constant_model("private");
    let runs = run_with_swap(
        &video("", "det0", "sink0"),
        1,
        8,
        vec![("model", path_str(&new))],
    );
    let run = &runs[0];
    check_switch(run, &reference, 8);
    assert_eq!(
        run.changed.len(),
        1,
        "one yolodetect-model-changed: {:?}",
        run.changed
    );
    let msg = &run.changed[0];
    assert_eq!(msg.get::<String>("new-model").unwrap(), path_str(&new));
    assert!(
        msg.get::<String>("old-model")
            .unwrap()
            .ends_with("yolov8n.onnx")
    );
    assert!(msg.get::<f64>("load-time-ms").unwrap() > 0.0);
    assert_eq!(
        msg.get::<String>("execution-provider").unwrap(),
        test_provider().unwrap_or("cpu".into())
    );
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
}

#[test]
fn pipelined_swap_decodes_frames_in_flight_on_their_own_model() {
    let _serial = serial();
    // The two frames in flight when the swap lands were submitted to yolov8n: they must leave
    // with yolov8n's detections, not the new model's or none.
    let reference = reference_run(photos, "pipelined=true");
    let new = constant_model("pipelined");
    let runs = run_with_swap(
        &photos("pipelined=true", "det0", "sink0"),
        1,
        8,
        vec![("model", path_str(&new))],
    );
    check_switch(&runs[0], &reference, 8);
    assert_eq!(runs[0].changed.len(), 1);
}

#[test]
fn failed_swap_keeps_the_old_model_serving_with_a_warning() {
    let _serial = serial();
    let reference = reference_run(video, "");
    let missing = std::env::temp_dir().join("gst-yolo-no-such-model.onnx");
    let runs = run_with_swap(
        &video("", "det0", "sink0"),
        1,
        8,
        vec![("model", path_str(&missing))],
    );
    let run = &runs[0];
    assert!(run.frames.len().min(reference.len()) >= FRAMES);
    for (i, ((p, d), (rp, r))) in run.frames.iter().zip(&reference).take(FRAMES).enumerate() {
        assert_eq!(p, rp, "frame {i}");
        assert!(same(d, r), "frame {i} changed after a failed swap");
    }
    assert!(
        run.changed.is_empty(),
        "no model-changed message: {:?}",
        run.changed
    );
    assert!(
        run.warnings
            .iter()
            .any(|w| w.contains("gst-yolo-no-such-model.onnx") && w.contains("keeps serving")),
        "a warning names the model that failed: {:?}",
        run.warnings
    );
    // Set back to what serves.
    assert!(
        run.models[0].1.ends_with("yolov8n.onnx"),
        "{:?}",
        run.models
    );
}

#[test]
fn swap_on_one_element_moves_every_element_of_a_shared_instance() {
    let _serial = serial();
    let reference = reference_run(photos, "");
    let new = constant_model("shared");
    let desc = format!(
        "{} {}",
        photos("model-instance-id=live-swap", "det0", "sink0"),
        photos("model-instance-id=live-swap", "det1", "sink1")
    );
    let runs = run_with_swap(&desc, 2, 8, vec![("model", path_str(&new))]);
    for (i, run) in runs.iter().enumerate() {
        // The other stream may be ahead or behind: it moves at its own next frame.
        let first_new = run
            .frames
            .iter()
            .position(|(_, d)| is_constant(d))
            .unwrap_or_else(|| panic!("stream {i} never moved to the new model"));
        assert!(
            first_new < FRAMES - 5,
            "stream {i} moved late ({first_new})"
        );
        assert!(
            run.frames.len().min(reference.len()) >= FRAMES,
            "stream {i} lost frames"
        );
        for (k, ((p, d), (rp, r))) in run.frames.iter().zip(&reference).take(FRAMES).enumerate() {
            assert_eq!(p, rp, "stream {i} frame {k}");
            if k < first_new {
                assert!(same(d, r), "stream {i} frame {k} (old model) differs");
            } else {
                assert!(
                    is_constant(d),
                    "stream {i} frame {k} went back to the old model"
                );
            }
        }
        assert_eq!(run.changed.len(), 1, "stream {i}: {:?}", run.changed);
        assert_eq!(
            run.changed[0].get::<String>("model-instance-id").unwrap(),
            "live-swap"
        );
        assert_eq!(
            run.models[i].1,
            path_str(&new),
            "det{i} reports the model it runs"
        );
    }
}

fn stats_of(e: &gst::Element) -> gst::Structure {
    e.property::<gst::Structure>("stats")
}

#[test]
fn inference_interval_runs_every_nth_frame_and_repeats_the_last_detections() {
    let _serial = serial();
    let reference = reference_run(video, "");
    for repeat in [false, true] {
        let desc = video(
            &format!("inference-interval=3 repeat-detections={repeat}"),
            "det",
            "sink",
        );
        init();
        let pipeline = gst::parse::launch(&with_test_provider(&desc))
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("pipeline");
        let sink = pipeline
            .by_name("sink")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .expect("appsink");
        sink.set_property("sync", false);
        let frames = Arc::new(Mutex::new(Vec::new()));
        let f2 = frames.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let meta = buf
                        .meta::<DetectionMeta>()
                        .map(|m| (m.is_repeated(), m.detections().to_vec()));
                    let rois = buf
                        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                        .filter(|r| {
                            r.param("detection")
                                .and_then(|p| p.get::<bool>("repeated").ok())
                                .unwrap_or(false)
                        })
                        .count();
                    f2.lock().unwrap().push((buf.pts().unwrap(), meta, rois));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        run_to_eos(&pipeline).expect("run");
        let det = pipeline.by_name("det").unwrap();
        let stats = stats_of(&det);
        pipeline.set_state(gst::State::Null).ok();
        let frames = frames.lock().unwrap();
        assert!(frames.len() >= FRAMES);
        let mut last: Option<Vec<Detection>> = None;
        let mut repeated_differs = 0;
        for (i, ((pts, meta, rois), (rpts, rdets))) in
            frames.iter().zip(&reference).take(FRAMES).enumerate()
        {
            assert_eq!(pts, rpts, "frame {i}");
            if i % 3 == 0 {
                let (rep, dets) = meta
                    .as_ref()
                    .unwrap_or_else(|| panic!("frame {i} inferred"));
                assert!(!rep, "frame {i} was inferred, not repeated");
                assert!(same(dets, rdets), "frame {i}: {dets:?} vs {rdets:?}");
                last = Some(dets.clone());
            } else if repeat {
                let (rep, dets) = meta.as_ref().unwrap_or_else(|| panic!("frame {i} repeats"));
                assert!(rep, "frame {i} is marked repeated");
                let last = last.as_ref().unwrap();
                assert!(same(dets, last), "frame {i} repeats frame {}'s", i - i % 3);
                assert_eq!(*rois, dets.len(), "frame {i}: ROI metas say repeated");
                repeated_differs += usize::from(!same(dets, rdets));
            } else {
                assert!(
                    meta.is_none(),
                    "frame {i}: no detections between inferences"
                );
            }
        }
        if repeat {
            assert!(
                repeated_differs > 0,
                "the clip moves: some repeated detections differ from the frame's own"
            );
        }
        let skipped = stats.get::<u64>("skipped-interval").unwrap();
        let inferred = stats.get::<u64>("frames").unwrap();
        assert_eq!(
            skipped + inferred,
            frames.len() as u64,
            "every frame counted once: {stats}"
        );
        assert_eq!(inferred, frames.len().div_ceil(3) as u64, "{stats}");
    }
}

/// Frames per second the model sustains here on 640x480 test frames: from the element's own
/// median frame time over a short run (the load of the session is not part of it).
/// The tests of this file one at a time: they time the model (and QoS against it), and a
/// model run of another test on the same cores halves what they measure (CI saw the QoS test's
/// control fail: the model timed at 14.6 fps beside another test, then ran at 27.5 alone).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn model_fps() -> f64 {
    init();
    let desc = format!(
        "videotestsrc num-buffers=20 ! video/x-raw,width=640,height=480 ! yolodetect name=det model=\"{}\" ! fakesink",
        model("yolov8n.onnx").display()
    );
    let pipeline = gst::parse::launch(&with_test_provider(&desc))
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    run_to_eos(&pipeline).expect("timing run");
    let stats = stats_of(&pipeline.by_name("det").unwrap());
    pipeline.set_state(gst::State::Null).ok();
    1000.0 / stats.get::<f64>("total-p50-ms").unwrap()
}

struct LiveRun {
    pts: Vec<gst::ClockTime>,
    /// How long after its running time each frame reached the sink.
    delay: Vec<f64>,
    stats: gst::Structure,
}

/// A live source at `fps` into yolodetect and a synchronised sink (with QoS), for `secs`.
fn live_run(fps: u32, secs: u32, qos: bool) -> LiveRun {
    init();
    let n = fps * secs;
    let desc = with_test_provider(&format!(
        "videotestsrc is-live=true pattern=ball num-buffers={n} ! video/x-raw,width=640,height=480,framerate={fps}/1 ! yolodetect name=det qos={qos} model=\"{}\" ! appsink name=sink sync=true qos=true",
        model("yolov8n.onnx").display()
    ));
    let pipeline = gst::parse::launch(&desc)
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .expect("appsink");
    let out = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let o2 = out.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                let pts = buf.pts().expect("pts");
                let seg = sample.segment().expect("segment");
                let rt = seg
                    .downcast_ref::<gst::ClockTime>()
                    .and_then(|seg| seg.to_running_time(pts))
                    .expect("running time");
                let now = s.current_running_time().expect("clock");
                let mut o = o2.lock().unwrap();
                o.0.push(pts);
                o.1.push((now.nseconds() as f64 - rt.nseconds() as f64) / 1e9);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let mut eos = false;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(600)) {
        match msg.view() {
            gst::MessageView::Eos(..) => {
                eos = true;
                break;
            }
            gst::MessageView::Error(_) => {
                pipeline.set_state(gst::State::Null).ok();
                panic!("{}", error_text(&msg));
            }
            // As gst-launch does: yolodetect reports its latency once it has measured it.
            gst::MessageView::Latency(_) => {
                let _ = pipeline.recalculate_latency();
            }
            _ => {}
        }
    }
    assert!(eos, "no EOS");
    let stats = stats_of(&pipeline.by_name("det").unwrap());
    pipeline.set_state(gst::State::Null).ok();
    let (pts, delay) = std::mem::take(&mut *out.lock().unwrap());
    LiveRun { pts, delay, stats }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MIN, f64::max)
}

#[test]
fn qos_keeps_latency_bounded_on_a_live_source_twice_as_fast_as_the_model() {
    let _serial = serial();
    let model = model_fps();
    let fps = ((2.0 * model).ceil() as u32).clamp(4, 1000);
    let secs = 8;
    let n = (fps * secs) as usize;
    let on = live_run(fps, secs, true);
    eprintln!(
        "model {model:.1} fps, source {fps} fps; qos on: delay first {:.3} s, max of 2nd half {:.3} s, last {:.3} s; {}",
        on.delay[0],
        max(&on.delay[n / 2..]),
        on.delay[n - 1],
        on.stats
    );
    assert_eq!(on.pts.len(), n, "every frame reaches the sink");
    for w in on.pts.windows(2) {
        assert!(w[0] < w[1], "in order");
    }
    let skipped = on.stats.get::<u64>("skipped-qos").unwrap();
    let inferred = on.stats.get::<u64>("frames").unwrap();
    assert!(skipped > 0, "late frames skipped inference: {}", on.stats);
    assert!(
        inferred > n as u64 / 8,
        "and the model still ran: {}",
        on.stats
    );
    assert_eq!(skipped + inferred, n as u64, "each frame counted once");
    // Bounded: no growth from the second quarter of the run to the last, and no frame in the
    // second half more than 2 s behind (without QoS, below, the delay keeps growing by the
    // frames the model cannot keep up with: ~15 s at the end on a 2-core VM).
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (q2, q4) = (mean(&on.delay[n / 4..n / 2]), mean(&on.delay[3 * n / 4..]));
    assert!(q4 < q2 + 0.25, "delay grows: {q2:.3} s then {q4:.3} s");
    let bound = 2.0;
    assert!(
        max(&on.delay[n / 2..]) < bound,
        "delay bounded: {:?}",
        &on.delay[n / 2..]
    );

    let off = live_run(fps, secs, false);
    eprintln!(
        "qos off: delay last {:.3} s; {}",
        off.delay[n - 1],
        off.stats
    );
    assert_eq!(off.pts.len(), n);
    assert_eq!(off.stats.get::<u64>("skipped-qos").unwrap(), 0);
    assert!(
        off.delay[n - 1] > 2.0 * bound,
        "without QoS the delay grows (else this test shows nothing): {:.3} s",
        off.delay[n - 1]
    );
}
