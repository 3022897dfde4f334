//! [`SourceSupervisor`]: keeps one source recorded for a whole lesson although the camera drops
//! out (unplugged, rebooted, network cut).
//!
//! Owns one thread that drives a [`SourceRecorder`] per *segment* and, when a recorder ends without
//! being asked (its source ended or failed), closes that segment, records a [`Gap`] and starts the
//! source again with exponential backoff ([`Backoff`]) into a new file. Segments are numbered
//! from 1: `<base>-1.mkv`, `<base>-2.mkv`, …; a file whose recorder never got a frame (a failed
//! attempt) is removed and its number reused.
//!
//! The supervisor is an explicit state machine, in the manner of gst-plugins-rs' `fallbacksrc`;
//! every transition is logged with the state's stable upper-case token ([`SupervisorState`]):
//!
//! ```text
//! STARTING ──first frame──▶ RECORDING{segment} ──source ended/failed──▶ RECONNECTING{attempt, since, reason}
//!     │                        ▲                                          │   │ attempt failed:
//!     │ no frame               └──────────── first frame of new segment ──┘   └─▶ attempt+1, wait backoff
//!     └──────────────────────────────────────────────────────────────────▶ RECONNECTING
//! any state ──stop()──▶ STOPPED
//! ```
//!
//! Invariants:
//! - At most one [`SourceRecorder`] is alive at any time; it is stopped (EOS, wait, `Null`) before
//!   the next one starts.
//! - At most one gap is open, and only in `STARTING`-failed or `RECONNECTING`; it opens when the
//!   supervisor notices the loss (or at the start, if the source never came) and closes when the
//!   first frame of the next segment reaches its file, or at [`SourceSupervisor::stop`].
//! - [`SourceSupervisor::stop`] is prompt in every state: the thread waits on its command channel
//!   (backoff, recording) or polls it every [`POLL`] (connecting); only a recording segment costs
//!   an EOS (at most the recorder's `EOS_DEADLINE`).
//! - The decision of how long to wait is pure ([`Backoff::delay`]); the clock is read only here,
//!   in the I/O shell, with [`Instant`].
//! - Calls block (the GStreamer API does): from async code use `spawn_blocking`.
//!
//! Driving it:
//! ```no_run
//! # fn main() -> Result<(), duet_recorder::capture::CaptureError> {
//! use duet_recorder::capture::supervisor::{SourceSupervisor, SupervisorConfig};
//! use std::time::Duration;
//! let sup = SourceSupervisor::start(
//!     "rtsp://10.0.0.21/cam",
//!     "/var/lib/duet/teacher".as_ref(), // → teacher-1.mkv, teacher-2.mkv, …
//!     SupervisorConfig::default(),
//! )?;
//! sup.wait_recording(Duration::from_secs(10)); // first frame on disk (or keep trying)
//! // … the lesson; the camera may come and go …
//! let lesson = sup.stop(); // segments, gaps, restarts
//! for gap in &lesson.gaps {
//!     eprintln!("no picture from {:?} to {:?}: {}", gap.from, gap.to, gap.reason);
//! }
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{CaptureError, Ending, RecordedFile, SourceOptions, SourceRecorder, redact};

/// How often the supervisor thread looks at its command channel while a recorder connects.
pub const POLL: Duration = Duration::from_millis(100);

/// Exponential backoff between attempts to start a lost source again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the first attempt after a loss. Default 250 ms.
    pub initial: Duration,
    /// The wait doubles per failed attempt up to this. Default 4 s.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(4),
        }
    }
}

impl Backoff {
    /// How long to wait before attempt `attempt` (1-based; 0 is taken as 1):
    /// `initial · 2^(attempt−1)`, at most `max`. Pure; never overflows.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// How a [`SourceSupervisor`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Waits between attempts.
    pub backoff: Backoff,
    /// How long one attempt may take to get its first frame before it counts as failed.
    /// Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl SupervisorConfig {
    /// Refuses a zero initial backoff (a busy loop against a dead camera), a maximum below the
    /// initial wait, and a zero connect timeout.
    pub fn validate(&self) -> Result<(), CaptureError> {
        let invalid = |reason: &str| {
            Err(CaptureError::Config {
                reason: reason.to_owned(),
            })
        };
        if self.backoff.initial.is_zero() {
            return invalid("backoff.initial must be > 0");
        }
        if self.backoff.max < self.backoff.initial {
            return invalid("backoff.max must be ≥ backoff.initial");
        }
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout must be > 0");
        }
        Ok(())
    }
}

