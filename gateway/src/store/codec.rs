//! How values are written as text, and read back from rows.
//!
//! The `Any` driver carries only integers, floats, text and bytes, so times and dates are text in
//! fixed-width formats whose text order is their time order (on PostgreSQL too, whatever its
//! collation, since every value has the same shape):
//! - instants: RFC 3339 UTC with microseconds, [`instant_text`];
//! - dates: `YYYY-MM-DD`, [`date_text`];
//! - times of day: `HH:MM`, [`time_text`].
//!
//! Reading is strict: a stored value that does not parse is a decode error, never a panic.
//!
//! Also here, shared by every repository: `FromAnyRow` (a row struct's decoder) and the small
//! `fetch_*`/`execute*` helpers that run a query on the pool or on a transaction and map its
//! errors to [`super::StoreError`], plus the link-table helpers used by pairings and series.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

/// The stored form of an instant: `2025-09-01T00:30:00.000000Z` (finer than 1 µs is truncated).
pub fn instant_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The stored form of a date: `2025-09-01`.
pub fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// The stored form of a time of day: `08:00` (seconds are dropped).
pub fn time_text(time: NaiveTime) -> String {
    time.format("%H:%M").to_string()
}

/// A column decode error for `column`.
fn decode_error(column: &str, source: impl Into<sqlx::error::BoxDynError>) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: source.into(),
    }
}

/// Parses a text column with `parse`, naming the column on failure; `None` when NULL.
fn parse_opt<T, E: Into<sqlx::error::BoxDynError>>(
    row: &AnyRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| parse(&t).map_err(|e| decode_error(column, e)))
        .transpose()
}

/// Like [`parse_opt`], for a NOT NULL column.
fn parse_req<T, E: Into<sqlx::error::BoxDynError>>(
    row: &AnyRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    parse(&text).map_err(|e| decode_error(column, e))
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}

fn parse_date(text: &str) -> Result<NaiveDate, chrono::ParseError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
}

/// A text column: `String`.
pub(crate) fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    row.try_get(column)
}

/// A nullable text column.
pub(crate) fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get(column)
}

/// An instant column.
pub(crate) fn instant(row: &AnyRow, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    parse_req(row, column, parse_instant)
}

/// A nullable instant column.
pub(crate) fn opt_instant(
    row: &AnyRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    parse_opt(row, column, parse_instant)
}

/// A date column.
pub(crate) fn date(row: &AnyRow, column: &str) -> Result<NaiveDate, sqlx::Error> {
    parse_req(row, column, parse_date)
}

/// A nullable date column.
pub(crate) fn opt_date(row: &AnyRow, column: &str) -> Result<Option<NaiveDate>, sqlx::Error> {
    parse_opt(row, column, parse_date)
}

/// A time-of-day column (`HH:MM`).
pub(crate) fn time_of_day(row: &AnyRow, column: &str) -> Result<NaiveTime, sqlx::Error> {
    parse_req(row, column, |t| NaiveTime::parse_from_str(t, "%H:%M"))
}

/// A text-coded enum column (see [`super::kinds`]).
pub(crate) fn kind<T>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error>
where
    T: FromStr<Err = super::kinds::UnknownKind>,
{
    parse_req(row, column, T::from_str)
}

/// A small non-negative integer column (weekday, period) as `u8`.
pub(crate) fn small(row: &AnyRow, column: &str) -> Result<u8, sqlx::Error> {
    let value: i64 = row.try_get(column)?;
    u8::try_from(value).map_err(|e| decode_error(column, e))
}

/// A nullable small integer column as `u8`.
pub(crate) fn opt_small(row: &AnyRow, column: &str) -> Result<Option<u8>, sqlx::Error> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| u8::try_from(v).map_err(|e| decode_error(column, e)))
        .transpose()
}

/// An integer column as `i32`.
pub(crate) fn int(row: &AnyRow, column: &str) -> Result<i32, sqlx::Error> {
    row.try_get(column)
}

