// SPDX-License-Identifier: MPL-2.0
//! Measures gst-yolo on an execution provider; `scripts/gpu/h100-proof.sh` runs it on a GPU host.
//!
//! ```text
//! yolo-bench engine   [--provider P] [--tf32] [--graph] [--no-binding] [--conv S] [--iters N]
//!     ONNX Runtime alone: Engine::run_input in a loop (same library, options and I/O binding
//!     as yolodetect), mean and percentile time per run.
//! yolo-bench pipeline "<gst-launch description with `yolodetect name=d`>"
//!     fps from the first to the last buffer leaving yolodetect, and the element's own
//!     per-frame stage timings (its log lines at GST_DEBUG=yolodetect:6, captured in-process).
//! yolo-bench cycles "<description>" [--counts 1,100,1000] [--max-seconds S] [--gpu N]
//!     plays the pipeline to EOS and back to NULL repeatedly; GPU memory (nvidia-smi) and the
//!     process RSS after the given numbers of cycles.
//! yolo-bench engine-batch --batch B [--provider P] [--iters N] [--streams W]
//!     ONNX Runtime alone at batch B as a model instance's worker runs it: with CUDA, input made
//!     in device memory (as GPU pre-processing leaves it) and the output copied to the host;
//!     `--streams W` runs W sessions at once, as W inference workers do.
//! yolo-bench multistream "<description with {i}>" --streams N [--gpu N]
//!     N copies of the description (each with `name=d{i}` on the element to time) in one
//!     pipeline: aggregate fps over the steady middle of the run (10%..90% of the frames),
//!     per-frame latency through d{i} (p50/p99), GPU memory (nvidia-smi), host CPU (cores busy).
//! yolo-bench compare IMAGE.png... [--provider P]
//!     detections of the CPU against P with TF32 off and on: largest box and confidence change.
//! ```
//! Common options: `--model PATH` (default `$GST_YOLO_MODEL`, then
//! `$GST_YOLO_SHARED/models/yolov8n.onnx`), `--device N`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gstyolo::detection::Detection;
use gstyolo::engine::{ConvAlgoSearch, Engine, EngineConfig, IoBindingMode, Provider};
use gstyolo::frame::{FrameRef, PixelLayout, Plane, YuvColor};
use gstyolo::postprocess::{PostParams, Postprocessor};
use gstyolo::preprocess::Preprocessor;

struct Opts {
    cmd: String,
    free: Vec<String>,
    model: PathBuf,
    provider: Provider,
    device: i32,
    tf32: bool,
    graph: bool,
    binding: bool,
    conv: ConvAlgoSearch,
    iters: usize,
    batch: usize,
    streams: usize,
    counts: Vec<usize>,
    max_seconds: f64,
}

fn parse() -> Result<Opts, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it
        .next()
        .ok_or("missing command: engine, pipeline, cycles or compare")?;
    let shared = std::env::var_os("GST_YOLO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let mut o = Opts {
        cmd,
        free: Vec::new(),
        model: std::env::var_os("GST_YOLO_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| shared.join("models/yolov8n.onnx")),
        provider: Provider::Cuda,
        device: 0,
        tf32: false,
        graph: false,
        binding: true,
        conv: ConvAlgoSearch::Exhaustive,
        iters: 1000,
        batch: 1,
        streams: 1,
        counts: vec![1, 100, 1000],
        max_seconds: 1e9,
    };
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--model" => o.model = PathBuf::from(val()?),
            "--provider" => {
                o.provider = match val()?.as_str() {
                    "cpu" => Provider::Cpu,
                    "cuda" => Provider::Cuda,
                    "tensorrt" => Provider::TensorRt,
                    "auto" => Provider::Auto,
                    p => return Err(format!("unknown provider {p}")),
                }
            }
            "--device" => o.device = val()?.parse().map_err(|_| "--device takes a number")?,
            "--tf32" => o.tf32 = true,
            "--graph" => o.graph = true,
            "--no-binding" => o.binding = false,
            "--conv" => {
                o.conv = match val()?.as_str() {
                    "exhaustive" => ConvAlgoSearch::Exhaustive,
                    "heuristic" => ConvAlgoSearch::Heuristic,
                    "default" => ConvAlgoSearch::Default,
                    s => return Err(format!("unknown --conv {s}")),
                }
            }
            "--iters" => o.iters = val()?.parse().map_err(|_| "--iters takes a number")?,
            "--batch" => o.batch = val()?.parse().map_err(|_| "--batch takes a number")?,
            "--streams" => o.streams = val()?.parse().map_err(|_| "--streams takes a number")?,
            "--counts" => {
                o.counts = val()?
                    .split(',')
                    .map(|c| c.parse().map_err(|_| "--counts takes numbers"))
                    .collect::<Result<_, _>>()?
            }
            "--max-seconds" => {
                o.max_seconds = val()?.parse().map_err(|_| "--max-seconds takes a number")?
            }
            _ => o.free.push(a),
        }
    }
    Ok(o)
}

