//! Accounts: users, their browser sessions, and machine API tokens.
//!
//! The store keeps credentials as opaque text: `password_hash` is whatever the auth module's
//! hasher produced (argon2 PHC string), session ids and API tokens are stored only as hashes the
//! auth module computed. Nothing here hashes, compares secrets, or reads the clock.
//!
//! Invariants: `username` is unique (byte for byte); a user's scope ids reference existing rows;
//! deleting a user deletes their sessions and idempotency keys, and is refused while they teach
//! or created a series or a token (disable them instead). Login accounting
//! ([`Store::record_failed_login`], [`Store::lock_user`], [`Store::clear_failed_logins`]) changes
//! only the counters, atomically, so concurrent logins never lose a count;
//! [`Store::update_user`] leaves the counters alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::codec::{self, FromAnyRow, execute, execute_one, fetch_all, fetch_opt, instant_text};
use super::kinds::Role;
use super::{Store, StoreError};

/// A user: `users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    /// `usr_…`.
    pub id: String,
    /// Login name, unique (case-sensitive: normalise before storing).
    pub username: String,
    /// Name shown in the interface, e.g. `王老师`.
    pub display_name: String,
    /// The password hash as the auth module wrote it. Never serialised, so a row turned into JSON
    /// cannot leak it; deserialising leaves it empty.
    #[serde(skip_serializing, default)]
    pub password_hash: String,
    /// What the user is.
    pub role: Role,
    /// Home district, if the role is scoped to one.
    pub district_id: Option<String>,
    /// Home school, if any.
    pub school_id: Option<String>,
    /// The classroom of a classroom account.
    pub classroom_id: Option<String>,
    /// A disabled user cannot log in.
    pub disabled: bool,
    /// Failed logins since the last success.
    pub failed_logins: i32,
    /// No login before this instant.
    pub locked_until: Option<DateTime<Utc>>,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
}

/// A logged-in browser: `browser_sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserSessionRow {
    /// Hash of the session cookie's value (the value itself is never stored).
    pub id_hash: String,
    /// Whose session.
    pub user_id: String,
    /// The CSRF token bound to this session.
    pub csrf_token: String,
    /// When it began.
    pub created_at: DateTime<Utc>,
    /// When it ends; [`Store::delete_expired_sessions`] removes it after.
    pub expires_at: DateTime<Utc>,
}

/// A machine API token (a recorder, a school's integration): `api_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenRow {
    /// `tok_…`.
    pub id: String,
    /// What it is for, e.g. `录播主机 3 号`.
    pub name: String,
    /// Hash of the secret (the secret itself is shown once and never stored); unique.
    pub token_hash: String,
    /// District it is scoped to, if any.
    pub district_id: Option<String>,
    /// School it is scoped to, if any.
    pub school_id: Option<String>,
    /// The user who made it.
    pub created_by: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked token must be refused.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiTokenRow {
    /// Whether the token may still be used.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

impl FromAnyRow for UserRow {
    const WHAT: &'static str = "user";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(UserRow {
            id: codec::text(row, "id")?,
            username: codec::text(row, "username")?,
            display_name: codec::text(row, "display_name")?,
            password_hash: codec::text(row, "password_hash")?,
            role: codec::kind(row, "role")?,
            district_id: codec::opt_text(row, "district_id")?,
            school_id: codec::opt_text(row, "school_id")?,
            classroom_id: codec::opt_text(row, "classroom_id")?,
            disabled: codec::flag(row, "disabled")?,
            failed_logins: codec::int(row, "failed_logins")?,
            locked_until: codec::opt_instant(row, "locked_until")?,
            created_at: codec::instant(row, "created_at")?,
        })
    }
}

impl FromAnyRow for BrowserSessionRow {
    const WHAT: &'static str = "session";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(BrowserSessionRow {
            id_hash: codec::text(row, "id_hash")?,
            user_id: codec::text(row, "user_id")?,
            csrf_token: codec::text(row, "csrf_token")?,
            created_at: codec::instant(row, "created_at")?,
            expires_at: codec::instant(row, "expires_at")?,
        })
    }
}

impl FromAnyRow for ApiTokenRow {
    const WHAT: &'static str = "api token";
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ApiTokenRow {
            id: codec::text(row, "id")?,
            name: codec::text(row, "name")?,
            token_hash: codec::text(row, "token_hash")?,
            district_id: codec::opt_text(row, "district_id")?,
            school_id: codec::opt_text(row, "school_id")?,
            created_by: codec::text(row, "created_by")?,
            created_at: codec::instant(row, "created_at")?,
            revoked_at: codec::opt_instant(row, "revoked_at")?,
        })
    }
}

