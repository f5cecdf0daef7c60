# Options shared by vm1.nix and vm2.nix: where the two hosts are and where their secrets
# live, so the same files deploy to real machines (`nixos-rebuild switch --flake .#vm1`)
# and to the NixOS VM tests. The addresses and the private network have no default: a
# deployment that forgets one fails an assertion naming the option, instead of inheriting
# the VM test's network (where the nftables rule would block every peer). The host files
# read the options through `payrail.hosts.effective`, where an unset one is a placeholder
# string, so evaluation reaches that assertion.
{
  config,
  lib,
  ...
}: let
  cfg = config.payrail.hosts;
  required = description:
    lib.mkOption {
      inherit description;
      type = lib.types.nullOr lib.types.str;
      default = null;
    };
  requiredNames = ["vm1Address" "vm2Address" "privateNetwork"];
  payrailEnabled = lib.any (s: s.enable or false) (lib.attrValues (config.services.payrail or {}));
  # The secret files every host reads, by credential name.
  secretNames = ["db-password" "redis-password" "admin-token" "admin-read-token" "api-key-hash" "grafana-admin-password" "grafana-secret-key" "store-tls-ca" "store-tls-cert" "store-tls-key"];
in {
  options.payrail.hosts = {
    vm1Address = required "Address (or resolvable name) of the state host, as vm2 reaches it. Required.";
    vm2Address = required "Address (or resolvable name) of the app host, as vm1 reaches it. Required.";
    privateNetwork = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "10.0.0.0/24";
      description = ''
        The network the two hosts talk over (CIDR). The ports one host serves the other
        (MariaDB, Redis, Kafka, ingest, workers' metrics, pg-mock) accept connections from
        here only. Required.
      '';
    };
    secretsDir = lib.mkOption {
      type = lib.types.str;
      default = "/run/secrets/payrail";
      description = ''
        Directory holding the secret files, put there out of band (sops-nix, agenix, or by
        hand with mode 0400), read by systemd's LoadCredential as root, so any owner works:
        `db-password` (MariaDB user `payrail`), `redis-password`, `grafana-admin-password`,
        `grafana-secret-key`, `admin-token` (the admin API's write-scoped bearer token, the
        operator's; at least 32 bytes), `admin-read-token` (read-only, for MCP; at least 32
        bytes), `api-key-hash` (the key of the merchant API keys' BLAKE3 hash, at least 32
        bytes, the same file on both hosts; replacing it invalidates every key); with
        `storeTls.enable`, `store-tls-ca` (the CA, the same on both hosts), `store-tls-cert`
        and `store-tls-key` (this host's MariaDB and Redis certificate and key). Never in the
        Nix store. Each file can be pointed elsewhere with `payrail.hosts.secrets.<name>`.
      '';
    };
    secrets = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = {};
      example = {db-password = "/run/agenix/payrail-db-password";};
      description = ''
        Plain file paths of the secrets by name (${lib.concatStringsSep ", " secretNames}),
        each defaulting to `secretsDir/<name>`: a sops-nix `config.sops.secrets.<x>.path` or
        an agenix `config.age.secrets.<x>.path` fits here.
      '';
    };
    merchantAuth = lib.mkOption {
      type = lib.types.enum ["required" "off"];
      default = "required";
      description = ''
        Whether the payment API needs a merchant API key (`Authorization: Bearer <key>`),
        which then decides the merchant. `off` trusts the `merchantId` a request names: for
        reference clients only (ingest logs a warning; `/health` shows it).
      '';
    };
    tls = {
      enable = lib.mkEnableOption "HTTPS at the gateway on port 443 (rustls, TLS 1.2+, HSTS)";
      certificateFile = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        description = "PEM certificate chain (a secret path, loaded with LoadCredential; rotate with a restart). Or use `acmeHost`.";
      };
      keyFile = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        description = "PEM private key, with `certificateFile`.";
      };
      acmeHost = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "payments.example.com";
        description = ''
          Take the certificate from `security.acme.certs.<acmeHost>` (configure that
          certificate yourself): the gateway reads it from the ACME directory (group `acme`)
          and reloads it on SIGHUP when it is renewed.
        '';
      };
    };
    storeTls.enable = lib.mkEnableOption ''
      TLS on the links between the hosts to MariaDB and Redis: each host's MariaDB requires
      TLS of the `payrail` account from any address but loopback (`REQUIRE SSL`), vm1's Redis
      adds a TLS port (6381) that the private network reaches instead of the plaintext one
      (6380, loopback only), and every service verifies the other host's certificate
      against the CA in the `store-tls-ca` secret alone. Each host's `store-tls-cert` and
      `store-tls-key` secrets are its server certificate (with the host's address, as the
      other host names it, in its subjectAltName) and key. Loopback links stay plain'';
    kafkaClusterId = lib.mkOption {
      type = lib.types.str;
      default = "pAyRaIlKrAfTcLuStEr001";
      description = "KRaft cluster id (22 characters, base64url; `kafka-storage.sh random-uuid`).";
    };
  };

  options.payrail.hosts.effective = lib.mkOption {
    type = lib.types.attrsOf lib.types.anything;
    readOnly = true;
    internal = true;
    description = "payrail.hosts with an unset required option as a placeholder (the assertion fails).";
  };

  config = {
    payrail.hosts = {
      secrets = lib.genAttrs secretNames (name: lib.mkDefault "${cfg.secretsDir}/${name}");
      effective =
        removeAttrs cfg ["effective"]
        // lib.genAttrs requiredNames (name:
          if cfg.${name} == null
          then "unset-payrail.hosts.${name}"
          else cfg.${name});
    };
    assertions = lib.optionals payrailEnabled (map (name: {
        assertion = cfg.${name} != null;
        message = "payrail.hosts.${name} must be set: the appliance has no default for it (README, Deployment)";
      })
      requiredNames);
  };
}
