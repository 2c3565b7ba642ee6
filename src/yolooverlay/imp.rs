// SPDX-License-Identifier: MPL-2.0

use std::sync::LazyLock;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use parking_lot::Mutex;

use crate::detection::Detection;
use crate::draw::{self, DrawStyle};
use crate::frame::{PixelLayout, YuvColor};
use crate::meta::DetectionMeta;
use crate::video::{frame_mut, layout_of, supported_caps};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "yolooverlay",
        gst::DebugColorFlags::empty(),
        Some("Draws YOLO detections"),
    )
});

/// Property values. `Default` is the single source of defaults.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    /// 0 = auto.
    line_width: u32,
    /// 0 = auto.
    font_scale: f64,
    draw_labels: bool,
    draw_confidence: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            line_width: 0,
            font_scale: 0.0,
            draw_labels: true,
            draw_confidence: true,
        }
    }
}

impl Settings {
    fn style(&self) -> DrawStyle {
        DrawStyle {
            line_width: self.line_width,
            font_scale: self.font_scale as f32,
            draw_labels: self.draw_labels,
            draw_confidence: self.draw_confidence,
        }
    }
}

/// Runtime data, built in `set_caps`, dropped in `stop`.
struct State {
    info: gst_video::VideoInfo,
    layout: PixelLayout,
    color: YuvColor,
    /// The current buffer's detections, copied out of the meta so the frame can be mapped
    /// writable; reused so steady-state frames do not allocate.
    detections: Vec<Detection>,
}

#[derive(Default)]
pub struct YoloOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for YoloOverlay {
    const NAME: &'static str = "GstYoloOverlay";
    type Type = super::YoloOverlay;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for YoloOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let s = Settings::default();
            vec![
                glib::ParamSpecUInt::builder("line-width")
                    .nick("Line width")
                    .blurb("Box outline width in pixels; 0 = auto (max(2, shorter frame side / 300))")
                    .minimum(0)
                    .maximum(1000)
                    .default_value(s.line_width)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("font-scale")
                    .nick("Font scale")
                    .blurb("Label text size as a multiple of the 8x8 font, rounded to an integer; 0 = auto (shorter frame side / 360)")
                    .minimum(0.0)
                    .maximum(64.0)
                    .default_value(s.font_scale)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-labels")
                    .nick("Draw labels")
                    .blurb("Write the class label in each box's tag")
                    .default_value(s.draw_labels)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-confidence")
                    .nick("Draw confidence")
                    .blurb("Write the confidence (two decimals) in each box's tag; with draw-labels off too, no tag is drawn")
                    .default_value(s.draw_confidence)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock();
        match pspec.name() {
            "line-width" => s.line_width = value.get().expect("type checked upstream"),
            "font-scale" => s.font_scale = value.get().expect("type checked upstream"),
            "draw-labels" => s.draw_labels = value.get().expect("type checked upstream"),
            "draw-confidence" => s.draw_confidence = value.get().expect("type checked upstream"),
            _ => unimplemented!(),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock();
        match pspec.name() {
            "line-width" => s.line_width.to_value(),
            "font-scale" => s.font_scale.to_value(),
            "draw-labels" => s.draw_labels.to_value(),
            "draw-confidence" => s.draw_confidence.to_value(),
            _ => unimplemented!(),
        }
    }
}

impl GstObjectImpl for YoloOverlay {}

impl ElementImpl for YoloOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "YOLO detection overlay",
                "Filter/Effect/Video",
                "Draws the boxes and labels that yolodetect attached to each buffer",
                "gst-yolo developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = supported_caps();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("valid template"),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("valid template"),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for YoloOverlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock() = None;
        gst::info!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {incaps}"))?;
        let (layout, color) = layout_of(&info)
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported caps {incaps}"))?;
        gst::debug!(CAT, imp = self, "configured for {incaps}");
        let mut state = self.state.lock();
        // Keep the detection buffer's capacity across renegotiations.
        let detections = state
            .take()
            .map(|st| st.detections)
            .unwrap_or_else(|| Vec::with_capacity(64));
        *state = Some(State {
            info,
            layout,
            color,
            detections,
        });
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let style = self.settings.lock().style();
        let mut guard = self.state.lock();
        let Some(st) = guard.as_mut() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["no caps before the first buffer"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let t0 = Instant::now();

        // Read-only look first: a writable map of a shared buffer copies its memory, so frames
        // with nothing to draw must not be mapped for writing at all.
        st.detections.clear();
        if let Some(meta) = buf.meta::<DetectionMeta>() {
            st.detections.extend_from_slice(meta.detections());
        }
        if st.detections.is_empty() {
            gst::log!(CAT, imp = self, "no detections, buffer untouched");
            return Ok(gst::FlowSuccess::Ok);
        }
        let t1 = Instant::now();

        let mut frame =
            gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &st.info).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ["cannot map the video frame for writing"]
                );
                gst::FlowError::Error
            })?;
        let mut target = frame_mut(&mut frame, st.layout, st.color).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ["cannot access the frame's planes: {e}"]
            );
            gst::FlowError::Error
        })?;
        let t2 = Instant::now();

        draw::draw_detections(&mut target, &st.detections, &style);
        let t3 = Instant::now();

        gst::log!(
            CAT,
            imp = self,
            "drew {} detections; meta {:?} map {:?} draw {:?}",
            st.detections.len(),
            t1 - t0,
            t2 - t1,
            t3 - t2
        );
        Ok(gst::FlowSuccess::Ok)
    }
}
