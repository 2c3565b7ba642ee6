// SPDX-License-Identifier: MPL-2.0
//! Many streams, one model instance: shared instances, cross-stream batching, streams that stop,
//! seek or fail while others run, and mismatched options under one id. Real model and media.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstyolo::meta::{Detection, DetectionMeta};

fn model_arg(name: &str) -> String {
    format!("model=\"{}\"", model(name).display())
}

fn bikes() -> String {
    media("video/bikes.mp4").display().to_string()
}

/// Four different sources: sizes and formats differ, as cameras' do. The clip's first frames
/// hold few objects, so three streams loop photos full of them.
fn sources(frames: u32) -> [String; 4] {
    let png = |name: &str| {
        format!(
            "multifilesrc location=\"{}\" loop=true num-buffers={frames} caps=image/png,framerate=25/1 ! pngdec ! videoconvert ! videoscale",
            media(&format!("png/{name}")).display()
        )
    };
    [
        format!(
            "filesrc location=\"{}\" ! decodebin ! identity eos-after={frames} ! videoconvert ! video/x-raw,format=I420",
            bikes()
        ),
        format!("{} ! video/x-raw,format=RGB", png("bus.png")),
        format!(
            "{} ! video/x-raw,format=NV12,width=320,height=180",
            png("zidane.png")
        ),
        format!(
            "{} ! video/x-raw,format=BGRx,width=1280,height=962",
            png("000000000009.png")
        ),
    ]
}

type Frames = Vec<(Option<gst::ClockTime>, Vec<Detection>)>;

/// Runs `pipeline` to EOS (or `Err` with the bus error) collecting what reaches each appsink
/// `sink0..sinkN`.
fn collect(pipeline: &gst::Pipeline, n: usize, timeout: Duration) -> Result<Vec<Frames>, String> {
    let out: Vec<Arc<Mutex<Frames>>> = (0..n).map(|_| Arc::default()).collect();
    for (i, o) in out.iter().enumerate() {
        let sink = pipeline
            .by_name(&format!("sink{i}"))
            .expect("appsink")
            .downcast::<gst_app::AppSink>()
            .expect("appsink");
        sink.set_property("sync", false);
        let o = o.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let dets = buf
                        .meta::<DetectionMeta>()
                        .map(|m| m.detections().to_vec())
                        .ok_or(gst::FlowError::Error)?;
                    o.lock().unwrap().push((buf.pts(), dets));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let bus = pipeline.bus().expect("bus");
    let res = match pipeline.set_state(gst::State::Playing) {
        Err(_) => Err(bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
            .map(|m| error_text(&m))
            .unwrap_or_else(|| "state change failed".into())),
        Ok(_) => {
            let deadline = Instant::now() + timeout;
            let mut r = Err("timed out: a stream hung".to_string());
            while Instant::now() < deadline {
                let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
                    continue;
                };
                match msg.view() {
                    gst::MessageView::Eos(..) => {
                        r = Ok(());
                        break;
                    }
                    gst::MessageView::Error(_) => {
                        r = Err(error_text(&msg));
                        break;
                    }
                    _ => {}
                }
            }
            r
        }
    };
    pipeline.set_state(gst::State::Null).ok();
    res?;
    Ok(out
        .iter()
        .map(|o| std::mem::take(&mut *o.lock().unwrap()))
        .collect())
}

fn launch(desc: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(&with_test_provider(desc))
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("pipeline")
}

fn to_ref(d: &[Detection]) -> Vec<RefDet> {
    d.iter()
        .map(|d| RefDet {
            class_id: d.class_id,
            conf: d.confidence,
            bbox: d.bbox(),
        })
        .collect()
}

/// Same pixels, same model: only float summation order differs between a batched and a lone
/// run, so this is far tighter than the exact-pixels tier, and looks lower (conf >= 0.15).
const SAME: Tolerance = Tolerance {
    min_conf: 0.15,
    min_iou: 0.98,
    max_conf_diff: 0.01,
};

/// Frame by frame: PTS in stream order, every frame also in `want` (matched by PTS: `identity
/// eos-after` behind decodebin lets a frame or two more or less through from run to run) and
/// its detections equal under [`SAME`].
fn same_frames(what: &str, got: &Frames, want: &Frames) -> Vec<String> {
    let mut p = Vec::new();
    if !got.windows(2).all(|w| w[0].0 < w[1].0) {
        p.push(format!("{what}: PTS out of order"));
    }
    let mut matched = 0;
    for (i, g) in got.iter().enumerate() {
        match want.iter().find(|w| w.0 == g.0) {
            Some(w) => {
                matched += 1;
                p.extend(compare(
                    &format!("{what} frame {i}"),
                    &g.1,
                    &to_ref(&w.1),
                    SAME,
                ));
            }
            None if i + 3 >= got.len() => {} // the tail past the other run's end
            None => p.push(format!(
                "{what} frame {i}: PTS {:?} not in the other run",
                g.0
            )),
        }
    }
    if matched + 3 < want.len().min(got.len()) {
        p.push(format!("{what}: only {matched} frames in common"));
    }
    p
}

