# services.payrail.settlement-worker: captures at the PG with retries, dead letters and its own outbox.
import ./service.nix {
  name = "settlement-worker";
  description = "captures at the PG with retries, dead letters and its own outbox";
  defaultPort = 8084;
}
