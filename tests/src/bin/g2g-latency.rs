//! `g2g-latency`: glass-to-glass latency of the lead teacher's camera, from the teacher's page to a
//! receiving classroom's page (接收课堂), both real headless Chromium pages, through Duet's SFU.
//!
//! # How
//! Like `tests/live-class-browser.rs`: the process moves into a private network namespace
//! ([`enter_private_network`]), runs `duet up` in-process ([`duet::start_up`]), and drives one
//! headless Chromium over CDP ([`duet_tests::Browser`]). Two pages join one class through the web
//! UI (`app.js`, unchanged): the lead teacher and one receiving classroom, with signed join tokens
//! and no demo district (so neither the recorder nor the demo's camera simulators compete for the
//! CPU), or with `--sign-in` as the demo's teacher and classroom A through the gateway's sign-in
//! page and 进入课堂, with everything `duet up` runs.
//!
//! Before any script of the teacher's page runs, a script injected with CDP's
//! `Page.addScriptToEvaluateOnNewDocument` replaces `navigator.mediaDevices.getUserMedia`: the
//! page gets Chromium's fake microphone and, instead of the fake camera, `canvas.captureStream()`
//! of a canvas (`--size`, default 1280×720, the size `app.js` asks the camera for) that shows the
//! fake camera's picture with a bar code on top. Every few milliseconds (four times per frame of
//! `--fps`) the bar code is redrawn with the time `performance.timeOrigin + performance.now()`,
//! in whole milliseconds; the canvas is captured right after the task that drew it, so the drawn
//! time is the frame's capture time (the shutter of a real camera).
//!
//! The bar code: 48 equal black/white blocks across 92% of the width, 14% of the height tall
//! (about 24×100 px at 1280×720, 12×50 at 640×360): a start guard (black, white, black, white),
//! the time modulo 2³² ms (32 bits, most significant first, black = 1), a CRC-8 of those four
//! bytes (polynomial 0x07), and a stop guard (white, black, white, black). The reader needs no
//! pixel positions, only fractions of the frame, so it still reads a frame the encoder scaled
//! down.
//!
//! On the classroom's page, for every frame of the teacher's camera `<video>` that Chromium
//! presents (`requestVideoFrameCallback`, rVFC), the tool takes the element's current frame
//! (`new VideoFrame(video)`) and checks that it is the frame the callback describes (its timestamp
//! equals `metadata.mediaTime`; when the main thread runs late the compositor may already show a
//! newer one, and such callbacks are counted and skipped). The strip is drawn, 4 px per block, to
//! a small canvas; each block's luma is the mean of its centre; the threshold is halfway between
//! the guards' black and white; the guards must read right, the CRC must match, and the time must
//! be plausible (−50 ms to 20 s before now), else the frame counts as a misread. The full time is
//! rebuilt from the 32 bits with the receiver's clock.
//!
//! Latency = the frame's `metadata.expectedDisplayTime` − the time drawn into it.
//! `expectedDisplayTime` is the compositor's estimate of when the frame is on the glass: the
//! end point of "glass to glass". The callback's `now` is not: it is the start of the main
//! thread's rendering step that runs the callback, which has nothing to do with the frame's way to
//! the screen, and on a busy main thread it lags the compositor by tens of milliseconds (or, when
//! the step started before a late frame arrived, even precedes it); the tool prints it for
//! comparison only. In headless Chromium there is no real display: `expectedDisplayTime` comes
//! within a millisecond of `presentationTime`, so the scan-out and the panel's own latency of a
//! real screen (half a 60 Hz refresh, 8 ms, on average, plus the panel) are not in the figure.
//!
//! Per frame the tool also keeps `metadata.receiveTime` (the last packet of the frame arrived)
//! and `metadata.presentationTime` (the frame was handed to the compositor), which split the
//! latency into capture → received (encode, pacing, network, SFU), received → presented (jitter
//! buffer, decode, the renderer's wait for its next frame) and presented → on the glass.
//!
//! Both pages run in one Chromium on one machine, so they read one clock, but each page is its own
//! renderer process with its own `timeOrigin`; the tool measures each page's clock against its own
//! (`SystemTime`, the CDP round trip with the smallest delay out of 15) before and after the
//! window, corrects the latencies by the difference, and prints it (a fraction of a millisecond).
//!
//! After the classroom first reads a bar code, the tool waits `--warmup` seconds (default 20: the
//! teacher's bandwidth estimate ramps up, and the encoder's resolution with it), then collects
//! `--seconds` of frames and prints their count, the misreads, p50/p95/p99/max, the parts, and
//! what `getStats()` says about the same window on both sides (encode time, pacer delay, jitter
//! buffer and its target, decode, bitrate, frame rate, RTT, the teacher's audio at the classroom,
//! which WebRTC's lip sync holds the video to).
//!
//! # Added delay, and the SFU's own share
//! This kernel has no `netem` qdisc (nor `fq` or `etf`, which could hold packets until a time a
//! BPF program sets, nor nftables' queue; `iptables`' NFQUEUE is in the kernel but no `iptables`
//! binary is installed), and this Chromium is built without WebRTC's fake-network field trials
//! (`WebRTC-FakeNetworkReceiveConfig` is not in the binary). So with `--delay-ms N` (or `--relay`,
//! N = 0) each page is sent through a TURN relay run by this process on `10.200.0.2` (the
//! classroom's on port 3478, the teacher's on 3479; [`duet_tests::shaper`]), and the classroom's
//! relay holds every datagram N ms in each direction: the injected script forces the page to
//! relayed candidates
//! (`iceTransportPolicy: 'relay'`), so all of its media and RTCP, on both of its peer connections,
//! take the delayed path (RTT + 2N). The teacher's relay adds no delay; it is there so that the
//! relays see the teacher's packets go into the SFU and the SFU's packets come out toward the
//! classroom: RTP headers are in the clear under SRTP, and the last packet of each video frame
//! (marker bit) is matched by its timestamp (the SFU shifts timestamps by a fixed offset), which
//! gives the SFU's own time per frame, measured outside it. `--relay` alone is the control for the
//! relays' own cost. The markers are noted as they pass the relays' SFU side: the teacher's when
//! its relay sends them to the SFU, the classroom's when its relay receives them from the SFU
//! (before the classroom's delay).
//!
//! # Usage
//! ```sh
//! cargo run --release -p duet-tests --bin g2g-latency -- --seconds 30
//! cargo run --release -p duet-tests --bin g2g-latency -- --seconds 30 --delay-ms 100
//! ```
//! Needs root (it creates a network namespace) and Chromium (`DUET_CHROMIUM` or
//! `/usr/bin/chromium`). The results are in `docs/benchmarks.md`, "Glass-to-glass latency".

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use duet::DuetConfig;
use duet_sfu_proto::Role;
use duet_tests::shaper::{self, LinkShape, Relay};
use duet_tests::{Browser, LaunchOptions, Page, TestNet, enter_private_network};
use serde_json::{Value, json};