fn stats_of(pipeline: &gst::Pipeline, name: &str) -> gst::Structure {
    pipeline
        .by_name(name)
        .expect("element")
        .property::<gst::Structure>("stats")
}

#[test]
fn four_streams_batched_on_one_instance_match_each_stream_alone() {
    let frames = 12;
    let srcs = sources(frames);
    // A low threshold gives many boxes to compare.
    let m = format!("{} conf-threshold=0.1", model_arg("yolov8n-dynamic.onnx"));
    // Each stream alone, on a private instance.
    let alone: Vec<Frames> = srcs
        .iter()
        .map(|s| {
            let p = launch(&format!("{s} ! yolodetect {m} ! appsink name=sink0"));
            collect(&p, 1, Duration::from_secs(300)).unwrap().remove(0)
        })
        .collect();
    // Not vacuous: the photo streams are full of objects.
    for (i, a) in alone.iter().enumerate().skip(1) {
        assert!(
            a.len() >= frames as usize,
            "stream {i} alone: {} frames",
            a.len()
        );
        assert!(
            a.iter().map(|f| f.1.len()).sum::<usize>() >= 3 * frames as usize,
            "stream {i} detects too little to compare: {:?}",
            a.iter().map(|f| f.1.len()).collect::<Vec<_>>()
        );
    }
    // All four on one instance, batches of up to four.
    let desc: Vec<String> = srcs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{s} ! yolodetect name=d{i} {m} model-instance-id=four batch-size=4 batch-timeout=2000 ! appsink name=sink{i}"
            )
        })
        .collect();
    let p = launch(&desc.join("  "));
    let together = collect(&p, 4, Duration::from_secs(300)).unwrap();
    let mut problems = Vec::new();
    for i in 0..4 {
        problems.extend(same_frames(&format!("stream {i}"), &together[i], &alone[i]));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The frames really were batched across streams.
    let st = stats_of(&p, "d0");
    let fill = st.get::<f64>("mean-batch-fill").expect("mean-batch-fill");
    let total = st.get::<u64>("instance-frames").expect("instance-frames");
    let sent: usize = together.iter().map(Vec::len).sum();
    assert_eq!(total, sent as u64, "{st}");
    assert!(fill > 2.0, "mean batch fill {fill}: {st}");
}

#[test]
fn two_pipelines_share_one_instance() {
    let m = model_arg("yolov8n.onnx");
    let desc = |i: usize| {
        format!(
            "filesrc location=\"{}\" ! decodebin ! identity eos-after={} ! videoconvert ! yolodetect name=d {m} model-instance-id=shared-2p ! appsink name=sink0",
            bikes(),
            8 + i
        )
    };
    let (a, b) = (launch(&desc(0)), launch(&desc(1)));
    let (a2, b2) = (a.clone(), b.clone());
    let ta = std::thread::spawn(move || collect(&a2, 1, Duration::from_secs(300)));
    let tb = std::thread::spawn(move || collect(&b2, 1, Duration::from_secs(300)));
    let fa = ta.join().unwrap().unwrap().remove(0);
    let fb = tb.join().unwrap().unwrap().remove(0);
    assert!(
        fa.len() >= 8 && fb.len() >= 9,
        "{} and {} frames",
        fa.len(),
        fb.len()
    );
    let both = (fa.len() + fb.len()) as u64;
    // Every frame carries the meta (`collect` insists); the clip's cars and people are found.
    assert!(fa.iter().any(|f| !f.1.is_empty()) && fb.iter().any(|f| !f.1.is_empty()));
    // One instance served both: its workers counted the frames of both pipelines. (Read while
    // a second element still holds it would be racy; both are done, so the counts are final
    // only if the instance outlived the first pipeline: the stats keep the last numbers.)
    let (sa, sb) = (stats_of(&a, "d"), stats_of(&b, "d"));
    let frames = |s: &gst::Structure| s.get::<u64>("instance-frames").unwrap();
    assert!(
        frames(&sa) == both || frames(&sb) == both,
        "one instance saw both pipelines' {both} frames: {sa} / {sb}"
    );
}

