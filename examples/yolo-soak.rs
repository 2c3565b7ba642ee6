// SPDX-License-Identifier: MPL-2.0
//! Memory soak: runs yolodetect for a long time in one process and prints how its resident
//! memory (and, on a GPU, the device's) moves after warm-up. `scripts/soak.sh` runs every
//! phase with the sizes BENCHMARKS.md reports; `tests/soak.rs` runs short ones in CI under
//! GStreamer's leaks tracer.
//!
//! ```text
//! yolo-soak frames N    [--model M]           N frames through one pipeline
//! yolo-soak swaps N     [--model M --alt M2]  N model swaps while PLAYING (M, M2, M, ...)
//! yolo-soak cycles N    [--model M]           N NULL-PLAYING-NULL cycles of one pipeline
//! yolo-soak parallel P N [--model M]          P pipelines of N frames each, at once
//! yolo-soak engines N   [--model M]           N engines (session + I/O buffers + one run) made
//!                                             and dropped, without GStreamer
//! yolo-soak sessions N  [--model M]           N bare ONNX Runtime sessions made and dropped
//! yolo-soak sessions-run N [--model M]        the same, each run once with ONNX Runtime's API
//!     [--provider cpu|cuda] [--deinit]  (--deinit: gst::deinit at the end, for the leaks tracer)
//! With --provider cuda the samples include the GPU's memory in use.
//! ```
//! Pipelines are `videotestsrc ! 320x240 I420 ! yolodetect ! fakesink`. Each phase ends with
//! one line `soak <phase>: ... drift <MiB> MiB ...`: the floor of resident memory (lowest sample)
//! over the last 10% of the run minus that over the 10% after the first 10% (warm-up).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// GPU memory in use (MiB) when `--provider cuda`: the device-wide figure (one process on a
/// dedicated GPU: ours).
static GPU: std::sync::OnceLock<Option<gstyolo::engine::cuda::GpuLetterbox>> =
    std::sync::OnceLock::new();

fn gpu_mib() -> Option<f64> {
    let g = GPU.get()?.as_ref()?;
    g.memory_used()
        .ok()
        .map(|(used, _)| used as f64 / 1048576.0)
}

/// Resident memory samples over a run (and GPU memory, where measured).
#[derive(Default)]
struct Samples(Vec<f64>, Vec<f64>, usize);

impl Samples {
    fn take(&mut self) {
        self.0.push(rss_mib());
        if let Some(g) = gpu_mib() {
            self.1.push(g);
        }
    }

    /// (after warm-up, end, max after warm-up - min after warm-up), where "after warm-up" and
    /// "end" are a least-squares line through the samples after the first 10% (at least the
    /// first `.2`), at its two
    /// ends: a leak raises the line by what it leaked, while the allocator's ups and downs
    /// (a heap trim that happened to give back more, a sample taken mid-swap) average out.
    /// The lowest sample of the first and last tenth, used before, swung by +-12 MiB over
    /// 50 swaps of an unchanged build.
    fn drift(&self) -> (f64, f64, f64) {
        let v = &self.0;
        if v.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        let warm = &v[(v.len() / 10).max(self.2).min(v.len() - 1)..];
        let max = warm.iter().copied().fold(f64::MIN, f64::max);
        let min = warm.iter().copied().fold(f64::MAX, f64::min);
        let n = warm.len() as f64;
        let mean_x = (n - 1.0) / 2.0;
        let mean_y = warm.iter().sum::<f64>() / n;
        let (sxy, sxx) = warm
            .iter()
            .enumerate()
            .fold((0.0, 0.0), |(sxy, sxx), (i, y)| {
                let dx = i as f64 - mean_x;
                (sxy + dx * (y - mean_y), sxx + dx * dx)
            });
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let first = mean_y - slope * mean_x;
        (first, first + slope * (n - 1.0), max - min)
    }

