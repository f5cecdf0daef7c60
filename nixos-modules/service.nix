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
  mainUnit = "payrail-${name}";
  credentialsDir = unit: "/run/credentials/${unit}.service/";
  # Settings name secret files in the main unit's credentials directory. A command unit
  # has its own (systemd gives each unit its own, readable only by that unit's user), so
  # its config is the same settings with that prefix pointed at its own directory.
  settingsFor = unit: let
    retarget = v:
      if lib.isString v
      then builtins.replaceStrings [(credentialsDir mainUnit)] [(credentialsDir unit)] v
      else if lib.isList v
      then map retarget v
      else if lib.isAttrs v
      then lib.mapAttrs (_: retarget) v
      else v;
  in
    retarget cfg.settings;
  units = [mainUnit] ++ map (command: "${mainUnit}-${command}") cfg.commands;
  # A bad setting fails `nixos-rebuild`, not the boot.
  checkedConfig = unit: let
    raw = format.generate "${unit}.toml" (settingsFor unit);
  in
    pkgs.runCommand "${unit}-checked.toml" {} ''
      ${lib.getExe cfg.package} --config ${raw} --check-config
      cp ${raw} $out
    '';
  # Hardening, shared by the service and its command units: the network and the state
  # directory, nothing else (exposure 1.2 "OK" in `systemd-analyze security`, README).
  hardening = import ./hardening.nix;
  loadCredential = lib.mapAttrsToList (id: path: "${id}:${path}") cfg.credentials;
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
    unitSettings = lib.mkOption {
      type = lib.types.attrsOf lib.types.anything;
      readOnly = true;
      internal = true;
      description = "The settings each unit's config file holds, by unit name (for checks).";
    };
  };

  config = lib.mkMerge [
    {services.payrail.${name}.unitSettings = lib.genAttrs units settingsFor;}
    (lib.mkIf cfg.enable {
      assertions = [
        {
          assertion = lib.all (p: !(lib.hasPrefix builtins.storeDir (toString p))) (lib.attrValues cfg.credentials);
          message = "services.payrail.${name}.credentials must not be store paths: the store is world-readable";
        }
      ];
      networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [cfg.port];
      systemd.services =
        lib.genAttrs' cfg.commands (command: let
          unit = "${mainUnit}-${command}";
        in
          lib.nameValuePair unit {
            description = "payrail ${name} ${command}";
            after = ["network-online.target"];
            wants = ["network-online.target"];
            serviceConfig =
              hardening
              // {
                Type = "oneshot";
                ExecStart = "${lib.getExe cfg.package} --config ${checkedConfig unit} ${command}";
                LoadCredential = loadCredential;
              };
          })
        // {
          ${mainUnit} = {
            inherit description;
            wantedBy = ["multi-user.target"];
            after = ["network-online.target"];
            wants = ["network-online.target"];
            serviceConfig =
              hardening
              // {
                ExecStart = "${lib.getExe cfg.package} --config ${checkedConfig mainUnit}";
                LoadCredential = loadCredential;
                Restart = "on-failure";
                RestartSec = 2;
                StateDirectory = mainUnit;
                LimitNOFILE = 65536;
              };
          };
        };
    })
  ];
}
