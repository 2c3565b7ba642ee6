// SPDX-License-Identifier: MPL-2.0
//! yolodetect on a live source: `inference-interval`, QoS (frames that are already late pass
//! through without inference instead of making every later frame later still) and the latency
//! the element reports. Which frames to skip is decided in `crate::skip`; this is the glue.
//! Under its own lock: QoS and latency events arrive on other threads while a frame is in the
//! model under the state lock.

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::{CAT, FrameParams, YoloDetect, attach_roi_metas};
use crate::meta::DetectionMeta;
use crate::skip::{Decision, FrameSkipper};
use crate::stats::{Stage, Summary};

#[derive(Default)]
pub(super) struct Live {
    skipper: FrameSkipper,
    /// The processing latency reported in latency queries.
    reported: gst::ClockTime,
    /// Upstream is live (from the last latency query).
    is_live: bool,
    pub(super) skipped_interval: u64,
    pub(super) skipped_late: u64,
}

/// Latency is reported again when frames take this much longer than reported.
const LATENCY_GROWTH: f64 = 1.25;

impl YoloDetect {
    /// Whether the model skips this frame (`inference-interval`, or late under QoS). A skipped
    /// frame passes on with [`YoloDetect::attach_repeated`] or nothing.
    pub(super) fn skip_frame(&self, buf: &gst::BufferRef, fp: &FrameParams) -> bool {
        let obj = self.obj();
        let rt = buf.pts().and_then(|pts| {
            obj.segment()
                .downcast_ref::<gst::ClockTime>()
                .and_then(|seg| seg.to_running_time(pts))
        });
        let now = obj.current_running_time();
        let decision = {
            let mut l = self.live.lock();
            let d = l.skipper.decide(
                fp.interval,
                obj.is_qos(),
                rt.map(gst::ClockTime::nseconds),
                now.map(gst::ClockTime::nseconds),
            );
            match d {
                Decision::Infer => return false,
                Decision::Interval => l.skipped_interval += 1,
                Decision::Late => l.skipped_late += 1,
            }
            d
        };
        if let Some(m) = &self.stats.lock().metrics {
            m.skipped(decision == Decision::Late);
        }
        gst::log!(
            CAT,
            imp = self,
            "{decision:?}: no inference on the frame at {} (now {}; {:?})",
            rt.display(),
            now.display(),
            self.live.lock().skipper
        );
        true
    }

    /// With `repeat-detections`, gives a skipped frame the last detections, marked repeated.
    pub(super) fn attach_repeated(&self, buf: &mut gst::BufferRef, fp: &FrameParams) {
        if fp.repeat
            && let Some(st) = self.state.lock().as_ref()
            && let Some(info) = &st.info
        {
            let model_input = (
                st.instance.info().input_width,
                st.instance.info().input_height,
            );
            attach_roi_metas(buf, &st.detections, info.width(), info.height(), true);
            DetectionMeta::add_repeated(buf, st.detections.clone(), model_input);
        }
    }

    /// A QoS event from downstream.
    pub(super) fn on_qos(&self, diff: i64, timestamp: Option<gst::ClockTime>) {
        if let Some(ts) = timestamp {
            self.live.lock().skipper.on_qos(ts.nseconds(), diff);
        }
    }

    /// The latency the pipeline configured (LATENCY event from the sinks).
    pub(super) fn on_latency(&self, latency: gst::ClockTime) {
        let mut l = self.live.lock();
        let live = l.is_live;
        l.skipper
            .set_live_latency(live.then_some(latency.nseconds()));
    }

    /// Our answer to a latency query: upstream's `min` plus our processing latency.
    pub(super) fn on_latency_query(&self, live: bool, min: gst::ClockTime) {
        let mut l = self.live.lock();
        l.is_live = live;
        l.skipper.set_live_latency(live.then_some(min.nseconds()));
    }

    /// A flush: QoS state from before does not apply.
    pub(super) fn reset_skipping(&self) {
        self.live.lock().skipper.reset();
    }

    /// What a frame spends in this element: the 99th percentile of recent frames (plus, when
    /// `pipelined`, the two frames it holds; see `added_latency`).
    pub(super) fn processing_latency(&self) -> gst::ClockTime {
        self.live.lock().reported
    }

    /// After some frames: more latency reported (with a Latency message, so that the pipeline
    /// asks again) when frames take clearly longer than reported.
    pub(super) fn update_latency(&self, summary: &Summary) {
        let Some(total) = summary.stages.iter().find(|p| p.stage == Stage::Total) else {
            return;
        };
        let p99 = gst::ClockTime::from_nseconds((total.p99_ms * 1e6) as u64);
        let grew = {
            let mut l = self.live.lock();
            let grew = p99.nseconds() as f64 > l.reported.nseconds() as f64 * LATENCY_GROWTH;
            if grew {
                l.reported = p99;
            }
            grew
        };
        if grew {
            gst::debug!(CAT, imp = self, "processing latency now {p99}");
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }
}