    fn report(&self, phase: &str, extra: &str) {
        if std::env::var_os("YOLO_SOAK_SAMPLES").is_some() {
            let v: Vec<String> = self.0.iter().map(|x| format!("{x:.1}")).collect();
            println!("samples {phase}: {}", v.join(" "));
        }
        let (warm, last, spread) = self.drift();
        let gpu = match (self.1.get(self.1.len() / 10), self.1.last()) {
            (Some(w), Some(l)) => format!(
                "; GPU memory start {:.0} MiB, after warm-up {w:.0} MiB, end {l:.0} MiB, gpu drift {:+.1} MiB",
                self.1[0],
                l - w
            ),
            _ => String::new(),
        };
        let extra = format!("{extra}{gpu}");
        println!(
            "soak {phase}: rss start {:.1} MiB, after warm-up {warm:.1} MiB, end {last:.1} MiB, \
             drift {:+.2} MiB (spread {spread:.2} MiB over {} samples){extra}",
            self.0.first().copied().unwrap_or(f64::NAN),
            last - warm,
            self.0.len()
        );
    }
}

struct Opts {
    model: PathBuf,
    alt: Option<PathBuf>,
    provider: String,
}

fn pipeline(o: &Opts, frames: Option<u64>, name: &str) -> Result<gst::Pipeline, String> {
    let n = frames.map_or(String::new(), |n| format!("num-buffers={n}"));
    let desc = format!(
        "videotestsrc {n} pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! yolodetect name=det execution-provider={} model=\"{}\" ! fakesink name=sink sync=false",
        o.provider,
        o.model.display()
    );
    let p = gst::parse::launch(&desc)
        .map_err(|e| format!("{desc}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    p.set_property("name", name);
    Ok(p)
}

/// Counts buffers reaching the sink; calls `every(count)` each `step` buffers.
fn count_frames(p: &gst::Pipeline, step: u64, every: impl Fn(u64) + Send + Sync + 'static) {
    let pad = p
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .expect("sink pad");
    let n = std::sync::atomic::AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let c = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if c.is_multiple_of(step) {
            every(c);
        }
        gst::PadProbeReturn::Ok
    });
}

fn wait(p: &gst::Pipeline, what: &[&str], timeout: Duration) -> Result<gst::Message, String> {
    let bus = p.bus().expect("bus");
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = bus
            .timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64))
            .ok_or_else(|| format!("timed out waiting for {what:?}"))?;
        match msg.view() {
            gst::MessageView::Error(e) => {
                return Err(format!("{} ({:?})", e.error(), e.debug()));
            }
            gst::MessageView::Eos(_) if what.contains(&"eos") => return Ok(msg),
            gst::MessageView::Warning(w) => return Err(format!("warning: {}", w.error())),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && what.contains(&s.name().as_str())
                {
                    return Ok(msg);
                }
            }
            _ => {}
        }
    }
}

