# Every payrail NixOS module. The flake's `nixosModules.default` imports this and sets
# each service's default package from the flake.
{
  imports = [
    ./ingest.nix
    ./gateway.nix
    ./settlement-worker.nix
    ./refund-worker.nix
    ./ledger.nix
    ./pg-mock.nix
    ./monitoring.nix
    ./hosts.nix
  ];
}
