-- Facts about people and agencies (一人一档, issue 13): written in the
-- transaction of the transition that records them, read by the core of any
-- process through `facts()`, `last_fact()`, `streak()` in CEL. `value` is
-- JSON (a text, an int, a bool or null); `at` milliseconds since the epoch.
CREATE TABLE facts (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    subject  TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    process  TEXT    NOT NULL,
    instance TEXT    NOT NULL,
    step     TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    note     TEXT
);
CREATE INDEX facts_subject ON facts (subject, id);
