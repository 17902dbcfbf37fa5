-- As sqlite/0007: messages are keyed by their id alone (time-ordered UUIDv7), so a batch of
-- chats appends to one leaf of the key instead of one in every room it touches
-- (docs/decisions/0034-messages-are-keyed-by-id.md). Lookups still name the room.
ALTER TABLE messages DROP CONSTRAINT messages_pkey;
ALTER TABLE messages ADD PRIMARY KEY (message_id);