fn config(o: &Opts, provider: Provider, tf32: bool) -> EngineConfig {
    let mut cfg = EngineConfig::new(&o.model);
    cfg.provider = provider;
    cfg.device_id = o.device;
    cfg.cuda.tf32 = tf32;
    cfg.cuda.cuda_graph = o.graph;
    cfg.cuda.conv_algo_search = o.conv;
    cfg.io_binding = if o.binding {
        IoBindingMode::Gpu
    } else {
        IoBindingMode::Off
    };
    cfg
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn engine_bench(o: &Opts) -> Result<(), String> {
    let t = Instant::now();
    let mut e = Engine::new(&config(o, o.provider, o.tf32)).map_err(|e| e.to_string())?;
    let start_s = t.elapsed().as_secs_f64();
    e.input_mut().fill(114.0 / 255.0);
    for _ in 0..20 {
        e.run_input(|_, _| ()).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(o.iters);
    let t0 = Instant::now();
    for _ in 0..o.iters {
        let t = Instant::now();
        e.run_input(|_, d| std::hint::black_box(d[0]))
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let total = t0.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    println!(
        "ENGINE provider={} binding={} tf32={} graph={} conv={} start={:.1}s runs={} \
         mean={:.3}ms p50={:.3}ms p99={:.3}ms fps={:.1}",
        e.provider().name(),
        match e.io_binding() {
            None => "off",
            Some(true) => "pinned",
            Some(false) => "pageable",
        },
        o.tf32,
        o.graph,
        o.conv.name(),
        start_s,
        o.iters,
        total * 1e3 / o.iters as f64,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        o.iters as f64 / total
    );
    Ok(())
}

/// `engine-batch --workers W`: W sessions run batches at the same time, as a model instance's
/// inference workers do; images/s summed.
fn engine_batch(o: &Opts) -> Result<(), String> {
    if o.streams <= 1 {
        return engine_batch_one(o, true).map(|_| ());
    }
    let rates: Vec<Result<f64, String>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..o.streams)
            .map(|_| sc.spawn(|| engine_batch_one(o, false)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    let mut total = 0.0;
    for r in rates {
        total += r?;
    }
    println!(
        "ENGINEB provider={} batch={} workers={} images/s={total:.1}",
        o.provider.name(),
        o.batch,
        o.streams
    );
    Ok(())
}

fn engine_batch_one(o: &Opts, print: bool) -> Result<f64, String> {
    let mut e = Engine::new(&config(o, o.provider, o.tf32)).map_err(|e| e.to_string())?;
    let b = o.batch.max(1);
    let input = vec![114.0f32 / 255.0; b * e.input_len()];
    let mut out = Vec::new();
    let device = e.cuda_device().is_some();
    // What a worker copies the output with: straight into the buffer the streams read.
    let gpu = match e.cuda_device() {
        Some(d) => Some(gstyolo::engine::cuda::GpuLetterbox::new(d)?),
        None => None,
    };
    let gpu = gpu.as_ref();
    let mut run = |e: &mut Engine| {
        out.clear();
        if device {
            e.run_device_items(
                b,
                b,
                |_, _| Ok(()),
                |p, d| gpu.map_or(Ok(()), |g| g.copy_to_host(p, d)),
                &mut out,
            )
        } else {
            e.run_items(&input, b, &mut out)
        }
        .map_err(|e| e.to_string())
    };
    for _ in 0..10 {
        run(&mut e)?;
    }
    let mut times = Vec::with_capacity(o.iters);
    let t0 = Instant::now();
    for _ in 0..o.iters {
        let t = Instant::now();
        run(&mut e)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let total = t0.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let rate = (o.iters * b) as f64 / total;
    if !print {
        return Ok(rate);
    }
    println!(
        "ENGINEB provider={} batch={b} input={} runs={} mean={:.3}ms p50={:.3}ms p99={:.3}ms \
         images/s={:.1}",
        e.provider().name(),
        if device { "device" } else { "host" },
        o.iters,
        total * 1e3 / o.iters as f64,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        rate
    );
    Ok(rate)
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn multistream(o: &Opts) -> Result<(), String> {
    let tpl = o.free.first().ok_or("multistream needs a description")?;
    let n = o.streams.max(1);
    let desc: Vec<String> = (0..n).map(|i| tpl.replace("{i}", &i.to_string())).collect();
    let pipeline = gst::parse::launch(&desc.join("  "))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    // Per stream: when each buffer entered d{i} (by PTS); all streams: when each left, and
    // its latency through the element.
    let exits: Arc<Mutex<Vec<(Instant, f64)>>> = Arc::default();
    for i in 0..n {
        let d = pipeline
            .by_name(&format!("d{i}"))
            .ok_or_else(|| format!("no element d{i}"))?;
        let entered: Arc<Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
        let e2 = entered.clone();
        d.static_pad("sink").ok_or("no sink pad")?.add_probe(
            gst::PadProbeType::BUFFER,
            move |_, _| {
                e2.lock().unwrap().push_back(Instant::now());
                gst::PadProbeReturn::Ok
            },
        );
        let x2 = exits.clone();
        d.static_pad("src").ok_or("no src pad")?.add_probe(
            gst::PadProbeType::BUFFER,
            move |_, _| {
                let now = Instant::now();
                // In-place filters keep order: the oldest entry is this buffer's.
                let lat = entered
                    .lock()
                    .unwrap()
                    .pop_front()
                    .map_or(0.0, |t| (now - t).as_secs_f64() * 1e3);
                x2.lock().unwrap().push((now, lat));
                gst::PadProbeReturn::Ok
            },
        );
    }
    // GPU memory and CPU at 90% of the run, sampled by a thread watching the frame count.
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let gpu = o.device;
    let x3 = exits.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = String::from("n/a");
        let mut last = 0usize;
        for _ in 0..6000 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let k = x3.lock().unwrap().len();
            if k > 0 && k == last {
                break; // finished (or stalled)
            }
            last = k;
            peak = gpu_mem_mib(gpu);
        }
        peak
    });
    run_to_eos(&pipeline)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let rss = rss_mib();
    pipeline.set_state(gst::State::Null).ok();
    let gpu_mib = sampler.join().unwrap_or_default();
    let mut x = exits.lock().unwrap().clone();
    x.sort_by_key(|a| a.0);
    let total = x.len();
    if total < 20 {
        return Err(format!("only {total} frames"));
    }
    let (a, b) = (total / 10, total * 9 / 10);
    let fps = (b - a) as f64 / (x[b].0 - x[a].0).as_secs_f64();
    let mut lat: Vec<f64> = x[a..b].iter().map(|e| e.1).collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "MULTI streams={n} frames={total} fps={fps:.1} latency-p50={:.2}ms latency-p99={:.2}ms \
         gpu-mem={gpu_mib}MiB cpu-cores={:.2} rss={rss}MiB wall={wall:.1}s",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        cpu / wall
    );
    let d0 = pipeline.by_name("d0").ok_or("no d0")?;
    if d0.find_property("stats").is_some() {
        let s = d0.property::<gst::Structure>("stats");
        println!(
            "STATS batch-size={} mean-batch-fill={:.2} queue-wait-p99={:.2}ms instance-frames={}",
            s.get::<u32>("batch-size").unwrap_or(0),
            s.get::<f64>("mean-batch-fill").unwrap_or(0.0),
            s.get::<f64>("queue-wait-p99-ms").unwrap_or(0.0),
            s.get::<u64>("instance-frames").unwrap_or(0)
        );
    }
    Ok(())
}

/// Parses a `Duration` printed with `{:?}` ("812.5µs", "1.25ms", "2s", "950ns") into ms.
fn parse_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_alphabetic() || c == 'µ')?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "ns" => v / 1e6,
        "µs" => v / 1e3,
        "ms" => v,
        "s" => v * 1e3,
        _ => return None,
    })
}

