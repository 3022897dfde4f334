//! A simulated IP camera: an RTSP server (gst-rtsp-server) serving live H.264 test video.
//!
//! Owns one `RTSPServer` with one mount point (`/cam`), the GLib main context and main loop it is
//! attached to, and the thread that runs that loop. The video is `videotestsrc is-live=true` with
//! a `clockoverlay` that shows the camera's label and the wall-clock time, pinned to I420 and
//! encoded by `x264enc tune=zerolatency key-int-max=30 speed-preset=ultrafast` (a keyframe at least
//! every 30 frames, so a client that (re)connects gets a picture within ~1.2 s). The pattern is
//! configurable (cameras of one room can then be told apart in a recorded programme), and a camera
//! may also serve audio (AAC, `mpeg4-generic`), as IP cameras with a microphone input do.
//!
//! Invariants:
//! - The launch string is a constant. The label is user input and never enters it: it is set as
//!   the overlay's `text` property after the media pipeline is built; the frame size and rate are
//!   set as caps on a named `capsfilter` the same way.
//! - All clients of the mount share one media pipeline (`shared`), like a real camera's encoder.
//! - Dropping the [`RtspCameraSim`] disconnects every client, detaches the server, quits the loop
//!   and joins the thread: nothing outlives the handle.
//!
//! Driving it (needs the `sim` feature outside this crate's tests):
//! ```text
//! use duet_hardware::rtsp_sim::RtspCameraSim;
//! let cam = RtspCameraSim::start(0, "教师特写")?; // 0: pick a free port
//! println!("{}", cam.url()); // rtsp://127.0.0.1:<port>/cam
//! cam.pause()?; // "unplugged": clients are cut off, new ones get 404 Not Found
//! cam.resume()?; // plugged back in
//! ```
//!
//! Unplugging is simulated by removing the mount point and closing every client connection:
//! a client sees its session end (to rtspsrc this looks like an ordinary end of stream), and a reconnect fails
//! with `404 Not Found` until [`RtspCameraSim::resume`] mounts the factory again.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// The video branch of every simulated camera. Constant: see the module invariants.
const VIDEO: &str = "videotestsrc name=src is-live=true pattern=ball \
    ! capsfilter name=size \
    ! clockoverlay name=label halignment=left valignment=top shaded-background=true \
      font-desc=\"Sans 28\" time-format=\"%Y-%m-%d %H:%M:%S\" \
    ! videoconvert ! video/x-raw,format=I420 \
    ! x264enc tune=zerolatency key-int-max=30 speed-preset=ultrafast bitrate=2000 \
    ! rtph264pay name=pay0 pt=96 config-interval=1";

/// [`VIDEO`] without the overlay, for machines without GStreamer's Pango plugin
/// (`gstreamer1.0-x` on Debian): the label then appears only in the logs.
const VIDEO_WITHOUT_OVERLAY: &str = "videotestsrc name=src is-live=true pattern=ball \
    ! capsfilter name=size \
    ! videoconvert ! video/x-raw,format=I420 \
    ! x264enc tune=zerolatency key-int-max=30 speed-preset=ultrafast bitrate=2000 \
    ! rtph264pay name=pay0 pt=96 config-interval=1";

/// The audio branch of a camera with a microphone: a tick every second, AAC (as IP cameras
/// with an audio input send it), RTP `mpeg4-generic`.
const AUDIO: &str = " audiotestsrc is-live=true wave=ticks volume=0.5 \
    ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1 \
    ! avenc_aac bitrate=64000 ! rtpmp4gpay name=pay1 pt=97";

/// The path the camera is served under.
pub const MOUNT_PATH: &str = "/cam";

