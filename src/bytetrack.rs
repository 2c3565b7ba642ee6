// SPDX-License-Identifier: MPL-2.0
//! ByteTrack multi-object tracking (Zhang et al., "ByteTrack: Multi-Object Tracking by
//! Associating Every Detection Box", ECCV 2022) as Ultralytics implements it in
//! `ultralytics/trackers/byte_tracker.py`, so that the ids match `model.track(...)` given the
//! same detections (`tests/yolotrack.rs` checks this against tracks Ultralytics produced).
//!
//! Per frame: detections at or above `track_high_thresh` are matched to the Kalman-predicted
//! tracks (tracked and lost) by IoU (optionally weighted by the detection score); tracked tracks
//! left over get a second chance with the low-confidence detections (between `track_low_thresh`
//! and `track_high_thresh`); unconfirmed tracks (seen once) get the remaining high detections;
//! what is still unmatched at or above `new_track_thresh` starts a new, unconfirmed track. A
//! track is confirmed when it is matched again on the next frame (or starts on the first frame)
//! and is lost after `max_time_lost` frames without a match.
//!
//! The reproduction is literal where it changes ids: single-precision IoU as numpy computes it,
//! an optimal assignment with the same cost limit as `lap.lapjv(extend_cost=True, cost_limit)`,
//! and Ultralytics' list bookkeeping (including that a lost track removed on frame n is still
//! matchable on frame n + 1). No GStreamer imports: the element in `yolotrack` is glue.

use std::collections::{HashMap, VecDeque};

use crate::detection::Detection;

/// Tracker parameters; `Default` is Ultralytics' `bytetrack.yaml` with its 30 fps frame rate.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this start the first association.
    pub track_high_thresh: f32,
    /// Detections above this (and below `track_high_thresh`) join the second association.
    pub track_low_thresh: f32,
    /// Unmatched detections at or above this start a new track.
    pub new_track_thresh: f32,
    /// Frames a lost track is kept at 30 fps.
    pub track_buffer: u32,
    /// Cost limit of the first association (1 - IoU, or 1 - IoU * score with `fuse_score`).
    pub match_thresh: f32,
    /// Weight the IoU by the detection score in the first and unconfirmed associations.
    pub fuse_score: bool,
    /// Scales `track_buffer`; Ultralytics always uses 30.
    pub frame_rate: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            track_high_thresh: 0.25,
            track_low_thresh: 0.1,
            new_track_thresh: 0.25,
            track_buffer: 30,
            match_thresh: 0.8,
            fuse_score: true,
            frame_rate: 30.0,
        }
    }
}

