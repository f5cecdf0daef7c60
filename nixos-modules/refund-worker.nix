# services.payrail.refund-worker: refunds at the PG with retries, dead letters, and an outbox relay (every shard's outbox is published while any writer of it runs).
import ./service.nix {
  name = "refund-worker";
  description = "refunds at the PG with retries, dead letters, and an outbox relay";
  defaultPort = 8085;
}
