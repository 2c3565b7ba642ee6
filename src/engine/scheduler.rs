// SPDX-License-Identifier: MPL-2.0
//! Cross-stream batching. Each stream submits one job at a time and waits for its result (so a
//! stream's results come back in its own order); worker threads gather the jobs of all streams
//! into batches of at most `max_batch` and run them on their own backend (one ONNX Runtime
//! session each, or a fake in tests).
//!
//! A worker runs a batch as soon as it is full, or as soon as every active stream that is not
//! already being served has a job queued (waiting longer could not fill it more), or when the
//! oldest job has waited `timeout`. So a lone stream never waits, and a stream that stops
//! submitting (EOS, flush, error, NULL) delays the others by at most `timeout` per batch until
//! it is marked inactive.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::stats::percentile;

/// What runs a batch: an inference session, or a fake in tests.
pub trait Backend: Send + 'static {
    type Job: Send + 'static;
    type Output: Send + 'static;
    /// Runs 1..=max_batch jobs; returns one result per job, in the jobs' order.
    fn run(&mut self, jobs: Vec<Self::Job>) -> Vec<Result<Self::Output, String>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub max_batch: usize,
    /// How long the oldest queued job may wait for its batch to fill.
    pub timeout: Duration,
}

/// Queue-wait samples kept per worker for the percentiles.
const WAIT_WINDOW: usize = 1024;

/// One worker's counters, for the element's `stats`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerStats {
    pub batches: u64,
    pub frames: u64,
    /// Mean jobs per batch.
    pub mean_fill: f64,
    /// Time jobs waited in the queue before their batch started, over the last jobs.
    pub wait_p50_ms: f64,
    pub wait_p99_ms: f64,
}

#[derive(Default)]
struct WorkerCounters {
    batches: u64,
    frames: u64,
    waits_ms: VecDeque<f64>,
}

impl WorkerCounters {
    fn summary(&self) -> WorkerStats {
        let mut w: Vec<f64> = self.waits_ms.iter().copied().collect();
        w.sort_by(f64::total_cmp);
        WorkerStats {
            batches: self.batches,
            frames: self.frames,
            mean_fill: if self.batches == 0 {
                0.0
            } else {
                self.frames as f64 / self.batches as f64
            },
            wait_p50_ms: percentile(&w, 50.0),
            wait_p99_ms: percentile(&w, 99.0),
        }
    }
}

struct Reply<O> {
    slot: Mutex<Option<Result<O, String>>>,
    cv: Condvar,
}

impl<O> Reply<O> {
    fn new() -> Self {
        Reply {
            slot: Mutex::new(None),
            cv: Condvar::new(),
        }
    }

    fn set(&self, r: Result<O, String>) {
        *self.slot.lock() = Some(r);
        self.cv.notify_one();
    }

    fn wait(&self) -> Result<O, String> {
        let mut slot = self.slot.lock();
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            self.cv.wait(&mut slot);
        }
    }
}

struct Pending<J, O> {
    job: J,
    enqueued: Instant,
    reply: Arc<Reply<O>>,
}

struct Queue<J, O> {
    jobs: VecDeque<Pending<J, O>>,
    /// Streams that may submit soon.
    active: usize,
    /// Jobs being run by a worker now (their streams cannot submit until they are answered).
    running: usize,
    shutdown: bool,
    counters: Vec<WorkerCounters>,
}

struct Shared<J, O> {
    q: Mutex<Queue<J, O>>,
    cv: Condvar,
    cfg: SchedulerConfig,
}

/// The batch scheduler of one model instance.
pub struct Scheduler<B: Backend> {
    shared: Arc<Shared<B::Job, B::Output>>,
    workers: Vec<JoinHandle<()>>,
}

impl<B: Backend> Scheduler<B> {
    /// Starts one worker thread per backend.
    pub fn new(backends: Vec<B>, cfg: SchedulerConfig) -> Result<Self, String> {
        let cfg = SchedulerConfig {
            max_batch: cfg.max_batch.max(1),
            ..cfg
        };
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue {
                jobs: VecDeque::new(),
                active: 0,
                running: 0,
                shutdown: false,
                counters: backends.iter().map(|_| WorkerCounters::default()).collect(),
            }),
            cv: Condvar::new(),
            cfg,
        });
        let mut s = Scheduler {
            shared,
            workers: Vec::new(),
        };
        for (i, backend) in backends.into_iter().enumerate() {
            let sh = s.shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("yolo-infer-{i}"))
                .spawn(move || worker(i, backend, &sh))
                .map_err(|e| format!("cannot start an inference worker thread: {e}"))?;
            s.workers.push(h);
        }
        Ok(s)
    }

    pub fn config(&self) -> SchedulerConfig {
        self.shared.cfg
    }

    /// A handle for one stream; it counts as active until [`StreamHandle::set_active`] says
    /// otherwise or it is dropped.
    pub fn stream(&self) -> StreamHandle<B::Job, B::Output> {
        self.shared.q.lock().active += 1;
        StreamHandle {
            shared: self.shared.clone(),
            active: true,
        }
    }

    pub fn stats(&self) -> Vec<WorkerStats> {
        let q = self.shared.q.lock();
        q.counters.iter().map(WorkerCounters::summary).collect()
    }
}

