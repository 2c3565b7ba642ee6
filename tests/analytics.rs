// SPDX-License-Identifier: MPL-2.0
//! GstAnalyticsRelationMeta (feature `v1_24`, GStreamer >= 1.24): yolodetect's object-detection
//! mtds against the reference detections and its own `DetectionMeta`, and yolotrack's tracking
//! mtds related to them, with the real model. Run by `scripts/test-gst-versions.sh trixie`
//! (GStreamer 1.26); upstream's reader side is `scripts/analytics-interop.sh`.
#![cfg(feature = "v1_24")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use gstyolo::analytics::{pixel_box, relation};
use gstyolo::detection::Detection;

fn model_arg(name: &str) -> String {
    format!("model=\"{}\"", model(name).display())
}

/// The object-detection mtds of `buf` as detections, class ids looked up by label.
fn mtd_detections(buf: &gst::BufferRef, class_ids: &HashMap<String, u32>) -> Vec<Detection> {
    relation::detections(buf)
        .into_iter()
        .map(|c| Detection {
            class_id: class_ids[&c.label],
            label: Arc::from(c.label.as_str()),
            confidence: c.confidence,
            x1: c.x as f32,
            y1: c.y as f32,
            x2: (c.x + c.w) as f32,
            y2: (c.y + c.h) as f32,
            track_id: None,
        })
        .collect()
}

/// bus.png's mtds are the reference detections (exact-pixel tier, boxes rounded to whole
/// pixels), one per `DetectionMeta` detection with its label, confidence and box.
#[test]
fn detections_become_object_detection_mtds() {
    let png = media("png/bus.png");
    let desc = format!(
        "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format=RGB ! yolodetect {} ! appsink name=sink",
        png.display(),
        model_arg("yolov8n.onnx")
    );
    let frames = run_pipeline(&desc).unwrap_or_else(|e| panic!("{desc}: {e}"));
    assert_eq!(frames.len(), 1);
    let (buf, dets) = &frames[0];
    assert!(dets.len() >= 4, "bus.png: {} detections", dets.len());

    let mtds = relation::detections(buf);
    assert_eq!(
        mtds.len(),
        dets.len(),
        "one object-detection mtd per detection"
    );
    for (m, d) in mtds.iter().zip(dets) {
        assert_eq!(m.label, &*d.label);
        assert_eq!(m.confidence, d.confidence);
        assert_eq!((m.x, m.y, m.w, m.h), pixel_box(d));
    }

    let class_ids: HashMap<String, u32> = dets
        .iter()
        .map(|d| (d.label.to_string(), d.class_id))
        .collect();
    let from_mtds = mtd_detections(buf, &class_ids);
    let reference = reference("yolov8n-images.json");
    let bus = reference["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["png"].as_str() == Some("png/bus.png"))
        .expect("bus.png in the reference");
    // Whole-pixel boxes lose at most half a pixel per edge: the exact tier (IoU >= 0.95) holds.
    let problems = compare("mtds", &from_mtds, &ref_dets(&bus["detections"]), EXACT);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// On bikes.mp4, every tracked detection's object-detection mtd has one related tracking mtd
/// with its track id, last seen at the buffer's time and first seen when the track started.
#[test]
fn tracks_are_related_to_object_detection_mtds() {
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! identity eos-after=60 ! \
         yolodetect {} conf-threshold=0.1 ! yolotrack ! appsink name=sink",
        media("video/bikes.mp4").display(),
        model_arg("yolov8n.onnx")
    );
    let frames = run_pipeline(&desc).unwrap_or_else(|e| panic!("{desc}: {e}"));
    assert!(frames.len() >= 60, "{} frames", frames.len());

    let mut first_seen: HashMap<u64, gst::ClockTime> = HashMap::new();
    let mut related = 0;
    for (buf, dets) in &frames {
        let pts = buf.pts().expect("decoded frames have timestamps");
        let mtds = relation::detections(buf);
        assert_eq!(mtds.len(), dets.len());
        for (m, d) in mtds.iter().zip(dets) {
            let tracks = relation::tracks_of(buf, m.id);
            match d.track_id {
                None => assert!(tracks.is_empty(), "untracked detection with a tracking mtd"),
                Some(id) => {
                    assert_eq!(tracks.len(), 1, "one tracking mtd per tracked detection");
                    let (tid, first, last) = tracks[0];
                    assert_eq!(tid, id);
                    assert_eq!(last, pts, "last seen is this frame");
                    assert!(first <= last);
                    let f = *first_seen.entry(id).or_insert(first);
                    assert_eq!(f, first, "track {id}: first seen changed");
                    related += 1;
                }
            }
        }
    }
    // Tracks that started after the first frame prove first_seen is not just the stream start.
    let start = frames[0].0.pts().expect("pts");
    let later = first_seen.values().filter(|t| **t > start).count();
    assert!(
        related >= 100,
        "{related} tracked detections with a tracking mtd"
    );
    assert!(later >= 1, "no track started after the first frame");
}
