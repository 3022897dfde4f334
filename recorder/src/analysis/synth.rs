//! Test audio with a KNOWN speech/silence pattern: a speech-like voice where the pattern says
//! "speaking", a little background noise everywhere.
//!
//! The voice is not a tone: syllables of 140–320 ms, each with its own pitch glide (a glottal
//! pitch of 120–220 Hz), its own vowel (three formants) and loudness, an envelope that rises and
//! falls within the syllable (so the sound is amplitude-modulated at about the syllable rate,
//! ~4 Hz), and short pauses between syllables and words (never 300 ms or more, never at the edges
//! of a speaking step, so a speaking step stays one segment for a voice activity detector that
//! bridges gaps shorter than 300 ms). Seeded: the same pattern and seed give the same samples.
//!
//! Uses: the analysis tests, and Chromium's fake microphone in end-to-end tests
//! (`--use-file-for-fake-audio-capture=<wav>`, a 48 kHz mono 16-bit WAV written by
//! [`write_speech_pattern_wav`]). Chromium loops the file: [`pattern_segments_looped`] gives the
//! expected speech over any length of time.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::AnalysisError;

/// The sample rate of the WAV files written here, Hz.
pub const WAV_RATE: u32 = 48_000;

/// RMS of the background noise, full scale = 1 (about −54 dBFS): "a little".
const NOISE_RMS: f64 = 0.002;

/// RMS of a syllable at its loudest (about −18 dBFS, before the per-syllable loudness).
const VOICE_RMS: f64 = 0.125;

/// The longest pattern written to a WAV file (the RIFF sizes are 32-bit).
const MAX_PATTERN_MS: u64 = 6 * 3600 * 1000;

/// The speaking steps of `pattern` (`(speaking, ms)` in order) as `[from_ms, to_ms]` segments;
/// consecutive speaking steps make one segment, zero-length steps are ignored.
pub fn pattern_segments(pattern: &[(bool, u32)]) -> Vec<[u64; 2]> {
    let mut segments: Vec<[u64; 2]> = Vec::new();
    let mut t = 0u64;
    for &(speaking, ms) in pattern {
        let end = t + u64::from(ms);
        if speaking && ms > 0 {
            match segments.last_mut() {
                Some(last) if last[1] == t => last[1] = end,
                _ => segments.push([t, end]),
            }
        }
        t = end;
    }
    segments
}

/// The speech of `pattern` played in a loop (as Chromium plays its fake microphone file) from 0
/// to `until_ms`: segments that run across the loop point are joined, the last is cut at
/// `until_ms`. Empty if the pattern lasts 0 ms.
pub fn pattern_segments_looped(pattern: &[(bool, u32)], until_ms: u64) -> Vec<[u64; 2]> {
    let period: u64 = pattern.iter().map(|&(_, ms)| u64::from(ms)).sum();
    let once = pattern_segments(pattern);
    let mut segments: Vec<[u64; 2]> = Vec::new();
    if period == 0 {
        return segments;
    }
    let mut offset = 0u64;
    while offset < until_ms {
        for &[from, to] in &once {
            let (from, to) = (from + offset, (to + offset).min(until_ms));
            if from >= until_ms {
                break;
            }
            match segments.last_mut() {
                Some(last) if last[1] == from => last[1] = to,
                _ => segments.push([from, to]),
            }
        }
        offset += period;
    }
    segments
}

