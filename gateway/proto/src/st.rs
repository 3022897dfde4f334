//! S-T analysis (S-T 分析) of a lesson from the speech activity the recorder measured on each
//! microphone track: sampling into codes, the summary (Rt, Ch, lesson type), the S-T curve, and
//! the time shares of teacher talk, pupil talk and silence.
//!
//! Pure: no I/O, no clock. The gateway calls [`sample`] and [`analyze`] when a lesson with a
//! `speech` field is registered, and again when a reviewer recomputes with another interval or
//! stores a corrected code string ([`parse_codes`]).
//!
//! # Method (DOMAIN.md, 听评课)
//! The lesson is cut into samples of a fixed interval `i`: sample `k` covers
//! `[k·i, (k+1)·i)`, the last one ends at `duration_ms` (so `n = ⌈duration / i⌉`). Each sample is
//! coded from the covered speech time inside it:
//! - `L` = time covered by the lead teacher's microphone(s) (the union of every `lead` track),
//! - `R` = the most time covered by any single `receiving` microphone,
//! - `len` = the sample's length.
//!
//! Rules ("substantial" = at least a third of the sample, `3·x ≥ len`):
//! - variant [`Variant::Std`]: **D** (dialogue) when both `L` and `R` are substantial;
//! - **T** when `L` is substantial and `L > R` (the teacher carries the speech);
//! - **S** otherwise: pupils speaking, silence, pupils working.
//!
//! Summary, with `N` samples, `g` runs (maximal stretches of one code):
//! - [`Variant::St`]: `Rt = N_T / N`, `Ch = (g − 1) / N`;
//! - [`Variant::Std`]: `Rt = (N_T + N_D / 2) / N`, `Ch = g / N`.
//!
//! Lesson type, decided on exact rationals (integer cross products, so `Rt = 0.3` is really
//! `≤ 0.3`): 练习型 practice `Rt ≤ 0.3`; 讲授型 lecture `Rt ≥ 0.7`; 对话型 dialogue `Ch ≥ 0.4`
//! (then `0.3 < Rt < 0.7`); otherwise 混合型 mixed. Never mix variants: a summary records the
//! variant it was computed with.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which microphone a speech track comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeakerRole {
    /// The lead teacher's microphone (主讲教师).
    Lead,
    /// A receiving classroom's microphone (接收课堂: pupils, the assistant teacher).
    Receiving,
}

/// The speech measured on one microphone track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeechTrack {
    /// `<participant>/<source>`, e.g. `teacher/microphone`.
    pub source_id: String,
    /// Whose microphone.
    pub role: SpeakerRole,
    /// For people, e.g. `主讲教师`.
    #[serde(default)]
    pub label: String,
    /// Speech as `[from_ms, to_ms]` on the lesson timeline (ms from `started_at`); may be
    /// unsorted or overlap; a segment with `to ≤ from` covers nothing.
    pub segments: Vec<[u64; 2]>,
}

/// The speech activity of a lesson: the `speech` field of a lesson registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeechActivity {
    /// One entry per microphone track.
    pub tracks: Vec<SpeechTrack>,
    /// Length of the lesson timeline, ms; speech beyond it is ignored.
    pub duration_ms: u64,
}

/// Which coding scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Two codes, T and S.
    St,
    /// Three codes, T, S and D (dialogue).
    Std,
}

impl Variant {
    /// Stable lower-case token: `st`, `std`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::St => "st",
            Variant::Std => "std",
        }
    }

    /// Parses the token.
    pub fn parse(s: &str) -> Option<Variant> {
        match s {
            "st" => Some(Variant::St),
            "std" => Some(Variant::Std),
            _ => None,
        }
    }

    /// Whether `code` belongs to this variant.
    pub fn allows(self, code: Code) -> bool {
        code != Code::D || self == Variant::Std
    }
}

/// One sample's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Code {
    /// Teacher behaviour (the lead teacher speaks).
    T,
    /// Everything else (pupils, silence, activity).
    S,
    /// Dialogue: teacher and pupils both speak (variant [`Variant::Std`] only).
    D,
}

