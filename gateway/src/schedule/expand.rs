//! Weekly class series (上课安排, table `class_series`) and their exceptions → lessons
//! ([`Occurrence`]s) in absolute time.
//!
//! Drive it with [`expand()`]: the term, the bell schedules by school, the term's series, and an
//! inclusive date window. The rules (docs/gateway-design.md, "Scheduling rules"):
//! - a series meets on every date of the term whose effective weekday (see
//!   [`calendar`](super::calendar)) is its `weekday`; holidays have no lessons;
//! - the lesson's interval is the **lead school's** bell period on that date in Asia/Shanghai,
//!   converted to UTC; every receiving classroom is busy for that same interval, whatever its
//!   own bells say;
//! - [`Exception::Cancel`] removes the lesson of `date` (a cancel for a date without a lesson is
//!   a no-op: what it asks for already holds);
//! - [`Exception::Move`] removes the lesson of `date` and adds one on `new_date` at `new_period`
//!   of the lead school's bells. The lesson of `date` must exist, `new_date` must be a school day
//!   ([`Term::school_day`]), and the new slot must not already hold a lesson of the same series.
//!
//! Errors depend only on the data, never on the window (see the parent module's invariants).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::calendar::{BellPeriod, BellSchedule, Term, TermIndex, local_to_utc};
use super::conflict::{Interval, Role};
use super::{ClassroomId, ScheduleError, SchoolId, SeriesId, TermId, UserId};

/// A weekly lesson: one period on one weekday for a whole term, taught by `teacher` in
/// `lead_classroom` (主讲课堂) to its own pupils and to every receiving classroom (接收课堂).
/// A school's local lesson is a series with no receivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// The series.
    pub id: SeriesId,
    /// The term it belongs to; [`expand()`] refuses series of another term.
    pub term: TermId,
    /// The weekday whose timetable it is on.
    pub weekday: Weekday,
    /// The period of the lead school's bell schedule.
    pub period: u8,
    /// The school of the lead classroom: its bells set the time.
    pub lead_school: SchoolId,
    /// Where the lead teacher teaches.
    pub lead_classroom: ClassroomId,
    /// Receiving classrooms, each at most once and never the lead classroom.
    pub receivers: Vec<ClassroomId>,
    /// The lead teacher (主讲教师).
    pub teacher: UserId,
    /// The subject's display name (e.g. "数学"), copied onto each occurrence.
    pub subject: String,
    /// Cancellations and moves, at most one per date.
    pub exceptions: Vec<Exception>,
}

/// A change to one lesson of a series (table `class_exceptions`). In JSON:
/// `{"kind":"cancel","date":"2026-10-12"}` or
/// `{"kind":"move","date":"2026-10-12","new_date":"2026-10-13","new_period":3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exception {
    /// No lesson on `date`.
    Cancel {
        /// The date of the lesson cancelled.
        date: NaiveDate,
    },
    /// The lesson of `date` takes place on `new_date` at `new_period` instead.
    Move {
        /// The date of the lesson moved.
        date: NaiveDate,
        /// Where it goes.
        new_date: NaiveDate,
        /// At which period of the lead school.
        new_period: u8,
    },
}

impl Exception {
    /// The date of the lesson this exception changes.
    pub fn date(&self) -> NaiveDate {
        match *self {
            Self::Cancel { date } | Self::Move { date, .. } => date,
        }
    }
}

/// One lesson of a series, in absolute time. Identified by `(series, origin_date())`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    /// The series.
    pub series: SeriesId,
    /// The school-local date it takes place on.
    pub date: NaiveDate,
    /// The lead school's period it takes place in.
    pub period: u8,
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends (after `start`).
    pub end: DateTime<Utc>,
    /// The lead school, whose bells set the time.
    pub lead_school: SchoolId,
    /// The lead classroom.
    pub lead_classroom: ClassroomId,
    /// The receiving classrooms.
    pub receivers: Vec<ClassroomId>,
    /// The lead teacher.
    pub teacher: UserId,
    /// The subject's display name.
    pub subject: String,
    /// For a moved lesson, the date it was moved from; `None` for a regular one.
    pub moved_from: Option<NaiveDate>,
}

