// SPDX-License-Identifier: MPL-2.0
//! Measures what yolooverlay's drawing costs per frame: `draw::draw_detections` on a 1920x1080
//! RGBx, I420 and NV12 frame with 50 detections (labels and confidence on, automatic line width
//! and font size), the work yolooverlay does inside `transform_ip` after mapping the buffer.
//! No pipeline: the frames are plain memory, so the numbers hold the drawing alone.
//!
//! ```text
//! cargo run --release --example overlay-cost -- [iterations (default 500)]
//! ```
//! Prints one line per format, a format the benchmark script parses:
//! `overlay <format> 1920x1080 50 boxes: p50 X.XXX ms p99 Y.YYY ms`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstyolo::detection::Detection;
use gstyolo::draw::{DrawStyle, draw_detections};
use gstyolo::frame::{FrameMut, PixelLayout, PlaneMut, YuvColor, YuvMatrix};

const W: usize = 1920;
const H: usize = 1080;
const BOXES: usize = 50;
const WARM_UP: usize = 20;

/// 50 boxes of 40 to 440 px spread over the frame, some past its edges, with COCO-like labels;
/// a fixed-seed generator keeps runs comparable.
fn detections() -> Vec<Detection> {
    const LABELS: [&str; 8] = [
        "person",
        "bicycle",
        "car",
        "motorcycle",
        "bus",
        "traffic light",
        "dog",
        "backpack",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n) as f32
    };
    (0..BOXES)
        .map(|i| {
            let (w, h) = (40.0 + next(400), 40.0 + next(400));
            let (x, y) = (next(W as u64) - 20.0, next(H as u64) - 20.0);
            Detection {
                class_id: (i * 7 % 80) as u32,
                label: Arc::from(LABELS[i % LABELS.len()]),
                confidence: 0.25 + next(75) / 100.0,
                x1: x,
                y1: y,
                x2: x + w,
                y2: y + h,
                track_id: None,
            }
        })
        .collect()
}

/// The planes of a frame of `layout` with GStreamer's default strides, in one allocation each.
fn planes(layout: PixelLayout) -> Vec<(Vec<u8>, usize)> {
    let plane = |stride: usize, rows: usize| (vec![128u8; stride * rows], stride);
    match layout {
        PixelLayout::I420 => vec![plane(W, H), plane(W / 2, H / 2), plane(W / 2, H / 2)],
        PixelLayout::Nv12 => vec![plane(W, H), plane(W, H / 2)],
        _ => vec![plane(W * 4, H)],
    }
}

fn measure(layout: PixelLayout, dets: &[Detection], iterations: usize) -> (Duration, Duration) {
    let mut planes = planes(layout);
    let style = DrawStyle::default();
    let color = YuvColor {
        matrix: YuvMatrix::Bt709,
        full_range: false,
    };
    let mut times = Vec::with_capacity(iterations);
    for i in 0..WARM_UP + iterations {
        let mut it = planes.iter_mut().map(|(data, stride)| PlaneMut {
            data: data.as_mut_slice(),
            stride: *stride,
        });
        let empty = || PlaneMut {
            data: &mut [],
            stride: 0,
        };
        let mut frame = FrameMut {
            layout,
            width: W as u32,
            height: H as u32,
            planes: [
                it.next().unwrap_or_else(empty),
                it.next().unwrap_or_else(empty),
                it.next().unwrap_or_else(empty),
            ],
            color,
        };
        let t = Instant::now();
        draw_detections(&mut frame, dets, &style);
        let dt = t.elapsed();
        if i >= WARM_UP {
            times.push(dt);
        }
    }
    times.sort_unstable();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    (pct(50), pct(99))
}

fn main() -> ExitCode {
    let iterations = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 500,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: overlay-cost [iterations (default 500)]");
            return ExitCode::FAILURE;
        }
    };
    let dets = detections();
    for (name, layout) in [
        ("RGBx", PixelLayout::Rgbx),
        ("I420", PixelLayout::I420),
        ("NV12", PixelLayout::Nv12),
    ] {
        let (p50, p99) = measure(layout, &dets, iterations);
        println!(
            "overlay {name} {W}x{H} {BOXES} boxes: p50 {:.3} ms p99 {:.3} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    ExitCode::SUCCESS
}
