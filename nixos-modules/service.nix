# The shape every payrail service module shares: `services.payrail.<name>` with
# `enable`, `package`, `settings` (freeform TOML, checked at build time with the binary's
# `--check-config`), `credentials` (secret files handed over with LoadCredential, never
# copied into the store), `openFirewall`, and a hardened systemd unit.
#
# A service module is `import ./service.nix { name = "ingest"; ... }`.
{
  name,
  description,
  # The settings key holding the listen address (`host:port`), for the firewall.
  defaultPort,
}: {
  config,
  lib,
  pkgs,
  ...
}: let
  cfg = config.services.payrail.${name};
  format = pkgs.formats.toml {};
  rawConfig = format.generate "${name}.toml" cfg.settings;
  # A bad setting fails `nixos-rebuild`, not the boot.
  checkedConfig = pkgs.runCommand "${name}-checked.toml" {} ''
    ${lib.getExe cfg.package} --config ${rawConfig} --check-config
    cp ${rawConfig} $out
  '';
in {
  options.services.payrail.${name} = {
    enable = lib.mkEnableOption "payrail ${name}: ${description}";
    package = lib.mkOption {
      type = lib.types.package;
      description = "The ${name} package (a statically linked binary).";
    };
    settings = lib.mkOption {
      type = lib.types.submodule {freeformType = format.type;};
      default = {};
      description = ''
        ${name}'s TOML config (see its config.rs for every key and its reason). Secret
        paths point into the unit's credentials directory:
        `/run/credentials/payrail-${name}.service/<credential name>`.
      '';
    };
    credentials = lib.mkOption {
      type = lib.types.attrsOf lib.types.path;
      default = {};
      example = {db-password = "/run/secrets/payrail-db-password";};
      description = "Secret files by credential name, loaded with systemd's LoadCredential.";
    };
    port = lib.mkOption {
      type = lib.types.port;
      default = defaultPort;
      description = "The TCP port ${name} listens on (opened by openFirewall).";
    };
    commands = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [];
      example = ["reconcile"];
      description = ''
        Subcommands (e.g. the ledger's `reconcile`, a worker's `replay-dlq`) exposed as
        oneshot units `payrail-${name}-<command>` with the same config and credentials:
        `systemctl start payrail-ledger-reconcile` fails when reconciliation does.
      '';
    };
    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open `port` in the firewall.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.all (p: !(lib.hasPrefix builtins.storeDir (toString p))) (lib.attrValues cfg.credentials);
        message = "services.payrail.${name}.credentials must not be store paths: the store is world-readable";
      }
    ];
    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [cfg.port];
    systemd.services =
      lib.genAttrs' cfg.commands (command:
        lib.nameValuePair "payrail-${name}-${command}" {
          description = "payrail ${name} ${command}";
          serviceConfig = {
            Type = "oneshot";
            ExecStart = "${lib.getExe cfg.package} --config ${checkedConfig} ${command}";
            LoadCredential = lib.mapAttrsToList (id: path: "${id}:${path}") cfg.credentials;
            DynamicUser = true;
            ProtectSystem = "strict";
            NoNewPrivileges = true;
          };
        })
      // {
        "payrail-${name}" = {
          inherit description;
          wantedBy = ["multi-user.target"];
          after = ["network-online.target"];
          wants = ["network-online.target"];
          serviceConfig = {
            ExecStart = "${lib.getExe cfg.package} --config ${checkedConfig}";
            LoadCredential = lib.mapAttrsToList (id: path: "${id}:${path}") cfg.credentials;
            Restart = "on-failure";
            RestartSec = 2;
            DynamicUser = true;
            StateDirectory = "payrail-${name}";
            LimitNOFILE = 65536;
            # Hardening: the services need the network and their state directory, nothing else.
            ProtectSystem = "strict";
            ProtectHome = true;
            PrivateTmp = true;
            PrivateDevices = true;
            PrivateUsers = true;
            NoNewPrivileges = true;
            CapabilityBoundingSet = [""];
            AmbientCapabilities = [""];
            MemoryDenyWriteExecute = true;
            LockPersonality = true;
            ProtectClock = true;
            ProtectHostname = true;
            ProtectKernelLogs = true;
            ProtectKernelModules = true;
            ProtectKernelTunables = true;
            ProtectControlGroups = true;
            ProtectProc = "invisible";
            ProcSubset = "pid";
            RestrictAddressFamilies = ["AF_INET" "AF_INET6" "AF_UNIX"];
            RestrictNamespaces = true;
            RestrictRealtime = true;
            RestrictSUIDSGID = true;
            RemoveIPC = true;
            SystemCallArchitectures = "native";
            SystemCallFilter = ["@system-service" "~@privileged" "~@resources"];
            UMask = "0077";
          };
        };
      };
  };
}
