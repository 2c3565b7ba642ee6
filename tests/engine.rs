// SPDX-License-Identifier: MPL-2.0
//! The engine's execution-provider paths with the real model: I/O binding against plain host
//! tensors, and what `tensorrt` and `auto` say where a provider cannot start. Runs on the CPU
//! provider by default; `GST_YOLO_TEST_PROVIDER=cuda` runs the binding test on a GPU.

mod common;

use gstyolo::engine::{Engine, EngineConfig, EngineError, EngineEvent, IoBindingMode, Provider};

fn provider() -> Provider {
    match common::test_provider().as_deref() {
        Some("cuda") => Provider::Cuda,
        Some("tensorrt") => Provider::TensorRt,
        _ => Provider::Cpu,
    }
}

/// A deterministic, image-like input (smooth gradients, not all padding).
fn input(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i % 640) as f32 / 640.0 + (i / 640 % 640) as f32 / 1280.0) % 1.0)
        .collect()
}

fn output(mode: IoBindingMode, cuda_graph: bool) -> (Option<bool>, Vec<i64>, Vec<f32>) {
    let mut cfg = EngineConfig::new(common::model("yolov8n.onnx"));
    cfg.provider = provider();
    cfg.io_binding = mode;
    cfg.cuda.cuda_graph = cuda_graph;
    let mut e = Engine::new(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let x = input(e.input_len());
    // Twice: the second run must not see the first one's data or buffers.
    e.run(&x, 1, |_, _| ()).unwrap();
    e.input_mut().copy_from_slice(&x);
    let (shape, data) = e.run_input(|s, d| (s.to_vec(), d.to_vec())).unwrap();
    (e.io_binding(), shape, data)
}

#[test]
fn bound_io_matches_host_tensors() {
    let (plain, shape_a, a) = output(IoBindingMode::Off, false);
    let mode = if provider() == Provider::Cpu {
        IoBindingMode::Always
    } else {
        IoBindingMode::Gpu
    };
    let (bound, shape_b, b) = output(mode, false);
    assert_eq!(plain, None);
    assert!(bound.is_some(), "binding not used");
    assert_eq!(shape_a, vec![1, 84, 8400]);
    assert_eq!(shape_a, shape_b);
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    // Same provider and options: the same maths, whatever memory it reads and writes.
    assert!(max <= 1e-3, "max difference {max}");
    if provider() == Provider::Cuda {
        let (_, _, g) = output(IoBindingMode::Gpu, true);
        let max = a
            .iter()
            .zip(&g)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(max <= 1e-3, "CUDA graph: max difference {max}");
    }
}

#[test]
fn tensorrt_without_tensorrt_says_what_is_missing() {
    if provider() != Provider::Cpu {
        return;
    }
    let mut cfg = EngineConfig::new(common::model("yolov8n.onnx"));
    cfg.provider = Provider::TensorRt;
    match Engine::new(&cfg) {
        Err(EngineError::Provider { provider, reason }) => {
            assert_eq!(provider, Provider::TensorRt);
            assert!(reason.contains("TensorRT"), "{reason}");
            assert!(reason.contains("execution-provider=cuda"), "{reason}");
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[test]
fn auto_says_why_it_passed_over_the_gpu_providers() {
    if provider() != Provider::Cpu {
        return;
    }
    let mut cfg = EngineConfig::new(common::model("yolov8n.onnx"));
    cfg.provider = Provider::Auto;
    let mut e = Engine::new(&cfg).unwrap();
    assert_eq!(e.provider(), Provider::Cpu);
    let skipped: Vec<Provider> = e.fallbacks().iter().map(|(p, _)| *p).collect();
    assert_eq!(skipped, [Provider::TensorRt, Provider::Cuda]);
    assert!(e.fallbacks()[0].1.contains("TensorRT"));
    // No TensorRT build was started, so nothing to report.
    assert!(e.poll().is_empty());
}

#[test]
#[ignore = "needs a GPU: run with GST_YOLO_TEST_PROVIDER=cuda and --ignored"]
fn cuda_graph_needs_static_shapes() {
    assert_eq!(
        provider(),
        Provider::Cuda,
        "set GST_YOLO_TEST_PROVIDER=cuda to run this GPU test"
    );
    let mut cfg = EngineConfig::new(common::model("yolov8n-dynamic.onnx"));
    cfg.provider = Provider::Cuda;
    cfg.cuda.cuda_graph = true;
    let e = Engine::new(&cfg).unwrap_err().to_string();
    assert!(e.contains("static shapes"), "{e}");
}

#[test]
fn background_build_switches_at_a_frame_boundary() {
    if provider() != Provider::Cpu {
        return;
    }
    let mut cfg = EngineConfig::new(common::model("yolov8n.onnx"));
    cfg.provider = Provider::Cpu;
    let mut e = Engine::new(&cfg).unwrap();
    let x = input(e.input_len());
    let before = e.run(&x, 1, |_, d| d.to_vec()).unwrap();
    // As `auto` does for TensorRT, here with a second CPU engine (one thread).
    cfg.num_threads = 1;
    e.rebuild_in_background(&cfg).unwrap();
    let mut events = e.poll();
    assert!(
        matches!(
            events.first(),
            Some(EngineEvent::TensorRtBuildStarted {
                serving: Provider::Cpu,
                ..
            })
        ),
        "{events:?}"
    );
    // Frames keep being served meanwhile.
    e.run(&x, 1, |_, _| ()).unwrap();
    events.extend(e.wait_for_upgrade(std::time::Duration::from_secs(120)));
    assert!(
        events.iter().any(|ev| matches!(
            ev,
            EngineEvent::Switched {
                from: Provider::Cpu,
                to: Provider::Cpu,
                ..
            }
        )),
        "{events:?}"
    );
    // The new engine runs, on its own input buffer, with the same results.
    e.input_mut().copy_from_slice(&x);
    let after = e.run_input(|_, d| d.to_vec()).unwrap();
    let max = before
        .iter()
        .zip(&after)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-3, "max difference {max}");
    assert!(e.poll().is_empty());
}
