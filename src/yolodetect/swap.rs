// SPDX-License-Identifier: MPL-2.0
//! yolodetect's model swap while PLAYING. Setting `model` (or another property that needs a new
//! model instance) on a running element loads the new instance on a background thread, warmed
//! up, while the old one keeps serving; the element moves to it at its next frame boundary,
//! and so does every other element sharing the instance (`model-instance-id`). Frames never
//! wait for the load, and a frame is always decoded by the model it was submitted to
//! (`pipelined` mode finishes its frames in flight on the old model first). A load that fails
//! leaves the old model serving, the property set back, and a warning on the bus.

use std::sync::Arc;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{CAT, Settings, YoloDetect, parse_classes};
use crate::engine::instance::Instance;

/// Properties that need a new model instance. Set while running, they start a swap; the other
/// READY-only ones (`model-instance-id`, `pipelined`, `gpu-preprocess`, `chroma-upsampling`)
/// change how the element itself works and stay refused while running.
pub(super) const SWAP_PROPERTIES: &[&str] = &[
    "model",
    "label-file",
    "num-threads",
    "execution-provider",
    "device-id",
    "batch-size",
    "batch-timeout",
    "inference-workers",
    "cuda-conv-algo-search",
    "cuda-tf32",
    "cuda-graph",
    "trt-fp16",
    "trt-int8",
    "trt-int8-calibration-table",
    "trt-engine-cache-dir",
    "trt-timing-cache",
    "trt-builder-optimization-level",
    "inference-server",
    "server-model",
    "server-model-version",
    "server-ca-file",
    "server-request-timeout",
    "server-retry-timeout",
    "server-retry-backoff",
];

/// The background load: at most one per element; a property set during a load loads again
/// with the newest settings once it ends (the older result is dropped unused).
#[derive(Default)]
pub(super) struct Reload {
    running: bool,
    again: bool,
}

/// Copies the swap properties from `from` (what serves now) into `to`.
fn restore_swap_settings(to: &mut Settings, from: &Settings) {
    let pipelined = to.gpu.pipelined;
    to.model = from.model.clone();
    to.label_file = from.label_file.clone();
    to.num_threads = from.num_threads;
    to.execution_provider = from.execution_provider;
    to.device_id = from.device_id;
    to.batch_size = from.batch_size;
    to.batch_timeout_ms = from.batch_timeout_ms;
    to.inference_workers = from.inference_workers;
    to.gpu = from.gpu.clone();
    to.gpu.pipelined = pipelined;
    let pass_on_error = to.remote.pass_on_error;
    to.remote = from.remote.clone();
    to.remote.pass_on_error = pass_on_error;
}

impl YoloDetect {
    /// Starts loading a new model instance from the current settings (a swap property was set
    /// while running).
    pub(super) fn request_reload(&self) {
        {
            let mut r = self.reload.lock();
            if r.running {
                r.again = true;
                return;
            }
            r.running = true;
        }
        // A strong reference: the element lives until the load ends (a few seconds at most).
        let obj = self.obj().clone();
        let spawned = std::thread::Builder::new()
            .name("yolodetect-load".into())
            .spawn(move || obj.imp().reload_loop());
        if let Err(e) = spawned {
            self.reload.lock().running = false;
            gst::element_imp_warning!(
                self,
                gst::CoreError::Thread,
                ("cannot start the model load thread: {e}; the current model keeps serving")
            );
        }
    }

    fn reload_loop(&self) {
        loop {
            let serving = self.state.lock().as_ref().map(|st| {
                (
                    st.instance
                        .successor()
                        .unwrap_or_else(|| st.instance.clone()),
                    st.cuda_memory,
                    st.serving.clone(),
                )
            });
            let Some((old, cuda_memory, serving)) = serving else {
                // Stopped: the next start loads from the settings anyway.
                let mut r = self.reload.lock();
                if std::mem::take(&mut r.again) {
                    continue;
                }
                r.running = false;
                return;
            };
            let wanted = self.settings.lock().clone();
            let start = std::time::Instant::now();
            let result = self.load(&old, &wanted, cuda_memory);
            let mut r = self.reload.lock();
            if std::mem::take(&mut r.again) {
                gst::debug!(CAT, imp = self, "settings changed during the load: again");
                continue;
            }
            // Under the reload lock, so that a load started after this one hands over later.
            match result {
                Ok(new) => {
                    let current = self.state.lock().as_ref().is_some_and(|st| {
                        Arc::ptr_eq(
                            &st.instance.successor().unwrap_or(st.instance.clone()),
                            &old,
                        )
                    });
                    if current {
                        gst::info!(
                            CAT,
                            imp = self,
                            "loaded {} in {:?}; swapping at the next frame",
                            new.config().engine.model.display(),
                            start.elapsed()
                        );
                        old.hand_over(new);
                    }
                }
                Err(msg) => {
                    restore_swap_settings(&mut self.settings.lock(), &serving);
                    r.running = false;
                    drop(r);
                    let old_model = serving
                        .model
                        .as_ref()
                        .map_or(String::new(), |m| m.display().to_string());
                    gst::warning!(CAT, imp = self, "model swap failed: {msg}");
                    self.post_warning(&format!(
                        "the new settings could not be loaded, {old_model} keeps serving and \
                         the properties are set back: {msg}"
                    ));
                    return;
                }
            }
            r.running = false;
            return;
        }
    }

