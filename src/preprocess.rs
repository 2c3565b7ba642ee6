//! YOLO letterbox pre-processing with Ultralytics' semantics, bit-compatible with OpenCV.
//!
//! A frame is scaled by `r = min(dst_h / h, dst_w / w)` to `round(w r) x round(h r)` (Python's
//! round: half to even), centred in a `dst_w x dst_h` canvas (`top = round(dh - 0.1)`,
//! `left = round(dw - 0.1)` with `dh`, `dw` the half paddings), padded with 114, and written as
//! planar NCHW `f32` R, G, B in `[0, 1]` (`level / 255`).
//!
//! The resize reproduces `cv2.resize(..., INTER_LINEAR)` on 8-bit images, including its
//! fixed-point arithmetic, so that packed RGB input gives exactly the reference tensor:
//!
//! * half-pixel centres, `sx = (x + 0.5) * w / new_w - 0.5`, computed like OpenCV (`f64`, then
//!   `f32`); no anti-aliasing when shrinking;
//! * weights quantised to 11 bits (`INTER_RESIZE_COEF_BITS`); horizontally the fraction is
//!   clamped to 0 at the borders, vertically the two rows are clamped but the weights are not
//!   (as OpenCV does, which matters for rounding);
//! * the horizontal pass keeps `S = p0 * a0 + p1 * a1`; the vertical pass is OpenCV's SIMD one
//!   (`VResizeLinearVec_32s8u`): `((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16) + 2 >> 2`,
//!   saturated to `u8`, then `level as f32 / 255.0` (what NumPy computes);
//! * frames whose scaled size equals their size are copied, as Ultralytics skips the resize.
//!
//! Checked against `cv2` 4.14 and 5.0 (the reference script's letterbox): the tensors are
//! identical, bit for bit, for the ten reference PNGs and ~450 random geometries.
//!
//! I420 and NV12 are resized in YUV (luma with the tables above, chroma with its own tables
//! on the half-resolution planes, i.e. bilinear chroma upsampling with centred chroma siting;
//! or, with [`ChromaUpsampling::Nearest`], the luma tables pointed at each luma pixel's chroma
//! sample, which is what FFmpeg's swscale fast path, and so OpenCV's video reader, does)
//! and converted to RGB at output resolution, keeping two fractional bits from the resize; the
//! result is rounded to an 8-bit level like a decoded RGB image would be. Since the conversion
//! is linear this equals "convert, then resize" except for clamping and rounding, and it costs
//! one conversion per output pixel instead of one per source pixel.
//!
//! Tables are built once per geometry and cached in [`Preprocessor`]; steady-state calls do
//! not allocate.

use std::fmt;

use crate::frame::{FrameRef, PixelLayout, Plane, YuvColor, YuvMatrix};

/// OpenCV's `INTER_RESIZE_COEF_BITS`.
const COEF_SCALE: f32 = (1 << 11) as f32;
/// Ultralytics' letterbox border value.
pub const PAD_VALUE: u8 = 114;

/// How 4:2:0 chroma (I420, NV12) is brought to luma resolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ChromaUpsampling {
    /// Bilinear, chroma sited between its 2x2 luma pixels: the better-looking image.
    #[default]
    Bilinear,
    /// Each chroma sample repeated over its 2x2 luma pixels, as FFmpeg's swscale converts
    /// yuv420p to RGB in OpenCV's video reader, and so in Ultralytics on video: boxes agree
    /// more closely with theirs.
    Nearest,
}

/// A rectangle in frame pixels: the part of a frame that is letterboxed (a region of interest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// The whole `w x h` frame.
    pub fn frame(w: u32, h: u32) -> Rect {
        Rect { x: 0, y: 0, w, h }
    }

    /// The part of `self` inside a `frame_w x frame_h` frame; `None` when nothing is.
    pub fn clip(&self, frame_w: u32, frame_h: u32) -> Option<Rect> {
        let x2 = self.x.saturating_add(self.w).min(frame_w);
        let y2 = self.y.saturating_add(self.h).min(frame_h);
        (self.x < x2 && self.y < y2).then(|| Rect {
            x: self.x,
            y: self.y,
            w: x2 - self.x,
            h: y2 - self.y,
        })
    }

    /// The rectangle a frame of `layout` can be cropped to: clipped to the frame and, for 4:2:0
    /// layouts, its origin moved left/up to even pixels (a chroma sample covers 2x2 pixels, so
    /// a crop can only start on one), growing it by at most one pixel each way. `None` when
    /// the rectangle lies outside the frame.
    pub fn crop_for(&self, layout: PixelLayout, frame_w: u32, frame_h: u32) -> Option<Rect> {
        let r = self.clip(frame_w, frame_h)?;
        if !layout.is_yuv() {
            return Some(r);
        }
        let (x, y) = (r.x & !1, r.y & !1);
        Some(Rect {
            x,
            y,
            w: r.w + (r.x - x),
            h: r.h + (r.y - y),
        })
    }
}

/// Byte offset of `rect`'s top-left pixel in each plane of a frame of `layout` with row
/// `strides` (planes past `layout.n_planes()` get 0). For 4:2:0 layouts `rect` must start on
/// even pixels ([`Rect::crop_for`]).
pub fn plane_offsets(layout: PixelLayout, rect: Rect, strides: [usize; 3]) -> [usize; 3] {
    let (x, y) = (rect.x as usize, rect.y as usize);
    match layout {
        PixelLayout::I420 => [
            y * strides[0] + x,
            y / 2 * strides[1] + x / 2,
            y / 2 * strides[2] + x / 2,
        ],
        PixelLayout::Nv12 => [y * strides[0] + x, y / 2 * strides[1] + x / 2 * 2, 0],
        _ => {
            let bpp = layout.packed_rgb().map_or(4, |p| p.0);
            [y * strides[0] + x * bpp, 0, 0]
        }
    }
}

/// A view of `rect` (from [`Rect::crop_for`]) of `frame`: same strides, planes starting at the
/// rectangle. `None` when a plane is too short to hold the offset (the frame is then invalid
/// anyway; [`Preprocessor::run`] checks the rest).
pub fn crop<'a>(frame: &FrameRef<'a>, rect: Rect) -> Option<FrameRef<'a>> {
    if rect.x.checked_add(rect.w)? > frame.width || rect.y.checked_add(rect.h)? > frame.height {
        return None;
    }
    let offsets = plane_offsets(frame.layout, rect, frame.planes.map(|p| p.stride));
    let mut planes = frame.planes;
    for (p, off) in planes.iter_mut().zip(offsets).take(frame.layout.n_planes()) {
        p.data = p.data.get(off..)?;
    }
    Some(FrameRef {
        width: rect.w,
        height: rect.h,
        planes,
        ..*frame
    })
}

/// Letterbox geometry: where the scaled source rectangle (the whole frame, or a region of
/// interest) lies inside the model input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    /// Size of the letterboxed source rectangle.
    pub src_w: u32,
    pub src_h: u32,
    /// Its top-left corner in the frame (0, 0 for the whole frame).
    pub src_x: u32,
    pub src_y: u32,
    /// The whole frame's size.
    pub frame_w: u32,
    pub frame_h: u32,
    pub dst_w: u32,
    pub dst_h: u32,
    /// Size of the scaled frame inside the model input.
    pub new_w: u32,
    pub new_h: u32,
    pub pad_left: u32,
    pub pad_top: u32,
    /// `min(dst_h / src_h, dst_w / src_w)`.
    pub scale: f32,
}

impl Letterbox {
    /// Ultralytics' letterbox geometry. A non-empty source is scaled to at least 1x1 (Python
    /// would produce an empty image). Zero sizes give `new_w = new_h = 0` and `scale = 1`;
    /// [`Preprocessor::run`] rejects them before getting here.
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Letterbox {
        if src_w == 0 || src_h == 0 || dst_w == 0 || dst_h == 0 {
            return Letterbox {
                src_w,
                src_h,
                src_x: 0,
                src_y: 0,
                frame_w: src_w,
                frame_h: src_h,
                dst_w,
                dst_h,
                new_w: 0,
                new_h: 0,
                pad_left: dst_w / 2,
                pad_top: dst_h / 2,
                scale: 1.0,
            };
        }
        // f64 like Python; `round_ties_even` is Python's `round`.
        let r = f64::min(dst_h as f64 / src_h as f64, dst_w as f64 / src_w as f64);
        let new_w = ((src_w as f64 * r).round_ties_even() as u32).clamp(1, dst_w);
        let new_h = ((src_h as f64 * r).round_ties_even() as u32).clamp(1, dst_h);
        let dw = (dst_w - new_w) as f64 / 2.0;
        let dh = (dst_h - new_h) as f64 / 2.0;
        // dw is k or k + 0.5, so dw - 0.1 is never a tie; the odd pixel goes right/bottom.
        let pad_left = (dw - 0.1).round_ties_even().max(0.0) as u32;
        let pad_top = (dh - 0.1).round_ties_even().max(0.0) as u32;
        Letterbox {
            src_w,
            src_h,
            src_x: 0,
            src_y: 0,
            frame_w: src_w,
            frame_h: src_h,
            dst_w,
            dst_h,
            new_w,
            new_h,
            pad_left,
            pad_top,
            scale: r as f32,
        }
    }

