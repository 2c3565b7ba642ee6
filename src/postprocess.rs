//! YOLO output decoding, non-maximum suppression and mapping of boxes back to frame pixels.
//!
//! Semantics follow Ultralytics' `non_max_suppression` for default predictions
//! (`multi_label=False`), as reproduced by `shared/reference/make_reference.py`:
//!
//! - **Anchors** (YOLOv8 / YOLO11, `[B, 4+C, N]`): score = max class score, class = first
//!   argmax; keep `score > conf` (strictly); boxes `cx, cy, w, h` -> `x1, y1, x2, y2`.
//! - **AnchorsObjectness** (classic YOLOv5, `[B, N, 5+C]`): keep `objectness > conf`, then
//!   score = max over classes of `objectness * class score`, keep `score > conf`.
//! - Both: optional `classes` filter, sort by score descending, at most [`MAX_NMS`]
//!   candidates, greedy (torchvision-style) NMS that drops a box whose IoU with an already kept
//!   box is strictly greater than the IoU threshold, class-aware unless `agnostic`, at most
//!   `max_detections` boxes.
//! - **EndToEnd** (`[B, K, 6]`, YOLOv10 / YOLO26 / `nms=True` exports): rows are already
//!   suppressed `x1, y1, x2, y2, score, class`; keep `score > conf`, `classes` filter, at most
//!   `max_detections`; no NMS is run (Ultralytics doesn't either).
//!
//! - Filters ([`crate::filters`]), all before NMS as DeepStream's nvinfer applies its
//!   `pre-cluster-threshold` and `detected-min-w`-style limits: `conf` above is the lowest
//!   threshold in force, and each candidate must beat its class's own threshold when it has
//!   one; boxes outside the size limits (frame pixels, measured after clipping) are dropped.
//!
//! Boxes are then mapped from network-input pixels to frame pixels with the letterbox
//! (`(x - pad) / scale`, plus the region of interest's origin) and clipped to the letterboxed
//! region (the frame, or the region of interest). No GStreamer types here.

use std::fmt;
use std::sync::Arc;

use crate::detection::Detection;
use crate::filters::{SizeLimits, class_threshold, lowest_threshold};
use crate::preprocess::Letterbox;

/// At most this many candidates (highest scores) enter NMS, as Ultralytics' `max_nms`.
pub const MAX_NMS: usize = 30_000;

/// `[B, K, 6]` with `K` up to this is taken as an end-to-end head; above it, as a one-class
/// YOLOv5 head (see [`HeadLayout::detect`]).
pub const MAX_END_TO_END_ROWS: usize = 1000;

/// Ultralytics' prediction defaults.
pub const DEFAULT_CONF_THRESHOLD: f32 = 0.25;
pub const DEFAULT_IOU_THRESHOLD: f32 = 0.7;
pub const DEFAULT_MAX_DETECTIONS: usize = 300;

/// Output head layouts, detected from the output tensor shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadLayout {
    /// YOLOv8 / YOLO11: [B, 4+C, N] — rows cx, cy, w, h, then C class scores; N anchors.
    Anchors {
        num_classes: usize,
        num_anchors: usize,
    },
    /// YOLOv5: [B, N, 5+C] — per anchor cx, cy, w, h, objectness, C class scores.
    AnchorsObjectness {
        num_classes: usize,
        num_anchors: usize,
    },
    /// End-to-end (YOLOv10, YOLO26, nms=True exports): [B, K, 6] — x1, y1, x2, y2, score, class.
    EndToEnd { max_detections: usize },
}

/// What a model's Ultralytics metadata says about its head (see [`HeadLayout::detect_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadHints {
    /// Model input (width, height).
    pub input: Option<(u32, u32)>,
    /// The largest stride (`stride` metadata), 32 for P3-P5 heads.
    pub stride: Option<u32>,
}

impl HeadHints {
    /// Anchors of a one-anchor-per-cell head over strides 8, 16, .., `stride`; `None` without
    /// both hints or with a stride that is not a power of two of at least 8.
    pub fn anchors(&self) -> Option<usize> {
        let ((w, h), top) = (self.input?, self.stride?);
        if top < 8 || !top.is_power_of_two() || w == 0 || h == 0 {
            return None;
        }
        let mut n = 0usize;
        let mut s = 8u32;
        while s <= top {
            n = n.checked_add((w.div_ceil(s) as usize).checked_mul(h.div_ceil(s) as usize)?)?;
            s = s.checked_mul(2)?;
        }
        Some(n)
    }
}

/// Why an output shape can't be decoded. Display names the shape found and the supported ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The shape matches none of the supported layouts.
    Unsupported { shape: Vec<i64>, reason: String },
    /// The shape fits a layout but its class count disagrees with the known class names.
    ClassMismatch {
        shape: Vec<i64>,
        layout: String,
        shape_classes: usize,
        names: usize,
        hint: &'static str,
    },
}

const SUPPORTED: &str = "supported YOLO detection outputs are [B, 4+C, N] (YOLOv8/YOLO11), \
                         [B, N, 5+C] (YOLOv5) and [B, K, 6] (end-to-end: YOLOv10, YOLO26, \
                         nms=True exports)";

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Unsupported { shape, reason } => write!(
                f,
                "unsupported model output shape {shape:?}: {reason}; {SUPPORTED}"
            ),
            HeadError::ClassMismatch {
                shape,
                layout,
                shape_classes,
                names,
                hint,
            } => write!(
                f,
                "model output shape {shape:?} read as {layout} has {shape_classes} classes, \
                 but the model metadata/labels name {names} classes{hint}; {SUPPORTED}"
            ),
        }
    }
}

impl std::error::Error for HeadError {}

