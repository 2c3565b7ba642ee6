// SPDX-License-Identifier: MPL-2.0
//! Input that must not crash or hang the host process: each test here failed (crashed, hung or
//! passed silently) before the fix it names.

mod common;

use std::sync::Arc;

use common::*;
use gst::prelude::*;
use gstyolo::meta::{Detection, DetectionMeta};

fn model_arg(name: &str) -> String {
    format!("model=\"{}\"", model(name).display())
}

/// Pushes `buf` with `caps` through `element` (a gst-launch fragment) and returns the bus
/// error's text, or `Ok` at EOS.
fn push_one(element: &str, caps: &str, buf: gst::Buffer) -> Result<(), String> {
    init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src caps=\"{caps}\" format=time ! {element} ! fakesink"
    ))
    .map_err(|e| e.to_string())?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline".to_string())?;
    let src = pipeline
        .by_name("src")
        .and_then(|s| s.downcast::<gst_app::AppSrc>().ok())
        .ok_or("no appsrc")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let _ = src.push_buffer(buf);
    let _ = src.end_of_stream();
    let bus = pipeline.bus().ok_or("no bus")?;
    let res = match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(m) if m.type_() == gst::MessageType::Error => Err(error_text(&m)),
        Some(_) => Ok(()),
        None => Err("timed out".into()),
    };
    pipeline.set_state(gst::State::Null).ok();
    res
}

/// A 48x64 RGB buffer (9216 bytes) whose `GstVideoMeta` claims a 16 MiB stride.
fn lying_stride_buffer(with_detection: bool) -> gst::Buffer {
    init();
    let mut buf = gst::Buffer::from_mut_slice(vec![0u8; 48 * 64 * 3]);
    {
        let b = buf.get_mut().expect("fresh buffer is writable");
        gst_video::VideoMeta::add_full(
            b,
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::Rgb,
            48,
            64,
            &[0],
            &[16 << 20],
        )
        .expect("add video meta");
        if with_detection {
            let d = Detection {
                class_id: 0,
                label: Arc::from("person"),
                confidence: 0.9,
                x1: 2.0,
                y1: 2.0,
                x2: 40.0,
                y2: 60.0,
                track_id: None,
            };
            DetectionMeta::add(b, vec![d], (640, 640));
        }
    }
    buf
}

const RGB_48X64: &str = "video/x-raw,format=RGB,width=48,height=64,framerate=30/1";

#[test]
fn video_meta_stride_past_the_buffer_is_an_error_not_a_crash() {
    let e = push_one(
        &format!("yolodetect {}", model_arg("yolov8n.onnx")),
        RGB_48X64,
        lying_stride_buffer(false),
    )
    .expect_err("yolodetect must refuse the frame");
    assert!(e.contains("stride 16777216"), "{e}");

    let e = push_one("yolooverlay", RGB_48X64, lying_stride_buffer(true))
        .expect_err("yolooverlay must refuse the frame");
    assert!(e.contains("stride 16777216"), "{e}");
}

