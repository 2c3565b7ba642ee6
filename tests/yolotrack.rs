// SPDX-License-Identifier: MPL-2.0
//! yolotrack: the ByteTrack maths against Ultralytics' own tracker on the same detections, and
//! the element with the real model on bikes.mp4.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use gst::prelude::*;
use gstyolo::bytetrack::ByteTracker;
use gstyolo::detection::Detection;

fn data(name: &str) -> serde_json::Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// The stored detections (our pipeline's output on bikes.mp4), one list per frame.
fn stored_detections() -> Vec<Vec<Detection>> {
    let v = data("bikes-detections.json");
    v["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            f.as_array()
                .expect("frame")
                .iter()
                .map(|d| {
                    let n = |i: usize| d[i].as_f64().expect("number") as f32;
                    Detection {
                        class_id: d[0].as_u64().expect("class_id") as u32,
                        label: Arc::from("object"),
                        confidence: n(1),
                        x1: n(2),
                        y1: n(3),
                        x2: n(4),
                        y2: n(5),
                        track_id: None,
                    }
                })
                .collect()
        })
        .collect()
}

/// (frame, detection index) -> track id.
type Tracks = HashMap<(usize, usize), u64>;

/// Share of tracked boxes on which two trackers agree, under the one-to-one renaming of ids
/// that agrees most (greedy on co-occurrence counts); boxes only one side tracks count as
/// disagreements. Returns (agreement, boxes compared).
fn id_agreement(a: &Tracks, b: &Tracks) -> (f64, usize) {
    let mut pairs: HashMap<(u64, u64), usize> = HashMap::new();
    for (k, ia) in a {
        if let Some(ib) = b.get(k) {
            *pairs.entry((*ia, *ib)).or_default() += 1;
        }
    }
    let mut counts: Vec<_> = pairs.into_iter().collect();
    counts.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    let (mut used_a, mut used_b) = (HashSet::new(), HashSet::new());
    let mut agree = 0;
    for ((ia, ib), n) in counts {
        if !used_a.contains(&ia) && !used_b.contains(&ib) {
            used_a.insert(ia);
            used_b.insert(ib);
            agree += n;
        }
    }
    let keys: HashSet<_> = a.keys().chain(b.keys()).collect();
    (agree as f64 / keys.len().max(1) as f64, keys.len())
}

#[test]
fn id_agreement_counts_renaming_and_switches() {
    let a: Tracks = [((0, 0), 1), ((1, 0), 1), ((2, 0), 1), ((3, 0), 1)].into();
    let renamed: Tracks = [((0, 0), 9), ((1, 0), 9), ((2, 0), 9), ((3, 0), 9)].into();
    assert_eq!(id_agreement(&a, &renamed), (1.0, 4));
    let switched: Tracks = [((0, 0), 9), ((1, 0), 9), ((2, 0), 5), ((3, 0), 5)].into();
    assert_eq!(id_agreement(&a, &switched).0, 0.5);
    let extra: Tracks = [
        ((0, 0), 1),
        ((1, 0), 1),
        ((2, 0), 1),
        ((3, 0), 1),
        ((3, 1), 2),
    ]
    .into();
    assert_eq!(id_agreement(&a, &extra), (0.8, 5));
}

/// Our tracker fed the stored detections gives Ultralytics' tracks (stored by
/// scripts/track-reference.py from the same detections) on >= 99% of the tracked boxes.
#[test]
fn matches_ultralytics_bytetrack() {
    let frames = stored_detections();
    let reference = data("bikes-tracks-ultralytics.json");
    let ref_frames = reference["frames"].as_array().expect("frames");
    assert_eq!(
        ref_frames.len(),
        frames.len(),
        "one reference entry per frame"
    );

    let mut theirs = Tracks::new();
    for (f, fr) in ref_frames.iter().enumerate() {
        for pair in fr.as_array().expect("frame") {
            let idx = pair[0].as_u64().expect("index") as usize;
            let id = pair[1].as_u64().expect("id");
            theirs.insert((f, idx), id);
        }
    }
    let mut ours = Tracks::new();
    let mut tracker = ByteTracker::default();
    for (f, dets) in frames.iter().enumerate() {
        for (idx, id) in tracker.update(dets).into_iter().enumerate() {
            if let Some(id) = id {
                ours.insert((f, idx), id);
            }
        }
    }
    assert!(theirs.len() > 500, "reference too small: {}", theirs.len());
    let (agreement, n) = id_agreement(&theirs, &ours);
    println!(
        "id agreement with Ultralytics: {:.2}% of {n} tracked boxes ({} ours, {} theirs); ids identical: {}",
        agreement * 100.0,
        ours.len(),
        theirs.len(),
        ours == theirs
    );
    assert!(agreement >= 0.99, "id agreement {agreement:.4} < 0.99");
}

