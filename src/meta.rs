// SPDX-License-Identifier: MPL-2.0
//! `DetectionMeta`: the detections yolodetect found on a buffer, as a custom `GstMeta`.
//!
//! Applications read it with `buffer.meta::<gstyolo::meta::DetectionMeta>()`. The meta is tagged
//! `video` and `size`, so elements that copy metadata (queue, tee, videoconvert) keep it and
//! videoscale rescales its boxes through the transform function below. Elements never touch the
//! raw meta API: they go through this module.

use std::fmt;
use std::mem;
use std::ptr;

use gst::glib::translate::{IntoGlib, from_glib};
use gst::prelude::*;

pub use crate::detection::Detection;

/// Detections on one buffer, boxes in the pixels of the buffer's frame.
#[repr(transparent)]
pub struct DetectionMeta(imp::DetectionMeta);

// SAFETY: the meta only holds owned Rust data (Vec of Send + Sync items) behind GstMeta.
unsafe impl Send for DetectionMeta {}
// SAFETY: see above; all access to the data is through & or &mut.
unsafe impl Sync for DetectionMeta {}

impl DetectionMeta {
    /// Attaches `detections` to `buffer`. `model_input` is the model's input (width, height).
    pub fn add(
        buffer: &mut gst::BufferRef,
        detections: Vec<Detection>,
        model_input: (u32, u32),
    ) -> gst::MetaRefMut<'_, Self, gst::meta::Standalone> {
        Self::add_full(buffer, detections, model_input, false)
    }

    /// Attaches detections the model made on an earlier frame (it skipped this one:
    /// `inference-interval`, QoS) to `buffer`, marked as such.
    pub fn add_repeated(
        buffer: &mut gst::BufferRef,
        detections: Vec<Detection>,
        model_input: (u32, u32),
    ) -> gst::MetaRefMut<'_, Self, gst::meta::Standalone> {
        Self::add_full(buffer, detections, model_input, true)
    }

    fn add_full(
        buffer: &mut gst::BufferRef,
        detections: Vec<Detection>,
        model_input: (u32, u32),
        repeated: bool,
    ) -> gst::MetaRefMut<'_, Self, gst::meta::Standalone> {
        let mut params = mem::ManuallyDrop::new(imp::Params {
            detections,
            model_input,
            repeated,
        });
        // SAFETY: `buffer` is a valid writable buffer; the init function takes ownership of
        // `params` by reading it exactly once (hence ManuallyDrop here).
        unsafe {
            let meta = gst::ffi::gst_buffer_add_meta(
                buffer.as_mut_ptr(),
                imp::meta_get_info(),
                &mut *params as *mut imp::Params as gst::glib::ffi::gpointer,
            ) as *mut imp::DetectionMeta;
            Self::from_mut_ptr(buffer, meta)
        }
    }

    pub fn detections(&self) -> &[Detection] {
        &self.0.detections
    }

    pub fn detections_mut(&mut self) -> &mut Vec<Detection> {
        &mut self.0.detections
    }

    /// The model's input size (width, height) the detections were made at.
    pub fn model_input_size(&self) -> (u32, u32) {
        self.0.model_input
    }

    /// True when the model did not run on this frame and these are an earlier frame's
    /// detections (`yolodetect repeat-detections=true`).
    pub fn is_repeated(&self) -> bool {
        self.0.repeated
    }
}

// SAFETY: `imp::DetectionMeta` starts with a GstMeta and is registered under this API type.
unsafe impl MetaAPI for DetectionMeta {
    type GstType = imp::DetectionMeta;

    fn meta_api() -> gst::glib::Type {
        imp::meta_api_get_type()
    }
}

impl fmt::Debug for DetectionMeta {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("DetectionMeta")
            .field("detections", &self.detections())
            .field("model_input", &self.model_input_size())
            .field("repeated", &self.is_repeated())
            .finish()
    }
}

mod imp {
    use super::*;
    use std::sync::LazyLock;

    pub(super) struct Params {
        pub(super) detections: Vec<Detection>,
        pub(super) model_input: (u32, u32),
        pub(super) repeated: bool,
    }

    #[repr(C)]
    pub struct DetectionMeta {
        parent: gst::ffi::GstMeta,
        pub(super) detections: Vec<Detection>,
        pub(super) model_input: (u32, u32),
        pub(super) repeated: bool,
    }

