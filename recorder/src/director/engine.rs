//! The director itself: [`Director`] takes [`Event`]s and time, and gives [`Cut`]s.
//!
//! It owns the room's directing signals (is the teacher speaking, at the podium, is a pupil
//! standing, when was the courseware last touched, which sources are lost), the shot on air, and
//! the one shot the rules want instead, with the time since when they have wanted it.
//!
//! Invariants (the event-storm test checks them):
//! - no cut before `start + static_first` except to leave a lost source;
//! - no two cuts closer than `min_hold`, except a cut leaving a lost source;
//! - a rule-driven cut happens only after the rules have wanted that same shot, without a break,
//!   for `min_hold`: a flicker shorter than the hold never reaches the programme;
//! - no cut shows a lost source, and a shot on air that loses a source is cut away from in the
//!   same call, unless every source of the room is lost (there is nowhere to go).

use super::config::{Condition, DirectorConfig, DirectorError, window};
use super::shot::Shot;
use super::sources::{Mic, Role, SourceId, SourceMap};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Something that happened in the room, from a device or the API.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Mouse or touch on the teacher's PC.
    CoursewareActivity,
    /// The teacher started (or goes on) speaking; `at_podium` says where the tracker sees them.
    TeacherSpeaking {
        /// Whether the teacher is at the podium (讲台).
        at_podium: bool,
    },
    /// The teacher stopped speaking.
    TeacherSilent,
    /// The teacher walked away from the podium.
    TeacherLeftPodium,
    /// The teacher is back at the podium.
    TeacherAtPodium,
    /// A pupil stood up (to answer). The tracker reports the first pupil standing.
    PupilStood,
    /// The standing pupil sat down. The tracker reports when no pupil stands any more.
    PupilSat,
    /// The level of a microphone, reported periodically.
    AudioLevel {
        /// Which microphone.
        source: Mic,
        /// Level in dBFS; anything not a number counts as silence.
        level_dbfs: f32,
    },
    /// A video source is gone (camera unplugged, capture failed).
    SourceLost(SourceId),
    /// A lost video source works again.
    SourceBack(SourceId),
}

/// A change of the programme shot, for the mixer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// When to cut (the `now` of the call that produced it).
    pub at: Instant,
    /// The new shot; none of its sources is lost.
    pub shot: Shot,
    /// Why this shot.
    pub reason: CutReason,
    /// `Some(source)` when the cut leaves a shot whose `source` was lost: such a cut ignores the
    /// hold and the static first minute.
    pub forced_by: Option<SourceId>,
}

/// Why the director chose a shot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CutReason {
    /// The named rule matched.
    Rule(Arc<str>),
    /// No rule matched (or no matching rule's shot could be shown): the idle shot.
    Idle,
    /// The opening shot (what is left of it), during the static first minute.
    Opening,
    /// Neither a rule, the idle shot nor the opening could be shown: a bare source that works.
    Fallback,
}

impl fmt::Display for CutReason {
    /// The rule name, or `IDLE`, `OPENING`, `FALLBACK`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CutReason::Rule(name) => f.write_str(name),
            CutReason::Idle => f.write_str("IDLE"),
            CutReason::Opening => f.write_str("OPENING"),
            CutReason::Fallback => f.write_str("FALLBACK"),
        }
    }
}

/// The sans-IO auto-director of movie mode (电影模式) for one room.
///
/// Drive it with [`handle_event`](Self::handle_event) when something happens and
/// [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout) is due, then
/// drain [`poll_output`](Self::poll_output). It never reads the clock: `now` is always an argument,
/// and a `now` earlier than one already seen counts as that one.
#[derive(Debug)]
pub struct Director {
    /// Shortest time on air, and how long the rules must want a shot before it is cut to.
    min_hold: Duration,
    /// End of the static first minute: no rule-driven cut before it.
    static_end: Instant,
    /// The rules resolved to sources, best first (priority descending, then config order).
    rules: Vec<ResolvedRule>,
    /// The opening shot: first choice when a lost source forces a cut in the static minute.
    opening: Shot,
    /// The shot when no rule matches.
    idle: Shot,
    /// Every source of the room as a single shot, widest first: the last resort.
    fallbacks: Vec<Shot>,
    /// The distinct courseware windows the rules use, so that their expiry can be polled.
    windows: Vec<Duration>,
    /// What the room looks like, from the events so far.
    room: RoomSignals,
    /// Sources reported lost and not back.
    lost: BTreeSet<SourceId>,
    /// The shot on air.
    current: Shot,
    /// When `current` went on air (the start, for the opening); the hold counts from here.
    last_cut: Instant,
    /// The shot the rules want instead of `current`, and since when without a break.
    pending: Option<Pending>,
    /// The latest time seen, so that time never runs backwards.
    now: Instant,
    /// Cuts not yet taken by `poll_output`.
    outputs: VecDeque<Cut>,
}

