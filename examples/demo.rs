// SPDX-License-Identifier: MPL-2.0
//! The gst-yolo demo: detects objects in a video, writes an annotated MP4 and the detections as
//! JSON lines, then prints a one-screen summary.
//!
//! ```text
//! filesrc ! decodebin ! videoconvert ! yolodetect ! yolooverlay ! videoconvert
//!         ! x264enc ! mp4mux ! filesink             (annotated video)
//!                    ^ pad probe on yolodetect's src pad reads DetectionMeta (JSON lines)
//! ```
//! One pipeline, no tee: the probe sees every buffer on its way to the overlay.
//!
//! ```text
//! cargo run --release --example demo -- [VIDEO] [--model PATH] [--out DIR] [--frames N]
//! ```
//! `scripts/demo.sh` finds bikes.mp4 and runs this. The video defaults to
//! `../shared/media/video/bikes.mp4`, the model to `$GST_YOLO_MODEL`, then
//! `../shared/models/yolov8n.onnx` (`$GST_YOLO_SHARED` replaces `../shared`), the output folder
//! to `out/`. The JSON lines have the format of the `yolo-json` example.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gstyolo::meta::DetectionMeta;

const EXPORT_HINT: &str = "export one with Ultralytics: `pip install ultralytics && yolo export model=yolov8n.pt format=onnx`";

struct Args {
    input: Option<PathBuf>,
    model: Option<PathBuf>,
    out: PathBuf,
    frames: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        input: None,
        model: None,
        out: PathBuf::from("out"),
        frames: None,
    };
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--model" => args.model = Some(PathBuf::from(val("--model")?)),
            "--out" => args.out = PathBuf::from(val("--out")?),
            "--frames" => {
                let n = val("--frames")?;
                args.frames = Some(
                    n.parse()
                        .map_err(|_| format!("--frames {n}: not a count"))?,
                )
            }
            "-h" | "--help" => return Err(String::new()),
            _ if args.input.is_none() && !a.starts_with("--") => args.input = Some(a.into()),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    Ok(args)
}

fn shared() -> PathBuf {
    std::env::var_os("GST_YOLO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn find_model(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    // Say where the path came from: a user who passed --model must not be told to set a
    // variable.
    let (candidate, fix) = match explicit {
        Some(p) => (p, "check the path given with --model"),
        None => match std::env::var_os("GST_YOLO_MODEL") {
            Some(p) => (PathBuf::from(p), "check the path in GST_YOLO_MODEL"),
            None => (
                shared().join("models/yolov8n.onnx"),
                "pass --model PATH or set GST_YOLO_MODEL to a YOLO ONNX file",
            ),
        },
    };
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "model {} not found: {fix}, or {EXPORT_HINT}",
            candidate.display()
        ))
    }
}

/// What the probe collects while the video plays.
#[derive(Default)]
struct Stats {
    frames: u64,
    size: (u32, u32),
    per_class: BTreeMap<String, u64>,
    frames_with_detections: u64,
    json: Option<BufWriter<File>>,
    write_error: Option<String>,
}

fn run(args: Args) -> Result<(), String> {
    let input = args
        .input
        .unwrap_or_else(|| shared().join("media/video/bikes.mp4"));
    if !input.is_file() {
        return Err(format!(
            "video {} not found: pass a video file (scripts/demo.sh fetches bikes.mp4)",
            input.display()
        ));
    }
    let model = find_model(args.model)?;
    gst::init().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;

    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let stem = input
        .file_stem()
        .map_or("video".into(), |s| s.to_string_lossy());
    let video_out = args.out.join(format!("{stem}-yolo.mp4"));
    let json_out = args.out.join(format!("{stem}-yolo.jsonl"));

    let pipeline = gst::parse::launch(
        "filesrc name=src ! decodebin ! videoconvert name=conv ! yolodetect name=det ! yolooverlay \
         ! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! filesink name=sink",
    )
    .map_err(|e| format!("building the pipeline: {e} (run scripts/install-deps.sh)"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let by_name = |n: &str| pipeline.by_name(n).ok_or(format!("no element {n}"));
    // Properties are set here, not in the launch line, so paths need no quoting.
    by_name("src")?.set_property("location", input.display().to_string());
    by_name("sink")?.set_property("location", video_out.display().to_string());
    let det = by_name("det")?;
    det.set_property("model", model.display().to_string());

    if let Some(n) = args.frames {
        limit_frames(&by_name("conv")?, n)?;
    }
    let json = File::create(&json_out).map_err(|e| format!("{}: {e}", json_out.display()))?;
    let stats = Arc::new(Mutex::new(Stats {
        json: Some(BufWriter::new(json)),
        ..Stats::default()
    }));
    add_json_probe(&det, stats.clone())?;

    let started = Instant::now();
    let result = play(&pipeline);
    let elapsed = started.elapsed().as_secs_f64();
    let provider = det.property::<String>("active-provider");
    let _ = pipeline.set_state(gst::State::Null);
    result?;

    let stats = stats.lock().map_err(|_| "probe panicked")?;
    if let Some(e) = &stats.write_error {
        return Err(format!("{}: {e}", json_out.display()));
    }
    print_summary(&SummaryIn {
        input: &input,
        model: &model,
        provider: &provider,
        stats: &stats,
        elapsed,
        video_out: &video_out,
        json_out: &json_out,
    });
    Ok(())
}

/// Lets the first `n` decoded frames through and drops the rest. The file still ends with its
/// own EOS: ending the stream early from the middle of the pipeline can stall the muxer.
/// `Handled` rather than `Drop`: the probe consumes the buffer (with gstreamer-rs 0.25 on
/// GStreamer 1.22, `Drop` logs a critical for every dropped buffer).
fn limit_frames(conv: &gst::Element, n: u32) -> Result<(), String> {
    let seen = std::sync::atomic::AtomicU32::new(0);
    conv.static_pad("sink")
        .ok_or("videoconvert has no sink pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                gst::PadProbeReturn::Ok
            } else {
                gst::PadProbeReturn::Handled
            }
        })
        .ok_or("could not add the frame limit probe")?;
    Ok(())
}