impl TrackerConfig {
    /// Frames without a match after which a lost track is removed: `int(frame_rate / 30 *
    /// track_buffer)` as in ByteTrack.
    pub fn max_time_lost(&self) -> u64 {
        let v = self.frame_rate / 30.0 * f64::from(self.track_buffer);
        if v.is_finite() && v > 0.0 {
            v as u64
        } else {
            0
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kalman filter: Ultralytics' KalmanFilterXYAH, state (cx, cy, aspect, h) and their velocities.

type Vec8 = [f64; 8];
type Mat8 = [[f64; 8]; 8];

const STD_WEIGHT_POSITION: f64 = 1.0 / 20.0;
const STD_WEIGHT_VELOCITY: f64 = 1.0 / 160.0;

fn kf_initiate(z: [f64; 4]) -> (Vec8, Mat8) {
    let h = z[3];
    let (p, v) = (STD_WEIGHT_POSITION, STD_WEIGHT_VELOCITY);
    let std = [
        2.0 * p * h,
        2.0 * p * h,
        0.01,
        2.0 * p * h,
        10.0 * v * h,
        10.0 * v * h,
        1e-5,
        10.0 * v * h,
    ];
    let mut mean = [0.0; 8];
    mean[..4].copy_from_slice(&z);
    let mut cov = [[0.0; 8]; 8];
    for i in 0..8 {
        cov[i][i] = std[i] * std[i];
    }
    (mean, cov)
}

/// Constant-velocity step: x += v, P = F P F^T + Q, Q scaled by the current height.
fn kf_predict(mean: &mut Vec8, cov: &mut Mat8) {
    let h = mean[3];
    let (p, v) = (STD_WEIGHT_POSITION * h, STD_WEIGHT_VELOCITY * h);
    let std = [p, p, 0.01, p, v, v, 1e-5, v];
    for i in 0..4 {
        mean[i] += mean[i + 4];
    }
    // F P: row i (< 4) gains row i + 4; then (F P) F^T: column j (< 4) gains column j + 4.
    let mut fp = *cov;
    for i in 0..4 {
        for j in 0..8 {
            fp[i][j] += cov[i + 4][j];
        }
    }
    let mut out = fp;
    for row in &mut out {
        for j in 0..4 {
            row[j] += row[j + 4];
        }
    }
    for i in 0..8 {
        out[i][i] += std[i] * std[i];
    }
    *cov = out;
}

/// Measurement update with z = (cx, cy, aspect, h). Returns false (state untouched) if the
/// innovation covariance is singular, which only a zero-height track could cause.
fn kf_update(mean: &mut Vec8, cov: &mut Mat8, z: [f64; 4]) -> bool {
    let h = mean[3];
    let p = STD_WEIGHT_POSITION * h;
    let r = [p * p, p * p, 0.1 * 0.1, p * p];
    // S = H P H^T + R, the top-left 4x4 block plus measurement noise.
    let mut s = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            s[i][j] = cov[i][j];
        }
        s[i][i] += r[i];
    }
    // K^T = S^-1 (P H^T)^T = S^-1 P[:4, :] (P symmetric).
    let mut rhs = [[0.0; 8]; 4];
    for i in 0..4 {
        for j in 0..8 {
            rhs[i][j] = cov[j][i];
        }
    }
    let Some(kt) = solve4(s, rhs) else {
        return false;
    };
    let innovation: [f64; 4] = std::array::from_fn(|i| z[i] - mean[i]);
    for j in 0..8 {
        mean[j] += (0..4).map(|i| innovation[i] * kt[i][j]).sum::<f64>();
    }
    // P -= K S K^T.
    let mut sk = [[0.0; 8]; 4]; // S K^T
    for i in 0..4 {
        for j in 0..8 {
            sk[i][j] = (0..4).map(|m| s[i][m] * kt[m][j]).sum();
        }
    }
    for a in 0..8 {
        for b in 0..8 {
            cov[a][b] -= (0..4).map(|i| kt[i][a] * sk[i][b]).sum::<f64>();
        }
    }
    true
}

/// Solves S X = B for a 4x4 S by Gaussian elimination with partial pivoting.
// Index loops read like the textbook algorithm; iterator chains over two rows at once do not.
#[allow(clippy::needless_range_loop)]
fn solve4(mut s: [[f64; 4]; 4], mut b: [[f64; 8]; 4]) -> Option<[[f64; 8]; 4]> {
    for col in 0..4 {
        let pivot = (col..4).max_by(|&x, &y| s[x][col].abs().total_cmp(&s[y][col].abs()))?;
        let pv = s[pivot][col].abs();
        if pv.is_nan() || pv <= 1e-300 {
            return None;
        }
        s.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..4 {
            let f = s[row][col] / s[col][col];
            for k in col..4 {
                s[row][k] -= f * s[col][k];
            }
            for k in 0..8 {
                b[row][k] -= f * b[col][k];
            }
        }
    }
    let mut x = [[0.0; 8]; 4];
    for row in (0..4).rev() {
        for k in 0..8 {
            let acc: f64 = (row + 1..4).map(|m| s[row][m] * x[m][k]).sum();
            x[row][k] = (b[row][k] - acc) / s[row][row];
        }
    }
    Some(x)
}

// ---------------------------------------------------------------------------------------------
// Association.

/// IoU as Ultralytics' `bbox_ioa(iou=True)` computes it in float32 (eps 1e-7).
fn iou_f32(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = (b[2] - b[0]) * (b[3] - b[1]) + (a[2] - a[0]) * (a[3] - a[1]) - inter;
    inter / (area + 1e-7)
}

/// Optimal one-to-one assignment of rows to columns where leaving a row and a column unmatched
/// costs `limit` (what `lap.lapjv(cost, extend_cost=True, cost_limit=limit)` solves: the matrix
/// is extended with `limit / 2` for every unmatched row or column). Returns matched (row, col)
/// pairs in row order and the unmatched rows and columns, ascending.
fn linear_assignment(
    cost: &[f64],
    rows: usize,
    cols: usize,
    limit: f64,
) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    if rows == 0 || cols == 0 {
        return (Vec::new(), (0..rows).collect(), (0..cols).collect());
    }
    let n = rows + cols;
    let at = |i: usize, j: usize| -> f64 {
        match (i < rows, j < cols) {
            (true, true) => {
                let c = cost[i * cols + j];
                // NaN would break the optimality conditions; treat it as "never match".
                if c.is_nan() { f64::INFINITY } else { c }
            }
            (false, false) => 0.0,
            _ => limit / 2.0,
        }
    };
    let assignment = hungarian(n, at);
    let mut matches = Vec::new();
    let mut row_matched = vec![false; rows];
    let mut col_matched = vec![false; cols];
    for (i, &j) in assignment.iter().enumerate().take(rows) {
        if j < cols && at(i, j).is_finite() {
            matches.push((i, j));
            row_matched[i] = true;
            col_matched[j] = true;
        }
    }
    let unmatched = |m: &[bool]| m.iter().enumerate().filter(|e| !e.1).map(|e| e.0).collect();
    (matches, unmatched(&row_matched), unmatched(&col_matched))
}

