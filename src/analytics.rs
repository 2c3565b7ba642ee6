// SPDX-License-Identifier: MPL-2.0
//! GStreamer's standard analytics metadata (`GstAnalyticsRelationMeta`, GStreamer >= 1.24).
//!
//! With the cargo feature `v1_24`, yolodetect adds one object-detection mtd per detection (label
//! quark, box in frame pixels, confidence) next to its own `DetectionMeta` and the ROI metas, and
//! yolotrack adds a tracking mtd per tracked detection, related to its object-detection mtd
//! (`RELATE_TO`, object detection first). Upstream elements (`objectdetectionoverlay`,
//! `analyticsoverlay`) and GStreamer bindings (`GstAnalytics-1.0` typelib) read them without
//! this crate.
//!
//! The box conversion and the tracks' first-seen times are plain code below, unit-tested on
//! every build; the GStreamer glue is in [`relation`], built only with `v1_24`.

use std::collections::HashMap;

use crate::detection::Detection;

/// The box of `d` in whole frame pixels (x, y, w, h) as an object-detection mtd stores it:
/// the same rounding as the ROI metas (edges rounded, origin clamped to the frame).
pub fn pixel_box(d: &Detection) -> (i32, i32, i32, i32) {
    let x = d.x1.max(0.0).round() as i32;
    let y = d.y1.max(0.0).round() as i32;
    let w = (d.x2.round() as i32).saturating_sub(x).max(0);
    let h = (d.y2.round() as i32).saturating_sub(y).max(0);
    (x, y, w, h)
}

/// Which object-detection mtd (index into `candidates`) belongs to `d`: same label, same
/// confidence, then the nearest box. `used` marks candidates already taken by other detections.
/// An upstream element may have put its own mtds in the same relation meta first, so the mtds'
/// ids cannot be assumed to be the detections' indices.
pub fn match_candidate(d: &Detection, candidates: &[Candidate], used: &[bool]) -> Option<usize> {
    let (x, y, w, h) = pixel_box(d);
    candidates
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            !used[*i] && c.label == *d.label && c.confidence.to_bits() == d.confidence.to_bits()
        })
        .min_by_key(|(_, c)| {
            (i64::from(c.x) - i64::from(x)).abs()
                + (i64::from(c.y) - i64::from(y)).abs()
                + (i64::from(c.w) - i64::from(w)).abs()
                + (i64::from(c.h) - i64::from(h)).abs()
        })
        .map(|(i, _)| i)
}

/// One object-detection mtd as read back from a relation meta, for [`match_candidate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub label: String,
    pub confidence: f32,
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

/// Frames after which an unseen track's first-seen time is dropped: ten times ByteTrack's
/// default track buffer (30 frames), beyond which a lost track never comes back.
pub const FORGET_TRACK_AFTER: u64 = 300;

/// When each track was first seen (buffer time, ns), for the tracking mtds' `first_seen`.
/// Tracks unseen for longer than `forget_after` frames are dropped so the map stays small on
/// endless streams (ByteTrack never revives a track lost for more than its track buffer).
#[derive(Debug)]
pub struct TrackTimes {
    first_seen: HashMap<u64, (u64, u64)>,
    frame: u64,
    forget_after: u64,
}

impl TrackTimes {
    pub fn new(forget_after: u64) -> Self {
        Self {
            first_seen: HashMap::new(),
            frame: 0,
            forget_after,
        }
    }

    /// Starts a new frame; the ids on it then go through [`Self::seen`].
    pub fn next_frame(&mut self) {
        self.frame += 1;
        let (frame, keep) = (self.frame, self.forget_after);
        self.first_seen
            .retain(|_, (_, last)| frame.saturating_sub(*last) <= keep);
    }

    /// Track `id` is on the current frame at time `now`: returns when it was first seen.
    pub fn seen(&mut self, id: u64, now: u64) -> u64 {
        let frame = self.frame;
        let e = self.first_seen.entry(id).or_insert((now, frame));
        e.1 = frame;
        e.0
    }