/// Writes `pattern` (`(speaking, ms)` in order) as a 48 kHz mono 16-bit PCM WAV file at `path`
/// (see the module doc). Fails on an empty or over-long (> 6 h) pattern and on I/O errors.
pub fn write_speech_pattern_wav(
    path: &Path,
    pattern: &[(bool, u32)],
    seed: u64,
) -> Result<(), AnalysisError> {
    let total_ms: u64 = pattern.iter().map(|&(_, ms)| u64::from(ms)).sum();
    if total_ms == 0 || total_ms > MAX_PATTERN_MS {
        return Err(AnalysisError::Pattern {
            reason: format!("the pattern lasts {total_ms} ms; it must last 1 ms to 6 h"),
        });
    }
    let samples = speech_pattern(pattern, WAV_RATE, seed);
    let io = |source| AnalysisError::Io {
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::new(fs::File::create(path).map_err(io)?);
    let data_bytes = u32::try_from(samples.len() * 2).expect("≤ 6 h at 48 kHz fits 32 bits");
    out.write_all(&wav_header(WAV_RATE, data_bytes))
        .map_err(io)?;
    for s in samples {
        // Saturating conversion: the voice peaks well below full scale, this only guards.
        let v = (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16;
        out.write_all(&v.to_le_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)
}

/// The 44-byte RIFF/WAVE header of a mono 16-bit PCM file with `data_bytes` of samples.
fn wav_header(rate: u32, data_bytes: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"RIFF");
    put(4, &(36 + data_bytes).to_le_bytes());
    put(8, b"WAVE");
    put(12, b"fmt ");
    put(16, &16u32.to_le_bytes()); // fmt chunk size
    put(20, &1u16.to_le_bytes()); // PCM
    put(22, &1u16.to_le_bytes()); // channels
    put(24, &rate.to_le_bytes());
    put(28, &(rate * 2).to_le_bytes()); // bytes per second
    put(32, &2u16.to_le_bytes()); // block align
    put(34, &16u16.to_le_bytes()); // bits per sample
    put(36, b"data");
    put(40, &data_bytes.to_le_bytes());
    h
}

/// The samples of `pattern` at `rate` Hz, full scale = 1 (see the module doc). Pure.
pub fn speech_pattern(pattern: &[(bool, u32)], rate: u32, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut voice = Voice::new(rate);
    let mut out = Vec::new();
    for &(speaking, ms) in pattern {
        let start = out.len();
        let len = (u64::from(ms) * u64::from(rate) / 1000) as usize;
        out.resize(start + len, 0.0);
        if speaking {
            for (at, syllable_ms) in syllables(ms, &mut rng) {
                let from = start + (u64::from(at) * u64::from(rate) / 1000) as usize;
                let n = (u64::from(syllable_ms) * u64::from(rate) / 1000) as usize;
                let to = (from + n).min(start + len);
                voice.syllable(&mut out[from..to], &mut rng);
            }
        }
        for s in &mut out[start..] {
            *s += (NOISE_RMS * rng.noise()) as f32;
        }
    }
    out
}

/// Where the syllables of a speaking step of `total_ms` go: `(start_ms, length_ms)` within the
/// step, the first at 0, the last ending at `total_ms`, pauses between them < 300 ms.
fn syllables(total_ms: u32, rng: &mut Rng) -> Vec<(u32, u32)> {
    const MIN_TAIL_MS: u32 = 120;
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut t = 0u32;
    while t < total_ms {
        let remaining = total_ms - t;
        let len = rng.range(140.0, 320.0) as u32;
        if remaining <= len + MIN_TAIL_MS {
            out.push((t, remaining));
            break;
        }
        out.push((t, len));
        t += len;
        // Mostly syllables run into each other; every few a word break.
        let pause = if rng.unit() < 0.25 {
            rng.range(80.0, 200.0) as u32
        } else {
            rng.range(0.0, 50.0) as u32
        };
        if total_ms - t <= pause + MIN_TAIL_MS {
            if let Some(last) = out.last_mut() {
                last.1 += total_ms - t;
            }
            break;
        }
        t += pause;
    }
    out
}

/// A voice: the glottal phase carried from syllable to syllable.
struct Voice {
    rate: f64,
    /// Phase of the fundamental, radians.
    phase: f64,
}

impl Voice {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            phase: 0.0,
        }
    }

    /// Adds one syllable to `out` (its whole length): harmonics of a gliding pitch, shaped by
    /// three formants and a spectral tilt, under a rise–hold–fall envelope.
    fn syllable(&mut self, out: &mut [f32], rng: &mut Rng) {
        let f0_from = rng.range(120.0, 220.0);
        let f0_to = (f0_from * rng.range(0.85, 1.15)).clamp(110.0, 230.0);
        let formants = [
            (rng.range(300.0, 800.0), 90.0, 1.0),
            (rng.range(900.0, 2300.0), 120.0, 0.6),
            (rng.range(2400.0, 3000.0), 180.0, 0.3),
        ];
        let loudness = rng.range(0.55, 1.0);
        let f0_mid = (f0_from + f0_to) / 2.0;
        let top = 3800.0_f64.min(self.rate * 0.45);
        let harmonics = ((top / f0_to.max(f0_from)) as usize).max(1);
        let mut amps: Vec<f64> = (1..=harmonics)
            .map(|k| {
                let f = k as f64 * f0_mid;
                let shape: f64 = formants
                    .iter()
                    .map(|&(centre, width, gain)| gain / (1.0 + ((f - centre) / width).powi(2)))
                    .sum();
                shape / (k as f64).sqrt()
            })
            .collect();
        let rms = (amps.iter().map(|a| a * a).sum::<f64>() / 2.0).sqrt();
        for a in &mut amps {
            *a *= VOICE_RMS * loudness / rms.max(1e-9);
        }
        let n = out.len().max(1) as f64;
        for (i, sample) in out.iter_mut().enumerate() {
            let u = i as f64 / n;
            let f0 = f0_from + (f0_to - f0_from) * u;
            self.phase =
                (self.phase + std::f64::consts::TAU * f0 / self.rate) % std::f64::consts::TAU;
            // sin(kφ) by the Chebyshev recurrence: one multiply-add per harmonic.
            let (s1, c1) = self.phase.sin_cos();
            let (mut prev, mut cur) = (0.0, s1);
            let mut v = 0.0;
            for a in &amps {
                v += a * cur;
                let next = 2.0 * c1 * cur - prev;
                prev = cur;
                cur = next;
            }
            *sample += (v * envelope(u)) as f32;
        }
    }
}