impl Occurrence {
    /// The date of the weekly lesson this is: `moved_from` if moved, else `date`. Together with
    /// `series` it identifies the occurrence (the iCal `UID`), stable across a move.
    pub fn origin_date(&self) -> NaiveDate {
        self.moved_from.unwrap_or(self.date)
    }

    /// Whether this lesson was moved here by an [`Exception::Move`].
    pub fn is_moved(&self) -> bool {
        self.moved_from.is_some()
    }

    /// `start..end`.
    pub fn interval(&self) -> Interval {
        Interval {
            start: self.start,
            end: self.end,
        }
    }

    /// How `classroom` takes part: as the lead or as a receiving classroom, or not at all.
    pub fn role_of(&self, classroom: &ClassroomId) -> Option<Role> {
        if self.lead_classroom == *classroom {
            Some(Role::LeadClassroom)
        } else if self.receivers.contains(classroom) {
            Some(Role::ReceivingClassroom)
        } else {
            None
        }
    }

    /// The order of [`expand()`]'s output: by start, then end, series and origin date.
    pub(crate) fn order_key(&self) -> (DateTime<Utc>, DateTime<Utc>, &SeriesId, NaiveDate) {
        (self.start, self.end, &self.series, self.origin_date())
    }
}

/// The lessons of `series` in `term` on the dates `from..=to` (inclusive; clipped to the term),
/// sorted by start (then end, series id, origin date).
///
/// `bells` holds the bell schedules by school; only the lead schools of `series` are looked up,
/// and each one used is validated. Fails if the window is reversed or if the term, a series, one
/// of its exceptions, or a bell schedule it needs is invalid; see [`ScheduleError`]. A window
/// outside the term is not an error: it has no lessons.
pub fn expand(
    term: &Term,
    bells: &HashMap<SchoolId, BellSchedule>,
    series: &[Series],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Occurrence>, ScheduleError> {
    if to < from {
        return Err(ScheduleError::WindowReversed { from, to });
    }
    let index = TermIndex::new(term)?;
    let window = Window {
        from: from.max(term.start),
        to: to.min(term.end),
    };

    // The window's dates grouped by the weekday whose timetable they run (Monday first).
    let mut dates_by_weekday: [Vec<NaiveDate>; 7] = Default::default();
    if window.from <= window.to {
        for date in window.from.iter_days().take_while(|&d| d <= window.to) {
            if let Some(weekday) = index.effective_weekday(date) {
                dates_by_weekday[weekday.num_days_from_monday() as usize].push(date);
            }
        }
    }

    let mut valid_bells: HashSet<&SchoolId> = HashSet::new();
    let mut out = Vec::new();
    for s in series {
        let schedule = check_series(&index, bells, &mut valid_bells, s)?;
        let weekly = schedule
            .period(s.period)
            .ok_or_else(|| ScheduleError::MissingBellPeriod {
                series: s.id.clone(),
                school: s.lead_school.clone(),
                period: s.period,
            })?;
        let exceptions = check_exceptions(&index, schedule, s)?;

        for &date in &dates_by_weekday[s.weekday.num_days_from_monday() as usize] {
            if !exceptions.contains_key(&date) {
                out.push(occurrence(s, date, weekly, None)?);
            }
        }
        for e in &s.exceptions {
            if let Exception::Move {
                date,
                new_date,
                new_period,
            } = *e
                && window.contains(new_date)
            {
                let bell = schedule
                    .period(new_period)
                    .expect("check_exceptions verified that the lead school has new_period");
                out.push(occurrence(s, new_date, bell, Some(date))?);
            }
        }
    }
    out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    Ok(out)
}

/// The inclusive window clipped to the term; empty if `from > to`.
struct Window {
    from: NaiveDate,
    to: NaiveDate,
}

impl Window {
    fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }
}

