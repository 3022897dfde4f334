//! Class series (a weekly lesson: this term, this weekday and period, this lead classroom and
//! teacher, these receiving classrooms) and their exceptions (a cancelled or moved date).
//!
//! Invariants: a series and its receivers are written together in one transaction
//! ([`Store::create_series`], [`Store::update_series`] replaces the receivers), so no reader sees
//! a series with part of its receivers. Every id references an existing row. Weekday is 1–7
//! (Monday = 1), period ≥ 1, and a `move` exception has a new date and period (CHECK). At most
//! one exception per series and date. Deleting a series deletes its receivers and exceptions and
//! is refused while it has attendance. Overlaps and conflicts are the `schedule` module's to find.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{
    self, FromAnyRow, LinkRow, date_text, execute, execute_one, fetch_all, group_links,
    insert_links, instant_text,
};
use super::kinds::ExceptionKind;
use super::{Store, StoreError};

/// A weekly class series with its receiving classrooms: `class_series`, `class_series_receivers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesRow {
    /// `ser_…`.
    pub id: String,
    /// The term it runs in.
    pub term_id: String,
    /// The pairing it belongs to, if any.
    pub pairing_id: Option<String>,
    /// 1 = Monday … 7 = Sunday.
    pub weekday: u8,
    /// Period number in the lead school's bell schedule, from 1.
    pub period: u8,
    /// 主讲课堂.
    pub lead_classroom_id: String,
    /// 主讲教师 (a user).
    pub teacher_id: String,
    /// What is taught.
    pub subject_id: String,
    /// Who created it (a user).
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// 接收课堂, by id (read back sorted).
    pub receiver_ids: Vec<String>,
}

/// An exception to a series on one date: `class_exceptions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRow {
    /// The series.
    pub series_id: String,
    /// The date of the occurrence it changes.
    pub date: NaiveDate,
    /// Cancel, or move.
    pub kind: ExceptionKind,
    /// For a move: the new date.
    pub new_date: Option<NaiveDate>,
    /// For a move: the new period (lead school's bells).
    pub new_period: Option<u8>,
}

impl FromAnyRow for SeriesRow {
    const WHAT: &'static str = "series";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(SeriesRow {
            id: codec::text(row, "id")?,
            term_id: codec::text(row, "term_id")?,
            pairing_id: codec::opt_text(row, "pairing_id")?,
            weekday: codec::small(row, "weekday")?,
            period: codec::small(row, "period")?,
            lead_classroom_id: codec::text(row, "lead_classroom_id")?,
            teacher_id: codec::text(row, "teacher_id")?,
            subject_id: codec::text(row, "subject_id")?,
            created_by: codec::text(row, "created_by")?,
            created_at: codec::instant(row, "created_at")?,
            receiver_ids: Vec::new(),
        })
    }
}

impl FromAnyRow for ExceptionRow {
    const WHAT: &'static str = "exception";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ExceptionRow {
            series_id: codec::text(row, "series_id")?,
            date: codec::date(row, "date")?,
            kind: codec::kind(row, "kind")?,
            new_date: codec::opt_date(row, "new_date")?,
            new_period: codec::opt_small(row, "new_period")?,
        })
    }
}

/// The two reads that load the series matching one filter on `class_series s` (with `$1`).
struct SeriesSql {
    series: &'static str,
    receivers: &'static str,
}

/// Builds the [`SeriesSql`] for a filter, at compile time.
macro_rules! series_sql {
    ($filter:literal) => {
        SeriesSql {
            series: concat!(
                "SELECT s.id, s.term_id, s.pairing_id, s.weekday, s.period, s.lead_classroom_id, \
                 s.teacher_id, s.subject_id, s.created_by, s.created_at FROM class_series s \
                 WHERE ",
                $filter,
                " ORDER BY s.weekday, s.period, s.id"
            ),
            receivers: concat!(
                "SELECT r.series_id AS owner, r.classroom_id AS member \
                 FROM class_series_receivers r JOIN class_series s ON s.id = r.series_id WHERE ",
                $filter,
                " ORDER BY r.classroom_id"
            ),
        }
    };
}

const BY_ID: SeriesSql = series_sql!("s.id = $1");
const BY_TERM: SeriesSql = series_sql!("s.term_id = $1");
const BY_TEACHER: SeriesSql = series_sql!("s.teacher_id = $1");
const BY_CLASSROOM: SeriesSql = series_sql!(
    "(s.lead_classroom_id = $1 OR s.id IN \
     (SELECT series_id FROM class_series_receivers WHERE classroom_id = $1))"
);

const INSERT_RECEIVER: &str =
    "INSERT INTO class_series_receivers (series_id, classroom_id) VALUES ($1, $2)";

