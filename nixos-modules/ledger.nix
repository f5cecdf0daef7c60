# services.payrail.ledger: the double-entry ledger consumer and the reconciliation command.
import ./service.nix {
  name = "ledger";
  description = "the double-entry ledger consumer and the reconciliation command";
  defaultPort = 8086;
}
