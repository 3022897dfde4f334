-- Live classes in the archive and lesson observation (听评课). Portable SQL as in 0001/0002:
-- TEXT ids and times (RFC 3339 UTC), INTEGER for small numbers and milliseconds, JSON as TEXT.

-- Where a lesson came from: a recording classroom (`room`) or a recorded live class (`live`),
-- whose pairing widens who may see it (the paired schools). `published` = 0 hides a lesson from
-- everyone but its school's admins and the district (unpublishing is audited).
ALTER TABLE lessons ADD COLUMN kind TEXT NOT NULL DEFAULT 'room' CHECK (kind IN ('room', 'live'));
ALTER TABLE lessons ADD COLUMN pairing_id TEXT;
ALTER TABLE lessons ADD COLUMN published INTEGER NOT NULL DEFAULT 1 CHECK (published IN (0, 1));
CREATE INDEX lessons_pairing ON lessons (pairing_id);

-- A reviewer (or any account) assigned to review a lesson, by a school or district admin.
CREATE TABLE review_assignments (
    lesson_id   TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    reviewer_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    assigned_by TEXT NOT NULL,
    assigned_at TEXT NOT NULL,
    PRIMARY KEY (lesson_id, reviewer_id)
);
CREATE INDEX review_assignments_reviewer ON review_assignments (reviewer_id);

-- A rubric template of a district: `items` is a JSON array of {key, name, weight} whose weights
-- sum to 100, `bands` a JSON array of {min, label} (grade bands, highest first).
CREATE TABLE rubrics (
    id          TEXT NOT NULL PRIMARY KEY,
    district_id TEXT NOT NULL REFERENCES districts (id),
    name        TEXT NOT NULL,
    items       TEXT NOT NULL,
    bands       TEXT NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX rubrics_district ON rubrics (district_id);

-- A time-stamped margin comment (旁评) on a lesson, at `at_ms` on the lesson's timeline.
CREATE TABLE review_comments (
    id         TEXT NOT NULL PRIMARY KEY,
    lesson_id  TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    author_id  TEXT NOT NULL REFERENCES users (id),
    at_ms      INTEGER NOT NULL CHECK (at_ms >= 0),
    source_id  TEXT,
    category   TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX review_comments_lesson ON review_comments (lesson_id, at_ms);

-- One score sheet and overall evaluation (总评) per reviewer and lesson. `scores` is a JSON
-- object item key → points; `total` their sum; `evaluation` a JSON object
-- {strengths, weaknesses, suggestions, summary}.
CREATE TABLE reviews (
    lesson_id   TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    reviewer_id TEXT NOT NULL REFERENCES users (id),
    rubric_id   TEXT NOT NULL REFERENCES rubrics (id),
    scores      TEXT NOT NULL,
    total       INTEGER NOT NULL CHECK (total BETWEEN 0 AND 100),
    evaluation  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (lesson_id, reviewer_id)
);

-- S-T analysis results: the automatic one (from the media) and a reviewer's correction beside
-- it. `samples` is the code string (e.g. "TTSST…"), `variant` 'st' (two codes) or 'std'
-- (with D = dialogue); `result` the computed JSON (n, rt, ch, type, shares).
CREATE TABLE st_results (
    lesson_id   TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('automatic', 'corrected')),
    variant     TEXT NOT NULL CHECK (variant IN ('st', 'std')),
    interval_ms INTEGER NOT NULL CHECK (interval_ms > 0),
    samples     TEXT NOT NULL,
    result      TEXT NOT NULL,
    author_id   TEXT,
    computed_at TEXT NOT NULL,
    PRIMARY KEY (lesson_id, kind)
);

-- A clip export (晒课) of a lesson: [start_ms, end_ms) with a title card, rendered in the
-- background; `file` is the rendered file's path under the gateway's data directory.
CREATE TABLE clips (
    id           TEXT NOT NULL PRIMARY KEY,
    lesson_id    TEXT NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    requested_by TEXT NOT NULL,
    start_ms     INTEGER NOT NULL CHECK (start_ms >= 0),
    end_ms       INTEGER NOT NULL,
    title_card   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'rendering', 'done', 'failed')),
    progress     REAL NOT NULL DEFAULT 0,
    error        TEXT,
    file         TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CHECK (start_ms < end_ms)
);
CREATE INDEX clips_lesson ON clips (lesson_id);