impl Store {
    /// Adds a series with its receivers, in one transaction.
    pub async fn create_series(&self, series: &SeriesRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let insert = sqlx::query(
            "INSERT INTO class_series (id, term_id, pairing_id, weekday, period, \
             lead_classroom_id, teacher_id, subject_id, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&series.id)
        .bind(&series.term_id)
        .bind(&series.pairing_id)
        .bind(i32::from(series.weekday))
        .bind(i32::from(series.period))
        .bind(&series.lead_classroom_id)
        .bind(&series.teacher_id)
        .bind(&series.subject_id)
        .bind(&series.created_by)
        .bind(instant_text(series.created_at));
        execute(&mut *tx, insert, "series").await?;
        let receivers = &series.receiver_ids;
        insert_links(
            &mut tx,
            INSERT_RECEIVER,
            &series.id,
            receivers,
            "series receiver",
        )
        .await?;
        tx.commit().await.map_err(StoreError::db("series"))
    }

    /// The series `id` with its receivers.
    pub async fn get_series(&self, id: &str) -> Result<SeriesRow, StoreError> {
        let mut found = self.load_series(&BY_ID, id).await?;
        found
            .pop()
            .ok_or_else(|| StoreError::not_found("series", id))
    }

    /// The series of a term, by weekday and period.
    pub async fn list_series_of_term(&self, term_id: &str) -> Result<Vec<SeriesRow>, StoreError> {
        self.load_series(&BY_TERM, term_id).await
    }

    /// The series touching a classroom, as lead **or** receiver, in every term.
    pub async fn list_series_of_classroom(
        &self,
        classroom_id: &str,
    ) -> Result<Vec<SeriesRow>, StoreError> {
        self.load_series(&BY_CLASSROOM, classroom_id).await
    }

    /// The series a teacher leads, in every term.
    pub async fn list_series_of_teacher(
        &self,
        teacher_id: &str,
    ) -> Result<Vec<SeriesRow>, StoreError> {
        self.load_series(&BY_TEACHER, teacher_id).await
    }

    /// Writes every field of a series but its id, `created_by` and `created_at`, and replaces its
    /// receivers, in one transaction.
    pub async fn update_series(&self, series: &SeriesRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let update = sqlx::query(
            "UPDATE class_series SET term_id = $2, pairing_id = $3, weekday = $4, period = $5, \
             lead_classroom_id = $6, teacher_id = $7, subject_id = $8 WHERE id = $1",
        )
        .bind(&series.id)
        .bind(&series.term_id)
        .bind(&series.pairing_id)
        .bind(i32::from(series.weekday))
        .bind(i32::from(series.period))
        .bind(&series.lead_classroom_id)
        .bind(&series.teacher_id)
        .bind(&series.subject_id);
        execute_one(&mut *tx, update, "series", &series.id).await?;
        let clear =
            sqlx::query("DELETE FROM class_series_receivers WHERE series_id = $1").bind(&series.id);
        execute(&mut *tx, clear, "series receiver").await?;
        let receivers = &series.receiver_ids;
        insert_links(
            &mut tx,
            INSERT_RECEIVER,
            &series.id,
            receivers,
            "series receiver",
        )
        .await?;
        tx.commit().await.map_err(StoreError::db("series"))
    }

    /// Deletes a series with its receivers and exceptions; [`StoreError::ForeignKey`] once it
    /// has attendance.
    pub async fn delete_series(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM class_series WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "series", id).await
    }

    /// Adds an exception. [`StoreError::Conflict`] if the series already has one on that date;
    /// [`StoreError::Invalid`] for a `move` without a new date and period.
    pub async fn add_exception(&self, exception: &ExceptionRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO class_exceptions (series_id, date, kind, new_date, new_period) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&exception.series_id)
        .bind(date_text(exception.date))
        .bind(exception.kind.as_str())
        .bind(exception.new_date.map(date_text))
        .bind(exception.new_period.map(i32::from));
        execute(&self.pool, query, "exception").await.map(drop)
    }

    /// A series' exceptions, by date.
    pub async fn list_exceptions(&self, series_id: &str) -> Result<Vec<ExceptionRow>, StoreError> {
        let query = sqlx::query(
            "SELECT series_id, date, kind, new_date, new_period FROM class_exceptions \
             WHERE series_id = $1 ORDER BY date",
        )
        .bind(series_id);
        fetch_all(&self.pool, query).await
    }

    /// The exceptions of every series of a term, by series then date.
    pub async fn list_exceptions_of_term(
        &self,
        term_id: &str,
    ) -> Result<Vec<ExceptionRow>, StoreError> {
        let query = sqlx::query(
            "SELECT e.series_id, e.date, e.kind, e.new_date, e.new_period \
             FROM class_exceptions e JOIN class_series s ON s.id = e.series_id \
             WHERE s.term_id = $1 ORDER BY e.series_id, e.date",
        )
        .bind(term_id);
        fetch_all(&self.pool, query).await
    }

    /// Removes the exception of a series on `date`.
    pub async fn delete_exception(
        &self,
        series_id: &str,
        date: NaiveDate,
    ) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM class_exceptions WHERE series_id = $1 AND date = $2")
            .bind(series_id)
            .bind(date_text(date));
        match execute(&self.pool, query, "exception").await? {
            0 => Err(StoreError::not_found(
                "exception",
                &format!("{series_id}@{date}"),
            )),
            _ => Ok(()),
        }
    }

    /// Loads the series that `sql` selects for `arg`, with their receivers, from one snapshot.
    async fn load_series(&self, sql: &SeriesSql, arg: &str) -> Result<Vec<SeriesRow>, StoreError> {
        let mut tx = self.begin_read().await?;
        let mut series: Vec<SeriesRow> =
            fetch_all(&mut *tx, sqlx::query(sql.series).bind(arg)).await?;
        let receivers: Vec<LinkRow> =
            fetch_all(&mut *tx, sqlx::query(sql.receivers).bind(arg)).await?;
        tx.commit().await.map_err(StoreError::db("series"))?;
        let mut receivers = group_links(receivers);
        for one in &mut series {
            one.receiver_ids = receivers.remove(&one.id).unwrap_or_default();
        }
        Ok(series)
    }
}
