# services.payrail.settlement-worker: captures and voids at the PG with retries, status inquiries, dead letters, and an outbox relay (every shard's outbox is published while any writer of it runs).
import ./service.nix {
  name = "settlement-worker";
  description = "captures and voids at the PG with retries, status inquiries, dead letters, and an outbox relay";
  defaultPort = 8084;
}