impl HeadLayout {
    /// Detects the head layout from the output's concrete shape `[B, d1, d2]` (all dims > 0).
    /// `num_names`: class count known from model metadata or labels, if any (`Some(0)` counts as
    /// unknown).
    ///
    /// Rules, in order:
    /// 1. rank must be 3 and every dim > 0;
    /// 2. `d2 == 6 && d1 > 6` is end-to-end `[B, K, 6]` when `K <= MAX_END_TO_END_ROWS` (their K
    ///    is `max_det`, 300 by default; a one-class YOLOv5 has that few anchors only for inputs
    ///    under ~130x130), whatever `num_names` says (an end-to-end shape doesn't carry the
    ///    class count). With `K > MAX_END_TO_END_ROWS` it is a one-class YOLOv5 `[B, N, 5+1]`
    ///    unless `num_names` says there is more than one class (then end-to-end again);
    /// 3. `4 < d1 < d2` is YOLOv8/YOLO11 `[B, 4+C, N]` with `C = d1 - 4` (anchors always
    ///    outnumber the rows);
    /// 4. `d1 > d2 > 5` is YOLOv5 `[B, N, 5+C]` with `C = d2 - 5`;
    /// 5. anything else (`d1 == d2`, too few rows/columns) is an error.
    ///
    /// For 3 and 4, a known `num_names` must equal `C`, else [`HeadError::ClassMismatch`]
    /// (which also catches a transposed YOLOv8 output `[B, N, 4+C]`, otherwise
    /// indistinguishable from YOLOv5, and segmentation/pose heads with extra rows).
    pub fn detect(shape: &[i64], num_names: Option<usize>) -> Result<HeadLayout, HeadError> {
        let unsupported = |reason: &str| HeadError::Unsupported {
            shape: shape.to_vec(),
            reason: reason.to_string(),
        };
        if shape.len() != 3 {
            return Err(unsupported(&format!(
                "expected 3 dimensions, found {}",
                shape.len()
            )));
        }
        if shape.iter().any(|&d| d <= 0) {
            return Err(unsupported(
                "every dimension must be known and > 0 (run the model once to get the concrete shape)",
            ));
        }
        let (d1, d2) = (shape[1] as usize, shape[2] as usize);
        let names = num_names.filter(|&n| n > 0);

        let mismatch = |layout: HeadLayout, shape_classes: usize, names: usize| {
            let hint = if matches!(layout, HeadLayout::AnchorsObjectness { .. })
                && names == shape_classes + 1
            {
                " (this looks like a transposed YOLOv8/YOLO11 output [B, N, 4+C]: export the \
                 model without transposing its output)"
            } else if shape_classes > names {
                " (extra rows: a segmentation or pose model? only detection models are \
                 supported; or the labels are for another model)"
            } else {
                " (are the labels for another model?)"
            };
            HeadError::ClassMismatch {
                shape: shape.to_vec(),
                layout: layout.describe(),
                shape_classes,
                names,
                hint,
            }
        };
        let checked = |layout: HeadLayout, c: usize| match names {
            Some(n) if n != c => Err(mismatch(layout, c, n)),
            _ => Ok(layout),
        };

        if d2 == 6 && d1 > 6 {
            if d1 <= MAX_END_TO_END_ROWS || names.is_some_and(|n| n > 1) {
                return Ok(HeadLayout::EndToEnd { max_detections: d1 });
            }
            return Ok(HeadLayout::AnchorsObjectness {
                num_classes: 1,
                num_anchors: d1,
            });
        }
        if d1 > 4 && d1 < d2 {
            let c = d1 - 4;
            return checked(
                HeadLayout::Anchors {
                    num_classes: c,
                    num_anchors: d2,
                },
                c,
            );
        }
        if d2 > 5 && d1 > d2 {
            let c = d2 - 5;
            return checked(
                HeadLayout::AnchorsObjectness {
                    num_classes: c,
                    num_anchors: d1,
                },
                c,
            );
        }
        Err(unsupported(if d1 == d2 {
            "rows and columns are equal, so the layout is ambiguous"
        } else {
            "too few rows or columns for boxes and class scores"
        }))
    }

    /// Like [`HeadLayout::detect`], but first uses what an Ultralytics export's metadata implies:
    /// a detection head over strides 8, 16, .. up to `hints.stride` has one anchor per grid cell
    /// of each level (YOLOv8/YOLO11) or three (YOLOv5). An output whose anchor dimension equals
    /// that count is read that way, which the shape alone cannot do for small inputs: at 32x32
    /// yolov8n outputs `[1, 84, 21]` (more rows than anchors) and at 64x64 `[1, 84, 84]`.
    pub fn detect_with(
        shape: &[i64],
        num_names: Option<usize>,
        hints: &HeadHints,
    ) -> Result<HeadLayout, HeadError> {
        if let (Some(na), [_, d1, d2]) = (hints.anchors(), shape)
            && *d1 > 0
            && *d2 > 0
        {
            let (d1, d2) = (*d1 as usize, *d2 as usize);
            let fits = |c: usize| num_names.filter(|&n| n > 0).is_none_or(|n| n == c);
            if d2 == na && d1 > 4 && fits(d1 - 4) {
                return Ok(HeadLayout::Anchors {
                    num_classes: d1 - 4,
                    num_anchors: na,
                });
            }
            if Some(d1) == na.checked_mul(3) && d2 > 5 && fits(d2 - 5) {
                return Ok(HeadLayout::AnchorsObjectness {
                    num_classes: d2 - 5,
                    num_anchors: d1,
                });
            }
        }
        Self::detect(shape, num_names)
    }

    /// Class count implied by the shape; `None` for end-to-end heads (not in their shape).
    pub fn num_classes(&self) -> Option<usize> {
        match *self {
            HeadLayout::Anchors { num_classes, .. }
            | HeadLayout::AnchorsObjectness { num_classes, .. } => Some(num_classes),
            HeadLayout::EndToEnd { .. } => None,
        }
    }

    /// Number of f32 values of one batch item's output (saturating: a shape read from a model
    /// may be absurd, and then no data is long enough).
    pub fn item_len(&self) -> usize {
        match *self {
            HeadLayout::Anchors {
                num_classes,
                num_anchors,
            } => num_classes.saturating_add(4).saturating_mul(num_anchors),
            HeadLayout::AnchorsObjectness {
                num_classes,
                num_anchors,
            } => num_classes.saturating_add(5).saturating_mul(num_anchors),
            HeadLayout::EndToEnd { max_detections } => max_detections.saturating_mul(6),
        }
    }

    /// Human-readable name and shape, e.g. "YOLOv8/YOLO11 [B, 84, 8400]".
    pub fn describe(&self) -> String {
        match *self {
            HeadLayout::Anchors {
                num_classes,
                num_anchors,
            } => format!(
                "YOLOv8/YOLO11 [B, {}, {num_anchors}]",
                num_classes.saturating_add(4)
            ),
            HeadLayout::AnchorsObjectness {
                num_classes,
                num_anchors,
            } => format!(
                "YOLOv5 [B, {num_anchors}, {}]",
                num_classes.saturating_add(5)
            ),
            HeadLayout::EndToEnd { max_detections } => {
                format!("end-to-end [B, {max_detections}, 6]")
            }
        }
    }
}

/// Post-processing parameters (Ultralytics' `conf`, `iou`, `agnostic_nms`, `max_det`, `classes`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PostParams<'a> {
    /// Keep scores strictly greater than this.
    pub conf_threshold: f32,
    /// NMS drops a box whose IoU with a kept box is strictly greater than this.
    pub iou_threshold: f32,
    /// Class-agnostic NMS: boxes of different classes may suppress each other.
    pub agnostic: bool,
    pub max_detections: usize,
    /// Keep only these class ids; empty = all.
    pub classes: &'a [u32],
    /// Per-class confidence thresholds indexed by class id, NaN (or past the end) where
    /// `conf_threshold` applies ([`crate::filters::threshold_table`]). Applied before NMS.
    pub class_thresholds: &'a [f32],
    /// Box size limits in frame pixels, applied before NMS.
    pub size: SizeLimits,
}

impl Default for PostParams<'_> {
    fn default() -> Self {
        PostParams {
            conf_threshold: DEFAULT_CONF_THRESHOLD,
            iou_threshold: DEFAULT_IOU_THRESHOLD,
            agnostic: false,
            max_detections: DEFAULT_MAX_DETECTIONS,
            classes: &[],
            class_thresholds: &[],
            size: SizeLimits::default(),
        }
    }
}

/// A box in network-input pixels before NMS.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    b: [f32; 4],
    area: f32,
    score: f32,
    class: u32,
    /// Position in the output, to break score ties deterministically (stable order).
    idx: u32,
}

