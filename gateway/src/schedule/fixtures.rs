//! Test data shared by the schedule tests: the 2026 autumn term, three schools' bells, and a
//! series builder.
//!
//! The term is modelled on the 2026 holiday arrangement: 中秋节 Friday 2026-09-25 off; 国庆节
//! Thursday 2026-10-01 to Wednesday 2026-10-07 off, with Sunday 2026-09-20 and Saturday
//! 2026-10-10 worked (调休上班); 元旦 Friday 2027-01-01 off. Which weekday's timetable a make-up
//! day runs is each district's choice; here 09-20 runs Monday's and 10-10 runs Friday's.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc, Weekday};

use super::{
    BellPeriod, BellSchedule, ClassroomId, SchoolId, Series, SeriesId, Term, TermDay, TermDayKind,
    TermId, UserId,
};

pub(crate) fn d(s: &str) -> NaiveDate {
    s.parse().expect("test dates are YYYY-MM-DD")
}

pub(crate) fn t(s: &str) -> NaiveTime {
    NaiveTime::parse_from_str(s, "%H:%M").expect("test times are HH:MM")
}

pub(crate) fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("test instants are RFC 3339")
}

pub(crate) const TERM: &str = "term_2026a";
/// Urban lead school A: 城关一中.
pub(crate) const SCHOOL_A: &str = "sch_a";
/// Rural school B: 三河小学, whose own bells are five minutes later than A's.
pub(crate) const SCHOOL_B: &str = "sch_b";
/// Teaching point C: back-to-back periods with no break.
pub(crate) const SCHOOL_C: &str = "sch_c";

pub(crate) fn autumn_2026() -> Term {
    let holiday = |s| TermDay {
        date: d(s),
        kind: TermDayKind::Holiday,
    };
    let makeup = |s, follows| TermDay {
        date: d(s),
        kind: TermDayKind::Makeup { follows },
    };
    Term {
        id: TermId::from(TERM),
        start: d("2026-09-01"),
        end: d("2027-01-22"),
        days: vec![
            makeup("2026-09-20", Weekday::Mon),
            holiday("2026-09-25"),
            holiday("2026-10-01"),
            holiday("2026-10-02"),
            holiday("2026-10-03"),
            holiday("2026-10-04"),
            holiday("2026-10-05"),
            holiday("2026-10-06"),
            holiday("2026-10-07"),
            makeup("2026-10-10", Weekday::Fri),
            holiday("2027-01-01"),
        ],
    }
}

fn schedule(school: &str, periods: &[(&str, &str)]) -> BellSchedule {
    BellSchedule {
        school: SchoolId::from(school),
        periods: periods
            .iter()
            .zip(1u8..)
            .map(|(&(start, end), period)| BellPeriod {
                period,
                start: t(start),
                end: t(end),
            })
            .collect(),
    }
}

pub(crate) fn bells() -> HashMap<SchoolId, BellSchedule> {
    [
        schedule(
            SCHOOL_A,
            &[
                ("08:00", "08:40"),
                ("08:50", "09:30"),
                ("09:40", "10:20"),
                ("10:30", "11:10"),
            ],
        ),
        schedule(
            SCHOOL_B,
            &[("08:05", "08:45"), ("08:55", "09:35"), ("09:45", "10:25")],
        ),
        schedule(
            SCHOOL_C,
            &[("08:00", "08:45"), ("08:45", "09:30"), ("09:30", "10:15")],
        ),
    ]
    .into_iter()
    .map(|b| (b.school.clone(), b))
    .collect()
}

/// A series in [`TERM`] with no exceptions; the subject is the id's display in tests.
pub(crate) fn series(
    id: &str,
    weekday: Weekday,
    period: u8,
    lead_school: &str,
    lead_classroom: &str,
    receivers: &[&str],
    teacher: &str,
) -> Series {
    Series {
        id: SeriesId::from(id),
        term: TermId::from(TERM),
        weekday,
        period,
        lead_school: SchoolId::from(lead_school),
        lead_classroom: ClassroomId::from(lead_classroom),
        receivers: receivers.iter().map(|&r| ClassroomId::from(r)).collect(),
        teacher: UserId::from(teacher),
        subject: format!("subject of {id}"),
        exceptions: vec![],
    }
}