impl Code {
    /// The letter.
    pub fn as_char(self) -> char {
        match self {
            Code::T => 'T',
            Code::S => 'S',
            Code::D => 'D',
        }
    }
}

/// The lesson type an S-T summary places a lesson in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LessonType {
    /// 练习型: Rt ≤ 0.3.
    Practice,
    /// 讲授型: Rt ≥ 0.7.
    Lecture,
    /// 对话型: Ch ≥ 0.4 (0.3 < Rt < 0.7).
    Dialogue,
    /// 混合型: the rest.
    Mixed,
}

impl LessonType {
    /// Stable token: `practice`, `lecture`, `dialogue`, `mixed`.
    pub fn as_str(self) -> &'static str {
        match self {
            LessonType::Practice => "practice",
            LessonType::Lecture => "lecture",
            LessonType::Dialogue => "dialogue",
            LessonType::Mixed => "mixed",
        }
    }

    /// The Chinese name: 练习型, 讲授型, 对话型, 混合型.
    pub fn label(self) -> &'static str {
        match self {
            LessonType::Practice => "练习型",
            LessonType::Lecture => "讲授型",
            LessonType::Dialogue => "对话型",
            LessonType::Mixed => "混合型",
        }
    }
}

/// The S-T summary of a code sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StSummary {
    /// The variant it was computed with.
    pub variant: Variant,
    /// Samples (N).
    pub n: u32,
    /// T samples.
    pub n_t: u32,
    /// S samples.
    pub n_s: u32,
    /// D samples (0 in [`Variant::St`]).
    pub n_d: u32,
    /// Runs (g): maximal stretches of one code.
    pub runs: u32,
    /// Teacher-behaviour share Rt (for display; the type is decided on exact rationals).
    pub rt: f64,
    /// Change rate Ch.
    pub ch: f64,
    /// The lesson type.
    pub lesson_type: LessonType,
}

/// Fractions of the lesson's time (sum 1 when `duration_ms > 0`, all 0 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shares {
    /// The lead microphone speaks (whatever the others do: overlaps count as teacher talk).
    pub teacher: f64,
    /// A receiving microphone speaks and the lead does not.
    pub pupil: f64,
    /// Nobody speaks.
    pub silence: f64,
}

/// Why a code string or a sequence could not be analysed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StError {
    /// No samples: Rt and Ch are undefined.
    Empty,
    /// A character that is not a code of the variant.
    BadCode {
        /// Character index (0-based).
        index: usize,
        /// The character found.
        found: char,
        /// The variant it was read for.
        variant: Variant,
    },
}

impl fmt::Display for StError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StError::Empty => f.write_str("没有采样 / no samples"),
            StError::BadCode {
                index,
                found,
                variant,
            } => {
                let allowed = match variant {
                    Variant::St => "T, S",
                    Variant::Std => "T, S, D",
                };
                write!(
                    f,
                    "第 {} 个采样的编码 {found:?} 无效（只能是 {allowed}）/ sample {index}: {found:?} is not one of {allowed}",
                    index + 1
                )
            }
        }
    }
}

impl std::error::Error for StError {}

/// Samples of `duration_ms` at `interval_ms`: `⌈duration / interval⌉` (0 for a zero interval).
pub fn sample_count(duration_ms: u64, interval_ms: u64) -> u64 {
    if interval_ms == 0 {
        0
    } else {
        duration_ms.div_ceil(interval_ms)
    }
}

/// Sorted, merged, non-empty `[from, to)` spans clipped to `[0, limit)`.
fn merged(segments: impl IntoIterator<Item = [u64; 2]>, limit: u64) -> Vec<[u64; 2]> {
    let mut spans: Vec<[u64; 2]> = segments
        .into_iter()
        .map(|[a, b]| [a.min(limit), b.min(limit)])
        .filter(|[a, b]| a < b)
        .collect();
    spans.sort_unstable();
    let mut out: Vec<[u64; 2]> = Vec::with_capacity(spans.len());
    for [a, b] in spans {
        match out.last_mut() {
            Some(last) if a <= last[1] => last[1] = last[1].max(b),
            _ => out.push([a, b]),
        }
    }
    out
}

