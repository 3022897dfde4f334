//! The organisation: districts (区县), their schools, and the schools' classrooms.
//!
//! Invariants: a school belongs to one existing district, a classroom to one existing school
//! (foreign keys). Deleting a district that still has schools, or a school that still has
//! classrooms (or users, pairings, …) fails with [`StoreError::ForeignKey`]; a school's bell
//! periods go with it. A classroom's devices are JSON, stored as text and not interpreted here.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{self, FromAnyRow, execute, execute_one, fetch_all, fetch_opt};
use super::kinds::{ClassroomKind, SchoolKind};
use super::{Store, StoreError};

/// A district (区县教育局's area): `districts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistrictRow {
    /// `dst_…`.
    pub id: String,
    /// Display name, e.g. `城关区`.
    pub name: String,
}

/// A school: `schools`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolRow {
    /// `sch_…`.
    pub id: String,
    /// The district it belongs to.
    pub district_id: String,
    /// Display name.
    pub name: String,
    /// Urban, rural or teaching point.
    pub kind: SchoolKind,
}

/// A classroom: `classrooms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassroomRow {
    /// `cls_…`.
    pub id: String,
    /// The school it is in.
    pub school_id: String,
    /// Display name, e.g. `三年级二班`.
    pub name: String,
    /// Lead-capable, receiving, or recording.
    pub kind: ClassroomKind,
    /// The room's devices (cameras, encoders, …) as the hardware layer describes them; stored as
    /// JSON text (`devices_json`), opaque to the store.
    pub devices: serde_json::Value,
}

impl FromAnyRow for DistrictRow {
    const WHAT: &'static str = "district";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(DistrictRow {
            id: codec::text(row, "id")?,
            name: codec::text(row, "name")?,
        })
    }
}

impl FromAnyRow for SchoolRow {
    const WHAT: &'static str = "school";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(SchoolRow {
            id: codec::text(row, "id")?,
            district_id: codec::text(row, "district_id")?,
            name: codec::text(row, "name")?,
            kind: codec::kind(row, "kind")?,
        })
    }
}

impl FromAnyRow for ClassroomRow {
    const WHAT: &'static str = "classroom";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ClassroomRow {
            id: codec::text(row, "id")?,
            school_id: codec::text(row, "school_id")?,
            name: codec::text(row, "name")?,
            kind: codec::kind(row, "kind")?,
            devices: codec::json(row, "devices_json")?,
        })
    }
}

impl Store {
    /// Adds a district. [`StoreError::Conflict`] if the id is taken.
    pub async fn create_district(&self, district: &DistrictRow) -> Result<(), StoreError> {
        let query = sqlx::query("INSERT INTO districts (id, name) VALUES ($1, $2)")
            .bind(&district.id)
            .bind(&district.name);
        execute(&self.pool, query, "district").await.map(drop)
    }

    /// The district `id`.
    pub async fn get_district(&self, id: &str) -> Result<DistrictRow, StoreError> {
        let query = sqlx::query("SELECT id, name FROM districts WHERE id = $1").bind(id);
        fetch_opt(&self.pool, query)
            .await?
            .ok_or_else(|| StoreError::not_found("district", id))
    }

    /// Every district, by name.
    pub async fn list_districts(&self) -> Result<Vec<DistrictRow>, StoreError> {
        let query = sqlx::query("SELECT id, name FROM districts ORDER BY name, id");
        fetch_all(&self.pool, query).await
    }

    /// Renames a district (every field but the id is written).
    pub async fn update_district(&self, district: &DistrictRow) -> Result<(), StoreError> {
        let query = sqlx::query("UPDATE districts SET name = $2 WHERE id = $1")
            .bind(&district.id)
            .bind(&district.name);
        execute_one(&self.pool, query, "district", &district.id).await
    }