/// Signs the join tokens of the token path (the demo district is off there).
const KEY: &str = "g2g-latency-benchmark-key";
/// The classroom's TURN relay's port on the namespace's second address; the teacher's is the next.
const TURN_PORT: u16 = 3478;

#[derive(Parser, Debug)]
#[command(
    name = "g2g-latency",
    about = "Glass-to-glass latency between two Chromium pages through the SFU"
)]
struct Args {
    /// Seconds of frames to measure, after the warm-up.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds to wait after the classroom first reads a bar code, before measuring: the
    /// teacher's bandwidth estimate starts low and the encoder starts at a lower resolution.
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// One-way delay in ms added to each direction of the receiving classroom's link, by a TURN
    /// relay in this process (implies `--relay`).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Send both pages through TURN relays in this process (no delay unless `--delay-ms`), and
    /// measure the SFU's own time per frame between them.
    #[arg(long)]
    relay: bool,
    /// The teacher's camera: canvas size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    size: String,
    /// The teacher's camera: frame rate of `captureStream`.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Video codec, `vp8` or `h264` (token path only; the gateway's page uses the default, VP8).
    #[arg(long, default_value = "vp8")]
    codec: String,
    /// Join as the demo district's teacher and classroom A through the gateway's sign-in page,
    /// with the demo (and its recorder) running.
    #[arg(long)]
    sign_in: bool,
    /// Diagnosis: put the teacher's audio in a stream of its own on the classroom's page (SDP
    /// munging), so WebRTC does not delay the video to keep it in sync with the audio.
    #[arg(long)]
    no_lip_sync: bool,
    /// Write every sample (JSON) to this file.
    #[arg(long)]
    samples_json: Option<PathBuf>,
}