/// Minimum-cost perfect assignment of an n x n matrix (Hungarian method with potentials,
/// O(n^3)); returns the column of each row. Infinite costs are allowed as long as a finite
/// assignment exists, which the `limit / 2` extension guarantees.
fn hungarian(n: usize, cost: impl Fn(usize, usize) -> f64) -> Vec<usize> {
    // 1-based arrays with a virtual column 0, after the classic e-maxx formulation.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut p = vec![0usize; n + 1]; // p[j]: row matched to column j
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if used[j] {
                    continue;
                }
                let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            if j1 == 0 {
                // Only infinite costs left: cannot happen with the extension; stop safely.
                break;
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut row_to_col = vec![usize::MAX; n];
    for j in 1..=n {
        if p[j] > 0 {
            row_to_col[p[j] - 1] = j - 1;
        }
    }
    row_to_col
}

// ---------------------------------------------------------------------------------------------
// Tracks.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackState {
    Tracked,
    Lost,
    Removed,
}

/// A detection prepared for association: Ultralytics' `STrack` before activation.
#[derive(Debug, Clone)]
struct Candidate {
    /// (left, top, w, h) in float32, computed like Ultralytics from (cx, cy, w, h).
    tlwh: [f32; 4],
    score: f32,
    /// Index in the frame's detection list.
    idx: usize,
}

impl Candidate {
    fn new(d: &Detection, idx: usize) -> Self {
        // Boxes.xywh then xywh2ltwh, in float32 like the torch/numpy originals.
        let (cx, cy) = ((d.x1 + d.x2) / 2.0, (d.y1 + d.y2) / 2.0);
        let (w, h) = (d.x2 - d.x1, d.y2 - d.y1);
        Candidate {
            tlwh: [cx - w / 2.0, cy - h / 2.0, w, h],
            score: d.confidence,
            idx,
        }
    }

    fn xyxy(&self) -> [f32; 4] {
        let [x, y, w, h] = self.tlwh;
        [x, y, x + w, y + h]
    }

    fn xyah(&self) -> [f64; 4] {
        let [x, y, w, h] = self.tlwh;
        [x + w / 2.0, y + h / 2.0, w / h, h].map(f64::from)
    }
}

