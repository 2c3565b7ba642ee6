// SPDX-License-Identifier: MPL-2.0
//! What ONNX Runtime's CPU memory arena costs or saves when a pipeline starts and stops
//! repeatedly: creates and drops an `Engine` (one run each) many times and prints the process's
//! resident memory after 1, 10 and 50 cycles. Run it once per setting (a process keeps what it
//! allocated, so the two must not share one). Then the per-frame latency with the arena on and
//! off, from two engines run alternately so the machine's drift hits both alike.
//!
//! ```text
//! cargo run --release --example engine-churn -- --arena off|on [--cycles 50] [--threads N]
//!     [--model PATH] [--frames 30]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use gstyolo::engine::{Engine, EngineConfig};
use gstyolo::stats::percentile;

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

fn run() -> Result<(), String> {
    let mut arena = None;
    let mut cycles = 50usize;
    let mut frames = 30usize;
    let mut threads = 0usize;
    let mut model = std::env::var_os("GST_YOLO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("models/yolov8n.onnx");
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let num = || {
            v.parse::<usize>()
                .map_err(|_| format!("{k} takes a number"))
        };
        match k.as_str() {
            "--arena" => arena = Some(v == "on"),
            "--cycles" => cycles = num()?,
            "--frames" => frames = num()?.max(1),
            "--threads" => threads = num()?,
            "--model" => model = PathBuf::from(&v),
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    let arena = arena.ok_or("--arena on|off is required")?;
    let mut cfg = EngineConfig::new(&model);
    cfg.cpu_arena = arena;
    cfg.num_threads = threads;
    let input = vec![0.5f32; 3 * 640 * 640];
    let label = if arena { "on" } else { "off" };
    let rss0 = rss_mib();
    let mut rss = Vec::new();
    for c in 1..=cycles {
        // Engine::new already makes one warm-up run; one more stands for a frame.
        let mut e = Engine::new(&cfg).map_err(|e| e.to_string())?;
        e.run(&input, 1, |_, d| d[0]).map_err(|e| e.to_string())?;
        drop(e);
        if [1, 10, 50, cycles].contains(&c) && rss.last().map(|&(n, _)| n) != Some(c) {
            rss.push((c, rss_mib()));
        }
    }
    let mut engines = Vec::new();
    for on in [false, true] {
        let mut c = cfg.clone();
        c.cpu_arena = on;
        engines.push(Engine::new(&c).map_err(|e| e.to_string())?);
    }
    let mut ms = [Vec::with_capacity(frames), Vec::with_capacity(frames)];
    for i in 0..frames + 3 {
        for (k, e) in engines.iter_mut().enumerate() {
            let t = Instant::now();
            e.run(&input, 1, |_, d| d[0]).map_err(|e| e.to_string())?;
            if i >= 3 {
                ms[k].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let [mut off_ms, mut on_ms] = ms;
    off_ms.sort_unstable_by(f64::total_cmp);
    on_ms.sort_unstable_by(f64::total_cmp);
    let (off50, on50) = (percentile(&off_ms, 50.0), percentile(&on_ms, 50.0));
    let rss_text: Vec<String> = rss
        .iter()
        .map(|(c, m)| format!("after {c}: {m:.0} MiB"))
        .collect();
    println!(
        "cpu arena {label}: RSS before {rss0:.0} MiB, {}; then alternating runs: arena off p50 \
         {off50:.2} ms, on p50 {on50:.2} ms",
        rss_text.join(", ")
    );
    let rss_json: Vec<String> = rss
        .iter()
        .map(|(c, m)| format!("\"rss_after_{c}_mib\": {m:.1}"))
        .collect();
    println!(
        "BENCH {{\"name\": \"churn-arena-{label}\", \"rss_before_mib\": {rss0:.1}, {}, \"off_p50_ms\": {off50:.3}, \"on_p50_ms\": {on50:.3}}}",
        rss_json.join(", ")
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