/// Each frame's tracked detections from `yolodetect ! yolotrack` on the first 100 frames.
fn track_bikes() -> Vec<(gst::Buffer, Vec<Detection>)> {
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! identity eos-after=100 ! \
         yolodetect model=\"{}\" conf-threshold=0.1 ! yolotrack ! appsink name=sink",
        common::media("video/bikes.mp4").display(),
        common::model("yolov8n.onnx").display()
    );
    common::run_pipeline(&desc).unwrap_or_else(|e| panic!("{desc}: {e}"))
}

/// Ids are present, unique within a frame, follow the same object from frame to frame, and are
/// exactly what the tracker gives for the same detections; the ROI metas carry them too.
#[test]
fn pipeline_ids_are_stable() {
    let frames = track_bikes();
    // identity may let a few more frames through before the EOS reaches the sink.
    assert!(frames.len() >= 100, "{} frames", frames.len());
    let tracked: usize = frames
        .iter()
        .map(|(_, d)| d.iter().filter(|d| d.track_id.is_some()).count())
        .sum();
    assert!(tracked > 100, "only {tracked} tracked detections");

    // The element's ids are the tracker's for the same detections.
    let mut tracker = ByteTracker::default();
    for (f, (_, dets)) in frames.iter().enumerate() {
        let untracked: Vec<Detection> = dets
            .iter()
            .map(|d| Detection {
                track_id: None,
                ..d.clone()
            })
            .collect();
        let want = tracker.update(&untracked);
        let got: Vec<_> = dets.iter().map(|d| d.track_id).collect();
        assert_eq!(got, want, "frame {f}");
    }

    // Per id, the longest run of consecutive frames in which its box overlaps the previous
    // frame's box (IoU >= 0.5): a clearly visible object keeps its id the whole time.
    let mut last: HashMap<u64, (usize, [f32; 4], usize)> = HashMap::new();
    let mut best = (0, 0);
    for (f, (buf, dets)) in frames.iter().enumerate() {
        let mut seen = HashSet::new();
        for d in dets {
            let Some(id) = d.track_id else { continue };
            assert!(seen.insert(id), "frame {f}: id {id} twice");
            let run = match last.get(&id) {
                Some(&(pf, pb, run)) if pf + 1 == f && common::iou(pb, d.bbox()) >= 0.5 => run + 1,
                _ => 1,
            };
            last.insert(id, (f, d.bbox(), run));
            if run > best.1 {
                best = (id, run);
            }
        }
        // ROI metas: each tracked detection's ROI carries its id.
        for roi in buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>() {
            let i = usize::try_from(roi.id()).expect("ROI id is the detection index");
            let s = roi.param("detection").expect("detection structure");
            let got = s
                .get_optional::<u64>("track_id")
                .expect("track_id is a guint64");
            assert_eq!(got, dets[i].track_id, "frame {f} ROI {i}");
        }
    }
    println!("longest stable id: {} over {} frames", best.0, best.1);
    // 29 frames (a car) on CPU; margin for other execution providers.
    assert!(
        best.1 >= 20,
        "no id stable over 20 consecutive frames: best {best:?}"
    );
}

#[test]
fn properties_have_bytetrack_defaults() {
    common::init();
    let e = gst::ElementFactory::make("yolotrack")
        .build()
        .expect("yolotrack");
    assert_eq!(e.property::<f32>("track-high-thresh"), 0.25);
    assert_eq!(e.property::<f32>("track-low-thresh"), 0.1);
    assert_eq!(e.property::<f32>("new-track-thresh"), 0.25);
    assert_eq!(e.property::<u32>("track-buffer"), 30);
    assert_eq!(e.property::<f32>("match-thresh"), 0.8);
    assert!(e.property::<bool>("fuse-score"));
    assert_eq!(e.property::<f64>("frame-rate"), 30.0);
}

/// Buffers without detections pass through untouched.
#[test]
fn buffers_without_meta_pass() {
    let frames = common::run_pipeline(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! yolotrack ! appsink name=sink",
    )
    .expect("pipeline");
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|(_, d)| d.is_empty()));
}
