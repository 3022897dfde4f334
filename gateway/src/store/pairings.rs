//! Pairings (城乡学校结对): a lead school teaching partner schools in a district, for a
//! three-year round, in a set of subjects.
//!
//! Invariants: a pairing and its member lists are written together in one transaction
//! ([`Store::create_pairing`], [`Store::update_pairing`] replace both lists), so no reader sees a
//! pairing without its members or with half of them. Members reference existing schools and
//! subjects. `school_ids` are the partner schools as the caller gives them (the store neither
//! adds nor forbids the lead school). Deleting a pairing deletes its member lists and is refused
//! while a series refers to it.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{
    self, FromAnyRow, LinkRow, date_text, execute, execute_one, fetch_all, group_links,
    insert_links,
};
use super::kinds::PairingScope;
use super::{Store, StoreError};

/// A pairing with its member schools and subjects: `pairings`, `pairing_schools`,
/// `pairing_subjects`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingRow {
    /// `par_…`.
    pub id: String,
    /// The district that manages it.
    pub district_id: String,
    /// The lead (usually urban) school.
    pub lead_school_id: String,
    /// County, prefecture or province.
    pub scope: PairingScope,
    /// First day of the round.
    pub round_start: NaiveDate,
    /// Last day of the round (inclusive).
    pub round_end: NaiveDate,
    /// The partner schools, by id (stored order is not kept: read back sorted).
    pub school_ids: Vec<String>,
    /// The subjects taught together, by id (read back sorted).
    pub subject_ids: Vec<String>,
}

impl FromAnyRow for PairingRow {
    const WHAT: &'static str = "pairing";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(PairingRow {
            id: codec::text(row, "id")?,
            district_id: codec::text(row, "district_id")?,
            lead_school_id: codec::text(row, "lead_school_id")?,
            scope: codec::kind(row, "scope")?,
            round_start: codec::date(row, "round_start")?,
            round_end: codec::date(row, "round_end")?,
            school_ids: Vec::new(),
            subject_ids: Vec::new(),
        })
    }
}

/// The three reads that load pairings matching one filter on `pairings p` (with `$1`).
struct PairingSql {
    pairings: &'static str,
    schools: &'static str,
    subjects: &'static str,
}

/// Builds the [`PairingSql`] for a filter, at compile time.
macro_rules! pairing_sql {
    ($filter:literal) => {
        PairingSql {
            pairings: concat!(
                "SELECT p.id, p.district_id, p.lead_school_id, p.scope, p.round_start, \
                 p.round_end FROM pairings p WHERE ",
                $filter,
                " ORDER BY p.round_start DESC, p.id"
            ),
            schools: concat!(
                "SELECT ps.pairing_id AS owner, ps.school_id AS member FROM pairing_schools ps \
                 JOIN pairings p ON p.id = ps.pairing_id WHERE ",
                $filter,
                " ORDER BY ps.school_id"
            ),
            subjects: concat!(
                "SELECT pj.pairing_id AS owner, pj.subject_id AS member FROM pairing_subjects pj \
                 JOIN pairings p ON p.id = pj.pairing_id WHERE ",
                $filter,
                " ORDER BY pj.subject_id"
            ),
        }
    };
}

const BY_ID: PairingSql = pairing_sql!("p.id = $1");
const BY_DISTRICT: PairingSql = pairing_sql!("p.district_id = $1");
const BY_SCHOOL: PairingSql = pairing_sql!(
    "(p.lead_school_id = $1 OR p.id IN \
     (SELECT pairing_id FROM pairing_schools WHERE school_id = $1))"
);

const INSERT_SCHOOL: &str = "INSERT INTO pairing_schools (pairing_id, school_id) VALUES ($1, $2)";
const INSERT_SUBJECT: &str =
    "INSERT INTO pairing_subjects (pairing_id, subject_id) VALUES ($1, $2)";