/// Writes one JSON line per buffer leaving yolodetect and counts detections per class.
fn add_json_probe(det: &gst::Element, stats: Arc<Mutex<Stats>>) -> Result<(), String> {
    let pad = det.static_pad("src").ok_or("yolodetect has no src pad")?;
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |pad, info| {
            let Ok(mut st) = stats.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            if let Some(gst::PadProbeData::Event(ev)) = &info.data {
                if ev.type_() == gst::EventType::Eos
                    && let Some(Err(e)) = st.json.as_mut().map(|f| f.flush())
                {
                    st.write_error.get_or_insert(e.to_string());
                }
                return gst::PadProbeReturn::Ok;
            }
            let Some(buf) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            if st.frames == 0 {
                st.size = pad
                    .current_caps()
                    .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
                    .map_or((0, 0), |i| (i.width(), i.height()));
            }
            let line = json_line(st.frames, buf, st.size);
            if let Some(Err(e)) = st.json.as_mut().map(|f| writeln!(f, "{line}")) {
                st.write_error.get_or_insert(e.to_string());
            }
            if let Some(meta) = buf.meta::<DetectionMeta>() {
                if !meta.detections().is_empty() {
                    st.frames_with_detections += 1;
                }
                for d in meta.detections() {
                    *st.per_class.entry(d.label.to_string()).or_default() += 1;
                }
            }
            st.frames += 1;
            gst::PadProbeReturn::Ok
        },
    )
    .ok_or("could not add the detection probe")?;
    Ok(())
}

/// The `yolo-json` example's line format.
fn json_line(frame: u64, buf: &gst::BufferRef, (w, h): (u32, u32)) -> String {
    let dets = buf.meta::<DetectionMeta>();
    gstyolo::detection::json_line(
        frame,
        buf.pts().map(|t| t.nseconds()),
        w,
        h,
        dets.as_ref().map_or(&[][..], |m| m.detections()),
    )
}

/// Plays to EOS; the first error message on the bus becomes the error.
fn play(pipeline: &gst::Pipeline) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("pipeline without a bus")?;
    let state = pipeline.set_state(gst::State::Playing);
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(..) => return state.map(|_| ()).map_err(|e| e.to_string()),
            gst::MessageView::Error(e) => {
                return Err(format!(
                    "{}: {}{}",
                    e.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    e.error(),
                    e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    Err("the bus closed before the end of the stream".into())
}

struct SummaryIn<'a> {
    input: &'a Path,
    model: &'a Path,
    provider: &'a str,
    stats: &'a Stats,
    elapsed: f64,
    video_out: &'a Path,
    json_out: &'a Path,
}

fn print_summary(s: &SummaryIn) {
    let st = s.stats;
    let name = |p: &Path| {
        p.file_name()
            .map_or(p.display().to_string(), |n| n.to_string_lossy().into())
    };
    let total: u64 = st.per_class.values().sum();
    let fps = if s.elapsed > 0.0 {
        st.frames as f64 / s.elapsed
    } else {
        0.0
    };
    let provider = if s.provider.is_empty() {
        "cpu"
    } else {
        s.provider
    };
    println!();
    println!("gst-yolo demo: {} with {}", name(s.input), name(s.model));
    println!("  frames       {} ({}x{})", st.frames, st.size.0, st.size.1);
    println!(
        "  speed        {fps:.1} fps: {:.1} s for decode + detect ({provider}) + draw + encode",
        s.elapsed
    );
    println!(
        "  detections   {total} in {} of {} frames",
        st.frames_with_detections, st.frames
    );
    let mut classes: Vec<_> = st.per_class.iter().collect();
    classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    // Ten rows keep the summary on one screen.
    for (label, n) in classes.iter().take(10) {
        println!("    {label:<16} {n:>6}");
    }
    if classes.len() > 10 {
        let rest: u64 = classes[10..].iter().map(|c| *c.1).sum();
        println!(
            "    {:<16} {rest:>6}",
            format!("{} more", classes.len() - 10)
        );
    }
    println!(
        "  outputs      {}  (annotated video)",
        s.video_out.display()
    );
    println!(
        "               {}  (one JSON line per frame)",
        s.json_out.display()
    );
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_empty() => {
            eprintln!("usage: demo [VIDEO] [--model PATH] [--out DIR] [--frames N]");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
