//! What the load tool counts: packets and bytes sent by publishers (into the SFU), received by
//! subscribers (out of the SFU), receiver loss and jitter per stream, join times, and the SFU
//! process's CPU time and peak memory read from `/proc`.
//!
//! Counters are atomics shared by every task of a run; a measurement window is the difference
//! of two [`Snapshot`]s.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters of a whole run.
#[derive(Debug, Default)]
pub struct Counters {
    /// RTP packets written by publishers.
    pub sent_packets: AtomicU64,
    /// Their bytes (payload + 12-byte header).
    pub sent_bytes: AtomicU64,
    /// RTP packets received by subscribers, after SRTP.
    pub recv_packets: AtomicU64,
    /// Their bytes (payload + 12-byte header).
    pub recv_bytes: AtomicU64,
    /// Packets expected by subscribers from sequence numbers.
    pub expected: AtomicU64,
    /// Keyframe requests (PLI/FIR) publishers received.
    pub plis: AtomicU64,
    /// NACKs publishers received (answered by webrtc-rs's responder).
    pub nacks: AtomicU64,
    /// The latest jitter estimate of each received stream.
    jitters: Mutex<Vec<Duration>>,
    /// Join times, from the first signalling message to media flowing on every expected track.
    joins: Mutex<Vec<Duration>>,
    /// Errors met (signalling, negotiation), counted and logged.
    pub errors: AtomicU64,
}

impl Counters {
    /// Records a join time.
    pub fn join(&self, d: Duration) {
        if let Ok(mut j) = self.joins.lock() {
            j.push(d);
        }
    }

    /// Join times so far.
    pub fn join_times(&self) -> Vec<Duration> {
        self.joins.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// A slot for a new received stream's jitter estimate.
    pub fn new_stream(&self) -> usize {
        self.jitters
            .lock()
            .map(|mut j| {
                j.push(Duration::ZERO);
                j.len() - 1
            })
            .unwrap_or(usize::MAX)
    }

    /// Updates a stream's jitter estimate.
    pub fn set_jitter(&self, slot: usize, jitter: Duration) {
        if let Ok(mut j) = self.jitters.lock()
            && let Some(s) = j.get_mut(slot)
        {
            *s = jitter;
        }
    }

    /// Mean and largest jitter over the received streams.
    pub fn jitter(&self) -> Option<(Duration, Duration)> {
        let j = self.jitters.lock().ok()?;
        let n = u32::try_from(j.len()).ok().filter(|n| *n > 0)?;
        let sum: Duration = j.iter().sum();
        Some((sum / n, j.iter().copied().max().unwrap_or_default()))
    }

    /// A snapshot of the packet counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            sent_packets: self.sent_packets.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            recv_packets: self.recv_packets.load(Ordering::Relaxed),
            recv_bytes: self.recv_bytes.load(Ordering::Relaxed),
            expected: self.expected.load(Ordering::Relaxed),
        }
    }
}

/// Packet counters at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    /// When.
    pub at: Instant,
    /// See [`Counters::sent_packets`].
    pub sent_packets: u64,
    /// See [`Counters::sent_bytes`].
    pub sent_bytes: u64,
    /// See [`Counters::recv_packets`].
    pub recv_packets: u64,
    /// See [`Counters::recv_bytes`].
    pub recv_bytes: u64,
    /// See [`Counters::expected`].
    pub expected: u64,
}

/// Rates over a window between two snapshots.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Rates {
    /// Window length, seconds.
    pub seconds: f64,
    /// Packets per second into the SFU.
    pub pps_in: f64,
    /// Packets per second out of the SFU.
    pub pps_out: f64,
    /// Bits per second into the SFU.
    pub bps_in: f64,
    /// Bits per second out of the SFU.
    pub bps_out: f64,
    /// Receiver loss over the window, percent of expected packets.
    pub loss_pct: f64,
}

impl Rates {
    /// Rates between `a` and `b` (`b` later).
    pub fn between(a: &Snapshot, b: &Snapshot) -> Rates {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let recv = b.recv_packets.saturating_sub(a.recv_packets);
        let expected = b.expected.saturating_sub(a.expected);
        Rates {
            seconds: secs,
            pps_in: b.sent_packets.saturating_sub(a.sent_packets) as f64 / secs,
            pps_out: recv as f64 / secs,
            bps_in: b.sent_bytes.saturating_sub(a.sent_bytes) as f64 * 8.0 / secs,
            bps_out: b.recv_bytes.saturating_sub(a.recv_bytes) as f64 * 8.0 / secs,
            loss_pct: loss_pct(expected, recv),
        }
    }
}

/// Loss as a percentage of what was expected (0 when nothing was expected).
pub fn loss_pct(expected: u64, received: u64) -> f64 {
    if expected == 0 {
        return 0.0;
    }
    expected.saturating_sub(received) as f64 * 100.0 / expected as f64
}

/// Loss and jitter accounting of one received RTP stream (RFC 3550 §6.4.1, A.8).
#[derive(Debug)]
pub struct StreamReceiver {
    clock_rate: u32,
    base: Option<u64>,
    highest: u64,
    /// Packets received.
    pub received: u64,
    /// Previous packet's transit time, in RTP clock units.
    last_transit: Option<i64>,
    /// Jitter estimate in RTP clock units, scaled by 16 as in RFC 3550 A.8.
    jitter16: u64,
    origin: Instant,
}