#[derive(Debug, Clone)]
struct Track {
    state: TrackState,
    /// Confirmed: matched on two consecutive frames (or started on the first frame).
    is_activated: bool,
    mean: Vec8,
    cov: Mat8,
    /// Detection index this track was matched to on `frame_id`.
    idx: usize,
    frame_id: u64,
    start_frame: u64,
}

impl Track {
    fn xyxy(&self) -> [f32; 4] {
        let w = self.mean[2] * self.mean[3];
        let h = self.mean[3];
        let (x, y) = (self.mean[0] - w / 2.0, self.mean[1] - h / 2.0);
        [x as f32, y as f32, (x + w) as f32, (y + h) as f32]
    }

    /// `STrack.update` and `re_activate` (without a new id): both fold the detection in and
    /// mark the track tracked and confirmed.
    fn update(&mut self, det: &Candidate, frame_id: u64) {
        kf_update(&mut self.mean, &mut self.cov, det.xyah());
        self.state = TrackState::Tracked;
        self.is_activated = true;
        self.frame_id = frame_id;
        self.idx = det.idx;
    }
}

/// Ultralytics keeps the last 1000 removed tracks to subtract them from the lost list.
const REMOVED_BUFFER: usize = 1000;

/// ByteTrack state for one stream.
#[derive(Debug, Clone)]
pub struct ByteTracker {
    config: TrackerConfig,
    tracks: HashMap<u64, Track>,
    /// Ids in Ultralytics' `tracked_stracks` order (confirmed and unconfirmed).
    tracked: Vec<u64>,
    lost: Vec<u64>,
    removed: VecDeque<u64>,
    frame_id: u64,
    next_id: u64,
}

