// SPDX-License-Identifier: MPL-2.0

use std::sync::LazyLock;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use parking_lot::Mutex;

use crate::bytetrack::{ByteTracker, TrackerConfig};
use crate::meta::DetectionMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "yolotrack",
        gst::DebugColorFlags::empty(),
        Some("Tracks YOLO detections with ByteTrack"),
    )
});

/// Property values. `Default` is the single source of defaults (Ultralytics' bytetrack.yaml,
/// through `TrackerConfig::default`).
#[derive(Debug, Clone, PartialEq, Default)]
struct Settings {
    tracker: TrackerConfig,
}

/// Runtime data, built in `start`, dropped in `stop`.
struct State {
    tracker: ByteTracker,
    /// The current frame's tracked detections, reused so their storage is not reallocated.
    detections: Vec<crate::detection::Detection>,
    /// When each track started, for the GstAnalytics tracking mtds.
    #[cfg(feature = "v1_24")]
    track_times: crate::analytics::TrackTimes,
}

#[derive(Default)]
pub struct YoloTrack {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for YoloTrack {
    const NAME: &'static str = "GstYoloTrack";
    type Type = super::YoloTrack;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for YoloTrack {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let s = Settings::default().tracker;
            let thresh = |name: &str, nick: &str, blurb: &str, default: f32| {
                glib::ParamSpecFloat::builder(name)
                    .nick(nick)
                    .blurb(blurb)
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(default)
                    .mutable_playing()
                    .build()
            };
            vec![
                thresh(
                    "track-high-thresh",
                    "High threshold",
                    "Detections with at least this confidence are matched to tracks first (Ultralytics track_high_thresh)",
                    s.track_high_thresh,
                ),
                thresh(
                    "track-low-thresh",
                    "Low threshold",
                    "Detections above this confidence (and below track-high-thresh) keep tracked objects alive in a second association (track_low_thresh)",
                    s.track_low_thresh,
                ),
                thresh(
                    "new-track-thresh",
                    "New track threshold",
                    "Unmatched detections with at least this confidence start a new track (new_track_thresh)",
                    s.new_track_thresh,
                ),
                glib::ParamSpecUInt::builder("track-buffer")
                    .nick("Track buffer")
                    .blurb("Frames (at frame-rate 30) a lost track is kept for re-identification (track_buffer)")
                    .minimum(0)
                    .maximum(100_000)
                    .default_value(s.track_buffer)
                    .mutable_playing()
                    .build(),
                thresh(
                    "match-thresh",
                    "Match threshold",
                    "Largest matching cost (1 - IoU, times the score with fuse-score) accepted in the first association (match_thresh)",
                    s.match_thresh,
                ),
                glib::ParamSpecBoolean::builder("fuse-score")
                    .nick("Fuse score")
                    .blurb("Weight the IoU by the detection confidence when matching (fuse_score)")
                    .default_value(s.fuse_score)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("frame-rate")
                    .nick("Frame rate")
                    .blurb("Lost tracks are kept frame-rate / 30 * track-buffer frames; Ultralytics always uses 30 whatever the video's rate")
                    .minimum(1.0)
                    .maximum(1000.0)
                    .default_value(s.frame_rate)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock();
        let t = &mut s.tracker;
        match pspec.name() {
            "track-high-thresh" => {
                t.track_high_thresh = value.get().expect("type checked upstream")
            }
            "track-low-thresh" => t.track_low_thresh = value.get().expect("type checked upstream"),
            "new-track-thresh" => t.new_track_thresh = value.get().expect("type checked upstream"),
            "track-buffer" => t.track_buffer = value.get().expect("type checked upstream"),
            "match-thresh" => t.match_thresh = value.get().expect("type checked upstream"),
            "fuse-score" => t.fuse_score = value.get().expect("type checked upstream"),
            "frame-rate" => t.frame_rate = value.get().expect("type checked upstream"),
            _ => unimplemented!(),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
        if t.track_low_thresh >= t.track_high_thresh {
            gst::warning!(
                CAT,
                imp = self,
                "track-low-thresh {} >= track-high-thresh {}: the second association never runs",
                t.track_low_thresh,
                t.track_high_thresh
            );
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock();
        let t = &s.tracker;
        match pspec.name() {
            "track-high-thresh" => t.track_high_thresh.to_value(),
            "track-low-thresh" => t.track_low_thresh.to_value(),
            "new-track-thresh" => t.new_track_thresh.to_value(),
            "track-buffer" => t.track_buffer.to_value(),
            "match-thresh" => t.match_thresh.to_value(),
            "fuse-score" => t.fuse_score.to_value(),
            "frame-rate" => t.frame_rate.to_value(),
            _ => unimplemented!(),
        }
    }
}

impl GstObjectImpl for YoloTrack {}

impl ElementImpl for YoloTrack {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "YOLO object tracker",
                "Filter/Analyzer/Video",
                "Gives the detections yolodetect attached track ids (ByteTrack, as in Ultralytics)",
                "gst-yolo developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        // Only metadata is touched, so any raw video in any memory passes.
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::video::meta_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for YoloTrack {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let config = self.settings.lock().tracker.clone();
        gst::info!(CAT, imp = self, "started with {config:?}");
        *self.state.lock() = Some(State {
            tracker: ByteTracker::new(config),
            detections: Vec::with_capacity(64),
            #[cfg(feature = "v1_24")]
            track_times: crate::analytics::TrackTimes::new(crate::analytics::FORGET_TRACK_AFTER),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock() = None;
        gst::info!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view()
            && let Some(st) = self.state.lock().as_mut()
        {
            // After a seek the old positions mean nothing.
            gst::debug!(CAT, imp = self, "flush: forgetting all tracks");
            st.tracker.reset();
            #[cfg(feature = "v1_24")]
            st.track_times.clear();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let config = self.settings.lock().tracker.clone();
        let mut guard = self.state.lock();
        let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let t0 = Instant::now();

        {
            let Some(mut meta) = buf.meta_mut::<DetectionMeta>() else {
                gst::log!(CAT, imp = self, "no detections meta, buffer untouched");
                return Ok(gst::FlowSuccess::Ok);
            };
            if st.tracker.config() != &config {
                st.tracker.set_config(config);
            }
            let ids = st.tracker.update(meta.detections());
            for (d, id) in meta.detections_mut().iter_mut().zip(ids) {
                d.track_id = id;
            }
            // A copy for the ROI pass, which needs the buffer while the meta is released.
            st.detections.clear();
            st.detections.extend_from_slice(meta.detections());
        }
        let t1 = Instant::now();

        let n_roi = set_roi_track_ids(buf, &st.detections);
        #[cfg(feature = "v1_24")]
        self.add_analytics_tracks(buf, st);
        gst::log!(
            CAT,
            imp = self,
            "frame {}: {} of {} detections tracked, {} ROI metas updated; {:?}",
            st.tracker.frame_count(),
            st.detections
                .iter()
                .filter(|d| d.track_id.is_some())
                .count(),
            st.detections.len(),
            n_roi,
            t1 - t0
        );
        Ok(gst::FlowSuccess::Ok)
    }
}

#[cfg(feature = "v1_24")]
impl YoloTrack {
    /// A GstAnalytics tracking mtd per tracked detection, related to the object-detection mtd
    /// yolodetect added for it.
    fn add_analytics_tracks(&self, buf: &mut gst::BufferRef, st: &mut State) {
        let now = buf.pts().unwrap_or(gst::ClockTime::ZERO);
        let times = &mut st.track_times;
        times.next_frame();
        let added = crate::analytics::relation::add_tracks(buf, &st.detections, now, |id| {
            gst::ClockTime::from_nseconds(times.seen(id, now.nseconds()))
        });
        match added {
            Ok(n) => gst::log!(CAT, imp = self, "{n} GstAnalytics tracking mtds"),
            Err(err) => gst::warning!(CAT, imp = self, "GstAnalytics tracking mtds: {err}"),
        }
    }
}

/// Writes `track_id` (guint64) into the `detection` structure of the ROI metas yolodetect made
/// for `dets`: ROI `id` is the detection's index and its type the detection's label. ROIs that
/// do not fit that pattern (made by another element) are left alone. Returns how many changed.
fn set_roi_track_ids(buf: &mut gst::BufferRef, dets: &[crate::detection::Detection]) -> usize {
    let mut n = 0;
    for mut roi in buf.iter_meta_mut::<gst_video::VideoRegionOfInterestMeta>() {
        let Some(d) = usize::try_from(roi.id()).ok().and_then(|i| dets.get(i)) else {
            continue;
        };
        if roi.roi_type() != &*d.label || roi.param("detection").is_none() {
            continue;
        }
        // SAFETY: `roi` is a valid ROI meta on a writable buffer; the returned structure is
        // owned by the meta (no parent refcount), so it may be changed in place while the meta
        // is borrowed mutably, and it outlives this statement.
        unsafe {
            let s = gst_video::ffi::gst_video_region_of_interest_meta_get_param(
                roi.as_mut_ptr(),
                c"detection".as_ptr(),
            );
            if s.is_null() {
                continue;
            }
            let s = gst::StructureRef::from_glib_borrow_mut(s);
            match d.track_id {
                Some(id) => s.set("track_id", id),
                None => s.remove_field("track_id"),
            }
        }
        n += 1;
    }
    n
}