/// Where a supervised source stands. `Display` gives the stable token for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorState {
    /// `STARTING`: the first segment's recorder runs, no frame yet.
    Starting,
    /// `RECORDING`: frames reach segment `segment`'s file (1-based).
    Recording {
        /// The segment being written.
        segment: u32,
    },
    /// `RECONNECTING`: the source is lost; waiting for, or running, attempt `attempt`.
    Reconnecting {
        /// The current attempt since the loss, 1-based.
        attempt: u32,
        /// When the loss was noticed.
        since: Instant,
        /// Why the last recorder or attempt ended.
        reason: String,
    },
    /// `STOPPED`: [`SourceSupervisor::stop`] was called; nothing runs any more.
    Stopped,
}

impl SupervisorState {
    /// The stable upper-case token for logs and metrics.
    pub fn token(&self) -> &'static str {
        match self {
            Self::Starting => "STARTING",
            Self::Recording { .. } => "RECORDING",
            Self::Reconnecting { .. } => "RECONNECTING",
            Self::Stopped => "STOPPED",
        }
    }
}

impl fmt::Display for SupervisorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// A time without recording, as offsets from the supervisor's start (the lesson's timeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// When the loss was noticed (or 0 if the source never came at the start).
    pub from: Duration,
    /// When the next segment's first frame was written, or when the supervisor stopped if the
    /// source never came back. `None` only while the gap is still open.
    pub to: Option<Duration>,
    /// Why the recording was lost.
    pub reason: String,
}

impl Gap {
    /// The gap's length, if it is closed.
    pub fn duration(&self) -> Option<Duration> {
        self.to.map(|to| to.saturating_sub(self.from))
    }
}

/// What a supervised lesson left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisedRecording {
    /// The segments in order; each is a complete, playable Matroska file.
    pub segments: Vec<RecordedFile>,
    /// The outages in order, all closed.
    pub gaps: Vec<Gap>,
    /// How many times a recorder was started again (every attempt counts).
    pub restarts: u32,
}

impl SupervisedRecording {
    /// The sum of the segments' durations.
    pub fn recorded(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }
}

/// What the handle tells the supervisor thread.
#[derive(Debug)]
enum Command {
    /// Stop the current segment with EOS (or abandon the attempt) and return.
    Stop,
}

/// The state, shared with the handle so callers can watch it.
#[derive(Debug)]
struct Shared {
    /// Written only by the supervisor thread.
    state: Mutex<SupervisorState>,
    /// Notified on every change of `state`.
    changed: Condvar,
}

impl Shared {
    fn get(&self) -> SupervisorState {
        self.state.lock().expect("state lock poisoned").clone()
    }

    fn set(&self, next: SupervisorState) {
        *self.state.lock().expect("state lock poisoned") = next;
        self.changed.notify_all();
    }
}

/// Records one source for a whole lesson across camera drop-outs; see the module doc.
#[derive(Debug)]
pub struct SourceSupervisor {
    /// Stop requests; dropping it also stops the thread.
    commands: Sender<Command>,
    /// The current state, for [`state`](Self::state) and [`wait_recording`](Self::wait_recording).
    shared: Arc<Shared>,
    /// The supervisor thread; `None` once joined by `stop` (then `Drop` has nothing to do).
    thread: Option<JoinHandle<SupervisedRecording>>,
}

impl SourceSupervisor {
    /// Starts recording `url` (RTSP, H.264) into `<base>-1.mkv`, and keeps it recorded until
    /// [`stop`](Self::stop). Fails only for what retrying cannot fix: an invalid `config`, GStreamer
    /// missing, or a pipeline that cannot be built; an absent camera is retried. Blocking.
    pub fn start(url: &str, base: &Path, config: SupervisorConfig) -> Result<Self, CaptureError> {
        Self::start_with(url, base, config, SourceOptions::default())
    }