    pub(super) fn meta_api_get_type() -> gst::glib::Type {
        static TYPE: LazyLock<gst::glib::Type> = LazyLock::new(|| {
            // "video" + "size": copied by video filters, transformed (rescaled) by videoscale.
            let tags = [c"video".as_ptr(), c"size".as_ptr(), ptr::null()];
            // SAFETY: NUL-terminated name and NULL-terminated tag array, both 'static.
            unsafe {
                from_glib(gst::ffi::gst_meta_api_type_register(
                    c"GstYoloDetectionMetaAPI".as_ptr(),
                    tags.as_ptr() as *mut *const _,
                ))
            }
        });
        *TYPE
    }

    unsafe extern "C" fn meta_init(
        meta: *mut gst::ffi::GstMeta,
        params: gst::glib::ffi::gpointer,
        _buffer: *mut gst::ffi::GstBuffer,
    ) -> gst::glib::ffi::gboolean {
        if params.is_null() {
            return false.into_glib();
        }
        // SAFETY: `meta` was allocated by GStreamer with our size; `params` points to a Params
        // that the caller gave up ownership of.
        unsafe {
            let meta = &mut *(meta as *mut DetectionMeta);
            let p = ptr::read(params as *const Params);
            ptr::write(&mut meta.detections, p.detections);
            ptr::write(&mut meta.model_input, p.model_input);
            ptr::write(&mut meta.repeated, p.repeated);
        }
        true.into_glib()
    }

    unsafe extern "C" fn meta_free(
        meta: *mut gst::ffi::GstMeta,
        _buffer: *mut gst::ffi::GstBuffer,
    ) {
        // SAFETY: init wrote the fields; free runs once.
        unsafe {
            let meta = &mut *(meta as *mut DetectionMeta);
            ptr::drop_in_place(&mut meta.detections);
        }
    }

    unsafe extern "C" fn meta_transform(
        dest: *mut gst::ffi::GstBuffer,
        meta: *mut gst::ffi::GstMeta,
        _buffer: *mut gst::ffi::GstBuffer,
        type_: gst::glib::ffi::GQuark,
        data: gst::glib::ffi::gpointer,
    ) -> gst::glib::ffi::gboolean {
        // SAFETY: GStreamer passes our own meta and a writable destination buffer.
        let (src, dest) = unsafe {
            (
                &*(meta as *const DetectionMeta),
                gst::BufferRef::from_mut_ptr(dest),
            )
        };
        // SAFETY: quarks are plain integers.
        let ty: gst::glib::Quark = unsafe { from_glib(type_) };
        let mut dets = src.detections.clone();
        if ty == gst::glib::Quark::from_str("gst-copy") {
            // Whole-buffer copies keep everything; region copies happen on memory, not frames.
        } else if ty == gst::glib::Quark::from_str("gst-video-scale") && !data.is_null() {
            // SAFETY: for the video-scale transform `data` is a GstVideoMetaTransform.
            let t = unsafe { &*(data as *const gst_video::ffi::GstVideoMetaTransform) };
            // SAFETY: both infos are valid for the call.
            let (iw, ih, ow, oh) = unsafe {
                (
                    (*t.in_info).width,
                    (*t.in_info).height,
                    (*t.out_info).width,
                    (*t.out_info).height,
                )
            };
            if iw <= 0 || ih <= 0 {
                return false.into_glib();
            }
            let (sx, sy) = (ow as f32 / iw as f32, oh as f32 / ih as f32);
            for d in &mut dets {
                d.x1 *= sx;
                d.x2 *= sx;
                d.y1 *= sy;
                d.y2 *= sy;
            }
        } else {
            // Unknown transform (crop, rotation, ...): boxes would be wrong, so drop the meta.
            return false.into_glib();
        }
        super::DetectionMeta::add_full(dest, dets, src.model_input, src.repeated);
        true.into_glib()
    }

    pub(super) fn meta_get_info() -> *const gst::ffi::GstMetaInfo {
        struct MetaInfo(ptr::NonNull<gst::ffi::GstMetaInfo>);
        // SAFETY: the registered info is immutable and lives forever.
        unsafe impl Send for MetaInfo {}
        // SAFETY: as above.
        unsafe impl Sync for MetaInfo {}

        static INFO: LazyLock<MetaInfo> = LazyLock::new(|| {
            // SAFETY: registering a meta with valid function pointers and our struct's size.
            let info = unsafe {
                gst::ffi::gst_meta_register(
                    meta_api_get_type().into_glib(),
                    c"GstYoloDetectionMeta".as_ptr(),
                    mem::size_of::<DetectionMeta>(),
                    Some(meta_init),
                    Some(meta_free),
                    Some(meta_transform),
                )
            };
            MetaInfo(ptr::NonNull::new(info as *mut _).expect("gst_meta_register failed"))
        });
        INFO.0.as_ptr()
    }
}
