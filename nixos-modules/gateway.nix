# services.payrail.gateway: the single entry point, routing to the ingest instances.
import ./service.nix {
  name = "gateway";
  description = "the single entry point, routing to the ingest instances";
  defaultPort = 8080;
}
