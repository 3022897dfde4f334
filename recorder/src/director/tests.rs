//! Scenarios for the director in simulated time: a test clock is an `Instant` the test advances,
//! firing the director's timeouts on the way exactly when it asks for them. Ends with a seeded
//! event storm that checks the invariants of the engine module.

use super::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const TEACHER_CLOSE: SourceId = SourceId(1);
const TEACHER_WIDE: SourceId = SourceId(2);
const PUPILS_WIDE: SourceId = SourceId(3);
const PUPIL_CLOSE: SourceId = SourceId(4);
const BLACKBOARD: SourceId = SourceId(5);
const COURSEWARE: SourceId = SourceId(6);

fn room() -> SourceMap {
    SourceMap::new()
        .with(Role::TeacherCloseUp, TEACHER_CLOSE)
        .with(Role::TeacherWide, TEACHER_WIDE)
        .with(Role::PupilsWide, PUPILS_WIDE)
        .with(Role::PupilCloseUp, PUPIL_CLOSE)
        .with(Role::Blackboard, BLACKBOARD)
        .with(Role::Courseware, COURSEWARE)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A director and a test clock.
struct Sim {
    director: Director,
    start: Instant,
    now: Instant,
    cuts: Vec<Cut>,
}

impl Sim {
    fn new() -> Sim {
        Sim::with(DirectorConfig::default())
    }

    fn with(config: DirectorConfig) -> Sim {
        let start = Instant::now();
        Sim {
            director: Director::new(config, room(), start).unwrap(),
            start,
            now: start,
            cuts: Vec::new(),
        }
    }

    /// Moves the clock to `start + t` seconds, firing every timeout on the way.
    fn run_to(&mut self, t: f64) {
        let target = self.start + secs(t);
        while let Some(due) = self.director.poll_timeout() {
            if due > target {
                break;
            }
            assert!(due >= self.now, "a timeout in the past: {due:?}");
            self.now = due;
            self.director.handle_timeout(due);
            self.drain();
            assert!(
                self.director.poll_timeout().is_none_or(|next| next > due),
                "handle_timeout({due:?}) left the same timeout due"
            );
        }
        self.now = target;
    }

    /// At `start + t` seconds, `event` happens.
    fn at(&mut self, t: f64, event: Event) {
        self.run_to(t);
        self.director.handle_event(self.now, event);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(cut) = self.director.poll_output() {
            self.cuts.push(cut);
        }
    }

    /// The cuts so far as (seconds since start, shot).
    fn timeline(&self) -> Vec<(f64, Shot)> {
        self.cuts
            .iter()
            .map(|c| (c.at.duration_since(self.start).as_secs_f64(), c.shot))
            .collect()
    }
}

fn pip_courseware() -> Shot {
    Shot::PictureInPicture {
        main: COURSEWARE,
        inset: TEACHER_CLOSE,
    }
}

#[test]
fn the_first_minute_is_static_whatever_happens() {
    let mut sim = Sim::new();
    assert_eq!(*sim.director.current(), Shot::Single(PUPILS_WIDE));
    sim.at(1.0, Event::TeacherSpeaking { at_podium: true });
    sim.at(10.0, Event::CoursewareActivity);
    sim.at(20.0, Event::TeacherLeftPodium);
    sim.at(50.0, Event::PupilStood);
    sim.run_to(59.999);
    assert!(sim.cuts.is_empty(), "{:?}", sim.timeline());
    // The pupil has stood for 10 s, longer than the hold: cut as the minute ends.
    sim.run_to(60.0);
    assert_eq!(sim.timeline(), [(60.0, Shot::Single(PUPIL_CLOSE))]);
    assert_eq!(
        sim.cuts[0].reason,
        CutReason::Rule("pupil_answering".into())
    );
}

#[test]
fn courseware_activity_cuts_to_courseware_then_back_when_it_stops() {
    let mut sim = Sim::new();
    sim.at(70.0, Event::CoursewareActivity);
    sim.at(72.0, Event::CoursewareActivity);
    sim.run_to(73.9);
    assert!(sim.cuts.is_empty());
    sim.run_to(100.0);
    // Wanted from 70 s, on air at 74 s; the last touch at 72 s keeps it wanted until 82 s, and
    // the idle shot is cut back to a hold later.
    assert_eq!(
        sim.timeline(),
        [(74.0, pip_courseware()), (86.0, Shot::Single(PUPILS_WIDE))]
    );
    assert_eq!(sim.cuts[0].reason.to_string(), "courseware");
    assert_eq!(sim.cuts[1].reason, CutReason::Idle);
    assert!(sim.cuts.iter().all(|c| c.forced_by.is_none()));
}

#[test]
fn teacher_speaking_at_the_podium_cuts_to_close_up_only_after_the_hold() {
    let mut sim = Sim::new();
    sim.at(80.0, Event::TeacherSpeaking { at_podium: true });
    assert!(sim.cuts.is_empty(), "no cut at once");
    assert_eq!(sim.director.poll_timeout(), Some(sim.start + secs(84.0)));
    sim.run_to(83.9);
    assert!(sim.cuts.is_empty());
    sim.run_to(84.0);
    assert_eq!(sim.timeline(), [(84.0, Shot::Single(TEACHER_CLOSE))]);
    // Walking away while speaking: teacher panorama, again after a hold.
    sim.at(90.0, Event::TeacherSpeaking { at_podium: false });
    sim.run_to(120.0);
    assert_eq!(sim.timeline()[1], (94.0, Shot::Single(TEACHER_WIDE)));
}

#[test]
fn a_standing_pupil_gets_the_close_up_and_the_prior_rule_returns_when_they_sit() {
    let mut sim = Sim::new();
    sim.at(61.0, Event::TeacherSpeaking { at_podium: true });
    sim.at(70.0, Event::PupilStood);
    sim.at(75.0, Event::PupilSat);
    sim.run_to(78.9);
    assert_eq!(
        sim.timeline().len(),
        2,
        "still on the pupil: {:?}",
        sim.timeline()
    );
    sim.run_to(100.0);
    assert_eq!(
        sim.timeline(),
        [
            (65.0, Shot::Single(TEACHER_CLOSE)),
            (74.0, Shot::Single(PUPIL_CLOSE)),
            (79.0, Shot::Single(TEACHER_CLOSE)),
        ]
    );
    assert_eq!(sim.cuts[2].reason.to_string(), "teacher_at_podium");
}

#[test]
fn a_pupil_who_sits_just_after_the_cut_stays_on_air_for_the_hold() {
    let mut sim = Sim::new();
    sim.at(70.0, Event::PupilStood);
    sim.run_to(74.0);
    sim.at(74.5, Event::PupilSat);
    // Wanted back from 74.5 s: due at 78.5 s (the shot's own hold ended at 78 s).
    sim.run_to(100.0);
    assert_eq!(
        sim.timeline(),
        [
            (74.0, Shot::Single(PUPIL_CLOSE)),
            (78.5, Shot::Single(PUPILS_WIDE))
        ]
    );
}

#[test]
fn flickers_shorter_than_the_hold_never_cut() {
    let mut sim = Sim::new();
    let mut t = 61.0;
    while t < 300.0 {
        sim.at(t, Event::PupilStood);
        sim.at(t + 1.0, Event::PupilSat);
        sim.at(t + 1.5, Event::TeacherSpeaking { at_podium: true });
        sim.at(t + 3.0, Event::TeacherSilent);
        sim.at(t + 3.2, Event::TeacherLeftPodium);
        sim.at(t + 3.9, Event::TeacherAtPodium);
        t += 4.0;
    }
    sim.run_to(400.0);
    assert!(sim.cuts.is_empty(), "{:?}", sim.timeline());
}

#[test]
fn a_lost_source_is_cut_away_at_once_and_never_cut_to_until_back() {
    let mut sim = Sim::new();
    sim.at(61.0, Event::TeacherSpeaking { at_podium: true });
    sim.run_to(65.0);
    assert_eq!(*sim.director.current(), Shot::Single(TEACHER_CLOSE));
    // Unplugged 1 s into the hold: cut away in the same call.
    sim.at(66.0, Event::SourceLost(TEACHER_CLOSE));
    let cut = sim.cuts.last().unwrap();
    assert_eq!(cut.at, sim.start + secs(66.0));
    assert_eq!(cut.forced_by, Some(TEACHER_CLOSE));
    assert_eq!(cut.shot, Shot::Single(PUPILS_WIDE));
    assert_eq!(cut.reason, CutReason::Idle);
    // The teacher goes on speaking and touches the courseware: its PiP shows no inset.
    sim.at(80.0, Event::TeacherSpeaking { at_podium: true });
    sim.at(81.0, Event::CoursewareActivity);
    sim.run_to(88.0);
    assert_eq!(
        sim.timeline()[2..],
        [(85.0, Shot::Single(COURSEWARE))],
        "never the lost close-up"
    );
    assert!(sim.cuts.iter().skip(1).all(|c| !c.shot.uses(TEACHER_CLOSE)));
    // Back while the courseware is still being used: the full PiP, after a hold.
    sim.at(88.0, Event::CoursewareActivity);
    sim.at(89.0, Event::SourceBack(TEACHER_CLOSE));
    sim.run_to(92.9);
    assert_eq!(sim.cuts.len(), 3);
    sim.run_to(93.0);
    assert_eq!(sim.timeline()[3], (93.0, pip_courseware()));
}

#[test]
fn losing_the_inset_keeps_the_main_source_on_air() {
    let mut sim = Sim::new();
    sim.at(70.0, Event::CoursewareActivity);
    sim.run_to(74.0);
    assert_eq!(*sim.director.current(), pip_courseware());
    sim.at(75.0, Event::SourceLost(TEACHER_CLOSE));
    assert_eq!(sim.timeline()[1], (75.0, Shot::Single(COURSEWARE)));
    assert_eq!(sim.cuts[1].reason.to_string(), "courseware");
    // A source that is not on air changes nothing at once.
    sim.at(75.5, Event::SourceLost(BLACKBOARD));
    assert_eq!(sim.cuts.len(), 2);
}

#[test]
fn a_lost_opening_source_is_left_even_in_the_static_minute() {
    let mut sim = Sim::new();
    sim.at(5.0, Event::SourceLost(PUPILS_WIDE));
    assert_eq!(sim.timeline(), [(5.0, Shot::Single(TEACHER_WIDE))]);
    assert_eq!(sim.cuts[0].reason, CutReason::Fallback);
    assert_eq!(sim.cuts[0].forced_by, Some(PUPILS_WIDE));
    // It comes back: the rules (idle) want it, but not before the minute ends.
    sim.at(10.0, Event::SourceBack(PUPILS_WIDE));
    sim.run_to(59.9);
    assert_eq!(sim.cuts.len(), 1);
    sim.run_to(60.0);
    assert_eq!(sim.timeline()[1], (60.0, Shot::Single(PUPILS_WIDE)));
}

#[test]
fn with_every_source_lost_the_shot_stays_and_nothing_panics() {
    let mut sim = Sim::new();
    for (i, s) in [1, 2, 3, 4, 5, 6].into_iter().enumerate() {
        sim.at(61.0 + i as f64, Event::SourceLost(SourceId(s)));
    }
    sim.at(70.0, Event::PupilStood);
    sim.run_to(100.0);
    let last = sim.cuts.last().unwrap().shot;
    assert_eq!(*sim.director.current(), last);
    assert!(sim.cuts.iter().all(|c| c.forced_by.is_some()));
    sim.at(101.0, Event::SourceBack(PUPIL_CLOSE));
    let cut = sim.cuts.last().unwrap();
    assert_eq!(
        (cut.shot, cut.forced_by),
        (
            Shot::Single(PUPIL_CLOSE),
            Some(last.sources().next().unwrap())
        )
    );
}

#[test]
fn time_running_backwards_counts_as_the_latest_time() {
    let mut sim = Sim::new();
    sim.at(70.0, Event::TeacherSpeaking { at_podium: true });
    sim.director.handle_timeout(sim.start + secs(20.0));
    sim.director.handle_event(sim.start, Event::TeacherSilent);
    sim.director
        .handle_event(sim.start, Event::TeacherSpeaking { at_podium: true });
    sim.drain();
    assert!(sim.cuts.is_empty());
    // The flicker at "time 0" was at 70 s: wanted again from 70 s, due at 74 s.
    sim.run_to(80.0);
    assert_eq!(sim.timeline(), [(74.0, Shot::Single(TEACHER_CLOSE))]);
}

#[test]
fn a_rule_showing_a_role_the_room_lacks_is_refused() {
    let no_tracker = SourceMap::new()
        .with(Role::TeacherCloseUp, TEACHER_CLOSE)
        .with(Role::TeacherWide, TEACHER_WIDE)
        .with(Role::PupilsWide, PUPILS_WIDE)
        .with(Role::Courseware, COURSEWARE);
    let err = Director::new(DirectorConfig::default(), no_tracker, Instant::now()).unwrap_err();
    assert!(
        matches!(&err, DirectorError::NoSource { role: Role::PupilCloseUp, used_by } if used_by == "pupil_answering"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "pupil_answering shows pupil_close_up, but the room has no source for it"
    );
    let bad = DirectorConfig {
        min_hold_s: 0.0,
        static_first_s: -1.0,
        ..DirectorConfig::default()
    };
    assert!(matches!(
        Director::new(bad, room(), Instant::now()),
        Err(DirectorError::MinHold { .. })
    ));
    let bad = DirectorConfig {
        opening: Shot::Single(Role::Blackboard),
        ..DirectorConfig::default()
    };
    let only_pupils = SourceMap::new()
        .with(Role::PupilsWide, PUPILS_WIDE)
        .with(Role::PupilCloseUp, PUPIL_CLOSE)
        .with(Role::TeacherCloseUp, TEACHER_CLOSE)
        .with(Role::TeacherWide, TEACHER_WIDE)
        .with(Role::Courseware, COURSEWARE);
    assert!(matches!(
        Director::new(bad, only_pupils, Instant::now()),
        Err(DirectorError::NoSource { role: Role::Blackboard, used_by }) if used_by == "opening"
    ));
}

#[test]
fn equal_priorities_go_to_the_rule_written_first() {
    let config = DirectorConfig::from_toml(
        r#"
        static_first_s = 0
        rules = [
          { name = "board", when = "teacher_speaking", show = { side_by_side = ["blackboard", "teacher_close_up"] } },
          { name = "close", when = "teacher_speaking", show = { single = "teacher_close_up" } },
          { name = "loud", when = { loud = { mic = "pupils", above_dbfs = -30 } }, show = { single = "pupils_wide" } },
        ]
        "#,
    )
    .unwrap();
    let mut sim = Sim::with(config);
    sim.at(1.0, Event::TeacherSpeaking { at_podium: true });
    sim.run_to(10.0);
    assert_eq!(
        sim.timeline(),
        [(5.0, Shot::SideBySide(BLACKBOARD, TEACHER_CLOSE))]
    );
    assert_eq!(sim.cuts[0].reason.to_string(), "board");
    sim.at(10.0, Event::TeacherSilent);
    sim.at(
        10.0,
        Event::AudioLevel {
            source: Mic::Pupils,
            level_dbfs: f32::NAN,
        },
    );
    sim.run_to(20.0);
    assert_eq!(sim.cuts[1].reason, CutReason::Idle, "NaN is silence");
}

/// A tiny LCG (Knuth's MMIX constants), so the storm is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

#[test]
fn an_event_storm_keeps_the_invariants() {
    let config = DirectorConfig::default();
    let hold = config.min_hold();
    let static_first = config.static_first();
    let ids: Vec<SourceId> = room().iter().map(|(_, s)| s).collect();
    let mut total_cuts = 0;
    let mut forced_cuts = 0;
    for seed in 0..24u64 {
        let mut rng = Lcg(seed);
        let mut sim = Sim::new();
        let mut lost = BTreeSet::new();
        let mut seen = 0;
        let mut t = 0.0;
        for _ in 0..3000 {
            // Mostly bursts (flicker), sometimes long quiet stretches.
            t += match rng.below(10) {
                0..=6 => f64::from(rng.below(1500)) / 1000.0,
                7 | 8 => f64::from(rng.below(8000)) / 1000.0,
                _ => f64::from(rng.below(30)),
            };
            let source = ids[rng.below(ids.len() as u32) as usize];
            let event = match rng.below(13) {
                0 | 1 => Event::CoursewareActivity,
                2 => Event::TeacherSpeaking { at_podium: true },
                3 => Event::TeacherSpeaking { at_podium: false },
                4 => Event::TeacherSilent,
                5 => Event::TeacherLeftPodium,
                6 => Event::TeacherAtPodium,
                7 => Event::PupilStood,
                8 => Event::PupilSat,
                9 => Event::AudioLevel {
                    source: Mic::Pupils,
                    level_dbfs: -(rng.below(90) as f32),
                },
                10 => Event::SourceLost(source),
                _ => Event::SourceBack(source),
            };
            // Timeouts first, checked against the lost set before this event.
            sim.run_to(t);
            check_new_cuts(&sim, seen, &lost, hold, static_first, seed);
            seen = sim.cuts.len();
            match event {
                Event::SourceLost(s) => {
                    lost.insert(s);
                }
                Event::SourceBack(s) => {
                    lost.remove(&s);
                }
                _ => {}
            }
            sim.director.handle_event(sim.now, event);
            sim.drain();
            check_new_cuts(&sim, seen, &lost, hold, static_first, seed);
            seen = sim.cuts.len();
            let current = *sim.director.current();
            assert!(
                !current.sources().any(|s| lost.contains(&s)) || lost.len() == ids.len(),
                "seed {seed}: {current} on air with {lost:?} lost"
            );
            if let Some(last) = sim.cuts.last() {
                assert_eq!(last.shot, current);
            }
        }
        total_cuts += sim.cuts.len();
        forced_cuts += sim.cuts.iter().filter(|c| c.forced_by.is_some()).count();
    }
    // The storm must exercise both kinds of cut, or it proves nothing.
    assert!(total_cuts > 1000, "{total_cuts} cuts");
    assert!(forced_cuts > 100, "{forced_cuts} forced cuts");
}

/// Checks the cuts from index `from` on against the invariants.
fn check_new_cuts(
    sim: &Sim,
    from: usize,
    lost: &BTreeSet<SourceId>,
    hold: Duration,
    static_first: Duration,
    seed: u64,
) {
    for i in from..sim.cuts.len() {
        let cut = &sim.cuts[i];
        let t = cut.at.duration_since(sim.start);
        assert!(
            !cut.shot.sources().any(|s| lost.contains(&s)),
            "seed {seed}: cut at {t:?} to {} with {lost:?} lost",
            cut.shot
        );
        let before = if i == 0 {
            Shot::Single(PUPILS_WIDE)
        } else {
            sim.cuts[i - 1].shot
        };
        assert_ne!(
            before, cut.shot,
            "seed {seed}: a cut to the same shot at {t:?}"
        );
        match cut.forced_by {
            Some(gone) => {
                assert!(
                    lost.contains(&gone) && before.uses(gone),
                    "seed {seed}: {cut:?}"
                );
            }
            None => {
                assert!(
                    t >= static_first,
                    "seed {seed}: a cut at {t:?} in the static minute"
                );
                if i > 0 {
                    let gap = cut.at.duration_since(sim.cuts[i - 1].at);
                    assert!(gap >= hold, "seed {seed}: cuts {gap:?} apart at {t:?}");
                }
            }
        }
    }
}
