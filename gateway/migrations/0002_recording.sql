-- Recording classrooms (录播教室): the latest state each recorder reported, and the lessons it
-- recorded and registered. Portable SQL as in 0001: TEXT ids and times (RFC 3339 UTC, fixed
-- width), INTEGER for small numbers, JSON kept as TEXT.

-- One row per recording classroom: the recorder's last report, verbatim, with the server's time
-- of receipt. Owned by the classroom (deleted with it).
CREATE TABLE recorder_status (
    classroom_id TEXT NOT NULL PRIMARY KEY REFERENCES classrooms (id) ON DELETE CASCADE,
    body         TEXT NOT NULL,
    reported_at  TEXT NOT NULL
);

-- A recorded lesson (课堂实录) in the archive. Recordings are evidence: a classroom or school that
-- has lessons cannot be deleted (RESTRICT). `series_id` is plain text, not a foreign key: the
-- lesson outlives the timetable that planned it, and a manual recording has none. `metadata` is
-- the whole JSON the recorder posted (files, gaps, parts), kept to answer a repeated post and to
-- show the details. `started_at` is the time axis of listings (newest first, by school or room).
CREATE TABLE lessons (
    id            TEXT NOT NULL PRIMARY KEY,
    classroom_id  TEXT NOT NULL REFERENCES classrooms (id),
    school_id     TEXT NOT NULL REFERENCES schools (id),
    series_id     TEXT,
    date          TEXT,
    period        INTEGER CHECK (period >= 1),
    title         TEXT NOT NULL,
    teacher       TEXT NOT NULL,
    subject       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    ended_at      TEXT NOT NULL,
    archive_uri   TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    CHECK (started_at < ended_at)
);
CREATE INDEX lessons_school_started ON lessons (school_id, started_at);
CREATE INDEX lessons_classroom_started ON lessons (classroom_id, started_at);
CREATE INDEX lessons_date ON lessons (date);