impl<B: Backend> Drop for Scheduler<B> {
    fn drop(&mut self) {
        self.shared.q.lock().shutdown = true;
        self.shared.cv.notify_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// One stream's connection to the scheduler.
pub struct StreamHandle<J, O> {
    shared: Arc<Shared<J, O>>,
    active: bool,
}

impl<J, O> StreamHandle<J, O> {
    /// Queues `job` and waits for its result. Marks the stream active.
    pub fn submit(&mut self, job: J) -> Result<O, String> {
        let reply = Arc::new(Reply::new());
        {
            let mut q = self.shared.q.lock();
            if q.shutdown {
                return Err("the model instance is shutting down".into());
            }
            if !self.active {
                self.active = true;
                q.active += 1;
            }
            q.jobs.push_back(Pending {
                job,
                enqueued: Instant::now(),
                reply: reply.clone(),
            });
        }
        self.shared.cv.notify_all();
        reply.wait()
    }

    /// An inactive stream (at EOS, flushing, paused) is not waited for when batches are filled.
    pub fn set_active(&mut self, active: bool) {
        if self.active == active {
            return;
        }
        self.active = active;
        {
            let mut q = self.shared.q.lock();
            if active {
                q.active += 1;
            } else {
                q.active = q.active.saturating_sub(1);
            }
        }
        // A worker waiting for this stream's job can go now.
        self.shared.cv.notify_all();
    }
}

impl<J, O> Drop for StreamHandle<J, O> {
    fn drop(&mut self) {
        self.set_active(false);
    }
}

fn worker<B: Backend>(index: usize, mut backend: B, sh: &Shared<B::Job, B::Output>) {
    let cfg = sh.cfg;
    loop {
        let mut q = sh.q.lock();
        while q.jobs.is_empty() && !q.shutdown {
            sh.cv.wait(&mut q);
        }
        if q.jobs.is_empty() {
            return; // shut down, nothing left to answer
        }
        let deadline = q.jobs[0].enqueued + cfg.timeout;
        loop {
            let expected = q.active.saturating_sub(q.running).max(1);
            if q.jobs.is_empty()
                || q.jobs.len() >= cfg.max_batch
                || q.jobs.len() >= expected
                || q.shutdown
            {
                break;
            }
            if sh.cv.wait_until(&mut q, deadline).timed_out() {
                break;
            }
        }
        if q.jobs.is_empty() {
            continue; // another worker took them
        }
        let n = q.jobs.len().min(cfg.max_batch);
        let batch: Vec<_> = q.jobs.drain(..n).collect();
        q.running += n;
        drop(q);

        let start = Instant::now();
        let mut replies = Vec::with_capacity(n);
        let mut jobs = Vec::with_capacity(n);
        let mut waits = Vec::with_capacity(n);
        for p in batch {
            waits.push((start - p.enqueued).as_secs_f64() * 1e3);
            replies.push(p.reply);
            jobs.push(p.job);
        }
        // A panicking backend answers its batch with an error and the worker goes on.
        let results = std::panic::catch_unwind(AssertUnwindSafe(|| backend.run(jobs)))
            .unwrap_or_else(|_| {
                (0..n)
                    .map(|_| Err("the inference worker panicked".to_string()))
                    .collect()
            });
        // Counted before the answers: a stream that reads the counters after its last frame
        // came back must find that frame in them.
        let mut q = sh.q.lock();
        q.running -= n;
        let c = &mut q.counters[index];
        c.batches += 1;
        c.frames += n as u64;
        for w in waits {
            if c.waits_ms.len() == WAIT_WINDOW {
                c.waits_ms.pop_front();
            }
            c.waits_ms.push_back(w);
        }
        drop(q);
        let mut results = results.into_iter();
        for r in &replies {
            r.set(
                results
                    .next()
                    .unwrap_or_else(|| Err("the backend returned too few results".into())),
            );
        }
        // Streams just answered count as able to submit again.
        sh.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const UNLUCKY: u64 = u64::MAX;

    /// Doubles each job; records batch sizes; optionally sleeps per batch; panics on UNLUCKY.
    struct Fake {
        sizes: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
    }

    impl Backend for Fake {
        type Job = u64;
        type Output = u64;
        fn run(&mut self, jobs: Vec<u64>) -> Vec<Result<u64, String>> {
            self.sizes.lock().push(jobs.len());
            std::thread::sleep(self.delay);
            if jobs.contains(&UNLUCKY) {
                panic!("unlucky");
            }
            jobs.into_iter().map(|j| Ok(j.wrapping_mul(2))).collect()
        }
    }

    fn sched(
        workers: usize,
        max_batch: usize,
        timeout_ms: u64,
        delay_ms: u64,
    ) -> (Scheduler<Fake>, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let backends = (0..workers)
            .map(|_| Fake {
                sizes: sizes.clone(),
                delay: Duration::from_millis(delay_ms),
            })
            .collect();
        let cfg = SchedulerConfig {
            max_batch,
            timeout: Duration::from_millis(timeout_ms),
        };
        (Scheduler::new(backends, cfg).unwrap(), sizes)
    }

    #[test]
    fn a_lone_stream_never_waits_for_the_timeout() {
        let (s, sizes) = sched(1, 8, 5_000, 0);
        let mut h = s.stream();
        let t = Instant::now();
        for i in 0..20 {
            assert_eq!(h.submit(i).unwrap(), 2 * i);
        }
        // 20 batches of one, far below a single 5 s timeout.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(*sizes.lock(), vec![1; 20]);
    }

    #[test]
    fn streams_are_batched_and_each_gets_its_own_results_in_order() {
        let (s, sizes) = sched(1, 4, 2_000, 5);
        let handles: Vec<_> = (0..4u64)
            .map(|k| {
                let mut h = s.stream();
                std::thread::spawn(move || {
                    (0..50u64)
                        .map(|i| h.submit(k * 1000 + i).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (k, h) in handles.into_iter().enumerate() {
            let got = h.join().unwrap();
            let want: Vec<u64> = (0..50).map(|i| 2 * (k as u64 * 1000 + i)).collect();
            assert_eq!(got, want, "stream {k}");
        }
        let sizes = sizes.lock();
        assert_eq!(sizes.iter().sum::<usize>(), 200);
        assert!(sizes.iter().all(|&n| (1..=4).contains(&n)));
        // With four streams all submitting, most batches are full.
        let full = sizes.iter().filter(|&&n| n == 4).count();
        assert!(full * 2 > sizes.len(), "batch sizes {sizes:?}");
        let st = &s.stats()[0];
        assert_eq!(st.frames, 200);
        assert!(st.mean_fill > 2.0, "{st:?}");
    }

    #[test]
    fn an_idle_stream_delays_others_by_at_most_the_timeout() {
        let (s, _) = sched(1, 4, 150, 0);
        let mut busy = s.stream();
        let idle = s.stream(); // registered, never submits
        let t = Instant::now();
        assert_eq!(busy.submit(1).unwrap(), 2);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_millis(1500), "{waited:?}");
        // Once it is gone (or marked inactive), nobody waits for it.
        drop(idle);
        let t = Instant::now();
        for i in 0..10 {
            busy.submit(i).unwrap();
        }
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn a_stream_marked_inactive_is_not_waited_for() {
        let (s, _) = sched(1, 4, 5_000, 0);
        let mut a = s.stream();
        let mut b = s.stream();
        b.set_active(false);
        let t = Instant::now();
        a.submit(1).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        // Submitting makes it active again.
        assert_eq!(b.submit(2).unwrap(), 4);
    }

    #[test]
    fn a_panicking_batch_is_an_error_and_the_worker_goes_on() {
        let (s, _) = sched(1, 1, 10, 0);
        let mut h = s.stream();
        assert!(h.submit(UNLUCKY).unwrap_err().contains("panicked"));
        assert_eq!(h.submit(3).unwrap(), 6);
    }

    #[test]
    fn several_workers_run_batches_at_the_same_time() {
        let (s, _) = sched(4, 1, 0, 100);
        let running = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        let hs: Vec<_> = (0..4u64)
            .map(|k| {
                let mut h = s.stream();
                let running = running.clone();
                std::thread::spawn(move || {
                    running.fetch_add(1, Ordering::SeqCst);
                    h.submit(k).unwrap()
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Four 100 ms batches on four workers: well under the 400 ms one worker would take.
        assert!(
            t.elapsed() < Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn dropping_the_scheduler_answers_queued_jobs() {
        let (s, _) = sched(1, 2, 50, 20);
        let mut h = s.stream();
        let t = std::thread::spawn(move || h.submit(5));
        std::thread::sleep(Duration::from_millis(5));
        drop(s);
        // Either answered before shutdown or refused: never left hanging.
        let r = t.join().unwrap();
        assert!(r == Ok(10) || r.is_err(), "{r:?}");
    }
}
