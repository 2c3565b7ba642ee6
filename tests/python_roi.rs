// SPDX-License-Identifier: MPL-2.0
//! What README.md promises Python users: a PyGObject application that loads the built plugin
//! reads every detection from `GstVideoRegionOfInterestMeta` (tests/roi_reader.py), and those
//! detections are the reference ones for bus.png.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use gstyolo::meta::Detection;

/// Debian's interpreter: python3-gi is installed for it, not for a pyenv or venv python.
const PYTHON: &str = "/usr/bin/python3";

#[test]
fn python_reads_roi_metas_of_bus() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/roi_reader.py");
    let png = media("png/bus.png");
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg(model("yolov8n.onnx"))
        .arg(&png)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON}: {e} (scripts/install-deps.sh installs python3-gi)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "roi_reader.py failed ({}):\n{}{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );

    let r = reference("yolov8n-images.json");
    let img = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|i| i["png"] == "png/bus.png")
        .expect("bus.png in the reference");
    let reference = ref_dets(&img["detections"]);
    let class_names: std::collections::HashMap<u64, &str> = img["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .filter_map(|d| Some((d["class_id"].as_u64()?, d["class"].as_str()?)))
        .collect();

    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let mut dets = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let num = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
        let (w, h) = (num("width"), num("height"));
        assert_eq!((w, h), (810.0, 1080.0), "bus.png's size");
        assert_eq!(num("id") as usize, i, "ROI ids number the detections");
        // The normalised box, scaled back to pixels, is what the reference gives.
        let d = Detection {
            class_id: num("label_id") as u32,
            label: r["label"].as_str().expect("label").into(),
            confidence: num("confidence") as f32,
            x1: (num("x_min") * w) as f32,
            y1: (num("y_min") * h) as f32,
            x2: (num("x_max") * w) as f32,
            y2: (num("y_max") * h) as f32,
            track_id: None,
        };
        // The ROI rectangle is the same box in whole pixels.
        let roi: Vec<f64> = r["roi"]
            .as_array()
            .expect("roi")
            .iter()
            .map(|v| v.as_f64().expect("roi value"))
            .collect();
        let roi_box = [
            roi[0] as f32,
            roi[1] as f32,
            (roi[0] + roi[2]) as f32,
            (roi[1] + roi[3]) as f32,
        ];
        assert!(
            iou(roi_box, d.bbox()) > 0.98,
            "ROI {roi:?} disagrees with its detection parameters {d:?}"
        );
        if let Some(name) = class_names.get(&u64::from(d.class_id)) {
            assert_eq!(&*d.label, *name, "the ROI type is the class name");
        }
        dets.push(d);
    }

    assert!(
        dets.len() >= 4,
        "expected the bus and its passengers, got {dets:?}"
    );
    let problems = compare("bus.png via Python ROI metas", &dets, &reference, EXACT);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