    /// The letterbox of `rect` (inside the frame, e.g. from [`Rect::crop_for`]) of a
    /// `frame_w x frame_h` frame: `rect` is scaled and padded as a frame of its size would be,
    /// and [`Letterbox::to_frame`] adds its origin back.
    pub fn of_rect(frame_w: u32, frame_h: u32, rect: Rect, dst_w: u32, dst_h: u32) -> Letterbox {
        Letterbox {
            src_x: rect.x,
            src_y: rect.y,
            frame_w,
            frame_h,
            ..Letterbox::new(rect.w, rect.h, dst_w, dst_h)
        }
    }

    /// The letterboxed rectangle in frame pixels.
    pub fn source(&self) -> Rect {
        Rect {
            x: self.src_x,
            y: self.src_y,
            w: self.src_w,
            h: self.src_h,
        }
    }

    /// Maps a point from model-input space back to frame pixels:
    /// `((x - pad_left) / scale + src_x, (y - pad_top) / scale + src_y)`, not clipped.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.pad_left as f32) / self.scale + self.src_x as f32,
            (y - self.pad_top as f32) / self.scale + self.src_y as f32,
        )
    }

    /// Maps a frame point into model-input space (inverse of [`Letterbox::to_frame`]).
    pub fn to_input(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.src_x as f32) * self.scale + self.pad_left as f32,
            (y - self.src_y as f32) * self.scale + self.pad_top as f32,
        )
    }

    /// Maps an `[x1, y1, x2, y2]` box from model-input space to frame pixels, clipped to the
    /// letterboxed rectangle (max/min rather than clamp: a NaN coordinate goes to its edge).
    pub fn box_to_frame(&self, b: [f32; 4]) -> [f32; 4] {
        let (x1, y1) = self.to_frame(b[0], b[1]);
        let (x2, y2) = self.to_frame(b[2], b[3]);
        let (l, t) = (self.src_x as f32, self.src_y as f32);
        let (r, bot) = (l + self.src_w as f32, t + self.src_h as f32);
        [
            x1.max(l).min(r),
            y1.max(t).min(bot),
            x2.max(l).min(r),
            y2.max(t).min(bot),
        ]
    }

    /// True when Ultralytics would skip the resize (scaled size == frame size).
    fn is_identity(&self) -> bool {
        self.new_w == self.src_w && self.new_h == self.src_h
    }
}

/// Why a frame could not be pre-processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreprocessError {
    /// The frame has a zero width or height.
    EmptyFrame { width: u32, height: u32 },
    /// The requested model input has a zero width or height.
    EmptyOutput { width: u32, height: u32 },
    /// A plane's stride is smaller than one row of its pixels.
    StrideTooSmall {
        plane: usize,
        stride: usize,
        row_bytes: usize,
    },
    /// A plane holds fewer bytes than `stride * (rows - 1) + row_bytes`.
    PlaneTooShort {
        plane: usize,
        len: usize,
        needed: usize,
    },
    /// The output slice is shorter than `3 * dst_w * dst_h`.
    OutputTooSmall { len: usize, needed: usize },
    /// The sizes overflow `usize`.
    TooLarge,
    /// The rectangle to letterbox does not lie inside the frame (or a plane is too short
    /// to hold its start).
    RectOutside { rect: Rect, width: u32, height: u32 },
}

impl fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PreprocessError::EmptyFrame { width, height } => {
                write!(f, "frame has zero size ({width}x{height})")
            }
            PreprocessError::EmptyOutput { width, height } => {
                write!(f, "model input has zero size ({width}x{height})")
            }
            PreprocessError::StrideTooSmall {
                plane,
                stride,
                row_bytes,
            } => write!(
                f,
                "plane {plane}: stride {stride} is smaller than a row ({row_bytes} bytes)"
            ),
            PreprocessError::PlaneTooShort { plane, len, needed } => {
                write!(f, "plane {plane}: {len} bytes, need at least {needed}")
            }
            PreprocessError::OutputTooSmall { len, needed } => {
                write!(f, "output tensor holds {len} floats, need {needed}")
            }
            PreprocessError::TooLarge => write!(f, "frame dimensions overflow"),
            PreprocessError::RectOutside {
                rect,
                width,
                height,
            } => write!(
                f,
                "region {},{} {}x{} does not lie inside the {width}x{height} frame",
                rect.x, rect.y, rect.w, rect.h
            ),
        }
    }
}

impl std::error::Error for PreprocessError {}

/// One output coordinate's two source taps and 11-bit weights (`w0 + w1 == 2048`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Tap {
    i0: u32,
    i1: u32,
    w0: i16,
    w1: i16,
}

/// `cv::saturate_cast<short>(float)`: round half to even.
fn coef(f: f32) -> i16 {
    (f * COEF_SCALE).round_ties_even() as i16
}

/// OpenCV's source coordinate of output `d`: `(float)((d + 0.5) * scale - 0.5)`, split into
/// integer part and fraction.
fn src_coord(d: u32, scale: f64) -> (i64, f32) {
    let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
    let s = f.floor();
    (s as i64, f - s)
}

/// Horizontal taps: OpenCV sets the fraction to 0 where a tap leaves the image.
fn x_taps(src_len: u32, dst_len: u32, scale: f64, out: &mut Vec<Tap>) {
    let last = src_len as i64 - 1;
    out.clear();
    out.extend((0..dst_len).map(|d| {
        let (mut s, mut f) = src_coord(d, scale);
        if s < 0 {
            (s, f) = (0, 0.0);
        }
        if s >= last {
            (s, f) = (last, 0.0);
        }
        Tap {
            i0: s as u32,
            i1: (s + 1).min(last) as u32,
            w0: coef(1.0 - f),
            w1: coef(f),
        }
    }));
}

/// Vertical taps: OpenCV clamps the two rows but keeps the unclamped weights.
fn y_taps(src_len: u32, dst_len: u32, scale: f64, out: &mut Vec<Tap>) {
    let last = src_len as i64 - 1;
    out.clear();
    out.extend((0..dst_len).map(|d| {
        let (s, f) = src_coord(d, scale);
        let (w0, w1) = (coef(1.0 - f), coef(f));
        let (mut i0, mut i1) = (s.clamp(0, last) as u32, (s + 1).clamp(0, last) as u32);
        // A row with weight 0 adds exactly 0: point it at the other row so it is not
        // computed (halves the work for exact 3x shrinks such as 1080 -> 360).
        if w1 == 0 {
            i1 = i0;
        } else if w0 == 0 {
            i0 = i1;
        }
        Tap { i0, i1, w0, w1 }
    }));
}

/// Two horizontally resized rows (`S >> 4`, i.e. OpenCV's 16-bit intermediate), reused while
/// consecutive output rows share source rows.
#[derive(Default)]
struct RowPair {
    buf: Vec<i16>,
    slot: usize,
    rows: [u32; 2],
}

impl RowPair {
    const EMPTY: u32 = u32::MAX;

    /// Sizes the slots and forgets cached rows (they belong to the previous frame).
    fn reset(&mut self, slot: usize) {
        self.slot = slot;
        self.buf.resize(2 * slot, 0);
        self.rows = [Self::EMPTY; 2];
    }

    /// Returns the resized rows `r0` and `r1`, computing missing ones with `fill`.
    fn get(&mut self, r0: u32, r1: u32, mut fill: impl FnMut(u32, &mut [i16])) -> (&[i16], &[i16]) {
        let n = self.slot;
        let s0 = match self.rows.iter().position(|&r| r == r0) {
            Some(s) => s,
            None => {
                let s = usize::from(self.rows[0] == r1);
                fill(r0, &mut self.buf[s * n..(s + 1) * n]);
                self.rows[s] = r0;
                s
            }
        };
        let s1 = if r1 == r0 {
            s0
        } else {
            match self.rows.iter().position(|&r| r == r1) {
                Some(s) => s,
                None => {
                    let s = 1 - s0;
                    fill(r1, &mut self.buf[s * n..(s + 1) * n]);
                    self.rows[s] = r1;
                    s
                }
            }
        };
        (
            &self.buf[s0 * n..(s0 + 1) * n],
            &self.buf[s1 * n..(s1 + 1) * n],
        )
    }
}