/// Time of merged `spans` inside `[from, to)`.
fn covered(spans: &[[u64; 2]], from: u64, to: u64) -> u64 {
    let first = spans.partition_point(|s| s[1] <= from);
    spans[first..]
        .iter()
        .take_while(|s| s[0] < to)
        .map(|s| s[1].min(to) - s[0].max(from))
        .sum()
}

/// Total length of merged spans.
fn length(spans: &[[u64; 2]]) -> u64 {
    spans.iter().map(|s| s[1] - s[0]).sum()
}

/// Codes the activity at `interval_ms` (rules in the module doc). Empty for a zero interval or
/// a zero duration.
pub fn sample(activity: &SpeechActivity, interval_ms: u64, variant: Variant) -> Vec<Code> {
    let end = activity.duration_ms;
    let lead = merged(
        activity
            .tracks
            .iter()
            .filter(|t| t.role == SpeakerRole::Lead)
            .flat_map(|t| t.segments.iter().copied()),
        end,
    );
    let receiving: Vec<Vec<[u64; 2]>> = activity
        .tracks
        .iter()
        .filter(|t| t.role == SpeakerRole::Receiving)
        .map(|t| merged(t.segments.iter().copied(), end))
        .collect();
    let n = sample_count(end, interval_ms);
    (0..n)
        .map(|k| {
            let from = k * interval_ms;
            let to = (from + interval_ms).min(end);
            let len = to - from;
            let l = covered(&lead, from, to);
            let r = receiving
                .iter()
                .map(|spans| covered(spans, from, to))
                .max()
                .unwrap_or(0);
            let substantial = |x: u64| 3 * x >= len;
            if variant == Variant::Std && substantial(l) && substantial(r) {
                Code::D
            } else if substantial(l) && l > r {
                Code::T
            } else {
                Code::S
            }
        })
        .collect()
}

/// Whether `num / den ≤ p / q` (all non-negative, `den`, `q` > 0), exactly.
fn at_most(num: u64, den: u64, p: u64, q: u64) -> bool {
    num * q <= p * den
}

/// Whether `num / den ≥ p / q`, exactly.
fn at_least(num: u64, den: u64, p: u64, q: u64) -> bool {
    num * q >= p * den
}

/// Summarises `codes` computed with `variant` (formulas in the module doc). [`StError::Empty`]
/// for no samples; [`StError::BadCode`] if a D appears in [`Variant::St`].
pub fn analyze(codes: &[Code], variant: Variant) -> Result<StSummary, StError> {
    if codes.is_empty() {
        return Err(StError::Empty);
    }
    if let Some(index) = codes.iter().position(|c| !variant.allows(*c)) {
        return Err(StError::BadCode {
            index,
            found: codes[index].as_char(),
            variant,
        });
    }
    let count = |code: Code| codes.iter().filter(|c| **c == code).count() as u64;
    let (n, n_t, n_s, n_d) = (
        codes.len() as u64,
        count(Code::T),
        count(Code::S),
        count(Code::D),
    );
    let runs = 1 + codes.windows(2).filter(|w| w[0] != w[1]).count() as u64;
    // Rt and Ch as exact fractions.
    let (rt_num, rt_den) = match variant {
        Variant::St => (n_t, n),
        Variant::Std => (2 * n_t + n_d, 2 * n),
    };
    let ch_num = match variant {
        Variant::St => runs - 1,
        Variant::Std => runs,
    };
    let lesson_type = if at_most(rt_num, rt_den, 3, 10) {
        LessonType::Practice
    } else if at_least(rt_num, rt_den, 7, 10) {
        LessonType::Lecture
    } else if at_least(ch_num, n, 4, 10) {
        LessonType::Dialogue
    } else {
        LessonType::Mixed
    };
    let small = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
    Ok(StSummary {
        variant,
        n: small(n),
        n_t: small(n_t),
        n_s: small(n_s),
        n_d: small(n_d),
        runs: small(runs),
        rt: rt_num as f64 / rt_den as f64,
        ch: ch_num as f64 / n as f64,
        lesson_type,
    })
}

