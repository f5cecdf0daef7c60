# The NixOS VM twin of tests/it/two_host.rs (`cargo xtask test` runs that one here): the
# real vm1.nix and vm2.nix plus a load client. Full flow through the gateway, the 1,000 RPS
# k6 check, then the pipeline drains and `ledger reconcile` is clean; every payrail unit's
# `systemd-analyze security` is logged.
{self}: let
  # Test-only CA and server certificates for the store links (payrail.hosts.storeTls),
  # made at build time with a subjectAltName of each node's name; a deployment's are
  # secrets like the others.
  storePki = pkgs:
    pkgs.runCommand "payrail-test-store-pki" {nativeBuildInputs = [pkgs.openssl];} ''
      mkdir "$out" && cd "$out"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj /CN=payrail-test-ca -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign -keyout ca.key -out ca.pem
      for host in vm1 vm2; do
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host" \
          -keyout "$host.key" -out "$host.csr"
        printf 'subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
          "$host" > "$host.ext"
        openssl x509 -req -in "$host.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
          -extfile "$host.ext" -out "$host.pem"
      done
    '';
  # Test-only secrets, written at boot by an activation script (a real deployment puts
  # them in payrail.hosts.secretsDir out of band; they never enter the store there).
  testSecrets = {
    config,
    pkgs,
    ...
  }: let
    pki = storePki pkgs;
    host = config.networking.hostName;
  in {
    system.activationScripts.payrail-test-secrets = ''
      mkdir -p /run/secrets/payrail
      echo test-db-password > /run/secrets/payrail/db-password
      echo test-redis-password > /run/secrets/payrail/redis-password
      echo admin > /run/secrets/payrail/grafana-admin-password
      echo test-grafana-secret-key > /run/secrets/payrail/grafana-secret-key
      echo test-admin-token-0123456789abcdef0123 > /run/secrets/payrail/admin-token
      echo test-read-token-0123456789abcdef01234 > /run/secrets/payrail/admin-read-token
      echo test-api-key-hash-0123456789abcdef012 > /run/secrets/payrail/api-key-hash
      cp ${pki}/ca.pem /run/secrets/payrail/store-tls-ca
      cp ${pki}/${host}.pem /run/secrets/payrail/store-tls-cert
      cp ${pki}/${host}.key /run/secrets/payrail/store-tls-key
      chmod 0400 /run/secrets/payrail/*
    '';
  };
  # Sized for what each node runs: vm1 holds MariaDB (512 MiB pool here), Kafka (512 MiB
  # heap), Redis, Grafana, Prometheus, ingest and monitoring; vm2 MariaDB and six services.
  vm = file: {
    imports = [self.nixosModules.default file self.nixosModules.qemu-guest testSecrets];
    payrail.hosts = {
      vm1Address = "vm1";
      vm2Address = "vm2";
      privateNetwork = "192.168.1.0/24";
      storeTls.enable = true;
    };
    services.mysql.settings.mysqld = {
      innodb_buffer_pool_size = "512M";
      innodb_log_file_size = "256M";
    };
    virtualisation = {
      memorySize = 4096;
      cores = 2;
      diskSize = 4096;
    };
  };
in {
  name = "payrail-two-host";
  nodes = {
    vm1 = {
      imports = [(vm ../../vm1.nix)];
      services.apache-kafka.jvmOptions = ["-Xms512m" "-Xmx512m"];
    };
    # The gateway serves HTTPS too, with vm2's certificate from the store PKI.
    vm2 = {
      imports = [(vm ../../vm2.nix)];
      payrail.hosts.tls = {
        enable = true;
        certificateFile = "/run/secrets/payrail/store-tls-cert";
        keyFile = "/run/secrets/payrail/store-tls-key";
      };
    };
    # k6 at 1,000 RPS needs about a core and a few hundred MiB of its own.
    client = {pkgs, ...}: {
      environment.systemPackages = [pkgs.k6 pkgs.curl];
      environment.etc."payrail-k6".source = ../../k6;
      environment.etc."payrail-ca.pem".source = "${storePki pkgs}/ca.pem";
      virtualisation = {
        memorySize = 2048;
        cores = 2;
      };
    };
  };
  testScript = ''
    start_all()
    vm1.wait_for_unit("payrail-kafka-topics.service")
    vm1.wait_for_unit("payrail-ingest.service")
    vm1.wait_for_unit("payrail-monitoring.service")
    vm2.wait_for_unit("payrail-gateway.service")
    for unit in ["payrail-ingest", "payrail-settlement-worker", "payrail-refund-worker", "payrail-ledger", "payrail-pg-mock"]:
        vm2.wait_for_unit(unit + ".service")
    client.wait_until_succeeds("curl -sf http://vm2:8080/health | grep UP", timeout=120)

    with subtest("full flow through the gateway"):
        # merchant_auth = "required": k6 makes its merchants' keys through the admin API.
        client.succeed("k6 run -e BASE_URL=http://vm2:8080 -e ADMIN_TOKEN=test-admin-token-0123456789abcdef0123 -e MERCHANTS=100 -e RATE=50 -e DURATION=20s /etc/payrail-k6/full-flow.js")

    with subtest("1,000 RPS of authorizations"):
        client.succeed("k6 run -e BASE_URL=http://vm2:8080 -e ADMIN_TOKEN=test-admin-token-0123456789abcdef0123 -e RATE=1000 -e DURATION=30s --summary-export=/tmp/k6.json /etc/payrail-k6/authorize.js")
        client.copy_from_vm("/tmp/k6.json", "")

    with subtest("the pipeline drains and reconciles"):
        vm2.wait_until_succeeds("systemctl start payrail-ledger-reconcile.service", timeout=300)
        vm2.log(vm2.succeed("journalctl -u payrail-ledger-reconcile.service -n 5 --no-pager"))

    with subtest("the gateway over HTTPS"):
        client.succeed("curl -sf --cacert /etc/payrail-ca.pem https://vm2/health | grep UP")
        client.succeed("curl -sfI --cacert /etc/payrail-ca.pem https://vm2/health | grep -i strict-transport-security")
        vm2.succeed("systemctl reload payrail-gateway.service")
        client.succeed("curl -sf --cacert /etc/payrail-ca.pem https://vm2/health | grep UP")

    with subtest("the links between the hosts to MariaDB and Redis are TLS"):
        # Each shard accepted TLS sessions (the other host's services); the payrail account
        # is refused in clear from the other host; Redis's plaintext port is closed to it.
        for machine in [vm1, vm2]:
            accepts = machine.succeed("mysql -u root -N -e \"SHOW GLOBAL STATUS LIKE 'Ssl_accepts'\"").split()[-1]
            assert int(accepts) > 0, f"{machine.name}: Ssl_accepts {accepts}"
        vm2.fail("mysql -h vm1 -u payrail -ptest-db-password --skip-ssl -e 'SELECT 1'")
        vm2.succeed("mysql -h vm1 -u payrail -ptest-db-password --ssl --ssl-ca=/run/secrets/payrail/store-tls-ca -e 'SELECT 1'")
        vm2.fail("timeout 5 bash -c '</dev/tcp/vm1/6380'")
        vm1.succeed("redis-cli -p 6381 --tls --cacert /run/secrets/payrail/store-tls-ca -a test-redis-password --no-auth-warning PING | grep PONG")

    with subtest("the admin API through the gateway"):
        client.fail("curl -sf http://vm2:8080/api/admin/stats")
        client.fail("curl -sf http://vm2:8080/api/payments?merchantId=M-1")
        client.succeed("curl -sf -H 'Authorization: Bearer test-read-token-0123456789abcdef01234' http://vm2:8080/api/admin/stats")
        client.fail("curl -sf -X POST -H 'Authorization: Bearer test-read-token-0123456789abcdef01234' http://vm2:8080/api/admin/merchants/M-1/keys")
        client.succeed("curl -sf -H 'Authorization: Bearer test-admin-token-0123456789abcdef0123' http://vm2:8080/api/admin/stats | grep '\"up\":true'")
        auth = "-H 'Authorization: Bearer test-admin-token-0123456789abcdef0123'"
        client.succeed("curl -sf http://vm2:8080/admin | grep 'payrail admin'")
        client.succeed(f"curl -sf {auth} http://vm2:8080/api/admin/kafka | grep settlement-worker")
        client.succeed(f"curl -sf {auth} http://vm2:8080/api/admin/breakers | grep kafka-publisher")
        client.succeed(f"curl -sf {auth} http://vm2:8080/api/admin/reconciliation | grep '\"clean\":true'")
        client.succeed(f"curl -sf {auth} http://vm2:8080/api/admin/dlq/settlement.dlq | grep '\"total\":0'")

    with subtest("the k6 runner on monitoring keeps its history"):
        client.succeed(f"curl -sf {auth} -X POST -d '{{\"scenario\":\"authorize\",\"rate\":20,\"durationSeconds\":5}}' http://vm2:8080/api/admin/loadtests")
        client.wait_until_succeeds(f"curl -sf {auth} http://vm2:8080/api/admin/loadtests | grep PASSED", timeout=120)
        vm1.succeed("systemctl restart payrail-monitoring.service")
        client.wait_until_succeeds(f"curl -sf {auth} http://vm2:8080/api/admin/loadtests | grep PASSED", timeout=60)

    with subtest("Grafana answers a dashboard query through its datasource"):
        vm1.wait_for_unit("grafana.service")
        vm1.wait_for_open_port(3000)
        query = "sum(rate(payrail_gateway_requests_total[1m]))"
        vm1.wait_until_succeeds(
            "curl -sf -u admin:admin -G http://127.0.0.1:3000/api/datasources/proxy/uid/payrail-prometheus/api/v1/query"
            f" --data-urlencode 'query={query}' | grep '\"status\":\"success\"'",
            timeout=120,
        )
        vm1.succeed("curl -sf -u admin:admin 'http://127.0.0.1:3000/api/search?query=payrail' | grep -i overview")

    with subtest("systemd-analyze security of every payrail unit: exposure at most 2.0"):
        for machine, units in [(vm1, ["payrail-ingest", "payrail-monitoring", "payrail-kafka-topics", "payrail-mariadb-user"]), (vm2, ["payrail-gateway", "payrail-ingest", "payrail-settlement-worker", "payrail-refund-worker", "payrail-ledger", "payrail-pg-mock", "payrail-mariadb-user"])]:
            for unit in units:
                line = machine.succeed(f"systemd-analyze security {unit}.service | tail -1").strip()
                machine.log(line)
                exposure = float(line.split(":")[-1].split()[0])
                assert exposure <= 2.0, f"{unit}: {line}"
  '';
}
