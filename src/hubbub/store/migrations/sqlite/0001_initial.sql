-- Rooms and their last assigned seq: the next event of a room gets last_seq + 1.
CREATE TABLE rooms (
    room_id   TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL
) WITHOUT ROWID;

-- Every persisted room event, as it went out on the wire: the room's ordered log.
CREATE TABLE events (
    room_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_by_message ON events (room_id, message_id);

-- The current state of each message (edits applied, deletes as tombstones).
CREATE TABLE messages (
    room_id        TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    user_id        TEXT NOT NULL,
    username       TEXT NOT NULL,
    content        TEXT,
    created_at     INTEGER NOT NULL,
    edited_at      INTEGER,
    deleted_at     INTEGER,
    client_msg_id  TEXT,
    reply_to       TEXT,
    PRIMARY KEY (room_id, message_id)
);
CREATE UNIQUE INDEX messages_by_seq ON messages (room_id, seq);
-- PROTOCOL §Ordering: clientMsgId makes chat idempotent per user.
CREATE UNIQUE INDEX messages_by_client_id ON messages (user_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE reactions (
    room_id     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, message_id, emoji, user_id)
) WITHOUT ROWID;