/// Shares of teacher talk, pupil talk and silence over `duration_ms` (see [`Shares`]).
pub fn shares(activity: &SpeechActivity) -> Shares {
    let end = activity.duration_ms;
    if end == 0 {
        return Shares {
            teacher: 0.0,
            pupil: 0.0,
            silence: 0.0,
        };
    }
    let of_role = |role: SpeakerRole| {
        merged(
            activity
                .tracks
                .iter()
                .filter(|t| t.role == role)
                .flat_map(|t| t.segments.iter().copied()),
            end,
        )
    };
    let lead = of_role(SpeakerRole::Lead);
    let receiving = of_role(SpeakerRole::Receiving);
    let teacher = length(&lead);
    let both: u64 = receiving.iter().map(|s| covered(&lead, s[0], s[1])).sum();
    let pupil = length(&receiving) - both;
    let silence = end - teacher - pupil;
    let share = |x: u64| x as f64 / end as f64;
    Shares {
        teacher: share(teacher),
        pupil: share(pupil),
        silence: share(silence),
    }
}

/// The S-T curve: for each sample `k`, `(k·interval_ms, S so far, T so far)` counting sample `k`
/// (S on the x axis, T on the y axis). A D sample counts on both axes.
pub fn curve(codes: &[Code], interval_ms: u64) -> Vec<(u64, u32, u32)> {
    let (mut s, mut t) = (0u32, 0u32);
    codes
        .iter()
        .enumerate()
        .map(|(k, code)| {
            match code {
                Code::T => t += 1,
                Code::S => s += 1,
                Code::D => {
                    s += 1;
                    t += 1;
                }
            }
            (k as u64 * interval_ms, s, t)
        })
        .collect()
}

/// Reads a code string such as `"TTSST"` for `variant` (upper-case letters only; D only in
/// [`Variant::Std`]). An empty string is an empty sequence.
pub fn parse_codes(text: &str, variant: Variant) -> Result<Vec<Code>, StError> {
    text.chars()
        .enumerate()
        .map(|(index, c)| {
            let code = match c {
                'T' => Some(Code::T),
                'S' => Some(Code::S),
                'D' => Some(Code::D),
                _ => None,
            };
            code.filter(|code| variant.allows(*code))
                .ok_or(StError::BadCode {
                    index,
                    found: c,
                    variant,
                })
        })
        .collect()
}

