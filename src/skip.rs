// SPDX-License-Identifier: MPL-2.0
//! Which frames the model skips, without GStreamer: all but every Nth (`inference-interval`)
//! and, with QoS on, frames that are already late, which inference would only make later.
//! Skipped frames still pass through (nothing is dropped); times are running-time nanoseconds.

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Infer,
    /// Between two inferences of `inference-interval`.
    Interval,
    /// Late: downstream said so (QoS event), or a live pipeline's deadline has passed.
    Late,
}

/// The per-stream state behind [`Decision`]s.
#[derive(Debug, Default)]
pub struct FrameSkipper {
    /// Frames since the last inference; `None` before the first one.
    since: Option<u32>,
    /// Frames starting before this running time are late (from downstream QoS events).
    earliest: Option<u64>,
    /// Running-time offset at which a live pipeline's sinks render a frame (its latency).
    live_latency: Option<u64>,
}

impl FrameSkipper {
    /// A QoS event: downstream rendered the frame of running time `timestamp` `diff` ns late
    /// (negative: early). As in GStreamer's base classes, a late frame moves the deadline by
    /// twice its lateness, since the next one is likely as late.
    pub fn on_qos(&mut self, timestamp: u64, diff: i64) {
        self.earliest = Some(if diff > 0 {
            timestamp.saturating_add(2 * diff as u64)
        } else {
            timestamp.saturating_sub(diff.unsigned_abs())
        });
    }

    /// The pipeline is live with this latency (`None`: not live, no clock deadline).
    pub fn set_live_latency(&mut self, latency: Option<u64>) {
        self.live_latency = latency;
    }

    /// A flush or new segment: QoS state from before does not apply, and the next frame runs.
    pub fn reset(&mut self) {
        self.since = None;
        self.earliest = None;
    }

    /// Decides for a frame starting at running time `rt`, arriving at running time `now`
    /// (`None`s when unknown). Returns [`Decision::Infer`] at most once per `interval` frames; a
    /// late frame defers the inference to the next one.
    pub fn decide(
        &mut self,
        interval: u32,
        qos: bool,
        rt: Option<u64>,
        now: Option<u64>,
    ) -> Decision {
        let due = self.since.is_none_or(|n| n + 1 >= interval.max(1));
        let decision = if !due {
            Decision::Interval
        } else if qos && self.is_late(rt, now) {
            Decision::Late
        } else {
            Decision::Infer
        };
        self.since = match decision {
            Decision::Infer => Some(0),
            _ => self.since.map(|n| n.saturating_add(1)),
        };
        decision
    }

    fn is_late(&self, rt: Option<u64>, now: Option<u64>) -> bool {
        let Some(rt) = rt else { return false };
        if self.earliest.is_some_and(|e| rt <= e) {
            return true;
        }
        // Live: the sinks render at rt + latency. A frame that arrives after that (frames
        // piling up in a queue upstream) is late whatever inference costs. One that arrives
        // in time but would finish late is left to the sinks' QoS events: with the sink
        // holding the streaming thread until each frame's render time, frames arrive with
        // less slack than one inference, and this rule would skip all of them.
        match (now, self.live_latency) {
            (Some(now), Some(lat)) => now > rt.saturating_add(lat),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    const MS: u64 = 1_000_000;

    fn run(s: &mut FrameSkipper, interval: u32, n: usize) -> Vec<Decision> {
        (0..n)
            .map(|_| s.decide(interval, true, None, None))
            .collect()
    }

    #[test]
    fn interval_one_runs_every_frame() {
        assert_eq!(run(&mut FrameSkipper::default(), 1, 4), vec![Infer; 4]);
        assert_eq!(run(&mut FrameSkipper::default(), 0, 3), vec![Infer; 3]);
    }

    #[test]
    fn interval_three_runs_the_first_of_each_three() {
        let got = run(&mut FrameSkipper::default(), 3, 7);
        assert_eq!(
            got,
            vec![Infer, Interval, Interval, Infer, Interval, Interval, Infer]
        );
    }

    #[test]
    fn qos_event_makes_earlier_frames_late_and_the_next_on_time_frame_runs() {
        let mut s = FrameSkipper::default();
        // Downstream: the frame at 100 ms was 30 ms late -> frames up to 160 ms are late.
        s.on_qos(100 * MS, 30 * MS as i64);
        let d: Vec<_> = [120, 160, 200]
            .iter()
            .map(|t| s.decide(1, true, Some(t * MS), None))
            .collect();
        assert_eq!(d, vec![Late, Late, Infer]);
        // QoS off: nothing is late.
        let mut s = FrameSkipper::default();
        s.on_qos(100 * MS, 30 * MS as i64);
        assert_eq!(s.decide(1, false, Some(120 * MS), None), Infer);
    }

    #[test]
    fn early_frames_are_not_late() {
        let mut s = FrameSkipper::default();
        s.on_qos(100 * MS, -20 * MS as i64);
        assert_eq!(s.decide(1, true, Some(81 * MS), None), Infer);
    }

    #[test]
    fn live_frames_arriving_after_their_render_time_are_late() {
        let mut s = FrameSkipper::default();
        s.set_live_latency(Some(100 * MS));
        // Frame at 1.0 s renders at 1.1 s: arriving at 1.05 s it runs, at 1.15 s it is late.
        assert_eq!(s.decide(1, true, Some(1000 * MS), Some(1050 * MS)), Infer);
        assert_eq!(s.decide(1, true, Some(1000 * MS), Some(1150 * MS)), Late);
        // Not live: no deadline.
        s.set_live_latency(None);
        assert_eq!(s.decide(1, true, Some(1000 * MS), Some(9000 * MS)), Infer);
    }

    #[test]
    fn a_late_frame_defers_the_interval_inference_to_the_next_frame() {
        let mut s = FrameSkipper::default();
        s.on_qos(0, 50 * MS as i64); // late up to 100 ms
        let d: Vec<_> = [0, 40, 80, 120, 160, 200, 240]
            .iter()
            .map(|t| s.decide(2, true, Some(t * MS), None))
            .collect();
        assert_eq!(d, vec![Late, Late, Late, Infer, Interval, Infer, Interval]);
    }

    #[test]
    fn reset_forgets_qos_and_runs_the_next_frame() {
        let mut s = FrameSkipper::default();
        s.on_qos(0, 500 * MS as i64);
        assert_eq!(s.decide(5, true, Some(10 * MS), None), Late);
        s.reset();
        assert_eq!(s.decide(5, true, Some(10 * MS), None), Infer);
        assert_eq!(s.decide(5, true, Some(50 * MS), None), Interval);
    }
}
