# The NixOS VM twin of tests/it/two_host.rs (`cargo xtask test` runs that one here): the
# real vm1.nix and vm2.nix plus a load client. Full flow through the gateway, the 1,000 RPS
# k6 check, then the pipeline drains and `ledger reconcile` is clean; every payrail unit's
# `systemd-analyze security` is logged.
{self}: let
  # Test-only secrets, written at boot by an activation script (a real deployment puts
  # them in payrail.hosts.secretsDir out of band; they never enter the store there).
  testSecrets = {
    system.activationScripts.payrail-test-secrets = ''
      mkdir -p /run/secrets/payrail
      echo test-db-password > /run/secrets/payrail/db-password
      echo test-redis-password > /run/secrets/payrail/redis-password
      echo admin > /run/secrets/payrail/grafana-admin-password
      echo test-grafana-secret-key > /run/secrets/payrail/grafana-secret-key
      echo test-admin-token > /run/secrets/payrail/admin-token
      chmod 0400 /run/secrets/payrail/*
    '';
  };
  vm = file: {
    imports = [self.nixosModules.default file testSecrets];
    virtualisation = {
      memorySize = 4096;
      cores = 2;
      diskSize = 4096;
    };
  };
in {
  name = "payrail-two-host";
  nodes = {
    vm1 = vm ../../vm1.nix;
    vm2 = vm ../../vm2.nix;
    client = {pkgs, ...}: {
      environment.systemPackages = [pkgs.k6 pkgs.curl];
      environment.etc."payrail-k6".source = ../../k6;
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
        client.succeed("k6 run -e BASE_URL=http://vm2:8080 -e RATE=50 -e DURATION=20s /etc/payrail-k6/full-flow.js")

    with subtest("1,000 RPS of authorizations"):
        client.succeed("k6 run -e BASE_URL=http://vm2:8080 -e RATE=1000 -e DURATION=30s --summary-export=/tmp/k6.json /etc/payrail-k6/authorize.js")
        client.copy_from_vm("/tmp/k6.json", "")

    with subtest("the pipeline drains and reconciles"):
        vm2.wait_until_succeeds("systemctl start payrail-ledger-reconcile.service", timeout=300)
        vm2.log(vm2.succeed("journalctl -u payrail-ledger-reconcile.service -n 5 --no-pager"))

    with subtest("the admin API through the gateway"):
        client.fail("curl -sf http://vm2:8080/api/admin/stats")
        client.succeed("curl -sf -H 'Authorization: Bearer test-admin-token' http://vm2:8080/api/admin/stats | grep '\"up\":true'")
        auth = "-H 'Authorization: Bearer test-admin-token'"
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

    with subtest("systemd-analyze security of every payrail unit"):
        for machine, units in [(vm1, ["payrail-ingest", "payrail-monitoring"]), (vm2, ["payrail-gateway", "payrail-ingest", "payrail-settlement-worker", "payrail-refund-worker", "payrail-ledger", "payrail-pg-mock"])]:
            for unit in units:
                machine.log(machine.succeed(f"systemd-analyze security {unit}.service | tail -1"))
  '';
}