/// Writes codes as a string, e.g. `"TTSST"`.
pub fn format_codes(codes: &[Code]) -> String {
    codes.iter().map(|c| c.as_char()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(s: &str) -> Vec<Code> {
        parse_codes(s, Variant::Std).expect("test codes are valid")
    }

    fn st(s: &str) -> StSummary {
        analyze(&codes(s), Variant::St).expect("non-empty")
    }

    fn std(s: &str) -> StSummary {
        analyze(&codes(s), Variant::Std).expect("non-empty")
    }

    #[test]
    fn rt_boundaries_are_exact() {
        // 3 T of 10: Rt = 0.3 exactly → practice; 4 of 10 (one run each side) is not.
        let s = st("TTTSSSSSSS");
        assert_eq!((s.n, s.n_t, s.runs), (10, 3, 2));
        assert_eq!(s.lesson_type, LessonType::Practice);
        assert_eq!(
            st("TTTTSSSSSS").lesson_type,
            LessonType::Mixed,
            "Rt 0.4, Ch 0.1"
        );
        // 7 T of 10: Rt = 0.7 → lecture; 6 of 10 is not.
        assert_eq!(st("TTTTTTTSSS").lesson_type, LessonType::Lecture);
        assert_eq!(st("TTTTTTSSSS").lesson_type, LessonType::Mixed, "Rt 0.6");
        // Just either side with a finer N: 299/1000 and 301/1000, 699 and 701.
        let seq = |t: usize, n: usize| "T".repeat(t) + &"S".repeat(n - t);
        assert_eq!(st(&seq(299, 1000)).lesson_type, LessonType::Practice);
        assert_eq!(st(&seq(300, 1000)).lesson_type, LessonType::Practice);
        assert_eq!(st(&seq(301, 1000)).lesson_type, LessonType::Mixed);
        assert_eq!(st(&seq(699, 1000)).lesson_type, LessonType::Mixed);
        assert_eq!(st(&seq(700, 1000)).lesson_type, LessonType::Lecture);
        assert_eq!(st(&seq(701, 1000)).lesson_type, LessonType::Lecture);
    }

    #[test]
    fn ch_boundary_is_exact() {
        // N = 10, Rt between 0.3 and 0.7.
        let s = st("TTTSSTTSSS");
        assert_eq!((s.n_t, s.runs), (5, 4));
        assert_eq!(s.lesson_type, LessonType::Mixed, "Ch 0.3");
        let s = st("TTTSSTTSST");
        assert_eq!((s.n_t, s.runs), (6, 5));
        assert!((s.ch - 0.4).abs() < 1e-12);
        assert_eq!(s.lesson_type, LessonType::Dialogue, "Ch = 0.4 exactly");
        let s = st("TTSSTTSTSS");
        assert_eq!((s.n_t, s.runs), (5, 6));
        assert!((s.ch - 0.5).abs() < 1e-12);
        assert_eq!(s.lesson_type, LessonType::Dialogue, "Ch 0.5");
        // Just below: 39/100 changes; just above: 41/100 (Rt 0.5 both).
        let alternating = |changes: usize| -> String {
            // `changes + 1` runs over 100 samples with 50 T: short alternating runs, then the rest.
            let mut v: Vec<char> = Vec::new();
            let mut c = 'T';
            for _ in 0..changes {
                v.push(c);
                c = if c == 'T' { 'S' } else { 'T' };
            }
            let t_left = 50 - v.iter().filter(|x| **x == 'T').count();
            let s_left = 50 - v.iter().filter(|x| **x == 'S').count();
            let (first, first_n, second, second_n) = if c == 'T' {
                ('T', t_left, 'S', s_left)
            } else {
                ('S', s_left, 'T', t_left)
            };
            v.extend(std::iter::repeat_n(first, first_n));
            v.extend(std::iter::repeat_n(second, second_n));
            v.into_iter().collect()
        };
        let below = st(&alternating(38));
        assert_eq!((below.n, below.n_t, below.runs), (100, 50, 40));
        assert_eq!(below.lesson_type, LessonType::Mixed, "Ch 0.39");
        let exact = st(&alternating(39));
        assert_eq!((exact.n_t, exact.runs), (50, 41));
        assert_eq!(exact.lesson_type, LessonType::Dialogue, "Ch 0.40");
        let above = st(&alternating(40));
        assert_eq!(above.runs, 42);
        assert_eq!(above.lesson_type, LessonType::Dialogue, "Ch 0.41");
    }

    #[test]
    fn practice_and_lecture_win_over_a_high_change_rate() {
        // Rt = 0.3, Ch = 0.5: still practice (the type is decided by Rt first).
        let s = st("TSTSTSSSSS");
        assert_eq!((s.n_t, s.runs), (3, 6));
        assert_eq!(s.lesson_type, LessonType::Practice);
        let s = st("STSTSTTTTT");
        assert_eq!(s.n_t, 7);
        assert_eq!(s.lesson_type, LessonType::Lecture);
    }

    #[test]
    fn empty_input_is_an_error_not_nan() {
        assert_eq!(analyze(&[], Variant::St), Err(StError::Empty));
        assert_eq!(analyze(&[], Variant::Std), Err(StError::Empty));
        assert_eq!(parse_codes("", Variant::St), Ok(vec![]));
        assert!(curve(&[], 30_000).is_empty());
        let none = SpeechActivity {
            tracks: vec![],
            duration_ms: 0,
        };
        assert!(sample(&none, 30_000, Variant::St).is_empty());
        let sh = shares(&none);
        assert_eq!((sh.teacher, sh.pupil, sh.silence), (0.0, 0.0, 0.0));
    }

    #[test]
    fn std_formulas() {
        // N = 10: T 4, D 2, S 4 → Rt = (4 + 1) / 10 = 0.5; g = 4 → Ch = 4/10.
        let s = std("TTTTDDSSSS");
        assert_eq!((s.n, s.n_t, s.n_d, s.n_s, s.runs), (10, 4, 2, 4, 3));
        assert!((s.rt - 0.5).abs() < 1e-12);
        assert!((s.ch - 0.3).abs() < 1e-12);
        assert_eq!(s.lesson_type, LessonType::Mixed);
        // g/N = 0.4 exactly (Std counts g, not g − 1).
        let s = std("TTTTDDSSSD");
        assert_eq!((s.runs, s.n_t, s.n_d), (4, 4, 3));
        assert_eq!(s.lesson_type, LessonType::Dialogue, "Rt 0.55, Ch 0.4");
        // Rt = (2 + 2/2)/10 = 0.3 exactly: practice; D counts half.
        let s = std("TTDDSSSSSS");
        assert_eq!(s.lesson_type, LessonType::Practice);
        // (6 + 2/2)/10 = 0.7: lecture.
        let s = std("TTTTTTDDSS");
        assert_eq!(s.lesson_type, LessonType::Lecture);
        // The same sequence in St refuses the D.
        assert_eq!(
            analyze(&codes("TD"), Variant::St),
            Err(StError::BadCode {
                index: 1,
                found: 'D',
                variant: Variant::St
            })
        );
    }

    #[test]
    fn codes_parse_and_format() {
        let c = parse_codes("TTSD", Variant::Std).unwrap();
        assert_eq!(c, vec![Code::T, Code::T, Code::S, Code::D]);
        assert_eq!(format_codes(&c), "TTSD");
        let e = parse_codes("TTSD", Variant::St).unwrap_err();
        assert_eq!(
            e,
            StError::BadCode {
                index: 3,
                found: 'D',
                variant: Variant::St
            }
        );
        assert!(e.to_string().contains("第 4 个"));
        assert!(
            parse_codes("TtS", Variant::St).is_err(),
            "lower case refused"
        );
        assert!(parse_codes("T S", Variant::St).is_err());
        assert!(parse_codes("T讲", Variant::Std).is_err());
    }

    fn track(role: SpeakerRole, segments: &[[u64; 2]]) -> SpeechTrack {
        SpeechTrack {
            source_id: format!("{role:?}/microphone"),
            role,
            label: String::new(),
            segments: segments.to_vec(),
        }
    }

    #[test]
    fn sampling_follows_the_rules() {
        use SpeakerRole::{Lead, Receiving};
        // Six 10 s samples:
        // 0: lead speaks the whole time                               → T
        // 1: lead 4 s (≥ 1/3), nobody else                             → T
        // 2: lead 3 s (< 1/3)                                          → S
        // 3: lead 6 s, room A 5 s (both substantial, lead more)        → T (St) / D (Std)
        // 4: lead 4 s, room B 6 s (room more)                          → S (St) / D (Std)
        // 5: silence                                                   → S
        // The lead's speech is given in two overlapping tracks pieces to test merging.
        let activity = SpeechActivity {
            tracks: vec![
                track(
                    Lead,
                    &[
                        [0, 6_000],
                        [5_000, 14_000],
                        [20_000, 23_000],
                        [30_000, 36_000],
                    ],
                ),
                track(Lead, &[[4_000, 10_000], [40_000, 44_000], [55_000, 50_000]]),
                track(Receiving, &[[34_000, 39_000]]),
                track(Receiving, &[[44_000, 50_000], [52_000, 53_000]]),
            ],
            duration_ms: 60_000,
        };
        assert_eq!(
            format_codes(&sample(&activity, 10_000, Variant::St)),
            "TTSTSS"
        );
        assert_eq!(
            format_codes(&sample(&activity, 10_000, Variant::Std)),
            "TTSDDS"
        );
        // Equal lead and pupil time, both substantial: not T in St (the lead must carry more).
        let tie = SpeechActivity {
            tracks: vec![
                track(Lead, &[[0, 5_000]]),
                track(Receiving, &[[5_000, 10_000]]),
            ],
            duration_ms: 10_000,
        };
        assert_eq!(sample(&tie, 10_000, Variant::St), vec![Code::S]);
        assert_eq!(sample(&tie, 10_000, Variant::Std), vec![Code::D]);
        // Exactly a third is substantial.
        let third = SpeechActivity {
            tracks: vec![track(Lead, &[[0, 1_000]])],
            duration_ms: 3_000,
        };
        assert_eq!(sample(&third, 3_000, Variant::St), vec![Code::T]);
        let less = SpeechActivity {
            tracks: vec![track(Lead, &[[0, 999]])],
            duration_ms: 3_000,
        };
        assert_eq!(sample(&less, 3_000, Variant::St), vec![Code::S]);
    }

    #[test]
    fn the_last_sample_is_shorter_and_speech_beyond_the_end_is_ignored() {
        let a = SpeechActivity {
            tracks: vec![track(SpeakerRole::Lead, &[[20_000, 90_000]])],
            duration_ms: 25_000,
        };
        // Samples [0,10), [10,20), [20,25): the last is 5 s, all speech.
        assert_eq!(sample_count(25_000, 10_000), 3);
        assert_eq!(format_codes(&sample(&a, 10_000, Variant::St)), "SST");
        let sh = shares(&a);
        assert!((sh.teacher - 0.2).abs() < 1e-12);
        assert!((sh.silence - 0.8).abs() < 1e-12);
        assert_eq!(
            sample(&a, 0, Variant::St),
            vec![],
            "zero interval: no samples"
        );
    }

    #[test]
    fn shares_count_overlap_as_teacher_talk() {
        // 100 s: lead 0–40, room A 30–60, room B 50–70 → teacher 40, pupil 30 (40–70), silence 30.
        let a = SpeechActivity {
            tracks: vec![
                track(SpeakerRole::Lead, &[[0, 40_000]]),
                track(SpeakerRole::Receiving, &[[30_000, 60_000]]),
                track(SpeakerRole::Receiving, &[[50_000, 70_000]]),
            ],
            duration_ms: 100_000,
        };
        let sh = shares(&a);
        assert!((sh.teacher - 0.4).abs() < 1e-12, "{sh:?}");
        assert!((sh.pupil - 0.3).abs() < 1e-12, "{sh:?}");
        assert!((sh.silence - 0.3).abs() < 1e-12, "{sh:?}");
    }

    #[test]
    fn the_curve_accumulates() {
        let c = curve(&codes("TTSDS"), 30_000);
        assert_eq!(
            c,
            vec![
                (0, 0, 1),
                (30_000, 0, 2),
                (60_000, 1, 2),
                (90_000, 2, 3),
                (120_000, 3, 3)
            ]
        );
    }

    #[test]
    fn the_wire_form_matches_the_contract() {
        let json = serde_json::json!({
            "tracks": [{"source_id": "teacher/microphone", "role": "lead", "label": "主讲教师",
                        "segments": [[0, 1000], [2000, 3000]]},
                       {"source_id": "room-a/microphone", "role": "receiving", "segments": []}],
            "duration_ms": 2_700_000
        });
        let a: SpeechActivity = serde_json::from_value(json).expect("parses");
        assert_eq!(a.tracks[0].role, SpeakerRole::Lead);
        assert_eq!(a.tracks[1].label, "", "label defaults to empty");
        assert_eq!(a.tracks[0].segments[1], [2000, 3000]);
        let back = serde_json::to_value(&a).expect("serializes");
        assert_eq!(back["tracks"][1]["role"], "receiving");
        assert_eq!(serde_json::to_value(Variant::Std).unwrap(), "std");
        assert_eq!(
            serde_json::to_value(LessonType::Dialogue).unwrap(),
            "dialogue"
        );
        assert_eq!(LessonType::Practice.label(), "练习型");
    }
}
