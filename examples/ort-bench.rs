// SPDX-License-Identifier: MPL-2.0
//! The floor yolodetect is measured against: ONNX Runtime's `run` alone, in a loop, on a
//! pre-made input tensor, through `gstyolo::engine::Engine` (so the library, thread count and
//! session options are yolodetect's own by construction). No GStreamer.
//!
//! ```text
//! cargo run --release --example ort-bench -- [--model PATH] [--threads N] [--iters N]
//!     [--warmup N] [--prepost [--i420 FRAME]]
//! ```
//! `--prepost` also runs yolodetect's pre-processing (a 1920x1080 I420 frame: raw from FRAME,
//! else a synthetic one) and
//! post-processing around each run and counts heap allocations inside them after the first
//! frames: steady state must allocate nothing.
//!
//! Prints a human line and a `BENCH {json}` line (ms per run: p50, p90, p99; fps at the median).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gstyolo::detection::Detection;
use gstyolo::engine::{Engine, EngineConfig};
use gstyolo::frame::{FrameRef, PixelLayout, Plane, YuvColor, YuvMatrix};
use gstyolo::postprocess::{PostParams, Postprocessor};
use gstyolo::preprocess::Preprocessor;
use gstyolo::stats::percentile;

/// Counts allocations so `--prepost` can show the steady state allocates nothing.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

struct Args {
    model: PathBuf,
    threads: usize,
    iters: usize,
    warmup: usize,
    prepost: bool,
    i420: Option<PathBuf>,
    label: String,
}

fn default_model() -> PathBuf {
    std::env::var_os("GST_YOLO_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("GST_YOLO_SHARED")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
                .join("models/yolov8n.onnx")
        })
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: default_model(),
        threads: 0,
        iters: 100,
        warmup: 5,
        prepost: false,
        i420: None,
        label: "ort-raw".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--model" => a.model = PathBuf::from(val()?),
            "--threads" => a.threads = val()?.parse().map_err(|_| "--threads takes a number")?,
            "--iters" => a.iters = val()?.parse().map_err(|_| "--iters takes a number")?,
            "--warmup" => a.warmup = val()?.parse().map_err(|_| "--warmup takes a number")?,
            "--label" => a.label = val()?,
            "--prepost" => a.prepost = true,
            "--i420" => a.i420 = Some(PathBuf::from(val()?)),
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    a.iters = a.iters.max(1);
    Ok(a)
}

/// A deterministic, image-like input in [0, 1] (inference time does not depend on content).
fn input_tensor(len: usize) -> Vec<f32> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((x >> 16) & 0xff) as f32 / 255.0
        })
        .collect()
}

fn summary(ms: &mut [f64]) -> (f64, f64, f64) {
    ms.sort_unstable_by(f64::total_cmp);
    (
        percentile(ms, 50.0),
        percentile(ms, 90.0),
        percentile(ms, 99.0),
    )
}

fn run(a: Args) -> Result<(), String> {
    let mut cfg = EngineConfig::new(&a.model);
    cfg.num_threads = a.threads;
    let mut engine = Engine::new(&cfg).map_err(|e| e.to_string())?;
    let input = input_tensor(engine.input_len());
    let mut sink = 0.0f32;
    for _ in 0..a.warmup {
        sink += engine
            .run(&input, 1, |_, d| d[0])
            .map_err(|e| e.to_string())?;
    }
    let mut ms = Vec::with_capacity(a.iters);
    for _ in 0..a.iters {
        let t = Instant::now();
        sink += engine
            .run(&input, 1, |_, d| d[0])
            .map_err(|e| e.to_string())?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    std::hint::black_box(sink);
    let (p50, p90, p99) = summary(&mut ms);
    let threads = if a.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        a.threads
    };
    println!(
        "{}: {} runs, {} threads, {}: p50 {p50:.2} ms p90 {p90:.2} ms p99 {p99:.2} ms ({:.2} fps at p50)",
        a.label,
        a.iters,
        threads,
        a.model.display(),
        1000.0 / p50
    );
    println!(
        "BENCH {{\"name\": \"{}\", \"runs\": {}, \"threads\": {threads}, \"p50_ms\": {p50:.3}, \"p90_ms\": {p90:.3}, \"p99_ms\": {p99:.3}}}",
        a.label, a.iters
    );
    if a.prepost {
        prepost(&mut engine, a.iters.min(50), a.i420.as_deref())?;
    }
    Ok(())
}

