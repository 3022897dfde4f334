//! Bandwidth estimation toward one subscriber, from transport-wide congestion control feedback
//! (which packets arrived, and when, on the subscriber's clock).
//!
//! GCC's two signals, judged over windows of [`WINDOW`] rather than per feedback packet:
//! - **Delay:** the one-way delay of each packet, against the lowest seen over the last
//!   [`BASE_HISTORY`] windows. The queue in front of the subscriber's link is the window's
//!   *lowest* delay above that base: a full link delays every packet, while a keyframe's burst,
//!   or a starved CPU that holds a few packets back now and then, delays some and leaves the
//!   rest on time (a mean would count those as a standing queue). A queue above
//!   [`OVERUSE_QUEUE_MS`] for two windows in a row means the link is full: the estimate falls to
//!   85 % of what was delivered, but by at most half in one cut (what is delivered is only what
//!   the allocator chose to send, often far less than the link carries). After a cut the queue
//!   needs time to drain: while it shrinks, and for [`CUT_SPACING`] after a cut, the estimate is
//!   held, not cut again, so one congestion episode cannot ratchet a link down to nothing.
//! - **Loss:** per window, and smoothed across windows (a window holds only tens of packets, so
//!   5 % random loss often reads as 10 % in one): when both the window's and the smoothed loss are
//!   above 10 % the estimate falls by half the loss; when both are below 2 % it grows; between 2 % and 10 % it does not treat the loss as
//!   congestion (a rural link that loses 5 % at random is lossy, not full): it recovers what a loss
//!   spike took and, while no queue builds, creeps up by 50 kbit/s a second but never past 1.5×
//!   what is delivered plus 250 kbit/s (room for a paused video's lowest layer), so a lossy link
//!   climbs one layer at a time instead of jumping to one it cannot carry. Growth is 8 % a second, or 100 kbit/s a second within 15 s
//!   of the last overuse (approaching the ceiling it found rather than blowing through it).
//!
//! The estimate is what the allocator may hand out; going up a layer is the probe. No clock is
//! read: the feedback's arrival instant is the time.

use std::time::{Duration, Instant};

/// How long one judgement window is.
pub const WINDOW: Duration = Duration::from_millis(500);
/// Windows over which the base (uncongested) delay is the minimum: 10 s.
pub const BASE_HISTORY: usize = 20;
/// Queueing delay that, held for two windows, counts as a full link.
pub const OVERUSE_QUEUE_MS: f64 = 50.0;
const CEILING_MEMORY: Duration = Duration::from_secs(15);
/// Shortest time between two cuts for a full link: a cut reaches the link only after the
/// allocator acts on it and the queue in front of the subscriber drains.
pub const CUT_SPACING: Duration = Duration::from_secs(1);
/// How much smaller than the last window's a queue must be to count as draining.
const DRAINING_MS: f64 = 5.0;

/// One packet the feedback reported on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it left the SFU.
    pub departure: Instant,
    /// When it arrived, on the subscriber's clock (`None`: lost).
    pub arrival: Option<Duration>,
    /// Bytes on the wire.
    pub size: usize,
}

/// What the last window concluded, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough packets to judge.
    Unknown,
    /// The queue grew: the link is full.
    Overuse,
    /// A queue stands but is draining, or the last cut is too recent to have acted: held.
    Draining,
    /// More than 10 % lost.
    HeavyLoss,
    /// Some loss, no queue: held.
    Hold,
    /// Clear: grown.
    Increase,
}

/// What one window measured, for logs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowReport {
    /// Share of the window's packets lost.
    pub loss: f64,
    /// The standing queue (the window's lowest delay above the base), milliseconds (`None`
    /// before a base delay is known).
    pub queue_ms: Option<f64>,
    /// Mean queueing delay, milliseconds.
    pub mean_queue_ms: Option<f64>,
    /// What arrived, bits per second.
    pub delivered: Option<f64>,
}

