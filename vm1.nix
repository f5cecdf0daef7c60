# vm1, the state host (shared/spec/system.md): MariaDB shard 1, Redis, Kafka (KRaft, one
# broker), ingest #1, Prometheus and Grafana. Deploy: `nixos-rebuild switch --flake .#vm1`
# on the machine, with its hardware configuration imported (see README, Deployment).
{
  config,
  lib,
  pkgs,
  ...
}: let
  hosts = config.payrail.hosts.effective;
  secret = name: hosts.secrets.${name};
  storeTls = hosts.storeTls.enable;
  # Both shards as a unit reaches them: this host's over loopback, vm2's over the private
  # network (TLS with storeTls, checked against the CA in the unit's credentials).
  shards = unit: let
    shard = number: host: {
      inherit number host;
      port = 3306;
      database = "payrail";
      user = "payrail";
      password_file = "/run/credentials/${unit}.service/db-password";
    };
  in [
    (shard 1 "127.0.0.1")
    (shard 2 hosts.vm2Address // lib.optionalAttrs storeTls {tls_ca_file = "/run/credentials/${unit}.service/store-tls-ca";})
  ];
  # The credentials of a unit that reaches vm2's shard.
  storeCa = lib.optionalAttrs storeTls {store-tls-ca = secret "store-tls-ca";};
  monitoringShards = shards "payrail-monitoring";
in {
  imports = [./nixos-modules/mariadb-shard.nix];

  networking.hostName = lib.mkDefault "vm1";

  services.redis.servers.payrail = {
    enable = true;
    port = 6380;
    bind = "0.0.0.0";
    requirePassFile = secret "redis-password";
    save = [];
    appendOnly = false;
    # With storeTls, vm2 reaches Redis on a TLS port (the firewall opens it instead of
    # 6380); clients need no certificate of their own, only the password.
    settings = lib.mkIf storeTls {
      tls-port = 6381;
      tls-cert-file = "/run/credentials/redis-payrail.service/store-tls-cert";
      tls-key-file = "/run/credentials/redis-payrail.service/store-tls-key";
      tls-ca-cert-file = "/run/credentials/redis-payrail.service/store-tls-ca";
      tls-auth-clients = "no";
      tls-protocols = "TLSv1.2 TLSv1.3";
    };
  };
  systemd.services.redis-payrail.serviceConfig.LoadCredential = lib.mkIf storeTls [
    "store-tls-cert:${secret "store-tls-cert"}"
    "store-tls-key:${secret "store-tls-key"}"
    "store-tls-ca:${secret "store-tls-ca"}"
  ];

  services.apache-kafka = {
    enable = true;
    clusterId = hosts.kafkaClusterId;
    formatLogDirs = true;
    settings = {
      "node.id" = 1;
      "process.roles" = ["broker" "controller"];
      listeners = ["PLAINTEXT://:9092" "CONTROLLER://:9093"];
      "advertised.listeners" = ["PLAINTEXT://${hosts.vm1Address}:9092"];
      "listener.security.protocol.map" = ["PLAINTEXT:PLAINTEXT" "CONTROLLER:PLAINTEXT"];
      "controller.listener.names" = ["CONTROLLER"];
      "controller.quorum.voters" = ["1@127.0.0.1:9093"];
      "offsets.topic.replication.factor" = 1;
      "transaction.state.log.replication.factor" = 1;
      "transaction.state.log.min.isr" = 1;
      "log.dirs" = ["/var/lib/apache-kafka"];
      # Topics are created by ingest at start (and below), with their partition counts.
      "auto.create.topics.enable" = false;
    };
    # The JVM's default heap is a quarter of the RAM; on a 4 GiB host that shares with
    # MariaDB (1 GiB pool), Grafana and Prometheus it is set explicitly.
    jvmOptions = lib.mkDefault ["-Xms1g" "-Xmx1g"];
  };
  systemd.services.apache-kafka.serviceConfig.StateDirectory = "apache-kafka";
  # The topics of system.md, created once the broker answers (ingest also ensures them).
  systemd.services.payrail-kafka-topics = {
    description = "payrail: create the Kafka topics";
    after = ["apache-kafka.service"];
    requires = ["apache-kafka.service"];
    wantedBy = ["multi-user.target"];
    # Until Kafka answers: each try waits up to 60 s, fails, and systemd starts it again.
    startLimitIntervalSec = 0;
    # The JVM of kafka-topics.sh needs writable-executable memory (its JIT) and a whole
    # /proc; a refused system call fails with EPERM instead of killing it; its log
    # directory is the private /tmp (the store is read-only).
    serviceConfig =
      import ./nixos-modules/hardening.nix
      // {
        MemoryDenyWriteExecute = false;
        ProcSubset = "all";
        SystemCallErrorNumber = "EPERM";
        Environment = ["LOG_DIR=/tmp"];
        Type = "oneshot";
        RemainAfterExit = true;
        Restart = "on-failure";
        RestartSec = 5;
      };
    path = [config.services.apache-kafka.package];
    script = ''
      ready=
      for _ in $(seq 30); do
        if kafka-topics.sh --bootstrap-server 127.0.0.1:9092 --list >/dev/null 2>&1; then ready=1; break; fi
        sleep 2
      done
      [ -n "$ready" ] || { echo "Kafka does not answer on 127.0.0.1:9092 yet"; exit 1; }
      for t in payment.authorized payment.capture-requested payment.captured payment.refund-requested payment.refunded payment.voided payment.void-requested payment.capture-failed; do
        kafka-topics.sh --bootstrap-server 127.0.0.1:9092 --create --if-not-exists --topic "$t" --partitions 6 --replication-factor 1
      done
      for t in payment.dlq settlement.dlq refund.dlq void.dlq; do
        kafka-topics.sh --bootstrap-server 127.0.0.1:9092 --create --if-not-exists --topic "$t" --partitions 3 --replication-factor 1
      done
    '';
  };

  services.payrail.ingest = {
    enable = true;
    credentials =
      {
        db-password = secret "db-password";
        redis-password = secret "redis-password";
        api-key-hash = secret "api-key-hash";
      }
      // storeCa;
    settings = {
      listen = "0.0.0.0:8081";
      instance = "ingest-1";
      merchant_auth = hosts.merchantAuth;
      api_keys.hash_key_file = "/run/credentials/payrail-ingest.service/api-key-hash";
      redis = {
        url = "redis://127.0.0.1:6380/0";
        password_file = "/run/credentials/payrail-ingest.service/redis-password";
      };
      pg.base_url = "http://${hosts.vm2Address}:8090";
      kafka.bootstrap_servers = "127.0.0.1:9092";
      shards = shards "payrail-ingest";
    };
  };
  systemd.services.payrail-ingest.after = ["mysql.service" "payrail-mariadb-user.service" "redis-payrail.service" "apache-kafka.service"];

  services.payrail.monitoring = {
    enable = true;
    credentials =
      {
        db-password = secret "db-password";
        redis-password = secret "redis-password";
        admin-token = secret "admin-token";
        admin-read-token = secret "admin-read-token";
        api-key-hash = secret "api-key-hash";
      }
      // storeCa;
    settings = {
      listen = "0.0.0.0:8087";
      admin_tokens = [
        {
          name = "operator";
          scope = "write";
          file = "/run/credentials/payrail-monitoring.service/admin-token";
        }
        {
          name = "mcp";
          scope = "read";
          file = "/run/credentials/payrail-monitoring.service/admin-read-token";
        }
      ];
      api_keys.hash_key_file = "/run/credentials/payrail-monitoring.service/api-key-hash";
      audit_log = "/var/lib/payrail-monitoring/audit.jsonl";
      state_dir = "/var/lib/payrail-monitoring/state";
      kafka.bootstrap_servers = "127.0.0.1:9092";
      instances = let
        instance = name: address: {
          inherit name;
          url = "http://${address}";
        };
      in [
        (instance "ingest-1" "127.0.0.1:8081")
        (instance "ingest-2" "${hosts.vm2Address}:8082")
        (instance "gateway" "${hosts.vm2Address}:8080")
        (instance "settlement-worker" "${hosts.vm2Address}:8084")
        (instance "refund-worker" "${hosts.vm2Address}:8085")
        (instance "ledger" "${hosts.vm2Address}:8086")
      ];
      # The three-way reconciliation, run from here against both shards and pg-mock with
      # monitoring's own credentials.
      reconcile_command = let
        ledgerConfig = (pkgs.formats.toml {}).generate "ledger-reconcile.toml" {
          listen = "127.0.0.1:0";
          instance = "monitoring-reconcile";
          pg_base_url = "http://${hosts.vm2Address}:8090";
          kafka.bootstrap_servers = "127.0.0.1:9092";
          shards = monitoringShards;
        };
      in [(lib.getExe config.services.payrail.ledger.package) "--config" "${ledgerConfig}" "reconcile"];
      # The k6 runner: the repo's scenarios against the gateway on vm2. The drill is not
      # configured here: stopping Kafka needs rights the hardened unit does not have
      # (set `drill` with a stop/resume command the unit may run, e.g. through polkit).
      k6 = {
        binary = lib.getExe pkgs.k6;
        scenarios_dir = "${./k6}";
        base_url = "http://${hosts.vm2Address}:8080";
      };
      redis = {
        url = "redis://127.0.0.1:6380/0";
        password_file = "/run/credentials/payrail-monitoring.service/redis-password";
      };
      shards = monitoringShards;
    };
  };

  services.prometheus = {
    enable = true;
    port = 9090;
    globalConfig.scrape_interval = "5s";
    scrapeConfigs = let
      job = name: targets: {
        job_name = name;
        static_configs = [{inherit targets;}];
      };
    in [
      (job "ingest" ["127.0.0.1:8081" "${hosts.vm2Address}:8082"])
      (job "gateway" ["${hosts.vm2Address}:8080"])
      (job "settlement-worker" ["${hosts.vm2Address}:8084"])
      (job "refund-worker" ["${hosts.vm2Address}:8085"])
      (job "ledger" ["${hosts.vm2Address}:8086"])
    ];
  };

  services.grafana = {
    enable = true;
    settings = {
      server = {
        http_addr = "0.0.0.0";
        http_port = 3000;
      };
      # Read from Grafana's own credentials directory (LoadCredential below): the secret
      # files themselves are root's, 0400, and the grafana user cannot open them.
      security = {
        admin_password = "$__file{/run/credentials/grafana.service/admin-password}";
        secret_key = "$__file{/run/credentials/grafana.service/secret-key}";
      };
      analytics.reporting_enabled = false;
    };
    provision = {
      enable = true;
      datasources.settings = {
        apiVersion = 1;
        datasources = [
          {
            name = "Prometheus";
            type = "prometheus";
            uid = "payrail-prometheus";
            url = "http://127.0.0.1:9090";
            access = "proxy";
            isDefault = true;
          }
        ];
      };
      dashboards.settings = {
        apiVersion = 1;
        providers = [
          {
            name = "payrail";
            options.path = ./nixos-modules/dashboards;
          }
        ];
      };
    };
  };

  systemd.services.grafana.serviceConfig.LoadCredential = [
    "admin-password:${secret "grafana-admin-password"}"
    "secret-key:${secret "grafana-secret-key"}"
  ];

  # Operators reach Grafana and Prometheus; the ports vm2 needs accept only the private
  # network (nftables rule below), not the world.
  networking.firewall.allowedTCPPorts = [9090 3000];
  networking.nftables.enable = true;
  networking.firewall.extraInputRules = ''
    # vm2 reaches MariaDB, Redis (its TLS port with storeTls), Kafka, ingest #1 and
    # monitoring here.
    ip saddr ${hosts.privateNetwork} tcp dport { 3306, ${
      if storeTls
      then "6381"
      else "6380"
    }, 9092, 8081, 8087 } accept
  '';
}