impl ByteTracker {
    pub fn new(config: TrackerConfig) -> Self {
        ByteTracker {
            config,
            tracks: HashMap::new(),
            tracked: Vec::new(),
            lost: Vec::new(),
            removed: VecDeque::new(),
            frame_id: 0,
            next_id: 1,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// New thresholds apply from the next frame; tracks are kept.
    pub fn set_config(&mut self, config: TrackerConfig) {
        self.config = config;
    }

    /// Forgets all tracks (after a seek or flush). Ids keep counting up, so an id is never
    /// reused for a different object within one tracker's lifetime.
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.tracked.clear();
        self.lost.clear();
        self.removed.clear();
        self.frame_id = 0;
    }

    /// Number of frames seen since creation or the last reset.
    pub fn frame_count(&self) -> u64 {
        self.frame_id
    }

    /// Tracks one frame. Returns, for each detection, the id of the confirmed track it belongs
    /// to, or `None` for detections Ultralytics' track mode would not output (below the
    /// thresholds, or the first sighting of a new object after the first frame).
    pub fn update(&mut self, dets: &[Detection]) -> Vec<Option<u64>> {
        self.frame_id += 1;
        let frame_id = self.frame_id;
        let cfg = self.config.clone();

        // Split into high and low confidence; boxes without area (or not finite) cannot seed
        // a Kalman filter (its state divides by the height).
        let mut high = Vec::new();
        let mut low = Vec::new();
        for (i, d) in dets.iter().enumerate() {
            let c = Candidate::new(d, i);
            let [x, y, w, h] = c.tlwh;
            if !(w > 0.0
                && h > 0.0
                && x.is_finite()
                && y.is_finite()
                && w.is_finite()
                && h.is_finite())
            {
                continue;
            }
            if d.confidence >= cfg.track_high_thresh {
                high.push(c);
            } else if d.confidence > cfg.track_low_thresh {
                low.push(c);
            }
        }

        let mut activated: Vec<u64> = Vec::new();
        let mut refind: Vec<u64> = Vec::new();
        let mut lost_now: Vec<u64> = Vec::new();
        let mut removed_now: Vec<u64> = Vec::new();

        let (unconfirmed, confirmed): (Vec<u64>, Vec<u64>) = self
            .tracked
            .iter()
            .partition(|id| self.tracks.get(id).is_some_and(|t| !t.is_activated));
        let pool = joint(&confirmed, &self.lost);
        for id in &pool {
            if let Some(t) = self.tracks.get_mut(id) {
                if t.state != TrackState::Tracked {
                    // Lost tracks keep their position but stop growing or shrinking.
                    t.mean[7] = 0.0;
                }
                kf_predict(&mut t.mean, &mut t.cov);
            }
        }

        // First association: all predicted tracks with the high detections.
        let cost = self.costs(&pool, high.iter(), cfg.fuse_score);
        let (matches, u_track, u_det) =
            linear_assignment(&cost, pool.len(), high.len(), f64::from(cfg.match_thresh));
        for (it, id) in matches {
            self.apply_match(pool[it], &high[id], &mut activated, &mut refind);
        }

        // Second association: tracked (not lost) leftovers with the low detections.
        let r_tracked: Vec<u64> = u_track
            .iter()
            .map(|&i| pool[i])
            .filter(|id| self.state(*id) == Some(TrackState::Tracked))
            .collect();
        let u_track2 = if !r_tracked.is_empty() && !low.is_empty() {
            let cost = self.costs(&r_tracked, low.iter(), false);
            let (matches, u_track2, _) = linear_assignment(&cost, r_tracked.len(), low.len(), 0.5);
            for (it, id) in matches {
                self.apply_match(r_tracked[it], &low[id], &mut activated, &mut refind);
            }
            u_track2
        } else {
            (0..r_tracked.len()).collect()
        };
        for it in u_track2 {
            if let Some(t) = self.tracks.get_mut(&r_tracked[it]) {
                t.state = TrackState::Lost;
                lost_now.push(r_tracked[it]);
            }
        }

        // Unconfirmed tracks with the high detections left over; unmatched ones are dropped.
        let remaining: Vec<&Candidate> = u_det.iter().map(|&i| &high[i]).collect();
        let u_new = if unconfirmed.is_empty() {
            (0..remaining.len()).collect()
        } else {
            let cost = self.costs(&unconfirmed, remaining.iter().copied(), cfg.fuse_score);
            let (matches, u_unconf, u_new) =
                linear_assignment(&cost, unconfirmed.len(), remaining.len(), 0.7);
            for (it, id) in matches {
                if let Some(t) = self.tracks.get_mut(&unconfirmed[it]) {
                    t.update(remaining[id], frame_id);
                    activated.push(unconfirmed[it]);
                }
            }
            for it in u_unconf {
                if let Some(t) = self.tracks.get_mut(&unconfirmed[it]) {
                    t.state = TrackState::Removed;
                    removed_now.push(unconfirmed[it]);
                }
            }
            u_new
        };

        // New tracks, unconfirmed unless this is the first frame.
        for i in u_new {
            let c = remaining[i];
            if c.score < cfg.new_track_thresh {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let (mean, cov) = kf_initiate(c.xyah());
            self.tracks.insert(
                id,
                Track {
                    state: TrackState::Tracked,
                    is_activated: frame_id == 1,
                    mean,
                    cov,
                    idx: c.idx,
                    frame_id,
                    start_frame: frame_id,
                },
            );
            activated.push(id);
        }

        // Lost too long: removed. (Ultralytics only subtracts them from the lost list on the
        // next frame; kept as is so ids stay identical.)
        let max_lost = cfg.max_time_lost();
        for id in &self.lost {
            if let Some(t) = self.tracks.get_mut(id)
                && frame_id.saturating_sub(t.frame_id) > max_lost
            {
                t.state = TrackState::Removed;
                removed_now.push(*id);
            }
        }

        self.merge(activated, refind, lost_now, removed_now);

        let mut out = vec![None; dets.len()];
        for id in &self.tracked {
            if let Some(t) = self.tracks.get(id)
                && t.is_activated
                && let Some(slot) = out.get_mut(t.idx)
            {
                *slot = Some(*id);
            }
        }
        out
    }

    fn state(&self, id: u64) -> Option<TrackState> {
        self.tracks.get(&id).map(|t| t.state)
    }

    fn apply_match(
        &mut self,
        id: u64,
        det: &Candidate,
        activated: &mut Vec<u64>,
        refind: &mut Vec<u64>,
    ) {
        let frame_id = self.frame_id;
        if let Some(t) = self.tracks.get_mut(&id) {
            let was_tracked = t.state == TrackState::Tracked;
            t.update(det, frame_id);
            if was_tracked {
                activated.push(id);
            } else {
                refind.push(id);
            }
        }
    }

    /// Row-major (track, detection) costs: 1 - IoU, or 1 - IoU * score when fusing.
    fn costs<'a>(
        &self,
        tracks: &[u64],
        dets: impl Iterator<Item = &'a Candidate> + Clone,
        fuse: bool,
    ) -> Vec<f64> {
        let mut cost = Vec::new();
        for id in tracks {
            let tb = self.tracks.get(id).map(Track::xyxy);
            for d in dets.clone() {
                // A missing track cannot happen (ids come from the lists the map backs).
                let dist = tb.map_or(1.0, |tb| 1.0 - iou_f32(tb, d.xyxy()));
                let dist = if fuse {
                    1.0 - (1.0 - dist) * d.score
                } else {
                    dist
                };
                cost.push(f64::from(dist));
            }
        }
        cost
    }

    /// Ultralytics' `merge_track_pools`, keeping its order of operations.
    fn merge(
        &mut self,
        activated: Vec<u64>,
        refind: Vec<u64>,
        lost_now: Vec<u64>,
        removed_now: Vec<u64>,
    ) {
        let tracked: Vec<u64> = self
            .tracked
            .iter()
            .copied()
            .filter(|id| self.state(*id) == Some(TrackState::Tracked))
            .collect();
        let tracked = joint(&joint(&tracked, &activated), &refind);
        let mut lost = sub(&self.lost, &tracked);
        lost.extend(lost_now);
        // The removed list from before this frame: see the note on stale lost tracks.
        let removed: Vec<u64> = self.removed.iter().copied().collect();
        let lost = sub(&lost, &removed);
        let (tracked, lost) = self.remove_duplicates(tracked, lost);
        self.tracked = tracked;
        self.lost = lost;
        self.removed.extend(removed_now);
        while self.removed.len() > REMOVED_BUFFER {
            self.removed.pop_front();
        }
        // Tracks in neither list can never come back: free them.
        let (tracked, lost) = (&self.tracked, &self.lost);
        self.tracks
            .retain(|id, _| tracked.contains(id) || lost.contains(id));
    }

    /// Where a tracked and a lost track overlap by IoU > 0.85, the younger one goes.
    fn remove_duplicates(&self, a: Vec<u64>, b: Vec<u64>) -> (Vec<u64>, Vec<u64>) {
        let mut drop_a = vec![false; a.len()];
        let mut drop_b = vec![false; b.len()];
        for (p, ida) in a.iter().enumerate() {
            let Some(ta) = self.tracks.get(ida) else {
                continue;
            };
            for (q, idb) in b.iter().enumerate() {
                let Some(tb) = self.tracks.get(idb) else {
                    continue;
                };
                if 1.0 - iou_f32(ta.xyxy(), tb.xyxy()) < 0.15 {
                    let age_a = ta.frame_id.saturating_sub(ta.start_frame);
                    let age_b = tb.frame_id.saturating_sub(tb.start_frame);
                    if age_a > age_b {
                        drop_b[q] = true;
                    } else {
                        drop_a[p] = true;
                    }
                }
            }
        }
        let keep = |v: Vec<u64>, d: &[bool]| {
            v.into_iter()
                .zip(d)
                .filter(|(_, d)| !**d)
                .map(|(id, _)| id)
                .collect()
        };
        (keep(a, &drop_a), keep(b, &drop_b))
    }
}

impl Default for ByteTracker {
    fn default() -> Self {
        Self::new(TrackerConfig::default())
    }
}

/// `a` followed by the ids of `b` not in `a`.
fn joint(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|id| !a.contains(id)));
    out
}

