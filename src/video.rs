// SPDX-License-Identifier: MPL-2.0
//! Glue between GStreamer video frames and the GStreamer-free [`crate::frame`] views, shared by
//! both elements: the caps they accept and how a mapped frame is described to the maths modules.

use gst::glib;
use gst_video::prelude::*;

use crate::frame::{
    FrameMut, FrameRef, PixelLayout, Plane, PlaneMut, YuvColor, YuvMatrix, plane_extent,
};

/// The raw video formats both elements handle (letterboxing/drawing convert internally).
pub(crate) fn supported_caps() -> gst::Caps {
    use gst_video::VideoFormat as F;
    gst_video::VideoCapsBuilder::new()
        .format_list([
            F::Rgb,
            F::Bgr,
            F::Rgbx,
            F::Bgrx,
            F::Xrgb,
            F::Xbgr,
            F::Rgba,
            F::Bgra,
            F::I420,
            F::Nv12,
        ])
        .build()
}

/// Always-present src and sink templates with `caps`.
fn always_src_sink(caps: &gst::Caps) -> Vec<gst::PadTemplate> {
    [
        ("src", gst::PadDirection::Src),
        ("sink", gst::PadDirection::Sink),
    ]
    .into_iter()
    .map(|(name, dir)| {
        gst::PadTemplate::new(name, dir, gst::PadPresence::Always, caps)
            .expect("static template with valid caps")
    })
    .collect()
}

/// Always-present src and sink templates with [`supported_caps`], for the in-place filters.
pub(crate) fn filter_pad_templates() -> Vec<gst::PadTemplate> {
    let caps = supported_caps();
    always_src_sink(&caps)
}

/// yolodetect's templates: [`filter_pad_templates`] plus the same formats in CUDA memory.
pub(crate) fn detect_pad_templates() -> Vec<gst::PadTemplate> {
    let caps = detect_caps();
    always_src_sink(&caps)
}

/// Maps caps to the element-internal frame description.
pub(crate) fn layout_of(info: &gst_video::VideoInfo) -> Option<(PixelLayout, YuvColor)> {
    use gst_video::VideoFormat as F;
    let layout = match info.format() {
        F::Rgb => PixelLayout::Rgb,
        F::Bgr => PixelLayout::Bgr,
        F::Rgbx => PixelLayout::Rgbx,
        F::Bgrx => PixelLayout::Bgrx,
        F::Xrgb => PixelLayout::Xrgb,
        F::Xbgr => PixelLayout::Xbgr,
        F::Rgba => PixelLayout::Rgba,
        F::Bgra => PixelLayout::Bgra,
        F::I420 => PixelLayout::I420,
        F::Nv12 => PixelLayout::Nv12,
        _ => return None,
    };
    let c = info.colorimetry();
    let matrix = match c.matrix() {
        gst_video::VideoColorMatrix::Bt709 => YuvMatrix::Bt709,
        gst_video::VideoColorMatrix::Bt2020 => YuvMatrix::Bt2020,
        _ => YuvMatrix::Bt601,
    };
    let full_range = c.range() == gst_video::VideoColorRange::Range0_255;
    Some((layout, YuvColor { matrix, full_range }))
}

/// Each plane's start and the bytes mapped from there, read from the mapped frame itself:
/// with a `GstVideoMeta` each plane is mapped on its own (`map[i]`), without one the whole
/// buffer is `map[0]`. A plane pointer outside every mapping gets 0 bytes.
fn mapped_planes(frame: *const gst_video::ffi::GstVideoFrame, n: usize) -> [(*mut u8, usize); 3] {
    let mut out = [(std::ptr::null_mut(), 0); 3];
    // SAFETY: `frame` points to a frame mapped by gst_video_frame_map for the lifetime of the
    // caller's borrow; `data` and `map` are plain fields of it, only read here.
    let (data, maps) = unsafe { ((*frame).data, &(*frame).map) };
    for (i, o) in out.iter_mut().enumerate().take(n) {
        let p = data[i] as *mut u8;
        let avail = maps
            .iter()
            .filter(|m| !m.data.is_null())
            .find_map(|m| {
                let start = m.data as usize;
                let at = p as usize;
                (at >= start && at < start + m.size).then(|| start + m.size - at)
            })
            .unwrap_or(0);
        *o = (p, avail);
    }
    out
}

