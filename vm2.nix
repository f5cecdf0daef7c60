# vm2, the app host (shared/spec/system.md): MariaDB shard 2, the gateway on :8080,
# ingest #2, ledger, settlement-worker, refund-worker and pg-mock.
# Deploy: `nixos-rebuild switch --flake .#vm2` on the machine (see README, Deployment).
{
  config,
  lib,
  pkgs,
  ...
}: let
  hosts = config.payrail.hosts.effective;
  secret = name: hosts.secrets.${name};
  storeTls = hosts.storeTls.enable;
  # vm1's shard over the private network (TLS with storeTls, checked against the CA in the
  # unit's credentials), this host's over loopback.
  shards = unit: [
    ({
        number = 1;
        host = hosts.vm1Address;
        port = 3306;
        database = "payrail";
        user = "payrail";
        password_file = "/run/credentials/${unit}.service/db-password";
      }
      // lib.optionalAttrs storeTls {tls_ca_file = "/run/credentials/${unit}.service/store-tls-ca";})
    {
      number = 2;
      host = "127.0.0.1";
      port = 3306;
      database = "payrail";
      user = "payrail";
      password_file = "/run/credentials/${unit}.service/db-password";
    }
  ];
  # The credentials of every unit that reaches vm1's shard.
  dbCredentials =
    {db-password = secret "db-password";}
    // lib.optionalAttrs storeTls {store-tls-ca = secret "store-tls-ca";};
  kafka = {bootstrap_servers = "${hosts.vm1Address}:9092";};
  inherit (hosts) tls;
  acmeDir = "/var/lib/acme/${toString tls.acmeHost}";
  pg = "http://127.0.0.1:8090";
  worker = name: port: {
    enable = true;
    commands = ["replay-dlq"];
    credentials = dbCredentials;
    settings = {
      listen = "0.0.0.0:${toString port}";
      instance = name;
      inherit kafka;
      pg.base_url = pg;
      shards = shards "payrail-${name}";
    };
  };
in {
  imports = [./nixos-modules/mariadb-shard.nix];

  networking.hostName = lib.mkDefault "vm2";

  services.payrail.pg-mock = {
    enable = true;
    settings = {
      listen = "0.0.0.0:8090";
      journal_path = "/var/lib/payrail-pg-mock/journal.jsonl";
      behaviour = {
        latency_min_ms = 5;
        latency_max_ms = 15;
      };
    };
  };

  services.payrail.ingest = {
    enable = true;
    port = 8082;
    credentials =
      dbCredentials
      // {
        redis-password = secret "redis-password";
        api-key-hash = secret "api-key-hash";
      };
    settings = {
      listen = "0.0.0.0:8082";
      instance = "ingest-2";
      merchant_auth = hosts.merchantAuth;
      api_keys.hash_key_file = "/run/credentials/payrail-ingest.service/api-key-hash";
      redis =
        {
          password_file = "/run/credentials/payrail-ingest.service/redis-password";
        }
        // (
          if storeTls
          then {
            url = "rediss://${hosts.vm1Address}:6381/0";
            tls_ca_file = "/run/credentials/payrail-ingest.service/store-tls-ca";
          }
          else {url = "redis://${hosts.vm1Address}:6380/0";}
        );
      pg.base_url = pg;
      inherit kafka;
      shards = shards "payrail-ingest";
    };
  };

  services.payrail.gateway = {
    enable = true;
    openFirewall = true;
    credentials = lib.mkIf (tls.enable && tls.acmeHost == null) {
      tls-cert = tls.certificateFile;
      tls-key = tls.keyFile;
    };
    settings =
      {
        listen = ["0.0.0.0:8080"];
        payments = ["http://${hosts.vm1Address}:8081" "http://127.0.0.1:8082"];
        admin = ["http://${hosts.vm1Address}:8087"];
        cors_allowed_origins = [];
      }
      // lib.optionalAttrs tls.enable {
        tls =
          {listen = ["0.0.0.0:443"];}
          // (
            if tls.acmeHost != null
            then {
              cert_file = "${acmeDir}/fullchain.pem";
              key_file = "${acmeDir}/key.pem";
            }
            else {
              cert_file = "/run/credentials/payrail-gateway.service/tls-cert";
              key_file = "/run/credentials/payrail-gateway.service/tls-key";
            }
          );
      };
  };
  # HTTPS: port 443 (CAP_NET_BIND_SERVICE only), SIGHUP reloads the certificate, and an
  # ACME certificate is read in place. Let its renewal reload the gateway with
  # `security.acme.certs.<acmeHost>.reloadServices = ["payrail-gateway.service"];`.
  systemd.services.payrail-gateway.serviceConfig = lib.mkIf tls.enable ({
      ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
      CapabilityBoundingSet = lib.mkForce ["CAP_NET_BIND_SERVICE"];
      AmbientCapabilities = lib.mkForce ["CAP_NET_BIND_SERVICE"];
      PrivateUsers = lib.mkForce false;
    }
    // lib.optionalAttrs (tls.acmeHost != null) {SupplementaryGroups = ["acme"];});
  networking.firewall.allowedTCPPorts = lib.mkIf tls.enable [443];
  assertions = [
    {
      assertion = !tls.enable || tls.acmeHost != null || (tls.certificateFile != null && tls.keyFile != null);
      message = "payrail.hosts.tls: set acmeHost, or certificateFile and keyFile";
    }
  ];

  services.payrail.settlement-worker = worker "settlement-worker" 8084;
  services.payrail.refund-worker = worker "refund-worker" 8085;

  services.payrail.ledger = {
    enable = true;
    commands = ["reconcile"];
    credentials = dbCredentials;
    settings = {
      listen = "0.0.0.0:8086";
      instance = "ledger";
      pg_base_url = pg;
      inherit kafka;
      shards = shards "payrail-ledger";
    };
  };

  # vm1 reaches shard 2, pg-mock and ingest #2, and Prometheus on vm1 scrapes the
  # services: from the private network only. The gateway (:8080) is public.
  networking.nftables.enable = true;
  networking.firewall.extraInputRules = ''
    ip saddr ${hosts.privateNetwork} tcp dport { 3306, 8082, 8084, 8085, 8086, 8090 } accept
  '';
}
