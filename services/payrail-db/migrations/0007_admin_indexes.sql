-- payrail shard schema, version 7: every admin read uses an index (issue 13, part 5).
--
-- ix_created serves the admin API's throughput (payments created per minute): a range on
-- created_at instead of a scan of the whole table. It is appended to in time order, like
-- the primary key, so an authorization pays one more append-mostly B-tree insert.
ALTER TABLE payment ADD INDEX IF NOT EXISTS ix_created (created_at);

-- The jobs' outcome summary (count by status and attempts) reads the due index alone once
-- it carries the attempts: a scan of a narrow index, not of the rows and their payloads.
-- The workers' claims use its first two columns as before.
ALTER TABLE settlement_request DROP INDEX IF EXISTS ix_due, ADD INDEX ix_due (status, next_attempt_at, attempts);
ALTER TABLE refund_request DROP INDEX IF EXISTS ix_due, ADD INDEX ix_due (status, next_attempt_at, attempts);
ALTER TABLE void_request DROP INDEX IF EXISTS ix_due, ADD INDEX ix_due (status, next_attempt_at, attempts);
