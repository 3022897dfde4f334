//! Voice activity detection (VAD): mono PCM in, speech segments out. Sans-IO and pure: no clock,
//! no threads; time is the count of samples fed (and skipped).
//!
//! Drive it with [`Vad::push`] (mono `f32` samples at [`SAMPLE_RATE`], full scale = 1, in chunks
//! of any size), [`Vad::skip`] where the input has no audio (a gap: counted as silence, without
//! touching the noise estimate), then [`Vad::finish`] for the segments `[from_ms, to_ms]`, sorted
//! and disjoint, in ms from the first sample.
//!
//! Each 20 ms frame is speech when all of these hold:
//! - its speech-band (300–3400 Hz, 4th-order Butterworth band) level is above an absolute gate
//!   ([`VadConfig::min_level_db`]) and at least [`VadConfig::margin_db`] above the adaptive noise
//!   floor. The floor follows quieter frames quickly and louder ones slowly (fast while the frame
//!   is not speech, very slowly while it is), so a room's steady noise becomes the floor;
//! - the speech band holds at least [`VadConfig::min_band_share`] of the frame's energy (mains hum,
//!   rumble and hiss are mostly outside it);
//! - the band level both rose and fell by [`VadConfig::min_modulation_db`] within 300 ms either
//!   side of the frame: speech comes in syllables, a fan, a hum or a tone switched on does not.
//!   (Decisions therefore lag the input by 300 ms; [`Vad::finish`] decides the last frames.)
//!
//! Frames then become segments: gaps shorter than [`VadConfig::bridge_ms`] are bridged, segments
//! shorter than [`VadConfig::min_speech_ms`] dropped, and each segment's end is held for
//! [`VadConfig::hangover_ms`] (speech fades out below the threshold before it ends).

/// The sample rate the detector expects, Hz.
pub const SAMPLE_RATE: u32 = 16_000;

/// One decision per frame of this many ms.
pub const FRAME_MS: u64 = 20;

/// Samples per frame.
const FRAME_LEN: usize = (SAMPLE_RATE as u64 * FRAME_MS / 1000) as usize;

/// Frames either side of a frame over which the band level's movement (modulation) is
/// measured: 300 ms, enough to hold a whole syllable's rise and fall from its first frame.
const MODULATION_REACH: u64 = 15;

/// How fast the noise floor falls towards a quieter frame (fraction of the difference per frame).
const FLOOR_FALL: f64 = 0.3;

/// How fast the floor may rise, dB per frame, towards a louder frame that is not loud enough to
/// be speech (5 dB/s).
const FLOOR_RISE_QUIET_DB: f64 = 0.1;

/// How fast the floor may rise towards a frame loud enough to be speech (0.5 dB/s): a long
/// monologue barely moves it, a new steady noise is absorbed within tens of seconds (and the
/// modulation test keeps it from passing for speech meanwhile).
const FLOOR_RISE_SPEECH_DB: f64 = 0.01;

/// The floor never goes below this (digital silence would pull it to −∞).
const FLOOR_MIN_DB: f64 = -100.0;

/// The detector's thresholds. The defaults suit classroom microphones after WebRTC's processing.
#[derive(Clone, Debug, PartialEq)]
pub struct VadConfig {
    /// Speech-band level above the noise floor a speech frame needs, dB (default 10).
    pub margin_db: f64,
    /// Speech-band level a speech frame needs, dBFS (default −50).
    pub min_level_db: f64,
    /// Share of the frame's energy in 300–3400 Hz a speech frame needs (default 0.4; white noise
    /// has about 0.39, a voice 0.6 or more, a 50 Hz hum almost 0).
    pub min_band_share: f64,
    /// How far the band level must both rise and fall within 300 ms either side of a speech
    /// frame, dB (default 6; steady noise jitters by about 2).
    pub min_modulation_db: f64,
    /// How long a segment's end is held after its last speech frame, ms (default 60).
    pub hangover_ms: u64,
    /// Segments with less speech than this are dropped, ms (default 200).
    pub min_speech_ms: u64,
    /// Gaps shorter than this between speech frames are bridged, ms (default 300).
    pub bridge_ms: u64,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            margin_db: 10.0,
            min_level_db: -50.0,
            min_band_share: 0.4,
            min_modulation_db: 6.0,
            hangover_ms: 60,
            min_speech_ms: 200,
            bridge_ms: 300,
        }
    }
}

