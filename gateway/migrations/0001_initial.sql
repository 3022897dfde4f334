-- Duet gateway: the initial schema. The same file runs on SQLite and PostgreSQL, so it uses only
-- portable SQL: TEXT ids made by the application (`dst_…`, `sch_…`), INTEGER for small numbers,
-- TEXT for times (RFC 3339 UTC, fixed width: `2025-09-01T00:00:00.000000Z`), dates (`YYYY-MM-DD`)
-- and times of day (`HH:MM`, school local time); no SERIAL/AUTOINCREMENT, no backend-only types.
-- Booleans are INTEGER 0/1 (SQLite has no boolean type).
--
-- Deletion policy: owned detail rows (a term's days, a school's bells, a pairing's members, a
-- series' receivers and exceptions, a user's sessions and idempotency keys) go with their owner
-- (ON DELETE CASCADE). Everything else is RESTRICT (the default): deleting a district that still
-- has schools, or a series that has attendance, is refused rather than silently wiping records.

CREATE TABLE districts (
    id   TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE schools (
    id          TEXT NOT NULL PRIMARY KEY,
    district_id TEXT NOT NULL REFERENCES districts (id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('urban', 'rural', 'teaching_point'))
);
CREATE INDEX schools_district ON schools (district_id);

CREATE TABLE classrooms (
    id           TEXT NOT NULL PRIMARY KEY,
    school_id    TEXT NOT NULL REFERENCES schools (id),
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('lead', 'receiving', 'recording')),
    devices_json TEXT NOT NULL
);
CREATE INDEX classrooms_school ON classrooms (school_id);