/// Injected into both pages before their scripts run, after the relay's
/// [`shaper::force_relay_script`] on a relayed run. `__CONFIG__` becomes
/// `{role, width, height, fps, noLipSync}`.
const PAGE_SCRIPT: &str = r#"
(function () {
  'use strict';
  if (window.g2g) return;
  var cfg = __CONFIG__;
  var g2g = window.g2g = { cfg: cfg, pcs: [] };
  // The bar code, in fractions of the frame: 48 blocks across [X0, X0 + XW], rows [Y0, Y0 + YH].
  var N = 48, X0 = 0.04, XW = 0.92, Y0 = 0.06, YH = 0.14;
  var GUARDS = { 0: 1, 1: 0, 2: 1, 3: 0, 44: 0, 45: 1, 46: 0, 47: 1 };
  var TWO32 = 4294967296;

  function crc8(bytes) {
    var c = 0;
    for (var i = 0; i < bytes.length; i++) {
      c ^= bytes[i];
      for (var k = 0; k < 8; k++) c = (c & 0x80) ? ((c << 1) ^ 0x07) & 0xff : (c << 1) & 0xff;
    }
    return c;
  }

  /** The 48 blocks (1 = black) for a time in ms. */
  function pattern(ms) {
    var t = ms % TWO32;
    var bytes = [(t >>> 24) & 255, (t >>> 16) & 255, (t >>> 8) & 255, t & 255];
    bytes.push(crc8(bytes));
    var bits = [1, 0, 1, 0];
    bytes.forEach(function (b) { for (var k = 7; k >= 0; k--) bits.push((b >> k) & 1); });
    return bits.concat([0, 1, 0, 1]);
  }

  /** Moves every audio m-section into a stream of its own, so nothing is lip-synced with it. */
  function unsyncAudio(sdp) {
    return sdp.split(/(?=\r\nm=)/).map(function (part) {
      if (part.indexOf('\r\nm=audio') !== 0) return part;
      return part.replace(/(a=msid:)(\S+) /g, '$1$2-unsynced ')
        .replace(/(a=ssrc:\d+ msid:)(\S+) /g, '$1$2-unsynced ');
    }).join('');
  }

  // Every peer connection the page makes, for getStats. On a relayed run this wraps the relay's
  // wrapper, which forces the TURN relay into the configuration.
  var Native = window.RTCPeerConnection;
  if (Native) {
    var Wrapped = class extends Native {
      constructor(conf) {
        super(conf);
        g2g.pcs.push(this);
      }
      setRemoteDescription(desc) {
        if (cfg.noLipSync && desc && desc.sdp) desc = { type: desc.type, sdp: unsyncAudio(desc.sdp) };
        return super.setRemoteDescription(desc);
      }
    };
    window.RTCPeerConnection = Wrapped;
  }

  function selectedPair(rep) {
    var pair = null;
    rep.forEach(function (s) { if (s.type === 'transport' && s.selectedCandidatePairId) pair = rep.get(s.selectedCandidatePairId); });
    if (!pair) return null;
    var local = rep.get(pair.localCandidateId) || {};
    var remote = rep.get(pair.remoteCandidateId) || {};
    return { rtt: pair.currentRoundTripTime, localType: local.candidateType, local: local.address + ':' + local.port,
      remote: remote.address + ':' + remote.port };
  }
  function first(rep, type, kind) {
    var found = null;
    rep.forEach(function (s) { if (!found && s.type === type && s.kind === kind) found = s; });
    return found;
  }
  function codecOf(rep, rtp) { var c = rtp && rtp.codecId ? rep.get(rtp.codecId) : null; return c ? c.mimeType : null; }

  /** The video stats of this side: the camera's outbound-rtp (teacher) or the teacher's inbound-rtp (classroom). */
  g2g.stats = async function () {
    var pcs = g2g.pcs.filter(function (pc) { return pc.connectionState !== 'closed'; });
    for (var i = 0; i < pcs.length; i++) {
      var pc = pcs[i], rep = null, rtp = null, audio = null;
      if (cfg.role === 'sender') {
        var s = pc.getSenders().find(function (x) { return x.track && x.track.kind === 'video'; });
        if (!s) continue;
        rep = await s.getStats();
        rtp = first(rep, 'outbound-rtp', 'video');
      } else {
        var v = g2g.reader && g2g.reader.video;
        var track = v && v.srcObject && v.srcObject.getVideoTracks()[0];
        var r = track && pc.getReceivers().find(function (x) { return x.track === track; });
        if (!r) continue;
        rep = await r.getStats();
        rtp = first(rep, 'inbound-rtp', 'video');
        // The teacher's microphone, which WebRTC keeps video in sync with.
        var a = pc.getReceivers().find(function (x) { return x.track && x.track.kind === 'audio'; });
        if (a) {
          var arep = await a.getStats(), artp = first(arep, 'inbound-rtp', 'audio');
          var playout = artp && artp.playoutId ? arep.get(artp.playoutId) : null;
          if (artp) audio = { rtp: artp, playout: playout || null };
        }
      }
      if (rtp) return { rtp: rtp, codec: codecOf(rep, rtp), pair: selectedPair(rep), audio: audio };
    }
    return null;
  };

  /* ---- The teacher: a canvas camera with the clock as a bar code ---- */
  if (cfg.role === 'sender' && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    var md = navigator.mediaDevices;
    var original = md.getUserMedia.bind(md);
    var W = cfg.width, H = cfg.height;
    var sender = g2g.sender = { drawn: 0 };
    var canvas = null, ctx = null, bg = null, track = null, tick = 0;
    var draw = function () {
      var ms = Math.round(performance.timeOrigin + performance.now());
      // The fake camera's picture about once per frame (it is 720p: not on every tick).
      if (tick++ % 4 === 0) {
        if (bg && bg.readyState >= 2) ctx.drawImage(bg, 0, 0, W, H);
        else { ctx.fillStyle = '#3a5f7a'; ctx.fillRect(0, 0, W, H); }
      }
      ctx.fillStyle = '#fff';
      ctx.fillRect(Math.round((X0 - 0.02) * W), Math.round((Y0 - 0.02) * H),
        Math.round((XW + 0.04) * W), Math.round((YH + 0.12) * H));
      ctx.fillStyle = '#000';
      var bits = pattern(ms), y = Math.round(Y0 * H), h = Math.round(YH * H);
      for (var i = 0; i < N; i++) {
        if (!bits[i]) continue;
        var xa = Math.round((X0 + XW * i / N) * W), xb = Math.round((X0 + XW * (i + 1) / N) * W);
        ctx.fillRect(xa, y, xb - xa, h);
      }
      ctx.font = Math.round(H * 0.06) + 'px monospace';
      ctx.fillText(String(ms), Math.round(X0 * W), Math.round((Y0 + YH + 0.08) * H));
      sender.drawn++;
    };
    var canvasTrack = function (cam) {
      if (!canvas) {
        canvas = document.createElement('canvas');
        canvas.width = W; canvas.height = H;
        ctx = canvas.getContext('2d', { alpha: false });
        draw();
        setInterval(draw, 1000 / (cfg.fps * 4));
      }
      if (cam) {
        bg = document.createElement('video');
        bg.muted = true; bg.playsInline = true;
        bg.srcObject = new MediaStream([cam]);
        bg.play().catch(function () {});
      }
      if (!track || track.readyState === 'ended') track = canvas.captureStream(cfg.fps).getVideoTracks()[0];
      return track;
    };
    md.getUserMedia = function (constraints) {
      var c = constraints || {};
      if (!c.video) return original(c);
      return original({ audio: c.audio || false, video: { width: W, height: H, frameRate: cfg.fps } })
        .then(function (real) {
          return new MediaStream([canvasTrack(real.getVideoTracks()[0])].concat(real.getAudioTracks()));
        });
    };
  }

  /* ---- The classroom: read the bar code of every presented frame of the teacher's camera ---- */
  if (cfg.role === 'receiver') {
    var rd = g2g.reader = { video: null, running: false, samples: [], counts: null, lastSent: null, lastPresented: null };
    var zero = function () { return { frames: 0, ok: 0, unreadable: 0, checksum: 0, implausible: 0, repeated: 0, superseded: 0, skipped: 0 }; };
    rd.counts = zero();
    var rc = document.createElement('canvas');
    rc.width = N * 4; rc.height = 4;
    var rx = rc.getContext('2d', { willReadFrequently: true });
    var read = function (frame) {
      var vw = frame.displayWidth, vh = frame.displayHeight;
      if (!vw || !vh) return { status: 'unreadable' };
      // The middle half of the strip's height, 4 px per block.
      rx.drawImage(frame, X0 * vw, (Y0 + YH * 0.25) * vh, XW * vw, YH * 0.5 * vh, 0, 0, N * 4, 4);
      var d = rx.getImageData(0, 0, N * 4, 4).data;
      var l = [];
      for (var i = 0; i < N; i++) {
        var sum = 0;
        for (var y = 0; y < 4; y++) {
          for (var x = 1; x <= 2; x++) {
            var o = (y * N * 4 + i * 4 + x) * 4;
            sum += 0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2];
          }
        }
        l.push(sum / 8);
      }
      var black = (l[0] + l[2] + l[45] + l[47]) / 4, white = (l[1] + l[3] + l[44] + l[46]) / 4;
      if (white - black < 60) return { status: 'unreadable' };
      var thr = (black + white) / 2;
      for (var g in GUARDS) if ((l[g] < thr ? 1 : 0) !== GUARDS[g]) return { status: 'unreadable' };
      var bytes = [];
      for (var b = 0; b < 5; b++) {
        var v = 0;
        for (var k = 0; k < 8; k++) v = (v << 1) | (l[4 + b * 8 + k] < thr ? 1 : 0);
        bytes.push(v);
      }
      if (crc8(bytes.slice(0, 4)) !== bytes[4]) return { status: 'checksum' };
      return { status: 'ok', t32: bytes[0] * 16777216 + bytes[1] * 65536 + bytes[2] * 256 + bytes[3] };
    };
    var handle = function (video, now, meta) {
      var T = performance.timeOrigin, c = rd.counts;
      c.frames++;
      if (rd.lastPresented != null && meta.presentedFrames > rd.lastPresented + 1) {
        c.skipped += meta.presentedFrames - rd.lastPresented - 1;
      }
      rd.lastPresented = meta.presentedFrames;
      // The element's current frame, which must be the one `meta` describes: when the main thread
      // runs late, the compositor may already show a newer one.
      var frame;
      try { frame = new VideoFrame(video); } catch (e) { c.unreadable++; return; }
      var same = Math.abs(frame.timestamp - meta.mediaTime * 1e6) < 2;
      var r = same ? read(frame) : null;
      frame.close();
      if (!same) { c.superseded++; return; }
      if (r.status !== 'ok') { c[r.status]++; return; }
      var cbNow = T + performance.now();
      // The latest time ≤ now + 1 s whose low 32 bits are t32.
      var ref = Math.floor(cbNow) + 1000;
      var sent = ref - (((ref - r.t32) % TWO32) + TWO32) % TWO32;
      var shown = T + meta.expectedDisplayTime;
      if (shown - sent < -50 || shown - sent > 20000) { c.implausible++; return; }
      if (sent === rd.lastSent) c.repeated++;
      rd.lastSent = sent;
      c.ok++;
      if (rd.running) {
        rd.samples.push([sent, meta.receiveTime != null ? T + meta.receiveTime : null,
          T + meta.presentationTime, shown, T + now, meta.width, meta.height]);
      }
    };
    var arm = function (video) {
      rd.video = video;
      var cb = function (now, meta) {
        if (rd.video !== video) return;
        video.requestVideoFrameCallback(cb);
        handle(video, now, meta);
      };
      video.requestVideoFrameCallback(cb);
    };
    /** Follows the <video> of `participant`'s camera tile (app.js keeps one per tile). */
    g2g.watch = function (participant) {
      var selector = '[data-tile="' + participant + ':camera"] video';
      var look = function () {
        var v = document.querySelector(selector);
        if (v && v !== rd.video) arm(v);
      };
      look();
      setInterval(look, 250);
      return true;
    };
    g2g.start = function () { rd.counts = zero(); rd.samples = []; rd.running = true; return true; };
    g2g.take = function () { rd.running = false; return { counts: rd.counts, samples: rd.samples }; };
  }
})();
"#;

