//! `udp-baseline`: how many packets this machine's kernel forwards per core when nothing but
//! the kernel is in the way — the yardstick for the SFU's forwarding.
//!
//! The SFU takes an SRTP packet from the lead classroom (主讲课堂) and sends it on to every
//! receiving classroom (接收课堂): one packet in, `fan-out` packets out, through webrtc-rs, with
//! SRTP decryption and encryption, RTP parsing and the forwarding core on the way. This binary
//! forwards the same packets with none of that: a relay thread receives datagrams on one UDP socket
//! and sends each, unchanged, to `--fanout` sink sockets. Its packets per second per core of relay
//! CPU are the most a user-space forwarder could hope for on this machine with these packet sizes;
//! the SFU's figure is to be read against it. The numbers are in `docs/benchmarks.md`, "UDP relay
//! baseline".
//!
//! # How
//! Everything runs in this one process, over loopback (`127.0.0.1`), in plain threads:
//! - **Relay** (one thread, one socket): `recvmmsg` of up to `--batch` datagrams (waiting for the
//!   first only, `MSG_WAITFORONE`), then one `sendmmsg` with every datagram to every sink: `n`
//!   datagrams in, `n × fanout` out, from buffers allocated once (nothing is allocated per packet).
//!   With `--no-batch` it calls `recv_from` once per datagram and `send_to` once per copy, as a
//!   forwarder without batched syscalls would. No parsing, no copying in user space, no crypto.
//! - **Generators** (`--generators`, default 1): send datagrams to the relay with `sendmmsg`, paced
//!   to an offered rate (`--rate`, datagrams per second into the relay, shared among generators;
//!   `0` = as fast as they can). Sizes follow `--sizes`, a mix by packet count (default
//!   `1200:85,120:15`: 85% video packets of 1,200 bytes — a ~1,178-byte payload, 12-byte RTP
//!   header and 10-byte SRTP tag, libwebrtc's usual maximum — and 15% audio packets of 120 bytes,
//!   an Opus frame with the same overheads), interleaved evenly. The sizes are UDP payload sizes.
//!   Each datagram starts with the generator's index (`u32`, little-endian) and a sequence number
//!   (`u64`), so `--sizes` must be at least 12 bytes (and at most 1,472: one Ethernet MTU).
//! - **Sinks** (`--fanout`, default 3: one class of a lead room and three receiving rooms): one
//!   socket and thread each, `recvmmsg` in batches, counting datagrams and the highest sequence
//!   number per generator; loss is the gap between the two.
//!
//! All sockets get `--rcvbuf` bytes of receive buffer (the kernel caps it at
//! `net.core.rmem_max`). With two or more usable cores the relay is pinned to the first and the
//! generators and sinks to the others (`--no-pin` leaves placement to the scheduler). On a 2-core
//! machine the generators and sinks share one core, and they **compete with the relay** for the
//! machine: the output says where every thread ran.
//!
//! A measurement sets the rate, waits `--warmup` seconds, and then counts over a window
//! (`--seconds`, default 10): datagrams sent by the generators, received and sent by the relay,
//! received by the sinks; the CPU time of the relay thread, of the generators and sinks together,
//! and of the `ksoftirqd` threads (each from `/proc/self/task/<tid>/schedstat`, the scheduler's
//! nanosecond run time; `utime + stime` of `stat` if it is missing); socket drops from
//! `/proc/net/udp`; and the whole machine's load from `/proc/stat` (so other processes show; in
//! clock ticks, so approximate).
//! It reports, per window:
//! - offered rate, generators' rate, relay in/s and out/s, datagrams delivered to the sinks;
//! - loss at the sinks, in % of what the sequence numbers say should have arrived (drops at the
//!   relay's socket and at the sinks' both count), and where the drops happened;
//! - relay CPU in % of one core, and **forwarded datagrams per second per core of relay CPU**:
//!   `out/s ÷ (relay CPU seconds ÷ wall seconds)`.
//!
//! `--sweep` starts at `--rate` and raises it by `--factor` (×1.5) every `--step-seconds` (5 s)
//! until the loss exceeds 1%, the relay's CPU exceeds 95% of a core, or the generators cannot
//! reach the offered rate; after a step over 1% loss it tries `--refine` rates between the last
//! held and the first failed one (geometric middles). It reports the highest rate held with at most
//! 1% loss, and the out/s per core there.
//!
//! The output is a markdown table (setup notes first); with `--json`, one line of JSON per
//! measurement on stdout (`"kind": "measurement"`, and for a sweep a last `"kind":
//! "sweep_result"` line), the notes on stderr.
//!
//! # Usage
//! ```sh
//! # the highest rate a batched relay holds, fan-out 3
//! cargo run --release -p duet-tests --bin udp-baseline -- --sweep
//! # the same without batched syscalls, and with fan-out 1
//! cargo run --release -p duet-tests --bin udp-baseline -- --sweep --no-batch
//! cargo run --release -p duet-tests --bin udp-baseline -- --sweep --fanout 1
//! # one 10 s window at 50,000 datagrams/s in, as JSON
//! cargo run --release -p duet-tests --bin udp-baseline -- --rate 50000 --json
//! ```
//!
//! # Not measured
//! SRTP, RTP/RTCP parsing, the SFU's forwarding decisions, per-subscriber state, congestion control,
//! NACK retransmission, DTLS/ICE: everything webrtc-rs and the SFU add. Many senders: the relay has
//! one socket and one input stream (an SFU has a socket per peer, or one demultiplexed socket). A
//! real network: on loopback a send runs the receiver's whole kernel receive path in the sending
//! thread (softirq in process context), so the relay's CPU includes delivering its copies into the
//! sinks' sockets but not receiving its input (that runs in the generator's thread); with a NIC
//! both ends differ (interrupts, GRO, the driver's transmit). Memory, latency and jitter. `GSO`
//! (`UDP_SEGMENT`), which does not apply to packets for different destinations.

