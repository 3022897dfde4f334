//! [`SourceRecorder`]: one source recorded to one Matroska file (an RTSP camera's H.264 or AAC as
//! it sends them, a raw capture encoded here), and optionally decoded into a *feed* for the programme mixer and the previews.
//!
//! Owns one pipeline, built with element builders because its shape depends on the source (the
//! RTSP stream's pad appears only once the server has described it) and on the options:
//!
//! ```text
//! video: rtspsrc (latency 200 ms, RTP over TCP, H.264 video streams only)
//!          ~pad-added~> rtph264depay ! h264parse ! tee ! queue ! matroskamux ! filesink
//!          tee. ! queue (leaky) ! avdec_h264 ! videoconvert ! videoscale ! videorate
//!               ! video/x-raw,format=I420,WxH,F ! intervideosink channel=…      (with a feed)
//! audio: rtspsrc (AAC `mpeg4-generic` streams only)
//!          ~pad-added~> rtpmp4gdepay ! aacparse ! tee ! queue ! matroskamux ! filesink
//!          tee. ! queue (leaky) ! avdec_aac ! audioconvert ! audioresample
//!               ! audio/x-raw,rate=48000,channels=2 ! interaudiosink channel=…  (with a feed)
//! raw:   v4l2src device=/dev/videoN | videotestsrc pattern=…   (`v4l2://…`, `test://…`)
//!          ! videoconvert ! I420 ! H.264 encoder (probed) ! h264parse ! tee …   (as above)
//! ```
//!
//! The feed branch is leaky: a slow decoder drops frames from the feed, never from the file.
//! Besides the pipeline, a recorder owns the thread that reads its bus. The bus thread turns messages into the recorder's
//! `Status`; the first buffer reaching the file marks the recording as started.
//!
//! Invariants:
//! - [`SourceRecorder::stop`] sends EOS, waits for it on the bus (at most [`EOS_DEADLINE`]), then
//!   sets `Null`; `Drop` sets `Null` in any case, then ends and joins the bus thread.
//! - Callbacks hold weak references to elements, never strong ones (no reference cycles through
//!   the pipeline).
//! - Every call blocks: call from `spawn_blocking` or a dedicated thread, never on an async
//!   executor thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::{CaptureError, probe_duration, redact};

/// How long [`SourceRecorder::stop`] waits for EOS to reach the file.
pub const EOS_DEADLINE: Duration = Duration::from_secs(5);

/// The longest Matroska cluster: the most a crash can cut from the end of a file.
const MAX_CLUSTER: gst::ClockTime = gst::ClockTime::SECOND;

/// rtspsrc's jitter-buffer latency, in milliseconds.
const RTSP_LATENCY_MS: u32 = 200;

/// Bitrate of sources encoded here (V4L2, test patterns), kbit/s.
const LOCAL_BITRATE_KBPS: u32 = 4000;

/// How often the bus thread checks whether it should end.
const BUS_POLL: Duration = Duration::from_millis(100);

/// Where one recording stands, as the bus thread and the file probe see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    /// Pipeline playing, waiting for the source's first frame.
    Connecting,
    /// At least one buffer has reached the file.
    Recording,
    /// EOS reached the file: it is complete and indexed.
    Finished,
    /// The pipeline posted an error; the file holds what came before it.
    Failed(String),
}

/// State shared with the bus thread and the first-buffer probe.
#[derive(Debug)]
struct Shared {
    /// The current status; changed only forward (Connecting → Recording → Finished/Failed).
    status: Mutex<Status>,
    /// Notified on every status change; `wait_recording` and `stop` wait on it.
    changed: Condvar,
    /// Set on drop to end the bus thread. (A message posted to the bus cannot do it: in `Null`
    /// the bus is flushing and drops what is posted.)
    quit_bus: AtomicBool,
    /// Set by the first buffer reaching the file: there is something to keep.
    frames_written: AtomicBool,
}

impl Shared {
    fn status(&self) -> Status {
        self.status.lock().expect("status lock poisoned").clone()
    }

    /// Moves to `next` unless the recording already ended (an error after EOS changes nothing).
    fn advance(&self, next: Status) {
        let mut status = self.status.lock().expect("status lock poisoned");
        let ended = matches!(*status, Status::Finished | Status::Failed(_));
        if !ended && *status != next {
            *status = next;
            self.changed.notify_all();
        }
    }