/// Wall-clock now in Unix milliseconds.
fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
        * 1000.0
}

/// A page whose injected script is in place before its first document loads.
async fn page_with_script(browser: &Browser, script: &str, url: &str) -> Result<Page> {
    let page = browser.new_page("about:blank").await?;
    page.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": script }),
    )
    .await?;
    page.navigate(url).await?;
    Ok(page)
}

/// How far `page`'s clock (`performance.timeOrigin + performance.now()`) is ahead of this
/// process's `SystemTime`, in ms, from the CDP round trip with the smallest delay out of 15.
async fn clock_offset(page: &Page) -> Result<(f64, f64)> {
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..15 {
        let before = epoch_ms();
        let at = page
            .evaluate("performance.timeOrigin + performance.now()")
            .await?
            .as_f64()
            .context("the page's clock")?;
        let after = epoch_ms();
        let rtt = after - before;
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, at - (before + after) / 2.0));
        }
    }
    let (rtt, offset) = best.expect("15 samples");
    Ok((offset, rtt))
}

/// One frame read back on the classroom's page, times in the classroom's clock (Unix ms).
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// The time drawn into the frame (the teacher's clock).
    sent: f64,
    /// The last packet of the frame arrived (`receiveTime`), when Chromium says.
    received: Option<f64>,
    /// The frame was handed to the compositor (`presentationTime`).
    presented: f64,
    /// The frame is expected on the glass (`expectedDisplayTime`).
    shown: f64,
    /// The callback's `now`.
    callback: f64,
    width: u32,
    height: u32,
}