use anyhow::{Context, anyhow, bail, ensure};
use clap::Parser;
use nix::errno::Errno;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, getsockopt, recvmmsg, sendmmsg, setsockopt,
    sockopt,
};
use nix::sys::time::TimeValLike;
use nix::unistd::{Pid, gettid};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::io::{IoSlice, IoSliceMut, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Most datagrams per `recvmmsg` (relay, sinks) and per `sendmmsg` (generators).
const MAX_BATCH: usize = 64;
/// Most messages one `sendmmsg` may carry (Linux's `UIO_MAXIOV`); bounds `--batch × --fanout`.
const MAX_SENDMMSG: usize = 1024;
/// Size of every receive buffer: above the largest datagram sent, so none is truncated.
const BUF_LEN: usize = 2048;
/// Largest datagram size accepted in `--sizes`: a 1,500-byte MTU less IPv4 and UDP headers.
const MAX_DATAGRAM: usize = 1472;
/// Bytes at the start of every datagram: generator index (`u32` LE) and sequence number (`u64` LE).
const HEADER_LEN: usize = 12;
/// Sum of the `--sizes` weights at most: the interleaving schedule has one slot per unit.
const MAX_TOTAL_WEIGHT: u64 = 10_000;
/// How long a blocked receive waits before its thread looks at the stop flag again.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// A generator sleeps at least this long when it is ahead of its schedule, so pacing costs few
/// wake-ups; at high rates it then sends the packets due in small bursts.
const MIN_PAUSE: Duration = Duration::from_micros(200);
/// … and at most this long, so it notices a new rate soon.
const MAX_PAUSE: Duration = Duration::from_millis(1);
/// A generator that fell behind (descheduled) catches up on at most this much of its schedule;
/// the rest is forgotten rather than sent as one burst that would overflow the relay's buffer.
const MAX_LAG: Duration = Duration::from_millis(20);
/// The highest loss at which a rate counts as held, in %.
const MAX_LOSS_PCT: f64 = 1.0;
/// Relay CPU, in % of a core, above which the relay counts as saturated and a sweep stops.
const SATURATED_CPU_PCT: f64 = 95.0;
/// A sweep stops when the generators send less than this share of the offered rate.
const MIN_GENERATED_SHARE: f64 = 0.9;
/// Steps of a sweep at most, refinements aside.
const MAX_SWEEP_STEPS: usize = 40;
/// [`Shared::rate_per_generator`] before the first measurement: the generators wait.
const PAUSED: f64 = -1.0;
/// How long the threads get to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A minimal UDP relay (recv → send to N, no crypto) measured on this machine (see the module doc).
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Destinations per datagram: one packet in, this many out.
    #[arg(long, default_value_t = 3)]
    fanout: usize,
    /// Plain `recv_from`/`send_to`, one syscall per datagram, instead of `recvmmsg`/`sendmmsg`.
    #[arg(long)]
    no_batch: bool,
    /// Datagrams per `recvmmsg` at most (the relay sends them all in one `sendmmsg`).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Datagram sizes (UDP payload bytes) and their weights by packet count: `size:weight,...`.
    #[arg(long, default_value = "1200:85,120:15")]
    sizes: SizeMix,
    /// Datagrams per second offered to the relay (the start rate with `--sweep`); 0 = as fast as
    /// the generators can.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Length of the measurement window, in seconds (without `--sweep`).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds at the new rate before a window opens.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Raise the rate step by step until loss, relay saturation or generator shortfall.
    #[arg(long)]
    sweep: bool,
    /// Window of each sweep step, in seconds.
    #[arg(long, default_value_t = 5.0)]
    step_seconds: f64,
    /// Rate multiplier from one sweep step to the next.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Extra sweep steps between the last held and the first failed rate.
    #[arg(long, default_value_t = 2)]
    refine: usize,
    /// Generator threads, sharing the offered rate.
    #[arg(long, default_value_t = 1)]
    generators: usize,
    /// Receive buffer asked for every socket, in bytes (capped by `net.core.rmem_max`).
    #[arg(long, default_value_t = 4 << 20)]
    rcvbuf: usize,
    /// Do not pin the relay to one core and the generators and sinks to the others.
    #[arg(long)]
    no_pin: bool,
    /// One line of JSON per measurement on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// Rejects arguments the relay cannot run with, before any thread starts.
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.fanout >= 1, "--fanout must be at least 1");
        ensure!(
            (1..=MAX_BATCH).contains(&self.batch),
            "--batch must be between 1 and {MAX_BATCH}"
        );
        ensure!(
            self.batch * self.fanout <= MAX_SENDMMSG,
            "--batch × --fanout must be at most {MAX_SENDMMSG} (one sendmmsg)"
        );
        ensure!(
            (1..=16).contains(&self.generators),
            "--generators must be between 1 and 16"
        );
        ensure!(
            self.rate.is_finite() && self.rate >= 0.0,
            "--rate must be 0 or a positive number"
        );
        ensure!(
            !self.sweep || self.rate > 0.0,
            "--sweep needs a start --rate above 0"
        );
        for (name, value) in [
            ("--seconds", self.seconds),
            ("--step-seconds", self.step_seconds),
        ] {
            ensure!(value.is_finite() && value > 0.0, "{name} must be above 0");
        }
        ensure!(
            self.warmup.is_finite() && self.warmup >= 0.0,
            "--warmup must be 0 or more"
        );
        ensure!(
            self.factor.is_finite() && self.factor > 1.0,
            "--factor must be above 1"
        );
        Ok(())
    }

    fn mode(&self) -> &'static str {
        if self.no_batch {
            "unbatched"
        } else {
            "batched"
        }
    }
}

/// The `--sizes` mix: datagram sizes and their weights by packet count.
#[derive(Clone, Debug)]
struct SizeMix {
    /// `(size in bytes, weight)`, in the order given.
    entries: Vec<(usize, u64)>,
}

impl FromStr for SizeMix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (size, weight) = part.split_once(':').unwrap_or((part, "1"));
            let size: usize = size
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the size is not a whole number of bytes"))?;
            let weight: u64 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the weight is not a whole number"))?;
            if !(HEADER_LEN..=MAX_DATAGRAM).contains(&size) {
                return Err(format!(
                    "`{part}`: sizes must be {HEADER_LEN} to {MAX_DATAGRAM} bytes"
                ));
            }
            if weight == 0 {
                return Err(format!("`{part}`: weights must be above 0"));
            }
            entries.push((size, weight));
        }
        if entries.is_empty() {
            return Err("no sizes given".into());
        }
        if entries.iter().map(|&(_, w)| w).sum::<u64>() > MAX_TOTAL_WEIGHT {
            return Err(format!(
                "the weights must add up to at most {MAX_TOTAL_WEIGHT}"
            ));
        }
        Ok(SizeMix { entries })
    }
}

