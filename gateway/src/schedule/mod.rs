//! The timetable engine (课表): pure functions from stored timetable data to lessons in absolute
//! time, their conflicts, "what is on now", and iCalendar feeds.
//!
//! No I/O, no database, no clock: the store loads plain data ([`Term`], [`BellSchedule`],
//! [`Series`]), the caller passes the current time where one is needed, and everything here is a
//! function of its arguments. The rules are those of `docs/gateway-design.md` ("Scheduling rules").
//!
//! # Layout
//! - [`calendar`]: terms with holidays and make-up days (调休), bell schedules (作息时间), and the
//!   one place a school-local time becomes UTC (Asia/Shanghai).
//! - [`mod@expand`]: weekly [`Series`] with their [`Exception`]s → [`Occurrence`]s in a
//!   date window.
//! - [`conflict`]: overlapping occurrences that share a classroom or a teacher, each explained in
//!   a sentence ([`Lang::Zh`] or [`Lang::En`]).
//! - [`now`]: the lesson a classroom or teacher is in now, and the next one.
//! - [`ical`]: an RFC 5545 feed of occurrences, and its strong ETag.
//!
//! # How to drive it
//! ```text
//! let lessons = expand(&term, &bells, &series, monday, sunday)?;   // sorted by start
//! let clashes = conflicts(&lessons);                                // sorted, deduplicated
//! let text    = clashes[0].explain(&names, Lang::Zh);
//! let on_air  = now_and_next(&lessons, &Who::Classroom(id), now);
//! let body    = ical::calendar("初二数学", &lessons, last_modified, |o| describe(o));
//! let tag     = ical::etag(&body);
//! ```
//!
//! # Invariants the caller can rely on
//! - [`expand()`] fails on the data, never on the window: the term, every
//!   exception of every series given, and the lead school's bells for every period a series or a
//!   move names are checked whatever `from..=to` is. So the store can run
//!   `expand(term, bells, series, term.start, term.end)` inside the transaction of any write to
//!   terms, bells, series or exceptions, and reject the write on error; later reads then never
//!   fail.
//! - An occurrence is identified by `(series, origin_date())`: a moved lesson keeps the identity
//!   of the date it was moved from, so the iCal `UID` stays the same and calendar clients show a
//!   move, not a delete and an add.
//! - Output order is deterministic: equal inputs give byte-equal feeds and equal ETags.

pub mod calendar;
pub mod conflict;
pub mod expand;
pub mod ical;
pub mod now;

#[cfg(test)]
mod fixtures;

use std::fmt;

