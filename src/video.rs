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

/// Always-present src and sink templates with [`supported_caps`], for the in-place filters.
pub(crate) fn filter_pad_templates() -> Vec<gst::PadTemplate> {
    let caps = supported_caps();
    [
        ("src", gst::PadDirection::Src),
        ("sink", gst::PadDirection::Sink),
    ]
    .into_iter()
    .map(|(name, dir)| {
        gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps)
            .expect("static template with valid caps")
    })
    .collect()
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