impl fmt::Display for SizeMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (size, weight)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{size}:{weight}")?;
        }
        Ok(())
    }
}

impl SizeMix {
    /// One datagram size per unit of weight, interleaved evenly: each slot goes to the size
    /// furthest behind its share so far (85:15 puts an audio packet after every 5 or 6 video
    /// packets). Datagram `seq` of a generator has size `schedule[seq % len]`.
    fn schedule(&self) -> Vec<usize> {
        let total: u64 = self.entries.iter().map(|&(_, w)| w).sum();
        let mut counts = vec![0u64; self.entries.len()];
        let mut schedule = Vec::new();
        for slot in 1..=total {
            let behind = |k: usize| {
                let (_, weight) = self.entries[k];
                // Both products stay below MAX_TOTAL_WEIGHT² and fit in i64.
                (weight * slot) as i64 - (counts[k] * total) as i64
            };
            let Some(k) = (0..self.entries.len()).max_by_key(|&k| behind(k)) else {
                break;
            };
            counts[k] += 1;
            schedule.push(self.entries[k].0);
        }
        schedule
    }

    /// Mean datagram size in bytes, by packet count.
    fn mean_size(&self) -> f64 {
        let total: u64 = self.entries.iter().map(|&(_, w)| w).sum();
        let bytes: u64 = self.entries.iter().map(|&(s, w)| s as u64 * w).sum();
        bytes as f64 / total as f64
    }
}

/// Counters shared by the threads. Each is written by one thread only (a plain `store` of its
/// running total, once per batch) and read by the main thread at the edges of a window.
struct Shared {
    /// Set once, to stop every thread.
    stop: AtomicBool,
    /// Datagrams per second each generator is to send (`f64` bits); infinite: as fast as it can;
    /// [`PAUSED`]: none.
    rate_per_generator: AtomicU64,
    /// Datagrams sent, per generator.
    generated: Vec<AtomicU64>,
    /// The relay's counts.
    relay: RelayCounters,
    /// Each sink's counts.
    sinks: Vec<SinkCounters>,
}

/// What the relay thread has done so far.
#[derive(Default)]
struct RelayCounters {
    /// Datagrams received.
    received: AtomicU64,
    /// Copies sent (a datagram counts once per destination).
    sent: AtomicU64,
    /// Receive calls that returned data (`recvmmsg` or `recv_from`): `received ÷ calls` is the
    /// mean batch.
    calls: AtomicU64,
    /// Failed receive or send calls (timeouts and interruptions aside).
    errors: AtomicU64,
}

/// What one sink thread has seen so far.
struct SinkCounters {
    /// Datagrams from our generators.
    received: AtomicU64,
    /// Datagrams without a known generator's header (none are expected).
    foreign: AtomicU64,
    /// Per generator, one more than the highest sequence number seen (0 = none yet).
    next_seq: Vec<AtomicU64>,
}

/// Which thread a [`Ready`] message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Relay,
    Generator,
    Sink,
}

/// Sent by every thread once it runs: its kernel thread id (for its CPU time) and placement.
struct Ready {
    role: Role,
    tid: i32,
    /// Whether pinning to the planned cores worked (`true` also when none was planned).
    pinned: bool,
}

/// The running relay, generators and sinks.
struct Bench {
    shared: Arc<Shared>,
    threads: Vec<(String, JoinHandle<anyhow::Result<()>>)>,
    /// Thread id of the relay.
    relay_tid: i32,
    /// Thread ids of the generators and sinks.
    helper_tids: Vec<i32>,
    /// Process ids of the `ksoftirqd/N` kernel threads, whose CPU time is shown apart.
    ksoftirqd: Vec<i32>,
    /// Local ports of the relay's socket (first) and the sinks' sockets, for `/proc/net/udp`.
    relay_port: u16,
    sink_ports: Vec<u16>,
    generators: usize,
    /// The relay socket's receive buffer as the kernel reports it (twice what was granted).
    rcvbuf: Option<usize>,
    /// Cores the machine has online (for `/proc/stat`'s load in % of a core).
    online_cpus: usize,
}

/// The counts at one edge of a window.
struct Snapshot {
    at: Instant,
    relay_cpu: f64,
    helpers_cpu: f64,
    ksoftirqd_cpu: f64,
    process_cpu: f64,
    machine: Option<MachineTimes>,
    generated: u64,
    relay_received: u64,
    relay_sent: u64,
    relay_calls: u64,
    relay_errors: u64,
    sinks_received: u64,
    sinks_foreign: u64,
    /// Sum over sinks and generators of `next_seq`: what the sinks should have received.
    sinks_expected: u64,
    /// Drop counters of the relay's socket and of the sinks' sockets together.
    drops: Option<(u64, u64)>,
}

/// Whole-machine CPU time from `/proc/stat`, in clock ticks.
#[derive(Clone, Copy)]
struct MachineTimes {
    busy: u64,
    steal: u64,
    total: u64,
}

/// The result of one window.
#[derive(Clone, Debug, Serialize)]
struct Measurement {
    kind: &'static str,
    mode: &'static str,
    /// Datagrams per `recvmmsg` at most (1 when unbatched).
    batch: usize,
    fanout: usize,
    generators: usize,
    sizes: String,
    mean_size_bytes: f64,
    /// `None`: as fast as the generators can.
    offered_pps: Option<f64>,
    seconds: f64,
    /// Sent by the generators.
    generated_pps: f64,
    /// Received by the relay.
    in_pps: f64,
    /// Sent by the relay (copies).
    out_pps: f64,
    /// Received by the sinks, all together.
    delivered_pps: f64,
    /// The relay's output in UDP payload Mbit/s (mean size × out/s).
    out_mbit_s: f64,
    /// Datagrams missing at the sinks, in % of what their sequence numbers say was sent to them.
    loss_pct: f64,
    /// Datagrams dropped at the relay's socket in the window (`/proc/net/udp`).
    relay_socket_drops: Option<u64>,
    /// Datagrams dropped at the sinks' sockets in the window.
    sink_socket_drops: Option<u64>,
    relay_errors: u64,
    foreign_datagrams: u64,
    /// Datagrams per `recvmmsg` on average.
    mean_batch: f64,
    /// Relay thread CPU in % of one core.
    relay_cpu_pct: f64,
    /// Generators and sinks together, in % of one core.
    helpers_cpu_pct: f64,
    /// `ksoftirqd` threads together, in % of one core.
    ksoftirqd_cpu_pct: f64,
    /// The rest of the machine (other processes, interrupts), in % of one core; from `/proc/stat`
    /// ticks, so approximate.
    other_load_pct: Option<f64>,
    /// Time the hypervisor kept this machine's cores from running, in % of one core.
    steal_pct: Option<f64>,
    /// Relay output per core of relay CPU: `out/s ÷ (relay CPU s ÷ wall s)`.
    out_pps_per_core: f64,
}