/// Speech segments of `samples` (mono, [`SAMPLE_RATE`]) with the default thresholds.
pub fn detect(samples: &[f32]) -> Vec<[u64; 2]> {
    let mut vad = Vad::new(VadConfig::default());
    vad.push(samples);
    vad.finish()
}

/// What one frame's analysis found, kept until its neighbours are known.
#[derive(Clone, Copy, Debug)]
struct Analysed {
    /// Speech-band level, dB.
    band_db: f64,
    /// Loud enough, far enough above the floor and in the speech band to be speech.
    loud: bool,
}

/// How far `levels` (dB, in time order) both rose and fell: the smaller of the largest rise
/// (a level above an earlier one) and the largest fall (a level below an earlier one).
fn modulation(levels: impl Iterator<Item = f64>) -> f64 {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut rise, mut fall) = (0.0f64, 0.0f64);
    for level in levels {
        low = low.min(level);
        high = high.max(level);
        rise = rise.max(level - low);
        fall = fall.max(high - level);
    }
    rise.min(fall)
}

/// A second-order IIR section (transposed direct form II).
#[derive(Clone, Copy, Debug)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    /// RBJ cookbook low-pass (`high = false`) or high-pass at `freq` Hz with quality `q`.
    fn new(high: bool, freq: f64, q: f64) -> Self {
        let w = std::f64::consts::TAU * freq / f64::from(SAMPLE_RATE);
        let (sin, cos) = w.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        let (b0, b1) = if high {
            ((1.0 + cos) / 2.0, -(1.0 + cos))
        } else {
            ((1.0 - cos) / 2.0, 1.0 - cos)
        };
        Self {
            b: [b0 / a0, b1 / a0, b0 / a0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    fn run(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// The voice activity detector (see the module doc).
#[derive(Debug)]
pub struct Vad {
    /// Thresholds.
    config: VadConfig,
    /// The speech band: two high-pass sections at 300 Hz, two low-pass at 3400 Hz (each pair a
    /// 4th-order Butterworth), state carried across frames.
    band: [Biquad; 4],
    /// Samples of the frame being filled (fewer than a frame).
    pending: Vec<f32>,
    /// Frames decided or skipped so far: the next frame's index.
    frame: u64,
    /// Noise floor of the band level, dB; `None` until the first frame.
    floor_db: Option<f64>,
    /// Frames analysed but not yet decided, and those still needed as their neighbours: from
    /// `next_decide - MODULATION_REACH` (or the last gap) to the last frame analysed.
    window: std::collections::VecDeque<Analysed>,
    /// The index of `window[0]`.
    window_first: u64,
    /// The next frame to decide.
    next_decide: u64,
    /// The open segment: first and last speech frame.
    open: Option<(u64, u64)>,
    /// Closed segments, ms.
    segments: Vec<[u64; 2]>,
}

impl Vad {
    /// A detector with nothing fed yet.
    pub fn new(config: VadConfig) -> Self {
        // Q of the two sections of a 4th-order Butterworth.
        let (q1, q2) = (0.541_196_1, 1.306_563);
        Self {
            config,
            band: [
                Biquad::new(true, 300.0, q1),
                Biquad::new(true, 300.0, q2),
                Biquad::new(false, 3400.0, q1),
                Biquad::new(false, 3400.0, q2),
            ],
            pending: Vec::with_capacity(FRAME_LEN),
            frame: 0,
            floor_db: None,
            window: std::collections::VecDeque::new(),
            window_first: 0,
            next_decide: 0,
            open: None,
            segments: Vec::new(),
        }
    }

    /// Feeds the next `samples` (mono, [`SAMPLE_RATE`], full scale = 1). Non-finite samples
    /// count as 0.
    pub fn push(&mut self, mut samples: &[f32]) {
        while !samples.is_empty() {
            let take = (FRAME_LEN - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() == FRAME_LEN {
                let frame = std::mem::take(&mut self.pending);
                self.analyse(&frame);
                self.pending = frame;
                self.pending.clear();
            }
        }
    }

    /// Moves time on by `samples` without audio (a gap in the input): silence for the
    /// segments, the noise floor untouched. A partly filled frame is completed with zeros first.
    pub fn skip(&mut self, samples: u64) {
        let mut samples = samples;
        if !self.pending.is_empty() {
            let fill = (FRAME_LEN - self.pending.len()) as u64;
            let zeros = [0.0f32; FRAME_LEN];
            let n = fill.min(samples) as usize;
            self.push(&zeros[..n]);
            samples -= n as u64;
            if samples == 0 {
                return;
            }
        }
        // The frames before the gap are decided with what they have; none after it is their
        // neighbour.
        self.decide_ready(true);
        self.window.clear();
        let frames = samples / FRAME_LEN as u64;
        if frames > 0 {
            self.frame += frames;
            self.next_decide = self.frame;
            self.silent(self.frame - 1);
        }
        let rest = (samples % FRAME_LEN as u64) as usize;
        self.pending.resize(rest, 0.0);
    }

    /// Samples fed and skipped so far: the position of the next sample.
    pub fn position(&self) -> u64 {
        self.frame * FRAME_LEN as u64 + self.pending.len() as u64
    }

    /// The segments closed so far, ms.
    pub fn segments(&self) -> &[[u64; 2]] {
        &self.segments
    }

    /// Ends the input: closes the open segment and returns all segments, ms. A final partial
    /// frame is ignored.
    pub fn finish(mut self) -> Vec<[u64; 2]> {
        self.decide_ready(true);
        if let Some((first, last)) = self.open.take() {
            self.close(first, last);
        }
        let end_ms = self.frame * FRAME_MS;
        if let Some(last) = self.segments.last_mut() {
            last[1] = last[1].min(end_ms);
        }
        self.segments
    }

    /// Analyses one frame (its decision waits for its neighbours).
    fn analyse(&mut self, frame: &[f32]) {
        let (mut total, mut band) = (0.0f64, 0.0f64);
        for &x in frame {
            let x = if x.is_finite() { f64::from(x) } else { 0.0 };
            let y = self.band.iter_mut().fold(x, |v, f| f.run(v));
            total += x * x;
            band += y * y;
        }
        let n = frame.len() as f64;
        let band_db = 10.0 * (band / n + 1e-12).log10();
        let share = band / (total + 1e-12);

        let floor = *self.floor_db.get_or_insert(band_db);
        let c = &self.config;
        let loud = band_db >= c.min_level_db
            && band_db - floor >= c.margin_db
            && share >= c.min_band_share;
        let floor = if band_db < floor {
            floor + FLOOR_FALL * (band_db - floor)
        } else {
            let rise = if loud {
                FLOOR_RISE_SPEECH_DB
            } else {
                FLOOR_RISE_QUIET_DB
            };
            floor + (band_db - floor).min(rise)
        };
        self.floor_db = Some(floor.max(FLOOR_MIN_DB));

        if self.window.is_empty() {
            self.window_first = self.frame;
        }
        self.window.push_back(Analysed { band_db, loud });
        self.frame += 1;
        self.decide_ready(false);
    }

    /// Decides every frame whose neighbours up to [`MODULATION_REACH`] ahead have been analysed
    /// (with `flush`, every frame analysed), and forgets frames no longer needed.
    fn decide_ready(&mut self, flush: bool) {
        let end = self.window_first + self.window.len() as u64;
        while self.next_decide < end && (flush || self.next_decide + MODULATION_REACH < end) {
            let index = self.next_decide;
            let from = index
                .saturating_sub(MODULATION_REACH)
                .max(self.window_first);
            let to = (index + MODULATION_REACH + 1).min(end);
            let neighbours = self
                .window
                .range((from - self.window_first) as usize..(to - self.window_first) as usize);
            let loud = self.window[(index - self.window_first) as usize].loud;
            if loud && modulation(neighbours.map(|a| a.band_db)) >= self.config.min_modulation_db {
                self.spoken(index);
            } else {
                self.silent(index);
            }
            self.next_decide += 1;
            while self.window_first + MODULATION_REACH < self.next_decide
                && self.window.pop_front().is_some()
            {
                self.window_first += 1;
            }
        }
    }

    /// Frame `index` is speech: extends the open segment across a short gap or opens one.
    fn spoken(&mut self, index: u64) {
        match self.open {
            Some((first, last)) if (index - last - 1) * FRAME_MS < self.config.bridge_ms => {
                self.open = Some((first, index));
            }
            Some((first, last)) => {
                self.close(first, last);
                self.open = Some((index, index));
            }
            None => self.open = Some((index, index)),
        }
    }

    /// Frames up to `index` are silence: closes the open segment once the gap is too long to
    /// bridge.
    fn silent(&mut self, index: u64) {
        if let Some((first, last)) = self.open
            && (index - last) * FRAME_MS >= self.config.bridge_ms
        {
            self.open = None;
            self.close(first, last);
        }
    }

    /// Records the segment from frame `first` to frame `last` (inclusive), unless too short.
    fn close(&mut self, first: u64, last: u64) {
        let (from, to) = (first * FRAME_MS, (last + 1) * FRAME_MS);
        if to - from >= self.config.min_speech_ms {
            self.segments.push([from, to + self.config.hangover_ms]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::synth::{Rng, pattern_segments, speech_pattern};

    const RATE: f64 = SAMPLE_RATE as f64;

    fn noise(seconds: f64, rms: f64, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed);
        (0..(seconds * RATE) as usize)
            .map(|_| (rms * rng.noise()) as f32)
            .collect()
    }

    fn sine(seconds: f64, freq: f64, amplitude: f64) -> Vec<f32> {
        (0..(seconds * RATE) as usize)
            .map(|i| (amplitude * (std::f64::consts::TAU * freq * i as f64 / RATE).sin()) as f32)
            .collect()
    }

    /// A voiced, speech-like signal: harmonics of a 120–220 Hz pitch, amplitude-modulated at
    /// 4 Hz (syllables), no gaps.
    fn voiced(seconds: f64) -> Vec<f32> {
        let mut phase = 0.0f64;
        (0..(seconds * RATE) as usize)
            .map(|i| {
                let t = i as f64 / RATE;
                let f0 = 170.0 + 50.0 * (std::f64::consts::TAU * 0.7 * t).sin();
                phase += std::f64::consts::TAU * f0 / RATE;
                let v: f64 = (1..=20)
                    .map(|k| {
                        let f = k as f64 * f0;
                        let formant = 1.0 / (1.0 + ((f - 700.0) / 300.0).powi(2))
                            + 0.5 / (1.0 + ((f - 1800.0) / 300.0).powi(2));
                        formant * (k as f64 * phase).sin()
                    })
                    .sum();
                let syllable = 0.5 - 0.5 * (std::f64::consts::TAU * 4.0 * t).cos();
                (0.1 * v * syllable) as f32
            })
            .collect()
    }

    fn feed_in_odd_chunks(samples: &[f32]) -> Vec<[u64; 2]> {
        let mut vad = Vad::new(VadConfig::default());
        for (i, chunk) in samples.chunks(777).enumerate() {
            // Uneven chunk sizes: a frame split across pushes must not matter.
            let (a, b) = chunk.split_at((i * 131) % chunk.len().max(1));
            vad.push(a);
            vad.push(b);
        }
        vad.finish()
    }

    #[test]
    fn silence_is_not_speech() {
        assert!(detect(&vec![0.0; 16_000 * 5]).is_empty());
        assert!(detect(&[]).is_empty());
    }

    #[test]
    fn low_noise_is_not_speech() {
        assert!(detect(&noise(10.0, 0.002, 1)).is_empty());
    }

    #[test]
    fn loud_steady_noise_is_not_speech() {
        assert_eq!(detect(&noise(10.0, 0.1, 2)), Vec::<[u64; 2]>::new());
        // Noise switched on after a quiet second: its onset is no syllable.
        let mut signal = noise(1.0, 0.001, 3);
        signal.extend(noise(10.0, 0.05, 4).iter());
        assert_eq!(detect(&signal), Vec::<[u64; 2]>::new());
    }

    #[test]
    fn mains_hum_is_not_speech() {
        assert!(detect(&sine(10.0, 50.0, 0.5)).is_empty());
        // Hum switched on and off (modulated, loud): still outside the speech band.
        let mut signal = sine(1.0, 50.0, 0.5);
        signal.extend(vec![0.0; 16_000]);
        signal.extend(sine(1.0, 50.0, 0.5));
        assert!(detect(&signal).is_empty());
    }

    #[test]
    fn a_voiced_signal_is_one_segment() {
        let mut signal = noise(1.0, 0.002, 5);
        let voice = voiced(4.0);
        signal.extend(voice.iter());
        signal.extend(noise(1.0, 0.002, 6).iter());
        let segments = feed_in_odd_chunks(&signal);
        assert_eq!(segments.len(), 1, "{segments:?}");
        let [from, to] = segments[0];
        assert!(from.abs_diff(1000) <= 150, "{segments:?}");
        assert!(to.abs_diff(5000) <= 150, "{segments:?}");
    }

    #[test]
    fn a_known_pattern_is_found_within_150_ms() {
        let pattern = [
            (false, 1500),
            (true, 3000),
            (false, 1000),
            (true, 600),
            (false, 2500),
            (true, 8000),
            (false, 400),
            (true, 1200),
            (false, 2000),
        ];
        for seed in 1..=4 {
            let samples = speech_pattern(&pattern, SAMPLE_RATE, seed);
            let expected = pattern_segments(&pattern);
            let got = feed_in_odd_chunks(&samples);
            assert_eq!(
                got.len(),
                expected.len(),
                "seed {seed}: {got:?} vs {expected:?}"
            );
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    g[0].abs_diff(e[0]) <= 150 && g[1].abs_diff(e[1]) <= 150,
                    "seed {seed}: {got:?} vs {expected:?}"
                );
            }
        }
    }

    #[test]
    fn a_skipped_gap_is_silence_on_the_timeline() {
        let speech = speech_pattern(&[(true, 2000)], SAMPLE_RATE, 9);
        let mut vad = Vad::new(VadConfig::default());
        vad.push(&noise(0.5, 0.002, 10));
        vad.push(&speech);
        vad.skip(3 * 16_000 + 100);
        assert_eq!(vad.position(), 16_000 * 11 / 2 + 100);
        vad.push(&speech);
        let got = vad.finish();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0][0].abs_diff(500) <= 150 && got[0][1].abs_diff(2500) <= 150,
            "{got:?}"
        );
        assert!(
            got[1][0].abs_diff(5500) <= 150 && got[1][1].abs_diff(7500) <= 150,
            "{got:?}"
        );
    }

    #[test]
    fn short_bursts_are_dropped_and_short_gaps_bridged() {
        let config = VadConfig::default();
        let mut vad = Vad::new(config.clone());
        // Frames 0..5 speech (100 ms: dropped), 30..50 speech, 60..80 speech (gap 200 ms: bridged).
        for f in 0..200u64 {
            let speech = (0..5).contains(&f) || (30..50).contains(&f) || (60..80).contains(&f);
            vad.frame = f + 1;
            if speech { vad.spoken(f) } else { vad.silent(f) }
        }
        assert_eq!(vad.finish(), vec![[600, 1600 + config.hangover_ms]]);
    }
}
