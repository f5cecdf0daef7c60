# services.payrail.refund-worker: refunds at the PG with retries, dead letters and its own outbox.
import ./service.nix {
  name = "refund-worker";
  description = "refunds at the PG with retries, dead letters and its own outbox";
  defaultPort = 8085;
}