/// Plane byte lengths that pre-processing and drawing may touch, each checked against what is
/// mapped (see [`crate::frame::plane_extent`]).
fn plane_lengths(
    info: &gst_video::VideoInfo,
    n_planes: u32,
    layout: PixelLayout,
    mapped: &[(*mut u8, usize); 3],
) -> Result<[usize; 3], glib::BoolError> {
    let n = layout.n_planes();
    if n_planes as usize != n {
        return Err(glib::bool_error!(
            "frame has {n_planes} planes, {layout:?} needs {n}"
        ));
    }
    let mut lens = [0usize; 3];
    for (i, len) in lens.iter_mut().enumerate().take(n) {
        let stride = i64::from(info.stride()[i]);
        *len = plane_extent(layout, info.width(), info.height(), i, stride, mapped[i].1)
            .map_err(|e| glib::bool_error!("{e}"))?;
        if *len > 0 && mapped[i].0.is_null() {
            return Err(glib::bool_error!("plane {i} is not mapped"));
        }
    }
    Ok(lens)
}

/// Describes a mapped GStreamer frame to the GStreamer-free modules. Strides come from the
/// buffer's `GstVideoMeta` when it has one and are checked against the mapped memory first
/// (gstreamer-rs' `plane_data` trusts them and would hand out a slice past the mapping).
pub(crate) fn frame_ref<'a>(
    frame: &'a gst_video::VideoFrameRef<&'a gst::BufferRef>,
    layout: PixelLayout,
    color: YuvColor,
) -> Result<FrameRef<'a>, glib::BoolError> {
    let mapped = mapped_planes(frame.as_ptr(), layout.n_planes());
    let lens = plane_lengths(frame.info(), frame.n_planes(), layout, &mapped)?;
    let empty = Plane {
        data: &[],
        stride: 0,
    };
    let mut planes = [empty; 3];
    for (i, p) in planes.iter_mut().enumerate().take(layout.n_planes()) {
        let data: &'a [u8] = if lens[i] == 0 {
            &[]
        } else {
            // SAFETY: `plane_lengths` checked that `lens[i]` bytes from the plane's start lie
            // inside one mapping of the frame, which stays mapped while `frame` is borrowed.
            unsafe { std::slice::from_raw_parts(mapped[i].0, lens[i]) }
        };
        *p = Plane {
            data,
            stride: frame.info().stride()[i] as usize,
        };
    }
    Ok(FrameRef {
        layout,
        width: frame.width(),
        height: frame.height(),
        planes,
        color,
    })
}

/// Describes a writable mapped GStreamer frame to the GStreamer-free modules, with the same
/// checks as [`frame_ref`]; overlapping planes are refused as well, as they would alias.
pub(crate) fn frame_mut<'a>(
    frame: &'a mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    layout: PixelLayout,
    color: YuvColor,
) -> Result<FrameMut<'a>, glib::BoolError> {
    let n = layout.n_planes();
    let mapped = mapped_planes(frame.as_ptr(), n);
    let lens = plane_lengths(frame.info(), frame.n_planes(), layout, &mapped)?;
    let ranges: Vec<(usize, usize)> = (0..n)
        .filter(|&i| lens[i] > 0)
        .map(|i| (mapped[i].0 as usize, mapped[i].0 as usize + lens[i]))
        .collect();
    for (i, a) in ranges.iter().enumerate() {
        if ranges[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1) {
            return Err(glib::bool_error!(
                "the frame's planes overlap (bad GstVideoMeta?)"
            ));
        }
    }
    let (width, height) = (frame.width(), frame.height());
    let strides = std::array::from_fn::<usize, 3, _>(|i| {
        if i < n {
            frame.info().stride()[i] as usize
        } else {
            0
        }
    });
    let planes = std::array::from_fn::<PlaneMut<'a>, 3, _>(|i| PlaneMut {
        data: if lens[i] == 0 {
            &mut []
        } else {
            // SAFETY: as in `frame_ref`, and the frame is mapped writable and borrowed mutably
            // for 'a; the planes' byte ranges were checked above not to overlap.
            unsafe { std::slice::from_raw_parts_mut(mapped[i].0, lens[i]) }
        },
        stride: strides[i],
    });
    Ok(FrameMut {
        layout,
        width,
        height,
        planes,
        color,
    })
}

