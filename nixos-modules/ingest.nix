# services.payrail.ingest: the payment API (authorize, capture, refund, void, reads), the outbox relay, the resolver of unknown PG outcomes and authorization expiry.
import ./service.nix {
  name = "ingest";
  description = "the payment API (authorize, capture, refund, void, reads), the outbox relay, the resolver of unknown PG outcomes and authorization expiry";
  defaultPort = 8081;
}
