//! Conflicts (排课冲突): two lessons that overlap in absolute time and need the same classroom
//! (as lead or receiving classroom, in any combination) or the same teacher.
//!
//! Drive it with [`conflicts()`] on the output of [`expand`](super::expand()) for any window,
//! then show each [`Conflict`] with [`Conflict::explain`], which takes display names from a
//! [`Names`] (e.g. a [`NameTable`] the API fills from the store) and a [`Lang`].
//!
//! Intervals are half-open: a lesson ending at 09:30 and one starting at 09:30 do not overlap.
//! Because receivers follow the lead school's bells, a rural classroom can clash with its own
//! school's lesson five minutes apart: that is exactly what this module is for.
//!
//! Cost: occurrences are grouped by resource and each group is swept in start order, so the
//! work is O(n log n) in the number of (occurrence, resource) pairs plus the conflicts found; a
//! district's week of thousands of lessons is milliseconds.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::calendar::ZONE;
use super::expand::Occurrence;
use super::{ClassroomId, SeriesId, UserId};

/// What two lessons both need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Resource {
    /// A classroom, lead or receiving.
    Classroom(ClassroomId),
    /// A teacher.
    Teacher(UserId),
}

/// How a lesson uses the resource in conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The classroom is the lesson's lead classroom (主讲课堂).
    LeadClassroom,
    /// The classroom is one of the lesson's receiving classrooms (接收课堂).
    ReceivingClassroom,
    /// The person is the lesson's teacher (主讲教师).
    Teacher,
}

/// A half-open interval `start..end` in absolute time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Interval {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

impl Interval {
    /// Whether the two share an instant (touching ends do not).
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// School-local wall-clock times, `HH:MM–HH:MM` (Asia/Shanghai).
    pub fn local(&self) -> String {
        format!(
            "{}–{}",
            self.start.with_timezone(&ZONE).format("%H:%M"),
            self.end.with_timezone(&ZONE).format("%H:%M")
        )
    }
}

/// Two lessons that overlap and share `resource`. `a` starts no later than `b` (ties broken
/// by end, then series id). At most one conflict is reported per pair of series, date and
/// resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The earlier lesson's series.
    pub a: SeriesId,
    /// The later lesson's series.
    pub b: SeriesId,
    /// The school-local date (of `a`; both lessons are on it).
    pub date: NaiveDate,
    /// What both need.
    pub resource: Resource,
    /// How `a` uses it.
    pub a_role: Role,
    /// How `b` uses it.
    pub b_role: Role,
    /// When `a` takes place.
    pub a_interval: Interval,
    /// When `b` takes place.
    pub b_interval: Interval,
}

/// The language of an explanation: Simplified Chinese first, English second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    /// 简体中文.
    Zh,
    /// English.
    En,
}

/// Display names for explanations. Implementations should fall back to something readable
/// (the id) for unknown ids rather than fail.
pub trait Names {
    /// A series' name, e.g. "初二数学（城关一中 → 三河小学）".
    fn series(&self, id: &SeriesId) -> String;
    /// A classroom's name, e.g. "三河小学四(1)班".
    fn classroom(&self, id: &ClassroomId) -> String;
    /// A person's display name, e.g. "王芳".
    fn user(&self, id: &UserId) -> String;
}

/// A [`Names`] from maps; an id without an entry is shown as itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameTable {
    /// Series names.
    pub series: HashMap<SeriesId, String>,
    /// Classroom names.
    pub classrooms: HashMap<ClassroomId, String>,
    /// People's display names.
    pub users: HashMap<UserId, String>,
}