    /// Like [`start`](Self::start), recording and feeding as `options` say (every segment's
    /// recorder gets the same options, so a feed resumes with the source).
    pub fn start_with(
        url: &str,
        base: &Path,
        config: SupervisorConfig,
        options: SourceOptions,
    ) -> Result<Self, CaptureError> {
        config.validate()?;
        let span = tracing::info_span!("supervisor", url = %redact(url), base = %base.display());
        let first = SourceRecorder::start_with(url, &segment_path(base, 1), &options)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(SupervisorState::Starting),
            changed: Condvar::new(),
        });
        let (commands, receiver) = mpsc::channel();
        let run = Run {
            url: url.to_owned(),
            options,
            base: base.to_owned(),
            config,
            started: Instant::now(),
            commands: receiver,
            shared: Arc::clone(&shared),
            span,
            segment: 1,
            segments: Vec::new(),
            gaps: Vec::new(),
            restarts: 0,
        };
        let thread = std::thread::Builder::new()
            .name("capture-supervisor".to_owned())
            .spawn(move || run.run(first))
            .expect("spawning a thread only fails when the process is out of resources");
        Ok(Self {
            commands,
            shared,
            thread: Some(thread),
        })
    }

    /// The current state.
    pub fn state(&self) -> SupervisorState {
        self.shared.get()
    }

    /// Blocks until frames reach a segment (`RECORDING`), the supervisor stops, or `timeout`
    /// passes; true if recording.
    pub fn wait_recording(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| {
            matches!(
                s,
                SupervisorState::Recording { .. } | SupervisorState::Stopped
            )
        })
        .is_some_and(|s| matches!(s, SupervisorState::Recording { .. }))
    }

    /// Blocks until `done(state)` or `timeout`; the state that satisfied `done`, if any.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&SupervisorState) -> bool,
    ) -> Option<SupervisorState> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("state lock poisoned");
        loop {
            if done(&state) {
                return Some(state.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .expect("state lock poisoned")
                .0;
        }
    }

    /// Stops the current segment with EOS (or abandons a reconnect), closes an open gap at this
    /// moment and returns what was recorded. Blocking: at most the recorder's EOS deadline plus
    /// [`POLL`], plus the time the discoverer takes to probe the last segment.
    pub fn stop(mut self) -> SupervisedRecording {
        self.join()
            .expect("stop joins the thread once; only Drop runs after it")
    }

    fn join(&mut self) -> Option<SupervisedRecording> {
        let thread = self.thread.take()?;
        // An error means the thread is gone already; join tells why.
        let _ = self.commands.send(Command::Stop);
        match thread.join() {
            Ok(recording) => Some(recording),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for SourceSupervisor {
    fn drop(&mut self) {
        if self.thread.is_some() && !std::thread::panicking() {
            let _ = self.join();
        }
    }
}

/// `<base>-<n>.mkv`.
fn segment_path(base: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(base.as_os_str());
    name.push(format!("-{n}.mkv"));
    PathBuf::from(name)
}

/// How waiting for a recorder's first frame ended.
enum Connect {
    /// Frames reach the file.
    Frames(SourceRecorder),
    /// The attempt failed before any frame.
    Failed(String),
    /// A stop was asked for meanwhile.
    Stop,
}

/// The supervisor thread's state; lives on that thread only.
struct Run {
    /// The source, with credentials (needed to connect); never logged: the span has it redacted.
    url: String,
    /// What each segment's recorder records and feeds.
    options: SourceOptions,
    /// Segment files are `<base>-<n>.mkv`.
    base: PathBuf,
    /// Backoff and connect timeout.
    config: SupervisorConfig,
    /// Time zero of the gaps' offsets.
    started: Instant,
    /// Stop requests from the handle.
    commands: Receiver<Command>,
    /// Published state.
    shared: Arc<Shared>,
    /// Every log line carries the source and the base path.
    span: tracing::Span,
    /// The number of the segment being written or attempted; advances once a file holds frames.
    segment: u32,
    /// Finished segments.
    segments: Vec<RecordedFile>,
    /// Outages; the last one may be open.
    gaps: Vec<Gap>,
    /// Recorder starts after a loss.
    restarts: u32,
}

impl Run {
    fn run(mut self, first: SourceRecorder) -> SupervisedRecording {
        let span = self.span.clone();
        let _entered = span.enter();
        let mut current = match self.await_first_frame(first) {
            Connect::Frames(recorder) => recorder,
            Connect::Stop => return self.finish(),
            Connect::Failed(reason) => {
                self.open_gap(Duration::ZERO, reason);
                match self.reconnect() {
                    Some(recorder) => recorder,
                    None => return self.finish(),
                }
            }
        };
        loop {
            self.enter_recording();
            if self.wait_end_or_stop(&current) {
                self.close_recorder(current);
                return self.finish();
            }
            let lost_at = self.started.elapsed();
            let reason = match self.close_recorder(current) {
                Some(Ending::SourceFailed { reason }) => reason,
                Some(Ending::SourceEnded) => "the source ended the stream (EOS)".to_owned(),
                Some(ending) => format!("{ending:?}"),
                None => "recorder ended without a file".to_owned(),
            };
            tracing::warn!(%reason, "source lost");
            self.open_gap(lost_at, reason);
            current = match self.reconnect() {
                Some(recorder) => recorder,
                None => return self.finish(),
            };
        }
    }

    /// RECONNECTING: backoff, attempt, repeat; the recorder with frames, or `None` on stop.
    fn reconnect(&mut self) -> Option<SourceRecorder> {
        let since = Instant::now();
        let mut reason = self
            .gaps
            .last()
            .map(|gap| gap.reason.clone())
            .unwrap_or_default();
        for attempt in 1.. {
            self.set_state(SupervisorState::Reconnecting {
                attempt,
                since,
                reason: reason.clone(),
            });
            let delay = self.config.backoff.delay(attempt);
            tracing::info!(attempt, ?delay, "reconnecting after backoff");
            match self.commands.recv_timeout(delay) {
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.restarts += 1;
            let recorder = match SourceRecorder::start_with(&self.url, &self.path(), &self.options)
            {
                Ok(recorder) => recorder,
                Err(err) => {
                    reason = err.to_string();
                    tracing::warn!(attempt, %reason, "attempt failed to start");
                    continue;
                }
            };
            match self.await_first_frame(recorder) {
                Connect::Frames(recorder) => return Some(recorder),
                Connect::Stop => return None,
                Connect::Failed(why) => {
                    tracing::info!(attempt, reason = %why, "attempt failed");
                    reason = why;
                }
            }
        }
        unreachable!("the attempt loop only ends by returning")
    }

    /// Waits for `recorder`'s first frame, its failure, the connect timeout, or a stop. A
    /// recorder that does not come back as `Frames` has been closed.
    fn await_first_frame(&mut self, recorder: SourceRecorder) -> Connect {
        let deadline = Instant::now() + self.config.connect_timeout;
        loop {
            match self.commands.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    self.close_recorder(recorder);
                    return Connect::Stop;
                }
                Err(TryRecvError::Empty) => {}
            }
            let failed = match recorder.wait_recording(POLL) {
                Ok(()) => return Connect::Frames(recorder),
                Err(CaptureError::Timeout { .. }) if Instant::now() < deadline => continue,
                Err(CaptureError::Timeout { .. }) => {
                    format!("no frame within {:?}", self.config.connect_timeout)
                }
                Err(err) => err.to_string(),
            };
            self.close_recorder(recorder);
            return Connect::Failed(failed);
        }
    }

    /// RECORDING: waits until the recorder ends on its own (false) or a stop is asked (true).
    fn wait_end_or_stop(&self, recorder: &SourceRecorder) -> bool {
        loop {
            match self.commands.recv_timeout(POLL) {
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) if recorder.is_running() => {}
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// Stops `recorder` (EOS if it still records) and files its segment; returns its ending. A
    /// file without frames is removed so that the next attempt reuses its number.
    fn close_recorder(&mut self, recorder: SourceRecorder) -> Option<Ending> {
        let path = recorder.path().to_owned();
        match recorder.stop() {
            Ok(file) => {
                tracing::info!(segment = self.segment, duration = ?file.duration, ending = ?file.ending, "segment closed");
                let ending = file.ending.clone();
                self.segments.push(file);
                self.segment += 1;
                Some(ending)
            }
            Err(CaptureError::NoData { .. } | CaptureError::Source { .. }) => {
                if let Err(err) = std::fs::remove_file(&path)
                    && err.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), %err, "cannot remove empty segment");
                }
                None
            }
            Err(err) => {
                // Frames were written but the file cannot be read back: keep it on disk (never
                // overwrite it), leave it out of the result.
                tracing::error!(segment = self.segment, %err, "segment unreadable");
                self.segment += 1;
                None
            }
        }
    }

    fn open_gap(&mut self, from: Duration, reason: String) {
        if self.gaps.last().is_some_and(|gap| gap.to.is_none()) {
            return;
        }
        self.gaps.push(Gap {
            from,
            to: None,
            reason,
        });
    }

    fn close_gap(&mut self) {
        let now = self.started.elapsed();
        if let Some(gap) = self.gaps.last_mut()
            && gap.to.is_none()
        {
            gap.to = Some(now);
            tracing::info!(from = ?gap.from, to = ?now, "gap closed");
        }
    }

    fn enter_recording(&mut self) {
        self.close_gap();
        self.set_state(SupervisorState::Recording {
            segment: self.segment,
        });
    }

    fn finish(mut self) -> SupervisedRecording {
        self.close_gap();
        self.set_state(SupervisorState::Stopped);
        tracing::info!(
            segments = self.segments.len(),
            gaps = self.gaps.len(),
            restarts = self.restarts,
            "supervisor stopped"
        );
        SupervisedRecording {
            segments: self.segments,
            gaps: self.gaps,
            restarts: self.restarts,
        }
    }

    fn set_state(&self, next: SupervisorState) {
        tracing::info!(state = %next, "state");
        self.shared.set(next);
    }

    fn path(&self) -> PathBuf {
        segment_path(&self.base, self.segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_from_initial_up_to_max() {
        let backoff = Backoff::default();
        let delays: Vec<_> = (1..=7).map(|a| backoff.delay(a)).collect();
        assert_eq!(
            delays,
            [
                ms(250),
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(4000),
                ms(4000)
            ]
        );
    }

    #[test]
    fn backoff_attempt_zero_is_the_first() {
        assert_eq!(Backoff::default().delay(0), ms(250));
    }

    #[test]
    fn backoff_never_overflows() {
        let backoff = Backoff {
            initial: Duration::from_secs(u64::MAX / 2),
            max: Duration::MAX,
        };
        assert_eq!(backoff.delay(u32::MAX), Duration::MAX);
        assert_eq!(Backoff::default().delay(u32::MAX), ms(4000));
    }

    #[test]
    fn config_refuses_busy_loops_and_inverted_bounds() {
        assert!(SupervisorConfig::default().validate().is_ok());
        let mut zero = SupervisorConfig::default();
        zero.backoff.initial = Duration::ZERO;
        assert!(zero.validate().is_err());
        let mut inverted = SupervisorConfig::default();
        inverted.backoff.max = ms(100);
        assert!(inverted.validate().is_err());
        let no_connect = SupervisorConfig {
            connect_timeout: Duration::ZERO,
            ..SupervisorConfig::default()
        };
        assert!(no_connect.validate().is_err());
    }

    #[test]
    fn tokens_are_stable() {
        let tokens: Vec<_> = [
            SupervisorState::Starting,
            SupervisorState::Recording { segment: 2 },
            SupervisorState::Reconnecting {
                attempt: 1,
                since: Instant::now(),
                reason: String::new(),
            },
            SupervisorState::Stopped,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(tokens, ["STARTING", "RECORDING", "RECONNECTING", "STOPPED"]);
    }

    #[test]
    fn segments_are_numbered_after_the_base() {
        assert_eq!(
            segment_path(Path::new("/d/teacher"), 3),
            Path::new("/d/teacher-3.mkv")
        );
    }
}
