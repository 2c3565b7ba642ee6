// SPDX-License-Identifier: MPL-2.0
//! Property-based fuzzing of everything that parses model-controlled input: the Ultralytics
//! metadata and label parsers, head-layout detection, and post-processing of arbitrary output
//! tensors (NaN, infinities, huge counts). The properties: no panic, and what comes out is sane.
//!
//! CI runs a fixed case set (`PROPTEST_RNG_SEED`, set in `.ci/run`); `scripts/fuzz.sh` runs
//! many more cases with a random seed.

use std::sync::Arc;

use gstyolo::labels::{parse_imgsz, parse_label_file, parse_names};
use gstyolo::postprocess::{HeadHints, HeadLayout, PostParams, Postprocessor};
use gstyolo::preprocess::Letterbox;
use proptest::prelude::*;

/// Strings made of the characters the parsers care about, so that cases get past the first
/// byte more often than uniform random text would.
fn pythonish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\[\\]{}(),:'\"\\\\ 0-9a-z\u{e9}\u{feff}\n-]{0,64}",
        // Near-valid dict literals.
        prop::collection::vec(("[0-9]{1,3}", "[a-z '\"\\\\]{0,8}"), 0..6).prop_map(|kv| {
            let items: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: '{v}'")).collect();
            format!("{{{}}}", items.join(", "))
        }),
    ]
}

/// Any f32, with NaN, infinities and extremes much more often than uniform bits give them.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => 0.0f32..1.0,
        2 => -1000.0f32..2000.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
        1 => Just(f32::MIN_POSITIVE),
        1 => any::<f32>(),
    ]
}

fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..100,
        2 => 80i64..9000,
        1 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(-1i64),
    ]
}

fn layout() -> impl Strategy<Value = HeadLayout> {
    let count = || {
        prop_oneof![
            8 => 0usize..40,
            1 => Just(usize::MAX),
            1 => Just(usize::MAX / 3),
            1 => any::<usize>(),
        ]
    };
    prop_oneof![
        (count(), count()).prop_map(|(num_classes, num_anchors)| HeadLayout::Anchors {
            num_classes,
            num_anchors
        }),
        (count(), count()).prop_map(|(num_classes, num_anchors)| {
            HeadLayout::AnchorsObjectness {
                num_classes,
                num_anchors,
            }
        }),
        count().prop_map(|max_detections| HeadLayout::EndToEnd { max_detections }),
    ]
}