    /// Waits until `done(status)` or `deadline`; returns the last status seen.
    fn wait_until(&self, deadline: Instant, done: impl Fn(&Status) -> bool) -> Status {
        let mut status = self.status.lock().expect("status lock poisoned");
        loop {
            if done(&status) {
                return status.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return status.clone();
            }
            status = self
                .changed
                .wait_timeout(status, deadline - now)
                .expect("status lock poisoned")
                .0;
        }
    }
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFile {
    /// The Matroska file.
    pub path: PathBuf,
    /// Media duration as probed from the file.
    pub duration: Duration,
    /// How the recording ended.
    pub ending: Ending,
}

impl RecordedFile {
    /// True when EOS reached the file (duration and index written). Otherwise the file is still
    /// readable (Matroska), only unindexed.
    pub fn finalized(&self) -> bool {
        matches!(self.ending, Ending::Stopped | Ending::SourceEnded)
    }
}

/// How a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// [`SourceRecorder::stop`]: EOS reached the file.
    Stopped,
    /// The source ended the stream itself (EOS before the stop).
    SourceEnded,
    /// The source failed (unplugged, network, server error); the file ends there.
    SourceFailed {
        /// The error and the element that posted it.
        reason: String,
    },
    /// EOS did not reach the file within [`EOS_DEADLINE`]; the pipeline was stopped without it.
    EosTimedOut,
}

/// Which stream of an RTSP source is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaKind {
    /// The H.264 video stream (a camera, a screen capture encoder).
    #[default]
    Video,
    /// The AAC audio stream (a microphone input of a camera or an encoder).
    Audio,
}

/// Where a source's decoded media goes besides its file: an `intervideosink` /
/// `interaudiosink` channel that the programme mixer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// The inter channel name; unique in the process (e.g. `duet/<classroom>/<source>`).
    pub channel: String,
    /// Video frames are scaled to this width (ignored for audio).
    pub width: u32,
    /// Video frames are scaled to this height (ignored for audio).
    pub height: u32,
    /// Video frames are resampled to this rate (ignored for audio).
    pub framerate: u32,
}

/// What a [`SourceRecorder`] records and feeds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceOptions {
    /// The stream to record.
    pub media: MediaKind,
    /// The decoded feed for the mixer, if any.
    pub feed: Option<Feed>,
}

/// Records one RTSP source to a crash-safe Matroska file; see the module doc.
#[derive(Debug)]
pub struct SourceRecorder {
    /// The pipeline; set to `Null` by `stop` and again (harmlessly) by `Drop`.
    pipeline: gst::Pipeline,
    /// Where the file is written.
    path: PathBuf,
    /// The source URL with credentials redacted, for logs and errors.
    url: String,
    /// Status shared with the bus thread and the first-buffer probe.
    shared: Arc<Shared>,
    /// The bus reader; ended by `Shared::quit_bus` and joined on drop.
    bus_thread: Option<JoinHandle<()>>,
    /// The recording's span: every log line carries the source and the file.
    span: tracing::Span,
}

fn make(factory: &'static str) -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| CaptureError::MissingElement { factory })
}

impl SourceRecorder {
    /// Starts recording `url` (RTSP, H.264 video) into `out_path` (Matroska; created or
    /// truncated). Returns once the pipeline is playing; the source connects in the background:
    /// see [`wait_recording`](Self::wait_recording). Blocking.
    pub fn start(url: &str, out_path: &Path) -> Result<Self, CaptureError> {
        Self::start_with(url, out_path, &SourceOptions::default())
    }

