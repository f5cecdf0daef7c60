# services.payrail.ingest: the payment API (authorize, capture, refund, void, reads) and the outbox relay.
import ./service.nix {
  name = "ingest";
  description = "the payment API (authorize, capture, refund, void, reads) and the outbox relay";
  defaultPort = 8081;
}