/// GStreamer's CUDA memory caps feature (nvcodec's decoders output it).
pub(crate) const CUDA_MEMORY: &str = "memory:CUDAMemory";

/// yolodetect's caps: [`supported_caps`] in CUDA memory (letterboxed on the GPU, never copied to
/// the host) and in system memory.
pub(crate) fn detect_caps() -> gst::Caps {
    let mut caps = supported_caps();
    // One structure, so its features are the caps' features (set_features_simple is 1.20+,
    // and this also builds against 1.18).
    debug_assert_eq!(caps.size(), 1);
    caps.get_mut()
        .expect("new caps are writable")
        .set_features(0, Some(gst::CapsFeatures::new([CUDA_MEMORY])));
    caps.get_mut()
        .expect("new caps are writable")
        .append(supported_caps());
    caps
}

/// `caps` without its CUDA memory structures.
pub(crate) fn without_cuda_memory(caps: &gst::Caps) -> gst::Caps {
    let mut out = gst::Caps::new_empty();
    {
        let out = out.get_mut().expect("new caps are writable");
        for (s, f) in caps.iter_with_features() {
            if !f.contains(CUDA_MEMORY) {
                out.append_structure_full(s.to_owned(), Some(f.to_owned()));
            }
        }
    }
    out
}

/// Whether negotiated caps carry frames in CUDA memory.
pub(crate) fn is_cuda_memory(caps: &gst::CapsRef) -> bool {
    caps.features(0).is_some_and(|f| f.contains(CUDA_MEMORY))
}

/// A frame in CUDA memory mapped for reading: plane addresses are device pointers.
pub(crate) struct CudaFrame {
    frame: gst_video::ffi::GstVideoFrame,
}

/// `GST_MAP_CUDA` (gst/cuda/gstcudamemory.h): map to the device pointer, not to host memory.
const GST_MAP_CUDA: u32 = gst::ffi::GST_MAP_FLAG_LAST << 1;

impl CudaFrame {
    pub(crate) fn map(buf: &gst::BufferRef, info: &gst_video::VideoInfo) -> Option<CudaFrame> {
        use glib::translate::ToGlibPtr;
        let mut frame = std::mem::MaybeUninit::<gst_video::ffi::GstVideoFrame>::zeroed();
        // SAFETY: `info` and `buf` are valid for the call; gst_video_frame_map fills `frame`
        // on success (checked) and keeps its own reference to the buffer until unmapped in Drop.
        let ok = unsafe {
            gst_video::ffi::gst_video_frame_map(
                frame.as_mut_ptr(),
                info.to_glib_none().0 as *mut _,
                buf.as_ptr() as *mut gst::ffi::GstBuffer,
                gst::ffi::GST_MAP_READ | GST_MAP_CUDA,
            )
        };
        // SAFETY: initialised by the successful map above.
        (ok != 0).then(|| CudaFrame {
            frame: unsafe { frame.assume_init() },
        })
    }

    /// (device address, pitch) of each plane.
    pub(crate) fn planes(&self) -> [(u64, usize); 3] {
        let mut p = [(0u64, 0usize); 3];
        for (i, plane) in p.iter_mut().enumerate() {
            *plane = (
                self.frame.data[i] as u64,
                self.frame.info.stride[i].max(0) as usize,
            );
        }
        p
    }
}

impl Drop for CudaFrame {
    fn drop(&mut self) {
        // SAFETY: mapped in `map`, unmapped exactly once here.
        unsafe { gst_video::ffi::gst_video_frame_unmap(&mut self.frame) };
    }
}

/// Always-present src and sink templates for raw video of any format in any memory, for the
/// elements that only read or write metadata (yolotrack, yolometapublish).
pub(crate) fn meta_pad_templates() -> Vec<gst::PadTemplate> {
    let caps = gst::Caps::builder_full()
        .structure_with_any_features(gst::Structure::new_empty("video/x-raw"))
        .build();
    always_src_sink(&caps)
}