/// Runs one frame through `yolodetect {props}` and returns the bus error's text.
fn start_error(props: &str) -> String {
    let desc = format!("videotestsrc num-buffers=1 ! yolodetect {props} ! appsink name=sink");
    match run_pipeline(&desc) {
        Ok(_) => panic!("{desc} should fail"),
        Err(e) => e,
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gst-yolo-hardening-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn label_file_that_is_a_device_or_fifo_is_refused() {
    // /dev/zero used to be read until memory ran out; a FIFO blocked the state change forever.
    let e = start_error(&format!(
        "{} label-file=/dev/zero",
        model_arg("yolov8n.onnx")
    ));
    assert!(
        e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
    let fifo = tmp("labels.fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let e = start_error(&format!(
        "{} label-file=\"{}\"",
        model_arg("yolov8n.onnx"),
        fifo.display()
    ));
    assert!(e.contains("not a regular file"), "{e}");
}

/// yolov8n-dynamic.onnx with its `imgsz` metadata entry replaced by `imgsz`.
fn dynamic_model_with_imgsz(imgsz: &str) -> Vec<u8> {
    let bytes = std::fs::read(model("yolov8n-dynamic.onnx")).expect("dynamic model");
    // ModelProto.metadata_props (field 14) entry {key: "imgsz", value: "[640, 640]"}.
    let old = b"r\x13\n\x05imgsz\x12\x0a[640, 640]";
    let at = bytes
        .windows(old.len())
        .position(|w| w == old)
        .expect("imgsz metadata entry");
    let mut entry = vec![b'\n', 5];
    entry.extend_from_slice(b"imgsz");
    entry.extend_from_slice(&[0x12, imgsz.len() as u8]);
    entry.extend_from_slice(imgsz.as_bytes());
    assert!(entry.len() < 128 && imgsz.len() < 128);
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&[b'r', entry.len() as u8]);
    out.extend_from_slice(&entry);
    out.extend_from_slice(&bytes[at + old.len()..]);
    out
}

#[test]
fn huge_model_input_is_an_error_not_an_abort() {
    // 3 x 200000 x 200000 floats: the input buffers used to abort the process.
    let p = tmp("huge-imgsz.onnx");
    std::fs::write(&p, dynamic_model_with_imgsz("[200000, 200000]")).expect("write model");
    let e = start_error(&format!("model=\"{}\"", p.display()));
    assert!(
        e.contains("200000x200000") && e.contains("8192") && e.contains("huge-imgsz.onnx"),
        "{e}"
    );
    // The same file with a sane size still works: the patch itself is not what fails.
    let p = tmp("small-imgsz.onnx");
    std::fs::write(&p, dynamic_model_with_imgsz("[320, 320]")).expect("write model");
    let frames = run_pipeline(&format!(
        "videotestsrc num-buffers=1 ! yolodetect model=\"{}\" ! appsink name=sink",
        p.display()
    ))
    .expect("a 320x320 dynamic model runs");
    assert_eq!(frames.len(), 1);
}

#[test]
fn model_path_that_is_a_directory_says_so() {
    let dir = tmp("a-directory.onnx");
    std::fs::create_dir_all(&dir).expect("dir");
    let e = start_error(&format!("model=\"{}\"", dir.display()));
    assert!(e.contains("is a directory"), "{e}");
    assert!(!e.contains("does not exist"), "{e}");
}

#[test]
fn model_with_wrong_input_type_names_model_and_type() {
    // Used to start and then fail every frame as "inference failed".
    let p = tmp("uint8-input.onnx");
    std::fs::write(&p, onnx::identity_model(onnx::UINT8, &[1, 3, 32, 32])).expect("write");
    let e = start_error(&format!("model=\"{}\"", p.display()));
    assert!(
        e.contains("uint8-input.onnx") && e.contains("u8") && e.contains("float32"),
        "{e}"
    );
}

#[test]
fn classes_accept_names_and_refuse_unknown_values_at_start() {
    let png = media("png/bus.png");
    let by_id = detect_image(
        &png,
        "pngdec",
        "RGB",
        &format!("{} classes=0,5", model_arg("yolov8n.onnx")),
    );
    let by_name = detect_image(
        &png,
        "pngdec",
        "RGB",
        &format!("{} classes=\"person, bus\"", model_arg("yolov8n.onnx")),
    );
    assert!(by_id.iter().any(|d| d.class_id == 0) && by_id.iter().any(|d| d.class_id == 5));
    assert!(by_id.iter().all(|d| d.class_id == 0 || d.class_id == 5));
    assert_eq!(by_id, by_name);

    // Used to be ignored without a word (filter off), or to silently remove everything.
    for (value, says) in [
        ("abc", "`abc` is neither a class id nor"),
        ("persn", "`persn`"),
        ("99999", "no class 99999"),
    ] {
        let e = start_error(&format!(
            "{} classes=\"{value}\"",
            model_arg("yolov8n.onnx")
        ));
        assert!(e.contains(says) && e.contains("80"), "{value}: {e}");
    }
}

/// A live 30 fps pipeline through yolodetect, in PLAYING.
fn live_pipeline(props: &str) -> (gst::Pipeline, gst::Element) {
    init();
    let p = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=RGB,width=320,height=240,framerate=30/1 \
         ! yolodetect name=d {} {props} ! fakesink sync=true",
        model_arg("yolov8n.onnx")
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let d = p.by_name("d").expect("yolodetect");
    p.set_state(gst::State::Playing).expect("playing");
    let bus = p.bus().expect("bus");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::AsyncDone, gst::MessageType::Error],
    );
    assert!(
        msg.is_some_and(|m| m.type_() == gst::MessageType::AsyncDone),
        "pipeline did not preroll"
    );
    (p, d)
}

