# The systemd hardening every payrail unit starts from: the payrail services and their
# command units take it as it is; the helper units (the MariaDB account, the Kafka topics)
# override what their tools need. `tests/it/nix_files.rs` renders every unit of both hosts
# and holds each to `systemd-analyze security` exposure <= 2.0 (the table is in README).
{
  DynamicUser = true;
  ProtectSystem = "strict";
  ProtectHome = true;
  PrivateTmp = true;
  PrivateDevices = true;
  PrivateUsers = true;
  PrivateMounts = true;
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
}