/// Checks what a series says on its own and returns its lead school's (validated) bells.
fn check_series<'b>(
    index: &TermIndex<'_>,
    bells: &'b HashMap<SchoolId, BellSchedule>,
    valid_bells: &mut HashSet<&'b SchoolId>,
    s: &Series,
) -> Result<&'b BellSchedule, ScheduleError> {
    if s.term != index.term.id {
        return Err(ScheduleError::SeriesInOtherTerm {
            series: s.id.clone(),
            series_term: s.term.clone(),
            term: index.term.id.clone(),
        });
    }
    let mut rooms: HashSet<&ClassroomId> = HashSet::with_capacity(s.receivers.len() + 1);
    rooms.insert(&s.lead_classroom);
    for r in &s.receivers {
        if !rooms.insert(r) {
            return Err(ScheduleError::ReceiverRepeated {
                series: s.id.clone(),
                classroom: r.clone(),
            });
        }
    }
    let (school, schedule) =
        bells
            .get_key_value(&s.lead_school)
            .ok_or_else(|| ScheduleError::NoBellSchedule {
                series: s.id.clone(),
                school: s.lead_school.clone(),
            })?;
    if !valid_bells.contains(school) {
        schedule.validate()?;
        valid_bells.insert(school);
    }
    Ok(schedule)
}

/// Checks a series' exceptions (see the module doc) and indexes them by the date they change.
fn check_exceptions<'s>(
    index: &TermIndex<'_>,
    schedule: &BellSchedule,
    s: &'s Series,
) -> Result<HashMap<NaiveDate, &'s Exception>, ScheduleError> {
    let mut by_date = HashMap::with_capacity(s.exceptions.len());
    for e in &s.exceptions {
        if by_date.insert(e.date(), e).is_some() {
            return Err(ScheduleError::ExceptionRepeated {
                series: s.id.clone(),
                date: e.date(),
            });
        }
    }
    let meets = |date| index.effective_weekday(date) == Some(s.weekday);
    let mut targets: HashSet<(NaiveDate, u8)> = HashSet::new();
    for e in &s.exceptions {
        let Exception::Move {
            date,
            new_date,
            new_period,
        } = *e
        else {
            continue;
        };
        if !meets(date) {
            return Err(ScheduleError::ExceptionNotScheduled {
                series: s.id.clone(),
                date,
            });
        }
        if let Err(reason) = index.school_day(new_date) {
            return Err(ScheduleError::MoveOntoNonSchoolDay {
                series: s.id.clone(),
                date,
                new_date,
                reason,
            });
        }
        if schedule.period(new_period).is_none() {
            return Err(ScheduleError::MoveToMissingPeriod {
                series: s.id.clone(),
                date,
                new_date,
                school: s.lead_school.clone(),
                new_period,
            });
        }
        let onto_weekly =
            new_period == s.period && meets(new_date) && !by_date.contains_key(&new_date);
        if onto_weekly || !targets.insert((new_date, new_period)) {
            return Err(ScheduleError::MoveCollides {
                series: s.id.clone(),
                date,
                new_date,
                new_period,
            });
        }
    }
    Ok(by_date)
}

