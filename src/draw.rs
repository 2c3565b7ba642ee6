//! Drawing detections into raw video frames: a box outline per detection and a filled label tag
//! ("person 0.87") in the class colour, for packed RGB-family layouts, I420 and NV12.
//! No GStreamer imports: the overlay element maps its buffer into a [`FrameMut`] and calls
//! [`draw_detections`].
//!
//! Conventions:
//! - Boxes are rounded to whole pixels (`x2`/`y2` exclusive) and the outline covers the box's
//!   outermost `line_width` pixels, so it never extends past the detection.
//! - All outlines are drawn before any tag, so a later box cannot scribble over an earlier
//!   label.
//! - Tags sit directly above the box's top-left corner, move inside the box when there is no room
//!   above, and are shifted to stay inside the frame; text that does not fit in the frame width
//!   is truncated.
//! - Packed layouts never touch the x/alpha byte. Stride padding is never written.
//! - YUV: each colour is converted once with the frame's matrix and range. Luma is drawn at full
//!   resolution; every chroma sample whose 2x2 block touches a drawn pixel is overwritten, so
//!   thin lines keep their colour (with at most one pixel of chroma bleed, as with drawing on RGB
//!   and then subsampling). Inside tags the chroma is the 2x2 average of tag colour and text
//!   colour, so white/black text stays neutral instead of taking on the tag's tint.
//! - Text uses the public-domain 8x8 font in [`crate::font`], scaled by an integer factor.
//!
//! Nothing allocates: label text is collected into a stack buffer and the confidence is
//! formatted by hand.

use crate::detection::Detection;
use crate::font::{self, GLYPH_H, GLYPH_W, GLYPHS};
use crate::frame::{FrameMut, PixelLayout, PlaneMut, YuvColor, YuvMatrix};

/// How detections are drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct DrawStyle {
    /// Outline width in pixels; 0 picks `max(2, min(width, height) / 300)`.
    pub line_width: u32,
    /// Integer multiplier of the 8x8 font (rounded to the nearest integer, at least 1);
    /// 0 (or any non-positive or non-finite value) picks `round(min(width, height) / 360)`,
    /// at least 1: 8 px glyphs at 640x360, 24 px at 1080p, 48 px at 4K.
    pub font_scale: f32,
    /// Put the class label in the tag.
    pub draw_labels: bool,
    /// Put the confidence (two decimals) in the tag.
    pub draw_confidence: bool,
}

impl Default for DrawStyle {
    fn default() -> Self {
        Self {
            line_width: 0,
            font_scale: 0.0,
            draw_labels: true,
            draw_confidence: true,
        }
    }
}

/// Ultralytics' default 20-colour palette (`ultralytics.utils.plotting.Colors`), RGB.
const PALETTE: [[u8; 3]; 20] = [
    [0x04, 0x2A, 0xFF],
    [0x0B, 0xDB, 0xEB],
    [0xF3, 0xF3, 0xF3],
    [0x00, 0xDF, 0xB7],
    [0x11, 0x1F, 0x68],
    [0xFF, 0x6F, 0xDD],
    [0xFF, 0x44, 0x4F],
    [0xCC, 0xED, 0x00],
    [0x00, 0xF3, 0x44],
    [0xBD, 0x00, 0xFF],
    [0x00, 0xB4, 0xFF],
    [0xDD, 0x00, 0xBA],
    [0x00, 0xFF, 0xFF],
    [0x26, 0xC0, 0x00],
    [0x01, 0xFF, 0xB3],
    [0x7D, 0x24, 0xFF],
    [0x7B, 0x00, 0x68],
    [0xFF, 0x1B, 0x6C],
    [0xFC, 0x6D, 0x2F],
    [0xA2, 0xFF, 0x0B],
];

/// Per-class colour (Ultralytics' 20-colour palette, `class_id % 20`), as RGB.
pub fn class_color(class_id: u32) -> [u8; 3] {
    PALETTE[(class_id % PALETTE.len() as u32) as usize]
}