    /// Like [`start`](Self::start), recording the stream `options.media` and, with
    /// `options.feed`, decoding it into that feed.
    pub fn start_with(
        url: &str,
        out_path: &Path,
        options: &SourceOptions,
    ) -> Result<Self, CaptureError> {
        gst::init().map_err(CaptureError::Init)?;
        let redacted = redact(url);
        let span = tracing::info_span!("recording", url = %redacted, path = %out_path.display());
        let pipeline_error = |reason: String| CaptureError::Pipeline {
            url: redacted.clone(),
            reason,
        };

        let tee = make("tee")?;
        let file_queue = make("queue")?;
        let mux = gst::ElementFactory::make("matroskamux")
            .property("offset-to-zero", true)
            // A cluster at least every second (normally one per keyframe): a crash loses at most
            // the cluster being written.
            .property("max-cluster-duration", MAX_CLUSTER.nseconds() as i64)
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: "matroskamux",
            })?;
        let sink = gst::ElementFactory::make("filesink")
            .property("location", out_path.to_string_lossy().as_ref())
            // Write each buffer through to the kernel at once: after `kill -9` nothing is left in
            // a user-space buffer. (A power loss still loses what the page cache had not flushed.)
            .property_from_str("buffer-mode", "unbuffered")
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: "filesink",
            })?;

        let pipeline = gst::Pipeline::with_name("source-recorder");
        let head = match SourceUrl::parse(url)? {
            SourceUrl::Rtsp => rtsp_head(&pipeline, url, options.media, &span)?,
            SourceUrl::Local(src) if options.media == MediaKind::Video => local_head(src)?,
            SourceUrl::Local(_) => {
                return Err(CaptureError::Config {
                    reason: format!("{redacted}: audio is recorded from RTSP sources only"),
                });
            }
        };
        // Linked from the source down: the muxer picks its (audio or video) pad by the parser's
        // caps, which it can only see once the chain above it is linked.
        let chain: Vec<gst::Element> = head
            .into_iter()
            .chain([tee.clone(), file_queue, mux, sink.clone()])
            .collect();
        pipeline
            .add_many(&chain)
            .and_then(|()| gst::Element::link_many(&chain))
            .map_err(|e| pipeline_error(e.to_string()))?;
        if let Some(feed) = &options.feed {
            let branch = feed_branch(options.media, feed)?;
            pipeline
                .add_many(&branch)
                .and_then(|()| gst::Element::link_many(&branch))
                .and_then(|()| tee.link(&branch[0]))
                .map_err(|e| pipeline_error(e.to_string()))?;
        }

        Self::launch(pipeline, &sink, out_path, redacted, span)
    }

    /// Takes a built `pipeline` whose `sink` is the filesink writing `out_path`, and runs it as a
    /// recording: the first buffer reaching `sink` marks it recording, a bus thread follows it,
    /// and [`stop`](Self::stop) finishes it with EOS. `name` stands for it in errors (a redacted
    /// URL, or `programme`). The programme mixer records through this too. Blocking.
    pub(crate) fn launch(
        pipeline: gst::Pipeline,
        sink: &gst::Element,
        out_path: &Path,
        name: String,
        span: tracing::Span,
    ) -> Result<Self, CaptureError> {
        let shared = Arc::new(Shared {
            status: Mutex::new(Status::Connecting),
            changed: Condvar::new(),
            quit_bus: AtomicBool::new(false),
            frames_written: AtomicBool::new(false),
        });
        let first_buffer = Arc::clone(&shared);
        let probe_span = span.clone();
        sink.static_pad("sink")
            .expect("filesink always has a sink pad")
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                tracing::info!(parent: &probe_span, "first frame written");
                first_buffer.frames_written.store(true, Ordering::Release);
                first_buffer.advance(Status::Recording);
                gst::PadProbeReturn::Remove
            });

        let bus = pipeline.bus().expect("a pipeline always has a bus");
        let bus_thread = {
            let shared = Arc::clone(&shared);
            let span = span.clone();
            let pipeline_weak = pipeline.downgrade();
            std::thread::Builder::new()
                .name("capture-bus".to_owned())
                .spawn(move || read_bus(&bus, &shared, &pipeline_weak, &span))
                .expect("spawning a thread only fails when the process is out of resources")
        };

        let recorder = Self {
            pipeline,
            path: out_path.to_owned(),
            url: name,
            shared,
            bus_thread: Some(bus_thread),
            span,
        };
        // On failure `recorder` drops here: Null, then the bus thread ends.
        recorder
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| CaptureError::Pipeline {
                url: recorder.url.clone(),
                reason: e.to_string(),
            })?;
        tracing::info!(parent: &recorder.span, "recording started");
        Ok(recorder)
    }

    /// True from start until the recording ends (EOS or an error).
    pub fn is_running(&self) -> bool {
        matches!(self.shared.status(), Status::Connecting | Status::Recording)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Blocks until the first frame is on disk, the source fails, or `timeout` passes.
    pub fn wait_recording(&self, timeout: Duration) -> Result<(), CaptureError> {
        let status = self
            .shared
            .wait_until(Instant::now() + timeout, |s| *s != Status::Connecting);
        match status {
            Status::Recording | Status::Finished => Ok(()),
            Status::Failed(reason) => Err(CaptureError::Source {
                url: self.url.clone(),
                reason,
            }),
            Status::Connecting => Err(CaptureError::Timeout {
                url: self.url.clone(),
                waited: timeout,
            }),
        }
    }

    /// Ends the recording: EOS, wait for it to reach the file (at most [`EOS_DEADLINE`]), `Null`;
    /// then probes the file. Blocking.
    ///
    /// A file that holds frames is returned even if the source failed on the way; its
    /// [`RecordedFile::ending`] says how it ended. Errors: [`CaptureError::Source`] if the source
    /// failed before any frame, [`CaptureError::NoData`] if no frame came at all,
    /// [`CaptureError::Probe`] if the file cannot be read back.
    pub fn stop(self) -> Result<RecordedFile, CaptureError> {
        let _entered = self.span.clone().entered();
        let before = self.shared.status();
        let ending = match before {
            Status::Recording => {
                tracing::info!("stopping: EOS");
                self.pipeline.send_event(gst::event::Eos::new());
                let after = self.shared.wait_until(Instant::now() + EOS_DEADLINE, |s| {
                    matches!(s, Status::Finished | Status::Failed(_))
                });
                match after {
                    Status::Finished => Ending::Stopped,
                    Status::Failed(reason) => Ending::SourceFailed { reason },
                    Status::Connecting | Status::Recording => {
                        tracing::warn!(deadline = ?EOS_DEADLINE, "EOS did not reach the file");
                        Ending::EosTimedOut
                    }
                }
            }
            Status::Finished => Ending::SourceEnded,
            Status::Failed(reason) => Ending::SourceFailed { reason },
            Status::Connecting => {
                self.set_null();
                return Err(CaptureError::NoData {
                    url: self.url.clone(),
                });
            }
        };
        self.set_null();
        if !self.shared.frames_written.load(Ordering::Acquire) {
            // Only a failure before the first frame gets here.
            return Err(match ending {
                Ending::SourceFailed { reason } => CaptureError::Source {
                    url: self.url.clone(),
                    reason,
                },
                _ => CaptureError::NoData {
                    url: self.url.clone(),
                },
            });
        }
        let duration = probe_duration(&self.path)?;
        tracing::info!(?duration, ?ending, "recording stopped");
        Ok(RecordedFile {
            path: self.path.clone(),
            duration,
            ending,
        })
    }

    fn set_null(&self) {
        if let Err(err) = self.pipeline.set_state(gst::State::Null) {
            tracing::error!(parent: &self.span, ?err, "pipeline refused Null");
        }
    }
}