/// Letterboxes frames into a model input tensor. Keep one per stream: it caches the resize
/// tables of the last geometry and its row buffers.
#[derive(Default)]
pub struct Preprocessor {
    /// The geometry the tables below were built for.
    lb: Option<Letterbox>,
    /// Full-resolution (packed RGB and luma) taps.
    xt: Vec<Tap>,
    yt: Vec<Tap>,
    /// 4:2:0 chroma-plane taps.
    cxt: Vec<Tap>,
    chroma: ChromaUpsampling,
    cyt: Vec<Tap>,
    rows: RowPair,
    crows: RowPair,
}

impl fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preprocessor")
            .field("geometry", &self.lb)
            .finish_non_exhaustive()
    }
}

impl Preprocessor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses how 4:2:0 chroma is upsampled (bilinear by default).
    pub fn set_chroma_upsampling(&mut self, chroma: ChromaUpsampling) {
        if chroma != self.chroma {
            self.chroma = chroma;
            // The chroma tables depend on it: rebuild them on the next frame.
            self.lb = None;
        }
    }

    pub fn chroma_upsampling(&self) -> ChromaUpsampling {
        self.chroma
    }

    /// Letterboxes `rect` of `frame` (the whole frame when `None`; a rectangle from
    /// [`Rect::crop_for`]) into `out`, as [`Preprocessor::run`] does a frame; the geometry
    /// returned maps boxes back to the frame's pixels.
    pub fn run_rect(
        &mut self,
        frame: &FrameRef<'_>,
        rect: Option<Rect>,
        dst_w: u32,
        dst_h: u32,
        out: &mut [f32],
    ) -> Result<Letterbox, PreprocessError> {
        let Some(rect) = rect else {
            return self.run(frame, dst_w, dst_h, out);
        };
        let cropped = crop(frame, rect).ok_or(PreprocessError::RectOutside {
            rect,
            width: frame.width,
            height: frame.height,
        })?;
        let lb = self.run(&cropped, dst_w, dst_h, out)?;
        Ok(Letterbox {
            src_x: rect.x,
            src_y: rect.y,
            frame_w: frame.width,
            frame_h: frame.height,
            ..lb
        })
    }

    /// Letterboxes `frame` into `out` (length >= `3 * dst_w * dst_h`, NCHW planar R, G, B,
    /// values in `[0, 1]`) and returns the geometry. Only the first `3 * dst_w * dst_h`
    /// floats are written.
    pub fn run(
        &mut self,
        frame: &FrameRef<'_>,
        dst_w: u32,
        dst_h: u32,
        out: &mut [f32],
    ) -> Result<Letterbox, PreprocessError> {
        let (w, h) = (frame.width, frame.height);
        if w == 0 || h == 0 {
            return Err(PreprocessError::EmptyFrame {
                width: w,
                height: h,
            });
        }
        if dst_w == 0 || dst_h == 0 {
            return Err(PreprocessError::EmptyOutput {
                width: dst_w,
                height: dst_h,
            });
        }
        let plane_len = (dst_w as usize)
            .checked_mul(dst_h as usize)
            .ok_or(PreprocessError::TooLarge)?;
        let needed = plane_len.checked_mul(3).ok_or(PreprocessError::TooLarge)?;
        if out.len() < needed {
            return Err(PreprocessError::OutputTooSmall {
                len: out.len(),
                needed,
            });
        }
        validate(frame)?;

        let lb = self.prepare(w, h, dst_w, dst_h);
        let (r, rest) = out[..needed].split_at_mut(plane_len);
        let (g, b) = rest.split_at_mut(plane_len);
        let mut planes = [r, g, b];
        for p in planes.iter_mut() {
            fill_padding(p, &lb);
        }
        let [r, g, b] = planes;
        let out = Out {
            r,
            g,
            b,
            stride: dst_w as usize,
            offset: lb.pad_top as usize * dst_w as usize + lb.pad_left as usize,
            width: lb.new_w as usize,
        };

        macro_rules! packed {
            ($bpp:literal, $r:literal, $g:literal, $b:literal) => {
                if lb.is_identity() {
                    copy_packed::<$bpp, $r, $g, $b>(&frame.planes[0], &lb, out)
                } else {
                    self.resize_packed::<$bpp, $r, $g, $b>(&frame.planes[0], &lb, out)
                }
            };
        }
        match frame.layout {
            PixelLayout::Rgb => packed!(3, 0, 1, 2),
            PixelLayout::Bgr => packed!(3, 2, 1, 0),
            PixelLayout::Rgbx | PixelLayout::Rgba => packed!(4, 0, 1, 2),
            PixelLayout::Bgrx | PixelLayout::Bgra => packed!(4, 2, 1, 0),
            PixelLayout::Xrgb => packed!(4, 1, 2, 3),
            PixelLayout::Xbgr => packed!(4, 3, 2, 1),
            PixelLayout::I420 | PixelLayout::Nv12 => self.resize_yuv(frame, &lb, out),
        }
        Ok(lb)
    }

    /// Returns the geometry, rebuilding the tables if it changed, and resets the row caches.
    fn prepare(&mut self, w: u32, h: u32, dst_w: u32, dst_h: u32) -> Letterbox {
        let lb = match self.lb {
            Some(lb) if (lb.src_w, lb.src_h, lb.dst_w, lb.dst_h) == (w, h, dst_w, dst_h) => lb,
            _ => {
                let lb = Letterbox::new(w, h, dst_w, dst_h);
                // OpenCV: scale = 1 / (dst / src), in f64.
                let sx = 1.0 / (lb.new_w as f64 / w as f64);
                let sy = 1.0 / (lb.new_h as f64 / h as f64);
                x_taps(w, lb.new_w, sx, &mut self.xt);
                y_taps(h, lb.new_h, sy, &mut self.yt);
                match self.chroma {
                    // Chroma sample k is centred on luma 2k + 0.5, so chroma coordinates are
                    // luma ones halved with the same half-pixel convention.
                    ChromaUpsampling::Bilinear => {
                        x_taps(w.div_ceil(2), lb.new_w, sx / 2.0, &mut self.cxt);
                        y_taps(h.div_ceil(2), lb.new_h, sy / 2.0, &mut self.cyt);
                    }
                    // Luma pixel i takes chroma sample i / 2: the luma taps, halved, blend
                    // exactly the chroma an upsampled-then-resized RGB image would.
                    ChromaUpsampling::Nearest => {
                        let half = |t: &Tap| Tap {
                            i0: t.i0 / 2,
                            i1: t.i1 / 2,
                            ..*t
                        };
                        self.cxt.clear();
                        self.cxt.extend(self.xt.iter().map(half));
                        self.cyt.clear();
                        self.cyt.extend(self.yt.iter().map(half));
                    }
                }
                self.lb = Some(lb);
                lb
            }
        };
        let n = lb.new_w as usize;
        self.rows.reset(3 * n);
        self.crows.reset(2 * n);
        lb
    }

    fn resize_packed<const BPP: usize, const R: usize, const G: usize, const B: usize>(
        &mut self,
        plane: &Plane<'_>,
        lb: &Letterbox,
        mut out: Out<'_>,
    ) {
        let n = lb.new_w as usize;
        let row_bytes = lb.src_w as usize * BPP;
        let Self { xt, yt, rows, .. } = self;
        for (dy, t) in yt.iter().enumerate() {
            let (h0, h1) = rows.get(t.i0, t.i1, |sy, dst| {
                let src = &plane.data[sy as usize * plane.stride..][..row_bytes];
                hresize::<BPP, 3>(src, [R, G, B], xt, dst);
            });
            let (or, og, ob) = out.row(dy);
            vresize(&h0[..n], &h1[..n], t, or);
            vresize(&h0[n..2 * n], &h1[n..2 * n], t, og);
            vresize(&h0[2 * n..], &h1[2 * n..], t, ob);
        }
    }

    fn resize_yuv(&mut self, frame: &FrameRef<'_>, lb: &Letterbox, mut out: Out<'_>) {
        let n = lb.new_w as usize;
        let w = lb.src_w as usize;
        let cw = w.div_ceil(2);
        let k = YuvCoeffs::new(frame.color);
        let [yp, p1, p2] = &frame.planes;
        let nv12 = frame.layout == PixelLayout::Nv12;
        let Self {
            xt,
            yt,
            cxt,
            cyt,
            rows,
            crows,
            ..
        } = self;
        for (dy, (ty, tc)) in yt.iter().zip(cyt.iter()).enumerate() {
            let (y0, y1) = rows.get(ty.i0, ty.i1, |sy, dst| {
                let src = &yp.data[sy as usize * yp.stride..][..w];
                hresize::<1, 1>(src, [0], xt, &mut dst[..n]);
            });
            let (c0, c1) = crows.get(tc.i0, tc.i1, |sy, dst| {
                let sy = sy as usize;
                if nv12 {
                    let src = &p1.data[sy * p1.stride..][..2 * cw];
                    hresize::<2, 2>(src, [0, 1], cxt, dst);
                } else {
                    let (du, dv) = dst.split_at_mut(n);
                    hresize::<1, 1>(&p1.data[sy * p1.stride..][..cw], [0], cxt, du);
                    hresize::<1, 1>(&p2.data[sy * p2.stride..][..cw], [0], cxt, dv);
                }
            });
            let (or, og, ob) = out.row(dy);
            let (u0, v0) = c0.split_at(n);
            let (u1, v1) = c1.split_at(n);
            yuv_row(
                [&y0[..n], &y1[..n]],
                ty,
                [u0, u1],
                [v0, v1],
                tc,
                &k,
                [or, og, ob],
            );
        }
    }
}