fn pipeline_bench(o: &Opts) -> Result<(), String> {
    let desc = o.free.first().ok_or("pipeline needs a description")?;
    // yolodetect's per-frame line: "N detections; pre X infer Y post Z meta W".
    let stages: Arc<Mutex<Vec<[f64; 4]>>> = Arc::default();
    let s2 = stages.clone();
    gst::log::remove_default_log_function();
    gst::log::set_threshold_for_name("yolodetect", gst::DebugLevel::Log);
    gst::log::add_log_function(move |cat, _lvl, _f, _fn, _l, _obj, msg| {
        if cat.name() != "yolodetect" {
            return;
        }
        let Some(text) = msg.get() else { return };
        let w: Vec<&str> = text.split_whitespace().collect();
        let pick = |k: &str| {
            w.iter()
                .position(|x| *x == k)
                .and_then(|i| w.get(i + 1))
                .and_then(|v| parse_ms(v))
        };
        if let (Some(a), Some(b), Some(c), Some(d)) =
            (pick("pre"), pick("infer"), pick("post"), pick("meta"))
        {
            s2.lock().unwrap().push([a, b, c, d]);
        }
    });
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let det = pipeline.by_name("d").ok_or("name the yolodetect `d`")?;
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t2 = times.clone();
    det.static_pad("src")
        .ok_or("no src pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            t2.lock().unwrap().push(Instant::now());
            gst::PadProbeReturn::Ok
        });
    let t0 = Instant::now();
    run_to_eos(&pipeline)?;
    let provider: String = if det.find_property("active-provider").is_some() {
        det.property("active-provider")
    } else {
        "none".into()
    };
    pipeline.set_state(gst::State::Null).ok();
    let times = times.lock().unwrap();
    let n = times.len();
    if n < 2 {
        return Err(format!("only {n} buffers"));
    }
    let span = (times[n - 1] - times[0]).as_secs_f64();
    let fps = (n - 1) as f64 / span;
    let first = (times[0] - t0).as_secs_f64();
    let st = stages.lock().unwrap();
    // Skip the first frames (CUDA graph capture, lazy module loading).
    let skip = st.len().min(10);
    let avg = |i: usize| {
        let v = &st[skip..];
        v.iter().map(|s| s[i]).sum::<f64>() / v.len().max(1) as f64
    };
    println!(
        "PIPELINE provider={provider} frames={n} fps={fps:.1} first-buffer={first:.2}s \
         per-frame: pre={:.3}ms infer={:.3}ms post={:.3}ms meta={:.3}ms (sum {:.3}ms = {:.0} fps \
         if nothing else ran)",
        avg(0),
        avg(1),
        avg(2),
        avg(3),
        avg(0) + avg(1) + avg(2) + avg(3),
        1e3 / (avg(0) + avg(1) + avg(2) + avg(3))
    );
    Ok(())
}