/// Why a sweep stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum StopReason {
    /// More than 1% of the datagrams were lost.
    Loss,
    /// The relay used more than 95% of a core.
    RelaySaturated,
    /// The generators sent less than 90% of the offered rate.
    GeneratorShortfall,
    /// [`MAX_SWEEP_STEPS`] steps without any of the above.
    StepLimit,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Loss => "loss above 1%",
            StopReason::RelaySaturated => "relay CPU above 95% of a core",
            StopReason::GeneratorShortfall => "generators below 90% of the offered rate",
            StopReason::StepLimit => "step limit",
        })
    }
}

/// The last line of a sweep.
#[derive(Debug, Serialize)]
struct SweepResult {
    kind: &'static str,
    mode: &'static str,
    fanout: usize,
    stop_reason: StopReason,
    /// The offered rate of the first step that lost more than 1%, if any.
    first_failed_offered_pps: Option<f64>,
    /// The window with the highest input rate held at 1% loss or less.
    held: Option<Measurement>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.validate()?;
    let mut out = Output::new(args.json);
    let bench = Bench::start(&args)?;
    out.note(&bench.setup_notes(&args));

    let run = if args.sweep {
        sweep(&bench, &args, &mut out)
    } else {
        let offered = (args.rate > 0.0).then_some(args.rate);
        bench
            .measure(&args, offered, secs(args.seconds))
            .map(|m| out.row(&m))
    };
    let stopped = bench.stop();
    run.and(stopped)
}

/// Raises the rate until the relay loses, saturates or the generators fall short; then reports
/// the highest rate held.
fn sweep(bench: &Bench, args: &Args, out: &mut Output) -> anyhow::Result<()> {
    let window = secs(args.step_seconds);
    let mut held: Option<Measurement> = None;
    let mut failed: Option<f64> = None;
    let mut rate = args.rate;
    let mut steps = 0;
    let reason = loop {
        let m = bench.measure(args, Some(rate), window)?;
        out.row(&m);
        steps += 1;
        let reason = stop_reason(&m);
        if m.loss_pct <= MAX_LOSS_PCT {
            keep_highest(&mut held, m);
        } else {
            failed = Some(rate);
        }
        if let Some(reason) = reason {
            break reason;
        }
        if steps >= MAX_SWEEP_STEPS {
            break StopReason::StepLimit;
        }
        rate *= args.factor;
    };
    let first_failed = failed;
    if reason == StopReason::Loss {
        for _ in 0..args.refine {
            let (Some(low), Some(high)) = (held.as_ref().and_then(|h| h.offered_pps), failed)
            else {
                break;
            };
            let middle = (low * high).sqrt();
            if middle / low < 1.02 {
                break;
            }
            let m = bench.measure(args, Some(middle), window)?;
            out.row(&m);
            if m.loss_pct <= MAX_LOSS_PCT {
                keep_highest(&mut held, m);
            } else {
                failed = Some(middle);
            }
        }
    }
    out.summary(&SweepResult {
        kind: "sweep_result",
        mode: args.mode(),
        fanout: args.fanout,
        stop_reason: reason,
        first_failed_offered_pps: first_failed,
        held,
    });
    Ok(())
}

/// Keeps the measurement with the highest input rate.
fn keep_highest(held: &mut Option<Measurement>, m: Measurement) {
    if held.as_ref().is_none_or(|h| m.in_pps > h.in_pps) {
        *held = Some(m);
    }
}

/// Why a sweep should stop after this window, if it should.
fn stop_reason(m: &Measurement) -> Option<StopReason> {
    if m.loss_pct > MAX_LOSS_PCT {
        Some(StopReason::Loss)
    } else if m.relay_cpu_pct > SATURATED_CPU_PCT {
        Some(StopReason::RelaySaturated)
    } else if m
        .offered_pps
        .is_some_and(|offered| m.generated_pps < MIN_GENERATED_SHARE * offered)
    {
        Some(StopReason::GeneratorShortfall)
    } else {
        None
    }
}

