# services.payrail.settlement-worker: captures and voids at the PG with retries, status inquiries, dead letters and its own outbox.
import ./service.nix {
  name = "settlement-worker";
  description = "captures and voids at the PG with retries, status inquiries, dead letters and its own outbox";
  defaultPort = 8084;
}