/// The estimator of one subscriber's downlink.
#[derive(Debug, Clone)]
pub struct Bwe {
    estimate: f64,
    min: f64,
    max: f64,
    /// Departure of the first sample ever, the origin for one-way delays.
    epoch: Option<Instant>,
    window_start: Option<Instant>,
    sent: u32,
    lost: u32,
    bytes_arrived: u64,
    first_arrival: Option<Duration>,
    last_arrival: Option<Duration>,
    delay_sum: f64,
    delay_n: u32,
    window_min_delay: f64,
    /// The lowest delay of each recent window (a ring).
    base: [f64; BASE_HISTORY],
    base_next: usize,
    /// Consecutive windows with a queue above [`OVERUSE_QUEUE_MS`].
    queued_windows: u32,
    /// The last window's standing queue, milliseconds.
    last_queue: Option<f64>,
    /// The highest estimate no overuse has refuted: what the hold zone may recover to.
    peak: f64,
    /// Loss smoothed across windows.
    loss_avg: Option<f64>,
    last_overuse: Option<Instant>,
    verdict: Verdict,
    /// Windows judged so far, and what the last one measured.
    windows: u64,
    last: WindowReport,
}

impl Bwe {
    /// An estimator starting at `initial` bits per second, held within `min..=max`.
    pub fn new(initial: f64, min: f64, max: f64) -> Self {
        let initial = initial.clamp(min, max);
        Self {
            estimate: initial,
            peak: initial,
            loss_avg: None,
            queued_windows: 0,
            last_queue: None,
            min,
            max,
            epoch: None,
            window_start: None,
            sent: 0,
            lost: 0,
            bytes_arrived: 0,
            first_arrival: None,
            last_arrival: None,
            delay_sum: 0.0,
            delay_n: 0,
            window_min_delay: f64::INFINITY,
            base: [f64::INFINITY; BASE_HISTORY],
            base_next: 0,
            last_overuse: None,
            verdict: Verdict::Unknown,
            windows: 0,
            last: WindowReport::default(),
        }
    }

    /// The estimate, bits per second.
    pub fn estimate(&self) -> f64 {
        self.estimate
    }

    /// What the last finished window concluded.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// How many windows were judged, and what the last one measured.
    pub fn last_window(&self) -> (u64, WindowReport) {
        (self.windows, self.last)
    }

    /// Feedback arrived at `now` about these packets (in send order).
    pub fn on_feedback(&mut self, now: Instant, samples: impl IntoIterator<Item = Sample>) {
        for s in samples {
            let epoch = *self.epoch.get_or_insert(s.departure);
            self.sent += 1;
            let Some(arrival) = s.arrival else {
                self.lost += 1;
                continue;
            };
            self.bytes_arrived += s.size as u64;
            self.first_arrival = Some(self.first_arrival.map_or(arrival, |f| f.min(arrival)));
            self.last_arrival = Some(self.last_arrival.map_or(arrival, |l| l.max(arrival)));
            // One-way delay up to a constant (the two clocks' offset), which the base removes.
            let sent_ms = s.departure.saturating_duration_since(epoch).as_secs_f64() * 1000.0;
            let delay = arrival.as_secs_f64() * 1000.0 - sent_ms;
            self.delay_sum += delay;
            self.delay_n += 1;
            self.window_min_delay = self.window_min_delay.min(delay);
        }
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= WINDOW {
            self.judge(now, now.saturating_duration_since(start));
        }
    }

