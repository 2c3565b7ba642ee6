// SPDX-License-Identifier: MPL-2.0
//! yolodetect's `pipelined` mode: frame N is letterboxed on a helper thread while the model
//! runs on frame N-1, so the GPU does not idle through pre-processing. Each buffer leaves one
//! frame later (it waits for the next one, or for EOS / new caps, which drain it). Decoding and
//! NMS stay on the streaming thread, after the run.

use std::time::Instant;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;

use super::{CAT, State, YoloDetect, attach_roi_metas};
use crate::meta::DetectionMeta;
use crate::postprocess::PostParams;
use crate::preprocess::Letterbox;
use crate::video::frame_ref;

/// The frame whose model input sits in the engine's current input buffer, and the frame that
/// is finished and waits for `generate_output`.
#[derive(Default)]
pub(super) struct Pipe {
    pending: Option<(gst::Buffer, Letterbox)>,
    ready: Option<gst::Buffer>,
}

impl YoloDetect {
    /// Takes frame N: letterboxes it while the model runs on frame N-1, then finishes N-1.
    pub(super) fn submit_pipelined(
        &self,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let events = self
            .state
            .lock()
            .as_mut()
            .map(|st| st.engine.poll())
            .unwrap_or_default();
        self.post_engine_events(events);
        let s = self.settings.lock().clone();
        let mut guard = self.state.lock();
        let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let (Some(info), Some((layout, color))) = (st.info.clone(), st.layout) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["no caps before the first buffer"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let t0 = Instant::now();
        let letterbox = {
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(inbuf.as_ref(), &info)
                .map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ["cannot map the video frame"]
                );
                gst::FlowError::Error
            })?;
            let fr = frame_ref(&frame, layout, color).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ["cannot read the frame's planes"]
                );
                gst::FlowError::Error
            })?;
            let (w, h) = (st.engine.info().input_width, st.engine.info().input_height);
            let State {
                engine,
                pre,
                post,
                labels,
                detections,
                pipe,
                ..
            } = &mut *st;
            match pipe.pending.take() {
                None => pre.run(&fr, w, h, engine.input_mut()),
                Some((prev, prev_lb)) => {
                    let params = PostParams {
                        conf_threshold: s.conf_threshold,
                        iou_threshold: s.iou_threshold,
                        agnostic: s.agnostic_nms,
                        max_detections: s.max_detections as usize,
                        classes: &s.classes,
                    };
                    let head = engine.info().head;
                    let model_input = (engine.info().input_width, engine.info().input_height);
                    let ((), lb) = engine
                        .run_overlapped(
                            |next| pre.run(&fr, w, h, next),
                            |_, data| {
                                post.run(&head, data, &params, &prev_lb, labels, detections)
                            },
                        )
                        .map_err(|e| {
                            gst::element_imp_error!(self, gst::StreamError::Failed, ["{e}"]);
                            gst::FlowError::Error
                        })?;
                    let mut out = prev;
                    {
                        let b = out.make_mut();
                        attach_roi_metas(b, detections, prev_lb.src_w, prev_lb.src_h);
                        DetectionMeta::add(b, detections.clone(), model_input);
                    }
                    gst::log!(
                        CAT,
                        imp = self,
                        "{} detections; pipelined frame (pre of the next overlapped with infer) {:?}",
                        detections.len(),
                        t0.elapsed()
                    );
                    pipe.ready = Some(out);
                    lb
                }
            }
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ["pre-processing failed: {e}"]
                );
                gst::FlowError::Error
            })?
        };
        st.pipe.pending = Some((inbuf, letterbox));
        Ok(gst::FlowSuccess::Ok)
    }

    pub(super) fn take_ready(&self) -> GenerateOutputSuccess {
        match self
            .state
            .lock()
            .as_mut()
            .and_then(|st| st.pipe.ready.take())
        {
            Some(b) => GenerateOutputSuccess::Buffer(b),
            None => GenerateOutputSuccess::NoOutput,
        }
    }

    /// Finishes the frame still waiting for its successor and pushes it (at EOS and before new
    /// caps).
    pub(super) fn drain_pipelined(&self) {
        let s = self.settings.lock().clone();
        let out = {
            let mut guard = self.state.lock();
            let Some(st) = guard.as_mut() else { return };
            let Some((prev, lb)) = st.pipe.pending.take() else {
                return;
            };
            let params = PostParams {
                conf_threshold: s.conf_threshold,
                iou_threshold: s.iou_threshold,
                agnostic: s.agnostic_nms,
                max_detections: s.max_detections as usize,
                classes: &s.classes,
            };
            let State {
                engine,
                post,
                labels,
                detections,
                ..
            } = &mut *st;
            let head = engine.info().head;
            let model_input = (engine.info().input_width, engine.info().input_height);
            if let Err(e) =
                engine.run_input(|_, data| post.run(&head, data, &params, &lb, labels, detections))
            {
                gst::element_imp_error!(self, gst::StreamError::Failed, ["{e}"]);
                return;
            }
            let mut out = prev;
            {
                let b = out.make_mut();
                attach_roi_metas(b, detections, lb.src_w, lb.src_h);
                DetectionMeta::add(b, detections.clone(), model_input);
            }
            out
        };
        // Not under the state lock: downstream runs in this call.
        if let Err(e) = self.obj().src_pad().push(out) {
            gst::debug!(CAT, imp = self, "draining the last frame: {e:?}");
        }
    }

    /// Drops frames in flight (flush, stop).
    pub(super) fn reset_pipelined(&self) {
        if let Some(st) = self.state.lock().as_mut() {
            st.pipe = Pipe::default();
        }
    }
}
