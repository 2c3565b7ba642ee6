// SPDX-License-Identifier: MPL-2.0
//! yolodetect's `pipelined` mode: while the model runs on frame N, a helper thread letterboxes
//! frame N+1 and decodes frame N-1's output (NMS included), so the GPU never waits for the CPU
//! stages. Each buffer leaves two frames later (EOS and new caps drain the frames in flight).

use std::time::Instant;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;

use super::{CAT, State, YoloDetect, attach_roi_metas};
use crate::detection::Detection;
use crate::meta::DetectionMeta;
use crate::preprocess::Letterbox;

/// Frames in flight, oldest first.
#[derive(Default)]
pub(super) struct Pipe {
    /// The model ran on it; its output is the engine's `last_output`, not decoded yet.
    inferred: Option<(gst::Buffer, Letterbox)>,
    /// Letterboxed into the engine's current input; the model has not run on it.
    pending: Option<(gst::Buffer, Letterbox)>,
    /// Finished, for `generate_output`.
    ready: Option<gst::Buffer>,
}

fn finish(
    mut buf: gst::Buffer,
    dets: &[Detection],
    lb: &Letterbox,
    model_input: (u32, u32),
) -> gst::Buffer {
    {
        let b = buf.make_mut();
        attach_roi_metas(b, dets, lb.frame_w, lb.frame_h, false);
        DetectionMeta::add(b, dets.to_vec(), model_input);
    }
    buf
}

impl YoloDetect {
    /// Takes frame N+1: letterboxes it and decodes frame N-1 on a helper thread while the
    /// model runs on frame N; frame N-1 is then ready to leave.
    pub(super) fn submit_pipelined(
        &self,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.adopt_successor();
        self.poll_engine();
        let fp = self.frame_params();
        if self.skip_frame(&inbuf, &fp) {
            // Behind the frames in flight, with the detections they leave with.
            self.drain_pipelined();
            let mut buf = inbuf;
            self.attach_repeated(buf.make_mut(), &fp);
            if let Some(st) = self.state.lock().as_mut() {
                st.pipe.ready = Some(buf);
            }
            return Ok(gst::FlowSuccess::Ok);
        }
        let params = fp.post_params();
        let mut guard = self.state.lock();
        let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let (info, layout, color) = self.negotiated(st)?;
        let t0 = Instant::now();
        // Each frame's letterbox (region of interest included) travels with it to its decode.
        let (rect, roi_warning) =
            self.frame_rect(fp.filters.roi, layout, info.width(), info.height());
        let letterbox = {
            let frame = self.map_readable(inbuf.as_ref(), &info)?;
            let fr = self.frame_view(&frame, layout, color)?;
            let State {
                instance,
                pre,
                post,
                labels,
                detections,
                pipe,
                ..
            } = &mut *st;
            // A private instance: this element drives its session directly.
            let engine = instance.engine().cloned().ok_or_else(|| {
                gst::element_imp_error!(
                    self,
                    gst::LibraryError::Settings,
                    ["pipelined=true needs a local model"]
                );
                gst::FlowError::Error
            })?;
            let mut engine = engine.lock();
            let engine = &mut *engine;
            let (w, h) = (engine.info().input_width, engine.info().input_height);
            let head = engine.info().head;
            let model_input = (w, h);
            let lb = match pipe.pending.take() {
                None => pre.run_rect(&fr, rect, w, h, engine.input_mut()),
                Some(current) => {
                    let older = pipe.inferred.take();
                    let older_lb = older.as_ref().map(|(_, lb)| *lb);
                    let labels = &*labels;
                    let lb = engine
                        .run_overlapped(|next, prev| {
                            match (older_lb, prev) {
                                (Some(lb), Some((_, data))) => {
                                    post.run(&head, data, &params, &lb, labels, detections)
                                }
                                _ => detections.clear(),
                            }
                            pre.run_rect(&fr, rect, w, h, next)
                        })
                        .map_err(|e| {
                            gst::element_imp_error!(self, gst::StreamError::Failed, ["{e}"]);
                            gst::FlowError::Error
                        })?;
                    if let Some((buf, lb)) = older {
                        gst::log!(
                            CAT,
                            imp = self,
                            "{} detections; pipelined step {:?}",
                            detections.len(),
                            t0.elapsed()
                        );
                        pipe.ready = Some(finish(buf, detections, &lb, model_input));
                    }
                    pipe.inferred = Some(current);
                    lb
                }
            };
            lb.map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ["pre-processing failed: {e}"]
                );
                gst::FlowError::Error
            })?
        };
        st.pipe.pending = Some((inbuf, letterbox));
        drop(guard);
        self.post_roi_warning(roi_warning);
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

    /// Finishes the frames in flight and pushes them, oldest first (at EOS and before new caps).
    pub(super) fn drain_pipelined(&self) {
        let fp = self.frame_params();
        let params = fp.post_params();
        let mut out = Vec::new();
        {
            let mut guard = self.state.lock();
            let Some(st) = guard.as_mut() else { return };
            let State {
                instance,
                post,
                labels,
                detections,
                pipe,
                ..
            } = &mut *st;
            // Nothing is ever in flight on a remote instance (no pipelined mode).
            let Some(engine) = instance.engine().cloned() else {
                return;
            };
            let mut engine = engine.lock();
            let engine = &mut *engine;
            let head = engine.info().head;
            let model_input = (engine.info().input_width, engine.info().input_height);
            if let Some((buf, lb)) = pipe.inferred.take() {
                detections.clear();
                if let Some((_, data)) = engine.last_output() {
                    post.run(&head, data, &params, &lb, labels, detections);
                }
                out.push(finish(buf, detections, &lb, model_input));
            }
            if let Some((buf, lb)) = pipe.pending.take() {
                match engine
                    .run_input(|_, data| post.run(&head, data, &params, &lb, labels, detections))
                {
                    Ok(()) => out.push(finish(buf, detections, &lb, model_input)),
                    Err(e) => gst::element_imp_error!(self, gst::StreamError::Failed, ["{e}"]),
                }
            }
        }
        // Not under the state lock: downstream runs in this call.
        for buf in out {
            if let Err(e) = self.obj().src_pad().push(buf) {
                gst::debug!(CAT, imp = self, "draining frames in flight: {e:?}");
                break;
            }
        }
    }

    /// Drops frames in flight (flush, stop).
    pub(super) fn reset_pipelined(&self) {
        if let Some(st) = self.state.lock().as_mut() {
            st.pipe = Pipe::default();
        }
    }
}