#[test]
fn mismatched_options_under_one_id_are_an_error_naming_them() {
    let first = launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=64,height=48 ! yolodetect {} model-instance-id=mm ! fakesink",
        model_arg("yolov8n.onnx")
    ));
    first.set_state(gst::State::Paused).expect("first starts");
    for (extra, named) in [
        (model_arg("yolov8n-dynamic.onnx"), "model"),
        (
            format!("{} batch-size=2", model_arg("yolov8n.onnx")),
            "batch-size",
        ),
    ] {
        let second = launch(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! yolodetect {extra} model-instance-id=mm ! appsink name=sink0"
        ));
        let e = collect(&second, 1, Duration::from_secs(60)).unwrap_err();
        assert!(
            e.contains("model-instance-id `mm`") && e.contains(named),
            "{named}: {e}"
        );
    }
    first.set_state(gst::State::Null).unwrap();
    // Once the first element stopped, the instance is gone and the id is free for new options.
    let third = launch(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! yolodetect {} model-instance-id=mm batch-size=2 ! appsink name=sink0",
        model_arg("yolov8n-dynamic.onnx")
    ));
    assert_eq!(
        collect(&third, 1, Duration::from_secs(60)).unwrap()[0].len(),
        2
    );
}

/// One stream ends early, one is sought back, one goes to NULL mid-run: the stream that keeps
/// going finishes with every frame, with no waits beyond the batch timeout.
#[test]
fn streams_that_stop_seek_or_vanish_never_stall_the_others() {
    let m = model_arg("yolov8n-dynamic.onnx");
    let opts = "model-instance-id=robust batch-size=4 batch-timeout=200";
    let steady = launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! identity eos-after=40 ! videoconvert ! yolodetect name=d {m} {opts} ! appsink name=sink0  \
         filesrc location=\"{}\" ! decodebin ! identity eos-after=3 ! videoconvert ! yolodetect {m} {opts} ! appsink name=sink1",
        bikes(),
        bikes()
    ));
    // A second pipeline on the same instance that will be set to NULL, and a third that seeks.
    let vanish = launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! yolodetect {m} {opts} ! fakesink sync=true",
        bikes()
    ));
    let seeker = launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! yolodetect {m} {opts} ! fakesink sync=true",
        bikes()
    ));
    vanish.set_state(gst::State::Playing).unwrap();
    seeker.set_state(gst::State::Playing).unwrap();
    let s2 = steady.clone();
    let t = Instant::now();
    let run = std::thread::spawn(move || collect(&s2, 2, Duration::from_secs(240)));
    std::thread::sleep(Duration::from_millis(1500));
    seeker
        .seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::ClockTime::from_seconds(5),
        )
        .expect("seek");
    vanish.set_state(gst::State::Null).unwrap();
    let out = run.join().unwrap().expect("steady pipeline finishes");
    seeker.set_state(gst::State::Null).unwrap();
    assert!(
        out[0].len() >= 40,
        "every frame of the steady stream: {}",
        out[0].len()
    );
    assert!((3..=6).contains(&out[1].len()), "{}", out[1].len());
    assert!(out[0].iter().filter(|f| !f.1.is_empty()).count() * 2 > out[0].len());
    // PTS in order, untouched.
    assert!(out[0].windows(2).all(|w| w[0].0 < w[1].0));
    // 40 frames on 2 cores take seconds; a stall would take the batch timeout per frame at
    // least, or forever.
    assert!(t.elapsed() < Duration::from_secs(200), "{:?}", t.elapsed());
}

/// On a GPU host with NVDEC (scripts/gpu/multistream-bench.sh runs it): frames the decoder
/// leaves in CUDA memory, letterboxed on the GPU without a trip to the host, give the same
/// detections as the same frames downloaded to system memory.
#[test]
#[ignore = "needs an NVIDIA GPU with NVDEC and the nvcodec plugin; GST_YOLO_TEST_H264 names a clip"]
fn nvdec_cuda_memory_gives_the_detections_of_system_memory() {
    let clip = std::env::var("GST_YOLO_TEST_H264").expect("GST_YOLO_TEST_H264: an H.264 MP4");
    let m = model_arg("yolov8n.onnx");
    let run = |caps: &str| {
        let p = launch(&format!(
            "filesrc location=\"{clip}\" ! qtdemux ! h264parse ! nvh264dec ! {caps} ! identity eos-after=60 ! yolodetect execution-provider=cuda {m} ! appsink name=sink0"
        ));
        collect(&p, 1, Duration::from_secs(120)).unwrap().remove(0)
    };
    let cuda = run("video/x-raw(memory:CUDAMemory),format=NV12");
    let host = run("video/x-raw,format=NV12");
    assert!(cuda.len() >= 60, "{} frames", cuda.len());
    assert!(cuda.iter().map(|f| f.1.len()).sum::<usize>() >= 60);
    let p = same_frames("CUDA memory", &cuda, &host);
    assert!(p.is_empty(), "{}", p.join("\n"));
}