impl Candidate {
    fn new(b: [f32; 4], score: f32, class: u32, idx: usize) -> Self {
        Candidate {
            b,
            area: area(b),
            score,
            class,
            idx: idx as u32,
        }
    }
}

/// Fallback labels ("class{N}") are cached below this class id; above, made per detection.
const FALLBACK_CACHE: usize = 1024;

/// Decodes YOLO outputs into [`Detection`]s. Keeps its buffers between calls, so steady-state
/// calls don't allocate (except labels for class ids >= 1024 missing from `labels`).
#[derive(Debug, Default)]
pub struct Postprocessor {
    /// Per-anchor max class score (Anchors layout).
    best: Vec<f32>,
    cands: Vec<Candidate>,
    /// Indices into `cands` of the boxes NMS keeps, highest score first.
    keep: Vec<usize>,
    /// NMS: boxes kept so far (box, area), per class.
    kept_by_class: Vec<Vec<([f32; 4], f32)>>,
    fallback_labels: Vec<Option<Arc<str>>>,
}

impl Postprocessor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one batch item's output (`data` = that item's contiguous f32 slice, at least
    /// `layout.item_len()` values; a shorter slice yields no detections), applies thresholds,
    /// NMS, maps boxes to frame pixels with `letterbox` and clips them to the frame; appends to
    /// `out` (cleared first) highest confidence first. `labels[class_id]` gives the label;
    /// "class{N}" when out of range.
    pub fn run(
        &mut self,
        layout: &HeadLayout,
        data: &[f32],
        params: &PostParams,
        letterbox: &Letterbox,
        labels: &[Arc<str>],
        out: &mut Vec<Detection>,
    ) {
        out.clear();
        self.cands.clear();
        self.keep.clear();
        // A layout without classes or anchors has nothing to score (and no row to read): only
        // a hand-built layout can be one, `detect` never returns it.
        if data.len() < layout.item_len()
            || layout.item_len() == 0
            || params.max_detections == 0
            || layout.num_classes() == Some(0)
        {
            return;
        }
        let data = &data[..layout.item_len()];
        match *layout {
            HeadLayout::Anchors {
                num_classes,
                num_anchors,
            } => self.decode_anchors(data, num_classes, num_anchors, params),
            HeadLayout::AnchorsObjectness {
                num_classes,
                num_anchors,
            } => self.decode_objectness(data, num_classes, num_anchors, params),
            HeadLayout::EndToEnd { max_detections } => {
                self.decode_end_to_end(data, max_detections, params)
            }
        }
        if !params.size.is_unlimited() {
            // Measured as emitted (frame pixels, clipped), so every kept box meets the limits.
            self.cands.retain(|c| {
                let b = letterbox.box_to_frame(c.b);
                params.size.allows(b[2] - b[0], b[3] - b[1])
            });
        }
        self.sort_candidates();
        match layout {
            HeadLayout::EndToEnd { .. } => {
                self.keep
                    .extend(0..self.cands.len().min(params.max_detections));
            }
            _ => {
                self.cands.truncate(MAX_NMS);
                let nc = layout.num_classes().unwrap_or(1);
                self.nms(params, nc);
            }
        }
        self.emit(letterbox, labels, out);
    }

    fn decode_anchors(&mut self, data: &[f32], nc: usize, na: usize, p: &PostParams) {
        // The output is class-major (one row of N per class), so a per-anchor scan would stride
        // by N. Instead take the max row by row into `best`: contiguous, branch-free and
        // vectorised. Argmax and boxes are read afterwards for the few anchors above threshold.
        let scores = &data[4 * na..];
        self.best.clear();
        self.best.extend_from_slice(&scores[..na]);
        for row in scores[na..].chunks_exact(na) {
            for (m, &v) in self.best.iter_mut().zip(row) {
                // Same as `m.max(v)` for finite values; compiles to a plain vector max.
                *m = if v > *m { v } else { *m };
            }
        }
        let conf = lowest_threshold(p.class_thresholds, p.conf_threshold);
        for (a, &score) in self.best.iter().enumerate() {
            if !passes(score, conf) {
                continue;
            }
            // First class reaching the max: torch's argmax on ties.
            let class = (0..nc).find(|&c| scores[c * na + a] == score).unwrap_or(0) as u32;
            if !class_wanted(p, class) || !passes_class(p, score, class) {
                continue;
            }
            let b = xywh2xyxy(data[a], data[na + a], data[2 * na + a], data[3 * na + a]);
            if finite_box(&b) {
                self.cands.push(Candidate::new(b, score, class, a));
            }
        }
    }

    fn decode_objectness(&mut self, data: &[f32], nc: usize, na: usize, p: &PostParams) {
        let conf = lowest_threshold(p.class_thresholds, p.conf_threshold);
        for (a, row) in data.chunks_exact(5 + nc).take(na).enumerate() {
            let obj = row[4];
            if !passes(obj, conf) {
                continue;
            }
            // YOLOv5 multiplies the class scores by objectness before the argmax; do the same
            // (rather than argmax first) so that rounding ties resolve identically.
            let mut score = row[5] * obj;
            let mut class = 0;
            for (c, &s) in row[6..].iter().enumerate() {
                let v = s * obj;
                if v > score {
                    score = v;
                    class = c + 1;
                }
            }
            let class = class as u32;
            if !passes(score, conf) || !class_wanted(p, class) || !passes_class(p, score, class) {
                continue;
            }
            let b = xywh2xyxy(row[0], row[1], row[2], row[3]);
            if finite_box(&b) {
                self.cands.push(Candidate::new(b, score, class, a));
            }
        }
    }

    fn decode_end_to_end(&mut self, data: &[f32], k: usize, p: &PostParams) {
        let conf = lowest_threshold(p.class_thresholds, p.conf_threshold);
        for (i, row) in data.chunks_exact(6).take(k).enumerate() {
            let score = row[4];
            let class = row[5];
            let class_ok = class >= 0.0 && class < u32::MAX as f32; // also rejects NaN
            if !passes(score, conf) || !class_ok {
                continue;
            }
            let class = class.round() as u32;
            if !class_wanted(p, class) || !passes_class(p, score, class) {
                continue;
            }
            let b = [row[0], row[1], row[2], row[3]];
            if finite_box(&b) {
                self.cands.push(Candidate::new(b, score, class, i));
            }
        }
    }

    fn sort_candidates(&mut self) {
        // Scores passed `> conf`, so none is NaN; ties keep output order.
        self.cands
            .sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.idx.cmp(&b.idx)));
    }

    /// Greedy NMS over the sorted candidates: a box survives when no kept box (of its class,
    /// unless agnostic) overlaps it with IoU > threshold. Same result as torchvision's `nms`
    /// on Ultralytics' class-offset boxes, whose offsets only keep classes apart. Kept boxes
    /// are bucketed by class (one bucket when agnostic), so a candidate is only compared with
    /// kept boxes it could overlap: O(candidates * kept per class), and kept boxes never exceed
    /// `max_detections`.
    fn nms(&mut self, p: &PostParams, num_classes: usize) {
        let buckets = if p.agnostic { 1 } else { num_classes.max(1) };
        if self.kept_by_class.len() < buckets {
            self.kept_by_class.resize_with(buckets, Vec::new);
        }
        for b in &mut self.kept_by_class[..buckets] {
            b.clear();
        }
        for (i, c) in self.cands.iter().enumerate() {
            if self.keep.len() >= p.max_detections {
                break;
            }
            let bi = if p.agnostic { 0 } else { c.class as usize };
            if bi >= self.kept_by_class.len() {
                // Not reachable for decoded classes (< num_classes); kept for safety.
                self.kept_by_class.resize_with(bi + 1, Vec::new);
            }
            let kept = &mut self.kept_by_class[bi];
            let suppressed = kept
                .iter()
                .any(|&(kb, ka)| iou_with_areas(kb, ka, c.b, c.area) > p.iou_threshold);
            if !suppressed {
                kept.push((c.b, c.area));
                self.keep.push(i);
            }
        }
    }

    fn emit(&mut self, lb: &Letterbox, labels: &[Arc<str>], out: &mut Vec<Detection>) {
        out.reserve(self.keep.len());
        for &k in &self.keep {
            let c = self.cands[k];
            let [x1, y1, x2, y2] = lb.box_to_frame(c.b);
            let label = match labels.get(c.class as usize) {
                Some(l) => l.clone(),
                None => fallback_label(&mut self.fallback_labels, c.class),
            };
            out.push(Detection {
                class_id: c.class,
                label,
                confidence: c.score,
                x1,
                y1,
                x2,
                y2,
                track_id: None,
            });
        }
    }
}

