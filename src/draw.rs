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
//! - YUV: colours are converted with the frame's matrix and range once per detection and pass,
//!   never per pixel. Luma is drawn at full
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

    /// "label 0.87", "label" or "0.87" depending on the style, after "#17 " for a tracked
    /// detection.
    fn compose(&mut self, det: &Detection, style: &DrawStyle) {
        if let Some(id) = det.track_id {
            self.push('#');
            // u64 has at most 20 decimal digits.
            let mut digits = [0u8; 20];
            let mut n = 0;
            let mut v = id;
            loop {
                digits[n] = (v % 10) as u8;
                n += 1;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            for &d in digits[..n].iter().rev() {
                self.push(char::from(b'0' + d));
            }
        }
        if style.draw_labels {
            if self.len > 0 {
                self.push(' ');
            }
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
        /// Offsets of R, G and B in a pixel.
        rgb_off: [usize; 3],
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
                    rgb_off: [ro, go, bo],
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
                rgb_off,
            } => {
                let start = y * *stride;
                let row = &mut data[start + x0 * *bpp..start + x1 * *bpp];
                if *bpp == 3 {
                    row.as_chunks_mut::<3>().0.fill(p.pat3);
                } else if x1 - x0 < 16 {
                    // Short spans (vertical lines, glyph strokes): plain byte stores, because a
                    // read-modify-write would stall on a cache miss for every row.
                    let pat = p.pat4.to_ne_bytes();
                    for px in row.as_chunks_mut::<4>().0 {
                        for o in *rgb_off {
                            px[o & 3] = pat[o & 3];
                        }
                    }
                } else {
                    // Whole-pixel read-modify-write keeps the x/alpha byte and vectorises.
                    let keep = *keep4;
                    for px in row.as_chunks_mut::<4>().0 {
                        *px = (u32::from_ne_bytes(*px) & keep | p.pat4).to_ne_bytes();
                    }
                }
            }
            Target::I420 {
                y: yp, y_stride, ..
            }
            | Target::Nv12 {
                y: yp, y_stride, ..
            } => {
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
            Target::Nv12 {
                uv: p, uv_stride, ..
            } => {
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

    /// Copies pixels `[x0, x1)` of row `src` to row `dst > src` (luma only for YUV), keeping the
    /// destination's x/alpha bytes.
    #[inline]
    fn copy_row(&mut self, src: usize, dst: usize, x0: usize, x1: usize) {
        let (data, stride, bpp, keep) = match self {
            Target::Packed {
                data,
                stride,
                bpp,
                keep4,
                ..
            } => (&mut **data, *stride, *bpp, *keep4),
            Target::I420 { y, y_stride, .. } | Target::Nv12 { y, y_stride, .. } => {
                (&mut **y, *y_stride, 1, 0)
            }
        };
        let (s0, d0) = (src * stride + x0 * bpp, dst * stride + x0 * bpp);
        let len = (x1 - x0) * bpp;
        if bpp == 4 {
            let (head, tail) = data.split_at_mut(d0);
            let from = head[s0..s0 + len].as_chunks::<4>().0;
            let to = tail[..len].as_chunks_mut::<4>().0;
            for (t, f) in to.iter_mut().zip(from) {
                let (t32, f32_) = (u32::from_ne_bytes(*t), u32::from_ne_bytes(*f));
                *t = (t32 & keep | f32_ & !keep).to_ne_bytes();
            }
        } else {
            data.copy_within(s0..s0 + len, d0);
        }
    }

    /// Draws a tag: background `bg` with `text` (glyph indices) in `fg`.
    fn draw_tag(&mut self, tag: &Tag, text: &[u8], bg: &Paint, fg: &Paint) {
        // Each glyph row covers `scale` frame rows: render the first, copy it to the others.
        let mut y = tag.y0;
        while y < tag.y1 {
            let row = tag.glyph_row(y);
            let band_end = match row {
                Some(r) => tag.text_y + (r + 1) * tag.scale,
                None if y < tag.text_y => tag.text_y,
                None => tag.y1,
            }
            .min(tag.y1);
            if row.is_some() {
                tag.row_runs(text, row, |x0, x1, is_fg| {
                    self.fill_row(y, x0, x1, if is_fg { fg } else { bg })
                });
                for dst in y + 1..band_end {
                    self.copy_row(y, dst, tag.x0, tag.x1);
                }
            } else {
                for yy in y..band_end {
                    self.fill_row(yy, tag.x0, tag.x1, bg);
                }
            }
            y = band_end;
        }
        if self.is_yuv() {
            self.tag_chroma(tag, bg, fg);
        }
    }

    /// Chroma of a tag whose luma is drawn: each sample is the average of its 2x2 block, with text
    /// pixels (recognised by their luma, which always differs from the tag's) counting as text
    /// colour and everything else, including pixels outside the tag, as tag colour.
    fn tag_chroma(&mut self, tag: &Tag, bg: &Paint, fg: &Paint) {
        let blend = |n: u32| {
            let mix = |b: u8, f: u8| ((u32::from(b) * (4 - n) + u32::from(f) * n + 2) / 4) as u8;
            [mix(bg.yuv[1], fg.yuv[1]), mix(bg.yuv[2], fg.yuv[2])]
        };
        // Indexed by a count in 0..=4; padded to 8 so `n & 7` needs no bounds check.
        let table = [
            blend(0),
            blend(1),
            blend(2),
            blend(3),
            blend(4),
            blend(4),
            blend(4),
            blend(4),
        ];
        let fy = fg.yuv[0];
        let text_visible = fy != bg.yuv[0];
        let (cx0, cx1) = (tag.x0 / 2, tag.x1.div_ceil(2));
        let off = tag.x0 % 2;
        // What a frame row shows: outside the tag, padding, or a glyph row. Chroma rows whose two
        // luma rows show the same as the previous chroma row's are copied from it.
        let kind = |y: usize| match (y >= tag.y0 && y < tag.y1, tag.glyph_row(y)) {
            (false, _) => usize::MAX,
            (true, None) => usize::MAX - 1,
            (true, Some(r)) => r,
        };
        let mut prev_key = None;
        for cy in tag.y0 / 2..tag.y1.div_ceil(2) {
            let (ya, yb) = (2 * cy, 2 * cy + 1);
            let key = (kind(ya), kind(yb));
            let has_text =
                text_visible && (tag.glyph_row(ya).is_some() || tag.glyph_row(yb).is_some());
            match self {
                _ if !has_text => self.fill_chroma_row(cy, cx0, cx1, table[0]),
                Target::Packed { .. } => {}
                Target::I420 {
                    y,
                    y_stride,
                    u,
                    u_stride,
                    v,
                    v_stride,
                } => {
                    if prev_key == Some(key) {
                        let (us, vs) = (cy * *u_stride, cy * *v_stride);
                        u.copy_within(us - *u_stride + cx0..us - *u_stride + cx1, us + cx0);
                        v.copy_within(vs - *v_stride + cx0..vs - *v_stride + cx1, vs + cx0);
                    } else {
                        let (us, vs) = (cy * *u_stride, cy * *v_stride);
                        let u_row = &mut u[us + cx0..us + cx1];
                        let v_row = &mut v[vs + cx0..vs + cx1];
                        let luma = |yy: usize| {
                            (yy >= tag.y0 && yy < tag.y1)
                                .then(|| &y[yy * *y_stride + tag.x0..yy * *y_stride + tag.x1])
                        };
                        count_text(luma(ya), luma(yb), off, fy, |i, n| {
                            let [cu, cv] = table[n & 7];
                            u_row[i] = cu;
                            v_row[i] = cv;
                        });
                    }
                }
                Target::Nv12 {
                    y,
                    y_stride,
                    uv,
                    uv_stride,
                } => {
                    let start = cy * *uv_stride;
                    if prev_key == Some(key) {
                        let prev = start - *uv_stride;
                        uv.copy_within(prev + 2 * cx0..prev + 2 * cx1, start + 2 * cx0);
                    } else {
                        let row = uv[start + 2 * cx0..start + 2 * cx1].as_chunks_mut::<2>().0;
                        let luma = |yy: usize| {
                            (yy >= tag.y0 && yy < tag.y1)
                                .then(|| &y[yy * *y_stride + tag.x0..yy * *y_stride + tag.x1])
                        };
                        count_text(luma(ya), luma(yb), off, fy, |i, n| row[i] = table[n & 7]);
                    }
                }
            }
            prev_key = has_text.then_some(key);
        }
    }
}

/// For the chroma samples over a tag's luma rows `a` and `b` (`None`: outside the tag), calls
/// `f(i, n)` with `n` the number of pixels equal to `fy` in sample `i`'s 2x2 block. `off` is 1
/// when the tag starts at an odd column, so that sample 0 covers only the tag's first column.
#[inline(always)]
fn count_text(
    a: Option<&[u8]>,
    b: Option<&[u8]>,
    off: usize,
    fy: u8,
    mut f: impl FnMut(usize, usize),
) {
    let is = |v: u8| usize::from(v == fy);
    // A missing row counts as no text: pair the other row with itself and halve.
    let (a, b, shift) = match (a, b) {
        (Some(a), Some(b)) => (a, b, 0),
        (Some(r), None) | (None, Some(r)) => (r, r, 1),
        (None, None) => return,
    };
    let mut i = 0;
    let (mut a, mut b) = (a, b);
    if off == 1 {
        if let (Some(&pa), Some(&pb)) = (a.first(), b.first()) {
            f(0, (is(pa) + is(pb)) >> shift);
        }
        (a, b) = (&a[1.min(a.len())..], &b[1.min(b.len())..]);
        i = 1;
    }
    let (pa, ra) = a.as_chunks::<2>();
    let (pb, rb) = b.as_chunks::<2>();
    for (p, q) in pa.iter().zip(pb) {
        f(i, (is(p[0]) + is(p[1]) + is(q[0]) + is(q[1])) >> shift);
        i += 1;
    }
    if let (Some(&pa), Some(&pb)) = (ra.first(), rb.first()) {
        f(i, (is(pa) + is(pb)) >> shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PlaneMut;
    use std::sync::Arc;

    /// Background of test frames: RGB grey; alpha/x bytes and stride padding get their own
    /// markers so that writes to them are caught.
    const BG: [u8; 3] = [50, 50, 50];
    const ALPHA: u8 = 0x99;
    const PAD: u8 = 0xEE;

    const PACKED: [PixelLayout; 8] = [
        PixelLayout::Rgb,
        PixelLayout::Bgr,
        PixelLayout::Rgbx,
        PixelLayout::Bgrx,
        PixelLayout::Xrgb,
        PixelLayout::Xbgr,
        PixelLayout::Rgba,
        PixelLayout::Bgra,
    ];
    const ALL: [PixelLayout; 10] = [
        PixelLayout::Rgb,
        PixelLayout::Bgr,
        PixelLayout::Rgbx,
        PixelLayout::Bgrx,
        PixelLayout::Xrgb,
        PixelLayout::Xbgr,
        PixelLayout::Rgba,
        PixelLayout::Bgra,
        PixelLayout::I420,
        PixelLayout::Nv12,
    ];

    /// An owned frame with `extra` padding bytes at the end of every row.
    struct Owned {
        layout: PixelLayout,
        w: usize,
        h: usize,
        color: YuvColor,
        planes: Vec<(Vec<u8>, usize, usize)>, // (data, stride, row bytes)
    }

    impl Owned {
        fn new(layout: PixelLayout, w: usize, h: usize, extra: usize, color: YuvColor) -> Self {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let [by, bu, bv] = rgb_to_yuv(BG, color);
            let plane = |row_bytes: usize, rows: usize, fill: &dyn Fn(usize) -> u8| {
                let stride = row_bytes + extra;
                let mut data = vec![PAD; stride * rows];
                for r in 0..rows {
                    for i in 0..row_bytes {
                        data[r * stride + i] = fill(i);
                    }
                }
                (data, stride, row_bytes)
            };
            let planes = match layout.packed_rgb() {
                Some((bpp, ro, go, bo)) => {
                    let fill = move |i: usize| {
                        let o = i % bpp;
                        if o == ro {
                            BG[0]
                        } else if o == go {
                            BG[1]
                        } else if o == bo {
                            BG[2]
                        } else {
                            ALPHA
                        }
                    };
                    vec![plane(w * bpp, h, &fill)]
                }
                None if layout == PixelLayout::I420 => vec![
                    plane(w, h, &|_| by),
                    plane(cw, ch, &|_| bu),
                    plane(cw, ch, &|_| bv),
                ],
                None => vec![
                    plane(w, h, &|_| by),
                    plane(2 * cw, ch, &|i| if i % 2 == 0 { bu } else { bv }),
                ],
            };
            Self {
                layout,
                w,
                h,
                color,
                planes,
            }
        }

        fn frame(&mut self) -> FrameMut<'_> {
            let mut it = self.planes.iter_mut().map(|(d, s, _)| PlaneMut {
                data: d.as_mut_slice(),
                stride: *s,
            });
            let mut next = || {
                it.next().unwrap_or(PlaneMut {
                    data: &mut [],
                    stride: 0,
                })
            };
            let planes = [next(), next(), next()];
            FrameMut {
                layout: self.layout,
                width: self.w as u32,
                height: self.h as u32,
                planes,
                color: self.color,
            }
        }

        fn draw(&mut self, dets: &[Detection], style: &DrawStyle) {
            draw_detections(&mut self.frame(), dets, style);
        }

        fn rgb(&self, x: usize, y: usize) -> [u8; 3] {
            let (bpp, ro, go, bo) = self.layout.packed_rgb().unwrap();
            let (d, s, _) = &self.planes[0];
            let i = y * s + x * bpp;
            [d[i + ro], d[i + go], d[i + bo]]
        }

        /// (Y at the pixel, U and V of the chroma sample covering it).
        fn yuv(&self, x: usize, y: usize) -> [u8; 3] {
            let (cx, cy) = (x / 2, y / 2);
            let (yd, ys, _) = &self.planes[0];
            let (u, v) = if self.layout == PixelLayout::I420 {
                let (ud, us, _) = &self.planes[1];
                let (vd, vs, _) = &self.planes[2];
                (ud[cy * us + cx], vd[cy * vs + cx])
            } else {
                let (d, s, _) = &self.planes[1];
                (d[cy * s + 2 * cx], d[cy * s + 2 * cx + 1])
            };
            [yd[y * ys + x], u, v]
        }

        /// The pixel in the frame's native form: RGB for packed, YUV for planar layouts.
        fn px(&self, x: usize, y: usize) -> [u8; 3] {
            if self.layout.is_yuv() {
                self.yuv(x, y)
            } else {
                self.rgb(x, y)
            }
        }

        /// `rgb` in the frame's native form (see [`Owned::px`]).
        fn native(&self, rgb: [u8; 3]) -> [u8; 3] {
            if self.layout.is_yuv() {
                rgb_to_yuv(rgb, self.color)
            } else {
                rgb
            }
        }

        fn is_bg(&self, x: usize, y: usize) -> bool {
            self.px(x, y) == self.native(BG)
        }

        /// Panics if a stride padding byte or an x/alpha byte was written.
        fn assert_padding_and_alpha_untouched(&self) {
            for (d, s, row_bytes) in &self.planes {
                for (r, row) in d.chunks(*s).enumerate() {
                    assert!(
                        row[*row_bytes..].iter().all(|&b| b == PAD),
                        "padding of row {r} written"
                    );
                }
            }
            if let Some((4, ro, go, bo)) = self.layout.packed_rgb() {
                let xo = 6 - ro - go - bo;
                let (d, s, _) = &self.planes[0];
                for y in 0..self.h {
                    for x in 0..self.w {
                        assert_eq!(d[y * s + 4 * x + xo], ALPHA, "alpha at {x},{y}");
                    }
                }
            }
        }

        fn count(&self, pred: impl Fn(usize, usize) -> bool) -> usize {
            (0..self.h)
                .flat_map(|y| (0..self.w).map(move |x| (x, y)))
                .filter(|&(x, y)| pred(x, y))
                .count()
        }
    }

    fn det(class_id: u32, label: &str, conf: f32, b: [f32; 4]) -> Detection {
        Detection {
            class_id,
            label: Arc::from(label),
            confidence: conf,
            x1: b[0],
            y1: b[1],
            x2: b[2],
            y2: b[3],
            track_id: None,
        }
    }

    fn style(lw: u32, labels: bool, conf: bool) -> DrawStyle {
        DrawStyle {
            line_width: lw,
            font_scale: 0.0,
            draw_labels: labels,
            draw_confidence: conf,
        }
    }

    const YUV_COLORS: [YuvColor; 3] = [
        YuvColor {
            matrix: YuvMatrix::Bt601,
            full_range: false,
        },
        YuvColor {
            matrix: YuvMatrix::Bt709,
            full_range: false,
        },
        YuvColor {
            matrix: YuvMatrix::Bt2020,
            full_range: true,
        },
    ];

    fn color_for(layout: PixelLayout, i: usize) -> YuvColor {
        if layout.is_yuv() {
            YUV_COLORS[i % YUV_COLORS.len()]
        } else {
            YuvColor::default()
        }
    }

    /// Whether tag-local pixel (lx, ly) of text `s` at `scale` is a text pixel.
    fn text_pixel(s: &str, scale: usize, lx: usize, ly: usize) -> bool {
        let pad = scale;
        let (Some(gx), Some(gy)) = (lx.checked_sub(pad), ly.checked_sub(pad)) else {
            return false;
        };
        let (col, row) = (gx / scale, gy / scale);
        let Some(c) = s.chars().nth(col / GLYPH_W) else {
            return false;
        };
        row < GLYPH_H && GLYPHS[font::glyph_index(c) as usize][row] >> (col % GLYPH_W) & 1 != 0
    }

    #[test]
    fn palette_and_text_colour() {
        assert_eq!(class_color(0), [0x04, 0x2A, 0xFF]);
        assert_eq!(class_color(19), [0xA2, 0xFF, 0x0B]);
        assert_eq!(class_color(20), class_color(0));
        assert_eq!(class_color(u32::MAX), class_color(u32::MAX % 20));
        // Ultralytics draws dark text on exactly these palette entries (its `dark_colors`).
        let dark = [1, 2, 3, 5, 7, 8, 12, 14, 19];
        for i in 0..20 {
            let want = if dark.contains(&i) {
                [0, 0, 0]
            } else {
                [255, 255, 255]
            };
            assert_eq!(text_color(class_color(i)), want, "class {i}");
        }
    }

    #[test]
    fn yuv_conversion_reference_values() {
        let c = |matrix, full_range| YuvColor { matrix, full_range };
        let bt601 = c(YuvMatrix::Bt601, false);
        assert_eq!(rgb_to_yuv([255, 255, 255], bt601), [235, 128, 128]);
        assert_eq!(rgb_to_yuv([0, 0, 0], bt601), [16, 128, 128]);
        assert_eq!(rgb_to_yuv([255, 0, 0], bt601), [81, 90, 240]);
        assert_eq!(rgb_to_yuv([0, 0, 255], bt601), [41, 240, 110]);
        assert_eq!(
            rgb_to_yuv([255, 0, 0], c(YuvMatrix::Bt709, false)),
            [63, 102, 240]
        );
        assert_eq!(
            rgb_to_yuv([255, 255, 255], c(YuvMatrix::Bt709, true)),
            [255, 128, 128]
        );
        assert_eq!(
            rgb_to_yuv([255, 0, 0], c(YuvMatrix::Bt601, true)),
            [76, 85, 255]
        );
    }

    #[test]
    fn auto_metrics() {
        let m = Metrics::new(640, 360, &DrawStyle::default());
        assert_eq!((m.line_width, m.scale, m.tag_h), (2, 1, 10));
        let m = Metrics::new(1920, 1080, &DrawStyle::default());
        assert_eq!((m.line_width, m.scale, m.tag_h), (3, 3, 30));
        let m = Metrics::new(3840, 2160, &DrawStyle::default());
        assert_eq!((m.line_width, m.scale), (7, 6));
        let m = Metrics::new(1080, 1920, &DrawStyle::default());
        assert_eq!((m.line_width, m.scale), (3, 3));
        let s = DrawStyle {
            line_width: 5,
            font_scale: 2.4,
            ..Default::default()
        };
        let m = Metrics::new(640, 360, &s);
        assert_eq!((m.line_width, m.scale), (5, 2));
        for bad in [f32::NAN, -1.0, f32::INFINITY] {
            let s = DrawStyle {
                font_scale: bad,
                ..Default::default()
            };
            assert_eq!(Metrics::new(1920, 1080, &s).scale, 3);
        }
    }

    #[test]
    fn text_composition() {
        let text = |label: &str, conf: f32, labels: bool, confs: bool, cap: usize| {
            let mut t = TextBuf::new(cap);
            t.compose(&det(0, label, conf, [0.0; 4]), &style(0, labels, confs));
            t.glyphs().to_vec()
        };
        let glyphs = |s: &str| s.chars().map(font::glyph_index).collect::<Vec<_>>();
        assert_eq!(text("person", 0.874, true, true, 99), glyphs("person 0.87"));
        assert_eq!(text("person", 0.874, true, false, 99), glyphs("person"));
        assert_eq!(text("person", 0.874, false, true, 99), glyphs("0.87"));
        assert_eq!(text("person", 0.874, false, false, 99), glyphs(""));
        assert_eq!(text("", 0.5, true, true, 99), glyphs("0.50"));
        assert_eq!(text("x", 1.0, true, true, 99), glyphs("x 1.00"));
        assert_eq!(text("x", 7.0, true, true, 99), glyphs("x 1.00"));
        assert_eq!(text("x", -1.0, true, true, 99), glyphs("x 0.00"));
        assert_eq!(text("x", f32::NAN, true, true, 99), glyphs("x 0.00"));
        assert_eq!(text("x", 0.996, true, true, 99), glyphs("x 1.00"));
        assert_eq!(text("x", 0.054, true, true, 99), glyphs("x 0.05"));
        assert_eq!(text("café", 0.1, true, false, 99), glyphs("caf?"));
        assert_eq!(text("person", 0.87, true, true, 4), glyphs("pers"));
        assert_eq!(text(&"a".repeat(500), 0.1, true, true, 999).len(), MAX_TEXT);

        let tracked = |id: u64, labels: bool, confs: bool| {
            let mut t = TextBuf::new(99);
            let d = Detection {
                track_id: Some(id),
                ..det(0, "person", 0.874, [0.0; 4])
            };
            t.compose(&d, &style(0, labels, confs));
            t.glyphs().to_vec()
        };
        assert_eq!(tracked(17, true, true), glyphs("#17 person 0.87"));
        assert_eq!(tracked(0, false, true), glyphs("#0 0.87"));
        assert_eq!(tracked(5, true, false), glyphs("#5 person"));
        assert_eq!(
            tracked(u64::MAX, false, false),
            glyphs("#18446744073709551615")
        );
    }

    /// Outline only: exactly the box's outer `lw` pixels change, to the class colour.
    #[test]
    fn outline_exact_pixels_all_layouts() {
        for (i, layout) in ALL.into_iter().enumerate() {
            let mut f = Owned::new(layout, 640, 360, 7, color_for(layout, i));
            f.draw(
                &[det(3, "dog", 0.9, [100.0, 80.0, 300.0, 200.0])],
                &style(2, false, false),
            );
            let c = f.native(class_color(3));
            let on_outline = |x, y| {
                (100..300).contains(&x) && (80..200).contains(&y) && {
                    !(102..298).contains(&x) || !(82..198).contains(&y)
                }
            };
            for y in 0..f.h {
                for x in 0..f.w {
                    let px = f.px(x, y);
                    if on_outline(x, y) {
                        assert_eq!(px, c, "{layout:?} outline pixel {x},{y}");
                    } else if layout.is_yuv() {
                        // Luma is exact; chroma may bleed into the 2x2 block of a line pixel,
                        // but with even box coordinates and line width it does not.
                        assert_eq!(px, f.native(BG), "{layout:?} pixel {x},{y}");
                    } else {
                        assert_eq!(px, BG, "{layout:?} pixel {x},{y}");
                    }
                }
            }
            f.assert_padding_and_alpha_untouched();
        }
    }

    /// YUV with odd coordinates: luma exact, and every chroma sample covering a line pixel holds
    /// the class colour's chroma.
    #[test]
    fn yuv_outline_odd_coordinates_chroma_covers_lines() {
        for layout in [PixelLayout::I420, PixelLayout::Nv12] {
            for color in YUV_COLORS {
                let mut f = Owned::new(layout, 641, 361, 3, color);
                f.draw(
                    &[det(10, "a", 0.5, [101.0, 81.0, 301.0, 201.0])],
                    &style(3, false, false),
                );
                let [cy_, cu, cv] = rgb_to_yuv(class_color(10), color);
                let [by, bu, bv] = rgb_to_yuv(BG, color);
                let line = |x: usize, y: usize| {
                    (101..301).contains(&x)
                        && (81..201).contains(&y)
                        && (!(104..298).contains(&x) || !(84..198).contains(&y))
                };
                for y in 0..f.h {
                    for x in 0..f.w {
                        let [py, pu, pv] = f.yuv(x, y);
                        assert_eq!(py, if line(x, y) { cy_ } else { by }, "Y {x},{y}");
                        let (bx, byy) = (x & !1, y & !1);
                        let covered = (0..2).any(|dy| (0..2).any(|dx| line(bx + dx, byy + dy)));
                        let want = if covered { (cu, cv) } else { (bu, bv) };
                        assert_eq!((pu, pv), want, "{layout:?} chroma at {x},{y}");
                    }
                }
                f.assert_padding_and_alpha_untouched();
            }
        }
    }

    /// The tag's every pixel matches the font rendered at the expected place and scale.
    #[test]
    fn tag_matches_font_exactly() {
        for layout in PACKED {
            for (class, scale) in [(0u32, 0.0f32), (2, 0.0), (6, 2.0), (13, 3.0)] {
                let mut f = Owned::new(layout, 640, 360, 4, YuvColor::default());
                let s = DrawStyle {
                    line_width: 2,
                    font_scale: scale,
                    draw_labels: true,
                    draw_confidence: true,
                };
                f.draw(
                    &[det(class, "person", 0.874, [100.0, 150.0, 400.0, 300.0])],
                    &s,
                );
                let k = if scale == 0.0 { 1 } else { scale as usize };
                let text = "person 0.87";
                let (tw, th) = (k + 11 * 8 * k, 10 * k);
                let (tx, ty) = (100, 150 - th);
                let bg = class_color(class);
                let fg = text_color(bg);
                assert_ne!(fg, bg);
                let mut n_text = 0;
                for ly in 0..th {
                    for lx in 0..tw {
                        let is_text = text_pixel(text, k, lx, ly);
                        n_text += usize::from(is_text);
                        let want = if is_text { fg } else { bg };
                        assert_eq!(f.rgb(tx + lx, ty + ly), want, "{layout:?} tag {lx},{ly}");
                    }
                }
                assert!(n_text > 100 * k * k, "text drawn");
                // Just outside the tag: untouched.
                assert!(f.is_bg(tx + tw, ty + th / 2));
                assert!(f.is_bg(tx + 5, ty - 1));
                assert!(f.is_bg(tx - 1, ty + 2));
                f.assert_padding_and_alpha_untouched();
            }
        }
    }

    /// YUV tags: luma equals the RGB drawing converted, chroma is the tag colour away from text
    /// and neutral-leaning over text.
    #[test]
    fn yuv_tag_luma_matches_rgb_drawing() {
        for layout in [PixelLayout::I420, PixelLayout::Nv12] {
            for color in YUV_COLORS {
                let dets = [
                    det(0, "person", 0.874, [100.0, 150.0, 400.0, 300.0]),
                    det(2, "car", 0.51, [331.0, 21.0, 501.0, 141.0]),
                    det(17, "dog", 0.3, [-40.0, 301.0, 60.0, 420.0]),
                ];
                let s = DrawStyle {
                    font_scale: 2.0,
                    ..Default::default()
                };
                let mut rgb = Owned::new(PixelLayout::Rgb, 641, 359, 0, color);
                rgb.draw(&dets, &s);
                let mut f = Owned::new(layout, 641, 359, 5, color);
                f.draw(&dets, &s);
                for y in 0..f.h {
                    for x in 0..f.w {
                        let want = rgb_to_yuv(rgb.rgb(x, y), color);
                        let got = f.yuv(x, y);
                        assert_eq!(got[0], want[0], "Y at {x},{y}");
                        // Chroma: within the range spanned by the 2x2 block of the RGB drawing,
                        // unless the block is untouched there (then it must be untouched here,
                        // too, except for bleed next to drawn pixels, which the range covers
                        // since the neighbour is drawn).
                        let (bx, by) = (x & !1, y & !1);
                        let mut lo = [255u8; 2];
                        let mut hi = [0u8; 2];
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            let (xx, yy) = (bx + dx, by + dy);
                            if xx < f.w && yy < f.h {
                                let c = rgb_to_yuv(rgb.rgb(xx, yy), color);
                                for k in 0..2 {
                                    lo[k] = lo[k].min(c[k + 1]);
                                    hi[k] = hi[k].max(c[k + 1]);
                                }
                            }
                        }
                        for k in 0..2 {
                            assert!(
                                (lo[k]..=hi[k]).contains(&got[k + 1]),
                                "{layout:?} chroma {k} at {x},{y}: {} not in {}..={}",
                                got[k + 1],
                                lo[k],
                                hi[k]
                            );
                        }
                    }
                }
                f.assert_padding_and_alpha_untouched();
            }
        }
    }

    /// YUV tag chroma is exactly the 2x2 average of tag and text colour, for every scale and
    /// both parities of the tag position (this also covers the row-copy shortcut at scale >= 3).
    #[test]
    fn yuv_tag_chroma_is_block_average() {
        for layout in [PixelLayout::I420, PixelLayout::Nv12] {
            for scale in 1..=6 {
                for (bx, by) in [
                    (100.0, 150.0),
                    (101.0, 151.0),
                    (100.0, 151.0),
                    (101.0, 150.0),
                ] {
                    let color = YUV_COLORS[scale % YUV_COLORS.len()];
                    let dets = [det(9, "Wq_|@ 1", 0.87, [bx, by, bx + 300.0, by + 100.0])];
                    let s = DrawStyle {
                        font_scale: scale as f32,
                        ..Default::default()
                    };
                    let mut rgb = Owned::new(PixelLayout::Rgb, 1280, 720, 0, color);
                    rgb.draw(&dets, &s);
                    let mut f = Owned::new(layout, 1280, 720, 2, color);
                    f.draw(&dets, &s);
                    let m = Metrics::new(1280, 720, &s);
                    let (tx0, ty0) = (bx as usize, by as usize - m.tag_h);
                    let (tx1, ty1) = (tx0 + m.pad + 11 * 8 * m.scale, by as usize);
                    let bg = rgb_to_yuv(class_color(9), color);
                    let fg_rgb = text_color(class_color(9));
                    let fg = rgb_to_yuv(fg_rgb, color);
                    for cy in ty0.div_ceil(2)..ty1 / 2 {
                        for cx in tx0.div_ceil(2)..tx1 / 2 {
                            let n = [(0, 0), (1, 0), (0, 1), (1, 1)]
                                .iter()
                                .filter(|&&(dx, dy)| rgb.rgb(2 * cx + dx, 2 * cy + dy) == fg_rgb)
                                .count() as u32;
                            let mix = |b: u8, f: u8| {
                                ((u32::from(b) * (4 - n) + u32::from(f) * n + 2) / 4) as u8
                            };
                            let got = f.yuv(2 * cx, 2 * cy);
                            assert_eq!(
                                [got[1], got[2]],
                                [mix(bg[1], fg[1]), mix(bg[2], fg[2])],
                                "{layout:?} scale {scale} at ({bx},{by}) chroma {cx},{cy}"
                            );
                        }
                    }
                    f.assert_padding_and_alpha_untouched();
                }
            }
        }
    }

    #[test]
    fn label_flags_control_the_tag() {
        let b = [100.0, 150.0, 400.0, 300.0];
        for layout in ALL {
            // (labels, confidence, tag width in chars)
            for (labels, conf, chars) in [
                (true, true, 11),
                (true, false, 6),
                (false, true, 4),
                (false, false, 0),
            ] {
                let mut f = Owned::new(layout, 640, 360, 2, color_for(layout, 1));
                f.draw(&[det(4, "person", 0.874, b)], &style(2, labels, conf));
                // The row through the middle of the glyphs, above the box.
                let y = 150 - 10 + 4;
                let tagged = f.count(|x, yy| yy == y && !f.is_bg(x, yy));
                // YUV chroma may make the pixel right after the tag differ; compare luma only
                // there by checking the exact width on packed layouts.
                if layout.is_yuv() {
                    let w = if chars == 0 { 0 } else { 1 + 8 * chars };
                    let luma = (0..f.w)
                        .filter(|&x| f.yuv(x, y)[0] != rgb_to_yuv(BG, f.color)[0])
                        .count();
                    assert_eq!(luma, w, "{layout:?} {labels} {conf}");
                } else {
                    let w = if chars == 0 { 0 } else { 1 + 8 * chars };
                    assert_eq!(tagged, w, "{layout:?} {labels} {conf}");
                }
                if chars == 0 {
                    // Nothing at all above the box.
                    assert_eq!(f.count(|x, yy| yy < 150 && !f.is_bg(x, yy)), 0);
                }
                f.assert_padding_and_alpha_untouched();
            }
        }
    }

    #[test]
    fn tag_placement() {
        let m = Metrics::new(640, 360, &DrawStyle::default());
        let place = |b: [i64; 4], n| {
            let r = BoxRect {
                x0: b[0],
                y0: b[1],
                x1: b[2],
                y1: b[3],
            };
            let t = Tag::place(&r, n, &m);
            (t.x0, t.y0, t.x1, t.y1)
        };
        // Above the top-left corner.
        assert_eq!(place([100, 150, 400, 300], 11), (100, 140, 189, 150));
        // No room above: inside the box.
        assert_eq!(place([100, 5, 400, 300], 11), (100, 5, 189, 15));
        assert_eq!(place([100, -30, 400, 300], 11), (100, 0, 189, 10));
        // Left edge outside: clamped.
        assert_eq!(place([-50, 100, 400, 300], 11), (0, 90, 89, 100));
        // Near the right edge: shifted left to stay in the frame.
        assert_eq!(place([600, 100, 640, 300], 11), (551, 90, 640, 100));
        // Near the bottom with no room above is impossible; a box at the very bottom still gets
        // its tag above.
        assert_eq!(place([0, 355, 10, 360], 2), (0, 345, 17, 355));
    }

    #[test]
    fn box_partly_outside_draws_visible_part() {
        for (i, layout) in ALL.into_iter().enumerate() {
            let mut f = Owned::new(layout, 640, 360, 3, color_for(layout, i));
            f.draw(
                &[det(5, "cat", 0.7, [-50.0, -50.0, 100.0, 100.0])],
                &DrawStyle::default(),
            );
            let c = f.native(class_color(5));
            // Bottom and right edges visible.
            assert_eq!(f.px(0, 98), c);
            assert_eq!(f.px(50, 99), c);
            assert_eq!(f.px(98, 50), c);
            assert_eq!(f.px(99, 0), c);
            // Tag inside the box at the frame's corner.
            assert_eq!(f.px(0, 0), c);
            assert!(f.is_bg(50, 50));
            assert!(f.is_bg(101, 50));
            assert!(f.is_bg(50, 101));
            f.assert_padding_and_alpha_untouched();

            // Over the right/bottom edges.
            let mut f = Owned::new(layout, 640, 360, 3, color_for(layout, i));
            f.draw(
                &[det(5, "cat", 0.7, [600.0, 300.0, 700.0, 400.0])],
                &DrawStyle::default(),
            );
            assert_eq!(f.px(600, 330), c);
            assert_eq!(f.px(639, 301), c);
            assert!(f.is_bg(630, 340));
            f.assert_padding_and_alpha_untouched();
        }
    }

    #[test]
    fn nothing_drawn_for_degenerate_or_outside_boxes() {
        let boxes = [
            [700.0, 400.0, 800.0, 500.0],
            [-100.0, -100.0, -1.0, 50.0],
            [10.0, 10.0, 10.0, 50.0],
            [10.0, 50.0, 60.0, 50.0],
            [60.0, 60.0, 10.0, 10.0],
            [10.2, 10.0, 10.4, 50.0],
            [f32::NAN, 0.0, 100.0, 100.0],
            [0.0, 0.0, 640.0, f32::NAN],
            [640.0, 0.0, 700.0, 100.0],
        ];
        for (i, layout) in ALL.into_iter().enumerate() {
            let mut f = Owned::new(layout, 640, 360, 3, color_for(layout, i));
            let dets: Vec<_> = boxes.iter().map(|&b| det(1, "x", 0.5, b)).collect();
            f.draw(&dets, &DrawStyle::default());
            assert_eq!(f.count(|x, y| !f.is_bg(x, y)), 0, "{layout:?}");
            f.assert_padding_and_alpha_untouched();
        }
    }

    #[test]
    fn huge_and_infinite_boxes_do_not_panic() {
        for (i, layout) in ALL.into_iter().enumerate() {
            let mut f = Owned::new(layout, 64, 36, 1, color_for(layout, i));
            let dets = [
                det(1, "x", 0.5, [f32::NEG_INFINITY, -1e30, f32::INFINITY, 1e30]),
                det(2, "y", 0.5, [-1e12, 5.0, 1e12, 20.0]),
            ];
            let s = DrawStyle {
                line_width: u32::MAX,
                font_scale: 1e30,
                ..Default::default()
            };
            f.draw(&dets, &s);
            f.draw(&dets, &DrawStyle::default());
            f.assert_padding_and_alpha_untouched();
        }
    }

    #[test]
    fn zero_size_frame_and_empty_input_are_no_ops() {
        for layout in ALL {
            for (w, h) in [(0, 0), (0, 10), (10, 0)] {
                let mut f = Owned::new(layout, w, h, 4, color_for(layout, 0));
                f.draw(
                    &[det(1, "x", 0.5, [0.0, 0.0, 5.0, 5.0])],
                    &DrawStyle::default(),
                );
                f.assert_padding_and_alpha_untouched();
            }
            let mut f = Owned::new(layout, 16, 16, 0, color_for(layout, 0));
            f.draw(&[], &DrawStyle::default());
            assert_eq!(f.count(|x, y| !f.is_bg(x, y)), 0);
        }
    }

    #[test]
    fn undersized_planes_are_left_alone() {
        for layout in ALL {
            let mut f = Owned::new(layout, 32, 32, 0, color_for(layout, 0));
            let before: Vec<Vec<u8>> = f.planes.iter().map(|p| p.0.clone()).collect();
            let mut frame = f.frame();
            frame.height = 33;
            draw_detections(
                &mut frame,
                &[det(1, "x", 0.5, [0.0, 0.0, 20.0, 20.0])],
                &DrawStyle::default(),
            );
            let after: Vec<Vec<u8>> = f.planes.iter().map(|p| p.0.clone()).collect();
            assert_eq!(before, after, "{layout:?}");
        }
    }

    /// Random boxes on odd and tiny frames with every layout: no panic, padding and alpha kept,
    /// pixels far from every box untouched.
    #[test]
    fn random_boxes_on_odd_sizes() {
        let mut seed = 0x1234_5678_9abc_def0_u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u32
        };
        let sizes = [
            (1, 1),
            (1, 7),
            (3, 3),
            (7, 5),
            (17, 9),
            (63, 31),
            (321, 179),
        ];
        for (i, layout) in ALL.into_iter().enumerate() {
            for &(w, h) in &sizes {
                for trial in 0..8 {
                    let mut f = Owned::new(layout, w, h, (trial % 3) * 3, color_for(layout, i));
                    let dets: Vec<_> = (0..6)
                        .map(|_| {
                            let x = (rnd() % (w as u32 * 2 + 20)) as f32 - w as f32 / 2.0 - 10.0;
                            let y = (rnd() % (h as u32 * 2 + 20)) as f32 - h as f32 / 2.0 - 10.0;
                            let bw = (rnd() % (w as u32 + 10)) as f32 + 0.3;
                            let bh = (rnd() % (h as u32 + 10)) as f32 + 0.7;
                            det(rnd(), "label", 0.5, [x, y, x + bw, y + bh])
                        })
                        .collect();
                    let s = DrawStyle {
                        line_width: rnd() % 4,
                        font_scale: (rnd() % 3) as f32,
                        draw_labels: rnd() % 2 == 0,
                        draw_confidence: rnd() % 2 == 0,
                    };
                    f.draw(&dets, &s);
                    f.assert_padding_and_alpha_untouched();
                }
            }
        }
    }

    /// Writes PPM renderings to `$DRAW_PPM_DIR` (default /tmp) for a visual check.
    #[test]
    #[ignore]
    fn render_ppm() {
        let dir = std::env::var("DRAW_PPM_DIR").unwrap_or_else(|_| "/tmp".into());
        let dets = |w: f32, h: f32| {
            let names = [
                "person",
                "car",
                "traffic light",
                "dog",
                "bicycle",
                "cell phone",
            ];
            (0..12)
                .map(|i| {
                    let fi = i as f32;
                    let x = (fi * 0.13 + 0.02) % 0.8 * w;
                    let y = (fi * 0.29 + 0.1) % 0.8 * h;
                    det(
                        i * 3,
                        names[i as usize % names.len()],
                        0.3 + fi * 0.057,
                        [x, y, x + w * 0.18, y + h * 0.25],
                    )
                })
                .chain([
                    det(2, "edge", 0.99, [-30.0, -20.0, w * 0.2, h * 0.3]),
                    det(7, "corner", 0.41, [w * 0.9, h * 0.85, w + 50.0, h + 40.0]),
                ])
                .collect::<Vec<_>>()
        };
        for (w, h, layout) in [
            (640, 360, PixelLayout::Rgb),
            (1920, 1080, PixelLayout::Bgrx),
            (1920, 1080, PixelLayout::I420),
            (641, 361, PixelLayout::Nv12),
        ] {
            let color = YuvColor {
                matrix: YuvMatrix::Bt709,
                full_range: false,
            };
            let mut f = Owned::new(layout, w, h, 8, color);
            // A gradient background so text contrast shows.
            for y in 0..h {
                for x in 0..w {
                    let rgb = [(x * 255 / w) as u8, (y * 255 / h) as u8, 128];
                    set_px(&mut f, x, y, rgb);
                }
            }
            f.draw(&dets(w as f32, h as f32), &DrawStyle::default());
            let mut out = format!("P6\n{w} {h}\n255\n").into_bytes();
            for y in 0..h {
                for x in 0..w {
                    out.extend_from_slice(&to_rgb(&f, x, y));
                }
            }
            let path = format!("{dir}/draw_{w}x{h}_{layout:?}.ppm");
            std::fs::write(&path, out).unwrap();
            eprintln!("wrote {path}");
        }
    }

    fn set_px(f: &mut Owned, x: usize, y: usize, rgb: [u8; 3]) {
        match f.layout.packed_rgb() {
            Some((bpp, ro, go, bo)) => {
                let (d, s, _) = &mut f.planes[0];
                let i = y * *s + x * bpp;
                d[i + ro] = rgb[0];
                d[i + go] = rgb[1];
                d[i + bo] = rgb[2];
            }
            None => {
                let [yy, u, v] = rgb_to_yuv(rgb, f.color);
                let (cx, cy) = (x / 2, y / 2);
                let s0 = f.planes[0].1;
                f.planes[0].0[y * s0 + x] = yy;
                if f.layout == PixelLayout::I420 {
                    let (s1, s2) = (f.planes[1].1, f.planes[2].1);
                    f.planes[1].0[cy * s1 + cx] = u;
                    f.planes[2].0[cy * s2 + cx] = v;
                } else {
                    let s1 = f.planes[1].1;
                    f.planes[1].0[cy * s1 + 2 * cx] = u;
                    f.planes[1].0[cy * s1 + 2 * cx + 1] = v;
                }
            }
        }
    }

    /// Inverse of [`rgb_to_yuv`] for viewing YUV test output.
    fn to_rgb(f: &Owned, x: usize, y: usize) -> [u8; 3] {
        if !f.layout.is_yuv() {
            return f.rgb(x, y);
        }
        let (kr, kb) = match f.color.matrix {
            YuvMatrix::Bt601 => (0.299f32, 0.114f32),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
            YuvMatrix::Bt2020 => (0.2627, 0.0593),
        };
        let [yy, u, v] = f.yuv(x, y).map(f32::from);
        let (yy, cb, cr) = if f.color.full_range {
            (yy, u - 128.0, v - 128.0)
        } else {
            (
                (yy - 16.0) * 255.0 / 219.0,
                (u - 128.0) * 255.0 / 224.0,
                (v - 128.0) * 255.0 / 224.0,
            )
        };
        let r = yy + 2.0 * (1.0 - kr) * cr;
        let b = yy + 2.0 * (1.0 - kb) * cb;
        let g = (yy - kr * r - kb * b) / (1.0 - kr - kb);
        [r, g, b].map(|c| c.round().clamp(0.0, 255.0) as u8)
    }

    /// `cargo test --release -- --ignored --nocapture timing`
    #[test]
    #[ignore]
    fn timing() {
        let names = [
            "person",
            "car",
            "traffic light",
            "dog",
            "bicycle",
            "cell phone",
        ];
        let dets: Vec<_> = (0..50u32)
            .map(|i| {
                let fi = i as f32;
                let x = (fi * 137.0) % 1700.0;
                let y = (fi * 71.0) % 900.0;
                let (bw, bh) = (80.0 + (fi * 53.0) % 400.0, 60.0 + (fi * 31.0) % 300.0);
                det(
                    i,
                    names[i as usize % names.len()],
                    0.25 + (fi * 0.013) % 0.7,
                    [x, y, x + bw, y + bh],
                )
            })
            .collect();
        for layout in [
            PixelLayout::Rgbx,
            PixelLayout::Rgb,
            PixelLayout::I420,
            PixelLayout::Nv12,
        ] {
            for (w, h) in [(1920, 1080), (3840, 2160)] {
                let mut f = Owned::new(layout, w, h, 0, YuvColor::default());
                let style = DrawStyle::default();
                for _ in 0..20 {
                    f.draw(&dets, &style);
                }
                let iters = 300;
                let mut best = f64::MAX;
                let t0 = std::time::Instant::now();
                for _ in 0..iters {
                    let t = std::time::Instant::now();
                    f.draw(&dets, &style);
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let mean = t0.elapsed().as_secs_f64() / iters as f64;
                eprintln!(
                    "{layout:?} {w}x{h}, 50 boxes: mean {:.1} us, best {:.1} us",
                    mean * 1e6,
                    best * 1e6
                );
            }
        }
    }
}