/// Where a source's media comes from, by its URL's scheme.
enum SourceUrl {
    /// `rtsp://…`: an IP camera or encoder, H.264 (and AAC) as it sends them.
    Rtsp,
    /// `v4l2:///dev/videoN` (a capture card or USB camera) or `test://<pattern>` (a
    /// `videotestsrc` pattern): raw video, encoded here.
    Local(gst::Element),
}

impl SourceUrl {
    fn parse(url: &str) -> Result<Self, CaptureError> {
        let bad = |reason: &str| CaptureError::Config {
            reason: format!("{}: {reason}", redact(url)),
        };
        if url.starts_with("rtsp://") || url.starts_with("rtsps://") {
            return Ok(SourceUrl::Rtsp);
        }
        if let Some(device) = url.strip_prefix("v4l2://") {
            if !device.starts_with("/dev/") {
                return Err(bad("a V4L2 source is v4l2:///dev/videoN"));
            }
            let src = gst::ElementFactory::make("v4l2src")
                .property("device", device)
                .build()
                .map_err(|_| CaptureError::MissingElement { factory: "v4l2src" })?;
            return Ok(SourceUrl::Local(src));
        }
        if let Some(pattern) = url.strip_prefix("test://") {
            let src = gst::ElementFactory::make("videotestsrc")
                .property("is-live", true)
                .build()
                .map_err(|_| CaptureError::MissingElement {
                    factory: "videotestsrc",
                })?;
            let known = src
                .find_property("pattern")
                .and_then(|p| p.downcast::<gst::glib::ParamSpecEnum>().ok())
                .is_some_and(|p| p.enum_class().value_by_nick(pattern).is_some());
            if !known {
                return Err(bad("unknown test pattern (smpte, ball, snow, …)"));
            }
            src.set_property_from_str("pattern", pattern);
            return Ok(SourceUrl::Local(src));
        }
        Err(bad(
            "sources are rtsp://, v4l2:///dev/videoN or test://<pattern>",
        ))
    }
}

