# Facts about every unit of both example hosts and of the VM test's two nodes (which turn
# on payrail.hosts.storeTls and the gateway's TLS), from the evaluation kit's flake
# evaluation (../shared/nix-eval), for tests/it/nix_files.rs: what each unit runs, which
# credentials it loads, and the credential paths its config file names.
# nix-instantiate --eval --strict --json unit-facts.nix --arg harness .../harness --arg proj .
{
  harness,
  proj,
}: let
  flake = import (harness + "/flake-eval.nix") {inherit proj;};
  lib = import (harness + "/../nixpkgs-lib/lib");
  facts = c: let
    payrailUnits = lib.filterAttrs (name: _: lib.hasPrefix "payrail-" name) c.systemd.services;
  in {
    units =
      lib.mapAttrs (_: s: {
        execStart = toString (s.serviceConfig.ExecStart or "");
        loadCredential = map toString (s.serviceConfig.LoadCredential or []);
        # Every [Service] setting, for `systemd-analyze security --offline` on the unit.
        serviceConfig = lib.mapAttrs (_: v:
          if lib.isList v
          then map toString v
          else if lib.isBool v
          then v
          else toString v)
        s.serviceConfig;
      })
      (payrailUnits // lib.optionalAttrs c.services.grafana.enable {inherit (c.systemd.services) grafana;});
    # Unit name -> the settings its config file holds.
    settings = lib.concatMapAttrs (_: s: s.unitSettings) (lib.filterAttrs (_: s: s.enable) c.services.payrail);
    grafana = lib.optionalAttrs c.services.grafana.enable c.services.grafana.settings.security;
  };
  testNodes = flake.outputs.checks.x86_64-linux.two-host.nodes;
in {
  vm1 = facts flake.outputs.nixosConfigurations.vm1.config;
  vm2 = facts flake.outputs.nixosConfigurations.vm2.config;
  test-vm1 = facts testNodes.vm1;
  test-vm2 = facts testNodes.vm2;
}
