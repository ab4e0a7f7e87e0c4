-- duban's store, SQLite flavour. Times are milliseconds since the Unix epoch
-- (UTC); JSON is stored as text. Keep in step with ../postgres/0001_init.sql.
CREATE TABLE definitions (
    id          TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    files       TEXT    NOT NULL,
    file        TEXT    NOT NULL,
    deployed_at INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('instance', 0);

CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    definition  TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    profile     TEXT,
    status      TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX instances_status ON instances (status, definition);

CREATE TABLE tasks (
    id         TEXT PRIMARY KEY,
    instance   TEXT    NOT NULL,
    step       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    assignees  TEXT    NOT NULL,
    opened_at  INTEGER NOT NULL,
    due        INTEGER,
    last_day   TEXT,
    closed_at  INTEGER,
    outcome    TEXT
);
CREATE INDEX tasks_instance ON tasks (instance);
CREATE INDEX tasks_open_due ON tasks (closed_at, due);

CREATE TABLE task_assignees (
    task   TEXT NOT NULL,
    person TEXT NOT NULL,
    PRIMARY KEY (task, person)
);
CREATE INDEX task_assignees_person ON task_assignees (person);

CREATE TABLE timers (
    id          TEXT PRIMARY KEY,
    instance    TEXT    NOT NULL,
    due         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    provisional INTEGER NOT NULL,
    -- Which engine process claimed the timer, and until when its claim holds.
    owner       TEXT,
    lease_until INTEGER
);
CREATE INDEX timers_due ON timers (due);

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    instance   TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    -- When the dispatcher may try (again), who holds the row, the last error.
    next_attempt INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER,
    last_error   TEXT,
    sent_at      INTEGER
);
CREATE INDEX outbox_status ON outbox (status, id);

CREATE TABLE history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance    TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    what        TEXT    NOT NULL,
    step_before TEXT,
    step_after  TEXT,
    changed     TEXT    NOT NULL,
    deadline    TEXT,
    note        TEXT
);
CREATE INDEX history_instance ON history (instance, id);

CREATE TABLE history_people (
    history  INTEGER NOT NULL,
    person   TEXT    NOT NULL,
    instance TEXT    NOT NULL,
    PRIMARY KEY (person, history)
);

CREATE TABLE awaited_messages (
    name     TEXT NOT NULL,
    key      TEXT NOT NULL,
    instance TEXT NOT NULL,
    PRIMARY KEY (name, key, instance)
);

-- Child instances started by `call` steps, and where their result goes.
CREATE TABLE children (
    child  TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    step   TEXT NOT NULL
);

-- How far each recurring start has been processed: the last occurrence
-- considered, per definition and schedule entry.
CREATE TABLE cron_cursor (
    definition TEXT    NOT NULL,
    entry      INTEGER NOT NULL,
    last       INTEGER NOT NULL,
    PRIMARY KEY (definition, entry)
);

CREATE TABLE people (
    id           TEXT PRIMARY KEY,
    record       TEXT NOT NULL
);

CREATE TABLE person_roles (
    person TEXT NOT NULL,
    role   TEXT NOT NULL,
    county TEXT,
    PRIMARY KEY (person, role)
);
CREATE INDEX person_roles_role ON person_roles (role, county);

CREATE TABLE agencies (
    id     TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
