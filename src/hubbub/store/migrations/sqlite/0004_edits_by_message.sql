-- Only a delete looks events up by message id: it erases the content of the message's chat
-- event and of its edits. The chat event is found by its seq (messages.seq), so only edits
-- need an index by message, and a chat, by far the most common event, no longer writes to
-- one (docs/decisions/0023-only-edits-are-indexed-by-message.md).
DROP INDEX events_by_message;
CREATE INDEX edits_by_message ON events (room_id, message_id) WHERE type = 'message_edit';
