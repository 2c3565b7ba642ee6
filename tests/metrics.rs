// SPDX-License-Identifier: MPL-2.0
//! The Prometheus endpoint, scraped with a real HTTP client while a pipeline runs the real model
//! on the real clip: counters move, histograms fill, the series go with the element.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

fn scrape(port: u16) -> String {
    ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .expect("scrape")
        .into_body()
        .read_to_string()
        .expect("body")
}

/// The value of the series `name{labels}` (labels exactly as printed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn prometheus_endpoint_counts_a_running_pipeline() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    // SAFETY: set before any other thread of this test binary exists (its only test); the
    // plugin reads it when it loads, in `init` below.
    unsafe { std::env::set_var("GST_YOLO_METRICS_ADDR", format!("127.0.0.1:{port}")) };
    init();

    let desc = with_test_provider(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! yolodetect name=det inference-interval=2 model=\"{}\" ! fakesink sync=false",
        media("video/bikes.mp4").display(),
        model("yolov8n.onnx").display()
    ));
    let pipeline = gst::parse::launch(&desc)
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    pipeline.set_property("name", "metrics-test");
    let el = r#"{element="/metrics-test/det"}"#;
    let frames = format!("yolo_frames_total{el}");

    // Nothing for this element before it starts.
    assert!(!scrape(port).contains("/metrics-test/det"));
    pipeline.set_state(gst::State::Playing).expect("playing");

    // While it plays: wait for some frames, then some more.
    let deadline = Instant::now() + Duration::from_secs(120);
    let during = loop {
        let text = scrape(port);
        if value(&text, &frames).unwrap_or(0.0) >= 6.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "no frames counted: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let later = loop {
        let text = scrape(port);
        if value(&text, &frames) > value(&during, &frames) {
            break text;
        }
        assert!(Instant::now() < deadline, "the frame counter does not move");
        std::thread::sleep(Duration::from_millis(100));
    };
    pipeline.set_state(gst::State::Null).ok();

    for text in [&during, &later] {
        let frames = value(text, &frames).unwrap();
        let inferred = value(text, &format!("yolo_inferences_total{el}")).unwrap();
        let skipped = value(
            text,
            r#"yolo_skipped_frames_total{element="/metrics-test/det",reason="interval"}"#,
        )
        .unwrap();
        // inference-interval=2: every other frame skipped, and every frame counted once.
        assert_eq!(inferred + skipped, frames, "{text}");
        assert!((inferred - skipped).abs() <= 1.0, "{text}");
        let infer_count = value(
            text,
            r#"yolo_stage_duration_seconds_count{element="/metrics-test/det",stage="infer"}"#,
        )
        .unwrap();
        assert_eq!(infer_count, inferred, "one infer time per inference");
        let infer_sum = value(
            text,
            r#"yolo_stage_duration_seconds_sum{element="/metrics-test/det",stage="infer"}"#,
        )
        .unwrap();
        assert!(infer_sum > 0.0, "inference takes time: {infer_sum}");
        let provider = test_provider().unwrap_or_else(|| "cpu".into());
        assert_eq!(
            value(
                text,
                &format!(
                    r#"yolo_active_provider{{element="/metrics-test/det",provider="{provider}"}}"#
                )
            ),
            Some(1.0)
        );
        assert_eq!(value(text, &format!("yolo_errors_total{el}")), Some(0.0));
        assert_eq!(
            value(text, &format!("yolo_model_swaps_total{el}")),
            Some(0.0)
        );
        // The element's private instance: one model run per inferred frame.
        let batches: f64 = text
            .lines()
            .filter(|l| l.starts_with("yolo_instance_batches_total{instance=\"private-"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(batches >= inferred, "instance batches: {text}");
    }
    assert!(
        value(&later, &format!("yolo_inferences_total{el}"))
            > value(&during, &format!("yolo_inferences_total{el}"))
    );
    assert!(later.contains("# TYPE yolo_stage_duration_seconds histogram"));

    // Stopped: its series are gone (pipelines made and dropped do not grow the registry).
    assert!(
        !scrape(port).contains("/metrics-test/det"),
        "series removed at stop"
    );
}
