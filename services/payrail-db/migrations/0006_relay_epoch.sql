-- payrail shard schema, version 6: a fencing token for the outbox relay's lease (issue 13).
--
-- epoch grows by one each time the lease is taken after it ran out (by another relay, or
-- by the same one after a stall). A relay marks rows published only in a statement that
-- joins the lease row on its holder and epoch, so a relay that stalled past its lease
-- marks nothing once another took over.
ALTER TABLE outbox_relay_lease ADD COLUMN IF NOT EXISTS epoch BIGINT UNSIGNED NOT NULL DEFAULT 0;