#[test]
fn pipelined_mode_reports_its_two_frames_of_latency() {
    let latency = |props: &str| {
        let (p, _) = live_pipeline(props);
        let mut q = gst::query::Latency::new();
        assert!(p.query(&mut q), "latency query");
        p.set_state(gst::State::Null).ok();
        q.result().1
    };
    let plain = latency("");
    let piped = latency("pipelined=true");
    // Two frames at 30 fps, on top of whatever the rest of the pipeline reports.
    let two_frames = gst::ClockTime::from_nseconds(66_666_667);
    assert_eq!(
        piped,
        plain + two_frames,
        "plain {plain}, pipelined {piped}"
    );
}

#[test]
fn ready_only_properties_are_refused_while_playing() {
    let (p, d) = live_pipeline("");
    // Toggling pipelined while PLAYING used to reorder buffers (PTS going backwards).
    d.set_property("pipelined", true);
    d.set_property("gpu-preprocess", false);
    assert!(!d.property::<bool>("pipelined"));
    assert!(d.property::<bool>("gpu-preprocess"));
    // Each refusal is a warning on the bus naming the property.
    let bus = p.bus().expect("bus");
    let mut warned = Vec::new();
    while let Some(m) = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(2),
        &[gst::MessageType::Warning],
    ) {
        if let gst::MessageView::Warning(w) = m.view() {
            warned.push(w.error().to_string());
        }
        if warned.len() == 2 {
            break;
        }
    }
    assert!(
        warned[..].iter().any(|w| w.contains("pipelined"))
            && warned.iter().any(|w| w.contains("gpu-preprocess")),
        "{warned:?}"
    );
    // Thresholds stay changeable while PLAYING.
    d.set_property("conf-threshold", 0.6f32);
    assert_eq!(d.property::<f32>("conf-threshold"), 0.6);
    p.set_state(gst::State::Null).ok();
    // And READY-only ones are changeable again once stopped.
    d.set_property("pipelined", true);
    assert!(d.property::<bool>("pipelined"));
}

#[test]
fn caps_change_mid_stream_in_size_and_format() {
    let png = media("png/bus.png");
    let (rgb_caps, rgb) = decoded_frame(&png, "pngdec", "format=RGB");
    let (nv12_caps, nv12) = decoded_frame(&png, "pngdec", "format=NV12,width=405,height=540");
    // What a fresh pipeline sees at each caps.
    let fresh = |caps: &gst::Caps, buf: &gst::Buffer| {
        let mut s = FrameStepper::new(&format!("yolodetect {}", model_arg("yolov8n.onnx")));
        let d = s.step(caps, buf);
        s.finish();
        d
    };
    let want_rgb = fresh(&rgb_caps, &rgb);
    let want_nv12 = fresh(&nv12_caps, &nv12);
    assert!(want_nv12.iter().any(|d| d.class_id == 5), "{want_nv12:?}");
    // Full-size RGB matches the reference exactly.
    let r = reference("yolov8n-images.json");
    let bus = r["results"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["image"] == "images/bus.jpg"))
        .expect("bus.jpg in the reference");
    let p = compare("bus RGB", &want_rgb, &ref_dets(&bus["detections"]), EXACT);
    assert!(p.is_empty(), "{}", p.join("\n"));

    // One stream: RGB 810x1080, NV12 405x540, back to RGB; each side as a fresh start.
    let mut s = FrameStepper::new(&format!("yolodetect {}", model_arg("yolov8n.onnx")));
    assert_eq!(s.step(&rgb_caps, &rgb), want_rgb);
    assert_eq!(s.step(&nv12_caps, &nv12), want_nv12);
    for d in &want_nv12 {
        assert!(d.x2 <= 405.0 && d.y2 <= 540.0, "{d:?}");
    }
    assert_eq!(s.step(&rgb_caps, &rgb), want_rgb);
    s.finish();
}