/// The columns of [`UserRow`], qualified by the alias `u`.
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.display_name, u.password_hash, u.role, u.district_id, u.school_id, \
         u.classroom_id, u.disabled, u.failed_logins, u.locked_until, u.created_at"
    };
}

/// The columns of [`ApiTokenRow`], qualified by the alias `t`.
macro_rules! token_columns {
    () => {
        "t.id, t.name, t.token_hash, t.district_id, t.school_id, t.created_by, t.created_at, \
         t.revoked_at"
    };
}

impl Store {
    /// Adds a user. [`StoreError::Conflict`] (`"username"`) if the username is taken.
    pub async fn create_user(&self, user: &UserRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO users (id, username, display_name, password_hash, role, district_id, \
             school_id, classroom_id, disabled, failed_logins, locked_until, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(&user.district_id)
        .bind(&user.school_id)
        .bind(&user.classroom_id)
        .bind(i32::from(user.disabled))
        .bind(user.failed_logins)
        .bind(user.locked_until.map(instant_text))
        .bind(instant_text(user.created_at));
        execute(&self.pool, query, "username").await.map(drop)
    }

    /// The user `id`.
    pub async fn get_user(&self, id: &str) -> Result<UserRow, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.id = $1"
        ))
        .bind(id);
        fetch_opt(&self.pool, query)
            .await?
            .ok_or_else(|| StoreError::not_found("user", id))
    }

    /// The user with this exact username, if any (the login lookup).
    pub async fn find_user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.username = $1"
        ))
        .bind(username);
        fetch_opt(&self.pool, query).await
    }

    /// Users of a school: its own (`school_id`) and its classrooms' accounts, by username.
    pub async fn list_users_in_school(&self, school_id: &str) -> Result<Vec<UserRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.school_id = $1 \
             OR u.classroom_id IN (SELECT id FROM classrooms WHERE school_id = $1) \
             ORDER BY u.username"
        ))
        .bind(school_id);
        fetch_all(&self.pool, query).await
    }

    /// Users of a district: those scoped to it, to one of its schools, or to one of their
    /// classrooms, by username.
    pub async fn list_users_in_district(
        &self,
        district_id: &str,
    ) -> Result<Vec<UserRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.district_id = $1 \
             OR u.school_id IN (SELECT id FROM schools WHERE district_id = $1) \
             OR u.classroom_id IN (SELECT c.id FROM classrooms c \
                JOIN schools s ON s.id = c.school_id WHERE s.district_id = $1) \
             ORDER BY u.username"
        ))
        .bind(district_id);
        fetch_all(&self.pool, query).await
    }

    /// Writes a user's profile: username, display name, password hash, role, scope and
    /// `disabled`. The login counters (`failed_logins`, `locked_until`) and `created_at` are left
    /// as stored. [`StoreError::Conflict`] if the new username is taken.
    pub async fn update_user(&self, user: &UserRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE users SET username = $2, display_name = $3, password_hash = $4, role = $5, \
             district_id = $6, school_id = $7, classroom_id = $8, disabled = $9 WHERE id = $1",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(&user.district_id)
        .bind(&user.school_id)
        .bind(&user.classroom_id)
        .bind(i32::from(user.disabled));
        match execute(&self.pool, query, "username").await? {
            0 => Err(StoreError::not_found("user", &user.id)),
            _ => Ok(()),
        }
    }

    /// Replaces a user's password hash.
    pub async fn set_password_hash(&self, id: &str, password_hash: &str) -> Result<(), StoreError> {
        let query = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(password_hash);
        execute_one(&self.pool, query, "user", id).await
    }

    /// Enables or disables a user.
    pub async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<(), StoreError> {
        let query = sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
            .bind(id)
            .bind(i32::from(disabled));
        execute_one(&self.pool, query, "user", id).await
    }

    /// Counts one more failed login, atomically, and returns the new count (the caller decides
    /// whether to [`Store::lock_user`]).
    pub async fn record_failed_login(&self, id: &str) -> Result<i32, StoreError> {
        let mut tx = self.begin().await?;
        let query = sqlx::query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1")
            .bind(id);
        execute_one(&mut *tx, query, "user", id).await?;
        let count: i32 = sqlx::query_scalar("SELECT failed_logins FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("user"))?;
        tx.commit().await.map_err(StoreError::db("user"))?;
        Ok(count)
    }

    /// Locks a user out until `until`.
    pub async fn lock_user(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let query = sqlx::query("UPDATE users SET locked_until = $2 WHERE id = $1")
            .bind(id)
            .bind(instant_text(until));
        execute_one(&self.pool, query, "user", id).await
    }

    /// After a successful login: zero failures, no lock.
    pub async fn clear_failed_logins(&self, id: &str) -> Result<(), StoreError> {
        let query =
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
                .bind(id);
        execute_one(&self.pool, query, "user", id).await
    }

    /// Deletes a user with their sessions and idempotency keys; [`StoreError::ForeignKey`] while
    /// they teach or created a series or a token.
    pub async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM users WHERE id = $1").bind(id);
        execute_one(&self.pool, query, "user", id).await
    }

    /// Stores a new browser session.
    pub async fn insert_session(&self, session: &BrowserSessionRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO browser_sessions (id_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.id_hash)
        .bind(&session.user_id)
        .bind(&session.csrf_token)
        .bind(instant_text(session.created_at))
        .bind(instant_text(session.expires_at));
        execute(&self.pool, query, "session").await.map(drop)
    }

    /// The session whose cookie hashes to `id_hash`, if any, **expired or not**: compare
    /// `expires_at` with now.
    pub async fn find_session(
        &self,
        id_hash: &str,
    ) -> Result<Option<BrowserSessionRow>, StoreError> {
        let query = sqlx::query(
            "SELECT id_hash, user_id, csrf_token, created_at, expires_at \
             FROM browser_sessions WHERE id_hash = $1",
        )
        .bind(id_hash);
        fetch_opt(&self.pool, query).await
    }

    /// Ends one session (logout).
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM browser_sessions WHERE id_hash = $1").bind(id_hash);
        execute_one(&self.pool, query, "session", id_hash).await
    }

    /// Ends every session of a user (password change, disable); returns how many.
    pub async fn delete_sessions_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let query = sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1").bind(user_id);
        execute(&self.pool, query, "session").await
    }

    /// Deletes sessions that expired at or before `now`; returns how many.
    pub async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let query = sqlx::query("DELETE FROM browser_sessions WHERE expires_at <= $1")
            .bind(instant_text(now));
        execute(&self.pool, query, "session").await
    }

    /// Stores a new API token. [`StoreError::Conflict`] if the id or hash is taken.
    pub async fn insert_api_token(&self, token: &ApiTokenRow) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, district_id, school_id, created_by, \
             created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(&token.district_id)
        .bind(&token.school_id)
        .bind(&token.created_by)
        .bind(instant_text(token.created_at))
        .bind(token.revoked_at.map(instant_text));
        execute(&self.pool, query, "api token").await.map(drop)
    }

    /// The token whose secret hashes to `token_hash`, if any, **revoked or not**: check
    /// [`ApiTokenRow::is_active`].
    pub async fn find_api_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<ApiTokenRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens t WHERE t.token_hash = $1"
        ))
        .bind(token_hash);
        fetch_opt(&self.pool, query).await
    }

    /// The token `id`.
    pub async fn get_api_token(&self, id: &str) -> Result<ApiTokenRow, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens t WHERE t.id = $1"
        ))
        .bind(id);
        fetch_opt(&self.pool, query)
            .await?
            .ok_or_else(|| StoreError::not_found("api token", id))
    }

    /// Tokens scoped to a district or to one of its schools, newest first.
    pub async fn list_api_tokens_in_district(
        &self,
        district_id: &str,
    ) -> Result<Vec<ApiTokenRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens t WHERE t.district_id = $1 \
             OR t.school_id IN (SELECT id FROM schools WHERE district_id = $1) \
             ORDER BY t.created_at DESC, t.id"
        ))
        .bind(district_id);
        fetch_all(&self.pool, query).await
    }

    /// Tokens scoped to a school, newest first.
    pub async fn list_api_tokens_of_school(
        &self,
        school_id: &str,
    ) -> Result<Vec<ApiTokenRow>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens t WHERE t.school_id = $1 ORDER BY t.created_at DESC, t.id"
        ))
        .bind(school_id);
        fetch_all(&self.pool, query).await
    }

    /// Revokes a token at `at`. Revoking twice keeps the first time.
    pub async fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(instant_text(at));
        execute_one(&self.pool, query, "api token", id).await
    }
}