fn occurrence(
    s: &Series,
    date: NaiveDate,
    bell: &BellPeriod,
    moved_from: Option<NaiveDate>,
) -> Result<Occurrence, ScheduleError> {
    Ok(Occurrence {
        series: s.id.clone(),
        date,
        period: bell.period,
        start: local_to_utc(date, bell.start)?,
        end: local_to_utc(date, bell.end)?,
        lead_school: s.lead_school.clone(),
        lead_classroom: s.lead_classroom.clone(),
        receivers: s.receivers.clone(),
        teacher: s.teacher.clone(),
        subject: s.subject.clone(),
        moved_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::calendar::NotSchoolDay;
    use crate::schedule::fixtures::{SCHOOL_A, SCHOOL_B, autumn_2026, bells, d, series, utc};

    fn dates(occurrences: &[Occurrence]) -> Vec<String> {
        occurrences.iter().map(|o| o.date.to_string()).collect()
    }

    fn friday_maths() -> Series {
        series(
            "ser_fri",
            Weekday::Fri,
            1,
            SCHOOL_A,
            "cls_a1",
            &["cls_r"],
            "usr_wang",
        )
    }

    fn monday_maths() -> Series {
        series(
            "ser_mon",
            Weekday::Mon,
            1,
            SCHOOL_A,
            "cls_a1",
            &["cls_r"],
            "usr_wang",
        )
    }

    #[test]
    fn friday_series_skips_mid_autumn_and_national_day_and_runs_on_the_makeup_saturday() {
        let term = autumn_2026();
        let out = expand(
            &term,
            &bells(),
            &[friday_maths()],
            d("2026-09-14"),
            d("2026-10-18"),
        )
        .unwrap();
        // 09-25 (中秋) and 10-02 (国庆) are holidays; Saturday 10-10 runs Friday's timetable.
        assert_eq!(
            dates(&out),
            ["2026-09-18", "2026-10-09", "2026-10-10", "2026-10-16"]
        );
        assert!(out.iter().all(|o| !o.is_moved() && o.period == 1));
    }

    #[test]
    fn monday_series_runs_on_the_makeup_sunday_and_skips_the_holiday_monday() {
        let term = autumn_2026();
        let out = expand(
            &term,
            &bells(),
            &[monday_maths()],
            d("2026-09-14"),
            d("2026-10-18"),
        )
        .unwrap();
        // Sunday 09-20 runs Monday's timetable; Monday 10-05 is in the 国庆 week.
        assert_eq!(
            dates(&out),
            [
                "2026-09-14",
                "2026-09-20",
                "2026-09-21",
                "2026-09-28",
                "2026-10-12"
            ]
        );
    }

    #[test]
    fn whole_term_counts_and_term_edges() {
        let term = autumn_2026();
        let all = expand(&term, &bells(), &[friday_maths()], term.start, term.end).unwrap();
        // 21 Fridays from 09-04 to 01-22, minus 09-25, 10-02 and 01-01, plus Saturday 10-10.
        assert_eq!(all.len(), 19);
        assert_eq!(all.first().map(|o| o.date), Some(d("2026-09-04")));
        assert_eq!(all.last().map(|o| o.date), Some(d("2027-01-22")));

        // A window reaching before the term: Friday 08-28 is outside it.
        let early = expand(
            &term,
            &bells(),
            &[friday_maths()],
            d("2026-08-01"),
            d("2026-09-10"),
        )
        .unwrap();
        assert_eq!(dates(&early), ["2026-09-04"]);
        // Entirely outside: nothing, and no error.
        let summer = expand(
            &term,
            &bells(),
            &[friday_maths()],
            d("2027-07-01"),
            d("2027-07-31"),
        )
        .unwrap();
        assert!(summer.is_empty());
        // A one-day window.
        let one = expand(
            &term,
            &bells(),
            &[friday_maths()],
            d("2026-10-10"),
            d("2026-10-10"),
        )
        .unwrap();
        assert_eq!(dates(&one), ["2026-10-10"]);
    }

    #[test]
    fn lead_school_bells_in_shanghai_become_utc() {
        let term = autumn_2026();
        let out = expand(
            &term,
            &bells(),
            &[monday_maths()],
            d("2026-10-12"),
            d("2026-10-12"),
        )
        .unwrap();
        // School A's period 1 is 08:00–08:40 in Asia/Shanghai (UTC+8).
        assert_eq!(out[0].start, utc("2026-10-12T00:00:00Z"));
        assert_eq!(out[0].end, utc("2026-10-12T00:40:00Z"));
        assert_eq!(out[0].lead_school.as_str(), SCHOOL_A);
        assert_eq!(out[0].receivers, [ClassroomId::from("cls_r")]);
        assert_eq!(out[0].subject, "subject of ser_mon");
    }

    #[test]
    fn receivers_take_the_lead_schools_time_not_their_own() {
        let term = autumn_2026();
        // Led from school A at A's period 2 (08:50), received in school B whose period 2 is 08:55.
        let paired = series(
            "ser_p",
            Weekday::Mon,
            2,
            SCHOOL_A,
            "cls_a1",
            &["cls_r"],
            "usr_wang",
        );
        let out = expand(&term, &bells(), &[paired], d("2026-10-12"), d("2026-10-12")).unwrap();
        assert_eq!(out[0].start, utc("2026-10-12T00:50:00Z"));
        assert_eq!(out[0].end, utc("2026-10-12T01:30:00Z"));
    }

    #[test]
    fn cancel_removes_one_lesson() {
        let term = autumn_2026();
        let mut s = friday_maths();
        s.exceptions.push(Exception::Cancel {
            date: d("2026-10-09"),
        });
        let out = expand(&term, &bells(), &[s], d("2026-09-14"), d("2026-10-18")).unwrap();
        assert_eq!(dates(&out), ["2026-09-18", "2026-10-10", "2026-10-16"]);
    }

    #[test]
    fn cancel_of_a_date_without_a_lesson_is_a_no_op() {
        let term = autumn_2026();
        let mut s = friday_maths();
        // A holiday and a Thursday: nothing to cancel, and nothing goes wrong.
        s.exceptions.push(Exception::Cancel {
            date: d("2026-10-02"),
        });
        s.exceptions.push(Exception::Cancel {
            date: d("2026-10-15"),
        });
        let out = expand(&term, &bells(), &[s], d("2026-09-14"), d("2026-10-18")).unwrap();
        assert_eq!(
            dates(&out),
            ["2026-09-18", "2026-10-09", "2026-10-10", "2026-10-16"]
        );
    }

    #[test]
    fn move_removes_and_adds_keeping_its_origin() {
        let term = autumn_2026();
        let mut s = friday_maths();
        // Friday 10-09 period 1 → Thursday 10-15 period 3 (09:40–10:20 at school A).
        s.exceptions.push(Exception::Move {
            date: d("2026-10-09"),
            new_date: d("2026-10-15"),
            new_period: 3,
        });
        let out = expand(&term, &bells(), &[s], d("2026-09-14"), d("2026-10-18")).unwrap();
        assert_eq!(
            dates(&out),
            ["2026-09-18", "2026-10-10", "2026-10-15", "2026-10-16"]
        );
        let moved = &out[2];
        assert_eq!(moved.period, 3);
        assert_eq!(moved.moved_from, Some(d("2026-10-09")));
        assert_eq!(moved.origin_date(), d("2026-10-09"));
        assert!(moved.is_moved());
        assert_eq!(moved.start, utc("2026-10-15T01:40:00Z"));
        assert_eq!(moved.end, utc("2026-10-15T02:20:00Z"));
    }

    #[test]
    fn moves_across_the_window_edge() {
        let term = autumn_2026();
        let mut s = friday_maths();
        s.exceptions.push(Exception::Move {
            date: d("2026-10-16"),
            new_date: d("2026-10-20"),
            new_period: 2,
        });
        // The week of 10-12: the lesson left, and landed in the next week.
        let week = expand(
            &term,
            &bells(),
            &[s.clone()],
            d("2026-10-12"),
            d("2026-10-18"),
        )
        .unwrap();
        assert!(week.is_empty());
        let next = expand(&term, &bells(), &[s], d("2026-10-19"), d("2026-10-25")).unwrap();
        assert_eq!(dates(&next), ["2026-10-20", "2026-10-23"]);
        assert_eq!(next[0].moved_from, Some(d("2026-10-16")));
    }

    #[test]
    fn moves_to_the_makeup_saturday_and_to_another_period_the_same_day_are_allowed() {
        let term = autumn_2026();
        let mut s = monday_maths();
        s.exceptions.push(Exception::Move {
            date: d("2026-10-12"),
            new_date: d("2026-10-10"),
            new_period: 4,
        });
        s.exceptions.push(Exception::Move {
            date: d("2026-10-19"),
            new_date: d("2026-10-19"),
            new_period: 2,
        });
        let out = expand(&term, &bells(), &[s], d("2026-10-08"), d("2026-10-20")).unwrap();
        assert_eq!(dates(&out), ["2026-10-10", "2026-10-19"]);
        assert_eq!((out[0].period, out[1].period), (4, 2));
    }

    fn move_fails(date: &str, new_date: &str, new_period: u8) -> ScheduleError {
        let term = autumn_2026();
        let mut s = friday_maths();
        s.exceptions.push(Exception::Move {
            date: d(date),
            new_date: d(new_date),
            new_period,
        });
        expand(&term, &bells(), &[s], term.start, term.end).unwrap_err()
    }

    #[test]
    fn moves_onto_days_without_lessons_are_refused() {
        let refused = |new_date: &str, reason| ScheduleError::MoveOntoNonSchoolDay {
            series: SeriesId::from("ser_fri"),
            date: d("2026-10-09"),
            new_date: d(new_date),
            reason,
        };
        assert_eq!(
            move_fails("2026-10-09", "2026-10-05", 1),
            refused("2026-10-05", NotSchoolDay::Holiday)
        );
        assert_eq!(
            move_fails("2026-10-09", "2026-10-11", 1),
            refused("2026-10-11", NotSchoolDay::Weekend)
        );
        assert_eq!(
            move_fails("2026-10-09", "2027-02-01", 1),
            refused("2027-02-01", NotSchoolDay::OutsideTerm)
        );
        let message = move_fails("2026-10-09", "2026-10-05", 1).to_string();
        assert_eq!(
            message,
            "series ser_fri: the lesson of 2026-10-09 cannot move to 2026-10-05, which is a holiday"
        );
    }

    #[test]
    fn bad_moves_are_typed_errors() {
        // Nothing to move on a Thursday, nor on a holiday Friday.
        assert_eq!(
            move_fails("2026-10-15", "2026-10-14", 1),
            ScheduleError::ExceptionNotScheduled {
                series: SeriesId::from("ser_fri"),
                date: d("2026-10-15"),
            }
        );
        assert!(matches!(
            move_fails("2026-10-02", "2026-10-14", 1),
            ScheduleError::ExceptionNotScheduled { .. }
        ));
        // School A has four periods.
        assert_eq!(
            move_fails("2026-10-09", "2026-10-14", 5),
            ScheduleError::MoveToMissingPeriod {
                series: SeriesId::from("ser_fri"),
                date: d("2026-10-09"),
                new_date: d("2026-10-14"),
                school: SchoolId::from(SCHOOL_A),
                new_period: 5,
            }
        );
        // Onto the series' own lesson of Friday 10-16, period 1.
        assert!(matches!(
            move_fails("2026-10-09", "2026-10-16", 1),
            ScheduleError::MoveCollides { .. }
        ));
    }

    #[test]
    fn two_moves_into_one_slot_and_two_exceptions_for_one_date_are_refused() {
        let term = autumn_2026();
        let mut s = friday_maths();
        for date in ["2026-10-09", "2026-10-16"] {
            s.exceptions.push(Exception::Move {
                date: d(date),
                new_date: d("2026-10-14"),
                new_period: 2,
            });
        }
        assert_eq!(
            expand(&term, &bells(), &[s], term.start, term.end),
            Err(ScheduleError::MoveCollides {
                series: SeriesId::from("ser_fri"),
                date: d("2026-10-16"),
                new_date: d("2026-10-14"),
                new_period: 2,
            })
        );

        let mut s = friday_maths();
        s.exceptions.push(Exception::Cancel {
            date: d("2026-10-09"),
        });
        s.exceptions.push(Exception::Move {
            date: d("2026-10-09"),
            new_date: d("2026-10-14"),
            new_period: 2,
        });
        assert_eq!(
            expand(&term, &bells(), &[s], term.start, term.end),
            Err(ScheduleError::ExceptionRepeated {
                series: SeriesId::from("ser_fri"),
                date: d("2026-10-09"),
            })
        );
    }

    #[test]
    fn a_move_onto_a_cancelled_slot_is_allowed() {
        let term = autumn_2026();
        let mut s = friday_maths();
        s.exceptions.push(Exception::Cancel {
            date: d("2026-10-16"),
        });
        s.exceptions.push(Exception::Move {
            date: d("2026-10-09"),
            new_date: d("2026-10-16"),
            new_period: 1,
        });
        let out = expand(&term, &bells(), &[s], d("2026-10-05"), d("2026-10-18")).unwrap();
        assert_eq!(dates(&out), ["2026-10-10", "2026-10-16"]);
        assert_eq!(out[1].moved_from, Some(d("2026-10-09")));
    }

    #[test]
    fn missing_bells_name_the_school_and_period() {
        let term = autumn_2026();
        for period in [0u8, 5, 255] {
            let s = series(
                "ser_x",
                Weekday::Mon,
                period,
                SCHOOL_B,
                "cls_b1",
                &[],
                "usr_li",
            );
            assert_eq!(
                expand(&term, &bells(), &[s], d("2026-10-12"), d("2026-10-18")),
                Err(ScheduleError::MissingBellPeriod {
                    series: SeriesId::from("ser_x"),
                    school: SchoolId::from(SCHOOL_B),
                    period,
                })
            );
        }
        let s = series(
            "ser_x",
            Weekday::Mon,
            1,
            "sch_nowhere",
            "cls_n1",
            &[],
            "usr_li",
        );
        assert_eq!(
            expand(&term, &bells(), &[s], d("2026-10-12"), d("2026-10-18")),
            Err(ScheduleError::NoBellSchedule {
                series: SeriesId::from("ser_x"),
                school: SchoolId::from("sch_nowhere"),
            })
        );
    }

    #[test]
    fn errors_do_not_depend_on_the_window() {
        let term = autumn_2026();
        // The bad move is in January; the window is in September, and outside the term.
        let mut s = friday_maths();
        s.exceptions.push(Exception::Move {
            date: d("2027-01-08"),
            new_date: d("2027-01-01"),
            new_period: 1,
        });
        for (from, to) in [("2026-09-01", "2026-09-07"), ("2027-07-01", "2027-07-02")] {
            assert!(matches!(
                expand(&term, &bells(), std::slice::from_ref(&s), d(from), d(to)),
                Err(ScheduleError::MoveOntoNonSchoolDay { .. })
            ));
        }
        // A series at a period the lead school lacks fails even when no date matches.
        let s = series("ser_x", Weekday::Sun, 9, SCHOOL_A, "cls_a1", &[], "usr_li");
        assert!(matches!(
            expand(&term, &bells(), &[s], d("2026-10-12"), d("2026-10-16")),
            Err(ScheduleError::MissingBellPeriod { period: 9, .. })
        ));
    }

    #[test]
    fn invalid_bells_are_reported_when_used() {
        let term = autumn_2026();
        let mut all = bells();
        let b = all.get_mut(&SchoolId::from(SCHOOL_B)).unwrap();
        b.periods.swap(0, 1);
        // A series led from school A does not care about school B's bells...
        assert!(
            expand(
                &term,
                &all,
                &[friday_maths()],
                d("2026-10-12"),
                d("2026-10-18")
            )
            .is_ok()
        );
        // ...a series led from school B does.
        let s = series("ser_b", Weekday::Mon, 1, SCHOOL_B, "cls_b1", &[], "usr_li");
        assert!(matches!(
            expand(&term, &all, &[s], d("2026-10-12"), d("2026-10-18")),
            Err(ScheduleError::PeriodsOutOfOrder { .. })
        ));
    }

    #[test]
    fn bad_series_and_windows_are_typed_errors() {
        let term = autumn_2026();
        let mut s = friday_maths();
        s.receivers.push(ClassroomId::from("cls_a1"));
        assert_eq!(
            expand(&term, &bells(), &[s], term.start, term.end),
            Err(ScheduleError::ReceiverRepeated {
                series: SeriesId::from("ser_fri"),
                classroom: ClassroomId::from("cls_a1"),
            })
        );
        let mut s = friday_maths();
        s.receivers.push(ClassroomId::from("cls_r"));
        assert!(matches!(
            expand(&term, &bells(), &[s], term.start, term.end),
            Err(ScheduleError::ReceiverRepeated { .. })
        ));
        let mut s = friday_maths();
        s.term = TermId::from("term_2026b");
        assert!(matches!(
            expand(&term, &bells(), &[s], term.start, term.end),
            Err(ScheduleError::SeriesInOtherTerm { .. })
        ));
        assert_eq!(
            expand(&term, &bells(), &[], d("2026-10-18"), d("2026-10-12")),
            Err(ScheduleError::WindowReversed {
                from: d("2026-10-18"),
                to: d("2026-10-12"),
            })
        );
        let mut bad_term = autumn_2026();
        bad_term.end = d("2026-01-01");
        assert!(matches!(
            expand(&bad_term, &bells(), &[], d("2026-10-12"), d("2026-10-18")),
            Err(ScheduleError::TermReversed { .. })
        ));
    }

    #[test]
    fn output_is_sorted_and_independent_of_input_order() {
        let term = autumn_2026();
        let list = vec![
            series("ser_c", Weekday::Mon, 2, SCHOOL_A, "cls_a3", &[], "usr_3"),
            series("ser_b", Weekday::Mon, 1, SCHOOL_B, "cls_b1", &[], "usr_2"),
            series(
                "ser_a",
                Weekday::Mon,
                1,
                SCHOOL_A,
                "cls_a1",
                &["cls_r"],
                "usr_1",
            ),
            series("ser_d", Weekday::Tue, 1, SCHOOL_A, "cls_a2", &[], "usr_4"),
            series("ser_e", Weekday::Mon, 1, SCHOOL_A, "cls_a4", &[], "usr_5"),
        ];
        let out = expand(&term, &bells(), &list, d("2026-10-12"), d("2026-10-13")).unwrap();
        let order: Vec<&str> = out.iter().map(|o| o.series.as_str()).collect();
        // 08:00 A1 (ser_a, ser_e by id), 08:05 B1, 08:50 A2, then Tuesday.
        assert_eq!(order, ["ser_a", "ser_e", "ser_b", "ser_c", "ser_d"]);
        assert!(out.windows(2).all(|w| w[0].start <= w[1].start));

        let mut reversed = list.clone();
        reversed.reverse();
        assert_eq!(
            expand(&term, &bells(), &reversed, d("2026-10-12"), d("2026-10-13")).unwrap(),
            out
        );
    }

    #[test]
    fn exceptions_in_json() {
        let e: Exception = serde_json::from_str(
            r#"{"kind":"move","date":"2026-10-12","new_date":"2026-10-13","new_period":3}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            Exception::Move {
                date: d("2026-10-12"),
                new_date: d("2026-10-13"),
                new_period: 3
            }
        );
        let c = serde_json::to_value(Exception::Cancel {
            date: d("2026-10-12"),
        })
        .unwrap();
        assert_eq!(c, serde_json::json!({"kind":"cancel","date":"2026-10-12"}));
    }
}