use chrono::{NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

pub use calendar::{
    BellPeriod, BellSchedule, MAX_TERM_DAYS, NotSchoolDay, Term, TermDay, TermDayKind,
};
pub use conflict::{Conflict, Interval, Lang, NameTable, Names, Resource, Role, conflicts};
pub use expand::{Exception, Occurrence, Series, expand};
pub use ical::EventText;
pub use now::{NowNext, Who, now_and_next};

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

id_newtype!(
    /// A weekly class series (`ser_…`, table `class_series`).
    SeriesId
);
id_newtype!(
    /// A classroom (`cls_…`): a lead classroom (主讲课堂), a receiving classroom (接收课堂) or a
    /// recording classroom (录播教室).
    ClassroomId
);
id_newtype!(
    /// A school (`sch_…`); bell schedules belong to schools.
    SchoolId
);
id_newtype!(
    /// A user (`usr_…`); here always the lead teacher (主讲教师) of a series.
    UserId
);
id_newtype!(
    /// A term (学期, `terms.id`).
    TermId
);

/// Everything that can be wrong with timetable data. Each variant names the term, school,
/// series, period and dates involved, so the message can be shown to the admin who must fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The term's last day is before its first.
    #[error("term {term} ends on {end}, before it starts on {start}")]
    TermReversed {
        /// The term.
        term: TermId,
        /// Its first day.
        start: NaiveDate,
        /// Its last day (inclusive).
        end: NaiveDate,
    },
    /// The term is longer than [`MAX_TERM_DAYS`]; almost certainly a typo in a year.
    #[error("term {term} runs {days} days from {start} to {end}, more than the {max} a term may")]
    TermTooLong {
        /// The term.
        term: TermId,
        /// Its first day.
        start: NaiveDate,
        /// Its last day (inclusive).
        end: NaiveDate,
        /// Its length in days.
        days: i64,
        /// [`MAX_TERM_DAYS`].
        max: i64,
    },
    /// A holiday or make-up day lies outside the term.
    #[error(
        "term {term}: the holiday or make-up day {date} is outside the term ({start} to {end})"
    )]
    TermDayOutsideTerm {
        /// The term.
        term: TermId,
        /// The special day.
        date: NaiveDate,
        /// The term's first day.
        start: NaiveDate,
        /// The term's last day.
        end: NaiveDate,
    },
    /// A date is listed twice among the term's holidays and make-up days.
    #[error("term {term}: {date} is listed more than once among holidays and make-up days")]
    TermDayRepeated {
        /// The term.
        term: TermId,
        /// The repeated date.
        date: NaiveDate,
    },
    /// The requested window ends before it starts.
    #[error("the date window {from} to {to} ends before it starts")]
    WindowReversed {
        /// First day asked for.
        from: NaiveDate,
        /// Last day asked for (inclusive).
        to: NaiveDate,
    },
    /// A bell schedule has a period numbered 0 (periods count from 1).
    #[error("school {school}: period {period} is not a valid period number (periods count from 1)")]
    InvalidPeriodNumber {
        /// The school.
        school: SchoolId,
        /// The bad number.
        period: u8,
    },
    /// A bell schedule's periods are not in strictly ascending order (or one is repeated).
    #[error(
        "school {school}: period {period} is listed after period {previous}; \
         list each period once, in order"
    )]
    PeriodsOutOfOrder {
        /// The school.
        school: SchoolId,
        /// The period listed before.
        previous: u8,
        /// The period out of place.
        period: u8,
    },
    /// A bell period does not end after it starts.
    #[error("school {school}: period {period} ends at {end}, not after it starts at {start}")]
    EmptyPeriod {
        /// The school.
        school: SchoolId,
        /// The period.
        period: u8,
        /// Its start.
        start: NaiveTime,
        /// Its end.
        end: NaiveTime,
    },
    /// A bell period starts before the previous one ends.
    #[error(
        "school {school}: period {period} starts at {start}, \
         before period {previous} ends at {previous_end}"
    )]
    PeriodsOverlap {
        /// The school.
        school: SchoolId,
        /// The earlier period.
        previous: u8,
        /// When the earlier period ends.
        previous_end: NaiveTime,
        /// The later period.
        period: u8,
        /// When the later period starts.
        start: NaiveTime,
    },
    /// A series' lead school has no bell schedule at all.
    #[error("series {series}: its lead school {school} has no bell schedule")]
    NoBellSchedule {
        /// The series.
        series: SeriesId,
        /// Its lead school.
        school: SchoolId,
    },
    /// A series' weekly period is not in its lead school's bell schedule.
    #[error("series {series}: its lead school {school} has no period {period}")]
    MissingBellPeriod {
        /// The series.
        series: SeriesId,
        /// Its lead school.
        school: SchoolId,
        /// The period the series names.
        period: u8,
    },
    /// A move names a period that the lead school's bell schedule does not have.
    #[error(
        "series {series}: the lesson of {date} is moved to period {new_period} on {new_date}, \
         but its lead school {school} has no period {new_period}"
    )]
    MoveToMissingPeriod {
        /// The series.
        series: SeriesId,
        /// The date moved from.
        date: NaiveDate,
        /// The date moved to.
        new_date: NaiveDate,
        /// The lead school.
        school: SchoolId,
        /// The period moved to.
        new_period: u8,
    },
    /// A series handed to [`expand()`] belongs to another term.
    #[error("series {series} belongs to term {series_term}, not to term {term}")]
    SeriesInOtherTerm {
        /// The series.
        series: SeriesId,
        /// The term it belongs to.
        series_term: TermId,
        /// The term being expanded.
        term: TermId,
    },
    /// A classroom appears twice in a series: as lead and receiver, or as receiver twice.
    #[error(
        "series {series}: classroom {classroom} is listed twice \
         (a room must never receive its own lesson)"
    )]
    ReceiverRepeated {
        /// The series.
        series: SeriesId,
        /// The repeated classroom.
        classroom: ClassroomId,
    },
    /// Two exceptions of one series name the same date.
    #[error("series {series} has more than one exception for {date}")]
    ExceptionRepeated {
        /// The series.
        series: SeriesId,
        /// The date.
        date: NaiveDate,
    },
    /// A move names a date on which the series has no lesson, so there is nothing to move.
    #[error("series {series} has no lesson on {date}, so there is nothing to move")]
    ExceptionNotScheduled {
        /// The series.
        series: SeriesId,
        /// The date.
        date: NaiveDate,
    },
    /// A move targets a day without lessons (outside the term, a holiday, or a weekend that is
    /// not a make-up day).
    #[error("series {series}: the lesson of {date} cannot move to {new_date}, which is {reason}")]
    MoveOntoNonSchoolDay {
        /// The series.
        series: SeriesId,
        /// The date moved from.
        date: NaiveDate,
        /// The date moved to.
        new_date: NaiveDate,
        /// Why `new_date` is not a school day.
        reason: NotSchoolDay,
    },
    /// A move lands on a date and period where the same series already has a lesson.
    #[error(
        "series {series}: the lesson of {date} is moved to period {new_period} on {new_date}, \
         where the series already has a lesson"
    )]
    MoveCollides {
        /// The series.
        series: SeriesId,
        /// The date moved from.
        date: NaiveDate,
        /// The date moved to.
        new_date: NaiveDate,
        /// The period moved to.
        new_period: u8,
    },
    /// A school-local time does not exist in Asia/Shanghai (only possible for dates far outside
    /// any real term, e.g. the limits of the calendar).
    #[error("{date} {time} is not a valid time in Asia/Shanghai")]
    NoSuchLocalTime {
        /// The date.
        date: NaiveDate,
        /// The time of day.
        time: NaiveTime,
    },
}

/// The weekday of the store's `follows_weekday` / `weekday` columns: 1 = Monday … 7 = Sunday.
/// `None` for any other number. The inverse is [`Weekday::number_from_monday`].
pub fn weekday_from_iso(n: u8) -> Option<Weekday> {
    match n {
        1 => Some(Weekday::Mon),
        2 => Some(Weekday::Tue),
        3 => Some(Weekday::Wed),
        4 => Some(Weekday::Thu),
        5 => Some(Weekday::Fri),
        6 => Some(Weekday::Sat),
        7 => Some(Weekday::Sun),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_weekday_numbers_round_trip() {
        for n in 1..=7u8 {
            let day = weekday_from_iso(n).expect("1..=7 are weekdays");
            assert_eq!(day.number_from_monday(), u32::from(n));
        }
        assert_eq!(weekday_from_iso(0), None);
        assert_eq!(weekday_from_iso(8), None);
        assert_eq!(weekday_from_iso(255), None);
    }

    #[test]
    fn ids_are_transparent_in_json() {
        let id = SeriesId::from("ser_ABC");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"ser_ABC\"");
        let back: SeriesId = serde_json::from_str("\"ser_ABC\"").unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string(), "ser_ABC");
    }
}
