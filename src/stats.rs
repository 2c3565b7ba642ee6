// SPDX-License-Identifier: MPL-2.0
//! Per-frame stage timings of `yolodetect`: a fixed-size ring buffer of the last frames' stage
//! durations, the frame count and rate, and percentiles on demand.
//!
//! No GStreamer imports: the element turns a [`Summary`] into a `GstStructure`. Recording a
//! frame never allocates (the rings are sized once); only [`StageStats::summary`] does, when an
//! application asks.

use std::time::{Duration, Instant};

/// The stages of one frame inside `yolodetect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Mapping the frame and letterboxing it into the input tensor.
    Pre,
    /// ONNX Runtime's `run`.
    Infer,
    /// Decoding the output and NMS.
    Post,
    /// Attaching `DetectionMeta` and ROI metas.
    Meta,
    /// Everything but inference: pre + post + meta of the same frame.
    Added,
    /// The whole frame.
    Total,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Pre,
        Stage::Infer,
        Stage::Post,
        Stage::Meta,
        Stage::Added,
        Stage::Total,
    ];

    /// Field-name stem, e.g. `pre` gives `pre-p50-ms` in the element's structure.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Pre => "pre",
            Stage::Infer => "infer",
            Stage::Post => "post",
            Stage::Meta => "meta",
            Stage::Added => "added",
            Stage::Total => "total",
        }
    }
}

/// One frame's measured stage durations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FrameTimes {
    pub pre: Duration,
    pub infer: Duration,
    pub post: Duration,
    pub meta: Duration,
}

impl FrameTimes {
    /// The durations between consecutive instants: `t[0]` before pre-processing, then after
    /// pre, after inference, after post and after meta.
    pub fn from_instants(t: [Instant; 5]) -> FrameTimes {
        FrameTimes {
            pre: t[1].saturating_duration_since(t[0]),
            infer: t[2].saturating_duration_since(t[1]),
            post: t[3].saturating_duration_since(t[2]),
            meta: t[4].saturating_duration_since(t[3]),
        }
    }

    fn get(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Pre => self.pre,
            Stage::Infer => self.infer,
            Stage::Post => self.post,
            Stage::Meta => self.meta,
            Stage::Added => self.pre + self.post + self.meta,
            Stage::Total => self.pre + self.infer + self.post + self.meta,
        }
    }
}

/// Median and 99th percentile of one stage over the window, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    pub stage: Stage,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What the element reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Frames processed since start.
    pub frames: u64,
    /// Frames per second over the window (frame arrivals), 0 with fewer than two frames.
    pub fps: f64,
    /// How many recent frames the percentiles cover.
    pub window: usize,
    pub stages: Vec<Percentiles>,
}

/// Default window: about 10 s at 30 fps, 12 KiB of samples.
pub const DEFAULT_WINDOW: usize = 300;

/// The ring buffer of recent frames.
#[derive(Debug)]
pub struct StageStats {
    times: Vec<FrameTimes>,
    arrivals: Vec<Instant>,
    next: usize,
    frames: u64,
    last_report: Option<Instant>,
}

impl Default for StageStats {
    fn default() -> Self {
        StageStats::new(DEFAULT_WINDOW)
    }
}

impl StageStats {
    /// Keeps the last `window` frames (at least 1).
    pub fn new(window: usize) -> StageStats {
        let window = window.max(1);
        StageStats {
            times: Vec::with_capacity(window),
            arrivals: Vec::with_capacity(window),
            next: 0,
            frames: 0,
            last_report: None,
        }
    }

