// SPDX-License-Identifier: MPL-2.0
//! yolodetect's detection-filter properties (`class-thresholds`, `min-box-width`,
//! `min-box-height`, `max-box-width`, `max-box-height`, `roi`): their specs, values and checks.
//! The filtering itself is in [`crate::filters`] and [`crate::postprocess`], the crop in
//! [`crate::preprocess`]. All of them may change while PLAYING and are read per frame.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{CAT, YoloDetect};
use crate::filters::{self, SizeLimits};
use crate::frame::PixelLayout;
use crate::preprocess::Rect;

/// The filter property values.
#[derive(Debug, Clone)]
pub(super) struct FilterSettings {
    /// `class-thresholds` as the user wrote it (ids and/or names).
    pub class_thresholds_text: String,
    /// Resolved against the labels: per-class threshold table, NaN = `conf-threshold`.
    pub class_thresholds: Arc<[f32]>,
    pub size: SizeLimits,
    /// `roi` as written, and parsed (`None`: the whole frame).
    pub roi_text: String,
    pub roi: Option<Rect>,
}

impl Default for FilterSettings {
    fn default() -> Self {
        FilterSettings {
            class_thresholds_text: String::new(),
            class_thresholds: Arc::from(Vec::new()),
            size: SizeLimits::default(),
            roi_text: String::new(),
            roi: None,
        }
    }
}

/// What a frame needs of them; cloning allocates nothing.
#[derive(Debug, Clone, Default)]
pub(super) struct FrameFilters {
    pub class_thresholds: Arc<[f32]>,
    pub size: SizeLimits,
    pub roi: Option<Rect>,
}

impl FilterSettings {
    pub fn frame(&self) -> FrameFilters {
        FrameFilters {
            class_thresholds: self.class_thresholds.clone(),
            size: self.size,
            roi: self.roi,
        }
    }
}

/// The largest box limit a property takes (frame pixels).
const MAX_SIZE: u32 = 1 << 16;

pub(super) fn properties() -> Vec<glib::ParamSpec> {
    let size = |name: &str, nick: &str, blurb: &str| {
        glib::ParamSpecUInt::builder(name)
            .nick(nick)
            .blurb(blurb)
            .minimum(0)
            .maximum(MAX_SIZE)
            .default_value(0)
            .mutable_playing()
            .build()
    };
    vec![
        glib::ParamSpecString::builder("class-thresholds")
            .nick("Per-class confidence thresholds")
            .blurb("Comma-separated class:threshold pairs, the class an id or a name, e.g. \"0:0.5,car:0.3\"; a class's threshold replaces conf-threshold for that class (also below it), applied before NMS like DeepStream's per-class pre-cluster-threshold; empty: conf-threshold for all")
            .default_value(Some(""))
            .mutable_playing()
            .build(),
        size(
            "min-box-width",
            "Minimum box width",
            "Drop detections narrower than this many frame pixels (measured after clipping, before NMS); 0 = no limit",
        ),
        size(
            "min-box-height",
            "Minimum box height",
            "Drop detections shorter than this many frame pixels (measured after clipping, before NMS); 0 = no limit",
        ),
        size(
            "max-box-width",
            "Maximum box width",
            "Drop detections wider than this many frame pixels (measured after clipping, before NMS); 0 = no limit",
        ),
        size(
            "max-box-height",
            "Maximum box height",
            "Drop detections taller than this many frame pixels (measured after clipping, before NMS); 0 = no limit",
        ),
        glib::ParamSpecString::builder("roi")
            .nick("Region of interest")
            .blurb("\"x,y,width,height\" in frame pixels: only this part of the frame is letterboxed into the model, boxes come back in frame pixels clipped to it; clipped to the frame (a region outside it: a warning and the whole frame); for I420/NV12 its origin moves to even pixels; empty = the whole frame")
            .default_value(Some(""))
            .mutable_playing()
            .build(),
    ]
}

/// The property's value, or `None` when it is not a filter property.
pub(super) fn get(s: &FilterSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "class-thresholds" => s.class_thresholds_text.to_value(),
        "min-box-width" => s.size.min_w.to_value(),
        "min-box-height" => s.size.min_h.to_value(),
        "max-box-width" => s.size.max_w.to_value(),
        "max-box-height" => s.size.max_h.to_value(),
        "roi" => s.roi_text.to_value(),
        _ => return None,
    })
}

pub(super) fn is_filter_property(name: &str) -> bool {
    matches!(
        name,
        "class-thresholds"
            | "min-box-width"
            | "min-box-height"
            | "max-box-width"
            | "max-box-height"
            | "roi"
    )
}

/// The last ROI warning, so one bad setting warns once and not on every frame.
#[derive(Default)]
pub(super) struct RoiNote {
    warned: Option<(Rect, u32, u32)>,
}