impl StreamReceiver {
    /// A receiver for a stream with this clock rate, timing arrivals from `origin`.
    pub fn new(clock_rate: u32, origin: Instant) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            base: None,
            highest: 0,
            received: 0,
            last_transit: None,
            jitter16: 0,
            origin,
        }
    }

    /// Accounts one packet; returns how many more packets are now expected (the growth of the
    /// extended highest sequence number).
    pub fn on_packet(&mut self, seq: u16, ts: u32, arrival: Instant) -> u64 {
        self.received += 1;
        let grown = match self.base {
            None => {
                let ext = u64::from(seq) + (1 << 16);
                self.base = Some(ext);
                self.highest = ext;
                1
            }
            Some(_) => {
                // Extend against the highest seen (RFC 3550 A.1).
                let cycle = self.highest & !0xffff;
                let cands = [
                    cycle + u64::from(seq),
                    (cycle + (1 << 16)) + u64::from(seq),
                    cycle.saturating_sub(1 << 16) + u64::from(seq),
                ];
                let ext = cands
                    .into_iter()
                    .min_by_key(|c| c.abs_diff(self.highest))
                    .unwrap_or(self.highest);
                if ext > self.highest {
                    let g = ext - self.highest;
                    self.highest = ext;
                    g
                } else {
                    0
                }
            }
        };
        let arrival_units =
            (arrival.duration_since(self.origin).as_secs_f64() * f64::from(self.clock_rate)) as i64;
        let transit = arrival_units - i64::from(ts);
        if let Some(last) = self.last_transit {
            // Wrapping timestamps make huge jumps; they are not jitter.
            let d = (transit - last).unsigned_abs();
            if d < u64::from(self.clock_rate) * 10 {
                let j = self.jitter16 as i64 + d as i64 - ((self.jitter16 as i64 + 8) >> 4);
                self.jitter16 = j.max(0) as u64;
            }
        }
        self.last_transit = Some(transit);
        grown
    }

    /// The jitter estimate.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64((self.jitter16 >> 4) as f64 / f64::from(self.clock_rate))
    }
}

/// CPU time and memory of a process, read from `/proc/<pid>`.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    /// When it was read.
    pub at: Instant,
    /// User + system CPU time.
    pub cpu: Duration,
    /// Peak resident set size (VmHWM), bytes.
    pub peak_rss: u64,
    /// Current resident set size (VmRSS), bytes.
    pub rss: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn proc_sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime is field 14 and stime 15 of the whole line; `after` starts at field 3.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
            .parse()?)
    };
    let total = ticks(11)? + ticks(12)?;
    let hz = clock_ticks_per_second();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(ProcSample {
        at: Instant::now(),
        cpu: Duration::from_secs_f64(total as f64 / hz as f64),
        peak_rss: kb("VmHWM:"),
        rss: kb("VmRSS:"),
    })
}

fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100)
}

/// The share of one core a process used between two samples, percent.
pub fn cpu_pct(a: &ProcSample, b: &ProcSample) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    b.cpu.saturating_sub(a.cpu).as_secs_f64() * 100.0 / wall
}

/// p50, p95, p99 and max of some durations, in milliseconds.
pub fn percentiles_ms(mut v: Vec<Duration>) -> Option<[f64; 4]> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    };
    Some([at(0.50), at(0.95), at(0.99), at(1.0)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counts_gaps_across_a_wrap() {
        let t0 = Instant::now();
        let mut r = StreamReceiver::new(90_000, t0);
        let mut expected = 0;
        for seq in [65_533u16, 65_534, 65_535, 1, 2] {
            expected += r.on_packet(seq, 0, t0);
        }
        // 65533..=2 is six numbers; 0 never came.
        assert_eq!(expected, 6);
        assert_eq!(r.received, 5);
        assert!((loss_pct(expected, r.received) - 100.0 / 6.0).abs() < 1e-9);
        // A late duplicate expands nothing.
        assert_eq!(r.on_packet(65_535, 0, t0), 0);
    }

    #[test]
    fn jitter_grows_with_irregular_arrivals() {
        let t0 = Instant::now();
        let mut steady = StreamReceiver::new(90_000, t0);
        let mut shaky = StreamReceiver::new(90_000, t0);
        for i in 0..200u32 {
            let ts = i * 3600; // 40 ms
            let at = t0 + Duration::from_millis(u64::from(i) * 40);
            steady.on_packet(i as u16, ts, at);
            let wobble = if i % 2 == 0 { 15 } else { 0 };
            shaky.on_packet(i as u16, ts, at + Duration::from_millis(wobble));
        }
        assert!(
            steady.jitter() < Duration::from_millis(1),
            "{:?}",
            steady.jitter()
        );
        assert!(
            shaky.jitter() > Duration::from_millis(10),
            "{:?}",
            shaky.jitter()
        );
    }

    #[test]
    fn percentiles_of_a_hundred() {
        let v = (1..=100).map(Duration::from_millis).collect();
        let [p50, p95, p99, max] = percentiles_ms(v).unwrap();
        assert_eq!((p50, p95, p99, max), (50.0, 95.0, 99.0, 100.0));
        assert!(percentiles_ms(vec![]).is_none());
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = proc_sample(std::process::id()).unwrap();
        assert!(s.peak_rss > 0 && s.rss > 0);
    }
}
