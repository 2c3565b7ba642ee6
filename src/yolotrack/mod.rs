// SPDX-License-Identifier: MPL-2.0
//! # yolotrack
//!
//! Multi-object tracking with ByteTrack, the way Ultralytics' `model.track(tracker=
//! "bytetrack.yaml")` does it: reads the detections `yolodetect` attached to each buffer (its
//! [`DetectionMeta`](crate::meta::DetectionMeta)) and writes a track id into each detection that
//! belongs to a confirmed track (`Detection::track_id`), and into the `detection` structure of
//! the matching `GstVideoRegionOfInterestMeta` as `track_id` (guint64). The property defaults
//! are Ultralytics' `bytetrack.yaml`; the maths is in [`crate::bytetrack`].
//!
//! Ultralytics' track mode outputs only the tracked boxes. As a filter, yolotrack keeps every
//! detection and leaves `track_id` unset on the ones no confirmed track owns (low confidence, or
//! the first sighting of a new object), so downstream elements decide what to show. Boxes stay
//! the detector's (Ultralytics replaces them with the Kalman-filtered ones).
//!
//! Buffers without a `DetectionMeta` pass through and do not advance the tracker; a flush
//! (seek) forgets all tracks, and ids never repeat.
//!
//! ```text
//! gst-launch-1.0 filesrc location=bikes.mp4 ! decodebin ! videoconvert ! \
//!     yolodetect model=yolov8n.onnx ! yolotrack ! yolooverlay ! videoconvert ! autovideosink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct YoloTrack(ObjectSubclass<imp::YoloTrack>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "yolotrack",
        gst::Rank::NONE,
        YoloTrack::static_type(),
    )
}
