// SPDX-License-Identifier: MPL-2.0
//! yolodetect's `stats` property and its periodic `yolodetect-stats` element message, with the
//! real model.

mod common;

use common::*;
use gst::prelude::*;

const STAGES: [&str; 6] = ["pre", "infer", "post", "meta", "added", "total"];

/// Runs `frames` test frames through yolodetect; returns the element and the stats messages.
fn run(frames: u32, interval_ms: u32) -> (gst::Element, Vec<gst::Structure>) {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,width=320,height=240 ! \
         yolodetect name=d model=\"{}\" stats-interval={interval_ms} ! fakesink",
        model("yolov8n.onnx").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let det = pipeline.by_name("d").unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut msgs = Vec::new();
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(_) => panic!("{}", error_text(&msg)),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == "yolodetect-stats") {
                    msgs.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (det, msgs)
}

fn check_fields(s: &gst::StructureRef, frames: u64) {
    assert_eq!(s.name(), "yolodetect-stats");
    assert_eq!(s.get::<u64>("frames").unwrap(), frames);
    assert_eq!(s.get::<String>("execution-provider").unwrap(), "cpu");
    assert!(s.get::<f64>("fps").unwrap() > 0.0);
    for st in STAGES {
        let p50 = s.get::<f64>(&format!("{st}-p50-ms")).unwrap();
        let p99 = s.get::<f64>(&format!("{st}-p99-ms")).unwrap();
        assert!(p50 >= 0.0 && p99 >= p50, "{st}: p50 {p50} p99 {p99}");
    }
    let total = s.get::<f64>("total-p50-ms").unwrap();
    assert!(s.get::<f64>("infer-p50-ms").unwrap() > 0.0);
    assert!(s.get::<f64>("added-p50-ms").unwrap() < total);
}

#[test]
fn stats_property_after_a_stream() {
    let (det, msgs) = run(5, 0);
    assert!(msgs.is_empty(), "stats-interval 0 posts no messages");
    assert_eq!(det.property::<u32>("stats-interval"), 0);
    // Still readable after the element stopped: the last stream's figures.
    let s = det.property::<gst::Structure>("stats");
    check_fields(&s, 5);
    assert_eq!(s.get::<u32>("window").unwrap(), 5);
}

#[test]
fn stats_messages_are_periodic() {
    let (_, msgs) = run(6, 1);
    assert!(!msgs.is_empty(), "no yolodetect-stats message");
    // Frames count up, and each message has every field.
    let counts: Vec<u64> = msgs.iter().map(|s| s.get("frames").unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    let last = msgs.last().unwrap();
    check_fields(last, *counts.last().unwrap());
}

#[test]
fn stats_before_start_are_empty() {
    init();
    let det = gst::ElementFactory::make("yolodetect").build().unwrap();
    let s = det.property::<gst::Structure>("stats");
    assert_eq!(s.get::<u64>("frames").unwrap(), 0);
    assert_eq!(s.get::<f64>("fps").unwrap(), 0.0);
}