/// How long to wait for the server thread to run a command before giving up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// What a simulated camera serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspSimConfig {
    /// TCP port to listen on, on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Shown in the picture (e.g. the camera position, 教师特写), with the time.
    pub label: String,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub framerate: u32,
    /// What the picture shows: a `videotestsrc` pattern by its nick (`ball`, `smpte`, `red`,
    /// `green`, `blue`, `white`, `snow`, …), so tests can tell cameras apart in a programme.
    pub pattern: String,
    /// Also serve an audio stream (a tick a second, AAC), like a camera with a microphone input.
    pub audio: bool,
}

impl RtspSimConfig {
    /// 1280×720 at 25 fps, the sim's default picture.
    pub fn new(port: u16, label: &str) -> Self {
        Self {
            port,
            label: label.to_owned(),
            width: 1280,
            height: 720,
            framerate: 25,
            pattern: "ball".to_owned(),
            audio: false,
        }
    }
}

/// Why the simulator could not start or obey.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtspSimError {
    /// `gst::init` failed (GStreamer not installed?).
    #[error("GStreamer init failed: {0}")]
    Init(#[source] glib::Error),
    /// The server could not listen (port taken?).
    #[error("RTSP server could not listen on port {port}: {reason}")]
    Listen {
        /// The port asked for.
        port: u16,
        /// GLib's reason.
        reason: String,
    },
    /// A frame size or rate of zero, or too large for GStreamer's caps.
    #[error("invalid simulated camera picture: {0}")]
    InvalidConfig(&'static str),
    /// The server thread did not answer in time, or is gone.
    #[error("RTSP server thread unresponsive")]
    Unresponsive,
}

/// A running simulated camera; see the module doc. Stops on drop.
pub struct RtspCameraSim {
    /// `rtsp://127.0.0.1:<port>/cam`, fixed once bound.
    url: String,
    /// The server, kept to close clients and to detach on drop.
    server: rtsp::RTSPServer,
    /// The media factory, kept so that `resume` can mount it again.
    factory: rtsp::RTSPMediaFactory,
    /// The context the server is attached to; commands run on it, on the server thread.
    context: glib::MainContext,
    /// Quit on drop to end the server thread.
    main_loop: glib::MainLoop,
    /// The server's listening source, removed on drop so the port is released.
    source: Option<glib::SourceId>,
    /// The thread running `main_loop`; joined on drop.
    thread: Option<JoinHandle<()>>,
    /// Per-camera span: every log line of this camera carries its label and port.
    span: tracing::Span,
}

impl RtspCameraSim {
    /// Serves a 1280×720 25 fps camera labelled `label` on `port` (0: any free port).
    pub fn start(port: u16, label: &str) -> Result<Self, RtspSimError> {
        Self::start_with(RtspSimConfig::new(port, label))
    }

    /// Serves a camera as configured.
    pub fn start_with(config: RtspSimConfig) -> Result<Self, RtspSimError> {
        gst::init().map_err(RtspSimError::Init)?;

        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&config.port.to_string());

        let factory = rtsp::RTSPMediaFactory::new();
        let video = if gst::ElementFactory::find("clockoverlay").is_some() {
            VIDEO
        } else {
            tracing::warn!("clockoverlay missing (install gstreamer1.0-x): serving without label");
            VIDEO_WITHOUT_OVERLAY
        };
        let audio = if config.audio { AUDIO } else { "" };
        factory.set_launch(&["( ", video, audio, " )"].concat());
        // Refuse an unknown pattern now, not in the server thread when a client connects.
        let probe_src = gst::ElementFactory::make("videotestsrc")
            .build()
            .map_err(|_| RtspSimError::InvalidConfig("videotestsrc missing"))?;
        let known_pattern = probe_src
            .find_property("pattern")
            .and_then(|p| p.downcast::<glib::ParamSpecEnum>().ok())
            .is_some_and(|p| p.enum_class().value_by_nick(&config.pattern).is_some());
        if !known_pattern {
            return Err(RtspSimError::InvalidConfig("pattern"));
        }
        factory.set_shared(true);
        let positive = |value: u32, what: &'static str| {
            i32::try_from(value)
                .ok()
                .filter(|v| *v > 0)
                .ok_or(RtspSimError::InvalidConfig(what))
        };
        let caps = gst::Caps::builder("video/x-raw")
            .field("width", positive(config.width, "width")?)
            .field("height", positive(config.height, "height")?)
            .field(
                "framerate",
                gst::Fraction::new(positive(config.framerate, "framerate")?, 1),
            )
            .build();
        let label = config.label.clone();
        let pattern = config.pattern.clone();
        factory.connect_media_configure(move |_factory, media| {
            let Ok(bin) = media.element().downcast::<gst::Bin>() else {
                tracing::error!("media element is not a bin; launch string changed?");
                return;
            };
            if let Some(size) = bin.by_name("size") {
                size.set_property("caps", &caps);
            }
            if let Some(overlay) = bin.by_name("label") {
                overlay.set_property("text", &label);
            }
            if let Some(src) = bin.by_name("src") {
                src.set_property_from_str("pattern", &pattern);
            }
        });
        server
            .mount_points()
            .expect("a new RTSPServer always has mount points")
            .add_factory(MOUNT_PATH, factory.clone());

        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let source = server
            .attach(Some(&context))
            .map_err(|err| RtspSimError::Listen {
                port: config.port,
                reason: err.to_string(),
            })?;
        let port = server.bound_port();
        let url = format!("rtsp://127.0.0.1:{port}{MOUNT_PATH}");
        let span = tracing::info_span!("rtsp_sim", label = %config.label, port);

        let thread = {
            let main_loop = main_loop.clone();
            let span = span.clone();
            std::thread::Builder::new()
                .name(format!("rtsp-sim-{port}"))
                .spawn(move || {
                    let _entered = span.enter();
                    tracing::debug!("serving");
                    main_loop.run();
                    tracing::debug!("stopped");
                })
                .expect("spawning a thread only fails when the process is out of resources")
        };
        tracing::info!(parent: &span, %url, "simulated camera started");
        Ok(Self {
            url,
            server,
            factory,
            context,
            main_loop,
            source: Some(source),
            thread: Some(thread),
            span,
        })
    }

    /// `rtsp://127.0.0.1:<port>/cam`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.server.bound_port() as u16
    }

    /// "Unplugs" the camera: closes every client session and unmounts `/cam`, so reconnects fail
    /// with 404 until [`resume`](Self::resume).
    pub fn pause(&self) -> Result<(), RtspSimError> {
        tracing::info!(parent: &self.span, "unplugged");
        let server = self.server.clone();
        self.run_on_server_thread(move || {
            if let Some(mounts) = server.mount_points() {
                mounts.remove_factory(MOUNT_PATH);
            }
            close_all_clients(&server);
        })
    }

    /// Plugs the camera back in: mounts `/cam` again; clients must reconnect.
    pub fn resume(&self) -> Result<(), RtspSimError> {
        tracing::info!(parent: &self.span, "plugged back in");
        let server = self.server.clone();
        let factory = self.factory.clone();
        self.run_on_server_thread(move || {
            if let Some(mounts) = server.mount_points() {
                mounts.add_factory(MOUNT_PATH, factory);
            }
        })
    }

    /// Unplugs the camera for `duration`, then plugs it back in (blocks the caller meanwhile).
    pub fn stop_for(&self, duration: Duration) -> Result<(), RtspSimError> {
        self.pause()?;
        std::thread::sleep(duration);
        self.resume()
    }

    /// Runs `f` on the server's thread (gst-rtsp-server's clients belong to that context) and
    /// waits until it has run.
    fn run_on_server_thread(&self, f: impl FnOnce() + Send + 'static) -> Result<(), RtspSimError> {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        self.context.invoke(move || {
            f();
            // The caller may have given up waiting; nothing to do then.
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| RtspSimError::Unresponsive)
    }
}