fn run_to_eos(pipeline: &gst::Pipeline) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot play: {e}; {}", bus_error(&bus)))?;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(600)) {
        match msg.view() {
            gst::MessageView::Eos(..) => return Ok(()),
            gst::MessageView::Error(e) => {
                return Err(format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                ));
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && s.name().starts_with("yolodetect")
                    && std::env::var_os("YOLO_BENCH_QUIET").is_none()
                {
                    eprintln!("message: {s}");
                }
            }
            _ => {}
        }
    }
    Err("timed out".into())
}

fn bus_error(bus: &gst::Bus) -> String {
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => e.error().to_string(),
            _ => String::new(),
        })
        .unwrap_or_default()
}

fn gpu_mem_mib(gpu: i32) -> String {
    std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.used",
            "--format=csv,noheader,nounits",
            &format!("--id={gpu}"),
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "n/a".into())
}

fn rss_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0}", kb / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

fn cycles(o: &Opts) -> Result<(), String> {
    let desc = o.free.first().ok_or("cycles needs a description")?;
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let max = o.counts.iter().copied().max().unwrap_or(0);
    let t0 = Instant::now();
    println!(
        "CYCLES before: gpu-memory-used={}MiB rss={}MiB",
        gpu_mem_mib(o.device),
        rss_mib()
    );
    for i in 1..=max {
        run_to_eos(&pipeline).map_err(|e| format!("cycle {i}: {e}"))?;
        pipeline
            .set_state(gst::State::Null)
            .map_err(|e| format!("cycle {i}: {e}"))?;
        let out_of_time = t0.elapsed().as_secs_f64() > o.max_seconds;
        if o.counts.contains(&i) || out_of_time {
            println!(
                "CYCLES after={i} gpu-memory-used={}MiB rss={}MiB elapsed={:.0}s",
                gpu_mem_mib(o.device),
                rss_mib(),
                t0.elapsed().as_secs_f64()
            );
        }
        if out_of_time {
            println!("CYCLES stopped at {i}: --max-seconds reached");
            break;
        }
    }
    Ok(())
}

