-- payrail shard schema, version 4: merchant API keys (issue 14).
--
-- A key lives in its merchant's shard. Only its keyed BLAKE3 hash and its public prefix
-- are stored; the secret is shown once, at creation. A revoked key keeps its row (the
-- audit trail and the list show it) and is refused at once. updated_at moves on every
-- change an ingest instance must see (create, roll, revoke), never on last_used_at, so
-- the instances' 1 s refresh reads only what changed (ix_updated).
CREATE TABLE IF NOT EXISTS merchant_api_key (
  key_id VARCHAR(32) NOT NULL PRIMARY KEY,
  prefix VARCHAR(32) NOT NULL,
  merchant_id VARBINARY(32) NOT NULL,
  key_hash BINARY(32) NOT NULL,
  created_at DATETIME(3) NOT NULL,
  expires_at DATETIME(3) NULL,
  revoked_at DATETIME(3) NULL,
  last_used_at DATETIME(3) NULL,
  rolled_to VARCHAR(32) NULL,
  updated_at DATETIME(3) NOT NULL,
  UNIQUE KEY ux_prefix (prefix),
  KEY ix_merchant (merchant_id, created_at),
  KEY ix_updated (updated_at)
) ENGINE=InnoDB;