/// A 0/1 integer column as `bool` (SQLite has no boolean; `Any` cannot decode one from it).
pub(crate) fn flag(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    let value: i64 = row.try_get(column)?;
    Ok(value != 0)
}

/// A JSON text column, parsed.
pub(crate) fn json(row: &AnyRow, column: &str) -> Result<serde_json::Value, sqlx::Error> {
    parse_req(row, column, |t| {
        serde_json::from_str::<serde_json::Value>(t)
    })
}

/// A row struct that decodes from a result row of its table's standard column list.
pub(crate) trait FromAnyRow: Sized {
    /// The entity, for errors (`"school"`).
    const WHAT: &'static str;
    /// Decodes one row.
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error>;
}

/// A query with `Any` arguments, as built by `sqlx::query(…).bind(…)`.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Runs `query` and decodes at most one row.
pub(crate) async fn fetch_opt<'c, T: FromAnyRow>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    query: AnyQuery<'_>,
) -> Result<Option<T>, super::StoreError> {
    let row = query
        .fetch_optional(executor)
        .await
        .map_err(super::StoreError::db(T::WHAT))?;
    row.as_ref()
        .map(T::from_row)
        .transpose()
        .map_err(super::StoreError::db(T::WHAT))
}

/// Runs `query` and decodes every row.
pub(crate) async fn fetch_all<'c, T: FromAnyRow>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    query: AnyQuery<'_>,
) -> Result<Vec<T>, super::StoreError> {
    let rows = query
        .fetch_all(executor)
        .await
        .map_err(super::StoreError::db(T::WHAT))?;
    rows.iter()
        .map(T::from_row)
        .collect::<Result<_, _>>()
        .map_err(super::StoreError::db(T::WHAT))
}

/// Runs a write and returns how many rows it touched.
pub(crate) async fn execute<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    query: AnyQuery<'_>,
    what: &'static str,
) -> Result<u64, super::StoreError> {
    let done = query
        .execute(executor)
        .await
        .map_err(super::StoreError::db(what))?;
    Ok(done.rows_affected())
}

/// Runs an update or delete of one row by id: [`super::StoreError::NotFound`] when none matched.
pub(crate) async fn execute_one<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    query: AnyQuery<'_>,
    what: &'static str,
    id: &str,
) -> Result<(), super::StoreError> {
    match execute(executor, query, what).await? {
        0 => Err(super::StoreError::not_found(what, id)),
        _ => Ok(()),
    }
}

/// Fails with [`super::StoreError::NotFound`] unless `query` (a `SELECT` by id) returns a row.
pub(crate) async fn require<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    query: AnyQuery<'_>,
    what: &'static str,
    id: &str,
) -> Result<(), super::StoreError> {
    let row = query
        .fetch_optional(executor)
        .await
        .map_err(super::StoreError::db(what))?;
    row.map(drop)
        .ok_or_else(|| super::StoreError::not_found(what, id))
}

/// One row of a link table (a pairing's school, a series' receiver), read as `owner, member`.
pub(crate) struct LinkRow {
    owner: String,
    member: String,
}

impl FromAnyRow for LinkRow {
    const WHAT: &'static str = "link";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(LinkRow {
            owner: text(row, "owner")?,
            member: text(row, "member")?,
        })
    }
}

/// Groups link rows by owner, keeping their order.
pub(crate) fn group_links(links: Vec<LinkRow>) -> std::collections::HashMap<String, Vec<String>> {
    let mut groups: std::collections::HashMap<String, Vec<String>> = Default::default();
    for link in links {
        groups.entry(link.owner).or_default().push(link.member);
    }
    groups
}

/// Inserts `(owner, member)` for every member with `insert` (an `INSERT` of `$1, $2`), on the
/// caller's transaction.
pub(crate) async fn insert_links(
    conn: &mut sqlx::AnyConnection,
    insert: &'static str,
    owner: &str,
    members: &[String],
    what: &'static str,
) -> Result<(), super::StoreError> {
    for member in members {
        let query = sqlx::query(insert).bind(owner).bind(member);
        execute(&mut *conn, query, what).await?;
    }
    Ok(())
}
