// SPDX-License-Identifier: MPL-2.0
//! # yolooverlay
//!
//! Draws the detections that `yolodetect` attached to each buffer (its
//! [`DetectionMeta`](crate::meta::DetectionMeta)) into the video: a box outline per detection
//! in the class colour (Ultralytics' palette) and a filled tag with "label 0.87" above it
//! ("#17 label 0.87" for a detection `yolotrack` gave an id).
//! Drawing happens in place on RGB-family, I420 and NV12 frames of any size and stride, so no
//! `videoconvert` is needed between the two elements.
//!
//! Buffers without detections pass through untouched and are never mapped for writing, so they
//! are not copied either.
//!
//! ```text
//! gst-launch-1.0 filesrc location=bus.jpg ! jpegdec ! videoconvert ! \
//!     yolodetect model=yolov8n.onnx ! yolooverlay line-width=3 ! videoconvert ! \
//!     jpegenc ! filesink location=bus-overlay.jpg
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct YoloOverlay(ObjectSubclass<imp::YoloOverlay>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "yolooverlay",
        gst::Rank::NONE,
        YoloOverlay::static_type(),
    )
}