impl Bench {
    /// Binds the sockets and starts the sinks, the relay and the generators ([`PAUSED`] until
    /// the first measurement sets a rate).
    fn start(args: &Args) -> anyhow::Result<Bench> {
        let cpus = allowed_cpus();
        let (relay_cpus, helper_cpus) = match cpus.split_first() {
            Some((&first, rest)) if !args.no_pin && !rest.is_empty() => {
                (vec![first], rest.to_vec())
            }
            _ => (Vec::new(), Vec::new()),
        };

        let sink_sockets = (0..args.fanout)
            .map(|_| bind_socket(args.rcvbuf))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sink_addrs = sink_sockets
            .iter()
            .map(local_v4)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let relay_socket = bind_socket(args.rcvbuf)?;
        let relay_addr = local_v4(&relay_socket)?;

        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            rate_per_generator: AtomicU64::new(PAUSED.to_bits()),
            generated: (0..args.generators).map(|_| AtomicU64::new(0)).collect(),
            relay: RelayCounters::default(),
            sinks: (0..args.fanout)
                .map(|_| SinkCounters {
                    received: AtomicU64::new(0),
                    foreign: AtomicU64::new(0),
                    next_seq: (0..args.generators).map(|_| AtomicU64::new(0)).collect(),
                })
                .collect(),
        });
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let mut bench = Bench {
            shared: shared.clone(),
            threads: Vec::new(),
            relay_tid: 0,
            helper_tids: Vec::new(),
            ksoftirqd: ksoftirqd_pids(),
            relay_port: relay_addr.port(),
            sink_ports: sink_addrs.iter().map(|a| a.port()).collect(),
            generators: args.generators,
            rcvbuf: getsockopt(&relay_socket, sockopt::RcvBuf).ok(),
            online_cpus: online_cpus(),
        };

        for (index, socket) in sink_sockets.into_iter().enumerate() {
            let (shared, ready, cpus) = (shared.clone(), ready_tx.clone(), helper_cpus.clone());
            let generators = args.generators;
            bench.spawn(format!("sink-{index}"), move || {
                announce(&ready, Role::Sink, &cpus);
                sink(&socket, index, generators, &shared)
            })?;
        }
        {
            let (shared, ready, cpus) = (shared.clone(), ready_tx.clone(), relay_cpus.clone());
            let (batch, no_batch) = (args.batch, args.no_batch);
            bench.spawn("relay".into(), move || {
                announce(&ready, Role::Relay, &cpus);
                if no_batch {
                    relay_unbatched(&relay_socket, &sink_addrs, &shared);
                    Ok(())
                } else {
                    relay_batched(&relay_socket, &sink_addrs, batch, &shared)
                }
            })?;
        }
        let schedule = Arc::new(args.sizes.schedule());
        for index in 0..args.generators {
            let (shared, ready, cpus) = (shared.clone(), ready_tx.clone(), helper_cpus.clone());
            let schedule = schedule.clone();
            bench.spawn(format!("gen-{index}"), move || {
                announce(&ready, Role::Generator, &cpus);
                generate(index, relay_addr, &schedule, &shared)
            })?;
        }
        drop(ready_tx);

        let mut unpinned = 0;
        for _ in 0..bench.threads.len() {
            let ready = ready_rx
                .recv_timeout(START_TIMEOUT)
                .context("a thread did not start")?;
            if !ready.pinned {
                unpinned += 1;
            }
            match ready.role {
                Role::Relay => bench.relay_tid = ready.tid,
                Role::Generator | Role::Sink => bench.helper_tids.push(ready.tid),
            }
        }
        if unpinned > 0 {
            eprintln!(
                "warning: {unpinned} thread(s) could not be pinned; the scheduler places them"
            );
        }
        Ok(bench)
    }

    fn spawn(
        &mut self,
        name: String,
        body: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(body)
            .with_context(|| format!("spawning {name}"))?;
        self.threads.push((name, handle));
        Ok(())
    }

    /// What the setup is, for the reader of the output.
    fn setup_notes(&self, args: &Args) -> String {
        let rcvbuf = self
            .rcvbuf
            .map_or("unknown".into(), |b| format!("{b} bytes"));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mode = if args.no_batch {
            "unbatched: recv_from + send_to per datagram".to_string()
        } else {
            format!("batched: recvmmsg ≤ {} + one sendmmsg", args.batch)
        };
        format!(
            "udp-baseline: relay {mode}, fan-out {fanout}, sizes {sizes} (mean {mean:.0} B), \
             {generators} generator(s)\n\
             machine: {online} CPU(s) online, Linux {kernel}; socket receive buffers {rcvbuf} \
             (as the kernel reports them)\n\
             relay on CPU(s) {relay_cpus}; {generators} generator(s) and {fanout} sink(s) on CPU(s) \
             {helper_cpus}: {compete}",
            fanout = args.fanout,
            sizes = args.sizes,
            mean = args.sizes.mean_size(),
            generators = args.generators,
            online = self.online_cpus,
            kernel = kernel.trim(),
            relay_cpus = thread_cpus(self.relay_tid),
            helper_cpus = thread_cpus(self.helper_tids.first().copied().unwrap_or(0)),
            compete = if self.online_cpus <= 2 {
                "on this 2-core machine they compete with the relay (and with anything else running)"
            } else {
                "they share the machine with the relay"
            },
        )
    }

    /// Offers `offered` datagrams/s (`None`: as fast as possible), waits `--warmup`, and measures
    /// one window.
    fn measure(
        &self,
        args: &Args,
        offered: Option<f64>,
        window: Duration,
    ) -> anyhow::Result<Measurement> {
        if let Some((name, _)) = self.threads.iter().find(|(_, h)| h.is_finished()) {
            bail!("thread {name} stopped early");
        }
        let per_generator = offered.map_or(f64::INFINITY, |rate| rate / self.generators as f64);
        self.shared
            .rate_per_generator
            .store(per_generator.to_bits(), Relaxed);
        thread::sleep(secs(args.warmup));
        let a = self.snapshot()?;
        thread::sleep(window);
        let b = self.snapshot()?;

        let wall = (b.at - a.at).as_secs_f64();
        let per_s = |n: u64| n as f64 / wall;
        let pct = |cpu: f64| cpu / wall * 100.0;
        let relay_cpu = b.relay_cpu - a.relay_cpu;
        let sent = b.relay_sent - a.relay_sent;
        let delivered = b.sinks_received - a.sinks_received;
        let expected = b.sinks_expected - a.sinks_expected;
        let generated = b.generated - a.generated;
        let loss_pct = if expected > 0 {
            expected.saturating_sub(delivered) as f64 / expected as f64 * 100.0
        } else if generated > 0 {
            100.0
        } else {
            0.0
        };
        let drops = a
            .drops
            .zip(b.drops)
            .map(|((ra, sa), (rb, sb))| (rb.saturating_sub(ra), sb.saturating_sub(sa)));
        let machine = a.machine.zip(b.machine).and_then(|(ma, mb)| {
            let total = mb.total.checked_sub(ma.total).filter(|&t| t > 0)? as f64;
            let cores = self.online_cpus as f64 * 100.0;
            let busy = mb.busy.saturating_sub(ma.busy) as f64 / total * cores;
            let steal = mb.steal.saturating_sub(ma.steal) as f64 / total * cores;
            Some((busy, steal))
        });
        let ours = pct(b.process_cpu - a.process_cpu) + pct(b.ksoftirqd_cpu - a.ksoftirqd_cpu);
        let calls = b.relay_calls - a.relay_calls;
        let received = b.relay_received - a.relay_received;

        Ok(Measurement {
            kind: "measurement",
            mode: args.mode(),
            batch: if args.no_batch { 1 } else { args.batch },
            fanout: args.fanout,
            generators: args.generators,
            sizes: args.sizes.to_string(),
            mean_size_bytes: round(args.sizes.mean_size(), 1),
            offered_pps: offered.map(|r| round(r, 0)),
            seconds: round(wall, 3),
            generated_pps: round(per_s(generated), 0),
            in_pps: round(per_s(received), 0),
            out_pps: round(per_s(sent), 0),
            delivered_pps: round(per_s(delivered), 0),
            out_mbit_s: round(per_s(sent) * args.sizes.mean_size() * 8.0 / 1e6, 1),
            loss_pct: round(loss_pct, 3),
            relay_socket_drops: drops.map(|d| d.0),
            sink_socket_drops: drops.map(|d| d.1),
            relay_errors: b.relay_errors - a.relay_errors,
            foreign_datagrams: b.sinks_foreign - a.sinks_foreign,
            mean_batch: if calls > 0 {
                round(received as f64 / calls as f64, 2)
            } else {
                0.0
            },
            relay_cpu_pct: round(pct(relay_cpu), 1),
            helpers_cpu_pct: round(pct(b.helpers_cpu - a.helpers_cpu), 1),
            ksoftirqd_cpu_pct: round(pct(b.ksoftirqd_cpu - a.ksoftirqd_cpu), 1),
            other_load_pct: machine.map(|(busy, _)| round((busy - ours).max(0.0), 1)),
            steal_pct: machine.map(|(_, steal)| round(steal, 1)),
            out_pps_per_core: if relay_cpu > 0.0 {
                round(sent as f64 / relay_cpu, 0)
            } else {
                0.0
            },
        })
    }

    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let shared = &*self.shared;
        let drops = udp_drops().map(|by_port| {
            let at = |port: &u16| by_port.get(port).copied().unwrap_or(0);
            (at(&self.relay_port), self.sink_ports.iter().map(at).sum())
        });
        let process = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
        let mut helpers_cpu = 0.0;
        for &tid in &self.helper_tids {
            helpers_cpu += thread_cpu(tid)?;
        }
        Ok(Snapshot {
            at: Instant::now(),
            relay_cpu: thread_cpu(self.relay_tid)?,
            helpers_cpu,
            // A kernel thread that cannot be read counts as idle.
            ksoftirqd_cpu: self
                .ksoftirqd
                .iter()
                .filter_map(|&pid| task_cpu(&format!("/proc/{pid}")))
                .sum(),
            process_cpu: (process.user_time().num_microseconds()
                + process.system_time().num_microseconds()) as f64
                / 1e6,
            machine: machine_times(),
            generated: shared.generated.iter().map(|g| g.load(Relaxed)).sum(),
            relay_received: shared.relay.received.load(Relaxed),
            relay_sent: shared.relay.sent.load(Relaxed),
            relay_calls: shared.relay.calls.load(Relaxed),
            relay_errors: shared.relay.errors.load(Relaxed),
            sinks_received: shared.sinks.iter().map(|s| s.received.load(Relaxed)).sum(),
            sinks_foreign: shared.sinks.iter().map(|s| s.foreign.load(Relaxed)).sum(),
            sinks_expected: shared
                .sinks
                .iter()
                .flat_map(|s| s.next_seq.iter().map(|n| n.load(Relaxed)))
                .sum(),
            drops,
        })
    }

    /// Stops every thread and waits for them; reports the first thread's error, if any.
    fn stop(mut self) -> anyhow::Result<()> {
        self.shared.stop.store(true, Relaxed);
        let mut first_error = None;
        for (name, handle) in self.threads.drain(..) {
            let result = match handle.join() {
                Ok(result) => result,
                Err(_) => Err(anyhow!("panicked")),
            };
            if let Err(e) = result {
                eprintln!("thread {name}: {e:#}");
                first_error.get_or_insert(e.context(format!("thread {name}")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Bench {
    /// Whatever happens in `main`, the threads stop (they look at the flag every [`READ_TIMEOUT`]).
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
    }
}

/// Pins the calling thread to `cpus` (if any were planned) and reports it ready.
fn announce(ready: &mpsc::Sender<Ready>, role: Role, cpus: &[usize]) {
    let pinned = cpus.is_empty() || pin_current_thread(cpus).is_ok();
    // The main thread waits for this message; if it has given up, there is no one to tell.
    let _ = ready.send(Ready {
        role,
        tid: gettid().as_raw(),
        pinned,
    });
}

/// The relay with batched syscalls: `recvmmsg` up to `batch`, then one `sendmmsg` of every
/// datagram to every destination. Buffers and headers are allocated once.
fn relay_batched(
    socket: &UdpSocket,
    dests: &[SocketAddrV4],
    batch: usize,
    shared: &Shared,
) -> anyhow::Result<()> {
    let fd = socket.as_raw_fd();
    let fanout = dests.len();
    let mut bufs = batch_buffers()?;
    let mut lens = [0usize; MAX_BATCH];
    let mut recv_headers = MultiHeaders::<SockaddrIn>::preallocate(batch, None);
    let mut send_headers = MultiHeaders::<SockaddrIn>::preallocate(batch * fanout, None);
    // Message `i` of a `sendmmsg` goes to `dests[i % fanout]`.
    let addrs: Vec<Option<SockaddrIn>> = (0..batch)
        .flat_map(|_| dests.iter().map(|&d| Some(SockaddrIn::from(d))))
        .collect();
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    let counters = &shared.relay;
    let (mut received, mut sent, mut calls, mut errors) = (0u64, 0u64, 0u64, 0u64);

    while !shared.stop.load(Relaxed) {
        let n = {
            let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            match recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut().take(batch),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(msgs) => {
                    let mut n = 0;
                    for (len, msg) in lens.iter_mut().zip(msgs) {
                        *len = msg.bytes;
                        n += 1;
                    }
                    n
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(_) => {
                    errors += 1;
                    counters.errors.store(errors, Relaxed);
                    continue;
                }
            }
        };
        received += n as u64;
        calls += 1;

        let iovs: [[IoSlice<'_>; 1]; MAX_BATCH] =
            std::array::from_fn(|i| [IoSlice::new(bufs[i].get(..lens[i]).unwrap_or_default())]);
        let total = n * fanout;
        let result = loop {
            let copies = iovs[..n]
                .iter()
                .flat_map(|iov| std::iter::repeat_n(iov, fanout));
            match sendmmsg(
                fd,
                &mut send_headers,
                copies,
                &addrs[..total],
                no_cmsgs,
                MsgFlags::empty(),
            ) {
                Err(Errno::EINTR) => continue,
                // The result is not iterated: nix's `MultiResults` reads each message's address
                // slot, which `sendmmsg` never fills. A blocking UDP socket sends the whole vector
                // unless a message fails, and Linux then reports that error on the socket's next
                // call, where it is counted below or on the next receive.
                other => break other.map(|_| ()),
            }
        };
        match result {
            Ok(()) => sent += total as u64,
            Err(_) => errors += 1,
        }
        counters.received.store(received, Relaxed);
        counters.sent.store(sent, Relaxed);
        counters.calls.store(calls, Relaxed);
        counters.errors.store(errors, Relaxed);
    }
    Ok(())
}

/// The relay without batching: one `recv_from` per datagram, one `send_to` per copy.
fn relay_unbatched(socket: &UdpSocket, dests: &[SocketAddrV4], shared: &Shared) {
    let mut buf = [0u8; BUF_LEN];
    let counters = &shared.relay;
    let (mut received, mut sent, mut errors) = (0u64, 0u64, 0u64);
    while !shared.stop.load(Relaxed) {
        let len = match socket.recv_from(&mut buf) {
            Ok((len, _)) => len,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => {
                errors += 1;
                counters.errors.store(errors, Relaxed);
                continue;
            }
        };
        received += 1;
        let datagram = buf.get(..len).unwrap_or_default();
        for &dest in dests {
            match socket.send_to(datagram, dest) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
        counters.received.store(received, Relaxed);
        counters.calls.store(received, Relaxed);
        counters.sent.store(sent, Relaxed);
        counters.errors.store(errors, Relaxed);
    }
}

/// A generator: sends numbered datagrams of the scheduled sizes to the relay, paced to the rate
/// in [`Shared::rate_per_generator`], in `sendmmsg` batches.
fn generate(
    index: usize,
    relay: SocketAddrV4,
    schedule: &[usize],
    shared: &Shared,
) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a generator")?;
    let fd = socket.as_raw_fd();
    let mut bufs = batch_buffers()?;
    for buf in bufs.iter_mut() {
        buf.fill(0x5a);
    }
    let mut lens = [0usize; MAX_BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(MAX_BATCH, None);
    let addrs = vec![Some(SockaddrIn::from(relay)); MAX_BATCH];
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    let generator_id = u32::try_from(index)
        .context("generator index")?
        .to_le_bytes();
    let counter = shared
        .generated
        .get(index)
        .context("generator without a counter")?;

    let mut seq = 0u64;
    let mut rate = f64::NAN;
    // The schedule in force: datagram `base_seq + k` is due at `base + k / rate`.
    let (mut base, mut base_seq) = (Instant::now(), 0u64);
    while !shared.stop.load(Relaxed) {
        let now = Instant::now();
        let wanted = f64::from_bits(shared.rate_per_generator.load(Relaxed));
        if wanted.to_bits() != rate.to_bits() {
            rate = wanted;
            (base, base_seq) = (now, seq);
        }
        let paced = rate > 0.0 && rate.is_finite();
        let due = if paced {
            let mut due =
                base_seq + (now.saturating_duration_since(base).as_secs_f64() * rate) as u64;
            let max_lag = ((MAX_LAG.as_secs_f64() * rate) as u64).max(MAX_BATCH as u64);
            if due > seq + max_lag {
                // Forget the oldest part of the backlog by moving the schedule's start on.
                base += secs((due - seq - max_lag) as f64 / rate);
                due = seq + max_lag;
            }
            due.saturating_sub(seq)
        } else if rate == f64::INFINITY {
            MAX_BATCH as u64
        } else {
            0
        };
        if due == 0 {
            let pause = if paced {
                let next = base + secs((seq + 1).saturating_sub(base_seq) as f64 / rate);
                next.saturating_duration_since(now)
            } else {
                MAX_PAUSE
            };
            thread::sleep(pause.clamp(MIN_PAUSE, MAX_PAUSE));
            continue;
        }

        let n = (due as usize).min(MAX_BATCH);
        for (k, (buf, len)) in bufs.iter_mut().zip(lens.iter_mut()).take(n).enumerate() {
            let this = seq + k as u64;
            buf[..4].copy_from_slice(&generator_id);
            buf[4..HEADER_LEN].copy_from_slice(&this.to_le_bytes());
            *len = schedule
                .get((this % schedule.len().max(1) as u64) as usize)
                .copied()
                .unwrap_or(HEADER_LEN);
        }
        let iovs: [[IoSlice<'_>; 1]; MAX_BATCH] =
            std::array::from_fn(|i| [IoSlice::new(bufs[i].get(..lens[i]).unwrap_or_default())]);
        match sendmmsg(
            fd,
            &mut headers,
            iovs[..n].iter(),
            &addrs[..n],
            no_cmsgs,
            MsgFlags::empty(),
        ) {
            // Not iterated, for the reason given in `relay_batched`.
            Ok(_) => {
                seq += n as u64;
                counter.store(seq, Relaxed);
            }
            Err(Errno::EINTR) => {}
            Err(e) => bail!("generator {index}: sendmmsg: {e}"),
        }
    }
    Ok(())
}

/// A sink: receives in `recvmmsg` batches and counts datagrams and sequence numbers.
fn sink(
    socket: &UdpSocket,
    index: usize,
    generators: usize,
    shared: &Shared,
) -> anyhow::Result<()> {
    let fd = socket.as_raw_fd();
    let counters = shared.sinks.get(index).context("sink without counters")?;
    let mut bufs = batch_buffers()?;
    let mut lens = [0usize; MAX_BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(MAX_BATCH, None);
    let mut next_seq = vec![0u64; generators];
    let (mut received, mut foreign) = (0u64, 0u64);
    while !shared.stop.load(Relaxed) {
        let n = {
            let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            match recvmmsg(
                fd,
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(msgs) => {
                    let mut n = 0;
                    for (len, msg) in lens.iter_mut().zip(msgs) {
                        *len = msg.bytes;
                        n += 1;
                    }
                    n
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => bail!("sink {index}: recvmmsg: {e}"),
            }
        };
        for (buf, &len) in bufs.iter().zip(&lens).take(n) {
            let known = parse_header(buf.get(..len).unwrap_or_default())
                .and_then(|(generator, seq)| Some((next_seq.get_mut(generator)?, seq)));
            match known {
                Some((next, seq)) => {
                    *next = (*next).max(seq.saturating_add(1));
                    received += 1;
                }
                None => foreign += 1,
            }
        }
        counters.received.store(received, Relaxed);
        counters.foreign.store(foreign, Relaxed);
        for (counter, &next) in counters.next_seq.iter().zip(&next_seq) {
            counter.store(next, Relaxed);
        }
    }
    Ok(())
}

/// Generator index and sequence number at the start of a datagram.
fn parse_header(datagram: &[u8]) -> Option<(usize, u64)> {
    let (generator, rest) = datagram.split_first_chunk::<4>()?;
    let (seq, _) = rest.split_first_chunk::<8>()?;
    let generator = usize::try_from(u32::from_le_bytes(*generator)).ok()?;
    Some((generator, u64::from_le_bytes(*seq)))
}

/// [`MAX_BATCH`] receive buffers on the heap (128 KiB; too much for a thread's stack frame).
fn batch_buffers() -> anyhow::Result<Box<[[u8; BUF_LEN]; MAX_BATCH]>> {
    vec![[0u8; BUF_LEN]; MAX_BATCH]
        .into_boxed_slice()
        .try_into()
        .map_err(|_| anyhow!("batch buffers of the wrong length"))
}

/// A UDP socket on `127.0.0.1` with a receive timeout and (at most) `rcvbuf` bytes of buffer.
fn bind_socket(rcvbuf: usize) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a UDP socket")?;
    socket
        .set_read_timeout(Some(READ_TIMEOUT))
        .context("setting a read timeout")?;
    setsockopt(&socket, sockopt::RcvBuf, &rcvbuf).context("setting SO_RCVBUF")?;
    Ok(socket)
}

fn local_v4(socket: &UdpSocket) -> anyhow::Result<SocketAddrV4> {
    match socket.local_addr().context("local address")? {
        SocketAddr::V4(addr) => Ok(addr),
        SocketAddr::V6(addr) => bail!("bound to IPv6 {addr}"),
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn pin_current_thread(cpus: &[usize]) -> nix::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)
}

/// The CPUs a thread of this process may run on, as a list (`0`, `1`, `0-1`).
fn thread_cpus(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// CPU time of a thread of this process, in seconds.
fn thread_cpu(tid: i32) -> anyhow::Result<f64> {
    task_cpu(&format!("/proc/self/task/{tid}"))
        .with_context(|| format!("reading the CPU time of thread {tid}"))
}

/// CPU time of a task directory (`/proc/<pid>` or `/proc/self/task/<tid>`), in seconds: the
/// scheduler's run time in `schedstat` (nanoseconds), else `utime + stime` from `stat` (clock
/// ticks, 100 per second on Linux).
fn task_cpu(dir: &str) -> Option<f64> {
    if let Some(ns) = std::fs::read_to_string(format!("{dir}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
    {
        return Some(ns as f64 / 1e9);
    }
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is the
    // first, utime the 12th and stime the 13th.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Process ids of the kernel's `ksoftirqd/N` threads.
fn ksoftirqd_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            comm.starts_with("ksoftirqd/").then_some(pid)
        })
        .collect()
}

/// Cores online, from the per-CPU lines of `/proc/stat` (at least 1).
fn online_cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|stat| {
            stat.lines()
                .filter(|l| {
                    l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
                })
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

/// The machine's CPU time so far, from the first line of `/proc/stat`.
fn machine_times() -> Option<MachineTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user and nice).
    let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = f[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some(MachineTimes {
        busy,
        steal,
        total: busy + idle + iowait,
    })
}

/// Drop counters of the IPv4 loopback sockets of this network namespace, by local port.
fn udp_drops() -> Option<HashMap<u16, u64>> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    Some(
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (addr, port) = fields.get(1)?.split_once(':')?;
                if addr != "0100007F" {
                    return None;
                }
                let port = u16::from_str_radix(port, 16).ok()?;
                let drops = fields.last()?.parse().ok()?;
                Some((port, drops))
            })
            .collect(),
    )
}

fn secs(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Where the results go: a markdown table or JSON lines on stdout.
struct Output {
    json: bool,
    header_done: bool,
}

impl Output {
    fn new(json: bool) -> Self {
        Output {
            json,
            header_done: false,
        }
    }

    /// Setup notes: before the table, or on stderr beside the JSON.
    fn note(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}\n");
        }
    }

    fn row(&mut self, m: &Measurement) {
        if self.json {
            print_json(m);
            return;
        }
        if !self.header_done {
            println!(
                "| offered in/s | generated/s | relay in/s | relay out/s | loss % | drops relay / sinks \
                 | relay CPU % | gen+sinks CPU % | ksoftirqd % | other load % | mean batch \
                 | out/s per relay core |"
            );
            println!("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
            self.header_done = true;
        }
        let opt = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {} / {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.0} |",
            m.offered_pps.map_or("max".into(), |r| format!("{r:.0}")),
            m.generated_pps,
            m.in_pps,
            m.out_pps,
            m.loss_pct,
            opt(m.relay_socket_drops),
            opt(m.sink_socket_drops),
            m.relay_cpu_pct,
            m.helpers_cpu_pct,
            m.ksoftirqd_cpu_pct,
            m.other_load_pct.map_or("?".into(), |v| format!("{v:.1}")),
            m.mean_batch,
            m.out_pps_per_core,
        );
        let _ = std::io::stdout().flush();
    }

    fn summary(&self, result: &SweepResult) {
        if self.json {
            print_json(result);
            return;
        }
        println!();
        match &result.held {
            Some(m) => println!(
                "highest rate held at ≤ 1% loss ({}, batch ≤ {}, fan-out {}): {:.0} in/s, \
                 {:.0} out/s ({:.0} Mbit/s), loss {:.2}%, relay CPU {:.1}% → {:.0} out/s per \
                 relay core (stopped: {})",
                m.mode,
                m.batch,
                m.fanout,
                m.in_pps,
                m.out_pps,
                m.out_mbit_s,
                m.loss_pct,
                m.relay_cpu_pct,
                m.out_pps_per_core,
                result.stop_reason,
            ),
            None => println!(
                "no rate held at ≤ 1% loss (stopped: {}); lower --rate",
                result.stop_reason
            ),
        }
    }
}

fn print_json(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("cannot encode a result as JSON: {e}"),
    }
    let _ = std::io::stdout().flush();
}