impl Sample {
    fn parse(v: &Value) -> Option<Sample> {
        let a = v.as_array()?;
        Some(Sample {
            sent: a.first()?.as_f64()?,
            received: a.get(1)?.as_f64(),
            presented: a.get(2)?.as_f64()?,
            shown: a.get(3)?.as_f64()?,
            callback: a.get(4)?.as_f64()?,
            width: a.get(5)?.as_u64()? as u32,
            height: a.get(6)?.as_u64()? as u32,
        })
    }
}

/// p50/p95/p99/max/mean of a list, nearest-rank percentiles.
struct Spread {
    n: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    min: f64,
    mean: f64,
}

impl Spread {
    fn of(mut xs: Vec<f64>) -> Option<Spread> {
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(f64::total_cmp);
        let rank = |q: f64| xs[((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1];
        Some(Spread {
            n: xs.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: xs[xs.len() - 1],
            min: xs[0],
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
        })
    }

    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.n, self.p50, self.p95, self.p99, self.max, self.min, self.mean
        )
    }
}

fn num(v: &Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or(f64::NAN)
}

/// Δnum / Δden between two stats snapshots, times `scale`.
fn per(a: &Value, b: &Value, num_field: &str, den_field: &str, scale: f64) -> f64 {
    let dn = num(b, num_field) - num(a, num_field);
    let dd = num(b, den_field) - num(a, den_field);
    if dd > 0.0 { dn / dd * scale } else { f64::NAN }
}

