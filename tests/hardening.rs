// SPDX-License-Identifier: MPL-2.0
//! Input that must not crash or hang the host process: each test here failed (crashed, hung or
//! passed silently) before the fix it names.

mod common;

use std::sync::Arc;

use common::*;
use gst::prelude::*;
use gstyolo::meta::{Detection, DetectionMeta};

fn model_arg(name: &str) -> String {
    format!("model=\"{}\"", model(name).display())
}

/// Pushes `buf` with `caps` through `element` (a gst-launch fragment) and returns the bus
/// error's text, or `Ok` at EOS.
fn push_one(element: &str, caps: &str, buf: gst::Buffer) -> Result<(), String> {
    init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src caps=\"{caps}\" format=time ! {element} ! fakesink"
    ))
    .map_err(|e| e.to_string())?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline".to_string())?;
    let src = pipeline
        .by_name("src")
        .and_then(|s| s.downcast::<gst_app::AppSrc>().ok())
        .ok_or("no appsrc")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let _ = src.push_buffer(buf);
    let _ = src.end_of_stream();
    let bus = pipeline.bus().ok_or("no bus")?;
    let res = match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(m) if m.type_() == gst::MessageType::Error => Err(error_text(&m)),
        Some(_) => Ok(()),
        None => Err("timed out".into()),
    };
    pipeline.set_state(gst::State::Null).ok();
    res
}

/// A 48x64 RGB buffer (9216 bytes) whose `GstVideoMeta` claims a 16 MiB stride.
fn lying_stride_buffer(with_detection: bool) -> gst::Buffer {
    init();
    let mut buf = gst::Buffer::from_mut_slice(vec![0u8; 48 * 64 * 3]);
    {
        let b = buf.get_mut().expect("fresh buffer is writable");
        gst_video::VideoMeta::add_full(
            b,
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::Rgb,
            48,
            64,
            &[0],
            &[16 << 20],
        )
        .expect("add video meta");
        if with_detection {
            let d = Detection {
                class_id: 0,
                label: Arc::from("person"),
                confidence: 0.9,
                x1: 2.0,
                y1: 2.0,
                x2: 40.0,
                y2: 60.0,
            };
            DetectionMeta::add(b, vec![d], (640, 640));
        }
    }
    buf
}

const RGB_48X64: &str = "video/x-raw,format=RGB,width=48,height=64,framerate=30/1";

#[test]
fn video_meta_stride_past_the_buffer_is_an_error_not_a_crash() {
    let e = push_one(
        &format!("yolodetect {}", model_arg("yolov8n.onnx")),
        RGB_48X64,
        lying_stride_buffer(false),
    )
    .expect_err("yolodetect must refuse the frame");
    assert!(e.contains("stride 16777216"), "{e}");

    let e = push_one("yolooverlay", RGB_48X64, lying_stride_buffer(true))
        .expect_err("yolooverlay must refuse the frame");
    assert!(e.contains("stride 16777216"), "{e}");
}
