-- payrail shard schema, version 1: payments, refunds, state history, the transactional
-- outbox, idempotency records and id sequences. Every statement is idempotent, because
-- MariaDB commits DDL implicitly and a crash may stop a migration half-way.
--
-- merchant ids and idempotency keys are VARBINARY: comparisons must be exact (case and
-- trailing spaces matter), which the PAD SPACE, case-insensitive default collation is not.

CREATE TABLE IF NOT EXISTS id_sequence (
  name VARCHAR(32) NOT NULL PRIMARY KEY,
  next_value BIGINT NOT NULL
) ENGINE=InnoDB;

INSERT IGNORE INTO id_sequence (name, next_value) VALUES ('payment', 0), ('refund', 0), ('event', 0);

CREATE TABLE IF NOT EXISTS payment (
  payment_id BIGINT NOT NULL PRIMARY KEY,
  merchant_id VARBINARY(32) NOT NULL,
  status VARCHAR(24) NOT NULL,
  amount BIGINT NOT NULL,
  captured_amount BIGINT NOT NULL DEFAULT 0,
  refunded_amount BIGINT NOT NULL DEFAULT 0,
  refund_pending_amount BIGINT NOT NULL DEFAULT 0,
  currency CHAR(3) NOT NULL,
  idempotency_key VARBINARY(64) NOT NULL,
  approval_number VARCHAR(32) NULL,
  pg_transaction_id VARCHAR(64) NULL,
  created_at DATETIME(3) NOT NULL,
  updated_at DATETIME(3) NOT NULL,
  KEY ix_merchant (merchant_id, payment_id),
  KEY ix_merchant_status (merchant_id, status, payment_id),
  KEY ix_status_updated (status, updated_at),
  -- Invariant 4 of system.md, enforced by the database as a last line of defence.
  CONSTRAINT ck_payment_amounts CHECK (
    amount > 0
    AND captured_amount >= 0 AND captured_amount <= amount
    AND refunded_amount >= 0 AND refund_pending_amount >= 0
    AND refunded_amount + refund_pending_amount <= captured_amount
  )
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS payment_status_history (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  payment_id BIGINT NOT NULL,
  status VARCHAR(24) NOT NULL,
  at DATETIME(3) NOT NULL,
  KEY ix_payment (payment_id, id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS refund (
  refund_id BIGINT NOT NULL PRIMARY KEY,
  payment_id BIGINT NOT NULL,
  merchant_id VARBINARY(32) NOT NULL,
  amount BIGINT NOT NULL,
  status VARCHAR(24) NOT NULL,
  reason VARCHAR(128) NOT NULL,
  idempotency_key VARBINARY(64) NULL,
  request_fingerprint VARCHAR(160) NOT NULL,
  created_at DATETIME(3) NOT NULL,
  updated_at DATETIME(3) NOT NULL,
  UNIQUE KEY uk_refund_idempotency (payment_id, idempotency_key),
  KEY ix_payment (payment_id, refund_id),
  CONSTRAINT ck_refund_amount CHECK (amount > 0)
) ENGINE=InnoDB;

-- The transactional outbox. `seq` is assigned at insert: the relay reads unpublished rows
-- by `seq` and never remembers a high-water mark, so a slow transaction's rows (a lower seq
-- committed late) are still picked up. A payment's later event can only be inserted after
-- its earlier one committed, so per-payment order follows `seq`.
CREATE TABLE IF NOT EXISTS outbox_event (
  seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  event_id BIGINT NOT NULL,
  payment_id BIGINT NOT NULL,
  merchant_id VARBINARY(32) NOT NULL,
  topic VARCHAR(64) NOT NULL,
  event_type VARCHAR(32) NOT NULL,
  payload BLOB NOT NULL,
  created_at DATETIME(3) NOT NULL,
  published_at DATETIME(3) NULL,
  UNIQUE KEY uk_event (event_id),
  KEY ix_unpublished (published_at, seq),
  KEY ix_payment (payment_id, seq)
) ENGINE=InnoDB;

-- One row: which relay instance publishes this shard's outbox, and until when.
CREATE TABLE IF NOT EXISTS outbox_relay_lease (
  id TINYINT NOT NULL PRIMARY KEY,
  holder VARCHAR(96) NOT NULL,
  lease_until DATETIME(3) NOT NULL
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS idempotency_record (
  merchant_id VARBINARY(32) NOT NULL,
  idempotency_key VARBINARY(64) NOT NULL,
  request_fingerprint VARCHAR(160) NOT NULL,
  state VARCHAR(16) NOT NULL,
  owner_token BIGINT NOT NULL,
  payment_id BIGINT NOT NULL,
  response_status SMALLINT NULL,
  response_body BLOB NULL,
  created_at DATETIME(3) NOT NULL,
  lease_until DATETIME(3) NOT NULL,
  PRIMARY KEY (merchant_id, idempotency_key),
  KEY ix_created (created_at)
) ENGINE=InnoDB;
