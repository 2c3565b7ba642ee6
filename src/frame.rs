//! Raw video frame views shared by pre-processing and drawing. No GStreamer imports: the
//! elements translate `gst_video::VideoFrame`s into these.

/// Pixel layouts the elements accept. Packed layouts name their byte order in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelLayout {
    Rgb,
    Bgr,
    Rgbx,
    Bgrx,
    Xrgb,
    Xbgr,
    Rgba,
    Bgra,
    /// Planar Y, U, V; chroma subsampled 2x2.
    I420,
    /// Y plane and interleaved UV plane; chroma subsampled 2x2.
    Nv12,
}

impl PixelLayout {
    /// For packed layouts: (bytes per pixel, offset of R, offset of G, offset of B).
    pub fn packed_rgb(self) -> Option<(usize, usize, usize, usize)> {
        match self {
            PixelLayout::Rgb => Some((3, 0, 1, 2)),
            PixelLayout::Bgr => Some((3, 2, 1, 0)),
            PixelLayout::Rgbx | PixelLayout::Rgba => Some((4, 0, 1, 2)),
            PixelLayout::Bgrx | PixelLayout::Bgra => Some((4, 2, 1, 0)),
            PixelLayout::Xrgb => Some((4, 1, 2, 3)),
            PixelLayout::Xbgr => Some((4, 3, 2, 1)),
            PixelLayout::I420 | PixelLayout::Nv12 => None,
        }
    }

    pub fn is_yuv(self) -> bool {
        matches!(self, PixelLayout::I420 | PixelLayout::Nv12)
    }

    /// Number of planes a frame of this layout has.
    pub fn n_planes(self) -> usize {
        match self {
            PixelLayout::I420 => 3,
            PixelLayout::Nv12 => 2,
            _ => 1,
        }
    }
}

/// YUV -> RGB matrix and range, from the caps' colorimetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum YuvMatrix {
    #[default]
    Bt601,
    Bt709,
    Bt2020,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct YuvColor {
    pub matrix: YuvMatrix,
    /// true: 0..255 ("full"/JPEG range); false: 16..235 luma, 16..240 chroma.
    pub full_range: bool,
}

/// One plane: its bytes and row stride in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
}

/// A read-only frame. `planes[..layout.n_planes()]` are valid; the rest are empty.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    pub layout: PixelLayout,
    pub width: u32,
    pub height: u32,
    pub planes: [Plane<'a>; 3],
    pub color: YuvColor,
}

/// A writable frame, same conventions as [`FrameRef`].
#[derive(Debug)]
pub struct FrameMut<'a> {
    pub layout: PixelLayout,
    pub width: u32,
    pub height: u32,
    pub planes: [PlaneMut<'a>; 3],
    pub color: YuvColor,
}

#[derive(Debug)]
pub struct PlaneMut<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
}

/// Bytes one plane of a `width` x `height` frame needs: `(row_bytes, rows)`. Planes past
/// `layout.n_planes()` need nothing.
pub fn plane_rows(layout: PixelLayout, width: u32, height: u32, plane: usize) -> (usize, usize) {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    match (layout, plane) {
        (PixelLayout::I420 | PixelLayout::Nv12, 0) => (w, h),
        (PixelLayout::I420, 1 | 2) => (cw, ch),
        (PixelLayout::Nv12, 1) => (cw.saturating_mul(2), ch),
        (_, 0) => {
            let bpp = layout.packed_rgb().map_or(4, |p| p.0);
            (w.saturating_mul(bpp), h)
        }
        _ => (0, 0),
    }
}

/// Checks one plane's stride against the bytes mapped from its start and returns how many bytes
/// of it pre-processing and drawing may touch (`stride * (rows - 1) + row_bytes`). A buffer's
/// `GstVideoMeta` may claim any stride; GStreamer maps the frame without checking it, so this
/// runs before any pixel is read or written.
pub fn plane_extent(
    layout: PixelLayout,
    width: u32,
    height: u32,
    plane: usize,
    stride: i64,
    mapped: usize,
) -> Result<usize, String> {
    let (row_bytes, rows) = plane_rows(layout, width, height, plane);
    if rows == 0 {
        return Ok(0);
    }
    let stride =
        usize::try_from(stride).map_err(|_| format!("plane {plane}: negative stride {stride}"))?;
    if stride < row_bytes {
        return Err(format!(
            "plane {plane}: stride {stride} is smaller than a row of {row_bytes} bytes"
        ));
    }
    let needed = stride
        .checked_mul(rows - 1)
        .and_then(|b| b.checked_add(row_bytes))
        .ok_or_else(|| format!("plane {plane}: stride {stride} overflows"))?;
    if needed > mapped {
        return Err(format!(
            "plane {plane}: stride {stride} x {rows} rows needs {needed} bytes but the buffer \
             maps only {mapped} from the plane's start (bad GstVideoMeta?)"
        ));
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_extent_rejects_strides_past_the_buffer() {
        // 48x64 RGB is 9216 bytes; a 16 MiB stride must be refused, not trusted.
        assert_eq!(
            plane_extent(PixelLayout::Rgb, 48, 64, 0, 144, 9216),
            Ok(9216)
        );
        let e = plane_extent(PixelLayout::Rgb, 48, 64, 0, 16 << 20, 9216).unwrap_err();
        assert!(e.contains("16777216") && e.contains("9216"), "{e}");
        assert!(plane_extent(PixelLayout::Rgb, 48, 64, 0, 100, 9216).is_err());
        assert!(plane_extent(PixelLayout::Rgb, 48, 64, 0, -144, 9216).is_err());
        assert!(plane_extent(PixelLayout::Rgb, 48, 64, 0, i64::MAX, usize::MAX).is_err());
        // Chroma planes of odd sizes round up.
        assert_eq!(plane_extent(PixelLayout::I420, 5, 3, 1, 3, 6), Ok(6));
        assert_eq!(plane_extent(PixelLayout::Nv12, 5, 3, 1, 6, 12), Ok(12));
        assert_eq!(plane_extent(PixelLayout::Nv12, 5, 3, 2, 0, 0), Ok(0));
    }
}