/// A syllable's loudness over its length `u` ∈ [0, 1): a raised-cosine rise over the first
/// 20 %, a slight decline, a raised-cosine fall over the last 35 %; 0 at both ends.
fn envelope(u: f64) -> f64 {
    use std::f64::consts::PI;
    if u < 0.2 {
        0.5 - 0.5 * (PI * u / 0.2).cos()
    } else if u < 0.65 {
        1.0 - 0.3 * (u - 0.2)
    } else {
        let top = 1.0 - 0.3 * 0.45;
        top * (0.5 + 0.5 * (PI * (u - 0.65) / 0.35).cos())
    }
}

/// SplitMix64: small, seeded, good enough for test signals.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Zero-mean noise of unit RMS (uniform, scaled).
    pub(crate) fn noise(&mut self) -> f64 {
        (self.unit() * 2.0 - 1.0) * 3f64.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_join_consecutive_speaking_steps() {
        let pattern = [
            (false, 500),
            (true, 1000),
            (true, 500),
            (false, 0),
            (false, 700),
            (true, 300),
        ];
        assert_eq!(pattern_segments(&pattern), vec![[500, 2000], [2700, 3000]]);
        assert!(pattern_segments(&[(false, 100)]).is_empty());
    }

    #[test]
    fn looped_segments_join_across_the_loop_point_and_stop_in_time() {
        let pattern = [(true, 1000), (false, 1000), (true, 500)];
        assert_eq!(
            pattern_segments_looped(&pattern, 6000),
            vec![[0, 1000], [2000, 3500], [4500, 6000]]
        );
        assert!(pattern_segments_looped(&[], 1000).is_empty());
    }

    #[test]
    fn syllables_fill_a_step_with_short_pauses() {
        let mut rng = Rng(7);
        for total in [50, 200, 260, 999, 4000, 30_000] {
            let s = syllables(total, &mut rng);
            assert_eq!(s[0].0, 0, "{total}");
            let last = s[s.len() - 1];
            assert_eq!(last.0 + last.1, total, "{total}");
            for w in s.windows(2) {
                let gap = w[1].0 - (w[0].0 + w[0].1);
                assert!(gap < 300, "{total}: {gap}");
            }
        }
    }

    #[test]
    fn the_voice_is_loud_where_speaking_and_quiet_elsewhere() {
        let rate = 16_000;
        let samples = speech_pattern(&[(false, 1000), (true, 2000), (false, 1000)], rate, 3);
        assert_eq!(samples.len(), 64_000);
        let rms = |s: &[f32]| (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt();
        let silence = rms(&samples[..16_000]);
        let voice = rms(&samples[16_000..48_000]);
        assert!(silence < 0.004, "{silence}");
        assert!(voice > 0.04, "{voice}");
        assert!(samples.iter().all(|s| s.abs() < 1.0));
        // Seeded: same seed, same samples; another seed, other samples.
        assert_eq!(
            samples,
            speech_pattern(&[(false, 1000), (true, 2000), (false, 1000)], rate, 3)
        );
        assert_ne!(
            samples,
            speech_pattern(&[(false, 1000), (true, 2000), (false, 1000)], rate, 4)
        );
    }

    #[test]
    fn the_wav_file_has_a_valid_header() {
        let dir = std::env::temp_dir().join(format!("duet-synth-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.wav");
        write_speech_pattern_wav(&path, &[(true, 500), (false, 250)], 1).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 44 + 36_000 * 2);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize,
            bytes.len() - 8
        );
        assert_eq!(
            u32::from_le_bytes(bytes[24..28].try_into().unwrap()),
            48_000
        );
        assert_eq!(
            u32::from_le_bytes(bytes[40..44].try_into().unwrap()),
            72_000
        );
        assert!(matches!(
            write_speech_pattern_wav(&path, &[], 1),
            Err(AnalysisError::Pattern { .. })
        ));
        assert!(matches!(
            write_speech_pattern_wav(&dir.join("no/such/dir.wav"), &[(true, 10)], 1),
            Err(AnalysisError::Io { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
