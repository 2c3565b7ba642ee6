// SPDX-License-Identifier: MPL-2.0
//! # yolodetect
//!
//! Runs a YOLO ONNX model through ONNX Runtime on every video frame and attaches the detections
//! as [`DetectionMeta`](crate::meta::DetectionMeta) plus one `GstVideoRegionOfInterestMeta` per
//! detection (type = label, with a `detection` params structure holding `label_id`,
//! `confidence` and normalised `x_min`, `y_min`, `x_max`, `y_max`). The video itself passes
//! through untouched: same data, PTS, DTS and duration.
//!
//! Letterboxing and colour conversion happen inside the element with Ultralytics' semantics,
//! so no `videoscale` or `videoconvert` is needed in front of it for the supported formats.
//!
//! ```text
//! gst-launch-1.0 filesrc location=bikes.mp4 ! decodebin ! videoconvert ! \
//!     yolodetect model=yolov8n.onnx ! yolooverlay ! videoconvert ! autovideosink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;

pub use imp::ExecutionProvider;

glib::wrapper! {
    pub struct YoloDetect(ObjectSubclass<imp::YoloDetect>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "doc")]
    ExecutionProvider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "yolodetect",
        gst::Rank::NONE,
        YoloDetect::static_type(),
    )
}