    fn judge(&mut self, now: Instant, span: Duration) {
        let (sent, lost) = (self.sent, self.lost);
        let delivered = match (self.first_arrival, self.last_arrival) {
            (Some(a), Some(b)) if b > a + Duration::from_millis(100) => {
                Some(self.bytes_arrived as f64 * 8.0 / (b - a).as_secs_f64())
            }
            _ => None,
        };
        let mean_delay = (self.delay_n > 0).then(|| self.delay_sum / f64::from(self.delay_n));
        if self.window_min_delay.is_finite() {
            self.base[self.base_next] = self.window_min_delay;
            self.base_next = (self.base_next + 1) % BASE_HISTORY;
        }
        let base = self.base.iter().copied().fold(f64::INFINITY, f64::min);
        let queued = |d: f64| (base.is_finite() && d.is_finite()).then_some(d - base);
        let queue = queued(self.window_min_delay);
        let mean_queue = mean_delay.and_then(queued);
        if queue.is_some_and(|q| q > OVERUSE_QUEUE_MS) {
            self.queued_windows += 1;
        } else {
            self.queued_windows = 0;
        }
        let draining =
            matches!((self.last_queue, queue), (Some(l), Some(q)) if q < l - DRAINING_MS);
        if queue.is_some() {
            self.last_queue = queue;
        }
        // Reset the window.
        self.window_start = Some(now);
        self.sent = 0;
        self.lost = 0;
        self.bytes_arrived = 0;
        self.first_arrival = None;
        self.last_arrival = None;
        self.delay_sum = 0.0;
        self.delay_n = 0;
        self.window_min_delay = f64::INFINITY;

        if sent < 10 {
            self.verdict = Verdict::Unknown;
            return;
        }
        let loss = f64::from(lost) / f64::from(sent);
        let avg = self.loss_avg.map_or(loss, |a| 0.8 * a + 0.2 * loss);
        self.loss_avg = Some(avg);
        self.windows += 1;
        self.last = WindowReport {
            loss,
            queue_ms: queue,
            mean_queue_ms: mean_queue,
            delivered,
        };
        let secs = span.as_secs_f64().min(1.0);
        let cut_recently = self
            .last_overuse
            .is_some_and(|at| now.saturating_duration_since(at) < CUT_SPACING);
        self.verdict = if self.queued_windows >= 2 && (draining || cut_recently) {
            Verdict::Draining
        } else if self.queued_windows >= 2 {
            if let Some(d) = delivered {
                self.estimate = self.estimate.min((0.85 * d).max(0.5 * self.estimate));
            }
            self.peak = self.estimate;
            self.last_overuse = Some(now);
            Verdict::Overuse
        } else if loss.min(avg) > 0.10 {
            self.estimate *= 1.0 - 0.5 * avg;
            Verdict::HeavyLoss
        } else if loss.max(avg) >= 0.02 {
            let recovered = (self.estimate * 1.08f64.powf(secs)).min(self.peak);
            let crept = match delivered {
                Some(d) if self.queued_windows == 0 => {
                    (self.estimate + 50_000.0 * secs).min(1.5 * d + 250_000.0)
                }
                _ => self.estimate,
            };
            self.estimate = self.estimate.max(recovered).max(crept);
            Verdict::Hold
        } else {
            let near_ceiling = self
                .last_overuse
                .is_some_and(|at| now.saturating_duration_since(at) < CEILING_MEMORY);
            self.estimate = if near_ceiling {
                self.estimate + 100_000.0 * secs
            } else {
                self.estimate * 1.08f64.powf(secs)
            };
            self.peak = self.peak.max(self.estimate);
            Verdict::Increase
        };
        self.estimate = self.estimate.clamp(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated link: `rate` bits per second, `loss_every` (every n-th packet lost), a fixed
    /// 100 ms delay and a 200 ms drop-tail queue. The SFU sends `send_rate` in 1,200-byte packets
    /// from `start` for `secs`; feedback comes every 100 ms; the receiver's clock counts from
    /// `origin`. Returns the verdicts seen.
    fn run_from(
        bwe: &mut Bwe,
        origin: Instant,
        start: Instant,
        secs: u64,
        send_rate: f64,
        rate: f64,
        loss_every: Option<u64>,
    ) -> Vec<Verdict> {
        let size = 1200usize;
        let gap = Duration::from_secs_f64(size as f64 * 8.0 / send_rate);
        let serialize = Duration::from_secs_f64(size as f64 * 8.0 / rate);
        let delay = Duration::from_millis(100);
        let queue = Duration::from_millis(200);
        let mut t = start;
        let mut link_free = start;
        let mut pending = Vec::new();
        let mut verdicts = Vec::new();
        let mut next_feedback = start + Duration::from_millis(100);
        let mut n = 0u64;
        while t < start + Duration::from_secs(secs) {
            n += 1;
            let begin = link_free.max(t);
            let lost = loss_every.is_some_and(|k| n.is_multiple_of(k));
            let tail_dropped = begin.saturating_duration_since(t) > queue;
            let arrival = if lost || tail_dropped {
                None
            } else {
                link_free = begin + serialize;
                Some(link_free + delay - origin)
            };
            pending.push(Sample {
                departure: t,
                arrival,
                size,
            });
            t += gap;
            if t >= next_feedback {
                bwe.on_feedback(t, pending.drain(..));
                verdicts.push(bwe.verdict());
                next_feedback += Duration::from_millis(100);
            }
        }
        verdicts
    }

    fn run(
        bwe: &mut Bwe,
        start: Instant,
        secs: u64,
        send_rate: f64,
        rate: f64,
        loss_every: Option<u64>,
    ) -> Vec<Verdict> {
        run_from(bwe, start, start, secs, send_rate, rate, loss_every)
    }

    #[test]
    fn a_clear_link_lets_the_estimate_grow() {
        let start = Instant::now();
        let mut bwe = Bwe::new(1_000_000.0, 100_000.0, 50_000_000.0);
        run(&mut bwe, start, 10, 800_000.0, 100_000_000.0, None);
        assert!(bwe.estimate() > 1_800_000.0, "{}", bwe.estimate());
    }

    #[test]
    fn random_loss_lets_the_estimate_creep_only_a_step_above_what_flows() {
        let start = Instant::now();
        let mut bwe = Bwe::new(1_000_000.0, 100_000.0, 50_000_000.0);
        // Every 20th packet lost (5 %), the link itself wide enough.
        let v = run(&mut bwe, start, 30, 700_000.0, 1_500_000.0, Some(20));
        assert!(v.contains(&Verdict::Hold));
        // 1.5 × 665 kbit/s delivered + 250: about 1.25 Mbit/s, not the clean link's growth.
        assert!(
            (1_100_000.0..=1_400_000.0).contains(&bwe.estimate()),
            "{}",
            bwe.estimate()
        );
    }

    #[test]
    fn sending_past_the_link_rate_brings_the_estimate_under_it() {
        let start = Instant::now();
        let mut bwe = Bwe::new(3_000_000.0, 100_000.0, 50_000_000.0);
        let v = run(&mut bwe, start, 5, 2_500_000.0, 1_500_000.0, None);
        assert!(v.contains(&Verdict::Overuse), "{v:?}");
        assert!(
            (900_000.0..1_500_000.0).contains(&bwe.estimate()),
            "{}",
            bwe.estimate()
        );
    }

    #[test]
    fn a_keyframe_burst_on_a_narrow_lossy_link_does_not_ratchet_the_estimate_down() {
        let start = Instant::now();
        let mut bwe = Bwe::new(1_000_000.0, 100_000.0, 50_000_000.0);
        let mut t = start;
        // 600 kbit/s into a 1.5 Mbit/s link losing 5 %, with a 40 KB keyframe every 3 s.
        for _ in 0..10 {
            run_from(&mut bwe, start, t, 3, 600_000.0, 1_500_000.0, Some(20));
            t += Duration::from_secs(3);
            let burst: Vec<Sample> = (0..34u32)
                .map(|i| Sample {
                    departure: t,
                    arrival: Some(t - start + Duration::from_millis(100 + u64::from(i) * 6)),
                    size: 1200,
                })
                .collect();
            bwe.on_feedback(t + Duration::from_millis(100), burst);
        }
        assert!(bwe.estimate() > 850_000.0, "{}", bwe.estimate());
    }

    #[test]
    fn windows_that_read_high_by_chance_do_not_cut_a_lossy_links_estimate() {
        let start = Instant::now();
        let mut bwe = Bwe::new(1_000_000.0, 100_000.0, 50_000_000.0);
        // 60 packets a window; lost per window as 5 % random loss scatters them.
        let lost_per_window = [2u32, 7, 1, 8, 3, 4, 7, 2, 3, 1, 8, 2];
        let mut t = start;
        for lost in lost_per_window.into_iter().cycle().take(60) {
            let samples: Vec<Sample> = (0..60u32)
                .map(|i| {
                    let departure = t + Duration::from_micros(u64::from(i) * 8_000);
                    Sample {
                        departure,
                        arrival: (i >= lost)
                            .then(|| departure - start + Duration::from_millis(100)),
                        size: 1000,
                    }
                })
                .collect();
            t += WINDOW;
            bwe.on_feedback(t, samples);
            assert_ne!(bwe.verdict(), Verdict::HeavyLoss, "{:?}", bwe.last_window());
        }
        assert!(bwe.estimate() >= 1_000_000.0, "{}", bwe.estimate());
    }

    /// One window of 50 packets of 1,000 bytes sent evenly from `t`, each delayed by 100 ms plus
    /// `queue_ms`; the feedback arrives at the window's end.
    fn window(bwe: &mut Bwe, origin: Instant, t: Instant, queue_ms: u64) {
        let samples: Vec<Sample> = (0..50u64)
            .map(|i| {
                let departure = t + Duration::from_millis(i * 10);
                Sample {
                    departure,
                    arrival: Some(departure - origin + Duration::from_millis(100 + queue_ms)),
                    size: 1000,
                }
            })
            .collect();
        bwe.on_feedback(t + WINDOW, samples);
    }

    #[test]
    fn a_draining_queue_is_cut_for_once_not_every_window() {
        let start = Instant::now();
        let mut bwe = Bwe::new(1_200_000.0, 100_000.0, 50_000_000.0);
        let mut t = start;
        for _ in 0..4 {
            window(&mut bwe, start, t, 0);
            t += WINDOW;
        }
        // A full link: 400 ms of queue in front of every packet, draining 60 ms a window once cut.
        let mut verdicts = Vec::new();
        for q in [400u64, 400, 340, 280, 220, 160, 100] {
            window(&mut bwe, start, t, q);
            t += WINDOW;
            verdicts.push(bwe.verdict());
        }
        let cuts = verdicts.iter().filter(|v| **v == Verdict::Overuse).count();
        assert_eq!(cuts, 1, "{verdicts:?}");
        assert!(verdicts.contains(&Verdict::Draining), "{verdicts:?}");
        // One cut to 85 % of the 800 kbit/s that arrived, not a ratchet toward the floor.
        assert!(
            (600_000.0..=700_000.0).contains(&bwe.estimate()),
            "{}",
            bwe.estimate()
        );
    }

    #[test]
    fn a_starved_cpu_holding_some_packets_back_is_not_a_full_link() {
        let start = Instant::now();
        let mut bwe = Bwe::new(1_000_000.0, 100_000.0, 50_000_000.0);
        let mut t = start;
        // Every window, the process stalls for 250 ms: the packets sent in the stall arrive late
        // (up to 250 ms), the others on time.
        for _ in 0..20 {
            let samples: Vec<Sample> = (0..50u64)
                .map(|i| {
                    let departure = t + Duration::from_millis(i * 10);
                    let stalled = (i * 10).saturating_sub(200);
                    let late = if (200..450).contains(&(i * 10)) {
                        250 - stalled
                    } else {
                        0
                    };
                    Sample {
                        departure,
                        arrival: Some(departure - start + Duration::from_millis(100 + late)),
                        size: 1000,
                    }
                })
                .collect();
            bwe.on_feedback(t + WINDOW, samples);
            t += WINDOW;
            assert_ne!(bwe.verdict(), Verdict::Overuse, "{:?}", bwe.last_window());
        }
        assert!(bwe.estimate() > 1_000_000.0, "{}", bwe.estimate());
    }

    #[test]
    fn one_cut_takes_at_most_half_of_an_estimate_that_was_not_all_used() {
        let start = Instant::now();
        let mut bwe = Bwe::new(2_000_000.0, 100_000.0, 50_000_000.0);
        let mut t = start;
        // 800 kbit/s flows while 2 Mbit/s and more are allowed.
        for q in [0u64, 0, 0, 0, 300] {
            window(&mut bwe, start, t, q);
            t += WINDOW;
        }
        let before = bwe.estimate();
        assert!(before > 2_000_000.0, "{before}");
        window(&mut bwe, start, t, 300);
        assert_eq!(bwe.verdict(), Verdict::Overuse);
        // Not 85 % of the 816 kbit/s that arrived.
        assert_eq!(bwe.estimate(), before / 2.0);
    }

    #[test]
    fn a_queue_that_keeps_standing_is_cut_again_after_the_spacing() {
        let start = Instant::now();
        let mut bwe = Bwe::new(2_000_000.0, 100_000.0, 50_000_000.0);
        let mut t = start;
        for _ in 0..4 {
            window(&mut bwe, start, t, 0);
            t += WINDOW;
        }
        let mut verdicts = Vec::new();
        for _ in 0..8 {
            window(&mut bwe, start, t, 300);
            t += WINDOW;
            verdicts.push(bwe.verdict());
        }
        let cuts = verdicts.iter().filter(|v| **v == Verdict::Overuse).count();
        // Four seconds of queue from the second window on: a cut at most once a second.
        assert!((3..=4).contains(&cuts), "{verdicts:?}");
    }

    #[test]
    fn heavy_loss_cuts_the_estimate() {
        let start = Instant::now();
        let mut bwe = Bwe::new(2_000_000.0, 100_000.0, 50_000_000.0);
        // Every 4th packet lost: 25 %.
        run(&mut bwe, start, 5, 500_000.0, 100_000_000.0, Some(4));
        assert!(bwe.estimate() < 1_000_000.0, "{}", bwe.estimate());
        assert!(bwe.estimate() >= 100_000.0);
    }
}
