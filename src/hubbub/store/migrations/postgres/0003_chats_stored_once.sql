-- As sqlite/0006: a chat is stored once, in `messages`, and the room log keeps the other
-- events. Recovery rebuilds a chat's event from its row, so the row keeps the content as
-- sent once an edit replaced it (docs/decisions/0033-a-chat-is-stored-once.md).
ALTER TABLE messages ADD COLUMN sent_content text;
UPDATE messages AS m SET sent_content = e.payload::jsonb ->> 'content'
FROM events AS e
WHERE e.room_id = m.room_id AND e.seq = m.seq AND e.type = 'chat'
  AND m.edited_at IS NOT NULL AND m.deleted_at IS NULL;
DELETE FROM events WHERE type = 'chat';
