-- payrail shard schema, version 3: the PG's side of the lifecycle (issue 12).
--
-- capture_requested_amount is what a capture asked for; captured_amount stays 0 until the
-- PG captured it. Rows written before this version carried the requested amount in
-- captured_amount while the capture was pending: they are moved over.
ALTER TABLE payment ADD COLUMN IF NOT EXISTS capture_requested_amount BIGINT NOT NULL DEFAULT 0 AFTER amount;

UPDATE payment SET capture_requested_amount = captured_amount WHERE capture_requested_amount = 0 AND captured_amount > 0;

UPDATE payment SET captured_amount = 0 WHERE status IN ('CAPTURE_REQUESTED', 'CAPTURE_FAILED') AND refunded_amount = 0 AND refund_pending_amount = 0;

-- Unknown PG outcomes of authorizations: the resolver finds records whose lease ran out by
-- this index, and keeps its schedule in the record itself.
ALTER TABLE idempotency_record ADD COLUMN IF NOT EXISTS resolve_attempts INT NOT NULL DEFAULT 0;

ALTER TABLE idempotency_record ADD COLUMN IF NOT EXISTS unknown_since DATETIME(3) NULL;

ALTER TABLE idempotency_record ADD COLUMN IF NOT EXISTS resolve_at DATETIME(3) NULL;

ALTER TABLE idempotency_record ADD INDEX IF NOT EXISTS ix_unresolved (state, lease_until);

-- A refund's first answer, replayed byte for byte to a retry with its key.
ALTER TABLE refund ADD COLUMN IF NOT EXISTS response_body BLOB NULL;

-- Voids at the PG, one per payment (`job_id` = payment id, request id `void-<paymentId>`):
-- a merchant's void, an expired authorization, the release of a capture that failed.
CREATE TABLE IF NOT EXISTS void_request (
  job_id BIGINT NOT NULL PRIMARY KEY,
  payment_id BIGINT NOT NULL,
  merchant_id VARBINARY(32) NOT NULL,
  amount BIGINT NOT NULL,
  currency CHAR(3) NOT NULL,
  status VARCHAR(16) NOT NULL,
  attempts INT NOT NULL DEFAULT 0,
  next_attempt_at DATETIME(3) NOT NULL,
  last_error VARCHAR(255) NULL,
  pg_transaction_id VARCHAR(64) NULL,
  source_event_id BIGINT NOT NULL,
  source_partition INT NOT NULL,
  source_offset BIGINT NOT NULL,
  source_payload BLOB NOT NULL,
  created_at DATETIME(3) NOT NULL,
  updated_at DATETIME(3) NOT NULL,
  KEY ix_due (status, next_attempt_at)
) ENGINE=InnoDB;
