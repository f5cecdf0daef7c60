# One MariaDB shard as both hosts run it: durable settings (a 200 means the commit reached
# the disk), the `payrail` database, and the account the services use over the network,
# its password read from the secret file (ensureUsers are socket-auth only). With
# `payrail.hosts.storeTls.enable`, the server has this host's certificate and the account
# must use TLS from any address but loopback.
{
  config,
  lib,
  pkgs,
  ...
}: let
  hosts = config.payrail.hosts;
  tls = hosts.storeTls.enable;
  credentials = "/run/credentials/mysql.service";
  require =
    if tls
    then "SSL"
    else "NONE";
in {
  services.mysql = {
    enable = true;
    package = pkgs.mariadb;
    settings.mysqld =
      {
        bind-address = "0.0.0.0";
        port = 3306;
        innodb_flush_log_at_trx_commit = 1;
        # Sized for a 4 GiB host beside its other services; the VM test lowers them.
        innodb_buffer_pool_size = lib.mkDefault "1G";
        innodb_log_file_size = lib.mkDefault "512M";
        innodb_io_capacity = 2000;
        innodb_io_capacity_max = 8000;
        max_connections = 1000;
        skip-name-resolve = true;
      }
      // lib.optionalAttrs tls {
        # Read by mysqld (user mysql) from its own credentials directory at start.
        ssl_cert = "${credentials}/store-tls-cert";
        ssl_key = "${credentials}/store-tls-key";
        ssl_ca = "${credentials}/store-tls-ca";
        tls_version = "TLSv1.2,TLSv1.3";
      };
    ensureDatabases = ["payrail"];
  };
  systemd.services.mysql.serviceConfig.LoadCredential = lib.mkIf tls [
    "store-tls-cert:${hosts.secrets.store-tls-cert}"
    "store-tls-key:${hosts.secrets.store-tls-key}"
    "store-tls-ca:${hosts.secrets.store-tls-ca}"
  ];
  # Idempotent, so a new secret file also rotates the password.
  systemd.services.payrail-mariadb-user = {
    description = "payrail: the MariaDB account the services use over the network";
    after = ["mysql.service"];
    requires = ["mysql.service"];
    wantedBy = ["multi-user.target"];
    # Root over the socket (MariaDB's unix_socket account), and nothing else: no network,
    # no capabilities, a read-only system but the socket's directory.
    serviceConfig =
      import ./hardening.nix
      // {
        DynamicUser = false;
        PrivateUsers = false;
        PrivateNetwork = true;
        IPAddressDeny = "any";
        RestrictAddressFamilies = ["AF_UNIX"];
        ReadWritePaths = ["/run/mysqld"];
        Type = "oneshot";
        RemainAfterExit = true;
        LoadCredential = ["db-password:${config.payrail.hosts.secrets.db-password}"];
      };
    path = [config.services.mysql.package];
    script = ''
      password=$(tr -d '\n' < "$CREDENTIALS_DIRECTORY/db-password")
      mysql -u root <<SQL
      CREATE USER IF NOT EXISTS 'payrail'@'%' IDENTIFIED BY '$password';
      ALTER USER 'payrail'@'%' IDENTIFIED BY '$password' REQUIRE ${require};
      GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON payrail.* TO 'payrail'@'%';
      -- The same account over loopback (the host's own services), matched before '%'.
      CREATE USER IF NOT EXISTS 'payrail'@'127.0.0.1' IDENTIFIED BY '$password';
      ALTER USER 'payrail'@'127.0.0.1' IDENTIFIED BY '$password' REQUIRE NONE;
      GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON payrail.* TO 'payrail'@'127.0.0.1';
      FLUSH PRIVILEGES;
      SQL
    '';
  };
}