impl Names for NameTable {
    fn series(&self, id: &SeriesId) -> String {
        self.series
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn classroom(&self, id: &ClassroomId) -> String {
        self.classrooms
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn user(&self, id: &UserId) -> String {
        self.users
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

impl Conflict {
    /// One sentence for a person: the date, the shared classroom or teacher, both series with
    /// their local times and (for a classroom) the role the room plays in each.
    pub fn explain(&self, names: &dyn Names, lang: Lang) -> String {
        let (a, b) = (names.series(&self.a), names.series(&self.b));
        let (a_time, b_time) = (self.a_interval.local(), self.b_interval.local());
        let date = self.date;
        match (lang, &self.resource) {
            (Lang::Zh, Resource::Classroom(room)) => format!(
                "{}，教室「{}」被重复安排：「{a}」（{a_time}，{}）与「{b}」（{b_time}，{}）时间重叠。",
                zh_date(date),
                names.classroom(room),
                zh_role(self.a_role),
                zh_role(self.b_role),
            ),
            (Lang::Zh, Resource::Teacher(user)) => format!(
                "{}，教师「{}」被重复安排：「{a}」（{a_time}）与「{b}」（{b_time}）时间重叠。",
                zh_date(date),
                names.user(user),
            ),
            (Lang::En, Resource::Classroom(room)) => format!(
                "On {} {date}, classroom \"{}\" is booked twice: as the {} of \"{a}\" ({a_time}) \
                 and as the {} of \"{b}\" ({b_time}).",
                date.weekday(),
                names.classroom(room),
                en_role(self.a_role),
                en_role(self.b_role),
            ),
            (Lang::En, Resource::Teacher(user)) => format!(
                "On {} {date}, teacher \"{}\" is booked twice: teaching \"{a}\" ({a_time}) \
                 and \"{b}\" ({b_time}).",
                date.weekday(),
                names.user(user),
            ),
        }
    }

    fn order_key(
        &self,
    ) -> (
        NaiveDate,
        Interval,
        Interval,
        &SeriesId,
        &SeriesId,
        &Resource,
    ) {
        (
            self.date,
            self.a_interval,
            self.b_interval,
            &self.a,
            &self.b,
            &self.resource,
        )
    }
}

fn zh_date(date: NaiveDate) -> String {
    let weekday = match date.weekday() {
        Weekday::Mon => "星期一",
        Weekday::Tue => "星期二",
        Weekday::Wed => "星期三",
        Weekday::Thu => "星期四",
        Weekday::Fri => "星期五",
        Weekday::Sat => "星期六",
        Weekday::Sun => "星期日",
    };
    format!(
        "{}年{}月{}日（{weekday}）",
        date.year(),
        date.month(),
        date.day()
    )
}

fn zh_role(role: Role) -> &'static str {
    match role {
        Role::LeadClassroom => "主讲课堂",
        Role::ReceivingClassroom => "接收课堂",
        Role::Teacher => "主讲教师",
    }
}

fn en_role(role: Role) -> &'static str {
    match role {
        Role::LeadClassroom => "lead classroom",
        Role::ReceivingClassroom => "receiving classroom",
        Role::Teacher => "teacher",
    }
}

/// A resource borrowed from an occurrence, for grouping without cloning ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key<'a> {
    Classroom(&'a ClassroomId),
    Teacher(&'a UserId),
}

impl Key<'_> {
    fn to_resource(self) -> Resource {
        match self {
            Key::Classroom(id) => Resource::Classroom(id.clone()),
            Key::Teacher(id) => Resource::Teacher(id.clone()),
        }
    }
}

/// All conflicts among `occurrences` (any order), deduplicated to one per pair of series, date
/// and resource, sorted by date, then `a`'s and `b`'s intervals, series ids and resource.
///
/// The same lesson (same series and origin date) listed twice is one lesson, not a conflict;
/// occurrences whose end is not after their start occupy nothing and are ignored.
pub fn conflicts(occurrences: &[Occurrence]) -> Vec<Conflict> {
    let mut groups: HashMap<Key<'_>, Vec<(usize, Role)>> = HashMap::new();
    for (i, o) in occurrences.iter().enumerate() {
        if o.start >= o.end {
            continue;
        }
        groups
            .entry(Key::Teacher(&o.teacher))
            .or_default()
            .push((i, Role::Teacher));
        groups
            .entry(Key::Classroom(&o.lead_classroom))
            .or_default()
            .push((i, Role::LeadClassroom));
        for r in &o.receivers {
            // A room listed twice in one lesson pairs the lesson with itself, skipped below.
            groups
                .entry(Key::Classroom(r))
                .or_default()
                .push((i, Role::ReceivingClassroom));
        }
    }

    let mut seen: HashSet<(&SeriesId, &SeriesId, NaiveDate, Key<'_>)> = HashSet::new();
    let mut out = Vec::new();
    let mut active: Vec<(usize, Role)> = Vec::new();
    for (key, mut items) in groups {
        if items.len() < 2 {
            continue;
        }
        items.sort_by(|&(x, _), &(y, _)| {
            occurrences[x]
                .order_key()
                .cmp(&occurrences[y].order_key())
                .then(x.cmp(&y))
        });
        active.clear();
        for &(i, role) in &items {
            let b = &occurrences[i];
            // Everything active started no later than `b`; it overlaps `b` iff it ends after
            // `b` starts.
            active.retain(|&(j, _)| occurrences[j].end > b.start);
            for &(j, a_role) in &active {
                let a = &occurrences[j];
                if a.series == b.series && a.origin_date() == b.origin_date() {
                    continue;
                }
                let pair = if a.series <= b.series {
                    (&a.series, &b.series)
                } else {
                    (&b.series, &a.series)
                };
                if seen.insert((pair.0, pair.1, a.date, key)) {
                    out.push(Conflict {
                        a: a.series.clone(),
                        b: b.series.clone(),
                        date: a.date,
                        resource: key.to_resource(),
                        a_role,
                        b_role: role,
                        a_interval: a.interval(),
                        b_interval: b.interval(),
                    });
                }
            }
            active.push((i, role));
        }
    }
    out.sort_by(|x, y| x.order_key().cmp(&y.order_key()));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::schedule::expand::{Series, expand};
    use crate::schedule::fixtures::{
        SCHOOL_A, SCHOOL_B, SCHOOL_C, autumn_2026, bells, d, series, utc,
    };

    /// Paired series led from urban school A at A's period 2 (08:50–09:30), received in
    /// classroom R of rural school B.
    fn paired() -> Series {
        series(
            "ser_paired",
            Weekday::Mon,
            2,
            SCHOOL_A,
            "cls_a1",
            &["cls_r"],
            "usr_wang",
        )
    }

    /// R's own local lesson at B's period 2 (08:55–09:35).
    fn local() -> Series {
        series(
            "ser_local",
            Weekday::Mon,
            2,
            SCHOOL_B,
            "cls_r",
            &[],
            "usr_li",
        )
    }

    fn week(list: &[Series]) -> Vec<Occurrence> {
        expand(
            &autumn_2026(),
            &bells(),
            list,
            d("2026-10-12"),
            d("2026-10-16"),
        )
        .unwrap()
    }

    fn zh_names() -> NameTable {
        let mut n = NameTable::default();
        n.series.insert(
            "ser_paired".into(),
            "初二数学（城关一中 → 三河小学）".into(),
        );
        n.series.insert("ser_local".into(), "三河小学语文".into());
        n.series.insert("ser_other".into(), "初二物理".into());
        n.classrooms
            .insert("cls_r".into(), "三河小学四(1)班".into());
        n.users.insert("usr_wang".into(), "王芳".into());
        n
    }

    fn en_names() -> NameTable {
        let mut n = NameTable::default();
        n.series.insert(
            "ser_paired".into(),
            "Grade 8 Maths (Chengguan No. 1 → Sanhe)".into(),
        );
        n.series.insert("ser_local".into(), "Sanhe Chinese".into());
        n.series
            .insert("ser_other".into(), "Grade 8 Physics".into());
        n.classrooms
            .insert("cls_r".into(), "Sanhe Primary 4-1".into());
        n.users.insert("usr_wang".into(), "Wang Fang".into());
        n
    }

    #[test]
    fn receiving_classroom_clashes_with_its_own_schools_lesson_across_bells() {
        let found = conflicts(&week(&[local(), paired()]));
        assert_eq!(
            found,
            [Conflict {
                a: "ser_paired".into(),
                b: "ser_local".into(),
                date: d("2026-10-12"),
                resource: Resource::Classroom("cls_r".into()),
                a_role: Role::ReceivingClassroom,
                b_role: Role::LeadClassroom,
                a_interval: Interval {
                    start: utc("2026-10-12T00:50:00Z"),
                    end: utc("2026-10-12T01:30:00Z"),
                },
                b_interval: Interval {
                    start: utc("2026-10-12T00:55:00Z"),
                    end: utc("2026-10-12T01:35:00Z"),
                },
            }]
        );
        assert_eq!(
            found[0].explain(&zh_names(), Lang::Zh),
            "2026年10月12日（星期一），教室「三河小学四(1)班」被重复安排：\
             「初二数学（城关一中 → 三河小学）」（08:50–09:30，接收课堂）与\
             「三河小学语文」（08:55–09:35，主讲课堂）时间重叠。"
        );
        assert_eq!(
            found[0].explain(&en_names(), Lang::En),
            "On Mon 2026-10-12, classroom \"Sanhe Primary 4-1\" is booked twice: as the \
             receiving classroom of \"Grade 8 Maths (Chengguan No. 1 → Sanhe)\" (08:50–09:30) \
             and as the lead classroom of \"Sanhe Chinese\" (08:55–09:35)."
        );
        // Unknown names fall back to ids.
        assert!(
            found[0]
                .explain(&NameTable::default(), Lang::En)
                .contains("classroom \"cls_r\"")
        );
    }

    #[test]
    fn lessons_that_merely_touch_do_not_conflict() {
        // R2 is in teaching point C, whose periods are back to back: 08:45–09:30, 09:30–10:15.
        let paired = series(
            "ser_paired",
            Weekday::Mon,
            2,
            SCHOOL_A,
            "cls_a1",
            &["cls_c1"],
            "usr_wang",
        );
        let touching = series(
            "ser_local",
            Weekday::Mon,
            3,
            SCHOOL_C,
            "cls_c1",
            &[],
            "usr_zhao",
        );
        // A's 08:50–09:30 ends exactly when C's period 3 starts.
        assert_eq!(conflicts(&week(&[paired.clone(), touching])), []);
        // One period earlier (08:45–09:30) it overlaps.
        let overlapping = series(
            "ser_local",
            Weekday::Mon,
            2,
            SCHOOL_C,
            "cls_c1",
            &[],
            "usr_zhao",
        );
        assert_eq!(conflicts(&week(&[paired, overlapping])).len(), 1);

        // The same teacher and room in C's back-to-back periods 1 and 2.
        let first = series(
            "ser_c1",
            Weekday::Tue,
            1,
            SCHOOL_C,
            "cls_c1",
            &[],
            "usr_zhao",
        );
        let second = series(
            "ser_c2",
            Weekday::Tue,
            2,
            SCHOOL_C,
            "cls_c1",
            &[],
            "usr_zhao",
        );
        assert_eq!(conflicts(&week(&[first, second])), []);
    }

    #[test]
    fn teacher_booked_in_two_schools_at_once() {
        // 王芳 leads the paired lesson at A and is also down for a lesson led from B's cls_b2.
        let other = series(
            "ser_other",
            Weekday::Mon,
            2,
            SCHOOL_B,
            "cls_b2",
            &[],
            "usr_wang",
        );
        let found = conflicts(&week(&[paired(), other]));
        assert_eq!(found.len(), 1);
        let c = &found[0];
        assert_eq!(c.resource, Resource::Teacher("usr_wang".into()));
        assert_eq!((c.a_role, c.b_role), (Role::Teacher, Role::Teacher));
        assert_eq!(
            c.explain(&zh_names(), Lang::Zh),
            "2026年10月12日（星期一），教师「王芳」被重复安排：\
             「初二数学（城关一中 → 三河小学）」（08:50–09:30）与「初二物理」（08:55–09:35）时间重叠。"
        );
        assert_eq!(
            c.explain(&en_names(), Lang::En),
            "On Mon 2026-10-12, teacher \"Wang Fang\" is booked twice: teaching \
             \"Grade 8 Maths (Chengguan No. 1 → Sanhe)\" (08:50–09:30) and \"Grade 8 Physics\" \
             (08:55–09:35)."
        );
    }

    #[test]
    fn one_conflict_per_pair_date_and_resource() {
        // Sharing both the room and the teacher: one conflict for each resource.
        let mut both = local();
        both.teacher = "usr_wang".into();
        let found = conflicts(&week(&[paired(), both]));
        let resources: Vec<&Resource> = found.iter().map(|c| &c.resource).collect();
        assert_eq!(
            resources,
            [
                &Resource::Classroom("cls_r".into()),
                &Resource::Teacher("usr_wang".into())
            ]
        );

        // The same lessons listed twice (e.g. two overlapping windows concatenated).
        let once = week(&[paired(), local()]);
        let mut twice = once.clone();
        twice.extend(once.iter().cloned());
        assert_eq!(conflicts(&twice), conflicts(&once));

        // A lesson overlapping both lessons of a series on one day (moved to period 1 and its
        // weekly period 2) is still one conflict for that pair, date and room.
        let mut doubled = series(
            "ser_d",
            Weekday::Tue,
            2,
            SCHOOL_A,
            "cls_a1",
            &["cls_r"],
            "usr_x",
        );
        doubled.exceptions.push(crate::schedule::Exception::Move {
            date: d("2026-10-20"),
            new_date: d("2026-10-13"),
            new_period: 1,
        });
        let mut long = week(&[series(
            "ser_long",
            Weekday::Tue,
            1,
            SCHOOL_B,
            "cls_r",
            &[],
            "usr_y",
        )]);
        long[0].end = utc("2026-10-13T01:00:00Z"); // 08:05–09:00 local: over both periods
        let mut all = expand(
            &autumn_2026(),
            &bells(),
            &[doubled],
            d("2026-10-12"),
            d("2026-10-16"),
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        all.extend(long);
        let found = conflicts(&all);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].a_interval.local(), "08:00–08:40");
    }

    #[test]
    fn three_lessons_in_one_room_give_three_pairs() {
        let x = series(
            "ser_x",
            Weekday::Wed,
            2,
            SCHOOL_A,
            "cls_a1",
            &["cls_r"],
            "usr_1",
        );
        let y = series("ser_y", Weekday::Wed, 2, SCHOOL_B, "cls_r", &[], "usr_2");
        let z = series(
            "ser_z",
            Weekday::Wed,
            2,
            SCHOOL_C,
            "cls_c1",
            &["cls_r"],
            "usr_3",
        );
        let found = conflicts(&week(&[x, y, z]));
        let pairs: Vec<(&str, &str)> = found.iter().map(|c| (c.a.as_str(), c.b.as_str())).collect();
        // Starts: z 08:45 (C), x 08:50 (A), y 08:55 (B).
        assert_eq!(
            pairs,
            [("ser_z", "ser_x"), ("ser_z", "ser_y"), ("ser_x", "ser_y")]
        );
    }

    #[test]
    fn empty_and_inverted_intervals_occupy_nothing() {
        let mut lessons = week(&[paired(), local()]);
        lessons[1].end = lessons[1].start;
        assert_eq!(conflicts(&lessons), []);
        lessons[1].end = lessons[1].start - chrono::Duration::minutes(5);
        assert_eq!(conflicts(&lessons), []);
        assert_eq!(conflicts(&[]), []);
    }

    /// A tiny deterministic generator (no dependency needed for test data).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % bound
        }
    }

