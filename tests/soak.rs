// SPDX-License-Identifier: MPL-2.0
//! The short soak CI runs (scripts/soak.sh runs the long one): the `yolo-soak` example, built by
//! `cargo test`, in its own process, so that GStreamer's leaks tracer sees the whole life of the
//! elements: frames, model swaps while PLAYING and start/stop cycles, then `gst_deinit`. Fails on
//! any GStreamer object left alive, and on memory growth far past the soak's goals.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn soak_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // <target>/<profile>/deps/soak-<hash> -> <target>/<profile>/examples/yolo-soak
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("examples/yolo-soak");
    assert!(
        bin.is_file(),
        "{} missing: `cargo test` builds the examples",
        bin.display()
    );
    bin
}

/// yolov8n at `size` x `size`: the dynamic export with its imgsz metadata changed (same length,
/// so the file stays valid), to keep CI's run short.
fn small_model(size: u32) -> PathBuf {
    let data = std::fs::read(model("yolov8n-dynamic.onnx")).expect("dynamic model");
    let (old, new) = (b"[640, 640]".as_slice(), format!("[{size}, {size}]"));
    let at = data
        .windows(old.len())
        .position(|w| w == old)
        .expect("imgsz metadata");
    let mut out = data.clone();
    out[at..at + old.len()].copy_from_slice(new.as_bytes());
    let dir = std::env::temp_dir().join(format!("gst-yolo-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("yolov8n-{size}.onnx"));
    std::fs::write(&path, out).expect("write model");
    path
}

/// Runs one phase under the leaks tracer; returns (drift MiB, objects alive, output).
fn phase(args: &[&str], a: &std::path::Path, b: &std::path::Path) -> (f64, u64, String) {
    let out = Command::new(soak_bin())
        .args(args)
        .arg("--model")
        .arg(a)
        .arg("--alt")
        .arg(b)
        .arg("--deinit")
        .args(
            test_provider()
                .map(|p| vec!["--provider".to_string(), p])
                .unwrap_or_default(),
        )
        .env("GST_TRACERS", "leaks")
        .env("GST_DEBUG", "leaks:7")
        .env("GST_DEBUG_NO_COLOR", "1")
        .output()
        .expect("run yolo-soak");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "yolo-soak {args:?} failed:\n{text}");
    let drift = text
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("soak ")?;
            let d = rest.split(" drift ").nth(1)?;
            d.split_whitespace().next()?.parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("no drift line:\n{text}"));
    let alive = text
        .lines()
        .find_map(|l| {
            let rest = l.split("listed ").nth(1)?;
            rest.strip_suffix(" alive objects")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("the leaks tracer did not report:\n{text}"));
    (drift, alive, text)
}

#[test]
fn short_soak_leaks_nothing_and_stays_flat() {
    let (a, b) = (small_model(160), small_model(192));
    for (args, bound) in [
        (&["frames", "3000"][..], 8.0),
        (&["swaps", "50"][..], 16.0),
        (&["cycles", "50"][..], 16.0),
    ] {
        let (drift, alive, text) = phase(args, &a, &b);
        eprintln!(
            "{}",
            text.lines()
                .filter(|l| l.starts_with("soak ") || l.contains("alive objects"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(alive, 0, "{args:?}: GStreamer objects leaked:\n{text}");
        // Short runs are noisy (allocator warm-up): the goal itself is for scripts/soak.sh.
        assert!(
            drift < bound,
            "{args:?}: resident memory grew {drift} MiB after warm-up"
        );
    }
}
