// SPDX-License-Identifier: MPL-2.0
//! yolometapublish: the JSON lines it writes (file, fd) and the messages it posts carry exactly
//! the detections the buffers' DetectionMeta carried, with the real model on bikes.mp4.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gstyolo::meta::{Detection, DetectionMeta};

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gst-yolo-{}-{name}", std::process::id()))
}

/// Runs `desc` (with an appsink named `sink`) to EOS; returns each buffer's detections and the
/// `yolo-detections` element messages posted on the bus, in order.
fn run(desc: &str) -> Result<(Vec<Vec<Detection>>, Vec<gst::Structure>), String> {
    common::init();
    let desc = common::with_test_provider(desc);
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("parse {desc}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("sink")
        .expect("appsink named sink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    sink.set_property("sync", false);
    let frames = Arc::new(Mutex::new(Vec::new()));
    let frames2 = frames.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                let dets = buf
                    .meta::<DetectionMeta>()
                    .map(|m| m.detections().to_vec())
                    .unwrap_or_default();
                frames2.lock().unwrap().push(dets);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    // Element messages are collected synchronously so none is missed before EOS.
    let messages = Arc::new(Mutex::new(Vec::new()));
    let messages2 = messages.clone();
    let bus = pipeline.bus().expect("bus");
    bus.set_sync_handler(move |_, msg| {
        if let gst::MessageView::Element(e) = msg.view()
            && let Some(s) = e.structure()
            && s.name() == "yolo-detections"
        {
            messages2.lock().unwrap().push(s.to_owned());
        }
        gst::BusSyncReply::Pass
    });
    let res = common::run_to_eos(&pipeline);
    pipeline.set_state(gst::State::Null).ok();
    res?;
    let frames = std::mem::take(&mut *frames.lock().unwrap());
    let messages = std::mem::take(&mut *messages.lock().unwrap());
    Ok((frames, messages))
}

fn bikes(publish: &str) -> String {
    format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! identity eos-after=30 ! \
         yolodetect model=\"{}\" ! yolotrack ! yolometapublish {publish} ! appsink name=sink",
        common::media("video/bikes.mp4").display(),
        common::model("yolov8n.onnx").display()
    )
}

/// Checks the JSON lines against the detections the buffers carried, frame by frame.
fn check_lines(text: &str, frames: &[Vec<Detection>]) {
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), frames.len(), "one line per frame");
    let mut total = 0;
    let mut tracked = 0;
    for (f, (line, dets)) in lines.iter().zip(frames).enumerate() {
        assert_eq!(line["frame"].as_u64(), Some(f as u64));
        assert_eq!(
            (line["width"].as_u64(), line["height"].as_u64()),
            (Some(640), Some(272))
        );
        assert!(
            line["pts_ns"].as_u64().is_some(),
            "frame {f} has a timestamp"
        );
        let got = line["detections"].as_array().expect("detections array");
        assert_eq!(got.len(), dets.len(), "frame {f}");
        for (g, d) in got.iter().zip(dets) {
            assert_eq!(g["class_id"].as_u64(), Some(d.class_id as u64), "frame {f}");
            assert_eq!(g["label"].as_str(), Some(&*d.label), "frame {f}");
            let conf = g["confidence"].as_f64().expect("confidence");
            assert!(
                (conf - d.confidence as f64).abs() <= 5e-5,
                "frame {f}: {conf} vs {d:?}"
            );
            let b = g["box"].as_array().expect("box");
            for (v, want) in b.iter().zip(d.bbox()) {
                let v = v.as_f64().expect("coordinate");
                assert!(
                    (v - want as f64).abs() <= 0.05 + 1e-6,
                    "frame {f}: {b:?} vs {d:?}"
                );
            }
            assert_eq!(g["track_id"].as_u64(), d.track_id, "frame {f}");
            tracked += usize::from(d.track_id.is_some());
        }
        total += dets.len();
    }
    assert!(total > 30, "only {total} detections in 30 frames");
    assert!(tracked > 10, "only {tracked} tracked detections");
}

#[test]
fn writes_json_lines_and_posts_messages() {
    let path = temp_path("bikes.jsonl");
    let (frames, messages) = run(&bikes(&format!(
        "location=\"{}\" post-messages=true",
        path.display()
    )))
    .expect("pipeline");
    assert!(frames.len() >= 30, "{} frames", frames.len());
    let text = std::fs::read_to_string(&path).expect("output file");
    let _ = std::fs::remove_file(&path);
    check_lines(&text, &frames);

    // One message per frame, carrying the same line and the detections as structures.
    assert_eq!(messages.len(), frames.len());
    for (f, (m, (line, dets))) in messages.iter().zip(text.lines().zip(&frames)).enumerate() {
        assert_eq!(m.get::<u64>("frame").ok(), Some(f as u64));
        assert_eq!(m.get::<&str>("json").ok(), Some(line));
        assert!(m.get::<gst::ClockTime>("timestamp").is_ok());
        let list = m.get::<gst::List>("detections").expect("detections list");
        assert_eq!(list.len(), dets.len(), "frame {f}");
        for (v, d) in list.iter().zip(dets) {
            let s = v.get::<gst::Structure>().expect("detection structure");
            assert_eq!(s.get::<&str>("label").ok(), Some(&*d.label));
            assert_eq!(s.get::<u32>("class-id").ok(), Some(d.class_id));
            assert_eq!(s.get::<f64>("x1").ok(), Some(d.x1 as f64));
            assert_eq!(s.get_optional::<u64>("track-id").ok().flatten(), d.track_id);
        }
    }
}

#[test]
fn writes_to_a_file_descriptor() {
    use std::os::fd::AsRawFd;
    let path = temp_path("fd.jsonl");
    let file = std::fs::File::create(&path).expect("create");
    let (frames, messages) = run(&bikes(&format!("fd={}", file.as_raw_fd()))).expect("pipeline");
    assert!(messages.is_empty(), "no messages unless asked");
    // The element wrote through its own duplicate; ours is still open and usable.
    drop(file);
    let text = std::fs::read_to_string(&path).expect("output file");
    let _ = std::fs::remove_file(&path);
    check_lines(&text, &frames);
}

#[test]
fn bad_outputs_are_clear_errors() {
    let src = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! yolometapublish";
    for (props, expect) in [
        ("", "nothing to publish to"),
        ("location=x.jsonl fd=1", "are both set"),
        ("location=\"\"", "location is empty"),
        (
            "location=/nonexistent-dir/x.jsonl",
            "cannot create /nonexistent-dir/x.jsonl",
        ),
        ("fd=987654", "cannot use file descriptor 987654"),
    ] {
        let desc = format!("{src} {props} ! appsink name=sink");
        let err = run(&desc).expect_err(&desc);
        assert!(err.contains(expect), "{desc}: {err}");
    }
}

/// Without detections the lines still come, one per frame, with an empty list.
#[test]
fn frames_without_detections_still_get_a_line() {
    let path = temp_path("empty.jsonl");
    let (frames, _) = run(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! yolometapublish location=\"{}\" ! appsink name=sink",
        path.display()
    ))
    .expect("pipeline");
    let text = std::fs::read_to_string(&path).expect("output file");
    let _ = std::fs::remove_file(&path);
    assert_eq!(frames.len(), 3);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[2].starts_with("{\"frame\": 2, \"pts_ns\": "));
    assert!(lines[2].ends_with("\"width\": 64, \"height\": 48, \"detections\": []}"));
}