    fn random_lessons(seed: u64, n: usize) -> Vec<Occurrence> {
        let mut rng = Lcg(seed);
        (0..n)
            .map(|i| {
                let date = d("2026-10-12") + chrono::Duration::days(rng.next(3) as i64);
                let start = crate::schedule::calendar::local_to_utc(
                    date,
                    crate::schedule::fixtures::t("08:00"),
                )
                .unwrap()
                    + chrono::Duration::minutes(rng.next(300) as i64);
                let lead = format!("cls_{}", rng.next(12));
                let receivers: Vec<ClassroomId> = (0..rng.next(3))
                    .map(|_| ClassroomId(format!("cls_{}", rng.next(12))))
                    .filter(|r| r.0 != lead)
                    .collect();
                Occurrence {
                    // Some series repeat, so pairs of series can meet more than once a day.
                    series: SeriesId(format!("ser_{}", rng.next(n as u64 / 2 + 1))),
                    date,
                    period: 1,
                    start,
                    end: start + chrono::Duration::minutes(30 + rng.next(20) as i64),
                    lead_school: "sch_a".into(),
                    lead_classroom: ClassroomId(lead),
                    receivers,
                    teacher: UserId(format!("usr_{}", rng.next(6))),
                    subject: String::new(),
                    moved_from: if i % 2 == 0 {
                        None
                    } else {
                        Some(d("2026-09-01") + chrono::Duration::days(i as i64))
                    },
                }
            })
            .collect()
    }

