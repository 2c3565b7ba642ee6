// SPDX-License-Identifier: MPL-2.0
#![allow(unused_doc_comments)]

//! # gst-yolo
//!
//! GStreamer elements for real-time YOLO object detection with ONNX Runtime: `yolodetect`
//! attaches detections to each buffer, `yolotrack` gives them track ids (ByteTrack),
//! `yolooverlay` draws them and `yolometapublish` writes them as JSON lines. Applications read
//! the detections through [`meta::DetectionMeta`].

use gst::glib;

pub mod analytics;
pub mod bytetrack;
pub mod detection;
pub mod draw;
pub mod engine;
pub mod filters;
mod font;
pub mod frame;
pub mod labels;
pub mod meta;
pub mod metrics;
pub mod postprocess;
pub mod preprocess;
pub mod skip;
pub mod stats;
mod video;
pub mod yolodetect;
pub mod yolometapublish;
pub mod yolooverlay;
pub mod yolotrack;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // The metrics endpoint, when GST_YOLO_METRICS_ADDR asks for one; a failure is reported
    // by the first yolodetect that starts.
    metrics::serve_from_env();
    yolodetect::register(plugin)?;
    yolooverlay::register(plugin)?;
    yolometapublish::register(plugin)?;
    yolotrack::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    yolo,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    // GStreamer's list of licences knows "MPL", not the SPDX "MPL-2.0".
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // GST_YOLO_PACKAGE_ORIGIN at build time (build.rs), else "Unknown package origin".
    env!("GST_YOLO_PACKAGE_ORIGIN_URL"),
    env!("BUILD_REL_DATE")
);
