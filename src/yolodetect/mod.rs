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
//!
//! ## Execution providers
//!
//! `execution-provider` picks ONNX Runtime's CPU, CUDA or TensorRT provider; an explicitly
//! requested GPU provider that cannot start is an error that says what is missing, never a
//! silent fall back to the CPU. `auto` serves frames on CUDA (else the CPU) at once and, where
//! TensorRT can start, builds the TensorRT engine on a background thread and switches to it at a
//! frame boundary. On the GPU providers the model's input and output are bound to preallocated
//! device memory (pinned host memory on the host side): one host-to-device copy of the input
//! and one device-to-host copy of the output per frame. `cuda-*` and `trt-*` properties tune the
//! providers; TensorRT engines are cached under `trt-engine-cache-dir`, one subdirectory per
//! model hash, precision, GPU and TensorRT/ONNX Runtime version.
//!
//! ## Filters
//!
//! As DeepStream's `nvinfer`: `class-thresholds` (per-class confidence thresholds), box size
//! limits (`min-box-width`, `min-box-height`, `max-box-width`, `max-box-height`, frame pixels),
//! both applied before NMS, and `roi` (only that region of the frame is letterboxed into the
//! model; boxes come back in frame pixels). All change while PLAYING.
//!
//! ```text
//! gst-launch-1.0 filesrc location=bikes.mp4 ! decodebin ! videoconvert ! \
//!     yolodetect model=yolov8n.onnx class-thresholds="person:0.6" roi="0,0,960,540" ! \
//!     yolooverlay ! videoconvert ! autovideosink
//! ```
//!
//! `pipelined=true` letterboxes frame N+1 and decodes frame N-1 on a helper thread while the
//! model runs on frame N, so a GPU never waits for the CPU stages; each buffer then leaves two
//! frames later (EOS and caps changes drain the frames in flight).
//!
//! Element messages: `yolodetect-started` (`execution-provider`, `requested-provider`, and
//! `<provider>-unavailable` = reason for each provider `auto` passed over);
//! `yolodetect-tensorrt-build` (`status` = `started` | `progress` | `failed`, see
//! `providers.rs`); `yolodetect-provider-switched` (`from`, `to`, `build-s`).

use gst::glib;
use gst::prelude::*;

mod imp;
mod providers;

pub use imp::{ChromaUpsampling, ExecutionProvider};
pub use providers::CudaConvAlgoSearch;

glib::wrapper! {
    pub struct YoloDetect(ObjectSubclass<imp::YoloDetect>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "doc")]
    ExecutionProvider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    #[cfg(feature = "doc")]
    ChromaUpsampling::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    #[cfg(feature = "doc")]
    CudaConvAlgoSearch::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "yolodetect",
        gst::Rank::NONE,
        YoloDetect::static_type(),
    )
}