/// Pre- and post-processing around real runs on a synthetic 1080p I420 frame; counts the heap
/// allocations made inside pre and post once the first frames have sized the buffers.
fn prepost(engine: &mut Engine, iters: usize, i420: Option<&Path>) -> Result<(), String> {
    let (w, h) = (1920usize, 1080usize);
    let (y, u, v) = match i420 {
        Some(p) => {
            let raw = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if raw.len() < w * h * 3 / 2 {
                return Err(format!("{} is not a 1920x1080 I420 frame", p.display()));
            }
            let (y, uv) = raw.split_at(w * h);
            let (u, v) = uv.split_at(w * h / 4);
            (y.to_vec(), u.to_vec(), v[..w * h / 4].to_vec())
        }
        None => (
            (0..w * h).map(|i| ((i % w) * 255 / w) as u8).collect(),
            vec![100u8; w * h / 4],
            vec![150u8; w * h / 4],
        ),
    };
    let frame = FrameRef {
        layout: PixelLayout::I420,
        width: w as u32,
        height: h as u32,
        planes: [
            Plane {
                data: &y,
                stride: w,
            },
            Plane {
                data: &u,
                stride: w / 2,
            },
            Plane {
                data: &v,
                stride: w / 2,
            },
        ],
        color: YuvColor {
            matrix: YuvMatrix::Bt709,
            full_range: false,
        },
    };
    let (iw, ih) = (engine.info().input_width, engine.info().input_height);
    let head = engine.info().head;
    let labels: Vec<Arc<str>> = engine
        .info()
        .names
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(Arc::from)
        .collect();
    let mut pre = Preprocessor::new();
    let mut post = Postprocessor::new();
    let mut input = vec![0.0f32; engine.input_len()];
    let mut dets: Vec<Detection> = Vec::with_capacity(300);
    let params = PostParams {
        // Low threshold: many candidates, so NMS and its buffers are exercised.
        conf_threshold: 0.05,
        ..PostParams::default()
    };
    let (mut pre_allocs, mut post_allocs) = (0u64, 0u64);
    let (mut pre_ms, mut post_ms) = (Vec::new(), Vec::new());
    const WARM: usize = 3;
    for i in 0..iters + WARM {
        let a0 = allocs();
        let t0 = Instant::now();
        let lb = pre
            .run(&frame, iw, ih, &mut input)
            .map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        let a1 = allocs();
        let (a2, a3, t2, t3) = engine
            .run(&input, 1, |_, data| {
                let a2 = allocs();
                let t2 = Instant::now();
                post.run(&head, data, &params, &lb, &labels, &mut dets);
                (a2, allocs(), t2, Instant::now())
            })
            .map_err(|e| e.to_string())?;
        if i >= WARM {
            pre_allocs += a1 - a0;
            post_allocs += a3 - a2;
            pre_ms.push((t1 - t0).as_secs_f64() * 1000.0);
            post_ms.push((t3 - t2).as_secs_f64() * 1000.0);
        }
    }
    let (pre50, _, pre99) = summary(&mut pre_ms);
    let (post50, _, post99) = summary(&mut post_ms);
    println!(
        "pre/post steady state over {iters} frames (1920x1080 I420, {} detections at conf 0.05): \
         pre p50 {pre50:.2} ms p99 {pre99:.2} ms, {pre_allocs} allocations; post p50 {post50:.2} ms \
         p99 {post99:.2} ms, {post_allocs} allocations",
        dets.len()
    );
    println!(
        "BENCH {{\"name\": \"prepost-allocs\", \"frames\": {iters}, \"pre_allocs\": {pre_allocs}, \"post_allocs\": {post_allocs}, \"pre_p50_ms\": {pre50:.3}, \"post_p50_ms\": {post50:.3}}}"
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