/// Text colour for a tag of colour `bg`: black on light colours, white on dark ones.
///
/// The threshold on BT.601 luma (147.5) reproduces Ultralytics' choice of dark text for exactly
/// the nine light palette entries.
pub fn text_color(bg: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = bg.map(u32::from);
    if 299 * r + 587 * g + 114 * b >= 147_500 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    }
}

/// Converts an RGB colour to (Y, U, V) bytes with `color`'s matrix and range.
pub fn rgb_to_yuv(rgb: [u8; 3], color: YuvColor) -> [u8; 3] {
    let (kr, kb) = match color.matrix {
        YuvMatrix::Bt601 => (0.299, 0.114),
        YuvMatrix::Bt709 => (0.2126, 0.0722),
        YuvMatrix::Bt2020 => (0.2627, 0.0593),
    };
    let [r, g, b] = rgb.map(f32::from);
    let y = kr * r + (1.0 - kr - kb) * g + kb * b;
    let cb = (b - y) / (2.0 * (1.0 - kb));
    let cr = (r - y) / (2.0 * (1.0 - kr));
    let (y, cb, cr) = if color.full_range {
        (y, cb + 128.0, cr + 128.0)
    } else {
        (
            16.0 + y * (219.0 / 255.0),
            128.0 + cb * (224.0 / 255.0),
            128.0 + cr * (224.0 / 255.0),
        )
    };
    [y, cb, cr].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// Draws each detection: a rectangle outline of `line_width` in the class colour and, if labels
/// or confidence are on, a filled tag in the class colour above the box's top-left corner (inside
/// the box if there is no room above, kept inside the frame) with text "label 0.87" in white or
/// black, whichever contrasts with the colour.
///
/// Boxes partly outside the frame are clipped; boxes wholly outside, empty after rounding or with
/// NaN coordinates are skipped. A frame whose planes are too small for its size and strides is
/// left untouched rather than causing a panic.
pub fn draw_detections(frame: &mut FrameMut<'_>, detections: &[Detection], style: &DrawStyle) {
    if frame.width == 0 || frame.height == 0 || detections.is_empty() {
        return;
    }
    let (w, h) = (frame.width as usize, frame.height as usize);
    let metrics = Metrics::new(w, h, style);
    let layout = frame.layout;
    let color = frame.color;
    let Some(mut target) = Target::new(frame) else {
        return;
    };

    // Pass 1: outlines. Pass 2: tags, so that no outline crosses a label.
    for det in detections {
        if let Some(rect) = BoxRect::new(det, w, h) {
            let paint = Paint::new(class_color(det.class_id), layout, color);
            target.draw_outline(&rect, &metrics, &paint);
        }
    }
    if !(style.draw_labels || style.draw_confidence) || metrics.max_chars == 0 {
        return;
    }
    for det in detections {
        let Some(rect) = BoxRect::new(det, w, h) else {
            continue;
        };
        let mut text = TextBuf::new(metrics.max_chars);
        text.compose(det, style);
        if text.len == 0 {
            continue;
        }
        let tag = Tag::place(&rect, text.len, &metrics);
        let bg_rgb = class_color(det.class_id);
        let bg = Paint::new(bg_rgb, layout, color);
        let fg = Paint::new(text_color(bg_rgb), layout, color);
        target.draw_tag(&tag, text.glyphs(), &bg, &fg);
    }
}

/// Sizes derived from the frame size and the style.
struct Metrics {
    frame_w: usize,
    frame_h: usize,
    line_width: usize,
    /// Font scale factor (glyph pixels per font pixel).
    scale: usize,
    /// Tag padding left of and above/below the text.
    pad: usize,
    tag_h: usize,
    /// Most characters a tag may hold: what fits in the frame width, capped by the text buffer.
    max_chars: usize,
}

impl Metrics {
    fn new(w: usize, h: usize, style: &DrawStyle) -> Self {
        let short = w.min(h);
        let line_width = match style.line_width {
            0 => (short / 300).max(2),
            lw => lw as usize,
        };
        let scale = if style.font_scale.is_finite() && style.font_scale > 0.0 {
            // Clamp before converting so absurd values cannot overflow the geometry below.
            style.font_scale.round().clamp(1.0, 256.0) as usize
        } else {
            ((short + 180) / 360).max(1)
        };
        // One font pixel of padding; the glyph cell's blank right column and bottom row supply
        // the rest of the margin.
        let pad = scale;
        let max_chars = (w.saturating_sub(pad) / (GLYPH_W * scale)).min(MAX_TEXT);
        Self {
            frame_w: w,
            frame_h: h,
            line_width,
            scale,
            pad,
            tag_h: GLYPH_H * scale + 2 * pad,
            max_chars,
        }
    }
}

/// A detection's box in whole pixels, `x0 < x1`, `y0 < y1`, intersecting the frame. The
/// coordinates themselves may lie outside the frame.
struct BoxRect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

impl BoxRect {
    fn new(det: &Detection, w: usize, h: usize) -> Option<Self> {
        let c = [det.x1, det.y1, det.x2, det.y2];
        if c.iter().any(|v| v.is_nan()) {
            return None;
        }
        // Clamping keeps infinities and huge values from overflowing the i64 arithmetic below.
        let [x0, y0, x1, y1] = c.map(|v| v.round().clamp(-1.0e9, 1.0e9) as i64);
        let (w, h) = (w as i64, h as i64);
        (x0 < x1 && y0 < y1 && x1 > 0 && y1 > 0 && x0 < w && y0 < h).then_some(Self {
            x0,
            y0,
            x1,
            y1,
        })
    }
}

/// Longest tag text in characters; also the stack buffer size.
const MAX_TEXT: usize = 128;

/// Tag text as glyph indices, collected without allocating.
struct TextBuf {
    buf: [u8; MAX_TEXT],
    len: usize,
    cap: usize,
}

impl TextBuf {
    fn new(cap: usize) -> Self {
        Self {
            buf: [0; MAX_TEXT],
            len: 0,
            cap: cap.min(MAX_TEXT),
        }
    }

    fn push(&mut self, c: char) {
        if self.len < self.cap {
            self.buf[self.len] = font::glyph_index(c);
            self.len += 1;
        }
    }

    /// "label 0.87", "label" or "0.87" depending on the style.
    fn compose(&mut self, det: &Detection, style: &DrawStyle) {
        if style.draw_labels {
            for c in det.label.chars().take(self.cap) {
                self.push(c);
            }
        }
        if style.draw_confidence {
            if self.len > 0 {
                self.push(' ');
            }
            // Hundredths, rounded; NaN counts as 0.
            let conf = if det.confidence.is_nan() {
                0.0
            } else {
                det.confidence.clamp(0.0, 1.0)
            };
            let hundredths = (conf * 100.0).round() as u32;
            let digit = |d: u32| char::from(b'0' + d as u8);
            self.push(digit(hundredths / 100));
            self.push('.');
            self.push(digit(hundredths / 10 % 10));
            self.push(digit(hundredths % 10));
        }
    }

    fn glyphs(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A tag's placement: `[x0, x1) x [y0, y1)` inside the frame, text origin at `(text_x, text_y)`.
struct Tag {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    text_x: usize,
    text_y: usize,
    scale: usize,
}

impl Tag {
    fn place(rect: &BoxRect, n_chars: usize, m: &Metrics) -> Self {
        // Fits in the frame width by construction of `max_chars`.
        let tag_w = (m.pad + n_chars * GLYPH_W * m.scale) as i64;
        let tag_h = m.tag_h as i64;
        let frame_w = m.frame_w as i64;
        let frame_h = m.frame_h as i64;
        let x0 = rect.x0.clamp(0, frame_w - tag_w);
        let y0 = if rect.y0 - tag_h >= 0 {
            rect.y0 - tag_h
        } else {
            rect.y0.max(0)
        };
        let y0 = y0.min((frame_h - tag_h).max(0));
        let (x0, y0) = (x0 as usize, y0 as usize);
        Self {
            x0,
            y0,
            x1: x0 + tag_w as usize,
            y1: (y0 + m.tag_h).min(m.frame_h),
            text_x: x0 + m.pad,
            text_y: y0 + m.pad,
            scale: m.scale,
        }
    }

    /// The glyph row drawn on frame row `y`, if `y` crosses the text.
    #[inline]
    fn glyph_row(&self, y: usize) -> Option<usize> {
        let dy = y.checked_sub(self.text_y)?;
        (y < self.y1 && dy < GLYPH_H * self.scale).then(|| dy / self.scale)
    }

    /// Calls `f(x_start, x_end, is_text)` for the runs of tag colour and text colour that make up
    /// the part of the tag on a row showing glyph row `row` (`None`: a padding row).
    #[inline]
    fn row_runs(&self, text: &[u8], row: Option<usize>, mut f: impl FnMut(usize, usize, bool)) {
        let Some(row) = row else {
            f(self.x0, self.x1, false);
            return;
        };
        let mut run_start = self.x0;
        let mut run_fg = false;
        let mut x = self.text_x;
        for &g in text {
            let bits = GLYPHS[g as usize][row];
            for bit in 0..GLYPH_W {
                let fg = bits >> bit & 1 != 0;
                if fg != run_fg {
                    f(run_start, x, run_fg);
                    run_start = x;
                    run_fg = fg;
                }
                x += self.scale;
            }
        }
        // The text ends at the tag's right edge, so this run is the last one.
        f(run_start, self.x1, run_fg);
    }
}

/// A colour prepared for the frame's layout.
#[derive(Clone, Copy)]
struct Paint {
    /// Packed 3-byte pixel.
    pat3: [u8; 3],
    /// Packed 4-byte pixel (native-endian u32) with the x/alpha byte zero; see [`Target::Packed`].
    pat4: u32,
    yuv: [u8; 3],
}

impl Paint {
    fn new(rgb: [u8; 3], layout: PixelLayout, color: YuvColor) -> Self {
        let mut paint = Paint {
            pat3: [0; 3],
            pat4: 0,
            yuv: [0; 3],
        };
        if let Some((bpp, ro, go, bo)) = layout.packed_rgb() {
            let mut px = [0u8; 4];
            px[ro] = rgb[0];
            px[go] = rgb[1];
            px[bo] = rgb[2];
            if bpp == 3 {
                paint.pat3 = [px[0], px[1], px[2]];
            } else {
                paint.pat4 = u32::from_ne_bytes(px);
            }
        } else {
            paint.yuv = rgb_to_yuv(rgb, color);
        }
        paint
    }
}

/// The frame's planes, validated against its size, split by layout.
enum Target<'f> {
    Packed {
        data: &'f mut [u8],
        stride: usize,
        bpp: usize,
        /// Native-endian u32 mask with 0xFF in the x/alpha byte: that byte is kept.
        keep4: u32,
    },
    I420 {
        y: &'f mut [u8],
        y_stride: usize,
        u: &'f mut [u8],
        u_stride: usize,
        v: &'f mut [u8],
        v_stride: usize,
    },
    Nv12 {
        y: &'f mut [u8],
        y_stride: usize,
        uv: &'f mut [u8],
        uv_stride: usize,
    },
}

/// Whether `p` holds `rows` rows of `row_bytes` bytes at its stride.
fn plane_fits(p: &PlaneMut<'_>, row_bytes: usize, rows: usize) -> bool {
    p.stride >= row_bytes
        && p.stride
            .checked_mul(rows - 1)
            .and_then(|n| n.checked_add(row_bytes))
            .is_some_and(|n| n <= p.data.len())
}

impl<'f> Target<'f> {
    /// `None` if a plane is too small for the frame size (`w`, `h` > 0).
    fn new(frame: &'f mut FrameMut<'_>) -> Option<Self> {
        let (w, h) = (frame.width as usize, frame.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let [p0, p1, p2] = &mut frame.planes;
        match frame.layout.packed_rgb() {
            Some((bpp, ro, go, bo)) => {
                if !plane_fits(p0, w.checked_mul(bpp)?, h) {
                    return None;
                }
                let keep4 = if bpp == 4 {
                    let mut m = [0u8; 4];
                    m[6 - ro - go - bo] = 0xFF;
                    u32::from_ne_bytes(m)
                } else {
                    0
                };
                Some(Target::Packed {
                    data: &mut *p0.data,
                    stride: p0.stride,
                    bpp,
                    keep4,
                })
            }
            None if frame.layout == PixelLayout::I420 => {
                if !(plane_fits(p0, w, h) && plane_fits(p1, cw, ch) && plane_fits(p2, cw, ch)) {
                    return None;
                }
                Some(Target::I420 {
                    y: &mut *p0.data,
                    y_stride: p0.stride,
                    u: &mut *p1.data,
                    u_stride: p1.stride,
                    v: &mut *p2.data,
                    v_stride: p2.stride,
                })
            }
            None => {
                if !(plane_fits(p0, w, h) && plane_fits(p1, 2 * cw, ch)) {
                    return None;
                }
                Some(Target::Nv12 {
                    y: &mut *p0.data,
                    y_stride: p0.stride,
                    uv: &mut *p1.data,
                    uv_stride: p1.stride,
                })
            }
        }
    }

    fn is_yuv(&self) -> bool {
        !matches!(self, Target::Packed { .. })
    }

    /// Fills pixels `[x0, x1)` of row `y` (luma only for YUV). Coordinates are inside the frame.
    #[inline]
    fn fill_row(&mut self, y: usize, x0: usize, x1: usize, p: &Paint) {
        match self {
            Target::Packed {
                data,
                stride,
                bpp,
                keep4,
            } => {
                let start = y * *stride;
                let row = &mut data[start + x0 * *bpp..start + x1 * *bpp];
                if *bpp == 3 {
                    row.as_chunks_mut::<3>().0.fill(p.pat3);
                } else {
                    // Whole-pixel read-modify-write keeps the x/alpha byte and vectorises.
                    let keep = *keep4;
                    for px in row.as_chunks_mut::<4>().0 {
                        *px = (u32::from_ne_bytes(*px) & keep | p.pat4).to_ne_bytes();
                    }
                }
            }
            Target::I420 { y: yp, y_stride, .. } | Target::Nv12 { y: yp, y_stride, .. } => {
                let start = y * *y_stride;
                yp[start + x0..start + x1].fill(p.yuv[0]);
            }
        }
    }

    /// Fills chroma samples `[cx0, cx1)` of chroma row `cy` with `(u, v)`; no-op for packed.
    #[inline]
    fn fill_chroma_row(&mut self, cy: usize, cx0: usize, cx1: usize, uv: [u8; 2]) {
        match self {
            Target::Packed { .. } => {}
            Target::I420 {
                u,
                u_stride,
                v,
                v_stride,
                ..
            } => {
                let (us, vs) = (cy * *u_stride, cy * *v_stride);
                u[us + cx0..us + cx1].fill(uv[0]);
                v[vs + cx0..vs + cx1].fill(uv[1]);
            }
            Target::Nv12 { uv: p, uv_stride, .. } => {
                let start = cy * *uv_stride;
                p[start + 2 * cx0..start + 2 * cx1]
                    .as_chunks_mut::<2>()
                    .0
                    .fill(uv);
            }
        }
    }

    /// Fills `[x0, x1) x [y0, y1)` (inside the frame) and, for YUV, every chroma sample touching it.
    fn fill_rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, p: &Paint) {
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for y in y0..y1 {
            self.fill_row(y, x0, x1, p);
        }
        if self.is_yuv() {
            let uv = [p.yuv[1], p.yuv[2]];
            let (cx0, cx1) = (x0 / 2, x1.div_ceil(2));
            for cy in y0 / 2..y1.div_ceil(2) {
                self.fill_chroma_row(cy, cx0, cx1, uv);
            }
        }
    }

    /// Draws the outermost `lw` pixels of `r`, clipped to the frame.
    fn draw_outline(&mut self, r: &BoxRect, m: &Metrics, p: &Paint) {
        let (w, h) = (m.frame_w, m.frame_h);
        // At most u32::MAX, and box coordinates are within +-1e9: no overflow below.
        let lw = m.line_width as i64;
        // Top and bottom bars span the full width; the sides fill the rows between them.
        let top_end = (r.y0 + lw).min(r.y1);
        let bottom_start = (r.y1 - lw).max(top_end);
        let left_end = (r.x0 + lw).min(r.x1);
        let right_start = (r.x1 - lw).max(left_end);
        let bars = [
            (r.x0, r.y0, r.x1, top_end),
            (r.x0, bottom_start, r.x1, r.y1),
            (r.x0, top_end, left_end, bottom_start),
            (right_start, top_end, r.x1, bottom_start),
        ];
        for (x0, y0, x1, y1) in bars {
            let clip = |v: i64, max: usize| v.clamp(0, max as i64) as usize;
            self.fill_rect(clip(x0, w), clip(y0, h), clip(x1, w), clip(y1, h), p);
        }
    }

    /// Draws a tag: background `bg` with `text` (glyph indices) in `fg`.
    fn draw_tag(&mut self, tag: &Tag, text: &[u8], bg: &Paint, fg: &Paint) {
        for y in tag.y0..tag.y1 {
            tag.row_runs(text, tag.glyph_row(y), |x0, x1, is_fg| {
                self.fill_row(y, x0, x1, if is_fg { fg } else { bg })
            });
        }
        if !self.is_yuv() {
            return;
        }
        // Chroma value for a 2x2 block with n text pixels (0..=4): the block average.
        let blend = |n: u32| {
            let mix = |b: u8, f: u8| ((u32::from(b) * (4 - n) + u32::from(f) * n + 2) / 4) as u8;
            [mix(bg.yuv[1], fg.yuv[1]), mix(bg.yuv[2], fg.yuv[2])]
        };
        let table = [blend(0), blend(1), blend(2), blend(3), blend(4)];
        let (cx0, cx1) = (tag.x0 / 2, tag.x1.div_ceil(2));
        for cy in tag.y0 / 2..tag.y1.div_ceil(2) {
            let rows = [tag.glyph_row(2 * cy), tag.glyph_row(2 * cy + 1)];
            if rows == [None, None] {
                self.fill_chroma_row(cy, cx0, cx1, table[0]);
                continue;
            }
            match self {
                Target::Packed { .. } => {}
                Target::I420 {
                    u,
                    u_stride,
                    v,
                    v_stride,
                    ..
                } => {
                    let (us, vs) = (cy * *u_stride, cy * *v_stride);
                    let u_row = &mut u[us + cx0..us + cx1];
                    let v_row = &mut v[vs + cx0..vs + cx1];
                    chroma_coverage(tag, text, rows, cx0, cx1, |i, n| {
                        let [cu, cv] = table[n];
                        u_row[i] = cu;
                        v_row[i] = cv;
                    });
                }
                Target::Nv12 { uv, uv_stride, .. } => {
                    let start = cy * *uv_stride;
                    let row = uv[start + 2 * cx0..start + 2 * cx1].as_chunks_mut::<2>().0;
                    chroma_coverage(tag, text, rows, cx0, cx1, |i, n| row[i] = table[n]);
                }
            }
        }
    }

}

/// For chroma samples `[cx0, cx1)` of a row whose two luma rows show glyph rows `rows`, calls
/// `f(cx - cx0, n)` with `n` the number of text pixels among the sample's 2x2 luma pixels.
#[inline]
fn chroma_coverage(
    tag: &Tag,
    text: &[u8],
    rows: [Option<usize>; 2],
    cx0: usize,
    cx1: usize,
    mut f: impl FnMut(usize, usize),
) {
    let s = tag.scale;
    let text_end = tag.text_x + text.len() * GLYPH_W * s;
    // Walk luma columns with an incremental (glyph column, sub-pixel) cursor: no division per
    // pixel.
    let mut x = 2 * cx0;
    let (mut col, mut sub) = if x >= tag.text_x {
        ((x - tag.text_x) / s, (x - tag.text_x) % s)
    } else {
        (0, 0)
    };
    let row_bits = |r: Option<usize>, col: usize| match r {
        Some(r) => u32::from(GLYPHS[text[col / GLYPH_W] as usize][r] >> (col % GLYPH_W) & 1),
        None => 0,
    };
    for i in 0..cx1 - cx0 {
        let mut n = 0;
        for _ in 0..2 {
            if x >= tag.text_x && x < text_end {
                n += row_bits(rows[0], col) + row_bits(rows[1], col);
                sub += 1;
                if sub == s {
                    sub = 0;
                    col += 1;
                }
            }
            x += 1;
        }
        f(i, n as usize);
    }
}
