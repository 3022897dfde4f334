//! The gateway's storage: every table of the data model in `docs/gateway-design.md`, behind one
//! [`Store`] that runs the same code and the same migrations on SQLite (the embedded default, a
//! file in the data directory) and PostgreSQL (production, by configuration).
//!
//! # How to use it
//! ```no_run
//! # async fn demo() -> Result<(), duet_gateway::store::StoreError> {
//! use duet_gateway::store::{DistrictRow, StoreConfig, id_prefix, new_id};
//! let store = StoreConfig::default().open(std::path::Path::new("/var/lib/duet")).await?;
//! let district = DistrictRow { id: new_id(id_prefix::DISTRICT), name: "城关区".into() };
//! store.create_district(&district).await?;
//! assert_eq!(store.get_district(&district.id).await?, district);
//! # Ok(()) }
//! ```
//! A [`Store`] is a cheap clone of a connection pool; share it freely.
//!
//! # Conventions (what a caller must know)
//! - **Ids are made by the caller** with [`new_id`] (a prefix from [`id_prefix`], `_`, 16 random
//!   lowercase base32 characters) and passed in the row. The store never invents ids.
//! - **The store never reads the clock.** Every time (`created_at`, `expires_at`, "now" for
//!   expiry) is an argument. Instants are stored as fixed-width RFC 3339 UTC text with microsecond
//!   precision (`2025-09-01T00:30:00.000000Z`), so text order is time order on both backends;
//!   finer precision is truncated. Dates are `YYYY-MM-DD`, times of day `HH:MM` (school local time,
//!   seconds are dropped). Row structs carry `chrono` values, so a malformed date cannot be stored.
//! - **Lookups:** `get_*` fails with [`StoreError::NotFound`] when the row is absent; `find_*`
//!   returns `Option` where absence is a normal answer (a session, a token, an idempotency key, a
//!   username at login). `update_*` and `delete_*` fail with `NotFound` when no row matched.
//! - **Errors:** a unique violation is [`StoreError::Conflict`] (e.g. a taken username), a foreign
//!   key violation is [`StoreError::ForeignKey`] (a referenced row is missing, or a row to delete is
//!   still referenced), a CHECK violation is [`StoreError::Invalid`]; the same on both backends.
//! - **Transactions:** every change that writes more than one row (a pairing with its members, a
//!   series with its receivers, a term's days, a school's bells, a failed-login count) runs in one
//!   transaction: it happens completely or not at all.
//! - **Deletion:** owned details (a term's days, a school's bells, a pairing's members, a series'
//!   receivers and exceptions, a user's sessions and idempotency keys) are deleted with their owner;
//!   anything else still referenced blocks the delete ([`StoreError::ForeignKey`]). Disable users
//!   rather than delete them; a series with attendance cannot be deleted (attendance is evidence).
//! - **Usernames are unique byte for byte** (case-sensitive on both backends); normalise them
//!   (e.g. lowercase) before they reach the store if `Zhang` and `zhang` must be the same account.
//! - **Listing order** by name follows the backend's collation (bytewise on SQLite; the database's
//!   locale on PostgreSQL), so sort again for display if the order matters (e.g. by pinyin).
//!
//! # Portability (why the SQL looks the way it does)
//! All SQL goes through sqlx's `Any` driver. Placeholders are `$1, $2, …` on both backends (sqlx's
//! SQLite driver binds `$N` by number; a test proves it), and may repeat in one statement. Columns
//! are `TEXT` and `INTEGER` only; booleans are `INTEGER` 0/1, because `Any` cannot decode an SQLite
//! integer as `bool`. SQL text is always a constant (`&'static str`, some built with `concat!`);
//! values are always bound, never formatted into SQL.
//!
//! # Layout
//! - [`error`]: [`StoreError`] and the mapping of database errors.
//! - [`codec`]: text formats of times and dates, and row-decoding helpers.
//! - [`kinds`]: the text-coded enums (school kind, role, …).
//! - [`org`]: districts, schools, classrooms.
//! - [`accounts`]: users, browser sessions, API tokens.
//! - [`audit`]: the audit log.
//! - [`calendar`]: subjects, terms and their days, bell periods.
//! - [`pairings`]: pairings with their schools and subjects.
//! - [`series`]: class series with receivers, and their exceptions.
//! - [`idempotency`]: stored responses of idempotent requests.
//! - [`attendance`]: who joined which lesson, when.
//! - [`recording`]: recording classrooms: the recorders' last reports and the lesson archive.
//! - [`review`]: lesson observation (听评课): rubrics, comments, reviews, S-T results.

