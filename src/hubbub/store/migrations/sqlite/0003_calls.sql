-- The call log: one row per call, written when the call ends (docs/topics/calls.md).
CREATE TABLE calls (
    call_id      TEXT PRIMARY KEY,
    caller       TEXT NOT NULL,
    callee       TEXT NOT NULL,
    room_id      TEXT,
    started_at   INTEGER NOT NULL,
    answered_at  INTEGER,
    ended_at     INTEGER NOT NULL,
    end_reason   TEXT NOT NULL,
    ended_by     TEXT
);
CREATE INDEX calls_by_caller ON calls (caller, started_at);
CREATE INDEX calls_by_callee ON calls (callee, started_at);
