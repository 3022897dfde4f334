//! The calendar side of the timetable: subjects, terms with their special days, and each
//! school's bell periods. Rows are plain data; the `schedule` module turns them into occurrences.
//!
//! Invariants: a term's special days and a school's bell periods are always replaced as a whole,
//! in one transaction ([`Store::set_term_days`], [`Store::set_bell_periods`]), so a reader sees
//! the old set or the new one, never a mix. At most one special day per term and date, at most
//! one bell period per school and number (primary keys). A `makeup` day names the weekday it
//! follows, a `holiday` does not (CHECK). Whether dates fall inside the term or periods overlap
//! is the caller's (the schedule's) to validate.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{
    self, FromAnyRow, date_text, execute, execute_one, fetch_all, fetch_opt, require, time_text,
};
use super::kinds::TermDayKind;
use super::{Store, StoreError};

/// A subject taught in a district (语文, 数学, 英语, …): `subjects`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRow {
    /// `sub_…`.
    pub id: String,
    /// The district whose subject list it is on.
    pub district_id: String,
    /// Display name.
    pub name: String,
}

/// A term (学期) of a district: `terms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermRow {
    /// `trm_…`.
    pub id: String,
    /// The district it applies to.
    pub district_id: String,
    /// Display name, e.g. `2025—2026 学年第一学期`.
    pub name: String,
    /// First day of lessons.
    pub start_date: NaiveDate,
    /// Last day of lessons (inclusive).
    pub end_date: NaiveDate,
}

/// A special day of a term: `term_days` (the term is the argument it is stored under).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermDayRow {
    /// The date.
    pub date: NaiveDate,
    /// Holiday, or make-up day (调休).
    pub kind: TermDayKind,
    /// For a make-up day: the weekday whose timetable runs, 1 = Monday … 7 = Sunday.
    pub follows_weekday: Option<u8>,
}

/// One period of a school's bell schedule: `bell_periods` (the school is the argument).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BellPeriodRow {
    /// Period number, from 1.
    pub period: u8,
    /// Start, school local time (Asia/Shanghai), minute precision.
    pub start_time: NaiveTime,
    /// End, school local time, minute precision.
    pub end_time: NaiveTime,
}

impl FromAnyRow for SubjectRow {
    const WHAT: &'static str = "subject";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(SubjectRow {
            id: codec::text(row, "id")?,
            district_id: codec::text(row, "district_id")?,
            name: codec::text(row, "name")?,
        })
    }
}

impl FromAnyRow for TermRow {
    const WHAT: &'static str = "term";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(TermRow {
            id: codec::text(row, "id")?,
            district_id: codec::text(row, "district_id")?,
            name: codec::text(row, "name")?,
            start_date: codec::date(row, "start_date")?,
            end_date: codec::date(row, "end_date")?,
        })
    }
}

impl FromAnyRow for TermDayRow {
    const WHAT: &'static str = "term day";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(TermDayRow {
            date: codec::date(row, "date")?,
            kind: codec::kind(row, "kind")?,
            follows_weekday: codec::opt_small(row, "follows_weekday")?,
        })
    }
}

impl FromAnyRow for BellPeriodRow {
    const WHAT: &'static str = "bell period";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(BellPeriodRow {
            period: codec::small(row, "period")?,
            start_time: codec::time_of_day(row, "start_time")?,
            end_time: codec::time_of_day(row, "end_time")?,
        })
    }
}

/// A bell period with the school it belongs to, for district-wide reads.
struct SchoolBellRow {
    school_id: String,
    bell: BellPeriodRow,
}

impl FromAnyRow for SchoolBellRow {
    const WHAT: &'static str = "bell period";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(SchoolBellRow {
            school_id: codec::text(row, "school_id")?,
            bell: BellPeriodRow::from_row(row)?,
        })
    }
}

impl Store {
    /// Adds a subject to a district's list.
    pub async fn create_subject(&self, subject: &SubjectRow) -> Result<(), StoreError> {
        let query = sqlx::query("INSERT INTO subjects (id, district_id, name) VALUES ($1, $2, $3)")
            .bind(&subject.id)
            .bind(&subject.district_id)
            .bind(&subject.name);
        execute(&self.pool, query, "subject").await.map(drop)
    }

    /// The subject `id`.
    pub async fn get_subject(&self, id: &str) -> Result<SubjectRow, StoreError> {
        let query =
            sqlx::query("SELECT id, district_id, name FROM subjects WHERE id = $1").bind(id);
        fetch_opt(&self.pool, query)
            .await?
            .ok_or_else(|| StoreError::not_found("subject", id))
    }

