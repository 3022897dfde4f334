//! Terms (学期) with their holidays and make-up days (调休), schools' bell schedules (作息时间), and
//! the one place a school-local date and time becomes an instant in UTC.
//!
//! A [`Term`] says which dates have lessons and which weekday's timetable each runs:
//! - dates outside `start..=end` have none;
//! - a [`TermDayKind::Holiday`] has none;
//! - a [`TermDayKind::Makeup`] day (e.g. a Saturday worked to pay for a bridge day) runs the
//!   timetable of the weekday it `follows`;
//! - every other date runs its own weekday's timetable (weekends included: a series whose
//!   weekday is Saturday meets on Saturdays; Chinese schools simply have no such series).
//!
//! A *school day* ([`Term::school_day`]) is a date inside the term, not a holiday, and either a
//! make-up day or Monday to Friday: the only dates a lesson may be moved to.
//!
//! A [`BellSchedule`] lists one school's periods in local time (Asia/Shanghai); call
//! [`BellSchedule::validate`] when storing one. [`local_to_utc`] turns a local date and time into
//! UTC; China has used UTC+8 without daylight saving since 1991, but the conversion still goes
//! through the tz database so it stays correct for any date chrono-tz knows.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{ScheduleError, SchoolId, TermId};

/// The time zone every school-local time is in.
pub const ZONE: Tz = chrono_tz::Asia::Shanghai;

/// The longest term accepted, in days (a whole school year is about 320). Longer terms are
/// rejected as typos, and the bound keeps a whole-term expansion small.
pub const MAX_TERM_DAYS: i64 = 400;

/// A term (学期): its dates and the days that break the weekly rhythm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The term.
    pub id: TermId,
    /// First day with lessons.
    pub start: NaiveDate,
    /// Last day with lessons (inclusive).
    pub end: NaiveDate,
    /// Holidays and make-up days, in any order, each date at most once, all inside the term.
    pub days: Vec<TermDay>,
}

/// One date that breaks the weekly rhythm (table `term_days`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermDay {
    /// The date.
    pub date: NaiveDate,
    /// What happens on it.
    #[serde(flatten)]
    pub kind: TermDayKind,
}

/// What a special date is. In JSON: `{"kind":"holiday"}` or `{"kind":"makeup","follows":"Fri"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TermDayKind {
    /// No lessons (放假).
    Holiday,
    /// A make-up working day (调休上班) that runs the timetable of `follows`.
    Makeup {
        /// The weekday whose timetable runs.
        follows: Weekday,
    },
}

/// Why a date is not a school day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotSchoolDay {
    /// Before the term's first day or after its last.
    OutsideTerm,
    /// A holiday of the term.
    Holiday,
    /// A Saturday or Sunday that is not a make-up day.
    Weekend,
}

impl fmt::Display for NotSchoolDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutsideTerm => "outside the term",
            Self::Holiday => "a holiday",
            Self::Weekend => "a weekend day that is not a make-up day",
        })
    }
}

impl Term {
    /// Checks the term on its own: it does not end before it starts, is at most
    /// [`MAX_TERM_DAYS`] long, and lists each special day once, inside the term.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        TermIndex::new(self).map(|_| ())
    }

    /// The weekday whose timetable runs on `date`, or `None` if no lessons are held (outside the
    /// term, or a holiday). Does not validate the term.
    pub fn effective_weekday(&self, date: NaiveDate) -> Option<Weekday> {
        let special = self.days.iter().find(|d| d.date == date).map(|d| d.kind);
        effective_weekday(self, special, date)
    }

    /// The weekday whose timetable runs on `date` if it is a school day (see the module doc),
    /// or why it is not one. Does not validate the term.
    pub fn school_day(&self, date: NaiveDate) -> Result<Weekday, NotSchoolDay> {
        let special = self.days.iter().find(|d| d.date == date).map(|d| d.kind);
        school_day(self, special, date)
    }
}

fn effective_weekday(
    term: &Term,
    special: Option<TermDayKind>,
    date: NaiveDate,
) -> Option<Weekday> {
    if date < term.start || date > term.end {
        return None;
    }
    match special {
        Some(TermDayKind::Holiday) => None,
        Some(TermDayKind::Makeup { follows }) => Some(follows),
        None => Some(date.weekday()),
    }
}