    fn post_warning(&self, text: &str) {
        gst::element_imp_warning!(self, gst::ResourceError::Settings, ("{text}"));
    }

    /// Loads and checks what `s` asks for, as `old`'s successor.
    fn load(
        &self,
        old: &Instance,
        s: &Settings,
        cuda_memory: bool,
    ) -> Result<Arc<Instance>, String> {
        let cfg = Self::instance_config(s).map_err(|e| e.to_string())?;
        let new = old
            .load_successor(&cfg)
            .map_err(|e| super::engine_error_msg(&e).to_string())?;
        if cuda_memory && new.gpu().is_none() {
            return Err(format!(
                "frames arrive in CUDA memory, which the new settings cannot letterbox \
                 (provider {}, GPU pre-processing {})",
                new.provider().name(),
                new.gpu_error().unwrap_or("off")
            ));
        }
        let labels = self.load_labels(s, new.info()).map_err(|e| e.to_string())?;
        parse_classes(&s.classes_text, Some(&labels))
            .map_err(|e| format!("classes \"{}\": {e}", s.classes_text))?;
        let thresholds = &s.filters.class_thresholds_text;
        crate::filters::parse_class_thresholds(thresholds, Some(&labels))
            .map_err(|e| format!("class-thresholds \"{thresholds}\": {e}"))?;
        Ok(new)
    }

    /// A frame boundary: moves to the instance that replaced this one, if any (a swap on this
    /// element or on another one of the shared instance), and says so on the bus.
    pub(super) fn adopt_successor(&self) {
        let next = self
            .state
            .lock()
            .as_ref()
            .and_then(|st| st.instance.successor());
        let Some(next) = next else { return };
        if self.settings.lock().gpu.pipelined {
            // The frames in flight finish on the model they were submitted to.
            self.drain_pipelined();
        }
        let mut s = self.settings.lock().clone();
        // This element now runs the instance's model (it may have been swapped elsewhere).
        s.model = Some(next.config().engine.model.clone());
        let labels = match self.load_labels(&s, next.info()) {
            Ok(l) => l,
            Err(e) => {
                self.post_warning(&format!("{e}; using the new model's own class names"));
                let mut no_file = s.clone();
                no_file.label_file = None;
                self.load_labels(&no_file, next.info()).unwrap_or_default()
            }
        };
        let classes = parse_classes(&s.classes_text, Some(&labels)).unwrap_or_else(|e| {
            self.post_warning(&format!(
                "classes \"{}\" do not fit the new model ({e}): keeping all classes",
                s.classes_text
            ));
            Vec::new()
        });
        self.reresolve_class_thresholds(&labels);
        let old = {
            let mut guard = self.state.lock();
            let Some(st) = guard.as_mut() else { return };
            let old = std::mem::replace(&mut st.instance, next.clone());
            st.stream = next.stream();
            st.labels = labels;
            st.event_cursor = 0;
            st.upload = None;
            st.serving = s.clone();
            old
        };
        let old_model = old.config().engine.model.clone();
        Instance::retire(old);
        {
            let mut cur = self.settings.lock();
            cur.model = s.model.clone();
            cur.classes = Arc::from(classes);
        }
        {
            let mut stats = self.stats.lock();
            stats.provider = next.provider().name();
            stats.instance = Arc::downgrade(&next);
            stats.swaps += 1;
            if let Some(m) = &mut stats.metrics {
                m.swapped();
                m.set_provider(next.provider().name());
            }
        }
        gst::info!(
            CAT,
            imp = self,
            "now running {} on {}",
            next.config().engine.model.display(),
            next.provider().name()
        );
        let mut msg = gst::Structure::builder("yolodetect-model-changed")
            .field("old-model", old_model.display().to_string())
            .field(
                "new-model",
                next.config().engine.model.display().to_string(),
            )
            .field("load-time-ms", next.load_time().as_secs_f64() * 1e3)
            .field("execution-provider", next.provider().name());
        if let Some(id) = next.id() {
            msg = msg.field("model-instance-id", id);
        }
        self.post(msg.build());
        self.obj().notify("active-provider");
    }
}