#[test]
fn flushing_seek_then_detections_match_the_reference() {
    init();
    let r = reference("yolov8n-bikes.json");
    let video = &r["videos"][0];
    let desc = with_test_provider(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! yolodetect {} ! appsink name=sink sync=false max-buffers=2",
        media("video/bikes.mp4").display(),
        model_arg("yolov8n.onnx")
    ));
    let pipeline = gst::parse::launch(&desc)
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .expect("appsink");
    pipeline.set_state(gst::State::Paused).expect("paused");
    let first = sink
        .try_pull_preroll(gst::ClockTime::from_seconds(60))
        .expect("preroll");
    let caps = first.caps().expect("caps");
    let fps = gst_video::VideoInfo::from_caps(caps)
        .expect("video caps")
        .fps();
    assert!(fps.numer() > 0, "{caps}");
    // Seeks and frame positions are in stream time: bikes.mp4's frame 0 has PTS 80 ms and
    // stream time 0 (its edit list).
    let frame_time = |n: u64| {
        gst::ClockTime::SECOND
            .mul_div_round(n * fps.denom() as u64, fps.numer() as u64)
            .expect("frame time")
    };
    let stream_time = |s: &gst::Sample| {
        let seg = s.segment()?.downcast_ref::<gst::ClockTime>()?.clone();
        seg.to_stream_time(s.buffer()?.pts()?)
    };
    assert_eq!(stream_time(&first), Some(gst::ClockTime::ZERO));
    // Forward, then back: each flushing, accurate seek lands on frame n, detected as the
    // reference detects it.
    for n in [150u64, 100] {
        pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                frame_time(n),
            )
            .expect("seek");
        let sample = sink
            .try_pull_preroll(gst::ClockTime::from_seconds(60))
            .expect("a frame after the seek");
        let buf = sample.buffer().expect("buffer");
        let at = stream_time(&sample).expect("stream time");
        let half = frame_time(1) / 2;
        assert!(
            at + half >= frame_time(n) && at <= frame_time(n) + half,
            "seek to frame {n}: got stream time {at}, want {}",
            frame_time(n)
        );
        let dets = buf
            .meta::<DetectionMeta>()
            .map(|m| m.detections().to_vec())
            .unwrap_or_default();
        let want = video["frames"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["frame"].as_u64() == Some(n)))
            .expect("reference frame");
        assert!(!dets.is_empty());
        let p = compare(
            &format!("frame {n}"),
            &dets,
            &ref_dets(&want["detections"]),
            DECODED,
        );
        assert!(p.is_empty(), "{}", p.join("\n"));
    }
    // And it keeps streaming from there.
    pipeline.set_state(gst::State::Playing).expect("playing");
    let next = sink
        .try_pull_sample(gst::ClockTime::from_seconds(60))
        .expect("frames after the seek");
    assert!(stream_time(&next) >= Some(frame_time(100)));
    pipeline.set_state(gst::State::Null).ok();
}

#[test]
fn two_hundred_null_playing_null_cycles() {
    init();
    let pipeline = gst::parse::launch(&with_test_provider(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! yolodetect {} ! fakesink",
        model_arg("yolov8n.onnx")
    )))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let bus = pipeline.bus().expect("bus");
    for i in 0..200 {
        pipeline.set_state(gst::State::Playing).expect("playing");
        let m = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        match m {
            Some(m) if m.type_() == gst::MessageType::Eos => {}
            Some(m) => panic!("cycle {i}: {}", error_text(&m)),
            None => panic!("cycle {i}: no EOS"),
        }
        pipeline.set_state(gst::State::Null).expect("null");
    }
}

#[test]
fn four_pipelines_in_one_process() {
    let png = media("png/bus.png");
    let alone = detect_image(
        &png,
        "pngdec",
        "RGB",
        &format!("num-threads=1 {}", model_arg("yolov8n.onnx")),
    );
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let png = png.clone();
            std::thread::spawn(move || {
                let desc = format!(
                    "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format=RGB ! imagefreeze num-buffers=5 ! yolodetect num-threads=1 {} ! appsink name=sink",
                    png.display(),
                    model_arg("yolov8n.onnx")
                );
                run_pipeline(&desc).unwrap_or_else(|e| panic!("pipeline {i}: {e}"))
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let frames = t.join().expect("pipeline thread");
        assert_eq!(frames.len(), 5, "pipeline {i}");
        for (_, dets) in &frames {
            assert_eq!(dets, &alone, "pipeline {i}");
        }
    }
}

#[test]
fn small_input_exports_are_recognised_from_their_metadata() {
    // yolov8n at 32x32 outputs [1, 84, 21] (read as YOLOv5 with 16 classes: a class-count
    // error) and at 64x64 [1, 84, 84] (called ambiguous): both failed to start.
    for side in [32, 64] {
        let p = tmp(&format!("imgsz-{side}.onnx"));
        std::fs::write(&p, dynamic_model_with_imgsz(&format!("[{side}, {side}]")))
            .expect("write model");
        let png = media("png/bus.png");
        let desc = format!(
            "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format=RGB ! yolodetect model=\"{}\" conf-threshold=0.01 ! appsink name=sink",
            png.display(),
            p.display()
        );
        let frames = run_pipeline(&desc).unwrap_or_else(|e| panic!("{side}x{side}: {e}"));
        assert_eq!(frames.len(), 1);
        for d in &frames[0].1 {
            assert!(d.class_id < 80 && d.x2 <= 810.0 && d.y2 <= 1080.0, "{d:?}");
        }
    }
}