fn school_day(
    term: &Term,
    special: Option<TermDayKind>,
    date: NaiveDate,
) -> Result<Weekday, NotSchoolDay> {
    if date < term.start || date > term.end {
        return Err(NotSchoolDay::OutsideTerm);
    }
    match special {
        Some(TermDayKind::Holiday) => Err(NotSchoolDay::Holiday),
        Some(TermDayKind::Makeup { follows }) => Ok(follows),
        None => match date.weekday() {
            Weekday::Sat | Weekday::Sun => Err(NotSchoolDay::Weekend),
            weekday => Ok(weekday),
        },
    }
}

/// A validated term with its special days indexed by date, for [`expand`](super::expand()).
#[derive(Debug)]
pub(crate) struct TermIndex<'a> {
    pub(crate) term: &'a Term,
    special: HashMap<NaiveDate, TermDayKind>,
}

impl<'a> TermIndex<'a> {
    /// Validates `term` (see [`Term::validate`]) and indexes its special days.
    pub(crate) fn new(term: &'a Term) -> Result<Self, ScheduleError> {
        if term.end < term.start {
            return Err(ScheduleError::TermReversed {
                term: term.id.clone(),
                start: term.start,
                end: term.end,
            });
        }
        let days = (term.end - term.start).num_days() + 1;
        if days > MAX_TERM_DAYS {
            return Err(ScheduleError::TermTooLong {
                term: term.id.clone(),
                start: term.start,
                end: term.end,
                days,
                max: MAX_TERM_DAYS,
            });
        }
        let mut special = HashMap::with_capacity(term.days.len());
        for day in &term.days {
            if day.date < term.start || day.date > term.end {
                return Err(ScheduleError::TermDayOutsideTerm {
                    term: term.id.clone(),
                    date: day.date,
                    start: term.start,
                    end: term.end,
                });
            }
            if special.insert(day.date, day.kind).is_some() {
                return Err(ScheduleError::TermDayRepeated {
                    term: term.id.clone(),
                    date: day.date,
                });
            }
        }
        Ok(Self { term, special })
    }

    pub(crate) fn effective_weekday(&self, date: NaiveDate) -> Option<Weekday> {
        effective_weekday(self.term, self.special.get(&date).copied(), date)
    }

    pub(crate) fn school_day(&self, date: NaiveDate) -> Result<Weekday, NotSchoolDay> {
        school_day(self.term, self.special.get(&date).copied(), date)
    }
}

/// One school's bell schedule (作息时间, table `bell_periods`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BellSchedule {
    /// The school.
    pub school: SchoolId,
    /// Its periods, in ascending order of `period` and of time.
    pub periods: Vec<BellPeriod>,
}

/// One period (节次) of a school day, in school-local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BellPeriod {
    /// The period number, from 1.
    pub period: u8,
    /// When it starts (local time).
    pub start: NaiveTime,
    /// When it ends (local time), after `start`.
    pub end: NaiveTime,
}

impl BellSchedule {
    /// Checks that periods are numbered from 1, listed once each in ascending order, each ends
    /// after it starts, and none starts before the previous one ends (back-to-back is fine).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let school = || self.school.clone();
        let mut previous: Option<&BellPeriod> = None;
        for p in &self.periods {
            if p.period == 0 {
                return Err(ScheduleError::InvalidPeriodNumber {
                    school: school(),
                    period: p.period,
                });
            }
            if p.start >= p.end {
                return Err(ScheduleError::EmptyPeriod {
                    school: school(),
                    period: p.period,
                    start: p.start,
                    end: p.end,
                });
            }
            if let Some(prev) = previous {
                if p.period <= prev.period {
                    return Err(ScheduleError::PeriodsOutOfOrder {
                        school: school(),
                        previous: prev.period,
                        period: p.period,
                    });
                }
                if p.start < prev.end {
                    return Err(ScheduleError::PeriodsOverlap {
                        school: school(),
                        previous: prev.period,
                        previous_end: prev.end,
                        period: p.period,
                        start: p.start,
                    });
                }
            }
            previous = Some(p);
        }
        Ok(())
    }

    /// The period numbered `period`, if the school has one.
    pub fn period(&self, period: u8) -> Option<&BellPeriod> {
        self.periods.iter().find(|p| p.period == period)
    }
}

