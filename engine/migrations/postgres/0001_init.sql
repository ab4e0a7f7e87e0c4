-- duban's store, PostgreSQL flavour. Times are milliseconds since the Unix epoch
-- (UTC); JSON is stored as text. Keep in step with ../sqlite/0001_init.sql.
CREATE TABLE definitions (
    id          TEXT    NOT NULL,
    version     BIGINT NOT NULL,
    hash        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    files       TEXT    NOT NULL,
    file        TEXT    NOT NULL,
    deployed_at BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('instance', 0);

CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    definition  TEXT    NOT NULL,
    version     BIGINT NOT NULL,
    profile     TEXT,
    status      TEXT    NOT NULL,
    revision    BIGINT NOT NULL,
    state       TEXT    NOT NULL,
    started_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX instances_status ON instances (status, definition);

CREATE TABLE tasks (
    id         TEXT PRIMARY KEY,
    instance   TEXT    NOT NULL,
    step       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    assignees  TEXT    NOT NULL,
    opened_at  BIGINT NOT NULL,
    due        BIGINT,
    last_day   TEXT,
    closed_at  BIGINT,
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
    due         BIGINT NOT NULL,
    kind        TEXT    NOT NULL,
    provisional BIGINT NOT NULL,
    -- Which engine process claimed the timer, and until when its claim holds.
    owner       TEXT,
    lease_until BIGINT
);
CREATE INDEX timers_due ON timers (due);

CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,
    instance   TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    attempts   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- When the dispatcher may try (again), who holds the row, the last error.
    next_attempt BIGINT NOT NULL DEFAULT 0,
    lease_until  BIGINT,
    last_error   TEXT,
    sent_at      BIGINT
);
CREATE INDEX outbox_status ON outbox (status, id);

CREATE TABLE history (
    id          BIGSERIAL PRIMARY KEY,
    instance    TEXT    NOT NULL,
    at          BIGINT NOT NULL,
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
    history  BIGINT NOT NULL,
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
    entry      BIGINT NOT NULL,
    last       BIGINT NOT NULL,
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