    /// Forgets everything (a new stream).
    pub fn reset(&mut self) {
        self.times.clear();
        self.arrivals.clear();
        self.next = 0;
        self.frames = 0;
        self.last_report = None;
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Records a frame that started at `start`. Never allocates: the rings were sized in `new`.
    pub fn record(&mut self, start: Instant, t: FrameTimes) {
        let cap = self.times.capacity();
        if self.times.len() < cap {
            self.times.push(t);
            self.arrivals.push(start);
        } else {
            self.times[self.next] = t;
            self.arrivals[self.next] = start;
        }
        self.next = (self.next + 1) % cap;
        self.frames += 1;
    }

    /// True once every `interval` (measured from the first call), for periodic reports;
    /// always false for a zero interval.
    pub fn report_due(&mut self, now: Instant, interval: Duration) -> bool {
        if interval.is_zero() {
            return false;
        }
        match self.last_report {
            None => {
                self.last_report = Some(now);
                false
            }
            Some(last) if now.saturating_duration_since(last) >= interval => {
                self.last_report = Some(now);
                true
            }
            Some(_) => false,
        }
    }

    /// Frame rate over the window: frames between the oldest and newest arrival.
    pub fn fps(&self) -> f64 {
        let n = self.arrivals.len();
        if n < 2 {
            return 0.0;
        }
        // The newest is just before `next`, the oldest at `next` once the ring is full.
        let newest = self.arrivals[(self.next + n - 1) % n];
        let oldest = if n < self.arrivals.capacity() {
            self.arrivals[0]
        } else {
            self.arrivals[self.next % n]
        };
        let span = newest.saturating_duration_since(oldest).as_secs_f64();
        if span > 0.0 {
            (n - 1) as f64 / span
        } else {
            0.0
        }
    }

    /// Percentiles per stage over the window (allocates; call when asked, not per frame).
    pub fn summary(&self) -> Summary {
        let mut scratch: Vec<f64> = Vec::with_capacity(self.times.len());
        let stages = Stage::ALL
            .iter()
            .map(|&stage| {
                scratch.clear();
                scratch.extend(
                    self.times
                        .iter()
                        .map(|t| t.get(stage).as_secs_f64() * 1000.0),
                );
                scratch.sort_unstable_by(f64::total_cmp);
                Percentiles {
                    stage,
                    p50_ms: percentile(&scratch, 50.0),
                    p99_ms: percentile(&scratch, 99.0),
                }
            })
            .collect();
        Summary {
            frames: self.frames,
            fps: self.fps(),
            window: self.times.len(),
            stages,
        }
    }
}

/// Nearest-rank percentile of sorted values (0 for none): the smallest value with at least
/// `p` percent of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn times(pre: u64, infer: u64, post: u64, meta: u64) -> FrameTimes {
        FrameTimes {
            pre: ms(pre),
            infer: ms(infer),
            post: ms(post),
            meta: ms(meta),
        }
    }

    fn stage(s: &Summary, st: Stage) -> Percentiles {
        *s.stages.iter().find(|p| p.stage == st).unwrap()
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        // Three values: the median is the middle one, p99 the largest.
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 99.0), 3.0);
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = StageStats::new(4).summary();
        assert_eq!(s.frames, 0);
        assert_eq!(s.fps, 0.0);
        assert_eq!(s.window, 0);
        assert_eq!(s.stages.len(), Stage::ALL.len());
        assert!(s.stages.iter().all(|p| p.p50_ms == 0.0 && p.p99_ms == 0.0));
    }

    #[test]
    fn added_and_total_are_per_frame_sums() {
        let mut st = StageStats::new(10);
        let t0 = Instant::now();
        // Pre is slow on one frame and post on another: the sum's percentile is not the sum
        // of the percentiles.
        st.record(t0, times(1, 40, 1, 0));
        st.record(t0 + ms(40), times(9, 40, 1, 0));
        st.record(t0 + ms(80), times(1, 40, 9, 0));
        let s = st.summary();
        assert_eq!(stage(&s, Stage::Pre).p50_ms, 1.0);
        assert_eq!(stage(&s, Stage::Pre).p99_ms, 9.0);
        assert_eq!(stage(&s, Stage::Added).p50_ms, 10.0);
        assert_eq!(stage(&s, Stage::Added).p99_ms, 10.0);
        assert_eq!(stage(&s, Stage::Total).p50_ms, 50.0);
        assert_eq!(stage(&s, Stage::Infer).p99_ms, 40.0);
    }

    #[test]
    fn ring_keeps_the_newest_window() {
        let mut st = StageStats::new(3);
        let t0 = Instant::now();
        for i in 0..10u64 {
            st.record(t0 + ms(100 * i), times(i, 0, 0, 0));
        }
        let s = st.summary();
        assert_eq!(s.frames, 10);
        assert_eq!(s.window, 3);
        // Frames 7, 8, 9 remain.
        assert_eq!(stage(&s, Stage::Pre).p50_ms, 8.0);
        assert_eq!(stage(&s, Stage::Pre).p99_ms, 9.0);
        // Arrivals 100 ms apart: 10 fps over the window.
        assert!((s.fps - 10.0).abs() < 1e-9, "fps {}", s.fps);
    }

    #[test]
    fn fps_before_the_ring_is_full() {
        let mut st = StageStats::new(100);
        let t0 = Instant::now();
        for i in 0..5u64 {
            st.record(t0 + ms(25 * i), FrameTimes::default());
        }
        assert!((st.fps() - 40.0).abs() < 1e-9, "fps {}", st.fps());
        let mut one = StageStats::new(100);
        one.record(t0, FrameTimes::default());
        assert_eq!(one.fps(), 0.0);
    }

    #[test]
    fn record_does_not_grow_the_ring() {
        let mut st = StageStats::new(8);
        let cap = (st.times.capacity(), st.arrivals.capacity());
        let t0 = Instant::now();
        for i in 0..100u64 {
            st.record(t0 + ms(i), FrameTimes::default());
        }
        assert_eq!((st.times.capacity(), st.arrivals.capacity()), cap);
    }

    #[test]
    fn reset_forgets() {
        let mut st = StageStats::new(4);
        st.record(Instant::now(), times(5, 5, 5, 5));
        st.reset();
        assert_eq!(st.frames(), 0);
        assert_eq!(st.summary().window, 0);
    }

    #[test]
    fn report_due_every_interval() {
        let mut st = StageStats::new(4);
        let t0 = Instant::now();
        assert!(!st.report_due(t0, Duration::ZERO));
        let iv = ms(1000);
        assert!(!st.report_due(t0, iv), "the first call starts the clock");
        assert!(!st.report_due(t0 + ms(999), iv));
        assert!(st.report_due(t0 + ms(1000), iv));
        assert!(!st.report_due(t0 + ms(1500), iv));
        assert!(st.report_due(t0 + ms(2100), iv));
    }

    #[test]
    fn from_instants_splits_stages() {
        let t0 = Instant::now();
        let t = FrameTimes::from_instants([t0, t0 + ms(2), t0 + ms(42), t0 + ms(43), t0 + ms(45)]);
        assert_eq!(t, times(2, 40, 1, 2));
    }
}
