// SPDX-License-Identifier: MPL-2.0
//! Glue between GStreamer video frames and the GStreamer-free [`crate::frame`] views, shared by
//! both elements: the caps they accept and how a mapped frame is described to the maths modules.

use gst::glib;
use gst_video::prelude::*;

use crate::frame::{FrameMut, FrameRef, PixelLayout, Plane, PlaneMut, YuvColor, YuvMatrix};

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

/// Describes a mapped GStreamer frame to the GStreamer-free modules.
pub(crate) fn frame_ref<'a>(
    frame: &'a gst_video::VideoFrameRef<&'a gst::BufferRef>,
    layout: PixelLayout,
    color: YuvColor,
) -> Result<FrameRef<'a>, glib::BoolError> {
    let empty = Plane {
        data: &[],
        stride: 0,
    };
    let mut planes = [empty; 3];
    for (i, p) in planes.iter_mut().enumerate().take(layout.n_planes()) {
        *p = Plane {
            data: frame.plane_data(i as u32)?,
            stride: frame.plane_stride()[i] as usize,
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

/// Describes a writable mapped GStreamer frame to the GStreamer-free modules.
pub(crate) fn frame_mut<'a>(
    frame: &'a mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    layout: PixelLayout,
    color: YuvColor,
) -> Result<FrameMut<'a>, glib::BoolError> {
    let n = layout.n_planes();
    if frame.n_planes() as usize != n {
        return Err(glib::bool_error!(
            "frame has {} planes, {:?} needs {n}",
            frame.n_planes(),
            layout
        ));
    }
    let (width, height) = (frame.width(), frame.height());
    let mut strides = [0usize; 3];
    for (s, &fs) in strides.iter_mut().zip(frame.plane_stride()).take(n) {
        *s = usize::try_from(fs).map_err(|_| glib::bool_error!("negative stride {fs}"))?;
    }
    // One mutable borrow of the frame yields all planes at once.
    let [p0, p1, p2, _] = frame.planes_data_mut();
    let planes = [
        PlaneMut {
            data: p0,
            stride: strides[0],
        },
        PlaneMut {
            data: p1,
            stride: strides[1],
        },
        PlaneMut {
            data: p2,
            stride: strides[2],
        },
    ];
    Ok(FrameMut {
        layout,
        width,
        height,
        planes,
        color,
    })
}
