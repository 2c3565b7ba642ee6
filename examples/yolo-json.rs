// SPDX-License-Identifier: MPL-2.0
//! Prints yolodetect's detections as one JSON line per frame.
//!
//! Pipeline: `uridecodebin uri=<input> ! videoconvert ! yolodetect [! yolotrack] ! appsink`,
//! reading the detections through the crate's public [`DetectionMeta`] API. With `--track`,
//! tracked detections carry `"track_id": n`.
//!
//! ```text
//! cargo run --release --example yolo-json -- <file or URI> [--model PATH] [--conf X] [--iou X]
//!     [--track] [--set PROPERTY=VALUE]...
//! ```
//! `--set` sets any other yolodetect property, e.g. `--set chroma-upsampling=nearest`.
//! The model defaults to `$GST_YOLO_MODEL`, then `../shared/models/yolov8n.onnx`. Works for a
//! still image (JPEG, PNG) as well as video. Exits non-zero with the bus error on failure.

use std::path::PathBuf;
use std::process::ExitCode;

use gst::prelude::*;
use gstyolo::meta::DetectionMeta;

struct Args {
    input: String,
    model: Option<PathBuf>,
    conf: Option<f32>,
    iou: Option<f32>,
    track: bool,
    /// Other yolodetect properties, as `name=value`.
    set: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut input, mut model, mut conf, mut iou) = (None, None, None, None);
    let mut track = false;
    let mut set = Vec::new();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--model" => model = Some(PathBuf::from(val("--model")?)),
            "--conf" => {
                conf = Some(
                    val("--conf")?
                        .parse()
                        .map_err(|_| "--conf takes a number")?,
                )
            }
            "--iou" => iou = Some(val("--iou")?.parse().map_err(|_| "--iou takes a number")?),
            "--track" => track = true,
            "--set" => {
                let kv = val("--set")?;
                let (k, v) = kv.split_once('=').ok_or("--set takes PROPERTY=VALUE")?;
                set.push((k.to_string(), v.to_string()));
            }
            "-h" | "--help" => return Err(String::new()),
            _ if input.is_none() => input = Some(a),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    Ok(Args {
        input: input.ok_or("missing input file or URI")?,
        model,
        conf,
        iou,
        track,
        set,
    })
}

fn default_model() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GST_YOLO_MODEL") {
        return Some(PathBuf::from(p));
    }
    let shared = std::env::var_os("GST_YOLO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let p = shared.join("models/yolov8n.onnx");
    p.exists().then_some(p)
}

fn to_uri(input: &str) -> Result<String, String> {
    if input.contains("://") {
        return Ok(input.to_string());
    }
    let p = std::fs::canonicalize(input).map_err(|e| format!("{input}: {e}"))?;
    gst::glib::filename_to_uri(&p, None)
        .map(|u| u.to_string())
        .map_err(|e| e.to_string())
}

fn run(args: Args) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    let model = args.model.or_else(default_model).ok_or(
        "no model: pass --model PATH or set GST_YOLO_MODEL (export one with `yolo export model=yolov8n.pt format=onnx`)",
    )?;
    let uri = to_uri(&args.input)?;

    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("uridecodebin")
        .property("uri", &uri)
        .build()
        .map_err(|e| e.to_string())?;
    let convert = gst::ElementFactory::make("videoconvert")
        .build()
        .map_err(|e| e.to_string())?;
    let mut det =
        gst::ElementFactory::make("yolodetect").property("model", model.display().to_string());
    if let Some(c) = args.conf {
        det = det.property("conf-threshold", c);
    }
    if let Some(i) = args.iou {
        det = det.property("iou-threshold", i);
    }
    let det = det.build().map_err(|e| e.to_string())?;
    for (k, v) in &args.set {
        if det.find_property(k).is_none() {
            return Err(format!("yolodetect has no property {k}"));
        }
        det.set_property_from_str(k, v);
    }
    let sink = gst_app::AppSink::builder().sync(false).build();
    let mut chain = vec![convert.clone(), det];
    if args.track {
        chain.push(
            gst::ElementFactory::make("yolotrack")
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    chain.push(sink.clone().upcast());
    pipeline.add(&src).map_err(|e| e.to_string())?;
    pipeline.add_many(&chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
    let convert_sink = convert
        .static_pad("sink")
        .expect("videoconvert has a sink pad");
    src.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if is_video && !convert_sink.is_linked() {
            let _ = pad.link(&convert_sink);
        }
    });

    let mut frame = 0u64;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (w, h) = sample
                    .caps()
                    .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
                    .map_or((0, 0), |i| (i.width(), i.height()));
                let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                let meta = buf.meta::<DetectionMeta>();
                let line = gstyolo::detection::json_line(
                    frame,
                    buf.pts().map(|t| t.nseconds()),
                    w,
                    h,
                    meta.as_ref().map_or(&[][..], |m| m.detections()),
                );
                println!("{line}");
                frame += 1;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    if pipeline.set_state(gst::State::Playing).is_err() {
        let e = bus_error(&pipeline);
        let _ = pipeline.set_state(gst::State::Null);
        return Err(e);
    }
    let bus = pipeline.bus().expect("pipeline has a bus");
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
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn bus_error(pipeline: &gst::Pipeline) -> String {
    pipeline
        .bus()
        .and_then(|b| {
            b.timed_pop_filtered(gst::ClockTime::from_seconds(2), &[gst::MessageType::Error])
        })
        .and_then(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "could not start the pipeline".into())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_empty() => {
            eprintln!(
                "usage: yolo-json <file or URI> [--model PATH] [--conf X] [--iou X] [--track] [--set PROPERTY=VALUE]..."
            );
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