/// An RGB frame decoded by GStreamer.
struct Rgb {
    w: u32,
    h: u32,
    stride: usize,
    data: Vec<u8>,
}

fn decode_rgb(path: &str) -> Result<Rgb, String> {
    let desc = format!(
        "filesrc location=\"{path}\" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! \
         appsink name=sink"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let sample = sink
        .pull_sample()
        .map_err(|_| format!("{path}: no frame"))?;
    pipeline.set_state(gst::State::Null).ok();
    let info = gst_video::VideoInfo::from_caps(sample.caps().ok_or("no caps")?)
        .map_err(|e| e.to_string())?;
    let buf = sample.buffer().ok_or("no buffer")?;
    let map = buf.map_readable().map_err(|e| e.to_string())?;
    Ok(Rgb {
        w: info.width(),
        h: info.height(),
        stride: info.stride()[0] as usize,
        data: map.as_slice().to_vec(),
    })
}

fn detect(e: &mut Engine, img: &Rgb) -> Result<Vec<Detection>, String> {
    let frame = FrameRef {
        layout: PixelLayout::Rgb,
        width: img.w,
        height: img.h,
        planes: [
            Plane {
                data: &img.data,
                stride: img.stride,
            },
            Plane {
                data: &[],
                stride: 0,
            },
            Plane {
                data: &[],
                stride: 0,
            },
        ],
        color: YuvColor::default(),
    };
    let (w, h) = (e.info().input_width, e.info().input_height);
    let lb = Preprocessor::new()
        .run(&frame, w, h, e.input_mut())
        .map_err(|e| e.to_string())?;
    let head = e.info().head;
    let mut out = Vec::new();
    let mut post = Postprocessor::new();
    e.run_input(|_, data| post.run(&head, data, &PostParams::default(), &lb, &[], &mut out))
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let i = iw * ih;
    let u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i;
    if u > 0.0 { i / u } else { 0.0 }
}

fn compare(o: &Opts) -> Result<(), String> {
    let imgs: Vec<Rgb> = o
        .free
        .iter()
        .map(|p| decode_rgb(p))
        .collect::<Result<_, _>>()?;
    let mut cpu = Engine::new(&config(o, Provider::Cpu, false)).map_err(|e| e.to_string())?;
    let base: Vec<Vec<Detection>> = imgs
        .iter()
        .map(|i| detect(&mut cpu, i))
        .collect::<Result<_, _>>()?;
    for tf32 in [false, true] {
        let mut e = Engine::new(&config(o, o.provider, tf32)).map_err(|e| e.to_string())?;
        let (mut max_px, mut max_conf, mut unmatched, mut n) = (0f32, 0f32, 0, 0);
        for (img, want) in imgs.iter().zip(&base) {
            let got = detect(&mut e, img)?;
            for d in want.iter().filter(|d| d.confidence >= 0.3) {
                n += 1;
                let best = got
                    .iter()
                    .filter(|g| g.class_id == d.class_id)
                    .max_by(|a, b| iou(a.bbox(), d.bbox()).total_cmp(&iou(b.bbox(), d.bbox())));
                match best {
                    Some(g) if iou(g.bbox(), d.bbox()) > 0.5 => {
                        for (x, y) in g.bbox().iter().zip(d.bbox()) {
                            max_px = max_px.max((x - y).abs());
                        }
                        max_conf = max_conf.max((g.confidence - d.confidence).abs());
                    }
                    _ => unmatched += 1,
                }
            }
        }
        println!(
            "COMPARE {} tf32={tf32} vs cpu: {n} detections (conf>=0.3) on {} images, \
             max box edge change {max_px:.4} px, max confidence change {max_conf:.5}, \
             unmatched {unmatched}",
            e.provider().name(),
            imgs.len()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\nsee the header of examples/yolo-bench.rs for usage");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = gst::init() {
        eprintln!("gst::init: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = gstyolo::plugin_register_static() {
        eprintln!("register: {e}");
        return ExitCode::FAILURE;
    }
    let r = match o.cmd.as_str() {
        "engine" => engine_bench(&o),
        "pipeline" => pipeline_bench(&o),
        "engine-batch" => engine_batch(&o),
        "multistream" => multistream(&o),
        "cycles" => cycles(&o),
        "compare" => compare(&o),
        c => Err(format!("unknown command {c}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("yolo-bench {}: {e}", o.cmd);
            ExitCode::FAILURE
        }
    }
}