/// The image area of the three output planes.
struct Out<'a> {
    r: &'a mut [f32],
    g: &'a mut [f32],
    b: &'a mut [f32],
    stride: usize,
    /// Index of the image area's top-left pixel.
    offset: usize,
    width: usize,
}

impl Out<'_> {
    /// Output row `y` of the image area in each plane.
    fn row(&mut self, y: usize) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let o = self.offset + y * self.stride;
        let n = self.width;
        (
            &mut self.r[o..o + n],
            &mut self.g[o..o + n],
            &mut self.b[o..o + n],
        )
    }
}

/// Checks strides and plane lengths so that the row slicing below cannot panic.
fn validate(frame: &FrameRef<'_>) -> Result<(), PreprocessError> {
    let w = frame.width as usize;
    let h = frame.height as usize;
    let check = |i: usize, row_bytes: Option<usize>, rows: usize| {
        let row_bytes = row_bytes.ok_or(PreprocessError::TooLarge)?;
        let p = &frame.planes[i];
        if p.stride < row_bytes {
            return Err(PreprocessError::StrideTooSmall {
                plane: i,
                stride: p.stride,
                row_bytes,
            });
        }
        let needed = p
            .stride
            .checked_mul(rows - 1)
            .and_then(|b| b.checked_add(row_bytes))
            .ok_or(PreprocessError::TooLarge)?;
        if p.data.len() < needed {
            return Err(PreprocessError::PlaneTooShort {
                plane: i,
                len: p.data.len(),
                needed,
            });
        }
        Ok(())
    };
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    match frame.layout {
        PixelLayout::I420 => {
            check(0, Some(w), h)?;
            check(1, Some(cw), ch)?;
            check(2, Some(cw), ch)
        }
        PixelLayout::Nv12 => {
            check(0, Some(w), h)?;
            check(1, cw.checked_mul(2), ch)
        }
        layout => {
            let bpp = layout.packed_rgb().map_or(4, |p| p.0);
            check(0, w.checked_mul(bpp), h)
        }
    }
}

/// Writes the pad value over everything outside the image area of one plane.
fn fill_padding(plane: &mut [f32], lb: &Letterbox) {
    let pad = PAD_VALUE as f32 / 255.0;
    let stride = lb.dst_w as usize;
    let top = lb.pad_top as usize * stride;
    let bottom = (lb.pad_top + lb.new_h) as usize * stride;
    plane[..top].fill(pad);
    plane[bottom..].fill(pad);
    let (left, right) = (lb.pad_left as usize, (lb.pad_left + lb.new_w) as usize);
    if left > 0 || right < stride {
        for row in plane[top..bottom].chunks_exact_mut(stride) {
            row[..left].fill(pad);
            row[right..].fill(pad);
        }
    }
}

/// Frame already at the scaled size: converts pixels directly.
fn copy_packed<const BPP: usize, const R: usize, const G: usize, const B: usize>(
    plane: &Plane<'_>,
    lb: &Letterbox,
    mut out: Out<'_>,
) {
    let row_bytes = lb.src_w as usize * BPP;
    for y in 0..lb.src_h as usize {
        let src = &plane.data[y * plane.stride..][..row_bytes];
        let (or, og, ob) = out.row(y);
        for (((px, r), g), b) in src.chunks_exact(BPP).zip(or).zip(og).zip(ob) {
            *r = px[R] as f32 / 255.0;
            *g = px[G] as f32 / 255.0;
            *b = px[B] as f32 / 255.0;
        }
    }
}

/// OpenCV's horizontal pass for `NC` channels at byte offsets `offs` of `BPP`-byte pixels,
/// stored planar (`NC` runs of `taps.len()`) as `S >> 4` (what its vertical pass uses).
#[inline(always)]
fn hresize<const BPP: usize, const NC: usize>(
    src: &[u8],
    offs: [usize; NC],
    taps: &[Tap],
    dst: &mut [i16],
) {
    let n = taps.len();
    assert!(dst.len() >= NC * n);
    for (d, t) in taps.iter().enumerate() {
        let p0 = t.i0 as usize * BPP;
        let p1 = t.i1 as usize * BPP;
        for c in 0..NC {
            let a = src[p0 + offs[c]] as i32;
            let b = src[p1 + offs[c]] as i32;
            dst[c * n + d] = ((a * t.w0 as i32 + b * t.w1 as i32) >> 4) as i16;
        }
    }
}

/// OpenCV's SIMD vertical step without the final rounding: the sum in quarter levels.
#[inline(always)]
fn vsum(h0: i16, h1: i16, t: &Tap) -> i32 {
    ((h0 as i32 * t.w0 as i32) >> 16) + ((h1 as i32 * t.w1 as i32) >> 16)
}

/// Vertical pass for one channel: rounds to a level like OpenCV, then scales to [0, 1].
#[inline(always)]
fn vresize(h0: &[i16], h1: &[i16], t: &Tap, out: &mut [f32]) {
    let n = out.len();
    let (h0, h1) = (&h0[..n], &h1[..n]);
    for i in 0..n {
        let v = ((vsum(h0[i], h1[i], t) + 2) >> 2).clamp(0, 255);
        // Division (not a LUT or a reciprocal, which is off by an ulp for half the levels)
        // gives NumPy's value and vectorises.
        out[i] = v as f32 / 255.0;
    }
}

/// YUV -> RGB for quarter-level inputs: `R = y * Yq + rv * Vq + r0` and so on.
struct YuvCoeffs {
    y: f32,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
    r0: f32,
    g0: f32,
    b0: f32,
}

impl YuvCoeffs {
    fn new(color: YuvColor) -> Self {
        let (kr, kb) = match color.matrix {
            YuvMatrix::Bt601 => (0.299, 0.114),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
            YuvMatrix::Bt2020 => (0.2627, 0.0593),
        };
        let kg = 1.0 - kr - kb;
        let (ys, yo, cs): (f64, f64, f64) = if color.full_range {
            (1.0, 0.0, 1.0)
        } else {
            (255.0 / 219.0, 16.0, 255.0 / 224.0)
        };
        let rv = cs * 2.0 * (1.0 - kr);
        let bu = cs * 2.0 * (1.0 - kb);
        let gu = -cs * 2.0 * (1.0 - kb) * kb / kg;
        let gv = -cs * 2.0 * (1.0 - kr) * kr / kg;
        let y0 = -ys * yo;
        YuvCoeffs {
            y: (ys / 4.0) as f32,
            rv: (rv / 4.0) as f32,
            gu: (gu / 4.0) as f32,
            gv: (gv / 4.0) as f32,
            bu: (bu / 4.0) as f32,
            r0: (y0 - 128.0 * rv) as f32,
            g0: (y0 - 128.0 * (gu + gv)) as f32,
            b0: (y0 - 128.0 * bu) as f32,
        }
    }
}