/// The instant at which it is `time` on `date` in Asia/Shanghai. An ambiguous local time (a
/// clock set back; none since 1991) takes the earlier instant; a skipped one is an error.
pub fn local_to_utc(date: NaiveDate, time: NaiveTime) -> Result<DateTime<Utc>, ScheduleError> {
    match ZONE.from_local_datetime(&date.and_time(time)) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.with_timezone(&Utc)),
        LocalResult::None => Err(ScheduleError::NoSuchLocalTime { date, time }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fixtures::{autumn_2026, d, t};

    #[test]
    fn national_day_and_mid_autumn_have_no_lessons() {
        let term = autumn_2026();
        assert_eq!(term.validate(), Ok(()));
        for day in [
            "2026-09-25",
            "2026-10-01",
            "2026-10-04",
            "2026-10-07",
            "2027-01-01",
        ] {
            assert_eq!(term.effective_weekday(d(day)), None, "{day}");
            assert_eq!(term.school_day(d(day)), Err(NotSchoolDay::Holiday), "{day}");
        }
    }

    #[test]
    fn makeup_days_follow_their_weekday() {
        let term = autumn_2026();
        // Sunday 2026-09-20 runs Monday's timetable, Saturday 2026-10-10 runs Friday's.
        assert_eq!(term.effective_weekday(d("2026-09-20")), Some(Weekday::Mon));
        assert_eq!(term.effective_weekday(d("2026-10-10")), Some(Weekday::Fri));
        assert_eq!(term.school_day(d("2026-10-10")), Ok(Weekday::Fri));
        // An ordinary Thursday and an ordinary Sunday.
        assert_eq!(term.effective_weekday(d("2026-10-08")), Some(Weekday::Thu));
        assert_eq!(term.effective_weekday(d("2026-10-11")), Some(Weekday::Sun));
        assert_eq!(term.school_day(d("2026-10-11")), Err(NotSchoolDay::Weekend));
    }

    #[test]
    fn dates_outside_the_term_have_no_lessons() {
        let term = autumn_2026();
        assert_eq!(term.effective_weekday(d("2026-08-31")), None);
        assert_eq!(term.effective_weekday(d("2027-01-23")), None);
        assert_eq!(
            term.school_day(d("2026-08-31")),
            Err(NotSchoolDay::OutsideTerm)
        );
        // The first and last days are inside (inclusive end).
        assert_eq!(term.effective_weekday(d("2026-09-01")), Some(Weekday::Tue));
        assert_eq!(term.effective_weekday(d("2027-01-22")), Some(Weekday::Fri));
    }

    #[test]
    fn bad_terms_are_typed_errors() {
        let mut term = autumn_2026();
        term.end = d("2026-08-01");
        assert!(matches!(
            term.validate(),
            Err(ScheduleError::TermReversed { .. })
        ));

        let mut term = autumn_2026();
        term.end = d("2062-01-22");
        assert!(matches!(
            term.validate(),
            Err(ScheduleError::TermTooLong {
                max: MAX_TERM_DAYS,
                ..
            })
        ));

        let mut term = autumn_2026();
        term.days.push(TermDay {
            date: d("2027-02-10"),
            kind: TermDayKind::Holiday,
        });
        assert_eq!(
            term.validate(),
            Err(ScheduleError::TermDayOutsideTerm {
                term: term.id.clone(),
                date: d("2027-02-10"),
                start: d("2026-09-01"),
                end: d("2027-01-22"),
            })
        );

        let mut term = autumn_2026();
        term.days.push(TermDay {
            date: d("2026-10-10"),
            kind: TermDayKind::Holiday,
        });
        assert_eq!(
            term.validate(),
            Err(ScheduleError::TermDayRepeated {
                term: term.id.clone(),
                date: d("2026-10-10"),
            })
        );
    }

    #[test]
    fn a_one_day_term_and_the_calendar_limits_do_not_panic() {
        let term = Term {
            id: TermId::from("term_edge"),
            start: NaiveDate::MAX,
            end: NaiveDate::MAX,
            days: vec![],
        };
        assert_eq!(term.validate(), Ok(()));
        assert!(term.effective_weekday(NaiveDate::MAX).is_some());
        assert_eq!(term.effective_weekday(NaiveDate::MIN), None);
    }

    fn bells(periods: &[(u8, &str, &str)]) -> BellSchedule {
        BellSchedule {
            school: SchoolId::from("sch_x"),
            periods: periods
                .iter()
                .map(|&(period, start, end)| BellPeriod {
                    period,
                    start: t(start),
                    end: t(end),
                })
                .collect(),
        }
    }

    #[test]
    fn bell_schedules_validate() {
        let ok = bells(&[
            (1, "08:00", "08:40"),
            (2, "08:50", "09:30"),
            (3, "09:30", "10:10"),
        ]);
        assert_eq!(ok.validate(), Ok(()), "back-to-back periods are allowed");
        assert_eq!(ok.period(2).map(|p| p.start), Some(t("08:50")));
        assert_eq!(ok.period(0), None);
        assert_eq!(ok.period(255), None);
        assert_eq!(bells(&[]).validate(), Ok(()));

        let school = SchoolId::from("sch_x");
        assert_eq!(
            bells(&[(0, "07:30", "07:50")]).validate(),
            Err(ScheduleError::InvalidPeriodNumber {
                school: school.clone(),
                period: 0
            })
        );
        assert_eq!(
            bells(&[(2, "08:50", "09:30"), (1, "08:00", "08:40")]).validate(),
            Err(ScheduleError::PeriodsOutOfOrder {
                school: school.clone(),
                previous: 2,
                period: 1
            })
        );
        assert_eq!(
            bells(&[(1, "08:00", "08:40"), (1, "08:50", "09:30")]).validate(),
            Err(ScheduleError::PeriodsOutOfOrder {
                school: school.clone(),
                previous: 1,
                period: 1
            })
        );
        assert_eq!(
            bells(&[(1, "08:40", "08:40")]).validate(),
            Err(ScheduleError::EmptyPeriod {
                school: school.clone(),
                period: 1,
                start: t("08:40"),
                end: t("08:40"),
            })
        );
        assert_eq!(
            bells(&[(1, "08:00", "08:45"), (2, "08:40", "09:20")]).validate(),
            Err(ScheduleError::PeriodsOverlap {
                school,
                previous: 1,
                previous_end: t("08:45"),
                period: 2,
                start: t("08:40"),
            })
        );
    }

    #[test]
    fn shanghai_morning_is_utc_midnight() {
        let start = local_to_utc(d("2026-10-12"), t("08:00")).unwrap();
        let end = local_to_utc(d("2026-10-12"), t("08:40")).unwrap();
        assert_eq!(start.to_rfc3339(), "2026-10-12T00:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-10-12T00:40:00+00:00");
        // Early morning local time is the previous day in UTC.
        let early = local_to_utc(d("2026-10-12"), t("07:30")).unwrap();
        assert_eq!(early.to_rfc3339(), "2026-10-11T23:30:00+00:00");
    }

    #[test]
    fn calendar_limits_are_errors_not_panics() {
        // Midnight on the first representable date has no UTC instant.
        assert!(local_to_utc(NaiveDate::MIN, t("00:10")).is_err());
        assert!(local_to_utc(NaiveDate::MAX, t("08:00")).is_ok());
    }

    #[test]
    fn term_days_in_json() {
        let json = r#"{"id":"term_1","start":"2026-09-01","end":"2027-01-22","days":[
            {"date":"2026-10-01","kind":"holiday"},
            {"date":"2026-10-10","kind":"makeup","follows":"Fri"}]}"#;
        let term: Term = serde_json::from_str(json).unwrap();
        assert_eq!(term.days[0].kind, TermDayKind::Holiday);
        assert_eq!(
            term.days[1].kind,
            TermDayKind::Makeup {
                follows: Weekday::Fri
            }
        );
        let back = serde_json::to_value(&term.days[1]).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"date":"2026-10-10","kind":"makeup","follows":"Fri"})
        );
    }
}
