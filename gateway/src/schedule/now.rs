//! "What is on now, and what is next" for one classroom or one teacher: the answer behind a
//! classroom's start screen and the join button.
//!
//! Drive it with [`now_and_next()`] on occurrences from [`expand`](super::expand()) for a window
//! that covers `now` (e.g. today and the next week), and the current time read by the caller.
//! Intervals are half-open: at exactly a lesson's start it is current; at exactly its end it is
//! not, and the next lesson (if it starts then) is current instead.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::expand::Occurrence;
use super::{ClassroomId, UserId};

/// Whose timetable to look at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Who {
    /// A classroom, taking part as lead or receiving classroom.
    Classroom(ClassroomId),
    /// A teacher, as the lead teacher.
    Teacher(UserId),
}

impl Who {
    /// Whether `who` takes part in `occurrence`.
    pub fn takes_part(&self, occurrence: &Occurrence) -> bool {
        match self {
            Who::Classroom(room) => occurrence.role_of(room).is_some(),
            Who::Teacher(user) => occurrence.teacher == *user,
        }
    }
}

/// The lesson in progress and the next one to start, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NowNext<'a> {
    /// The lesson with `start <= now < end`, if any. Should there be several (a conflict), the
    /// one that started first.
    pub current: Option<&'a Occurrence>,
    /// The first lesson with `start > now`, if any within the occurrences given.
    pub next: Option<&'a Occurrence>,
}

/// The current and next lesson of `who` at `now`, among `occurrences` in any order. Ties are
/// broken as in [`expand`](super::expand())'s order (end, series id, origin date).
pub fn now_and_next<'a>(
    occurrences: &'a [Occurrence],
    who: &Who,
    now: DateTime<Utc>,
) -> NowNext<'a> {
    let mut current: Option<&Occurrence> = None;
    let mut next: Option<&Occurrence> = None;
    let earlier = |o: &Occurrence, best: Option<&Occurrence>| {
        best.is_none_or(|b| o.order_key() < b.order_key())
    };
    for o in occurrences.iter().filter(|o| who.takes_part(o)) {
        if o.start <= now && now < o.end {
            if earlier(o, current) {
                current = Some(o);
            }
        } else if o.start > now && earlier(o, next) {
            next = Some(o);
        }
    }
    NowNext { current, next }
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;

    use super::*;
    use crate::schedule::expand::expand;
    use crate::schedule::fixtures::{SCHOOL_A, SCHOOL_B, autumn_2026, bells, d, series, utc};

    /// Monday 2026-10-12 for receiving classroom R: the paired lesson at A's period 1
    /// (08:00–08:40 = 00:00–00:40Z), then R's own lesson at B's period 2 (08:55–09:35 =
    /// 00:55–01:35Z); teacher 王 also teaches A's period 3 (09:40–10:20 = 01:40–02:20Z).
    fn monday() -> Vec<Occurrence> {
        let list = [
            series(
                "ser_paired",
                Weekday::Mon,
                1,
                SCHOOL_A,
                "cls_a1",
                &["cls_r"],
                "usr_wang",
            ),
            series(
                "ser_local",
                Weekday::Mon,
                2,
                SCHOOL_B,
                "cls_r",
                &[],
                "usr_li",
            ),
            series(
                "ser_late",
                Weekday::Mon,
                3,
                SCHOOL_A,
                "cls_a2",
                &[],
                "usr_wang",
            ),
        ];
        expand(
            &autumn_2026(),
            &bells(),
            &list,
            d("2026-10-12"),
            d("2026-10-12"),
        )
        .unwrap()
    }

    fn ids(n: NowNext<'_>) -> (Option<&str>, Option<&str>) {
        (
            n.current.map(|o| o.series.as_str()),
            n.next.map(|o| o.series.as_str()),
        )
    }

    #[test]
    fn boundaries_are_half_open() {
        let lessons = monday();
        let room = Who::Classroom("cls_r".into());
        let at = |s| ids(now_and_next(&lessons, &room, utc(s)));
        assert_eq!(at("2026-10-11T23:59:59Z"), (None, Some("ser_paired")));
        // Exactly at the start: current.
        assert_eq!(
            at("2026-10-12T00:00:00Z"),
            (Some("ser_paired"), Some("ser_local"))
        );
        assert_eq!(
            at("2026-10-12T00:39:59Z"),
            (Some("ser_paired"), Some("ser_local"))
        );
        // Exactly at the end: over.
        assert_eq!(at("2026-10-12T00:40:00Z"), (None, Some("ser_local")));
        assert_eq!(at("2026-10-12T00:55:00Z"), (Some("ser_local"), None));
        assert_eq!(at("2026-10-12T01:35:00Z"), (None, None));
    }

    #[test]
    fn teachers_and_lead_classrooms() {
        let lessons = monday();
        let wang = Who::Teacher("usr_wang".into());
        let at = |s| ids(now_and_next(&lessons, &wang, utc(s)));
        assert_eq!(
            at("2026-10-12T00:20:00Z"),
            (Some("ser_paired"), Some("ser_late"))
        );
        assert_eq!(at("2026-10-12T01:00:00Z"), (None, Some("ser_late")));
        let lead = Who::Classroom("cls_a2".into());
        let n = now_and_next(&lessons, &lead, utc("2026-10-12T01:40:00Z"));
        assert_eq!(ids(n), (Some("ser_late"), None));
        let nobody = Who::Classroom("cls_nowhere".into());
        assert_eq!(
            ids(now_and_next(&lessons, &nobody, utc("2026-10-12T00:20:00Z"))),
            (None, None)
        );
    }

    #[test]
    fn back_to_back_lessons_hand_over_at_the_boundary() {
        let mut lessons = monday();
        // Make R's own lesson start the instant the paired one ends.
        lessons[1].start = utc("2026-10-12T00:40:00Z");
        let room = Who::Classroom("cls_r".into());
        let n = now_and_next(&lessons, &room, utc("2026-10-12T00:40:00Z"));
        assert_eq!(ids(n), (Some("ser_local"), None));
    }

    #[test]
    fn input_order_does_not_matter_and_conflicts_pick_the_earliest() {
        let mut lessons = monday();
        lessons.reverse();
        let room = Who::Classroom("cls_r".into());
        let n = now_and_next(&lessons, &room, utc("2026-10-12T00:10:00Z"));
        assert_eq!(ids(n), (Some("ser_paired"), Some("ser_local")));
        // Overlapping lessons: the one that started first is current.
        lessons[1].start = utc("2026-10-12T00:05:00Z"); // ser_local, now 00:05–01:35Z
        let n = now_and_next(&lessons, &room, utc("2026-10-12T00:10:00Z"));
        assert_eq!(ids(n), (Some("ser_paired"), None));
        assert!(
            now_and_next(&[], &room, utc("2026-10-12T00:10:00Z"))
                .current
                .is_none()
        );
    }
}