pub mod accounts;
pub mod archive;
pub mod attendance;
pub mod audit;
pub mod calendar;
pub mod codec;
pub mod error;
pub mod idempotency;
pub mod kinds;
pub mod org;
pub mod pairings;
pub mod recording;
pub mod review;
pub mod series;
#[cfg(test)]
mod tests;

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Transaction};

pub use accounts::{ApiTokenRow, BrowserSessionRow, UserRow};
pub use archive::{AssignmentRow, ClipRow, ClipState, OpenRoomRow};
pub use attendance::AttendanceRow;
pub use audit::{AuditFilter, AuditRow};
pub use calendar::{BellPeriodRow, SubjectRow, TermDayRow, TermRow};
pub use error::StoreError;
pub use idempotency::IdempotencyRow;
pub use kinds::{ClassroomKind, ExceptionKind, PairingScope, Role, SchoolKind, TermDayKind};
pub use org::{ClassroomRow, DistrictRow, SchoolRow};
pub use pairings::PairingRow;
pub use recording::{
    LessonFilter, LessonKind, LessonRow, LessonVisibility, ListedLesson, RecorderStatusRow,
};
pub use review::{CommentRow, ReviewRow, RubricBand, RubricItem, RubricRow, StKind, StResultRow};
pub use series::{ExceptionRow, SeriesRow};

/// Migrations in `gateway/migrations/`, embedded in the binary; the same files for both backends.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Per-connection SQLite settings: enforce foreign keys (off by default in SQLite) and wait up to
/// 5 s for a lock instead of failing. `synchronous` stays at SQLite's default, FULL: schools lose
/// power, and a committed write (an attendance record, an audit entry) must survive it.
const SQLITE_CONNECTION_PRAGMAS: [&str; 2] =
    ["PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 5000"];

/// Connections per pool: enough for a county's join storm on PostgreSQL; SQLite serialises
/// writers anyway and readers run in parallel under WAL.
const POOL_SIZE: u32 = 8;

/// Configuration of the store (`[gateway.store]` in `duet.toml`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Database URL. Empty (the default): the SQLite file `<data_dir>/duet.db`. Otherwise
    /// `sqlite://<path>?mode=rwc` or `postgres://user:password@host:5432/database`.
    pub url: String,
}

impl StoreConfig {
    /// Checks the URL's scheme.
    pub fn validate(&self) -> Result<(), String> {
        if self.url.is_empty() || Backend::of_url(&self.url).is_some() {
            Ok(())
        } else {
            Err("gateway.store.url must be empty, sqlite://… or postgres://…".into())
        }
    }

    /// Opens the configured store; an empty URL means SQLite in `data_dir` (created if missing).
    pub async fn open(&self, data_dir: &Path) -> Result<Store, StoreError> {
        if self.url.is_empty() {
            Store::sqlite_in(data_dir).await
        } else {
            Store::open(&self.url).await
        }
    }
}

/// The database behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, a file in the data directory (the embedded default).
    Sqlite,
    /// PostgreSQL (production).
    Postgres,
}