/// A raw video source encoded to H.264 (the probed encoder, 2 s keyframes at 25 fps):
/// `src ! videoconvert ! I420 ! encoder ! h264parse`.
fn local_head(src: gst::Element) -> Result<Vec<gst::Element>, CaptureError> {
    let i420 = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .build(),
        )
        .build()
        .map_err(|_| CaptureError::MissingElement {
            factory: "capsfilter",
        })?;
    let encoder = crate::encoder::probe()
        .ok_or(CaptureError::MissingElement { factory: "x264enc" })?
        .build(LOCAL_BITRATE_KBPS, 50, "superfast")?;
    Ok(vec![
        src,
        make("videoconvert")?,
        i420,
        encoder,
        make("h264parse")?,
    ])
}

/// `rtspsrc ~> depayloader ! parser`, the depayloader linked when the camera's stream appears.
/// The last element of the result is the parser; `rtspsrc` is added to `pipeline` here (its
/// pads are dynamic, so it is not part of the linked chain).
fn rtsp_head(
    pipeline: &gst::Pipeline,
    url: &str,
    media_kind: MediaKind,
    span: &tracing::Span,
) -> Result<Vec<gst::Element>, CaptureError> {
    let src = gst::ElementFactory::make("rtspsrc")
        .property("location", url)
        .property("latency", RTSP_LATENCY_MS)
        .property_from_str("protocols", "tcp")
        .build()
        .map_err(|_| CaptureError::MissingElement { factory: "rtspsrc" })?;
    let (depay, parse) = match media_kind {
        MediaKind::Video => (make("rtph264depay")?, make("h264parse")?),
        MediaKind::Audio => (make("rtpmp4gdepay")?, make("aacparse")?),
    };
    pipeline.add(&src).map_err(|e| CaptureError::Pipeline {
        url: redact(url),
        reason: e.to_string(),
    })?;
    // Only the wanted stream is set up; the others are not ours to record here.
    let (media, encoding) = match media_kind {
        MediaKind::Video => ("video", "H264"),
        MediaKind::Audio => ("audio", "MPEG4-GENERIC"),
    };
    // Every stream the camera offers is set up (some cameras, and gst-rtsp-server's shared
    // media, fail a stream nobody takes); the wanted one is recorded, the others are dropped.
    let wanted = move |caps: Option<gst::Caps>| {
        caps.as_ref()
            .and_then(|caps| caps.structure(0))
            .is_some_and(|s| {
                s.get::<&str>("media").is_ok_and(|m| m == media)
                    && s.get::<&str>("encoding-name")
                        .is_ok_and(|e| e.eq_ignore_ascii_case(encoding))
            })
    };
    let depay_weak = depay.downgrade();
    let pipeline_weak = pipeline.downgrade();
    let pad_span = span.clone();
    src.connect_pad_added(move |_src, pad| {
            let (Some(depay), Some(pipeline)) = (depay_weak.upgrade(), pipeline_weak.upgrade())
            else {
                return;
            };
            let sink_pad = depay
                .static_pad("sink")
                .expect("a depayloader always has a sink pad");
            if wanted(pad.current_caps()) && !sink_pad.is_linked() {
                if let Err(err) = pad.link(&sink_pad) {
                    tracing::error!(parent: &pad_span, pad = %pad.name(), ?err, "cannot link source pad");
                }
                return;
            }
            tracing::debug!(parent: &pad_span, pad = %pad.name(), "stream not recorded here: dropped");
            let Ok(drop_sink) = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
            else {
                return;
            };
            if pipeline.add(&drop_sink).is_ok() {
                let _ = drop_sink.sync_state_with_parent();
                let _ = pad.link(&drop_sink.static_pad("sink").expect("fakesink has a sink pad"));
            }
        });

    Ok(vec![depay, parse])
}