CREATE TABLE users (
    id            TEXT NOT NULL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL
        CHECK (role IN ('district_admin', 'school_admin', 'teacher', 'classroom', 'reviewer')),
    district_id   TEXT REFERENCES districts (id),
    school_id     TEXT REFERENCES schools (id),
    classroom_id  TEXT REFERENCES classrooms (id),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until  TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX users_district ON users (district_id);
CREATE INDEX users_school ON users (school_id);
CREATE INDEX users_classroom ON users (classroom_id);

CREATE TABLE browser_sessions (
    id_hash    TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_at);

CREATE TABLE api_tokens (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    district_id TEXT REFERENCES districts (id),
    school_id   TEXT REFERENCES schools (id),
    created_by  TEXT NOT NULL REFERENCES users (id),
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_tokens_district ON api_tokens (district_id);
CREATE INDEX api_tokens_school ON api_tokens (school_id);
CREATE INDEX api_tokens_created_by ON api_tokens (created_by);

-- The audit log outlives what it mentions: actor and target are plain text, not foreign keys.
CREATE TABLE audit_log (
    id     TEXT NOT NULL PRIMARY KEY,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    ip     TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at);
CREATE INDEX audit_log_target_at ON audit_log (target, at);

CREATE TABLE subjects (
    id          TEXT NOT NULL PRIMARY KEY,
    district_id TEXT NOT NULL REFERENCES districts (id),
    name        TEXT NOT NULL
);
CREATE INDEX subjects_district ON subjects (district_id);

CREATE TABLE terms (
    id          TEXT NOT NULL PRIMARY KEY,
    district_id TEXT NOT NULL REFERENCES districts (id),
    name        TEXT NOT NULL,
    start_date  TEXT NOT NULL,
    end_date    TEXT NOT NULL
);
CREATE INDEX terms_district ON terms (district_id);

-- 调休: a `makeup` day runs the timetable of `follows_weekday` (1 = Monday … 7 = Sunday).
CREATE TABLE term_days (
    term_id         TEXT NOT NULL REFERENCES terms (id) ON DELETE CASCADE,
    date            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('holiday', 'makeup')),
    follows_weekday INTEGER CHECK (follows_weekday BETWEEN 1 AND 7),
    PRIMARY KEY (term_id, date),
    CHECK ((kind = 'holiday' AND follows_weekday IS NULL)
        OR (kind = 'makeup' AND follows_weekday IS NOT NULL))
);

CREATE TABLE bell_periods (
    school_id  TEXT NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    period     INTEGER NOT NULL CHECK (period >= 1),
    start_time TEXT NOT NULL,
    end_time   TEXT NOT NULL,
    PRIMARY KEY (school_id, period)
);

CREATE TABLE pairings (
    id             TEXT NOT NULL PRIMARY KEY,
    district_id    TEXT NOT NULL REFERENCES districts (id),
    lead_school_id TEXT NOT NULL REFERENCES schools (id),
    scope          TEXT NOT NULL CHECK (scope IN ('county', 'prefecture', 'province')),
    round_start    TEXT NOT NULL,
    round_end      TEXT NOT NULL
);
CREATE INDEX pairings_district ON pairings (district_id);
CREATE INDEX pairings_lead_school ON pairings (lead_school_id);

CREATE TABLE pairing_schools (
    pairing_id TEXT NOT NULL REFERENCES pairings (id) ON DELETE CASCADE,
    school_id  TEXT NOT NULL REFERENCES schools (id),
    PRIMARY KEY (pairing_id, school_id)
);
CREATE INDEX pairing_schools_school ON pairing_schools (school_id);

CREATE TABLE pairing_subjects (
    pairing_id TEXT NOT NULL REFERENCES pairings (id) ON DELETE CASCADE,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    PRIMARY KEY (pairing_id, subject_id)
);
CREATE INDEX pairing_subjects_subject ON pairing_subjects (subject_id);

CREATE TABLE class_series (
    id                TEXT NOT NULL PRIMARY KEY,
    term_id           TEXT NOT NULL REFERENCES terms (id),
    pairing_id        TEXT REFERENCES pairings (id),
    weekday           INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    period            INTEGER NOT NULL CHECK (period >= 1),
    lead_classroom_id TEXT NOT NULL REFERENCES classrooms (id),
    teacher_id        TEXT NOT NULL REFERENCES users (id),
    subject_id        TEXT NOT NULL REFERENCES subjects (id),
    created_by        TEXT NOT NULL REFERENCES users (id),
    created_at        TEXT NOT NULL
);
CREATE INDEX class_series_term ON class_series (term_id);
CREATE INDEX class_series_pairing ON class_series (pairing_id);
CREATE INDEX class_series_lead_classroom ON class_series (lead_classroom_id);
CREATE INDEX class_series_teacher ON class_series (teacher_id);
CREATE INDEX class_series_subject ON class_series (subject_id);
CREATE INDEX class_series_created_by ON class_series (created_by);

CREATE TABLE class_series_receivers (
    series_id    TEXT NOT NULL REFERENCES class_series (id) ON DELETE CASCADE,
    classroom_id TEXT NOT NULL REFERENCES classrooms (id),
    PRIMARY KEY (series_id, classroom_id)
);
CREATE INDEX class_series_receivers_classroom ON class_series_receivers (classroom_id);

-- At most one exception per series and date: `cancel` drops that date's occurrence, `move` drops it
-- and adds one on `new_date` at `new_period`.
CREATE TABLE class_exceptions (
    series_id  TEXT NOT NULL REFERENCES class_series (id) ON DELETE CASCADE,
    date       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('cancel', 'move')),
    new_date   TEXT,
    new_period INTEGER CHECK (new_period >= 1),
    PRIMARY KEY (series_id, date),
    CHECK (kind = 'cancel' OR (new_date IS NOT NULL AND new_period IS NOT NULL))
);

CREATE TABLE idempotency_keys (
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    response_json TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Attendance is evidence (training hours, participation), so a series with attendance cannot be
-- deleted (RESTRICT). `participant` is whoever joined (a user or classroom id, as the caller records
-- it), deliberately not a foreign key so the record survives the account.
CREATE TABLE attendance (
    id          TEXT NOT NULL PRIMARY KEY,
    series_id   TEXT NOT NULL REFERENCES class_series (id),
    date        TEXT NOT NULL,
    participant TEXT NOT NULL,
    role        TEXT NOT NULL,
    joined_at   TEXT NOT NULL,
    left_at     TEXT
);
CREATE INDEX attendance_series_date ON attendance (series_id, date);
CREATE INDEX attendance_participant ON attendance (participant);