fn fallback_label(cache: &mut Vec<Option<Arc<str>>>, class: u32) -> Arc<str> {
    let i = class as usize;
    if i >= FALLBACK_CACHE {
        return Arc::from(format!("class{class}"));
    }
    if cache.len() <= i {
        cache.resize(i + 1, None);
    }
    cache[i]
        .get_or_insert_with(|| Arc::from(format!("class{class}")))
        .clone()
}

/// `score > conf`, false for NaN and infinities: a broken model's non-finite outputs must not
/// become full-frame detections.
#[inline]
fn passes(score: f32, conf: f32) -> bool {
    score > conf && score.is_finite()
}

/// Whether all four box coordinates are finite numbers.
#[inline]
fn finite_box(b: &[f32; 4]) -> bool {
    b.iter().all(|v| v.is_finite())
}

/// `score` beats `class`'s own threshold (the global one when it has none).
#[inline]
fn passes_class(p: &PostParams, score: f32, class: u32) -> bool {
    passes(
        score,
        class_threshold(p.class_thresholds, p.conf_threshold, class),
    )
}

#[inline]
fn class_wanted(p: &PostParams, class: u32) -> bool {
    p.classes.is_empty() || p.classes.contains(&class)
}

fn xywh2xyxy(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    let (hw, hh) = (w / 2.0, h / 2.0);
    [cx - hw, cy - hh, cx + hw, cy + hh]
}