    fn resources(o: &Occurrence) -> Vec<Resource> {
        let mut r = vec![
            Resource::Teacher(o.teacher.clone()),
            Resource::Classroom(o.lead_classroom.clone()),
        ];
        r.extend(o.receivers.iter().cloned().map(Resource::Classroom));
        r
    }

    #[test]
    fn sweep_agrees_with_brute_force_and_ignores_input_order() {
        for seed in 1..=5 {
            let mut lessons = random_lessons(seed, 300);
            let found = conflicts(&lessons);

            let mut expected = BTreeSet::new();
            for (i, a) in lessons.iter().enumerate() {
                for b in &lessons[i + 1..] {
                    let same_lesson = a.series == b.series && a.origin_date() == b.origin_date();
                    if same_lesson || !a.interval().overlaps(&b.interval()) {
                        continue;
                    }
                    let (lo, hi) = (
                        a.series.clone().min(b.series.clone()),
                        a.series.clone().max(b.series.clone()),
                    );
                    let rb = resources(b);
                    for r in resources(a).into_iter().filter(|r| rb.contains(r)) {
                        expected.insert((lo.clone(), hi.clone(), a.date, r));
                    }
                }
            }
            let got: BTreeSet<_> = found
                .iter()
                .map(|c| {
                    (
                        c.a.clone().min(c.b.clone()),
                        c.a.clone().max(c.b.clone()),
                        c.date,
                        c.resource.clone(),
                    )
                })
                .collect();
            assert_eq!(got.len(), found.len(), "seed {seed}: duplicates reported");
            assert_eq!(got, expected, "seed {seed}");
            assert!(
                !found.is_empty(),
                "seed {seed}: the data should have conflicts"
            );
            for c in &found {
                assert!(c.a_interval.overlaps(&c.b_interval));
                assert!(c.a_interval.start <= c.b_interval.start);
            }

            lessons.reverse();
            assert_eq!(conflicts(&lessons), found, "seed {seed}: order matters");
        }
    }

    #[test]
    fn a_districts_week_without_conflicts() {
        // 400 schools, each with 8 classrooms and 8 teachers in A's bells, paired with a rural
        // classroom of its own: 400 × 8 × 4 periods × 5 days = 64,000 lessons, no clashes.
        let mut list = Vec::new();
        for school in 0..400 {
            for room in 0..8 {
                for (day, weekday) in [
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                ]
                .into_iter()
                .enumerate()
                {
                    for period in 1..=4u8 {
                        let teacher =
                            format!("usr_{school}_{}", (room + day + usize::from(period)) % 8);
                        list.push(series(
                            &format!("ser_{school}_{room}_{day}_{period}"),
                            weekday,
                            period,
                            SCHOOL_A,
                            &format!("cls_{school}_{room}"),
                            &[&format!("cls_rural_{school}_{room}")],
                            &teacher,
                        ));
                    }
                }
            }
        }
        let lessons = week(&list);
        assert_eq!(lessons.len(), 64_000);
        assert_eq!(conflicts(&lessons), []);
    }
}