/// `a` without the ids in `b`.
fn sub(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().copied().filter(|id| !b.contains(id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn det(conf: f32, b: [f32; 4]) -> Detection {
        Detection {
            class_id: 0,
            label: Arc::from("person"),
            confidence: conf,
            x1: b[0],
            y1: b[1],
            x2: b[2],
            y2: b[3],
            track_id: None,
        }
    }

    #[test]
    fn defaults_are_bytetrack_yaml() {
        let c = TrackerConfig::default();
        assert_eq!(
            (c.track_high_thresh, c.track_low_thresh, c.new_track_thresh),
            (0.25, 0.1, 0.25)
        );
        assert_eq!(
            (c.track_buffer, c.match_thresh, c.fuse_score),
            (30, 0.8, true)
        );
        assert_eq!(c.max_time_lost(), 30);
        let c60 = TrackerConfig {
            frame_rate: 60.0,
            ..c
        };
        assert_eq!(c60.max_time_lost(), 60);
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn kalman_follows_constant_velocity() {
        // A box moving 5 px/frame right: after some updates the prediction leads the box.
        let (mut m, mut p) = kf_initiate([100.0, 100.0, 0.5, 80.0]);
        for k in 1..20 {
            kf_predict(&mut m, &mut p);
            assert!(kf_update(
                &mut m,
                &mut p,
                [100.0 + 5.0 * k as f64, 100.0, 0.5, 80.0]
            ));
        }
        assert!((m[4] - 5.0).abs() < 0.5, "x velocity {}", m[4]);
        kf_predict(&mut m, &mut p);
        assert!((m[0] - 200.0).abs() < 2.0, "predicted x {}", m[0]);
        // The covariance stays symmetric positive on the diagonal.
        for i in 0..8 {
            assert!(p[i][i] > 0.0);
            for j in 0..8 {
                assert!((p[i][j] - p[j][i]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn kalman_matches_numpy_reference() {
        // KalmanFilterXYAH: initiate([10, 20, 0.5, 40]), predict, update([12, 21, 0.5, 41]),
        // values from numpy (ultralytics 8.4).
        let (mut m, mut p) = kf_initiate([10.0, 20.0, 0.5, 40.0]);
        kf_predict(&mut m, &mut p);
        kf_update(&mut m, &mut p, [12.0, 21.0, 0.5, 41.0]);
        let expect_mean = [
            11.735537190082646,
            20.867768595041323,
            0.5,
            40.86776859504132,
            0.4132231404958678,
            0.2066115702479339,
            0.0,
            0.2066115702479339,
        ];
        assert!(
            (p[0][0] - 3.471074380165291).abs() < 1e-9,
            "P[0][0] {}",
            p[0][0]
        );
        assert!(
            (p[0][4] - 0.8264462809917354).abs() < 1e-9,
            "P[0][4] {}",
            p[0][4]
        );
        assert!(
            (p[7][7] - 5.021177685950413).abs() < 1e-9,
            "P[7][7] {}",
            p[7][7]
        );
        for i in 0..8 {
            assert!(
                (m[i] - expect_mean[i]).abs() < 1e-9,
                "mean[{i}] {} vs {}",
                m[i],
                expect_mean[i]
            );
        }
    }

    #[test]
    fn assignment_is_optimal_and_respects_the_limit() {
        // Greedy would take (0,0)=0.1 and leave row 1 with 0.9 (over the limit); optimal is
        // (0,1)+(1,0).
        let cost = [0.1, 0.2, 0.3, 0.9];
        let (m, ur, uc) = linear_assignment(&cost, 2, 2, 0.8);
        assert_eq!(m, vec![(0, 1), (1, 0)]);
        assert!(ur.is_empty() && uc.is_empty());
        // Costs above the limit stay unmatched.
        let (m, ur, uc) = linear_assignment(&[0.85, 0.5], 1, 2, 0.8);
        assert_eq!((m, ur, uc), (vec![(0, 1)], vec![], vec![0]));
        let (m, ur, uc) = linear_assignment(&[0.9], 1, 1, 0.8);
        assert_eq!((m, ur, uc), (vec![], vec![0], vec![0]));
        let (m, ur, uc) = linear_assignment(&[], 0, 3, 0.8);
        assert_eq!((m, ur, uc), (vec![], vec![], vec![0, 1, 2]));
        // NaN costs never match.
        let (m, _, _) = linear_assignment(&[f64::NAN], 1, 1, 0.8);
        assert!(m.is_empty());
    }

    #[test]
    fn new_tracks_confirm_on_the_second_frame() {
        let mut t = ByteTracker::default();
        // Frame 1: confirmed at once.
        assert_eq!(
            t.update(&[det(0.9, [10.0, 10.0, 50.0, 90.0])]),
            vec![Some(1)]
        );
        // A new object on frame 2 is unconfirmed (no id out), then confirmed on frame 3.
        let a = det(0.9, [12.0, 10.0, 52.0, 90.0]);
        let b = det(0.8, [200.0, 50.0, 240.0, 130.0]);
        assert_eq!(t.update(&[a.clone(), b.clone()]), vec![Some(1), None]);
        let a = det(0.9, [14.0, 10.0, 54.0, 90.0]);
        let b2 = det(0.8, [202.0, 50.0, 242.0, 130.0]);
        assert_eq!(t.update(&[b2, a]), vec![Some(2), Some(1)]);
    }

    #[test]
    fn low_confidence_detections_keep_tracks_alive() {
        let mut t = ByteTracker::default();
        t.update(&[det(0.9, [10.0, 10.0, 50.0, 90.0])]);
        // 0.15 is below track_high_thresh but matched in the second association.
        assert_eq!(
            t.update(&[det(0.15, [11.0, 10.0, 51.0, 90.0])]),
            vec![Some(1)]
        );
        // 0.05 is below track_low_thresh: ignored, the track is lost...
        assert_eq!(t.update(&[det(0.05, [12.0, 10.0, 52.0, 90.0])]), vec![None]);
        // Lost tracks only take high-confidence detections back (first association).
        assert_eq!(t.update(&[det(0.15, [12.0, 10.0, 52.0, 90.0])]), vec![None]);
        assert_eq!(
            t.update(&[det(0.9, [12.0, 10.0, 52.0, 90.0])]),
            vec![Some(1)]
        );
    }

    #[test]
    fn lost_tracks_expire_after_the_buffer() {
        let cfg = TrackerConfig {
            track_buffer: 3,
            ..TrackerConfig::default()
        };
        let mut t = ByteTracker::new(cfg);
        let d = det(0.9, [10.0, 10.0, 50.0, 90.0]);
        t.update(std::slice::from_ref(&d));
        for _ in 0..5 {
            t.update(&[]);
        }
        // Gone: the same box starts a new (unconfirmed) track with a new id.
        assert_eq!(t.update(std::slice::from_ref(&d)), vec![None]);
        assert_eq!(t.update(std::slice::from_ref(&d)), vec![Some(2)]);

        // Within the buffer the id comes back.
        let mut t = ByteTracker::new(TrackerConfig::default());
        t.update(std::slice::from_ref(&d));
        for _ in 0..10 {
            t.update(&[]);
        }
        assert_eq!(t.update(std::slice::from_ref(&d)), vec![Some(1)]);
    }

    #[test]
    fn bad_boxes_are_ignored_without_panicking() {
        let mut t = ByteTracker::default();
        let out = t.update(&[
            det(f32::NAN, [10.0, 10.0, 50.0, 90.0]),
            det(0.9, [10.0, 10.0, 10.0, 90.0]),
            det(0.9, [f32::NAN, 10.0, 50.0, 90.0]),
            det(0.9, [0.0, 0.0, f32::INFINITY, 90.0]),
            det(0.9, [60.0, 10.0, 100.0, 90.0]),
        ]);
        assert_eq!(out, vec![None, None, None, None, Some(1)]);
        t.reset();
        assert_eq!(t.frame_count(), 0);
        assert_eq!(
            t.update(&[det(0.9, [60.0, 10.0, 100.0, 90.0])]),
            vec![Some(2)]
        );
    }
}