    /// A district's subjects, by name.
    pub async fn list_subjects(&self, district_id: &str) -> Result<Vec<SubjectRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id, district_id, name FROM subjects WHERE district_id = $1 ORDER BY name, id",
        )
        .bind(district_id);
        fetch_all(&self.pool, query).await
    }

    /// Writes every field of a subject but its id.
    pub async fn update_subject(&self, subject: &SubjectRow) -> Result<(), StoreError> {
        let query = sqlx::query("UPDATE subjects SET district_id = $2, name = $3 WHERE id = $1")
            .bind(&subject.id)
            .bind(&subject.district_id)
            .bind(&subject.name);
        execute_one(&self.pool, query, "subject", &subject.id).await
    }

    /// Deletes a subject; [`StoreError::ForeignKey`] while a series or pairing uses it.
    pub async fn delete_subject(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM subjects WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "subject", id).await
    }

    /// Adds a term (without special days: see [`Store::set_term_days`]).
    pub async fn create_term(&self, term: &TermRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO terms (id, district_id, name, start_date, end_date) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&term.id)
        .bind(&term.district_id)
        .bind(&term.name)
        .bind(date_text(term.start_date))
        .bind(date_text(term.end_date));
        execute(&self.pool, query, "term").await.map(drop)
    }

    /// The term `id`.
    pub async fn get_term(&self, id: &str) -> Result<TermRow, StoreError> {
        let query = sqlx::query(
            "SELECT id, district_id, name, start_date, end_date FROM terms WHERE id = $1",
        )
        .bind(id);
        fetch_opt(&self.pool, query)
            .await?
            .ok_or_else(|| StoreError::not_found("term", id))
    }

    /// A district's terms, latest first.
    pub async fn list_terms(&self, district_id: &str) -> Result<Vec<TermRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id, district_id, name, start_date, end_date FROM terms \
             WHERE district_id = $1 ORDER BY start_date DESC, id",
        )
        .bind(district_id);
        fetch_all(&self.pool, query).await
    }

    /// Writes every field of a term but its id (its special days are left as they are).
    pub async fn update_term(&self, term: &TermRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE terms SET district_id = $2, name = $3, start_date = $4, end_date = $5 \
             WHERE id = $1",
        )
        .bind(&term.id)
        .bind(&term.district_id)
        .bind(&term.name)
        .bind(date_text(term.start_date))
        .bind(date_text(term.end_date));
        execute_one(&self.pool, query, "term", &term.id).await
    }

    /// Deletes a term with its special days; [`StoreError::ForeignKey`] while it has series.
    pub async fn delete_term(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM terms WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "term", id).await
    }

    /// Replaces all special days of a term with `days`, in one transaction.
    /// [`StoreError::Conflict`] if a date appears twice (nothing is changed then).
    pub async fn set_term_days(
        &self,
        term_id: &str,
        days: &[TermDayRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT id FROM terms WHERE id = $1").bind(term_id);
        require(&mut *tx, exists, "term", term_id).await?;
        let clear = sqlx::query("DELETE FROM term_days WHERE term_id = $1").bind(term_id);
        execute(&mut *tx, clear, "term day").await?;
        for day in days {
            let insert = sqlx::query(
                "INSERT INTO term_days (term_id, date, kind, follows_weekday) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(term_id)
            .bind(date_text(day.date))
            .bind(day.kind.as_str())
            .bind(day.follows_weekday.map(i32::from));
            execute(&mut *tx, insert, "term day").await?;
        }
        tx.commit().await.map_err(StoreError::db("term day"))
    }

    /// A term's special days, by date.
    pub async fn list_term_days(&self, term_id: &str) -> Result<Vec<TermDayRow>, StoreError> {
        let query = sqlx::query(
            "SELECT date, kind, follows_weekday FROM term_days WHERE term_id = $1 ORDER BY date",
        )
        .bind(term_id);
        fetch_all(&self.pool, query).await
    }

    /// Replaces a school's bell schedule with `periods`, in one transaction.
    /// [`StoreError::Conflict`] if a period number appears twice (nothing is changed then).
    pub async fn set_bell_periods(
        &self,
        school_id: &str,
        periods: &[BellPeriodRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT id FROM schools WHERE id = $1").bind(school_id);
        require(&mut *tx, exists, "school", school_id).await?;
        let clear = sqlx::query("DELETE FROM bell_periods WHERE school_id = $1").bind(school_id);
        execute(&mut *tx, clear, "bell period").await?;
        for bell in periods {
            let insert = sqlx::query(
                "INSERT INTO bell_periods (school_id, period, start_time, end_time) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(school_id)
            .bind(i32::from(bell.period))
            .bind(time_text(bell.start_time))
            .bind(time_text(bell.end_time));
            execute(&mut *tx, insert, "bell period").await?;
        }
        tx.commit().await.map_err(StoreError::db("bell period"))
    }

    /// A school's bell periods, by period number.
    pub async fn list_bell_periods(
        &self,
        school_id: &str,
    ) -> Result<Vec<BellPeriodRow>, StoreError> {
        let query = sqlx::query(
            "SELECT period, start_time, end_time FROM bell_periods \
             WHERE school_id = $1 ORDER BY period",
        )
        .bind(school_id);
        fetch_all(&self.pool, query).await
    }

    /// The bell periods of every school of a district, by school id then period (schools without
    /// bells are absent). One read for district-wide conflict checks.
    pub async fn list_bell_periods_in_district(
        &self,
        district_id: &str,
    ) -> Result<BTreeMap<String, Vec<BellPeriodRow>>, StoreError> {
        let query = sqlx::query(
            "SELECT b.school_id, b.period, b.start_time, b.end_time FROM bell_periods b \
             JOIN schools s ON s.id = b.school_id WHERE s.district_id = $1 \
             ORDER BY b.school_id, b.period",
        )
        .bind(district_id);
        let rows: Vec<SchoolBellRow> = fetch_all(&self.pool, query).await?;
        let mut by_school: BTreeMap<String, Vec<BellPeriodRow>> = BTreeMap::new();
        for row in rows {
            by_school.entry(row.school_id).or_default().push(row.bell);
        }
        Ok(by_school)
    }
}