/// Closes every client session of `server` (their media stop streaming to them).
fn close_all_clients(server: &rtsp::RTSPServer) {
    let closed = server.client_filter(Some(&mut |_server, _client| rtsp::RTSPFilterResult::Remove));
    tracing::debug!(clients = closed.len(), "closed client sessions");
}

impl Drop for RtspCameraSim {
    fn drop(&mut self) {
        let server = self.server.clone();
        if self
            .run_on_server_thread(move || close_all_clients(&server))
            .is_err()
        {
            tracing::warn!(parent: &self.span, "server thread did not close clients in time");
        }
        // The source lives in our context, not the default one: `SourceId::remove` would miss it.
        if let Some(source) = self
            .source
            .take()
            .and_then(|id| self.context.find_source_by_id(&id))
        {
            source.destroy();
        }
        self.main_loop.quit();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(parent: &self.span, "server thread panicked");
        }
        tracing::info!(parent: &self.span, "simulated camera stopped");
    }
}

impl std::fmt::Debug for RtspCameraSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspCameraSim")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the caps of the first H.264 buffer from the sim through a real rtspsrc; `None` if
    /// the pipeline fails (e.g. 404) or nothing arrives within 10 s.
    fn first_caps(url: &str) -> Option<gst::Caps> {
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("rtspsrc")
            .property("location", url)
            .property("latency", 200u32)
            .build()
            .unwrap();
        let depay = gst::ElementFactory::make("rtph264depay").build().unwrap();
        let parse = gst::ElementFactory::make("h264parse").build().unwrap();
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        pipeline.add_many([&src, &depay, &parse, &sink]).unwrap();
        gst::Element::link_many([&depay, &parse, &sink]).unwrap();
        let depay_weak = depay.downgrade();
        src.connect_pad_added(move |_, pad| {
            if let Some(depay) = depay_weak.upgrade() {
                let _ = pad.link(&depay.static_pad("sink").unwrap());
            }
        });
        let (tx, rx) = mpsc::sync_channel(1);
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
                let _ = tx.try_send(pad.current_caps());
                gst::PadProbeReturn::Remove
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut caps = None;
        while std::time::Instant::now() < deadline {
            if let Ok(c) = rx.try_recv() {
                caps = c;
                break;
            }
            if let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(50),
                &[gst::MessageType::Error],
            ) {
                eprintln!("client error (expected only while unplugged): {msg:?}");
                break;
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
        caps
    }

    #[test]
    fn serves_h264_at_the_configured_size_and_comes_back_after_unplug() {
        let mut config = RtspSimConfig::new(0, "label \" ! with ( launch ) syntax");
        config.width = 320;
        config.height = 240;
        let mut zero = config.clone();
        zero.framerate = 0;
        assert!(matches!(
            RtspCameraSim::start_with(zero),
            Err(RtspSimError::InvalidConfig("framerate"))
        ));
        let mut unknown_pattern = config.clone();
        unknown_pattern.pattern = "ball ! fakesink".into();
        assert!(matches!(
            RtspCameraSim::start_with(unknown_pattern),
            Err(RtspSimError::InvalidConfig("pattern"))
        ));
        let cam = RtspCameraSim::start_with(config).unwrap();
        assert!(cam.url().starts_with("rtsp://127.0.0.1:"));
        assert_ne!(cam.port(), 0);

        let caps = first_caps(cam.url()).expect("a frame within 10 s");
        let s = caps.structure(0).unwrap();
        assert_eq!(s.name(), "video/x-h264");
        assert_eq!(s.get::<i32>("width").unwrap(), 320);
        assert_eq!(s.get::<i32>("height").unwrap(), 240);

        cam.pause().unwrap();
        assert!(
            first_caps(cam.url()).is_none(),
            "unplugged camera still serves"
        );
        cam.resume().unwrap();
        assert!(first_caps(cam.url()).is_some(), "camera did not come back");
    }
}