impl YoloDetect {
    /// Sets a filter property. Text values that cannot be checked yet (class names before the
    /// labels are known, anything before start, when no bus would carry a warning) are checked
    /// at start, where an invalid one fails; while running an invalid one posts a warning and
    /// keeps the previous value.
    pub(super) fn set_filter(&self, name: &str, value: &glib::Value) {
        match name {
            "class-thresholds" => {
                let text: String = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                let labels = self.state.lock().as_ref().map(|st| st.labels.clone());
                let parsed = filters::parse_class_thresholds(&text, labels.as_deref());
                let mut s = self.settings.lock();
                match (parsed, labels) {
                    (Ok(pairs), _) => {
                        s.filters.class_thresholds = filters::threshold_table(&pairs);
                        s.filters.class_thresholds_text = text;
                    }
                    (Err(_), None) => {
                        s.filters.class_thresholds = Arc::from(Vec::new());
                        s.filters.class_thresholds_text = text;
                    }
                    (Err(e), Some(_)) => {
                        drop(s);
                        gst::element_imp_warning!(
                            self,
                            gst::LibraryError::Settings,
                            ("invalid class-thresholds \"{text}\": {e}; keeping the previous value")
                        );
                    }
                }
            }
            "roi" => {
                let text: String = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                let running = self.state.lock().is_some();
                let mut s = self.settings.lock();
                match filters::parse_roi(&text) {
                    Ok(roi) => {
                        s.filters.roi = roi;
                        s.filters.roi_text = text;
                    }
                    Err(_) if !running => {
                        // Refused by start, on the bus.
                        s.filters.roi = None;
                        s.filters.roi_text = text;
                    }
                    Err(e) => {
                        drop(s);
                        gst::element_imp_warning!(
                            self,
                            gst::LibraryError::Settings,
                            ("invalid roi: {e}; keeping the previous value")
                        );
                    }
                }
            }
            _ => {
                let v: u32 = value.get().expect("type checked upstream");
                let mut s = self.settings.lock();
                let size = &mut s.filters.size;
                match name {
                    "min-box-width" => size.min_w = v,
                    "min-box-height" => size.min_h = v,
                    "max-box-width" => size.max_w = v,
                    _ => size.max_h = v,
                }
            }
        }
    }

    /// Checks the text filters at start (the labels are known now): an invalid value fails
    /// start, so that a gst-launch user sees it.
    pub(super) fn resolve_filters(
        &self,
        f: &FilterSettings,
        labels: &[Arc<str>],
    ) -> Result<(), gst::ErrorMessage> {
        let text = &f.class_thresholds_text;
        let pairs = filters::parse_class_thresholds(text, Some(labels)).map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ("invalid class-thresholds \"{text}\": {e}")
            )
        })?;
        let roi = filters::parse_roi(&f.roi_text)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("invalid roi: {e}")))?;
        gst::debug!(
            CAT,
            imp = self,
            "class-thresholds \"{text}\" -> {pairs:?}, roi {roi:?}, sizes {:?}",
            f.size
        );
        let mut s = self.settings.lock();
        s.filters.class_thresholds = filters::threshold_table(&pairs);
        s.filters.roi = roi;
        Ok(())
    }

    /// After a model swap: the names in `class-thresholds` resolve against the new labels; if
    /// they no longer fit, every class falls back to `conf-threshold`, with a warning.
    pub(super) fn reresolve_class_thresholds(&self, labels: &[Arc<str>]) {
        let text = self.settings.lock().filters.class_thresholds_text.clone();
        let table = match filters::parse_class_thresholds(&text, Some(labels)) {
            Ok(pairs) => filters::threshold_table(&pairs),
            Err(e) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Settings,
                    ("class-thresholds \"{text}\" do not fit the new model ({e}): using \
                         conf-threshold for every class")
                );
                Arc::from(Vec::new())
            }
        };
        self.settings.lock().filters.class_thresholds = table;
    }

    /// The part of a `w x h` frame of `layout` to letterbox (`None`: all of it), and a
    /// warning to post (after the state lock is released) when the `roi` lies outside it.
    pub(super) fn frame_rect(
        &self,
        roi: Option<Rect>,
        layout: PixelLayout,
        w: u32,
        h: u32,
    ) -> (Option<Rect>, Option<String>) {
        let Some(roi) = roi else {
            return (None, None);
        };
        let mut note = self.roi_note.lock();
        if let Some(r) = roi.crop_for(layout, w, h) {
            if r != roi {
                gst::trace!(CAT, imp = self, "roi {roi:?} -> {r:?} in {w}x{h}");
            }
            // A later bad value, even the same one again, warns afresh.
            note.warned = None;
            return (Some(r), None);
        }
        if note.warned == Some((roi, w, h)) {
            return (None, None);
        }
        note.warned = Some((roi, w, h));
        (
            None,
            Some(format!(
                "roi {},{},{},{} lies outside the {w}x{h} frame: detecting on the whole frame",
                roi.x, roi.y, roi.w, roi.h
            )),
        )
    }

    pub(super) fn post_roi_warning(&self, text: Option<String>) {
        if let Some(text) = text {
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{text}"));
        }
    }
}
