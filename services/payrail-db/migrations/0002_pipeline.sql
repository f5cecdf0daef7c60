-- payrail shard schema, version 2: the settlement and refund jobs of the workers, and the
-- double-entry ledger. Jobs live on the payment's shard; `job_id` is the payment id for
-- settlements and the refund id for refunds.

CREATE TABLE IF NOT EXISTS settlement_request (
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

CREATE TABLE IF NOT EXISTS refund_request (
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
  KEY ix_due (status, next_attempt_at),
  KEY ix_payment (payment_id)
) ENGINE=InnoDB;

-- One row per event the ledger applied: a redelivered event finds its row and is skipped.
CREATE TABLE IF NOT EXISTS ledger_event (
  event_id BIGINT NOT NULL PRIMARY KEY,
  payment_id BIGINT NOT NULL,
  event_type VARCHAR(32) NOT NULL,
  applied_at DATETIME(3) NOT NULL,
  KEY ix_payment (payment_id)
) ENGINE=InnoDB;

-- Append-only double entry: every event writes lines whose debits equal its credits.
CREATE TABLE IF NOT EXISTS ledger_entry (
  entry_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  event_id BIGINT NOT NULL,
  payment_id BIGINT NOT NULL,
  merchant_id VARBINARY(32) NOT NULL,
  account VARCHAR(96) NOT NULL,
  debit BIGINT NOT NULL DEFAULT 0,
  credit BIGINT NOT NULL DEFAULT 0,
  currency CHAR(3) NOT NULL,
  at DATETIME(3) NOT NULL,
  KEY ix_payment (payment_id, entry_id),
  KEY ix_account (account, entry_id),
  KEY ix_event (event_id),
  CONSTRAINT ck_ledger_line CHECK (debit >= 0 AND credit >= 0 AND (debit = 0) <> (credit = 0))
) ENGINE=InnoDB;
