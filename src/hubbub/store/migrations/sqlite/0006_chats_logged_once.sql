-- A chat is stored once, in `messages`, and the room log (`events`) keeps the other events.
-- Recovery rebuilds a chat's event from its row, so the row keeps the content as sent
-- once an edit replaced it (docs/decisions/0033-a-chat-is-stored-once.md). No semicolons
-- in comments: the runner splits a script on them.
ALTER TABLE messages ADD COLUMN sent_content TEXT;
UPDATE messages SET sent_content = (
    SELECT json_extract(e.payload, '$.content') FROM events AS e
    WHERE e.room_id = messages.room_id AND e.seq = messages.seq AND e.type = 'chat'
) WHERE edited_at IS NOT NULL AND deleted_at IS NULL;
DELETE FROM events WHERE type = 'chat';