/// The elements of a feed branch, in link order, the first to be linked from the tee.
fn feed_branch(media: MediaKind, feed: &Feed) -> Result<Vec<gst::Element>, CaptureError> {
    // Leaky: when the decoder falls behind, the feed drops frames; the file branch never waits
    // for it.
    let queue = gst::ElementFactory::make("queue")
        .property_from_str("leaky", "downstream")
        .property("max-size-buffers", 30u32)
        .property("max-size-time", 0u64)
        .property("max-size-bytes", 0u32)
        .build()
        .map_err(|_| CaptureError::MissingElement { factory: "queue" })?;
    let positive = |v: u32, what: &str| {
        i32::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| CaptureError::Config {
                reason: format!("feed {what} must be between 1 and {}", i32::MAX),
            })
    };
    let (decoders, caps, sink): (&[&'static str], gst::Caps, &'static str) = match media {
        MediaKind::Video => (
            &["avdec_h264", "videoconvert", "videoscale", "videorate"],
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", positive(feed.width, "width")?)
                .field("height", positive(feed.height, "height")?)
                .field(
                    "framerate",
                    gst::Fraction::new(positive(feed.framerate, "framerate")?, 1),
                )
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .field("interlace-mode", "progressive")
                .build(),
            "intervideosink",
        ),
        MediaKind::Audio => (
            &["avdec_aac", "audioconvert", "audioresample"],
            gst::Caps::builder("audio/x-raw")
                .field("rate", 48_000i32)
                .field("channels", 2i32)
                .build(),
            "interaudiosink",
        ),
    };
    let mut branch = vec![queue];
    for factory in decoders {
        branch.push(make(factory)?);
    }
    branch.push(
        gst::ElementFactory::make("capsfilter")
            .property("caps", &caps)
            .build()
            .map_err(|_| CaptureError::MissingElement {
                factory: "capsfilter",
            })?,
    );
    branch.push(
        gst::ElementFactory::make(sink)
            .property("channel", &feed.channel)
            .build()
            .map_err(|_| CaptureError::MissingElement { factory: sink })?,
    );
    Ok(branch)
}

impl Drop for SourceRecorder {
    fn drop(&mut self) {
        self.set_null();
        self.shared.quit_bus.store(true, Ordering::Release);
        if let Some(thread) = self.bus_thread.take()
            && thread.join().is_err()
        {
            tracing::error!(parent: &self.span, "bus thread panicked");
        }
    }
}

/// The bus thread: turns messages into [`Status`] changes and logs, until `shared.quit_bus`.
fn read_bus(
    bus: &gst::Bus,
    shared: &Shared,
    pipeline: &gst::glib::WeakRef<gst::Pipeline>,
    span: &tracing::Span,
) {
    let _entered = span.enter();
    let poll = gst::ClockTime::try_from(BUS_POLL).expect("100 ms fits a ClockTime");
    while !shared.quit_bus.load(Ordering::Acquire) {
        let Some(msg) = bus.timed_pop(poll) else {
            continue;
        };
        use gst::MessageView;
        match msg.view() {
            MessageView::Eos(_) => {
                tracing::debug!("EOS reached the file");
                shared.advance(Status::Finished);
            }
            MessageView::Error(err) => {
                let from = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let reason = format!("{from}: {}", err.error());
                tracing::error!(%reason, debug = ?err.debug(), "pipeline error");
                if let Some(pipeline) = pipeline.upgrade() {
                    // Written only when GST_DEBUG_DUMP_DOT_DIR is set.
                    pipeline
                        .debug_to_dot_file_with_ts(gst::DebugGraphDetails::all(), "capture-error");
                }
                shared.advance(Status::Failed(reason));
            }
            MessageView::Warning(warning) => {
                tracing::warn!(error = %warning.error(), debug = ?warning.debug(), "pipeline warning");
            }
            MessageView::StateChanged(change) => {
                let ours = pipeline
                    .upgrade()
                    .is_some_and(|p| msg.src() == Some(p.upcast_ref::<gst::Object>()));
                if ours {
                    tracing::debug!(from = ?change.old(), to = ?change.current(), "state");
                }
            }
            _ => {}
        }
    }
}
