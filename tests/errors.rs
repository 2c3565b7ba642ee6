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

/// Protobuf encoding, just enough to write a tiny ONNX model by hand.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
}
fn field_bytes(num: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(num << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}
fn field_int(num: u64, v: u64, out: &mut Vec<u8>) {
    varint(num << 3, out);
    varint(v, out);
}
/// ValueInfoProto for a float tensor of `dims`.
fn value_info(name: &str, dims: &[u64]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        field_int(1, *d, &mut dim); // dim_value
        field_bytes(1, &dim, &mut shape);
    }
    let mut tensor = Vec::new();
    field_int(1, 1, &mut tensor); // elem_type FLOAT
    field_bytes(2, &shape, &mut tensor);
    let mut ty = Vec::new();
    field_bytes(1, &tensor, &mut ty); // tensor_type
    let mut vi = Vec::new();
    field_bytes(1, name.as_bytes(), &mut vi);
    field_bytes(2, &ty, &mut vi);
    vi
}
/// An ONNX model with one Identity node from `x` to `y`.
fn identity_model(in_dims: &[u64]) -> Vec<u8> {
    let mut node = Vec::new();
    field_bytes(1, b"x", &mut node);
    field_bytes(2, b"y", &mut node);
    field_bytes(4, b"Identity", &mut node);
    let mut graph = Vec::new();
    field_bytes(1, &node, &mut graph);
    field_bytes(2, b"not_yolo", &mut graph);
    field_bytes(11, &value_info("x", in_dims), &mut graph);
    field_bytes(12, &value_info("y", in_dims), &mut graph);
    let mut opset = Vec::new();
    field_int(2, 13, &mut opset);
    let mut model = Vec::new();
    field_int(1, 8, &mut model); // ir_version
    field_bytes(7, &graph, &mut model);
    field_bytes(8, &opset, &mut model);
    model
}

#[test]
fn model_that_is_not_a_detector() {
    // Takes an image but its output is the image again: no YOLO head.
    let p = tmp("identity-image.onnx");
    std::fs::write(&p, identity_model(&[1, 3, 32, 32])).unwrap();
    let e = start_error(&format!("model=\"{}\"", p.display()));
    assert!(e.contains("not a supported YOLO detector"), "{e}");
    assert!(
        e.contains("[1, 3, 32, 32]") || e.contains("1, 3, 32, 32"),
        "{e}"
    );

    // Does not even take an image.
    let p = tmp("identity-vector.onnx");
    std::fs::write(&p, identity_model(&[1, 10])).unwrap();
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
    assert!(e.contains("3") && e.contains("80"), "{e}");
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
