# vm2, the app host (shared/spec/system.md): MariaDB shard 2, the gateway on :8080,
# ingest #2, ledger, settlement-worker, refund-worker and pg-mock.
# Deploy: `nixos-rebuild switch --flake .#vm2` on the machine (see README, Deployment).
{
  config,
  lib,
  pkgs,
  ...
}: let
  hosts = config.payrail.hosts;
  secret = name: "${hosts.secretsDir}/${name}";
  shards = unit: [
    {
      number = 1;
      host = hosts.vm1Address;
      port = 3306;
      database = "payrail";
      user = "payrail";
      password_file = "/run/credentials/${unit}.service/db-password";
    }
    {
      number = 2;
      host = "127.0.0.1";
      port = 3306;
      database = "payrail";
      user = "payrail";
      password_file = "/run/credentials/${unit}.service/db-password";
    }
  ];
  kafka = {bootstrap_servers = "${hosts.vm1Address}:9092";};
  pg = "http://127.0.0.1:8090";
in {
  networking.hostName = lib.mkDefault "vm2";

  services.mysql = {
    enable = true;
    package = pkgs.mariadb;
    settings.mysqld = {
      bind-address = "0.0.0.0";
      port = 3306;
      innodb_flush_log_at_trx_commit = 1;
      innodb_buffer_pool_size = "1G";
      innodb_log_file_size = "1G";
      innodb_io_capacity = 2000;
      innodb_io_capacity_max = 8000;
      max_connections = 1000;
      skip-name-resolve = true;
    };
    ensureDatabases = ["payrail"];
  };
  systemd.services.payrail-mariadb-user = {
    description = "payrail: the MariaDB account the services use over the network";
    after = ["mysql.service"];
    requires = ["mysql.service"];
    wantedBy = ["multi-user.target"];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      LoadCredential = ["db-password:${secret "db-password"}"];
    };
    path = [config.services.mysql.package];
    script = ''
      password=$(tr -d '\n' < "$CREDENTIALS_DIRECTORY/db-password")
      mysql -u root <<SQL
      CREATE USER IF NOT EXISTS 'payrail'@'%' IDENTIFIED BY '$password';
      ALTER USER 'payrail'@'%' IDENTIFIED BY '$password';
      GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON payrail.* TO 'payrail'@'%';
      FLUSH PRIVILEGES;
      SQL
    '';
  };

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
    openFirewall = true;
    port = 8082;
    credentials = {
      db-password = secret "db-password";
      redis-password = secret "redis-password";
    };
    settings = {
      listen = "0.0.0.0:8082";
      instance = "ingest-2";
      redis = {
        url = "redis://${hosts.vm1Address}:6380/0";
        password_file = "/run/credentials/payrail-ingest.service/redis-password";
      };
      pg.base_url = pg;
      inherit kafka;
      shards = shards "payrail-ingest";
    };
  };

  services.payrail.gateway = {
    enable = true;
    openFirewall = true;
    settings = {
      listen = ["0.0.0.0:8080"];
      payments = ["http://${hosts.vm1Address}:8081" "http://127.0.0.1:8082"];
      cors_allowed_origins = [];
    };
  };

  services.payrail.settlement-worker = {
    enable = true;
    commands = ["replay-dlq"];
    credentials.db-password = secret "db-password";
    settings = {
      listen = "0.0.0.0:8084";
      instance = "settlement-worker";
      inherit kafka;
      pg.base_url = pg;
      shards = shards "payrail-settlement-worker";
    };
  };

  services.payrail.refund-worker = {
    enable = true;
    commands = ["replay-dlq"];
    credentials.db-password = secret "db-password";
    settings = {
      listen = "0.0.0.0:8085";
      instance = "refund-worker";
      inherit kafka;
      pg.base_url = pg;
      shards = shards "payrail-refund-worker";
    };
  };

  services.payrail.ledger = {
    enable = true;
    commands = ["reconcile"];
    credentials.db-password = secret "db-password";
    settings = {
      listen = "0.0.0.0:8086";
      instance = "ledger";
      pg_base_url = pg;
      inherit kafka;
      shards = shards "payrail-ledger";
    };
  };

  # vm1 reaches shard 2, pg-mock and ingest #2; Prometheus on vm1 scrapes the services.
  networking.firewall.allowedTCPPorts = [3306 8084 8085 8086 8090];
}
