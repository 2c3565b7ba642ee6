// SPDX-License-Identifier: MPL-2.0
//! Bad input gives an error on the bus that names the problem, and no crash.

mod common;

use common::*;

fn start_error(extra: &str) -> String {
    let desc = format!("videotestsrc num-buffers=1 ! yolodetect {extra} ! appsink name=sink");
    match run_pipeline(&desc) {
        Ok(_) => panic!("{desc} should fail"),
        Err(e) => e,
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gst-yolo-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn no_model_property() {
    let e = start_error("");
    assert!(e.contains("no model set"), "{e}");
}

#[test]
fn missing_model_file() {
    let e = start_error("model=/nonexistent/yolo.onnx");
    assert!(
        e.contains("/nonexistent/yolo.onnx") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn truncated_model_file() {
    let bytes = std::fs::read(model("yolov8n.onnx")).unwrap();
    let p = tmp("truncated.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
    let e = start_error(&format!("model=\"{}\"", p.display()));
    assert!(e.contains("could not load model"), "{e}");
}

#[test]
fn model_that_is_not_a_detector() {
    // Takes an image but its output is the image again: no YOLO head.
    let p = tmp("identity-image.onnx");
    std::fs::write(&p, onnx::identity_model(onnx::FLOAT, &[1, 3, 32, 32])).unwrap();
    let e = start_error(&format!("model=\"{}\"", p.display()));
    assert!(e.contains("not a supported YOLO detector"), "{e}");
    assert!(
        e.contains("[1, 3, 32, 32]") || e.contains("1, 3, 32, 32"),
        "{e}"
    );

    // Does not even take an image.
    let p = tmp("identity-vector.onnx");
    std::fs::write(&p, onnx::identity_model(onnx::FLOAT, &[1, 10])).unwrap();
    let e = start_error(&format!("model=\"{}\"", p.display()));
    assert!(
        e.contains("not a YOLO detector") && e.contains("[B, 3, H, W]"),
        "{e}"
    );
}

#[test]
fn empty_label_file() {
    let p = tmp("empty.txt");
    std::fs::write(&p, "").unwrap();
    let e = start_error(&format!(
        "model=\"{}\" label-file=\"{}\"",
        model("yolov8n.onnx").display(),
        p.display()
    ));
    assert!(
        e.contains("empty.txt") && e.to_lowercase().contains("label"),
        "{e}"
    );
}

#[test]
fn too_short_label_file() {
    let p = tmp("short.txt");
    std::fs::write(&p, "person\nbicycle\ncar\n").unwrap();
    let e = start_error(&format!(
        "model=\"{}\" label-file=\"{}\"",
        model("yolov8n.onnx").display(),
        p.display()
    ));
    // The message names both counts (a bare "3" would also match any path or number).
    assert!(
        e.contains("name 3 classes") && e.contains("outputs 80"),
        "{e}"
    );
}

#[test]
fn missing_label_file() {
    let e = start_error(&format!(
        "model=\"{}\" label-file=/nonexistent/labels.txt",
        model("yolov8n.onnx").display()
    ));
    assert!(e.contains("/nonexistent/labels.txt"), "{e}");
}

#[test]
fn gpu_provider_without_gpu_build_is_an_error() {
    let e = start_error(&format!(
        "model=\"{}\" execution-provider=cuda",
        model("yolov8n.onnx").display()
    ));
    assert!(
        e.contains("cuda") && e.contains("CUDAExecutionProvider"),
        "{e}"
    );
}

#[test]
fn auto_provider_falls_back_to_cpu() {
    init();
    use gst::prelude::*;
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! yolodetect name=d execution-provider=auto model=\"{}\" ! fakesink",
        model("yolov8n.onnx").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    run_to_eos(&pipeline).unwrap();
    let d = pipeline.by_name("d").unwrap();
    assert_eq!(d.property::<String>("active-provider"), "cpu");
    pipeline.set_state(gst::State::Null).unwrap();
}

/// ONNX Runtime is loaded once per process, so the missing-library case runs in a child
/// process of this test binary with ORT_DYLIB_PATH pointing nowhere.
#[test]
fn missing_onnx_runtime_library() {
    if std::env::var_os("GST_YOLO_TEST_CHILD").is_some() {
        let e = start_error(&format!("model=\"{}\"", model("yolov8n.onnx").display()));
        println!("CHILD-ERROR: {}", e.replace('\n', " "));
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "missing_onnx_runtime_library",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GST_YOLO_TEST_CHILD", "1")
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("CHILD-ERROR"))
        .expect("child ran");
    assert!(
        line.contains("could not load the ONNX Runtime library"),
        "{line}"
    );
    assert!(line.contains("/nonexistent/libonnxruntime.so.1"), "{line}");
    assert!(line.contains("install-onnxruntime.sh"), "{line}");
}