impl Store {
    /// Adds a pairing with its schools and subjects, in one transaction.
    pub async fn create_pairing(&self, pairing: &PairingRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let insert = sqlx::query(
            "INSERT INTO pairings (id, district_id, lead_school_id, scope, round_start, \
             round_end) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&pairing.id)
        .bind(&pairing.district_id)
        .bind(&pairing.lead_school_id)
        .bind(pairing.scope.as_str())
        .bind(date_text(pairing.round_start))
        .bind(date_text(pairing.round_end));
        execute(&mut *tx, insert, "pairing").await?;
        insert_members(&mut tx, pairing).await?;
        tx.commit().await.map_err(StoreError::db("pairing"))
    }

    /// The pairing `id` with its members.
    pub async fn get_pairing(&self, id: &str) -> Result<PairingRow, StoreError> {
        let mut found = self.load_pairings(&BY_ID, id).await?;
        found
            .pop()
            .ok_or_else(|| StoreError::not_found("pairing", id))
    }

    /// A district's pairings, latest round first.
    pub async fn list_pairings(&self, district_id: &str) -> Result<Vec<PairingRow>, StoreError> {
        self.load_pairings(&BY_DISTRICT, district_id).await
    }

    /// The pairings a school takes part in, as lead or partner, latest round first.
    pub async fn list_pairings_of_school(
        &self,
        school_id: &str,
    ) -> Result<Vec<PairingRow>, StoreError> {
        self.load_pairings(&BY_SCHOOL, school_id).await
    }

    /// Writes every field of a pairing but its id and replaces both member lists, in one
    /// transaction.
    pub async fn update_pairing(&self, pairing: &PairingRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let update = sqlx::query(
            "UPDATE pairings SET district_id = $2, lead_school_id = $3, scope = $4, \
             round_start = $5, round_end = $6 WHERE id = $1",
        )
        .bind(&pairing.id)
        .bind(&pairing.district_id)
        .bind(&pairing.lead_school_id)
        .bind(pairing.scope.as_str())
        .bind(date_text(pairing.round_start))
        .bind(date_text(pairing.round_end));
        execute_one(&mut *tx, update, "pairing", &pairing.id).await?;
        for clear in [
            "DELETE FROM pairing_schools WHERE pairing_id = $1",
            "DELETE FROM pairing_subjects WHERE pairing_id = $1",
        ] {
            execute(&mut *tx, sqlx::query(clear).bind(&pairing.id), "pairing").await?;
        }
        insert_members(&mut tx, pairing).await?;
        tx.commit().await.map_err(StoreError::db("pairing"))
    }

    /// Deletes a pairing and its member lists; [`StoreError::ForeignKey`] while a series uses it.
    pub async fn delete_pairing(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM pairings WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "pairing", id).await
    }

    /// Loads the pairings that `sql` selects for `arg`, with their members, from one snapshot.
    async fn load_pairings(
        &self,
        sql: &PairingSql,
        arg: &str,
    ) -> Result<Vec<PairingRow>, StoreError> {
        let mut tx = self.begin_read().await?;
        let mut pairings: Vec<PairingRow> =
            fetch_all(&mut *tx, sqlx::query(sql.pairings).bind(arg)).await?;
        let schools: Vec<LinkRow> = fetch_all(&mut *tx, sqlx::query(sql.schools).bind(arg)).await?;
        let subjects: Vec<LinkRow> =
            fetch_all(&mut *tx, sqlx::query(sql.subjects).bind(arg)).await?;
        tx.commit().await.map_err(StoreError::db("pairing"))?;
        let (mut schools, mut subjects) = (group_links(schools), group_links(subjects));
        for pairing in &mut pairings {
            pairing.school_ids = schools.remove(&pairing.id).unwrap_or_default();
            pairing.subject_ids = subjects.remove(&pairing.id).unwrap_or_default();
        }
        Ok(pairings)
    }
}

/// Inserts a pairing's schools and subjects on the caller's transaction.
async fn insert_members(
    conn: &mut sqlx::AnyConnection,
    pairing: &PairingRow,
) -> Result<(), StoreError> {
    insert_links(
        conn,
        INSERT_SCHOOL,
        &pairing.id,
        &pairing.school_ids,
        "pairing school",
    )
    .await?;
    insert_links(
        conn,
        INSERT_SUBJECT,
        &pairing.id,
        &pairing.subject_ids,
        "pairing subject",
    )
    .await
}