/// A rule with its shot resolved to sources.
#[derive(Debug)]
struct ResolvedRule {
    /// The rule's name, shared with the cuts it causes.
    name: Arc<str>,
    /// When it applies.
    when: Condition,
    /// What it shows.
    shot: Shot,
}

/// A shot the rules want, not yet on air.
#[derive(Debug)]
struct Pending {
    /// The wanted shot.
    shot: Shot,
    /// Why, as of the latest evaluation.
    reason: CutReason,
    /// Since when the rules have wanted `shot` without a break.
    since: Instant,
}

/// The directing signals, as the events last reported them.
#[derive(Debug)]
struct RoomSignals {
    /// Last mouse or touch on the teacher's PC.
    courseware_at: Option<Instant>,
    /// The teacher is speaking.
    teacher_speaking: bool,
    /// The teacher is at the podium; assumed at first, so that "away" needs a report.
    teacher_at_podium: bool,
    /// A pupil is standing.
    pupil_standing: bool,
    /// Last level per microphone, in dBFS; silence until reported.
    levels: [f32; Mic::COUNT],
}

impl RoomSignals {
    /// Whether `c` holds at `now`.
    fn holds(&self, c: &Condition, now: Instant) -> bool {
        match c {
            Condition::CoursewareActive { within_s } => self
                .courseware_at
                .is_some_and(|at| now < at + window(*within_s)),
            Condition::TeacherSpeaking => self.teacher_speaking,
            Condition::TeacherSpeakingAtPodium => self.teacher_speaking && self.teacher_at_podium,
            Condition::TeacherAwayFromPodium => !self.teacher_at_podium,
            Condition::PupilStanding => self.pupil_standing,
            // A NaN level compares false: silence.
            Condition::Loud { mic, above_dbfs } => self.levels[mic.index()] >= *above_dbfs,
            Condition::All(all) => all.iter().all(|c| self.holds(c, now)),
            Condition::Any(any) => any.iter().any(|c| self.holds(c, now)),
            Condition::Not(c) => !self.holds(c, now),
        }
    }
}

impl Director {
    /// A director for a room whose roles are played by `sources`, starting at `start` on the
    /// opening shot. Refuses a config that does not [`validate`](DirectorConfig::validate) or
    /// shows a role the room has no source for.
    pub fn new(
        config: DirectorConfig,
        sources: SourceMap,
        start: Instant,
    ) -> Result<Self, DirectorError> {
        config.validate()?;
        config.validate_sources(&sources)?;
        let resolve = |shot: Shot<Role>| {
            shot.try_map(|role| sources.get(role))
                .expect("validate_sources found a source for every role")
        };
        let mut ranked: Vec<(i32, ResolvedRule)> = config
            .rules
            .iter()
            .map(|r| {
                let rule = ResolvedRule {
                    name: r.name.as_str().into(),
                    when: r.when.clone(),
                    shot: resolve(r.show),
                };
                (r.priority, rule)
            })
            .collect();
        // A stable sort: equal priorities keep config order.
        ranked.sort_by_key(|(priority, _)| Reverse(*priority));
        let rules: Vec<ResolvedRule> = ranked.into_iter().map(|(_, r)| r).collect();

        let mut fallbacks: Vec<Shot> = Vec::new();
        for source in Role::WIDEST_FIRST.iter().filter_map(|r| sources.get(*r)) {
            if !fallbacks.contains(&Shot::Single(source)) {
                fallbacks.push(Shot::Single(source));
            }
        }
        let mut windows = Vec::new();
        for rule in &rules {
            rule.when.for_each_window(&mut |w| {
                if !windows.contains(&w) {
                    windows.push(w);
                }
            });
        }
        let opening = resolve(config.opening);
        Ok(Director {
            min_hold: config.min_hold(),
            static_end: start + config.static_first(),
            rules,
            opening,
            idle: resolve(config.idle),
            fallbacks,
            windows,
            room: RoomSignals {
                courseware_at: None,
                teacher_speaking: false,
                teacher_at_podium: true,
                pupil_standing: false,
                levels: [f32::NEG_INFINITY; Mic::COUNT],
            },
            lost: BTreeSet::new(),
            current: opening,
            last_cut: start,
            pending: None,
            now: start,
            outputs: VecDeque::new(),
        })
    }

    /// The shot on air.
    pub fn current(&self) -> &Shot {
        &self.current
    }