    pub fn clear(&mut self) {
        self.first_seen.clear();
    }

    pub fn len(&self) -> usize {
        self.first_seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first_seen.is_empty()
    }
}

#[cfg(feature = "v1_24")]
pub mod relation {
    //! The GStreamer side: adding and reading the mtds on a buffer.
    use gst_analytics::prelude::*;
    use gst_analytics::{AnalyticsODMtd, AnalyticsRelationMeta, AnalyticsTrackingMtd, RelTypes};

    use super::{Candidate, match_candidate, pixel_box};
    use crate::detection::Detection;

    /// The relation meta of `buf`, added if there is none yet (another analytics element
    /// upstream may have made one: ours go into the same one, as the API intends).
    fn relation_meta(
        buf: &mut gst::BufferRef,
    ) -> gst::MetaRefMut<'_, AnalyticsRelationMeta, gst::meta::Standalone> {
        if buf.meta::<AnalyticsRelationMeta>().is_none() {
            AnalyticsRelationMeta::add(buf);
        }
        buf.meta_mut::<AnalyticsRelationMeta>()
            .expect("relation meta just added")
    }

    /// Adds one object-detection mtd per detection. Returns the mtds' ids, in `dets` order.
    pub fn add_detections(
        buf: &mut gst::BufferRef,
        dets: &[Detection],
    ) -> Result<Vec<u32>, glib::BoolError> {
        let mut meta = relation_meta(buf);
        let mut ids = Vec::with_capacity(dets.len());
        for d in dets {
            let (x, y, w, h) = pixel_box(d);
            let mtd =
                meta.add_od_mtd(glib::Quark::from_str(&*d.label), x, y, w, h, d.confidence)?;
            ids.push(mtd.id());
        }
        Ok(ids)
    }

    /// The object-detection mtds on `buf` (empty without a relation meta).
    pub fn detections(buf: &gst::BufferRef) -> Vec<Candidate> {
        let Some(meta) = buf.meta::<AnalyticsRelationMeta>() else {
            return Vec::new();
        };
        meta.iter::<AnalyticsODMtd>()
            .filter_map(|m| {
                let loc = m.location().ok()?;
                Some(Candidate {
                    id: m.id(),
                    label: m
                        .obj_type()
                        .map(|q| q.as_str().to_string())
                        .unwrap_or_default(),
                    confidence: loc.loc_conf_lvl,
                    x: loc.x,
                    y: loc.y,
                    w: loc.w,
                    h: loc.h,
                })
            })
            .collect()
    }

    /// For each tracked detection, a tracking mtd (track id, first seen, last seen = `now`)
    /// related to the detection's object-detection mtd. `first_seen(track_id)` gives when the
    /// track started. Returns how many tracking mtds were added; detections without an
    /// object-detection mtd (yolodetect built without `v1_24`, meta dropped) are skipped.
    pub fn add_tracks(
        buf: &mut gst::BufferRef,
        dets: &[Detection],
        now: gst::ClockTime,
        mut first_seen: impl FnMut(u64) -> gst::ClockTime,
    ) -> Result<usize, glib::BoolError> {
        let candidates = detections(buf);
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut used = vec![false; candidates.len()];
        let mut links = Vec::new();
        for d in dets {
            let Some(track_id) = d.track_id else { continue };
            if let Some(i) = match_candidate(d, &candidates, &used) {
                used[i] = true;
                links.push((candidates[i].id, track_id));
            }
        }
        for &(od_id, track_id) in &links {
            // A fresh MetaRefMut per step: `mtd_mut` keeps its meta borrowed for good.
            let trk_id = relation_meta(buf)
                .add_tracking_mtd(track_id, first_seen(track_id))?
                .id();
            relation_meta(buf)
                .mtd_mut::<AnalyticsTrackingMtd>(trk_id)
                .expect("tracking mtd just added")
                .update_last_seen(now)?;
            relation_meta(buf).set_relation(RelTypes::RELATE_TO, od_id, trk_id)?;
        }
        Ok(links.len())
    }

    /// The tracking mtds related to object-detection mtd `od_id` on `buf`: (track id,
    /// first seen, last seen).
    pub fn tracks_of(
        buf: &gst::BufferRef,
        od_id: u32,
    ) -> Vec<(u64, gst::ClockTime, gst::ClockTime)> {
        let Some(meta) = buf.meta::<AnalyticsRelationMeta>() else {
            return Vec::new();
        };
        meta.iter_direct_related::<AnalyticsTrackingMtd>(od_id, RelTypes::RELATE_TO)
            .map(|m| {
                let (id, first, last, _lost) = m.info();
                (id, first, last)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn det(label: &str, conf: f32, b: [f32; 4]) -> Detection {
        Detection {
            class_id: 0,
            label: Arc::from(label),
            confidence: conf,
            x1: b[0],
            y1: b[1],
            x2: b[2],
            y2: b[3],
            track_id: None,
        }
    }

    fn cand(id: u32, label: &str, conf: f32, b: (i32, i32, i32, i32)) -> Candidate {
        Candidate {
            id,
            label: label.into(),
            confidence: conf,
            x: b.0,
            y: b.1,
            w: b.2,
            h: b.3,
        }
    }

    #[test]
    fn pixel_box_rounds_edges_like_the_roi_metas() {
        assert_eq!(
            pixel_box(&det("a", 0.5, [10.4, 20.6, 110.5, 60.4])),
            (10, 21, 101, 39)
        );
        // Clamped origin, width from the clamped origin; an inverted box is empty, not negative.
        assert_eq!(
            pixel_box(&det("a", 0.5, [-5.0, -3.0, 40.0, 30.0])),
            (0, 0, 40, 30)
        );
        assert_eq!(
            pixel_box(&det("a", 0.5, [50.0, 50.0, 40.0, 45.0])),
            (50, 50, 0, 0)
        );
    }

    #[test]
    fn match_candidate_needs_label_and_confidence_then_takes_the_nearest_box() {
        let d = det("car", 0.75, [100.0, 100.0, 200.0, 150.0]);
        let cands = [
            cand(0, "person", 0.75, (100, 100, 100, 50)), // other label
            cand(1, "car", 0.74, (100, 100, 100, 50)),    // other confidence
            cand(2, "car", 0.75, (300, 300, 100, 50)),    // far
            cand(3, "car", 0.75, (101, 100, 100, 50)),    // near
        ];
        assert_eq!(match_candidate(&d, &cands, &[false; 4]), Some(3));
        assert_eq!(
            match_candidate(&d, &cands, &[false, false, false, true]),
            Some(2)
        );
        assert_eq!(
            match_candidate(&d, &cands, &[false, false, true, true]),
            None
        );
        assert_eq!(match_candidate(&d, &[], &[]), None);
    }

    #[test]
    fn track_times_keep_first_seen_and_forget_old_tracks() {
        let mut t = TrackTimes::new(2);
        t.next_frame();
        assert_eq!(t.seen(7, 1_000), 1_000);
        t.next_frame();
        assert_eq!(t.seen(7, 2_000), 1_000, "first seen stays");
        assert_eq!(t.seen(8, 2_000), 2_000);
        // 7 last seen on frame 2; frames 3 and 4 without it keep it, frame 5 forgets it.
        t.next_frame();
        t.next_frame();
        assert_eq!(t.len(), 2);
        t.next_frame();
        assert_eq!(t.len(), 0);
        assert_eq!(t.seen(7, 5_000), 5_000, "a forgotten id starts over");
        t.clear();
        assert!(t.is_empty());
    }
}
