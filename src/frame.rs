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