    /// Takes in one event at `now`.
    pub fn handle_event(&mut self, now: Instant, event: Event) {
        let now = self.advance_clock(now);
        let room = &mut self.room;
        match event {
            Event::CoursewareActivity => room.courseware_at = Some(now),
            Event::TeacherSpeaking { at_podium } => {
                room.teacher_speaking = true;
                room.teacher_at_podium = at_podium;
            }
            Event::TeacherSilent => room.teacher_speaking = false,
            Event::TeacherLeftPodium => room.teacher_at_podium = false,
            Event::TeacherAtPodium => room.teacher_at_podium = true,
            Event::PupilStood => room.pupil_standing = true,
            Event::PupilSat => room.pupil_standing = false,
            Event::AudioLevel { source, level_dbfs } => room.levels[source.index()] = level_dbfs,
            Event::SourceLost(source) => {
                self.lost.insert(source);
            }
            Event::SourceBack(source) => {
                self.lost.remove(&source);
            }
        }
        self.evaluate(now);
    }

    /// Lets time pass to `now`: a hold, the static minute or a courseware window may have ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance_clock(now);
        self.evaluate(now);
    }

    /// The next time at which the programme may change without an event (a wanted shot's hold
    /// ends, the static minute ends with a shot wanted, a courseware window closes), if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let due = self.pending.as_ref().map(|p| self.due(p));
        let windows = self.room.courseware_at.into_iter().flat_map(|at| {
            self.windows
                .iter()
                .map(move |w| at + *w)
                .filter(|end| *end > self.now)
        });
        due.into_iter().chain(windows).min()
    }

    /// The next cut, oldest first.
    pub fn poll_output(&mut self) -> Option<Cut> {
        self.outputs.pop_front()
    }

    /// Clamps `now` so that time never runs backwards, and remembers it.
    fn advance_clock(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// When `pending` may go on air: it has been wanted for a hold, the shot on air has had its
    /// hold, and the static minute is over.
    fn due(&self, pending: &Pending) -> Instant {
        (pending.since + self.min_hold)
            .max(self.last_cut + self.min_hold)
            .max(self.static_end)
    }

    /// The heart of the director: leave a lost source at once, track what the rules want, and cut
    /// to it once it is due.
    fn evaluate(&mut self, now: Instant) {
        if let Some(gone) = self.current.sources().find(|s| self.lost.contains(s)) {
            let target = if now < self.static_end {
                self.choose_static()
            } else {
                self.choose(now)
            };
            // `None`: every source is lost; the shot stays, there is nothing better.
            if let Some((shot, reason)) = target {
                self.cut(now, shot, reason, Some(gone));
            }
        }
        match self.choose(now) {
            Some((shot, reason)) if shot != self.current => match &mut self.pending {
                Some(p) if p.shot == shot => p.reason = reason,
                _ => {
                    self.pending = Some(Pending {
                        shot,
                        reason,
                        since: now,
                    })
                }
            },
            _ => self.pending = None,
        }
        if self.pending.as_ref().is_some_and(|p| now >= self.due(p)) {
            let p = self.pending.take().expect("checked just above");
            self.cut(now, p.shot, p.reason, None);
        }
    }

    /// Puts `shot` on air and reports it.
    fn cut(&mut self, now: Instant, shot: Shot, reason: CutReason, forced_by: Option<SourceId>) {
        self.current = shot;
        self.last_cut = now;
        self.outputs.push_back(Cut {
            at: now,
            shot,
            reason,
            forced_by,
        });
    }

    /// `shot` without its lost sources, if anything is left.
    fn usable(&self, shot: Shot) -> Option<Shot> {
        shot.without(|s| self.lost.contains(&s))
    }

    /// What the rules want at `now`: the best matching rule whose shot can be shown, else the
    /// idle shot, else a bare working source; `None` when every source is lost.
    fn choose(&self, now: Instant) -> Option<(Shot, CutReason)> {
        self.rules
            .iter()
            .filter(|r| self.room.holds(&r.when, now))
            .find_map(|r| Some((self.usable(r.shot)?, CutReason::Rule(r.name.clone()))))
            .or_else(|| Some((self.usable(self.idle)?, CutReason::Idle)))
            .or_else(|| self.fallback())
    }

    /// Where to go when a lost source forces a cut in the static minute, which ignores rules:
    /// what is left of the opening, else the idle shot, else a bare working source.
    fn choose_static(&self) -> Option<(Shot, CutReason)> {
        self.usable(self.opening)
            .map(|s| (s, CutReason::Opening))
            .or_else(|| Some((self.usable(self.idle)?, CutReason::Idle)))
            .or_else(|| self.fallback())
    }

    /// The widest source of the room that is not lost.
    fn fallback(&self) -> Option<(Shot, CutReason)> {
        self.fallbacks
            .iter()
            .find_map(|s| self.usable(*s))
            .map(|s| (s, CutReason::Fallback))
    }
}
