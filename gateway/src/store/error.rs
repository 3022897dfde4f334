//! [`StoreError`], the store's one error type, and the mapping of database errors onto it.
//!
//! Constraint violations are recognised by kind, not by message, so SQLite and PostgreSQL map the
//! same way: unique → [`StoreError::Conflict`], foreign key → [`StoreError::ForeignKey`], CHECK →
//! [`StoreError::Invalid`]. Everything else is [`StoreError::Db`] with what was being done.

use sqlx::error::ErrorKind;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No row with this id (or key).
    #[error("{what} {id} not found")]
    NotFound {
        /// The entity, e.g. `"school"`.
        what: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// A unique constraint refused the write: the id, username, token or key is already taken.
    #[error("{what} already exists")]
    Conflict {
        /// What is taken, e.g. `"username"`.
        what: &'static str,
    },
    /// A foreign key refused the write: on insert or update a referenced row does not exist; on
    /// delete the row is still referenced (e.g. a school that still has classrooms).
    #[error("{what}: a referenced row is missing, or the row is still referenced")]
    ForeignKey {
        /// The entity being written or deleted.
        what: &'static str,
    },
    /// A CHECK constraint refused a value (e.g. weekday 9, a `move` without a new date).
    #[error("{what}: a value is out of range")]
    Invalid {
        /// The entity being written.
        what: &'static str,
    },
    /// Any other database failure (connection, I/O, a stored value that does not decode).
    #[error("database error ({context}): {source}")]
    Db {
        /// What the store was doing, e.g. `"school"` or `"connecting"`.
        context: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The embedded migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL or data directory is unusable.
    #[error("store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// A mapper for `map_err` that classifies a database error while working on `what`.
    pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| {
            let kind = match &source {
                sqlx::Error::Database(e) => e.kind(),
                _ => ErrorKind::Other,
            };
            match kind {
                ErrorKind::UniqueViolation => StoreError::Conflict { what },
                ErrorKind::ForeignKeyViolation => StoreError::ForeignKey { what },
                ErrorKind::CheckViolation => StoreError::Invalid { what },
                _ => StoreError::Db {
                    context: what,
                    source,
                },
            }
        }
    }

    /// [`StoreError::NotFound`] for `what` with `id`.
    pub(crate) fn not_found(what: &'static str, id: &str) -> StoreError {
        StoreError::NotFound {
            what,
            id: id.to_owned(),
        }
    }
}