fn frames(o: &Opts, n: u64) -> Result<(), String> {
    let p = pipeline(o, Some(n), "frames")?;
    let samples = Arc::new(Mutex::new(Samples::default()));
    let s2 = samples.clone();
    count_frames(&p, (n / 100).max(1), move |_| s2.lock().unwrap().take());
    let t = Instant::now();
    p.set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let r = wait(&p, &["eos"], Duration::from_secs(24 * 3600));
    p.set_state(gst::State::Null).ok();
    r?;
    samples.lock().unwrap().report(
        "frames",
        &format!(
            "; {n} frames in {:.0} s ({:.0} fps)",
            t.elapsed().as_secs_f64(),
            n as f64 / t.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Until the swapped-out instances are let go of (they are, on threads of their own): samples
/// then show what swaps keep, not what they are still freeing.
fn settle() {
    let until = Instant::now() + Duration::from_secs(10);
    while gstyolo::engine::instance::Instance::retiring() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn swaps(o: &Opts, n: u64) -> Result<(), String> {
    let alt = o.alt.clone().ok_or("swaps needs --alt MODEL")?;
    let p = pipeline(o, None, "swaps")?;
    // Frame arrival gaps: the longest shows whether a swap ever stalled the stream.
    let gaps = Arc::new(Mutex::new((None::<Instant>, Vec::<f64>::new())));
    let g2 = gaps.clone();
    count_frames(&p, 1, move |_| {
        let mut g = g2.lock().unwrap();
        let now = Instant::now();
        if let Some(last) = g.0 {
            g.1.push((now - last).as_secs_f64() * 1e3);
        }
        g.0 = Some(now);
    });
    let det = p.by_name("det").expect("det");
    p.set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    // glibc's arenas fill over the first ~20 swaps (resident memory rises ~15 MiB, then stays:
    // 1,000 swaps, BENCHMARKS.md): that is warm-up, however many swaps run.
    let mut samples = Samples(Vec::new(), Vec::new(), 20);
    // Every swap: cheap next to a load, and the drift line (see `Samples::drift`) averages
    // over more points.
    let step = 1;
    let t = Instant::now();
    let mut load_ms = Vec::new();
    for i in 0..n {
        let m = if i % 2 == 0 { &alt } else { &o.model };
        det.set_property("model", m.display().to_string());
        let msg = wait(&p, &["yolodetect-model-changed"], Duration::from_secs(120))?;
        if let Some(s) = msg.structure() {
            load_ms.push(s.get::<f64>("load-time-ms").unwrap_or(f64::NAN));
        }
        if i % step == 0 {
            settle();
            samples.take();
        }
    }
    settle();
    samples.take();
    let elapsed = t.elapsed().as_secs_f64();
    p.set_state(gst::State::Null).ok();
    let mut g = std::mem::take(&mut gaps.lock().unwrap().1);
    g.sort_by(f64::total_cmp);
    load_ms.sort_by(f64::total_cmp);
    let pct = |v: &[f64], q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    samples.report(
        "swaps",
        &format!(
            "; {n} swaps in {elapsed:.0} s, load p50 {:.0} ms; {} frames meanwhile, gap between frames p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(&load_ms, 0.5),
            g.len() + 1,
            pct(&g, 0.5),
            pct(&g, 0.99),
            g.last().copied().unwrap_or(f64::NAN)
        ),
    );
    Ok(())
}

fn cycles(o: &Opts, n: u64) -> Result<(), String> {
    let p = pipeline(o, Some(2), "cycles")?;
    let mut samples = Samples::default();
    let step = (n / 50).max(1);
    let t = Instant::now();
    for i in 0..n {
        p.set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        let r = wait(&p, &["eos"], Duration::from_secs(120));
        p.set_state(gst::State::Null).ok();
        r?;
        if i % step == 0 {
            samples.take();
        }
    }
    samples.take();
    samples.report(
        "cycles",
        &format!("; {n} cycles in {:.0} s", t.elapsed().as_secs_f64()),
    );
    Ok(())
}

fn parallel(o: &Opts, pipelines: u64, n: u64) -> Result<(), String> {
    let ps: Vec<_> = (0..pipelines)
        .map(|i| pipeline(o, Some(n), &format!("parallel{i}")))
        .collect::<Result<_, _>>()?;
    let samples = Arc::new(Mutex::new(Samples::default()));
    let s2 = samples.clone();
    count_frames(&ps[0], (n / 50).max(1), move |_| s2.lock().unwrap().take());
    let t = Instant::now();
    for p in &ps {
        p.set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
    }
    for p in &ps {
        wait(p, &["eos"], Duration::from_secs(24 * 3600))?;
    }
    for p in &ps {
        p.set_state(gst::State::Null).ok();
    }
    samples.lock().unwrap().report(
        "parallel",
        &format!(
            "; {pipelines} pipelines x {n} frames in {:.0} s",
            t.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// How [`churn`] makes and drops each model.
#[derive(Clone, Copy, PartialEq)]
enum Churn {
    /// Our engine (session, I/O, warm-up), run once.
    Engines,
    /// ONNX Runtime sessions alone, never run.
    Sessions,
    /// ONNX Runtime sessions run once on host tensors with its plain API.
    SessionsRun,
}

/// Engines or bare sessions made and dropped, without GStreamer.
fn churn(o: &Opts, n: u64, how: Churn) -> Result<(), String> {
    let mut cfg = gstyolo::engine::EngineConfig::new(o.model.clone());
    cfg.provider = match o.provider.as_str() {
        "cuda" => gstyolo::engine::Provider::Cuda,
        _ => gstyolo::engine::Provider::Cpu,
    };
    let mut samples = Samples::default();
    let step = (n / 50).max(1);
    let t = Instant::now();
    if how != Churn::Engines {
        gstyolo::engine::churn_sessions(&cfg, n as usize, how == Churn::SessionsRun, |i| {
            if (i as u64).is_multiple_of(step) {
                samples.take();
            }
        })
        .map_err(|e| e.to_string())?;
    } else {
        for i in 0..n {
            let mut e = gstyolo::engine::Engine::new(&cfg).map_err(|e| e.to_string())?;
            let zeros = vec![0.0f32; e.input_len()];
            let mut out = Vec::new();
            e.run_items(&zeros, 1, &mut out)
                .map_err(|e| e.to_string())?;
            drop(e);
            if i % step == 0 {
                samples.take();
            }
        }
    }
    samples.take();
    let (warm, last, _) = samples.drift();
    samples.report(
        match how {
            Churn::Engines => "engines",
            Churn::Sessions => "sessions",
            Churn::SessionsRun => "sessions-run",
        },
        &format!(
            "; {n} in {:.0} s, {:.1} KiB per one after warm-up",
            t.elapsed().as_secs_f64(),
            (last - warm) * 1024.0 / (n as f64 * 0.9)
        ),
    );
    Ok(())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shared = std::env::var_os("GST_YOLO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let mut o = Opts {
        model: shared.join("models/yolov8n.onnx"),
        alt: None,
        provider: "cpu".into(),
    };
    let mut deinit = false;
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => o.model = it.next().ok_or("--model PATH")?.into(),
            "--alt" => o.alt = Some(it.next().ok_or("--alt PATH")?.into()),
            "--provider" => o.provider = it.next().ok_or("--provider NAME")?.clone(),
            "--deinit" => deinit = true,
            _ => pos.push(a.clone()),
        }
    }
    let num = |i: usize| -> Result<u64, String> {
        pos.get(i)
            .ok_or("missing count (see the header of examples/yolo-soak.rs)")?
            .parse()
            .map_err(|e| format!("count: {e}"))
    };
    gst::init().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    GPU.get_or_init(|| {
        (o.provider != "cpu")
            .then(|| gstyolo::engine::cuda::GpuLetterbox::new(0).ok())
            .flatten()
    });
    let r = match pos.first().map(String::as_str) {
        Some("frames") => frames(&o, num(1)?),
        Some("swaps") => swaps(&o, num(1)?),
        Some("cycles") => cycles(&o, num(1)?),
        Some("parallel") => parallel(&o, num(1)?, num(2)?),
        Some("engines") => churn(&o, num(1)?, Churn::Engines),
        Some("sessions") => churn(&o, num(1)?, Churn::Sessions),
        Some("sessions-run") => churn(&o, num(1)?, Churn::SessionsRun),
        _ => Err("usage: yolo-soak frames|swaps|cycles|engines|sessions|sessions-run N | parallel P N [--model M] [--alt M2] [--provider P] [--deinit]".into()),
    };
    if deinit {
        // SAFETY: every GStreamer object of this program has been dropped (the phase functions
        // own their pipelines); nothing uses GStreamer after this.
        unsafe { gst::deinit() };
    }
    r
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("yolo-soak: {e}");
            ExitCode::FAILURE
        }
    }
}
