-- The PostgreSQL schema: the same tables as the SQLite store (migrations/sqlite/0001-0003),
-- applied by hubbub.store.postgres.migrate in one transaction under an advisory lock.

-- Rooms and their last assigned seq. The writer of a node locks the rows of the rooms it
-- writes (in room_id order) and sets last_seq; the row lock serialises the writers of a room
-- across nodes, so seqs stay 1, 2, 3, ... with no gaps and no duplicates.
CREATE TABLE rooms (
    room_id   text PRIMARY KEY,
    last_seq  bigint NOT NULL
);

-- Every persisted room event, as it went out on the wire: the room's ordered log.
-- `payload` is text, not jsonb: it keeps the exact bytes that were broadcast, and JSON
-- escapes such as \u0000 that jsonb refuses. A delete rewrites the payloads of that
-- message's chat/edit events without their content.
CREATE TABLE events (
    room_id     text NOT NULL,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    message_id  text NOT NULL,
    user_id     text NOT NULL,
    created_at  bigint NOT NULL,
    payload     text NOT NULL,
    PRIMARY KEY (room_id, seq)
);
CREATE INDEX events_by_message ON events (room_id, message_id);

-- The current state of each message (edits applied, deletes as tombstones).
CREATE TABLE messages (
    room_id        text NOT NULL,
    message_id     text NOT NULL,
    seq            bigint NOT NULL,
    user_id        text NOT NULL,
    username       text NOT NULL,
    content        text,
    created_at     bigint NOT NULL,
    edited_at      bigint,
    deleted_at     bigint,
    client_msg_id  text,
    reply_to       text,
    PRIMARY KEY (room_id, message_id)
);
CREATE UNIQUE INDEX messages_by_seq ON messages (room_id, seq);
-- PROTOCOL §Ordering: clientMsgId makes chat idempotent per user, also across nodes.
CREATE UNIQUE INDEX messages_by_client_id ON messages (user_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

-- History lists the users of a reaction in the order of their `reaction` events, so each
-- row keeps its event's seq (created_at cannot order reactions of the same millisecond).
CREATE TABLE reactions (
    room_id     text NOT NULL,
    message_id  text NOT NULL,
    emoji       text NOT NULL,
    user_id     text NOT NULL,
    created_at  bigint NOT NULL,
    seq         bigint NOT NULL,
    PRIMARY KEY (room_id, message_id, emoji, user_id)
);

-- The call log: one row per call, written when the call ends (docs/topics/calls.md).
CREATE TABLE calls (
    call_id      text PRIMARY KEY,
    caller       text NOT NULL,
    callee       text NOT NULL,
    room_id      text,
    started_at   bigint NOT NULL,
    answered_at  bigint,
    ended_at     bigint NOT NULL,
    end_reason   text NOT NULL,
    ended_by     text
);
CREATE INDEX calls_by_caller ON calls (caller, started_at);
CREATE INDEX calls_by_callee ON calls (callee, started_at);