fn area(b: [f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

fn iou_with_areas(a: [f32; 4], area_a: f32, b: [f32; 4], area_b: f32) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area_a + area_b - inter;
    // Degenerate boxes: torchvision would give NaN (never suppresses); 0 does the same.
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (torchvision's formula, no epsilon);
/// 0 when the union is empty.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    iou_with_areas(a, area(a), b, area(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NC: usize = 80;
    const NA: usize = 8400;

    fn labels(n: usize) -> Vec<Arc<str>> {
        (0..n).map(|i| Arc::from(format!("l{i}"))).collect()
    }

    /// 810x1080 portrait frame letterboxed into 640x640: scale 640/1080, pad_left 80.
    fn lb() -> Letterbox {
        Letterbox::new(810, 1080, 640, 640)
    }

    /// Frame pixels -> input pixels for the test letterbox.
    fn to_input(lb: &Letterbox, x: f32, y: f32) -> (f32, f32) {
        (
            x * lb.scale + lb.pad_left as f32,
            y * lb.scale + lb.pad_top as f32,
        )
    }

    struct V8 {
        nc: usize,
        na: usize,
        data: Vec<f32>,
    }

    impl V8 {
        fn new(nc: usize, na: usize) -> Self {
            let mut data = vec![0.0; (4 + nc) * na];
            // Background: small scores everywhere, like a real sigmoid head.
            for (i, v) in data[4 * na..].iter_mut().enumerate() {
                *v = 0.001 + (i % 97) as f32 * 1e-4;
            }
            V8 { nc, na, data }
        }
        fn set(&mut self, a: usize, xyxy: [f32; 4], class: usize, score: f32) {
            let na = self.na;
            self.data[a] = (xyxy[0] + xyxy[2]) / 2.0;
            self.data[na + a] = (xyxy[1] + xyxy[3]) / 2.0;
            self.data[2 * na + a] = xyxy[2] - xyxy[0];
            self.data[3 * na + a] = xyxy[3] - xyxy[1];
            assert!(class < self.nc);
            self.data[(4 + class) * na + a] = score;
        }
        fn layout(&self) -> HeadLayout {
            HeadLayout::Anchors {
                num_classes: self.nc,
                num_anchors: self.na,
            }
        }
    }

    fn run(layout: HeadLayout, data: &[f32], p: &PostParams) -> Vec<Detection> {
        let mut pp = Postprocessor::new();
        let mut out = vec![];
        pp.run(&layout, data, p, &lb(), &labels(NC), &mut out);
        out
    }

    fn assert_box(d: &Detection, b: [f32; 4]) {
        for (got, want) in d.bbox().iter().zip(b) {
            assert!((got - want).abs() < 0.02, "box {:?} != {b:?}", d.bbox());
        }
    }

    #[test]
    fn detect_layouts() {
        assert_eq!(
            HeadLayout::detect(&[1, 84, 8400], None),
            Ok(HeadLayout::Anchors {
                num_classes: 80,
                num_anchors: 8400
            })
        );
        assert_eq!(
            HeadLayout::detect(&[1, 84, 8400], Some(80))
                .unwrap()
                .describe(),
            "YOLOv8/YOLO11 [B, 84, 8400]"
        );
        let v5 = HeadLayout::detect(&[1, 25200, 85], Some(80)).unwrap();
        assert_eq!(
            v5,
            HeadLayout::AnchorsObjectness {
                num_classes: 80,
                num_anchors: 25200
            }
        );
        assert_eq!(v5.describe(), "YOLOv5 [B, 25200, 85]");
        assert_eq!(v5.item_len(), 25200 * 85);
        for names in [None, Some(1), Some(80)] {
            let e2e = HeadLayout::detect(&[1, 300, 6], names).unwrap();
            assert_eq!(
                e2e,
                HeadLayout::EndToEnd {
                    max_detections: 300
                }
            );
            assert_eq!(e2e.num_classes(), None);
            assert_eq!(e2e.describe(), "end-to-end [B, 300, 6]");
        }
        let two = HeadLayout::detect(&[1, 6, 8400], Some(2)).unwrap();
        assert_eq!(
            two,
            HeadLayout::Anchors {
                num_classes: 2,
                num_anchors: 8400
            }
        );
        assert_eq!(two.num_classes(), Some(2));
        // One-class YOLOv5 [B, N, 6] with N beyond any end-to-end K.
        for names in [None, Some(1)] {
            assert_eq!(
                HeadLayout::detect(&[1, 25200, 6], names),
                Ok(HeadLayout::AnchorsObjectness {
                    num_classes: 1,
                    num_anchors: 25200
                })
            );
        }
        assert_eq!(
            HeadLayout::detect(&[1, 25200, 6], Some(80)),
            Ok(HeadLayout::EndToEnd {
                max_detections: 25200
            })
        );
        // Single-class YOLOv8 and dynamic batch.
        assert_eq!(
            HeadLayout::detect(&[4, 5, 8400], Some(1))
                .unwrap()
                .num_classes(),
            Some(1)
        );
    }

    #[test]
    fn detect_errors() {
        let e = HeadLayout::detect(&[84, 8400], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[84, 8400]") && e.contains("3 dimensions"),
            "{e}"
        );
        assert!(e.contains("[B, 4+C, N]") && e.contains("[B, N, 5+C]") && e.contains("[B, K, 6]"));
        let e = HeadLayout::detect(&[1, 3, 10], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[1, 3, 10]"), "{e}");
        assert!(e.contains("[B, 4+C, N]") && e.contains("[B, N, 5+C]") && e.contains("[B, K, 6]"));
        let e = HeadLayout::detect(&[1, 84, 84], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ambiguous"), "{e}");
        let e = HeadLayout::detect(&[1, -1, 8400], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[1, -1, 8400]"), "{e}");
    }

    #[test]
    fn detect_names_mismatch() {
        let e = HeadLayout::detect(&[1, 84, 8400], Some(79)).unwrap_err();
        assert!(matches!(
            e,
            HeadError::ClassMismatch {
                shape_classes: 80,
                names: 79,
                ..
            }
        ));
        let s = e.to_string();
        assert!(
            s.contains("80") && s.contains("79") && s.contains("[1, 84, 8400]"),
            "{s}"
        );
        // Segmentation head: 4 + 80 + 32 rows.
        let s = HeadLayout::detect(&[1, 116, 8400], Some(80))
            .unwrap_err()
            .to_string();
        assert!(s.contains("112") && s.contains("segmentation"), "{s}");
        // Transposed YOLOv8 output would read as YOLOv5 with 79 classes.
        let s = HeadLayout::detect(&[1, 8400, 84], Some(80))
            .unwrap_err()
            .to_string();
        assert!(s.contains("transposed") && s.contains("79"), "{s}");
        let s = HeadLayout::detect(&[1, 25200, 85], Some(3))
            .unwrap_err()
            .to_string();
        assert!(s.contains("80") && s.contains(" 3 "), "{s}");
    }

    #[test]
    fn letterbox_stub_is_nontrivial() {
        let l = lb();
        assert_eq!((l.new_w, l.new_h, l.pad_left, l.pad_top), (480, 640, 80, 0));
    }

    #[test]
    fn decode_anchors() {
        let l = lb();
        let mut t = V8::new(NC, NA);
        // Two frame-space boxes, mapped into input space.
        let frame_boxes = [[100.0, 200.0, 400.0, 900.0], [500.0, 50.0, 700.0, 300.0]];
        let input: Vec<[f32; 4]> = frame_boxes
            .iter()
            .map(|b| {
                let (x1, y1) = to_input(&l, b[0], b[1]);
                let (x2, y2) = to_input(&l, b[2], b[3]);
                [x1, y1, x2, y2]
            })
            .collect();
        t.set(1000, input[0], 0, 0.9);
        t.set(5000, input[1], 2, 0.6);
        // A near-duplicate of box 0, same class: suppressed.
        let mut dup = input[0];
        dup[0] += 2.0;
        t.set(1001, dup, 0, 0.8);
        let out = run(t.layout(), &t.data, &PostParams::default());
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!((out[0].class_id, &*out[0].label), (0, "l0"));
        assert!((out[0].confidence - 0.9).abs() < 1e-6);
        assert_box(&out[0], frame_boxes[0]);
        assert_eq!((out[1].class_id, &*out[1].label), (2, "l2"));
        assert!((out[1].confidence - 0.6).abs() < 1e-6);
        assert_box(&out[1], frame_boxes[1]);
    }

    #[test]
    fn argmax_first_on_ties() {
        let mut t = V8::new(NC, NA);
        t.set(7, [10.0, 10.0, 50.0, 50.0], 5, 0.5);
        t.set(7, [10.0, 10.0, 50.0, 50.0], 3, 0.5);
        let out = run(t.layout(), &t.data, &PostParams::default());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 3);
    }

    #[test]
    fn decode_objectness() {
        let l = lb();
        let nc = 80;
        let na = 25200;
        let mut data = vec![0.0f32; na * (5 + nc)];
        for (i, row) in data.chunks_exact_mut(5 + nc).enumerate() {
            row[4] = 0.01 + (i % 13) as f32 * 0.01; // objectness below 0.25
            row[5 + i % nc] = 0.9;
        }
        let mut put = |a: usize, frame: [f32; 4], obj: f32, class: usize, cls: f32| {
            let (x1, y1) = to_input(&l, frame[0], frame[1]);
            let (x2, y2) = to_input(&l, frame[2], frame[3]);
            let row = &mut data[a * (5 + nc)..(a + 1) * (5 + nc)];
            row[..4].copy_from_slice(&[(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1]);
            row[4] = obj;
            row[5..].fill(0.05);
            row[5 + class] = cls;
        };
        put(100, [10.0, 20.0, 300.0, 400.0], 0.9, 16, 0.8); // 0.72
        put(200, [400.0, 500.0, 800.0, 1000.0], 0.5, 1, 0.9); // 0.45
        put(300, [50.0, 50.0, 60.0, 60.0], 0.8, 7, 0.3); // 0.24: under conf after multiply
        let layout = HeadLayout::detect(&[1, na as i64, 85], Some(80)).unwrap();
        let out = run(layout, &data, &PostParams::default());
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].class_id, 16);
        assert!((out[0].confidence - 0.72).abs() < 1e-6);
        assert_box(&out[0], [10.0, 20.0, 300.0, 400.0]);
        assert_eq!(out[1].class_id, 1);
        assert!((out[1].confidence - 0.45).abs() < 1e-6);
        assert_box(&out[1], [400.0, 500.0, 800.0, 1000.0]);
    }

    fn e2e(rows: &[[f32; 6]], k: usize) -> (HeadLayout, Vec<f32>) {
        let mut data = vec![0.0f32; k * 6];
        for (dst, r) in data.chunks_exact_mut(6).zip(rows) {
            dst.copy_from_slice(r);
        }
        (HeadLayout::EndToEnd { max_detections: k }, data)
    }

    #[test]
    fn decode_end_to_end() {
        let l = lb();
        let (x1, y1) = to_input(&l, 100.0, 100.0);
        let (x2, y2) = to_input(&l, 300.0, 500.0);
        // Overlapping boxes of the same class are kept: no NMS on end-to-end outputs.
        let rows = [
            [x1, y1, x2, y2, 0.5, 2.0],
            [x1, y1, x2, y2, 0.8, 2.0],
            [x1, y1, x2, y2, 0.25, 3.0], // == conf: dropped
            [x1, y1, x2, y2, 0.3, 79.0],
        ];
        let (layout, data) = e2e(&rows, 300);
        let out = run(layout, &data, &PostParams::default());
        let got: Vec<_> = out.iter().map(|d| (d.class_id, d.confidence)).collect();
        assert_eq!(got, vec![(2, 0.8), (2, 0.5), (79, 0.3)]);
        for d in &out {
            assert_box(d, [100.0, 100.0, 300.0, 500.0]);
        }
        let classes = [79];
        let p = PostParams {
            classes: &classes,
            ..Default::default()
        };
        let out = run(layout, &data, &p);
        assert_eq!(out.len(), 1);
        assert_eq!(&*out[0].label, "l79");
        let p = PostParams {
            max_detections: 1,
            ..Default::default()
        };
        assert_eq!(run(layout, &data, &p).len(), 1);
    }

    #[test]
    fn conf_is_strictly_greater() {
        let mut t = V8::new(NC, NA);
        t.set(1, [10.0, 10.0, 50.0, 50.0], 1, 0.25);
        t.set(2, [100.0, 100.0, 150.0, 150.0], 1, 0.250_001);
        let out = run(t.layout(), &t.data, &PostParams::default());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].confidence, 0.250_001);
    }

    /// Two 80x100 boxes overlapping by 60x100: IoU = 6000 / 10000, exactly 0.6f32.
    fn pair() -> ([f32; 4], [f32; 4]) {
        ([100.0, 100.0, 180.0, 200.0], [120.0, 100.0, 200.0, 200.0])
    }

    #[test]
    fn class_aware_vs_agnostic() {
        let (a, b) = pair();
        let mut t = V8::new(NC, NA);
        t.set(10, a, 0, 0.9);
        t.set(20, b, 1, 0.8);
        let p = PostParams {
            iou_threshold: 0.5,
            ..Default::default()
        };
        let out = run(t.layout(), &t.data, &p);
        assert_eq!(out.len(), 2);
        let p = PostParams {
            agnostic: true,
            ..p
        };
        let out = run(t.layout(), &t.data, &p);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 0);
    }

    #[test]
    fn iou_threshold_is_strict() {
        let (a, b) = pair();
        assert_eq!(iou(a, b), 0.6);
        let mut t = V8::new(NC, NA);
        t.set(10, a, 4, 0.9);
        t.set(20, b, 4, 0.8);
        let at = |thr| {
            let p = PostParams {
                iou_threshold: thr,
                ..Default::default()
            };
            run(t.layout(), &t.data, &p).len()
        };
        assert_eq!(at(0.6), 2); // IoU == threshold: kept
        assert_eq!(at(0.59), 1);
    }

    #[test]
    fn iou_basics() {
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]), 0.0);
        assert_eq!(
            iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]),
            50.0 / 150.0
        );
        assert_eq!(iou([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn max_detections_and_order() {
        let mut t = V8::new(NC, NA);
        for i in 0..50 {
            let x = i as f32 * 12.0;
            t.set(
                i * 100,
                [x, 0.0, x + 10.0, 10.0],
                i % 3,
                0.3 + i as f32 * 0.01,
            );
        }
        let p = PostParams {
            max_detections: 10,
            ..Default::default()
        };
        let out = run(t.layout(), &t.data, &p);
        assert_eq!(out.len(), 10);
        assert!((out[0].confidence - 0.79).abs() < 1e-6);
        assert!(out.windows(2).all(|w| w[0].confidence >= w[1].confidence));
        assert_eq!(run(t.layout(), &t.data, &PostParams::default()).len(), 50);
    }

    #[test]
    fn classes_filter() {
        let mut t = V8::new(NC, NA);
        t.set(1, [0.0, 0.0, 10.0, 10.0], 0, 0.9);
        t.set(2, [100.0, 0.0, 110.0, 10.0], 2, 0.8);
        t.set(3, [200.0, 0.0, 210.0, 10.0], 5, 0.7);
        let classes = [2, 5];
        let p = PostParams {
            classes: &classes,
            ..Default::default()
        };
        let ids: Vec<_> = run(t.layout(), &t.data, &p)
            .iter()
            .map(|d| d.class_id)
            .collect();
        assert_eq!(ids, vec![2, 5]);
    }

    /// Boxes in input pixels with their class and score, for the filter tests.
    fn filter_scene() -> V8 {
        let mut t = V8::new(NC, NA);
        t.set(1, [100.0, 100.0, 200.0, 200.0], 0, 0.9); // person, big
        t.set(2, [300.0, 100.0, 310.0, 110.0], 0, 0.4); // person, small
        t.set(3, [400.0, 100.0, 500.0, 300.0], 2, 0.45); // car
        t.set(4, [400.0, 400.0, 420.0, 420.0], 2, 0.2); // car under conf
        t.set(5, [100.0, 400.0, 130.0, 430.0], 5, 0.15); // bus under conf
        t
    }

    fn ids_scores(out: &[Detection]) -> Vec<(u32, f32)> {
        out.iter().map(|d| (d.class_id, d.confidence)).collect()
    }

    #[test]
    fn class_threshold_above_conf_removes_only_that_class() {
        let t = filter_scene();
        let table = crate::filters::threshold_table(&[(0, 0.5)]);
        let p = PostParams {
            class_thresholds: &table,
            ..Default::default()
        };
        assert_eq!(
            ids_scores(&run(t.layout(), &t.data, &p)),
            vec![(0, 0.9), (2, 0.45)]
        );
    }

    #[test]
    fn class_threshold_below_conf_adds_that_class_only() {
        let t = filter_scene();
        // conf 0.25 keeps 0.9, 0.45, 0.4; car's own 0.1 adds its 0.2 box, not the bus's 0.15.
        let table = crate::filters::threshold_table(&[(2, 0.1)]);
        let p = PostParams {
            class_thresholds: &table,
            ..Default::default()
        };
        assert_eq!(
            ids_scores(&run(t.layout(), &t.data, &p)),
            vec![(0, 0.9), (2, 0.45), (0, 0.4), (2, 0.2)]
        );
        // Also through the objectness and end-to-end decoders.
        let rows = [
            [10.0, 10.0, 50.0, 50.0, 0.2, 2.0],
            [60.0, 10.0, 90.0, 50.0, 0.2, 5.0],
            [100.0, 10.0, 150.0, 50.0, 0.6, 0.0],
        ];
        let (layout, data) = e2e(&rows, 10);
        let classes: Vec<_> = run(layout, &data, &p).iter().map(|d| d.class_id).collect();
        assert_eq!(classes, vec![0, 2]);
        let nc = 80;
        let mut data = vec![0.0f32; 10 * (5 + nc)];
        for (i, (obj, class)) in [(0.3, 2), (0.3, 5), (0.9, 0)].into_iter().enumerate() {
            let row = &mut data[i * (5 + nc)..(i + 1) * (5 + nc)];
            row[..5].copy_from_slice(&[100.0 + 50.0 * i as f32, 100.0, 20.0, 20.0, obj]);
            row[5 + class] = 0.7; // obj 0.3 * 0.7 = 0.21: under 0.25
        }
        let layout = HeadLayout::AnchorsObjectness {
            num_classes: nc,
            num_anchors: 10,
        };
        let classes: Vec<_> = run(layout, &data, &p).iter().map(|d| d.class_id).collect();
        assert_eq!(classes, vec![0, 2]);
    }

    #[test]
    fn thresholds_apply_before_nms() {
        // A weak person box overlaps a strong car box; agnostic NMS would drop it, but a class
        // threshold removing the car first (as nvinfer's pre-cluster threshold) lets it live.
        let mut t = V8::new(NC, NA);
        t.set(1, [100.0, 100.0, 200.0, 200.0], 2, 0.6);
        t.set(2, [101.0, 101.0, 201.0, 201.0], 0, 0.5);
        let agnostic = PostParams {
            agnostic: true,
            ..Default::default()
        };
        assert_eq!(
            ids_scores(&run(t.layout(), &t.data, &agnostic)),
            vec![(2, 0.6)]
        );
        let table = crate::filters::threshold_table(&[(2, 0.7)]);
        let p = PostParams {
            class_thresholds: &table,
            ..agnostic
        };
        assert_eq!(ids_scores(&run(t.layout(), &t.data, &p)), vec![(0, 0.5)]);
        // Nor do removed boxes use up max_detections.
        let t = filter_scene();
        let table = crate::filters::threshold_table(&[(0, 0.95)]);
        let p = PostParams {
            class_thresholds: &table,
            max_detections: 1,
            ..Default::default()
        };
        assert_eq!(ids_scores(&run(t.layout(), &t.data, &p)), vec![(2, 0.45)]);
    }

    #[test]
    fn size_limits_in_frame_pixels() {
        let t = filter_scene();
        let all = run(t.layout(), &t.data, &PostParams::default());
        assert_eq!(all.len(), 3);
        // Input boxes are 100, 10 and 100 px wide: 168.75, 16.9 and 168.75 frame pixels.
        let p = PostParams {
            size: SizeLimits {
                min_w: 17,
                ..Default::default()
            },
            ..Default::default()
        };
        let out = run(t.layout(), &t.data, &p);
        assert_eq!(ids_scores(&out), vec![(0, 0.9), (2, 0.45)]);
        let p = PostParams {
            size: SizeLimits {
                max_h: 200,
                ..Default::default()
            },
            ..Default::default()
        };
        let out = run(t.layout(), &t.data, &p);
        assert_eq!(ids_scores(&out), vec![(0, 0.9), (0, 0.4)]);
        for d in &out {
            assert!(d.y2 - d.y1 <= 200.0, "{d:?}");
        }
        // Measured after clipping: a box hanging off the frame's left edge is only its visible
        // part wide (input x 0..90 is frame x -135..16.9: 16.9 pixels inside the frame).
        let mut t = V8::new(NC, NA);
        t.set(1, [0.0, 100.0, 90.0, 200.0], 0, 0.9);
        let p = PostParams {
            size: SizeLimits {
                min_w: 20,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(run(t.layout(), &t.data, &p).is_empty());
    }

    #[test]
    fn roi_boxes_come_back_in_frame_pixels() {
        // A 400x300 region at (1000, 500) of a 1920x1080 frame, letterboxed into 640x640.
        let rect = crate::preprocess::Rect {
            x: 1000,
            y: 500,
            w: 400,
            h: 300,
        };
        let l = Letterbox::of_rect(1920, 1080, rect, 640, 640);
        let mut t = V8::new(NC, NA);
        let (x1, y1) = l.to_input(1100.0, 550.0);
        let (x2, y2) = l.to_input(1200.0, 700.0);
        t.set(1, [x1, y1, x2, y2], 0, 0.9);
        // One box crossing the region's right edge: clipped to the region, not the frame.
        let (x1, y1) = l.to_input(1300.0, 600.0);
        t.set(2, [x1, y1, x2 + 400.0, y2], 2, 0.8); // frame x2 1450
        let mut out = vec![];
        Postprocessor::new().run(
            &t.layout(),
            &t.data,
            &PostParams::default(),
            &l,
            &labels(NC),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_box(&out[0], [1100.0, 550.0, 1200.0, 700.0]);
        assert_box(&out[1], [1300.0, 600.0, 1400.0, 700.0]);
    }

    #[test]
    fn clipping_and_letterbox_edge() {
        let l = lb();
        let mut t = V8::new(NC, NA);
        // Spills over the left padding and the bottom of the 640 input.
        t.set(1, [40.0, 600.0, 200.0, 660.0], 0, 0.9);
        // Exactly touching the image edge (pad_left = 80, right edge at 560).
        t.set(2, [80.0, 0.0, 560.0, 640.0], 1, 0.8);
        let out = run(t.layout(), &t.data, &PostParams::default());
        assert_eq!(out.len(), 2);
        let x2 = (200.0 - 80.0) / l.scale;
        let y1 = 600.0 / l.scale;
        assert_box(&out[0], [0.0, y1, x2, 1080.0]);
        assert_box(&out[1], [0.0, 0.0, 810.0, 1080.0]);
        assert!(out.iter().all(|d| d.x2 <= 810.0 && d.y2 <= 1080.0));
    }

    #[test]
    fn label_fallback() {
        let mut t = V8::new(NC, NA);
        t.set(1, [0.0, 0.0, 10.0, 10.0], 1, 0.9);
        t.set(2, [100.0, 0.0, 110.0, 10.0], 7, 0.8);
        let mut pp = Postprocessor::new();
        let mut out = vec![];
        let few = labels(2);
        for _ in 0..2 {
            pp.run(
                &t.layout(),
                &t.data,
                &PostParams::default(),
                &lb(),
                &few,
                &mut out,
            );
            assert_eq!(&*out[0].label, "l1");
            assert!(Arc::ptr_eq(&out[0].label, &few[1]));
            assert_eq!(&*out[1].label, "class7");
        }
        // Cached: the same Arc on the next frame.
        let first = out[1].label.clone();
        pp.run(
            &t.layout(),
            &t.data,
            &PostParams::default(),
            &lb(),
            &few,
            &mut out,
        );
        assert!(Arc::ptr_eq(&first, &out[1].label));
        // Large class ids from an end-to-end head aren't cached but still labelled.
        let (layout, data) = e2e(&[[0.0, 0.0, 10.0, 10.0, 0.9, 5000.0]], 300);
        pp.run(
            &layout,
            &data,
            &PostParams::default(),
            &lb(),
            &few,
            &mut out,
        );
        assert_eq!(&*out[0].label, "class5000");
    }

    /// Ultralytics' algorithm written plainly (as make_reference.py): class offsets of 7680
    /// (in f64, as numpy does there), then torchvision-style greedy NMS, then max_det.
    fn reference(t: &V8, p: &PostParams) -> Vec<(u32, f32)> {
        let (nc, na) = (t.nc, t.na);
        let mut c: Vec<(f32, u32, [f64; 4])> = (0..na)
            .filter_map(|a| {
                let s: Vec<f32> = (0..nc).map(|k| t.data[(4 + k) * na + a]).collect();
                let m = s.iter().copied().fold(f32::MIN, f32::max);
                let cls = s.iter().position(|&v| v == m).unwrap() as u32;
                let b = xywh2xyxy(
                    t.data[a],
                    t.data[na + a],
                    t.data[2 * na + a],
                    t.data[3 * na + a],
                );
                let off = if p.agnostic { 0.0 } else { cls as f64 * 7680.0 };
                (m > p.conf_threshold).then(|| (m, cls, b.map(|v| v as f64 + off)))
            })
            .collect();
        c.sort_by(|x, y| y.0.total_cmp(&x.0));
        let mut keep: Vec<usize> = vec![];
        for i in 0..c.len() {
            let b = c[i].2;
            let ok = keep.iter().all(|&k| {
                let a = c[k].2;
                let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
                let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
                let inter = iw * ih;
                let u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
                inter / u <= p.iou_threshold as f64
            });
            if ok {
                keep.push(i);
            }
        }
        keep.iter()
            .take(p.max_detections)
            .map(|&k| (c[k].1, c[k].0))
            .collect()
    }

    #[test]
    fn matches_reference_nms_on_random_clusters() {
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        let (nc, na) = (5, 2000);
        let mut t = V8::new(nc, na);
        for o in 0..40 {
            let (cx, cy, w, h) = (
                rnd() * 600.0,
                rnd() * 600.0,
                20.0 + rnd() * 80.0,
                20.0 + rnd() * 80.0,
            );
            for k in 0..25 {
                let a = o * 50 + k;
                let (x, y) = (cx + (rnd() - 0.5) * 30.0, cy + (rnd() - 0.5) * 30.0);
                let (bw, bh) = (w * (0.8 + rnd() * 0.4), h * (0.8 + rnd() * 0.4));
                let class = (rnd() * nc as f32) as usize % nc;
                t.set(
                    a,
                    [x - bw / 2.0, y - bh / 2.0, x + bw / 2.0, y + bh / 2.0],
                    class,
                    0.2 + rnd() * 0.75,
                );
            }
        }
        for agnostic in [false, true] {
            for (iou, max_det) in [(0.7, 300), (0.45, 300), (0.5, 17)] {
                let p = PostParams {
                    iou_threshold: iou,
                    agnostic,
                    max_detections: max_det,
                    ..Default::default()
                };
                let mut pp = Postprocessor::new();
                let mut out = vec![];
                pp.run(&t.layout(), &t.data, &p, &lb(), &[], &mut out);
                let got: Vec<(u32, f32)> = out.iter().map(|d| (d.class_id, d.confidence)).collect();
                let want = reference(&t, &p);
                assert!(want.len() > 10);
                assert_eq!(got, want, "agnostic {agnostic} iou {iou} max_det {max_det}");
            }
        }
    }

    #[test]
    fn short_data_yields_nothing() {
        let t = V8::new(NC, NA);
        let mut out = vec![];
        Postprocessor::new().run(
            &t.layout(),
            &t.data[..100],
            &PostParams::default(),
            &lb(),
            &[],
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn reuse_clears_output() {
        let mut t = V8::new(NC, NA);
        t.set(1, [0.0, 0.0, 10.0, 10.0], 1, 0.9);
        let mut pp = Postprocessor::new();
        let mut out = vec![];
        pp.run(
            &t.layout(),
            &t.data,
            &PostParams::default(),
            &lb(),
            &[],
            &mut out,
        );
        pp.run(
            &t.layout(),
            &t.data,
            &PostParams::default(),
            &lb(),
            &[],
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn metadata_resolves_small_input_heads() {
        let hints = |side: u32| HeadHints {
            input: Some((side, side)),
            stride: Some(32),
        };
        assert_eq!(hints(640).anchors(), Some(8400));
        assert_eq!(hints(32).anchors(), Some(21));
        // yolov8n at 32x32 was taken for YOLOv5 and at 64x64 called ambiguous.
        assert!(HeadLayout::detect(&[1, 84, 21], Some(80)).is_err());
        assert!(HeadLayout::detect(&[1, 84, 84], Some(80)).is_err());
        let v8 = |na| HeadLayout::Anchors {
            num_classes: 80,
            num_anchors: na,
        };
        assert_eq!(
            HeadLayout::detect_with(&[1, 84, 21], Some(80), &hints(32)),
            Ok(v8(21))
        );
        assert_eq!(
            HeadLayout::detect_with(&[1, 84, 84], Some(80), &hints(64)),
            Ok(v8(84))
        );
        assert_eq!(
            HeadLayout::detect_with(&[1, 84, 8400], Some(80), &hints(640)),
            Ok(v8(8400))
        );
        // YOLOv5 at 64x64: 3 anchors per cell.
        assert_eq!(
            HeadLayout::detect_with(&[1, 252, 85], Some(80), &hints(64)),
            Ok(HeadLayout::AnchorsObjectness {
                num_classes: 80,
                num_anchors: 252
            })
        );
        // End-to-end heads and shapes the hints do not explain fall back to the shape rules.
        assert_eq!(
            HeadLayout::detect_with(&[1, 300, 6], Some(80), &hints(640)),
            Ok(HeadLayout::EndToEnd {
                max_detections: 300
            })
        );
        assert!(HeadLayout::detect_with(&[1, 84, 84], Some(80), &HeadHints::default()).is_err());
        // Hints that cannot be right are ignored.
        let odd = HeadHints {
            input: Some((64, 64)),
            stride: Some(33),
        };
        assert_eq!(odd.anchors(), None);
    }

    #[test]
    fn non_finite_outputs_give_no_detections() {
        let p = PostParams::default();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // Every value non-finite: used to be full-frame boxes of confidence 1.0.
            let t = V8::new(3, 50);
            let all_bad = vec![bad; t.data.len()];
            assert!(run(t.layout(), &all_bad, &p).is_empty(), "{bad}");
            // A good box with a non-finite coordinate is dropped; the good one stays.
            let mut t = V8::new(3, 50);
            t.set(0, [10.0, 10.0, 50.0, 50.0], 1, 0.9);
            t.set(1, [100.0, 100.0, 150.0, 150.0], 2, 0.8);
            t.data[1] = bad;
            let dets = run(t.layout(), &t.data, &p);
            assert_eq!(dets.len(), 1, "{bad}: {dets:?}");
            assert_eq!(dets[0].class_id, 1);
            // A non-finite score is dropped whatever the box.
            let mut t = V8::new(3, 50);
            t.set(0, [10.0, 10.0, 50.0, 50.0], 1, 0.9);
            t.data[(4 + 1) * 50] = bad;
            assert!(run(t.layout(), &t.data, &p).is_empty(), "{bad}");
            // End-to-end rows.
            let (l, d) = e2e(
                &[
                    [1.0, 1.0, 5.0, bad, 0.9, 0.0],
                    [1.0, 1.0, 5.0, 5.0, bad, 0.0],
                ],
                2,
            );
            assert!(run(l, &d, &p).is_empty(), "{bad}");
        }
    }

    #[test]
    fn layouts_without_classes_give_nothing() {
        // Found by tests/fuzz.rs: these read past the end of each row, or chunked by zero.
        let p = PostParams::default();
        let one = |layout| run(layout, &[0.5; 64], &p);
        assert!(
            one(HeadLayout::Anchors {
                num_classes: 1,
                num_anchors: 0
            })
            .is_empty()
        );
        assert!(
            one(HeadLayout::AnchorsObjectness {
                num_classes: 0,
                num_anchors: 1
            })
            .is_empty()
        );
        assert!(
            one(HeadLayout::Anchors {
                num_classes: 0,
                num_anchors: 4
            })
            .is_empty()
        );
    }
}