impl Backend {
    /// The backend a URL names, by its scheme.
    fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// The gateway's storage: a pool of connections to SQLite or PostgreSQL with the schema migrated.
/// Cloning is cheap and shares the pool. The repository functions live in the submodules.
#[derive(Clone, Debug)]
pub struct Store {
    /// The connections; every query goes through it.
    pool: AnyPool,
    /// Which database the pool talks to: decides the pragmas and how a write transaction begins.
    backend: Backend,
}

impl Store {
    /// Connects to `url`, applies SQLite's settings (WAL, foreign keys, busy timeout) and runs the
    /// migrations. `url` is `sqlite://<path>?mode=rwc` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        // Errors name the scheme only: the URL may carry a password.
        let scheme = url.split(':').next().unwrap_or_default();
        let backend = Backend::of_url(url)
            .ok_or_else(|| StoreError::Config(format!("unsupported database scheme {scheme:?}")))?;
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Config(format!("bad database URL: {e}")))?;
        if backend == Backend::Sqlite {
            enable_wal(&options).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(POOL_SIZE)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in SQLITE_CONNECTION_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::db("connecting"))?;
        MIGRATOR.run(&pool).await?;
        // The URL is not logged: it may carry a password.
        tracing::info!(?backend, "store opened and migrated");
        Ok(Store { pool, backend })
    }

    /// Opens (creating if missing) the SQLite store `<data_dir>/duet.db`; creates `data_dir` too.
    pub async fn sqlite_in(data_dir: &Path) -> Result<Store, StoreError> {
        tokio::fs::create_dir_all(data_dir).await.map_err(|e| {
            StoreError::Config(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = std::path::absolute(data_dir.join("duet.db"))
            .map_err(|e| StoreError::Config(format!("bad data directory: {e}")))?;
        Store::open(&sqlite_url(&path)?).await
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; waits for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so two writers queue on the busy timeout instead of failing when a reader upgrades.
    async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        };
        tx.map_err(StoreError::db("beginning a transaction"))
    }

    /// Begins a read-only transaction whose reads all see one snapshot, for reads that span
    /// several statements (a series and its receivers). SQLite in WAL mode gives a deferred
    /// transaction a snapshot at its first read; PostgreSQL needs REPEATABLE READ for that.
    async fn begin_read(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin().await,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await
            }
        };
        tx.map_err(StoreError::db("beginning a transaction"))
    }
}

/// Switches an SQLite database to write-ahead logging, once, on its own connection: the journal
/// mode is stored in the file, and changing it needs a lock the busy timeout does not wait for, so
/// it must not race the pool's connections.
async fn enable_wal(options: &AnyConnectOptions) -> Result<(), StoreError> {
    let mut conn = options
        .connect()
        .await
        .map_err(StoreError::db("connecting"))?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
        .fetch_one(&mut conn)
        .await
        .map_err(StoreError::db("enabling WAL"))?;
    conn.close().await.map_err(StoreError::db("connecting"))?;
    // An in-memory database answers `memory`: there is no file to log ahead of.
    if mode != "wal" && mode != "memory" {
        return Err(StoreError::Config(format!(
            "SQLite refused WAL (journal mode {mode})"
        )));
    }
    Ok(())
}

/// The `sqlite://` URL of a file, created if missing. Bytes other than unreserved ASCII and `/`
/// are percent-encoded (sqlx decodes them), so spaces, `?`, `#` and Chinese names survive.
fn sqlite_url(path: &Path) -> Result<String, StoreError> {
    let text = path
        .to_str()
        .ok_or_else(|| StoreError::Config(format!("path is not UTF-8: {}", path.display())))?;
    let mut url = String::from("sqlite://");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

/// Id prefixes, one per entity: `new_id(id_prefix::SCHOOL)` gives `sch_…`.
pub mod id_prefix {
    /// 区县: [`super::DistrictRow`].
    pub const DISTRICT: &str = "dst";
    /// [`super::SchoolRow`].
    pub const SCHOOL: &str = "sch";
    /// [`super::ClassroomRow`].
    pub const CLASSROOM: &str = "cls";
    /// [`super::UserRow`].
    pub const USER: &str = "usr";
    /// [`super::ApiTokenRow`].
    pub const API_TOKEN: &str = "tok";
    /// [`super::AuditRow`].
    pub const AUDIT: &str = "aud";
    /// [`super::SubjectRow`].
    pub const SUBJECT: &str = "sub";
    /// [`super::TermRow`].
    pub const TERM: &str = "trm";
    /// [`super::PairingRow`].
    pub const PAIRING: &str = "par";
    /// [`super::SeriesRow`].
    pub const SERIES: &str = "ser";
    /// [`super::AttendanceRow`].
    pub const ATTENDANCE: &str = "att";
    /// [`super::LessonRow`] (chosen by the recorder, which uses this prefix).
    pub const LESSON: &str = "les";
}

/// A new id: `prefix`, `_`, and 16 random lowercase base32 characters (80 bits), e.g.
/// `new_id("sch")` = `sch_k3xq7m2d9abf4t6w`. Use a prefix from [`id_prefix`].
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(prefix.len() + 17);
    id.push_str(prefix);
    id.push('_');
    for _ in 0..16 {
        id.push(char::from(ALPHABET[rng.random_range(0..32)]));
    }
    id
}
