// SPDX-License-Identifier: MPL-2.0
//! Runs a gst-launch style pipeline to EOS as fast as it goes and reports its frame rate from
//! the buffer arrivals at the element named `sink`, plus yolodetect's own `stats` (stage
//! percentiles) when an element is named `det`.
//!
//! ```text
//! cargo run --release --example pipeline-bench -- --label NAME [--skip N] \
//!     'filesrc location=clip.mp4 ! decodebin ! yolodetect name=det model=m.onnx ! fakesink name=sink sync=false'
//! ```
//! Prints a human summary and a `BENCH {json}` line: per-frame interval p50/p90 (ms), frames,
//! wall-clock fps between the first and last frame, and the stats structure's fields.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use gst::prelude::*;
use gstyolo::stats::percentile;
use parking_lot::Mutex;

struct Args {
    label: String,
    /// Frames at the start left out of the interval statistics (warm-up, pre-roll).
    skip: usize,
    pipeline: String,
}

fn parse_args() -> Result<Args, String> {
    let (mut label, mut skip, mut pipeline) = (String::from("pipeline"), 5usize, None);
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--label" => label = it.next().ok_or("--label needs a value")?,
            "--skip" => {
                skip = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--skip takes a number")?
            }
            _ if pipeline.is_none() => pipeline = Some(k),
            _ => return Err(format!("unexpected argument {k}")),
        }
    }
    Ok(Args {
        label,
        skip,
        pipeline: pipeline.ok_or("missing pipeline description")?,
    })
}

fn run(a: Args) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    let pipeline = gst::parse::launch(&a.pipeline)
        .map_err(|e| format!("{}: {e}", a.pipeline))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .by_name("sink")
        .ok_or("name the last element `sink`")?;
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::with_capacity(4096)));
    let arr = arrivals.clone();
    sink.static_pad("sink")
        .ok_or("sink has no sink pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            arr.lock().push(Instant::now());
            gst::PadProbeReturn::Ok
        });

    let t_start = Instant::now();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "could not start the pipeline")?;
    let bus = pipeline.bus().ok_or("pipeline has no bus")?;
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(e) => {
                result = Err(format!(
                    "{}: {}{}",
                    e.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    e.error(),
                    e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
                ));
                break;
            }
            _ => {}
        }
    }
    let t_end = Instant::now();
    let stats = pipeline
        .by_name("det")
        .map(|d| d.property::<gst::Structure>("stats"));
    let _ = pipeline.set_state(gst::State::Null);
    result?;

    let arrivals = arrivals.lock();
    let n = arrivals.len();
    if n < a.skip + 3 {
        return Err(format!("only {n} frames arrived"));
    }
    let used = &arrivals[a.skip..];
    let mut iv: Vec<f64> = used
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .collect();
    iv.sort_unstable_by(f64::total_cmp);
    let (p50, p90) = (percentile(&iv, 50.0), percentile(&iv, 90.0));
    let span = (used[used.len() - 1] - used[0]).as_secs_f64();
    let fps = (used.len() - 1) as f64 / span.max(1e-9);
    let total_s = (t_end - t_start).as_secs_f64();
    println!(
        "{}: {n} frames in {total_s:.2} s; frame interval p50 {p50:.2} ms p90 {p90:.2} ms; \
         {fps:.2} fps over frames {}..{n}",
        a.label, a.skip
    );
    let mut json = format!(
        "{{\"name\": \"{}\", \"frames\": {n}, \"p50_ms\": {p50:.3}, \"p90_ms\": {p90:.3}, \"fps\": {fps:.3}, \"total_s\": {total_s:.3}",
        a.label
    );
    if let Some(s) = stats {
        println!("  {s}");
        json.push_str(", \"stats\": {");
        for (i, (k, v)) in s.iter().enumerate() {
            let val = if let Ok(f) = v.get::<f64>() {
                format!("{f:.4}")
            } else if let Ok(u) = v.get::<u64>() {
                u.to_string()
            } else if let Ok(u) = v.get::<u32>() {
                u.to_string()
            } else if let Ok(t) = v.get::<String>() {
                format!("\"{t}\"")
            } else {
                "null".into()
            };
            json.push_str(&format!("{}\"{k}\": {val}", if i > 0 { ", " } else { "" }));
        }
        json.push('}');
    }
    json.push('}');
    println!("BENCH {json}");
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