    /// Deletes a district; [`StoreError::ForeignKey`] while anything still refers to it.
    pub async fn delete_district(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM districts WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "district", id).await
    }

    /// Adds a school to its district.
    pub async fn create_school(&self, school: &SchoolRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO schools (id, district_id, name, kind) VALUES ($1, $2, $3, $4)",
        )
        .bind(&school.id)
        .bind(&school.district_id)
        .bind(&school.name)
        .bind(school.kind.as_str());
        execute(&self.pool, query, "school").await.map(drop)
    }

    /// The school `id`.
    pub async fn get_school(&self, id: &str) -> Result<SchoolRow, StoreError> {
        let query =
            sqlx::query("SELECT id, district_id, name, kind FROM schools WHERE id = $1").bind(id);
        fetch_opt(&self.pool, query)
            .await?
            .ok_or_else(|| StoreError::not_found("school", id))
    }

    /// The schools of a district, by name.
    pub async fn list_schools(&self, district_id: &str) -> Result<Vec<SchoolRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id, district_id, name, kind FROM schools WHERE district_id = $1 \
             ORDER BY name, id",
        )
        .bind(district_id);
        fetch_all(&self.pool, query).await
    }

    /// Writes every field of a school but its id (moving it to another district is allowed).
    pub async fn update_school(&self, school: &SchoolRow) -> Result<(), StoreError> {
        let query =
            sqlx::query("UPDATE schools SET district_id = $2, name = $3, kind = $4 WHERE id = $1")
                .bind(&school.id)
                .bind(&school.district_id)
                .bind(&school.name)
                .bind(school.kind.as_str());
        execute_one(&self.pool, query, "school", &school.id).await
    }

    /// Deletes a school and its bell periods; [`StoreError::ForeignKey`] while it has classrooms,
    /// users, pairings or tokens.
    pub async fn delete_school(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM schools WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "school", id).await
    }

    /// Adds a classroom to its school.
    pub async fn create_classroom(&self, classroom: &ClassroomRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO classrooms (id, school_id, name, kind, devices_json) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&classroom.id)
        .bind(&classroom.school_id)
        .bind(&classroom.name)
        .bind(classroom.kind.as_str())
        .bind(classroom.devices.to_string());
        execute(&self.pool, query, "classroom").await.map(drop)
    }

    /// The classroom `id`.
    pub async fn get_classroom(&self, id: &str) -> Result<ClassroomRow, StoreError> {
        let query = sqlx::query(
            "SELECT id, school_id, name, kind, devices_json FROM classrooms WHERE id = $1",
        )
        .bind(id);
        fetch_opt(&self.pool, query)
            .await?
            .ok_or_else(|| StoreError::not_found("classroom", id))
    }

    /// The classrooms of a school, by name.
    pub async fn list_classrooms(&self, school_id: &str) -> Result<Vec<ClassroomRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id, school_id, name, kind, devices_json FROM classrooms \
             WHERE school_id = $1 ORDER BY name, id",
        )
        .bind(school_id);
        fetch_all(&self.pool, query).await
    }

    /// The classrooms of every school of a district, by school then name.
    pub async fn list_classrooms_in_district(
        &self,
        district_id: &str,
    ) -> Result<Vec<ClassroomRow>, StoreError> {
        let query = sqlx::query(
            "SELECT c.id, c.school_id, c.name, c.kind, c.devices_json \
             FROM classrooms c JOIN schools s ON s.id = c.school_id \
             WHERE s.district_id = $1 ORDER BY c.school_id, c.name, c.id",
        )
        .bind(district_id);
        fetch_all(&self.pool, query).await
    }

    /// Writes every field of a classroom but its id.
    pub async fn update_classroom(&self, classroom: &ClassroomRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE classrooms SET school_id = $2, name = $3, kind = $4, devices_json = $5 \
             WHERE id = $1",
        )
        .bind(&classroom.id)
        .bind(&classroom.school_id)
        .bind(&classroom.name)
        .bind(classroom.kind.as_str())
        .bind(classroom.devices.to_string());
        execute_one(&self.pool, query, "classroom", &classroom.id).await
    }

    /// Deletes a classroom; [`StoreError::ForeignKey`] while a series, user or pairing uses it.
    pub async fn delete_classroom(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM classrooms WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "classroom", id).await
    }
}
