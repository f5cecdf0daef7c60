# Options shared by vm1.nix and vm2.nix: where the two hosts are and where their secrets
# live, so the same files deploy to real machines (`nixos-rebuild switch --flake .#vm1`)
# and to the NixOS VM tests.
{lib, ...}: {
  options.payrail.hosts = {
    vm1Address = lib.mkOption {
      type = lib.types.str;
      default = "vm1";
      description = "Address (or resolvable name) of the state host, as vm2 reaches it.";
    };
    vm2Address = lib.mkOption {
      type = lib.types.str;
      default = "vm2";
      description = "Address (or resolvable name) of the app host, as vm1 reaches it.";
    };
    privateNetwork = lib.mkOption {
      type = lib.types.str;
      default = "192.168.1.0/24";
      example = "10.0.0.0/24";
      description = ''
        The network the two hosts talk over (CIDR). The ports one host serves the other
        (MariaDB, Redis, Kafka, ingest, workers' metrics, pg-mock) accept connections from
        here only; the default is the NixOS test network.
      '';
    };
    secretsDir = lib.mkOption {
      type = lib.types.str;
      default = "/run/secrets/payrail";
      description = ''
        Directory holding the secret files, put there out of band (sops-nix, agenix, or by
        hand with mode 0400): `db-password` (MariaDB user `payrail`), `redis-password`,
        `grafana-admin-password`, `grafana-secret-key`, `admin-token` (the admin API's bearer
        token). Never in the Nix store.
      '';
    };
    kafkaClusterId = lib.mkOption {
      type = lib.types.str;
      default = "pAyRaIlKrAfTcLuStEr001";
      description = "KRaft cluster id (22 characters, base64url; `kafka-storage.sh random-uuid`).";
    };
  };
}
