-- History lists the users of a reaction in the order they reacted, which is the order of
-- their `reaction` events: a client that applies the events it missed to a snapshot
-- gets exactly the fresh history (PROTOCOL §history, §Ordering). `created_at` cannot
-- order reactions made in the same millisecond, so each row keeps its event's seq.
ALTER TABLE reactions ADD COLUMN seq INTEGER;
UPDATE reactions SET seq = (
    SELECT max(e.seq) FROM events AS e
    WHERE e.room_id = reactions.room_id AND e.message_id = reactions.message_id
      AND e.type = 'reaction' AND e.user_id = reactions.user_id
      AND json_extract(e.payload, '$.emoji') = reactions.emoji
);