fn delta(a: &Value, b: &Value, field: &str) -> f64 {
    num(b, field) - num(a, field)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The SFU's time per video frame: each marker packet (the last packet of a frame) the SFU sent
/// toward the classroom, against the one with the same RTP timestamp the teacher sent into the
/// SFU. The SFU rewrites timestamps by a fixed offset per source epoch: the offset is the most
/// common difference between an outgoing timestamp and the incoming ones of the 500 ms before it.
/// Returns the spread and how many outgoing markers found no partner.
fn sfu_share(ins: &[shaper::Marker], outs: &[shaper::Marker]) -> Option<(Spread, usize)> {
    let window = Duration::from_millis(500);
    let mut offsets: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for o in outs {
        for i in ins {
            if i.at <= o.at && o.at - i.at < window {
                *offsets
                    .entry(o.timestamp.wrapping_sub(i.timestamp))
                    .or_default() += 1;
            }
        }
    }
    let (&offset, _) = offsets.iter().max_by_key(|(_, n)| **n)?;
    let sent: std::collections::HashMap<u32, Instant> =
        ins.iter().rev().map(|i| (i.timestamp, i.at)).collect();
    let mut unmatched = 0;
    let times: Vec<f64> = outs
        .iter()
        .filter_map(|o| {
            let found = sent
                .get(&o.timestamp.wrapping_sub(offset))
                .filter(|at| **at <= o.at && o.at - **at < window);
            if found.is_none() {
                unmatched += 1;
            }
            found.map(|at| (o.at - *at).as_secs_f64() * 1000.0)
        })
        .collect();
    Some((Spread::of(times)?, unmatched))
}

/// The TURN relays of a relayed run: the classroom's (with the added delay) and the teacher's (none).
struct Relays {
    classroom: Relay,
    teacher: Relay,
}

async fn stats(page: &Page, who: &str) -> Result<Value> {
    let s = page.evaluate("window.g2g.stats()").await?;
    ensure!(
        !s.is_null(),
        "{who}: no video stats (no peer connection with the camera)"
    );
    Ok(s)
}

async fn run(args: &Args, net: TestNet) -> Result<()> {
    let (width, height) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .context("--size must be WIDTHxHEIGHT, e.g. 1280x720")?;
    ensure!(
        width >= 320 && height >= 180,
        "--size of at least 320x180: the bar code needs 6 px per block"
    );
    ensure!(
        args.codec == "vp8" || args.codec == "h264",
        "--codec is vp8 or h264"
    );
    let host = net.host_ip.to_string();
    let data_dir = std::env::temp_dir().join(format!("duet-g2g-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut config = DuetConfig {
        data_dir: data_dir.clone(),
        token_key: KEY.into(),
        ..DuetConfig::default()
    };
    config.gateway.listen = format!("{host}:0");
    config.gateway.demo = args.sign_in;
    config.sfu.rtc_port_min = 52_000;
    config.sfu.rtc_port_max = 52_999;
    let running = duet::start_up(&config).await.context("duet up")?;
    let base = format!("http://{host}:{}", running.addr.port());

    let relays = if args.delay_ms > 0 || args.relay {
        let at = |port| std::net::SocketAddr::new(net.peer_ip, port);
        let delay = LinkShape::delay(Duration::from_millis(args.delay_ms));
        Some(Relays {
            classroom: Relay::start(at(TURN_PORT), delay, delay).await?,
            teacher: Relay::start(at(TURN_PORT + 1), LinkShape::none(), LinkShape::none()).await?,
        })
    } else {
        None
    };

    let browser = Browser::launch(
        LaunchOptions::default()
            .secure_origin(base.clone())
            .arg("--window-size=1366,768"),
    )
    .await?;
    let outcome = measure(
        args,
        &browser,
        &running,
        &base,
        (width, height),
        relays.as_ref(),
    )
    .await;
    if outcome.is_err() {
        eprintln!("--- chromium log tail ---\n{}", browser.log_tail(40));
    }
    drop(browser);
    drop(relays);
    running.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    outcome
}

async fn measure(
    args: &Args,
    browser: &Browser,
    running: &duet::Running,
    base: &str,
    (width, height): (u32, u32),
    relays: Option<&Relays>,
) -> Result<()> {
    let script = |role: &str, relay: Option<&Relay>| {
        let config = json!({
            "role": role, "width": width, "height": height, "fps": args.fps,
            "noLipSync": args.no_lip_sync,
        });
        let page = PAGE_SCRIPT.replace("__CONFIG__", &config.to_string());
        match relay {
            Some(relay) => relay.force_relay_script() + &page,
            None => page,
        }
    };
    let (teacher_relay, room_relay) = (relays.map(|r| &r.teacher), relays.map(|r| &r.classroom));
    let (teacher, room) = if args.sign_in {
        let password = |u: &str| {
            running
                .demo_logins
                .iter()
                .find(|l| l.username == u)
                .map(|l| l.password.clone())
                .with_context(|| format!("no demo login {u}"))
        };
        let admin = format!("{base}/admin");
        let teacher = page_with_script(browser, &script("sender", teacher_relay), &admin).await?;
        teacher
            .sign_in_and_join("teacher", &password("teacher")?)
            .await?;
        let room = page_with_script(browser, &script("receiver", room_relay), &admin).await?;
        room.sign_in_and_join("room-a", &password("room-a")?)
            .await?;
        (teacher, room)
    } else {
        let url = |who: &str, name: &str, role| {
            format!(
                "{base}/?codec={}&token={}",
                args.codec,
                duet_tests::load::duet::token(
                    &duet_sfu_proto::TokenKey::new(KEY.as_bytes()).expect("the key is long enough"),
                    "g2g",
                    who,
                    name,
                    role
                )
            )
        };
        let teacher = page_with_script(
            browser,
            &script("sender", teacher_relay),
            &url("teacher", "王老师", Role::Lead),
        )
        .await?;
        let room = page_with_script(
            browser,
            &script("receiver", room_relay),
            &url("room-a", "李家村小学", Role::Receiving),
        )
        .await?;
        (teacher, room)
    };
    for (page, who) in [(&teacher, "teacher"), (&room, "classroom")] {
        page.wait_for(
            "window.duet && window.duet.state.joined",
            Duration::from_secs(30),
        )
        .await
        .with_context(|| format!("the {who} did not join the class"))?;
    }
    teacher
        .wait_for(
            "window.g2g.sender && window.g2g.sender.drawn > 0",
            Duration::from_secs(20),
        )
        .await
        .context("the teacher's page never asked for the camera (getUserMedia)")?;
    let teacher_id = teacher.evaluate("window.duet.state.you.id").await?;
    let teacher_id = teacher_id.as_str().context("the teacher's id")?.to_owned();
    room.evaluate(&format!("window.g2g.watch({})", json!(teacher_id)))
        .await?;
    room.wait_for("window.g2g.reader.counts.ok > 30", Duration::from_secs(60))
        .await
        .with_context(|| {
            format!(
                "the classroom reads no bar codes from the teacher's camera; console: {:#?}",
                room.console_tail()
            )
        })?;
    eprintln!(
        "g2g-latency: the classroom reads the teacher's bar code; warming up {} s",
        args.warmup
    );
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    let (tx_offset0, tx_rtt0) = clock_offset(&teacher).await?;
    let (rx_offset0, rx_rtt0) = clock_offset(&room).await?;
    let load_before = load_average();
    let tx0 = stats(&teacher, "teacher").await?;
    let rx0 = stats(&room, "classroom").await?;
    room.evaluate("window.g2g.start()").await?;
    if let Some(r) = relays {
        r.teacher.record_markers(true);
        r.classroom.record_markers(true);
    }
    let started = Instant::now();
    eprintln!("g2g-latency: measuring {} s", args.seconds);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let taken = room.evaluate("window.g2g.take()").await?;
    if let Some(r) = relays {
        r.teacher.record_markers(false);
        r.classroom.record_markers(false);
    }
    let window = started.elapsed().as_secs_f64();
    let tx1 = stats(&teacher, "teacher").await?;
    let rx1 = stats(&room, "classroom").await?;
    let load_after = load_average();
    let (tx_offset1, tx_rtt1) = clock_offset(&teacher).await?;
    let (rx_offset1, rx_rtt1) = clock_offset(&room).await?;
    // How far the classroom's clock is ahead of the teacher's.
    let skew = ((rx_offset0 - tx_offset0) + (rx_offset1 - tx_offset1)) / 2.0;

    let samples: Vec<Sample> = taken["samples"]
        .as_array()
        .context("samples")?
        .iter()
        .filter_map(Sample::parse)
        .collect();
    let counts = &taken["counts"];
    ensure!(
        !samples.is_empty(),
        "no frames read in the window: {counts}"
    );
    if let Some(path) = &args.samples_json {
        let rows: Vec<Value> = samples
            .iter()
            .map(|s| {
                json!({
                    "sent": s.sent, "received": s.received, "presented": s.presented,
                    "shown": s.shown, "callback": s.callback, "width": s.width, "height": s.height,
                })
            })
            .collect();
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json!({ "skew_ms": skew, "samples": rows }))?,
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }

    // Teacher's clock for `sent`, the classroom's for the rest: subtract the skew.
    let lat =
        |f: &dyn Fn(&Sample) -> Option<f64>| Spread::of(samples.iter().filter_map(f).collect());
    let total = lat(&|s| Some(s.shown - s.sent - skew)).expect("samples");
    let to_callback = lat(&|s| Some(s.callback - s.sent - skew));
    let to_received = lat(&|s| s.received.map(|r| r - s.sent - skew));
    let received_to_presented = lat(&|s| s.received.map(|r| s.presented - r));
    let presented_to_shown = lat(&|s| Some(s.shown - s.presented));

    let version = browser.cdp("Browser.getVersion", json!({})).await?;
    let (t, r) = (&tx1["rtp"], &rx1["rtp"]);
    let (t0, r0) = (&tx0["rtp"], &rx0["rtp"]);
    let link = match relays.map(|r| r.classroom.shape().0.delay) {
        None => "unshaped (loopback in the namespace)".to_owned(),
        Some(d) if d.is_zero() => "both pages through TURN relays, no added delay".to_owned(),
        Some(d) => format!(
            "both pages through TURN relays, the classroom's +{} ms each way (RTT +{} ms)",
            d.as_millis(),
            2 * d.as_millis()
        ),
    };
    let sizes: std::collections::BTreeSet<(u32, u32)> =
        samples.iter().map(|s| (s.width, s.height)).collect();

    println!();
    println!("## g2g-latency");
    println!();
    println!(
        "- build: {}; {}; join: {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        version["product"].as_str().unwrap_or("?"),
        if args.sign_in {
            "demo sign-in (recorder running)"
        } else {
            "join tokens (no demo)"
        },
    );
    println!(
        "- teacher camera: canvas {width}x{height} @ {} fps; codec {}; encoder {}; decoder {}",
        args.fps,
        tx1["codec"].as_str().unwrap_or("?"),
        t["encoderImplementation"].as_str().unwrap_or("?"),
        r["decoderImplementation"].as_str().unwrap_or("?"),
    );
    println!("- classroom link: {link}");
    if args.no_lip_sync {
        println!(
            "- lip sync off: the teacher's audio is in a stream of its own on the classroom's page"
        );
    }
    println!(
        "- classroom path: {} {} → {}; teacher path: {} {} → {}",
        rx1["pair"]["localType"].as_str().unwrap_or("?"),
        rx1["pair"]["local"].as_str().unwrap_or("?"),
        rx1["pair"]["remote"].as_str().unwrap_or("?"),
        tx1["pair"]["localType"].as_str().unwrap_or("?"),
        tx1["pair"]["local"].as_str().unwrap_or("?"),
        tx1["pair"]["remote"].as_str().unwrap_or("?"),
    );
    println!("- window {window:.1} s; load average {load_before} before, {load_after} after");
    println!(
        "- clocks: classroom − teacher {skew:+.2} ms (before {:+.2}, after {:+.2}; CDP round trips {:.1}/{:.1}/{:.1}/{:.1} ms)",
        rx_offset0 - tx_offset0,
        rx_offset1 - tx_offset1,
        tx_rtt0,
        rx_rtt0,
        tx_rtt1,
        rx_rtt1
    );
    println!(
        "- rVFC callbacks {}, frames read {}, misread {} (unreadable {}, checksum {}, implausible {}); \
         element already on a newer frame {}; presented frames no callback saw (main thread late) {}; \
         same time as the previous frame {}; sizes presented {:?}",
        counts["frames"],
        counts["ok"],
        num(counts, "unreadable") + num(counts, "checksum") + num(counts, "implausible"),
        counts["unreadable"],
        counts["checksum"],
        counts["implausible"],
        counts["superseded"],
        counts["skipped"],
        counts["repeated"],
        sizes
    );
    println!();
    println!("| ms | frames | p50 | p95 | p99 | max | min | mean |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "{}",
        total.row("**glass to glass** (drawn → expectedDisplayTime)")
    );
    if let Some(s) = to_callback {
        println!("{}", s.row("drawn → rVFC callback `now`"));
    }
    if let Some(s) = to_received {
        println!("{}", s.row("drawn → last packet received (receiveTime)"));
    }
    if let Some(s) = received_to_presented {
        println!("{}", s.row("received → presented (presentationTime)"));
    }
    if let Some(s) = presented_to_shown {
        println!("{}", s.row("presented → expectedDisplayTime"));
    }
    println!();
    println!("getStats() over the window:");
    println!(
        "- teacher: encode {:.1} ms/frame, pacer {:.1} ms/packet (totalPacketSendDelay), {:.0} kbit/s, {:.1} fps sent, {}x{} sent, quality limitation {}, RTT {:.1} ms",
        per(t0, t, "totalEncodeTime", "framesEncoded", 1000.0),
        per(t0, t, "totalPacketSendDelay", "packetsSent", 1000.0),
        delta(t0, t, "bytesSent") * 8.0 / window / 1000.0,
        delta(t0, t, "framesSent") / window,
        t["frameWidth"],
        t["frameHeight"],
        t["qualityLimitationReason"].as_str().unwrap_or("?"),
        num(&tx1["pair"], "rtt") * 1000.0,
    );
    println!(
        "- classroom: jitter buffer {:.1} ms/frame (target {:.1}, minimum {:.1}), assembly {:.1} ms, decode {:.1} ms/frame, \
         processing (first packet → decoded) {:.1} ms/frame, {:.1} fps decoded, {}x{}, {:.0} kbit/s, \
         lost {}, NACKs {}, PLIs {}, dropped {}, freezes {} ({:.0} ms), RTT {:.1} ms",
        per(
            r0,
            r,
            "jitterBufferDelay",
            "jitterBufferEmittedCount",
            1000.0
        ),
        per(
            r0,
            r,
            "jitterBufferTargetDelay",
            "jitterBufferEmittedCount",
            1000.0
        ),
        per(
            r0,
            r,
            "jitterBufferMinimumDelay",
            "jitterBufferEmittedCount",
            1000.0
        ),
        per(
            r0,
            r,
            "totalAssemblyTime",
            "framesAssembledFromMultiplePackets",
            1000.0
        ),
        per(r0, r, "totalDecodeTime", "framesDecoded", 1000.0),
        per(r0, r, "totalProcessingDelay", "framesDecoded", 1000.0),
        delta(r0, r, "framesDecoded") / window,
        r["frameWidth"],
        r["frameHeight"],
        delta(r0, r, "bytesReceived") * 8.0 / window / 1000.0,
        delta(r0, r, "packetsLost"),
        delta(r0, r, "nackCount"),
        delta(r0, r, "pliCount"),
        delta(r0, r, "framesDropped"),
        delta(r0, r, "freezeCount"),
        delta(r0, r, "totalFreezesDuration") * 1000.0,
        num(&rx1["pair"], "rtt") * 1000.0,
    );
    let (a0, a1) = (&rx0["audio"], &rx1["audio"]);
    if !a1.is_null() {
        println!(
            "- classroom, teacher's audio: jitter buffer {:.1} ms (target {:.1}, minimum {:.1}), playout delay {:.1} ms, concealed {:.2}%",
            per(
                &a0["rtp"],
                &a1["rtp"],
                "jitterBufferDelay",
                "jitterBufferEmittedCount",
                1000.0
            ),
            per(
                &a0["rtp"],
                &a1["rtp"],
                "jitterBufferTargetDelay",
                "jitterBufferEmittedCount",
                1000.0
            ),
            per(
                &a0["rtp"],
                &a1["rtp"],
                "jitterBufferMinimumDelay",
                "jitterBufferEmittedCount",
                1000.0
            ),
            per(
                &a0["playout"],
                &a1["playout"],
                "totalPlayoutDelay",
                "totalSamplesCount",
                1000.0
            ),
            per(
                &a0["rtp"],
                &a1["rtp"],
                "concealedSamples",
                "totalSamplesReceived",
                100.0
            ),
        );
    }
    if let Some(r) = relays {
        let stats = r.classroom.stats();
        println!(
            "- classroom's relay: {} datagrams classroom → SFU, {} SFU → classroom",
            stats.up.passed, stats.down.passed
        );
        let (teacher_up, _) = r.teacher.markers();
        let (_, classroom_down) = r.classroom.markers();
        match sfu_share(&teacher_up, &classroom_down) {
            Some((spread, unmatched)) => {
                println!();
                println!(
                    "The SFU's own share: last packet of a frame from the teacher's relay into the SFU → out \
                     of the SFU at the classroom's relay (RTP marker packets matched by timestamp; \
                     {unmatched} not matched):"
                );
                println!();
                println!("| ms | frames | p50 | p95 | p99 | max | min | mean |");
                println!("|---|---|---|---|---|---|---|---|");
                println!("{}", spread.row("SFU in → out"));
            }
            None => println!("- the SFU's share: no marker packets matched"),
        }
    }
    println!();
    println!(
        "RESULT g2g p50={:.1} p95={:.1} p99={:.1} max={:.1} ms n={} misread={}",
        total.p50,
        total.p95,
        total.p99,
        total.max,
        total.n,
        num(counts, "unreadable") + num(counts, "checksum") + num(counts, "implausible"),
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    let net = match enter_private_network() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("g2g-latency: {e:#}");
            std::process::exit(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_srtp=error,webrtc=error".into()
            }),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(&args, net)) {
        eprintln!("g2g-latency: {e:#}");
        std::process::exit(1);
    }
}
