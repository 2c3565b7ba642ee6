// SPDX-License-Identifier: MPL-2.0
//! # yolometapublish
//!
//! Publishes the detections on each buffer (its [`DetectionMeta`](crate::meta::DetectionMeta),
//! with `yolotrack`'s ids when present) after DL Streamer's `gvametapublish`: one JSON line per
//! frame, in the format of [`crate::detection::json_line`], written to a file (`location`),
//! stdout (`location=-`) or a file descriptor the application opened (`fd`, which is duplicated,
//! so the application keeps and closes its own). With `post-messages=true` it also posts an
//! element message per frame on the bus: a `yolo-detections` structure with `frame`,
//! `timestamp` (when the buffer has one), `json` (the same line) and `detections`, a list of
//! `detection` structures (`label`, `class-id`, `confidence`, `x1`, `y1`, `x2`, `y2` in frame
//! pixels and, for tracked ones, `track-id`). One of the three outputs must be chosen.
//!
//! The video passes through untouched. Each line is flushed as it is written, so a reader
//! (`tail -f`) sees frames as they come. `frame` counts the buffers since the element started.
//!
//! ```text
//! gst-launch-1.0 -m filesrc location=bikes.mp4 ! decodebin ! videoconvert ! \
//!     yolodetect model=yolov8n.onnx ! yolotrack ! \
//!     yolometapublish location=bikes.jsonl post-messages=true ! fakesink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct YoloMetaPublish(ObjectSubclass<imp::YoloMetaPublish>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "yolometapublish",
        gst::Rank::NONE,
        YoloMetaPublish::static_type(),
    )
}