proptest! {
    #[test]
    fn metadata_and_label_parsers_never_panic(s in pythonish()) {
        if let Some(names) = parse_names(&s) {
            prop_assert!(!names.is_empty());
        }
        if let Some((h, w)) = parse_imgsz(&s) {
            prop_assert!(h > 0 && w > 0);
        }
        if let Ok(labels) = parse_label_file(&s) {
            prop_assert!(!labels.is_empty());
            prop_assert!(labels.iter().all(|l| !l.is_empty() && l.trim() == l));
        }
    }

    #[test]
    fn names_round_trip(names in prop::collection::vec("[a-zA-Z0-9 _-]{1,12}", 1..20)) {
        let dict: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i}: '{n}'"))
            .collect();
        prop_assert_eq!(parse_names(&format!("{{{}}}", dict.join(", "))), Some(names));
    }

    #[test]
    fn head_detection_never_panics(
        shape in prop::collection::vec(dim(), 0..5),
        names in prop::option::of(prop_oneof![0usize..100, any::<usize>()]),
        w in prop_oneof![0u32..2000, any::<u32>()],
        h in prop_oneof![0u32..2000, any::<u32>()],
        stride in prop::option::of(prop_oneof![Just(32u32), Just(64), any::<u32>()]),
    ) {
        let hints = HeadHints { input: Some((w, h)), stride };
        for r in [HeadLayout::detect(&shape, names), HeadLayout::detect_with(&shape, names, &hints)] {
            match r {
                Ok(layout) => {
                    let _ = (layout.item_len(), layout.describe(), layout.num_classes());
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn filtered_roi_boxes_stay_in_the_region_and_limits(
        layout in layout(),
        data in prop::collection::vec(value(), 0..4000),
        conf in prop_oneof![0.0f32..1.0, Just(f32::NAN)],
        thresholds in prop::collection::vec((0u32..100, prop_oneof![0.0f32..1.0, Just(f32::NAN)]), 0..4),
        (min_w, min_h, max_w, max_h) in (0u32..300, 0u32..300, 0u32..3000, 0u32..3000),
        (frame_w, frame_h) in (1u32..5000, 1u32..5000),
        (x, y, w, h) in (0u32..6000, 0u32..6000, 1u32..6000, 1u32..6000),
        (dst_w, dst_h) in (1u32..1300, 1u32..1300),
    ) {
        let table = gstyolo::filters::threshold_table(&thresholds);
        let size = gstyolo::filters::SizeLimits { min_w, min_h, max_w, max_h };
        let params = PostParams {
            conf_threshold: conf,
            class_thresholds: &table,
            size,
            ..PostParams::default()
        };
        let roi = gstyolo::preprocess::Rect { x, y, w, h };
        let Some(rect) = roi.clip(frame_w, frame_h) else {
            return Ok(());
        };
        let lb = Letterbox::of_rect(frame_w, frame_h, rect, dst_w, dst_h);
        let mut out = Vec::new();
        Postprocessor::new().run(&layout, &data, &params, &lb, &[], &mut out);
        for d in &out {
            let (rx2, ry2) = ((rect.x + rect.w) as f32, (rect.y + rect.h) as f32);
            prop_assert!(d.x1 >= rect.x as f32 && d.x2 <= rx2, "{d:?} {rect:?}");
            prop_assert!(d.y1 >= rect.y as f32 && d.y2 <= ry2, "{d:?} {rect:?}");
            prop_assert!(size.allows(d.x2 - d.x1, d.y2 - d.y1), "{d:?} {size:?}");
            let own = gstyolo::filters::class_threshold(&table, conf, d.class_id);
            prop_assert!(d.confidence > own, "{d:?} under {own}");
        }
    }

    #[test]
    fn postprocessing_arbitrary_tensors_never_panics(
        layout in layout(),
        data in prop::collection::vec(value(), 0..4000),
        conf in prop_oneof![0.0f32..1.0, Just(f32::NAN), Just(-1.0f32)],
        iou in prop_oneof![0.0f32..1.0, Just(f32::NAN)],
        agnostic in any::<bool>(),
        max_detections in prop_oneof![0usize..400, Just(usize::MAX)],
        classes in prop::collection::vec(any::<u32>(), 0..3),
        (src_w, src_h) in (1u32..5000, 1u32..5000),
        (dst_w, dst_h) in (1u32..1300, 1u32..1300),
        nlabels in 0usize..100,
    ) {
        let labels: Vec<Arc<str>> = (0..nlabels).map(|i| Arc::from(format!("l{i}"))).collect();
        let params = PostParams {
            conf_threshold: conf,
            iou_threshold: iou,
            agnostic,
            max_detections,
            classes: &classes,
            ..PostParams::default()
        };
        let lb = Letterbox::new(src_w, src_h, dst_w, dst_h);
        let mut out = Vec::new();
        let mut post = Postprocessor::new();
        // Twice: buffers kept from the first call must not confuse the second.
        for _ in 0..2 {
            post.run(&layout, &data, &params, &lb, &labels, &mut out);
            prop_assert!(out.len() <= max_detections);
            for d in &out {
                prop_assert!(d.confidence.is_finite(), "{d:?}");
                for v in [d.x1, d.y1, d.x2, d.y2] {
                    prop_assert!(v.is_finite(), "{d:?}");
                }
                prop_assert!(d.x1 >= 0.0 && d.x2 <= src_w as f32, "{d:?}");
                prop_assert!(d.y1 >= 0.0 && d.y2 <= src_h as f32, "{d:?}");
            }
        }
    }
}
