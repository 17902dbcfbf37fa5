-- As sqlite/0004: only a delete looks events up by message id, and it finds the chat event
-- by its seq, so only edits are indexed by message.
DROP INDEX events_by_message;
CREATE INDEX edits_by_message ON events (room_id, message_id) WHERE type = 'message_edit';