/// Clamps to 0..=255, rounds to a level (half to even, via the 1.5 * 2^23 trick, which
/// vectorises without SSE4.1) and scales to [0, 1].
#[inline(always)]
fn level(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    ((x.clamp(0.0, 255.0) + MAGIC) - MAGIC) / 255.0
}

/// Vertical pass of Y, U, V for one output row, converted to RGB.
#[inline(always)]
fn yuv_row(
    y: [&[i16]; 2],
    ty: &Tap,
    u: [&[i16]; 2],
    v: [&[i16]; 2],
    tc: &Tap,
    k: &YuvCoeffs,
    out: [&mut [f32]; 3],
) {
    let [or, og, ob] = out;
    let n = or.len();
    let (og, ob) = (&mut og[..n], &mut ob[..n]);
    let (y0, y1, u0, u1, v0, v1) = (
        &y[0][..n],
        &y[1][..n],
        &u[0][..n],
        &u[1][..n],
        &v[0][..n],
        &v[1][..n],
    );
    for i in 0..n {
        let yq = vsum(y0[i], y1[i], ty) as f32;
        let uq = vsum(u0[i], u1[i], tc) as f32;
        let vq = vsum(v0[i], v1[i], tc) as f32;
        let yy = k.y * yq;
        or[i] = level(yy + k.rv * vq + k.r0);
        og[i] = level(yy + k.gu * uq + k.gv * vq + k.g0);
        ob[i] = level(yy + k.bu * uq + k.b0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelLayout, Plane, YuvColor, YuvMatrix};

    const EMPTY: Plane<'static> = Plane {
        data: &[],
        stride: 0,
    };

    fn packed(layout: PixelLayout, w: u32, h: u32, data: &[u8], stride: usize) -> FrameRef<'_> {
        FrameRef {
            layout,
            width: w,
            height: h,
            planes: [Plane { data, stride }, EMPTY, EMPTY],
            color: YuvColor::default(),
        }
    }

    fn run(frame: &FrameRef<'_>, dw: u32, dh: u32) -> (Letterbox, Vec<f32>) {
        let mut out = vec![f32::NAN; 3 * (dw * dh) as usize];
        let lb = Preprocessor::new().run(frame, dw, dh, &mut out).unwrap();
        (lb, out)
    }

    /// Value of channel `c` at (x, y) as a level (0..=255, possibly fractional).
    fn at(out: &[f32], dw: u32, dh: u32, c: usize, x: u32, y: u32) -> f32 {
        out[c * (dw * dh) as usize + (y * dw + x) as usize] * 255.0
    }

    fn assert_level(out: &[f32], dw: u32, dh: u32, x: u32, y: u32, rgb: [f32; 3], tol: f32) {
        for (c, want) in rgb.iter().enumerate() {
            let got = at(out, dw, dh, c, x, y);
            assert!(
                (got - want).abs() <= tol + 1e-3,
                "channel {c} at ({x},{y}): got {got}, want {want}"
            );
        }
    }

    #[test]
    fn geometry_bus() {
        let lb = Letterbox::new(810, 1080, 640, 640);
        assert_eq!(
            (lb.new_w, lb.new_h, lb.pad_left, lb.pad_top),
            (480, 640, 80, 0)
        );
        assert!((lb.scale - 640.0 / 1080.0).abs() < 1e-7);
    }

    #[test]
    fn geometry_common() {
        let lb = Letterbox::new(640, 480, 640, 640);
        assert_eq!(
            (lb.new_w, lb.new_h, lb.pad_left, lb.pad_top),
            (640, 480, 0, 80)
        );
        assert_eq!(lb.scale, 1.0);
        let lb = Letterbox::new(1920, 1080, 640, 640);
        assert_eq!(
            (lb.new_w, lb.new_h, lb.pad_left, lb.pad_top),
            (640, 360, 0, 140)
        );
        let lb = Letterbox::new(640, 640, 640, 640);
        assert_eq!(
            (lb.new_w, lb.new_h, lb.pad_left, lb.pad_top),
            (640, 640, 0, 0)
        );
    }

    #[test]
    fn geometry_odd_and_ties() {
        // 333 * 640 / 1001 = 212.9 -> 213; dh = 213.5 -> top 213, bottom 214.
        let lb = Letterbox::new(1001, 333, 640, 640);
        assert_eq!(
            (lb.new_w, lb.new_h, lb.pad_left, lb.pad_top),
            (640, 213, 0, 213)
        );
        // 10 * 0.25 = 2.5 rounds to 2 (half to even), 14 * 0.25 = 3.5 to 4.
        let lb = Letterbox::new(16, 10, 4, 100);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_top), (4, 2, 49));
        let lb = Letterbox::new(16, 14, 4, 100);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_top), (4, 4, 48));
        // Odd padding: the extra pixel goes right.
        let lb = Letterbox::new(3, 4, 8, 8);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_left, lb.pad_top), (6, 8, 1, 0));
        let lb = Letterbox::new(5, 8, 8, 8);
        assert_eq!((lb.new_w, lb.pad_left), (5, 1));
        // Extreme aspect: at least one row.
        let lb = Letterbox::new(10_000, 1, 640, 640);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_top), (640, 1, 319));
        // Non-square input.
        let lb = Letterbox::new(1920, 1080, 640, 384);
        assert_eq!(
            (lb.new_w, lb.new_h, lb.pad_left, lb.pad_top),
            (640, 360, 0, 12)
        );
    }

    #[test]
    fn round_trip() {
        for lb in [
            Letterbox::new(810, 1080, 640, 640),
            Letterbox::new(1920, 1080, 640, 640),
            Letterbox::new(333, 1001, 320, 320),
        ] {
            for &(x, y) in &[(0.0, 0.0), (17.5, 400.25), (-3.0, 700.0)] {
                let (ix, iy) = lb.to_input(x, y);
                let (fx, fy) = lb.to_frame(ix, iy);
                assert!((fx - x).abs() < 1e-3 && (fy - y).abs() < 1e-3, "{lb:?}");
            }
        }
        let lb = Letterbox::new(1920, 1080, 640, 640);
        assert_eq!(lb.to_frame(0.0, 140.0), (0.0, 0.0));
        assert_eq!(lb.to_frame(640.0, 500.0), (1920.0, 1080.0));
    }

    #[test]
    fn identity_copy_is_exact() {
        let (w, h) = (640u32, 640u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let (lb, out) = run(&packed(PixelLayout::Rgb, w, h, &data, 3 * w as usize), w, h);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_left, lb.pad_top), (w, h, 0, 0));
        for (i, px) in data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                assert_eq!(out[c * (w * h) as usize + i], px[c] as f32 / 255.0);
            }
        }
    }

    #[test]
    fn padding_is_114() {
        let pad = 114.0f32 / 255.0;
        let data = vec![200u8; 192 * 108 * 3];
        let (lb, out) = run(&packed(PixelLayout::Rgb, 192, 108, &data, 192 * 3), 64, 64);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_top), (64, 36, 14));
        for c in 0..3 {
            for y in 0..64 {
                for x in 0..64 {
                    let v = out[c * 4096 + (y * 64 + x) as usize];
                    if (14..50).contains(&y) {
                        assert_eq!(v, 200.0 / 255.0);
                    } else {
                        assert_eq!(v, pad, "({x},{y})");
                    }
                }
            }
        }
        // Side padding, odd width: 3x4 -> 6x8 in 8x8, left 1, right 1.
        let data = vec![9u8; 3 * 4 * 3];
        let (lb, out) = run(&packed(PixelLayout::Rgb, 3, 4, &data, 9), 8, 8);
        assert_eq!((lb.new_w, lb.pad_left), (6, 1));
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..8 {
                    let v = out[c * 64 + y * 8 + x];
                    let want = if (1..7).contains(&x) {
                        9.0 / 255.0
                    } else {
                        pad
                    };
                    assert_eq!(v, want);
                }
            }
        }
    }

    #[test]
    fn channel_order() {
        let (r, g, b, x) = (10u8, 20u8, 30u8, 99u8);
        let cases: [(PixelLayout, &[u8]); 8] = [
            (PixelLayout::Rgb, &[r, g, b]),
            (PixelLayout::Bgr, &[b, g, r]),
            (PixelLayout::Rgbx, &[r, g, b, x]),
            (PixelLayout::Bgrx, &[b, g, r, x]),
            (PixelLayout::Xrgb, &[x, r, g, b]),
            (PixelLayout::Xbgr, &[x, b, g, r]),
            (PixelLayout::Rgba, &[r, g, b, x]),
            (PixelLayout::Bgra, &[b, g, r, x]),
        ];
        for (layout, px) in cases {
            // Both the copy path (8x8 into 8x8) and the resize path (10x6 into 8x8).
            for (w, h) in [(8u32, 8u32), (10, 6)] {
                let data = px.repeat((w * h) as usize);
                let frame = packed(layout, w, h, &data, px.len() * w as usize);
                let (lb, out) = run(&frame, 8, 8);
                for y in lb.pad_top..lb.pad_top + lb.new_h {
                    for xx in 0..8 {
                        assert_level(&out, 8, 8, xx, y, [10.0, 20.0, 30.0], 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn bilinear_values() {
        // Rows [0, 255], upscaled x2 to 4x4: OpenCV gives 0, 64, 191, 255 in each row
        // (63.75 rounds up, 191.25 down).
        let data = [0u8, 0, 0, 255, 255, 255].repeat(2);
        let (lb, out) = run(&packed(PixelLayout::Rgb, 2, 2, &data, 6), 4, 4);
        assert_eq!((lb.new_w, lb.new_h), (4, 4));
        for y in 0..4 {
            for (x, want) in [0.0, 64.0, 191.0, 255.0].into_iter().enumerate() {
                assert_level(&out, 4, 4, x as u32, y, [want; 3], 0.0);
            }
        }
        // 2x downscale is the 2x2 average, rounded half up: (10 + 21 + 30 + 40 + 2) / 4 = 25.
        let g = |v: u8| [v, v, v];
        let data = [g(10), g(21), g(30), g(40)].concat();
        let (_, out) = run(&packed(PixelLayout::Rgb, 2, 2, &data, 6), 1, 1);
        assert_level(&out, 1, 1, 0, 0, [25.0; 3], 0.0);
        // 3x horizontal downscale: output x samples source 3x + 1 exactly.
        let data: Vec<u8> = (0..9u8).flat_map(|v| g(v * 10)).collect();
        let (lb, out) = run(&packed(PixelLayout::Rgb, 9, 1, &data, 27), 3, 3);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_top), (3, 1, 1));
        for (x, want) in [10.0, 40.0, 70.0].into_iter().enumerate() {
            assert_level(&out, 3, 3, x as u32, 1, [want; 3], 0.0);
        }
    }

    /// `cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)` from opencv-python 5.0
    /// (4.14 agrees) on `img[i] = (37 i + 11) % 256`: locks in the fixed-point rounding and
    /// OpenCV's border handling.
    #[test]
    fn matches_opencv_tiny() {
        const UP: [u8; 120] = [
            11, 48, 85, 59, 96, 133, 129, 150, 187, 198, 59, 96, 188, 48, 86, 97, 118, 155, 150,
            187, 80, 199, 236, 17, 28, 65, 102, 77, 114, 151, 140, 167, 204, 145, 76, 113, 134, 66,
            103, 108, 135, 172, 168, 147, 98, 216, 151, 34, 54, 91, 128, 103, 140, 177, 156, 193,
            230, 65, 102, 139, 55, 92, 129, 124, 161, 198, 193, 86, 123, 242, 23, 60, 80, 117, 154,
            128, 165, 135, 182, 219, 112, 91, 128, 117, 80, 117, 154, 150, 187, 224, 133, 112, 149,
            114, 49, 86, 97, 134, 171, 145, 183, 108, 199, 236, 33, 108, 145, 102, 98, 134, 172,
            167, 204, 241, 92, 129, 166, 29, 66, 103,
        ];
        const DOWN: [u8; 36] = [
            128, 101, 137, 89, 116, 131, 51, 88, 125, 152, 82, 119, 101, 138, 79, 31, 68, 105, 217,
            30, 67, 147, 184, 61, 203, 80, 117, 197, 84, 47, 158, 195, 83, 120, 125, 162,
        ];
        for (w, h, d, want) in [(5u32, 3u32, 8u32, &UP[..]), (9, 7, 4, &DOWN[..])] {
            let img: Vec<u8> = (0..w * h * 3)
                .map(|i| ((i * 37 + 11) % 256) as u8)
                .collect();
            let (lb, out) = run(&packed(PixelLayout::Rgb, w, h, &img, 3 * w as usize), d, d);
            assert_eq!(lb.new_w as usize * lb.new_h as usize * 3, want.len());
            for (i, px) in want.chunks_exact(3).enumerate() {
                let (x, y) = (i as u32 % lb.new_w, i as u32 / lb.new_w);
                let rgb = [px[0] as f32, px[1] as f32, px[2] as f32];
                assert_level(&out, d, d, x + lb.pad_left, y + lb.pad_top, rgb, 0.0);
            }
        }
    }

    struct Yuv {
        w: u32,
        h: u32,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    }

    impl Yuv {
        fn flat(w: u32, h: u32, y: u8, u: u8, v: u8) -> Self {
            let c = (w.div_ceil(2) * h.div_ceil(2)) as usize;
            Yuv {
                w,
                h,
                y: vec![y; (w * h) as usize],
                u: vec![u; c],
                v: vec![v; c],
            }
        }

        /// I420 planes with `extra` bytes of junk after each row.
        fn i420(&self, extra: usize) -> [Vec<u8>; 3] {
            let cw = self.w.div_ceil(2) as usize;
            let pad = |p: &[u8], rw: usize| -> Vec<u8> {
                p.chunks(rw)
                    .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0xA5, extra)))
                    .collect()
            };
            [
                pad(&self.y, self.w as usize),
                pad(&self.u, cw),
                pad(&self.v, cw),
            ]
        }

        fn nv12(&self, extra: usize) -> [Vec<u8>; 2] {
            let uv: Vec<u8> = self
                .u
                .iter()
                .zip(&self.v)
                .flat_map(|(&u, &v)| [u, v])
                .collect();
            let cw = self.w.div_ceil(2) as usize;
            let [y, ..] = self.i420(extra);
            let uv = uv
                .chunks(2 * cw)
                .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0x5A, extra)))
                .collect();
            [y, uv]
        }
    }

    fn i420_frame<'a>(y: &Yuv, p: &'a [Vec<u8>; 3], extra: usize, color: YuvColor) -> FrameRef<'a> {
        let cw = y.w.div_ceil(2) as usize;
        FrameRef {
            layout: PixelLayout::I420,
            width: y.w,
            height: y.h,
            planes: [
                Plane {
                    data: &p[0],
                    stride: y.w as usize + extra,
                },
                Plane {
                    data: &p[1],
                    stride: cw + extra,
                },
                Plane {
                    data: &p[2],
                    stride: cw + extra,
                },
            ],
            color,
        }
    }

    fn nv12_frame<'a>(y: &Yuv, p: &'a [Vec<u8>; 2], extra: usize, color: YuvColor) -> FrameRef<'a> {
        let cw = y.w.div_ceil(2) as usize;
        FrameRef {
            layout: PixelLayout::Nv12,
            width: y.w,
            height: y.h,
            planes: [
                Plane {
                    data: &p[0],
                    stride: y.w as usize + extra,
                },
                Plane {
                    data: &p[1],
                    stride: 2 * cw + extra,
                },
                EMPTY,
            ],
            color,
        }
    }

    /// Reference conversion in f64, rounded to a level.
    fn yuv_to_rgb(y: f64, u: f64, v: f64, color: YuvColor) -> [f32; 3] {
        let (kr, kb) = match color.matrix {
            YuvMatrix::Bt601 => (0.299, 0.114),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
            YuvMatrix::Bt2020 => (0.2627, 0.0593),
        };
        let (y, u, v) = if color.full_range {
            (y, u - 128.0, v - 128.0)
        } else {
            (
                (y - 16.0) * 255.0 / 219.0,
                (u - 128.0) * 255.0 / 224.0,
                (v - 128.0) * 255.0 / 224.0,
            )
        };
        let kg = 1.0 - kr - kb;
        let r = y + 2.0 * (1.0 - kr) * v;
        let b = y + 2.0 * (1.0 - kb) * u;
        let g = (y - kr * r - kb * b) / kg;
        [r, g, b].map(|c| c.clamp(0.0, 255.0).round() as f32)
    }

    #[test]
    fn yuv_flat_red() {
        let color = YuvColor {
            matrix: YuvMatrix::Bt601,
            full_range: false,
        };
        for (w, h) in [(64u32, 48u32), (7, 5), (1920, 1080)] {
            let yuv = Yuv::flat(w, h, 81, 90, 240);
            let p = yuv.i420(0);
            let (lb, a) = run(&i420_frame(&yuv, &p, 0, color), 32, 32);
            let p2 = yuv.nv12(0);
            let (_, b) = run(&nv12_frame(&yuv, &p2, 0, color), 32, 32);
            assert_eq!(a, b);
            for y in lb.pad_top..lb.pad_top + lb.new_h {
                for x in lb.pad_left..lb.pad_left + lb.new_w {
                    assert_level(&a, 32, 32, x, y, [254.0, 0.0, 0.0], 0.0);
                }
            }
        }
    }

    #[test]
    fn yuv_matrices() {
        let yuv = Yuv::flat(6, 6, 120, 70, 190);
        for matrix in [YuvMatrix::Bt601, YuvMatrix::Bt709, YuvMatrix::Bt2020] {
            for full_range in [false, true] {
                let color = YuvColor { matrix, full_range };
                let want = yuv_to_rgb(120.0, 70.0, 190.0, color);
                let p = yuv.i420(0);
                let (_, out) = run(&i420_frame(&yuv, &p, 0, color), 6, 6);
                for y in 0..6 {
                    for x in 0..6 {
                        assert_level(&out, 6, 6, x, y, want, 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn yuv_luma_detail_kept() {
        // Identity geometry, varying luma and flat chroma: per-pixel conversion.
        let color = YuvColor {
            matrix: YuvMatrix::Bt709,
            full_range: false,
        };
        let (w, h) = (9u32, 7u32);
        let mut yuv = Yuv::flat(w, h, 0, 100, 150);
        for (i, p) in yuv.y.iter_mut().enumerate() {
            *p = (16 + i * 3) as u8;
        }
        let p = yuv.i420(3);
        let (_, out) = run(&i420_frame(&yuv, &p, 3, color), w, h);
        for y in 0..h {
            for x in 0..w {
                let yv = yuv.y[(y * w + x) as usize] as f64;
                let want = yuv_to_rgb(yv, 100.0, 150.0, color);
                assert_level(&out, w, h, x, y, want, 0.0);
            }
        }
    }

    #[test]
    fn nearest_chroma_repeats_each_sample_over_its_2x2_pixels() {
        let color = YuvColor::default();
        let mut yuv = Yuv::flat(8, 8, 128, 128, 128);
        // A different blue-difference value per chroma sample.
        for (i, u) in yuv.u.iter_mut().enumerate() {
            *u = 40 + 12 * i as u8;
        }
        let p = yuv.i420(0);
        let frame = i420_frame(&yuv, &p, 0, color);
        let mut out = vec![f32::NAN; 3 * 64];
        let mut pre = Preprocessor::new();
        pre.set_chroma_upsampling(ChromaUpsampling::Nearest);
        let lb = pre.run(&frame, 8, 8, &mut out).unwrap();
        assert_eq!((lb.new_w, lb.new_h, lb.pad_left, lb.pad_top), (8, 8, 0, 0));
        for y in 0..8 {
            for x in 0..8 {
                let u = yuv.u[(y / 2 * 4 + x / 2) as usize] as f64;
                let want = yuv_to_rgb(128.0, u, 128.0, color).map(|v| v.round());
                assert_level(&out, 8, 8, x, y, want, 1.0);
            }
        }
        // Bilinear blends neighbouring samples: the same frame gives other values.
        pre.set_chroma_upsampling(ChromaUpsampling::Bilinear);
        let mut bilinear = vec![f32::NAN; 3 * 64];
        pre.run(&frame, 8, 8, &mut bilinear).unwrap();
        assert_ne!(out, bilinear);
        // NV12 gives the same as I420.
        let p2 = yuv.nv12(0);
        let mut nv12 = vec![f32::NAN; 3 * 64];
        pre.set_chroma_upsampling(ChromaUpsampling::Nearest);
        pre.run(&nv12_frame(&yuv, &p2, 0, color), 8, 8, &mut nv12)
            .unwrap();
        assert_eq!(out, nv12);
    }

    #[test]
    fn yuv_odd_sizes_and_strides() {
        let color = YuvColor::default();
        for (w, h) in [(1u32, 1u32), (3, 3), (5, 2), (33, 17), (101, 57)] {
            let mut yuv = Yuv::flat(w, h, 0, 0, 0);
            let fill = |p: &mut Vec<u8>, k: usize| {
                for (i, v) in p.iter_mut().enumerate() {
                    *v = (i * k % 220 + 16) as u8;
                }
            };
            fill(&mut yuv.y, 13);
            fill(&mut yuv.u, 7);
            fill(&mut yuv.v, 11);
            let (pa, pb) = (yuv.i420(0), yuv.i420(5));
            let (la, a) = run(&i420_frame(&yuv, &pa, 0, color), 40, 24);
            let (lb, b) = run(&i420_frame(&yuv, &pb, 5, color), 40, 24);
            assert_eq!((la, &a), (lb, &b));
            let (na, nb) = (yuv.nv12(0), yuv.nv12(3));
            let (_, c) = run(&nv12_frame(&yuv, &na, 0, color), 40, 24);
            let (_, d) = run(&nv12_frame(&yuv, &nb, 3, color), 40, 24);
            assert_eq!(a, c);
            assert_eq!(a, d);
            assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn stride_padding_ignored() {
        let (w, h) = (13u32, 9u32);
        for layout in [PixelLayout::Rgb, PixelLayout::Bgrx] {
            let bpp = layout.packed_rgb().unwrap().0;
            let rb = w as usize * bpp;
            let tight: Vec<u8> = (0..rb * h as usize).map(|i| (i * 31 % 256) as u8).collect();
            let stride = rb + 7;
            let mut padded = vec![0xEEu8; stride * h as usize - 7];
            for y in 0..h as usize {
                padded[y * stride..][..rb].copy_from_slice(&tight[y * rb..][..rb]);
            }
            for dst in [(13u32, 13u32), (20, 20)] {
                let (_, a) = run(&packed(layout, w, h, &tight, rb), dst.0, dst.1);
                let (_, b) = run(&packed(layout, w, h, &padded, stride), dst.0, dst.1);
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn cache_reuse_matches_fresh() {
        let mut pre = Preprocessor::new();
        let mut out = vec![0.0; 3 * 64 * 64];
        let a: Vec<u8> = (0..50 * 30 * 3).map(|i| (i % 253) as u8).collect();
        let b: Vec<u8> = (0..31 * 70 * 4).map(|i| (i * 5 % 256) as u8).collect();
        let fa = packed(PixelLayout::Rgb, 50, 30, &a, 150);
        let fb = packed(PixelLayout::Xbgr, 31, 70, &b, 124);
        for f in [fa, fb, fa, fa, fb] {
            pre.run(&f, 64, 64, &mut out).unwrap();
            assert_eq!(out, run(&f, 64, 64).1);
        }
    }

    #[test]
    fn errors_not_panics() {
        let mut pre = Preprocessor::new();
        let mut out = vec![0.0; 3 * 16 * 16];
        let data = vec![0u8; 400];
        // Last row may be just the row bytes.
        let ok = packed(PixelLayout::Rgb, 10, 10, &data[..9 * 40 + 30], 40);
        assert!(pre.run(&ok, 16, 16, &mut out).is_ok());
        let short = packed(PixelLayout::Rgb, 10, 10, &data[..299], 30);
        let e = pre.run(&short, 16, 16, &mut out).unwrap_err();
        assert_eq!(
            e,
            PreprocessError::PlaneTooShort {
                plane: 0,
                len: 299,
                needed: 300
            }
        );
        assert!(e.to_string().contains("299"));
        let narrow = packed(PixelLayout::Rgbx, 10, 10, &data, 39);
        assert!(matches!(
            pre.run(&narrow, 16, 16, &mut out),
            Err(PreprocessError::StrideTooSmall { plane: 0, .. })
        ));
        let empty = packed(PixelLayout::Rgb, 0, 10, &data, 30);
        assert!(matches!(
            pre.run(&empty, 16, 16, &mut out),
            Err(PreprocessError::EmptyFrame { .. })
        ));
        let frame = packed(PixelLayout::Rgb, 10, 10, &data, 30);
        assert!(matches!(
            pre.run(&frame, 0, 16, &mut out),
            Err(PreprocessError::EmptyOutput { .. })
        ));
        assert_eq!(
            pre.run(&frame, 16, 17, &mut out),
            Err(PreprocessError::OutputTooSmall {
                len: 768,
                needed: 816
            })
        );

        let yuv = Yuv::flat(7, 5, 16, 128, 128);
        let mut p = yuv.i420(0);
        p[2].pop();
        let e = pre
            .run(
                &i420_frame(&yuv, &p, 0, YuvColor::default()),
                16,
                16,
                &mut out,
            )
            .unwrap_err();
        assert!(
            matches!(e, PreprocessError::PlaneTooShort { plane: 2, .. }),
            "{e}"
        );
        let mut p = yuv.nv12(0);
        p[1].truncate(10);
        let e = pre
            .run(
                &nv12_frame(&yuv, &p, 0, YuvColor::default()),
                16,
                16,
                &mut out,
            )
            .unwrap_err();
        assert!(
            matches!(e, PreprocessError::PlaneTooShort { plane: 1, .. }),
            "{e}"
        );
        let p = yuv.nv12(0);
        let mut f = nv12_frame(&yuv, &p, 0, YuvColor::default());
        f.planes[1].stride = 7;
        assert!(matches!(
            pre.run(&f, 16, 16, &mut out),
            Err(PreprocessError::StrideTooSmall { plane: 1, .. })
        ));
        // A planar frame missing its planes.
        let f = FrameRef {
            layout: PixelLayout::I420,
            width: 4,
            height: 4,
            planes: [EMPTY; 3],
            color: YuvColor::default(),
        };
        assert!(pre.run(&f, 16, 16, &mut out).is_err());
        // Still usable after errors.
        assert!(pre.run(&ok, 16, 16, &mut out).is_ok());
    }

    #[test]
    fn rect_clip_and_yuv_alignment() {
        let r = Rect {
            x: 5,
            y: 3,
            w: 100,
            h: 100,
        };
        assert_eq!(
            r.clip(50, 40),
            Some(Rect {
                x: 5,
                y: 3,
                w: 45,
                h: 37
            })
        );
        assert_eq!(r.clip(5, 40), None);
        assert_eq!(r.clip(0, 0), None);
        let far = Rect {
            x: u32::MAX,
            y: 0,
            w: u32::MAX,
            h: 1,
        };
        assert_eq!(far.clip(100, 100), None);
        assert_eq!(
            r.crop_for(PixelLayout::Rgb, 50, 40),
            Some(Rect {
                x: 5,
                y: 3,
                w: 45,
                h: 37
            })
        );
        // Moved to (4, 2), grown by the pixel it moved, still covering the request.
        assert_eq!(
            r.crop_for(PixelLayout::I420, 50, 40),
            Some(Rect {
                x: 4,
                y: 2,
                w: 46,
                h: 38
            })
        );
        assert_eq!(r.crop_for(PixelLayout::Nv12, 4, 40), None);
    }

    #[test]
    fn roi_geometry_maps_back_to_frame_pixels() {
        let rect = Rect {
            x: 100,
            y: 50,
            w: 320,
            h: 160,
        };
        let lb = Letterbox::of_rect(1920, 1080, rect, 640, 640);
        assert_eq!((lb.frame_w, lb.frame_h), (1920, 1080));
        assert_eq!(lb.source(), rect);
        assert_eq!(
            (lb.new_w, lb.new_h, lb.pad_left, lb.pad_top, lb.scale),
            (640, 320, 0, 160, 2.0)
        );
        // The rectangle's corners are the scaled area's corners.
        assert_eq!(lb.to_input(100.0, 50.0), (0.0, 160.0));
        assert_eq!(lb.to_frame(640.0, 480.0), (420.0, 210.0));
        let (x, y) = lb.to_frame(lb.to_input(333.0, 77.0).0, lb.to_input(333.0, 77.0).1);
        assert!((x - 333.0).abs() < 1e-3 && (y - 77.0).abs() < 1e-3);
        // Boxes are clipped to the rectangle, not to the frame.
        let b = lb.box_to_frame([-50.0, 100.0, 700.0, 700.0]);
        assert_eq!(b, [100.0, 50.0, 420.0, 210.0]);
        assert_eq!(lb.box_to_frame([f32::NAN, 0.0, 0.0, 0.0])[0], 100.0);
    }

    /// `w x h` packed RGB with a distinct value per byte.
    fn pattern(w: u32, h: u32) -> Vec<u8> {
        (0..w * h * 3)
            .map(|i| ((i * 31 + i / 7) % 251) as u8)
            .collect()
    }

    #[test]
    fn roi_equals_letterboxing_the_cut_out_image() {
        let (w, h) = (61u32, 47u32);
        let img = pattern(w, h);
        let rect = Rect {
            x: 7,
            y: 5,
            w: 33,
            h: 21,
        };
        let cut: Vec<u8> = (rect.y..rect.y + rect.h)
            .flat_map(|y| {
                let o = (y * w * 3 + rect.x * 3) as usize;
                img[o..o + 3 * rect.w as usize].to_vec()
            })
            .collect();
        let (want_lb, want) = run(
            &packed(PixelLayout::Rgb, rect.w, rect.h, &cut, 3 * rect.w as usize),
            64,
            48,
        );
        let mut out = vec![f32::NAN; 3 * 64 * 48];
        let frame = packed(PixelLayout::Rgb, w, h, &img, 3 * w as usize);
        let mut pre = Preprocessor::new();
        let lb = pre.run_rect(&frame, Some(rect), 64, 48, &mut out).unwrap();
        assert_eq!(out, want);
        assert_eq!((lb.src_x, lb.src_y, lb.frame_w, lb.frame_h), (7, 5, w, h));
        assert_eq!(
            Letterbox {
                src_x: 0,
                src_y: 0,
                frame_w: rect.w,
                frame_h: rect.h,
                ..lb
            },
            want_lb
        );
        assert_eq!(lb, Letterbox::of_rect(w, h, rect, 64, 48));
        // None is the whole frame.
        let whole = pre.run_rect(&frame, None, 64, 48, &mut out).unwrap();
        assert_eq!(whole, Letterbox::new(w, h, 64, 48));
        // A rectangle past the frame is an error, not a panic.
        let past = Rect { x: 50, ..rect };
        assert!(matches!(
            pre.run_rect(&frame, Some(past), 64, 48, &mut out),
            Err(PreprocessError::RectOutside { .. })
        ));
    }

    #[test]
    fn roi_on_yuv_equals_the_cut_out_planes() {
        let (w, h) = (21u32, 15u32);
        let mut yuv = Yuv::flat(w, h, 0, 0, 0);
        for (i, v) in yuv.y.iter_mut().enumerate() {
            *v = (i * 7 % 220 + 16) as u8;
        }
        for (i, (u, v)) in yuv.u.iter_mut().zip(yuv.v.iter_mut()).enumerate() {
            (*u, *v) = ((i * 13 % 200 + 20) as u8, (i * 29 % 200 + 30) as u8);
        }
        let rect = Rect {
            x: 3,
            y: 5,
            w: 11,
            h: 9,
        }
        .crop_for(PixelLayout::I420, w, h)
        .unwrap();
        assert_eq!((rect.x, rect.y, rect.w, rect.h), (2, 4, 12, 10));
        let (cw, ch) = (rect.w.div_ceil(2), rect.h.div_ceil(2));
        let cut = |p: &[u8], stride: u32, x: u32, y: u32, rw: u32, rh: u32| -> Vec<u8> {
            (y..y + rh)
                .flat_map(|r| p[(r * stride + x) as usize..][..rw as usize].to_vec())
                .collect()
        };
        let sub = Yuv {
            w: rect.w,
            h: rect.h,
            y: cut(&yuv.y, w, rect.x, rect.y, rect.w, rect.h),
            u: cut(&yuv.u, w.div_ceil(2), rect.x / 2, rect.y / 2, cw, ch),
            v: cut(&yuv.v, w.div_ceil(2), rect.x / 2, rect.y / 2, cw, ch),
        };
        let color = YuvColor::default();
        let (pf, ps) = (yuv.i420(3), sub.i420(0));
        let want = run(&i420_frame(&sub, &ps, 0, color), 32, 32).1;
        let mut out = vec![f32::NAN; 3 * 32 * 32];
        let mut pre = Preprocessor::new();
        pre.run_rect(
            &i420_frame(&yuv, &pf, 3, color),
            Some(rect),
            32,
            32,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, want, "I420");
        let (pf, ps) = (yuv.nv12(2), sub.nv12(0));
        let want = run(&nv12_frame(&sub, &ps, 0, color), 32, 32).1;
        pre.run_rect(
            &nv12_frame(&yuv, &pf, 2, color),
            Some(rect),
            32,
            32,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, want, "NV12");
    }
}
