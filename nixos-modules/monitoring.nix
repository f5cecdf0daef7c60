# services.payrail.monitoring: the admin API (every shard, rate-limit reset, cache clear, audit log).
import ./service.nix {
  name = "monitoring";
  description = "the admin API (every shard, rate-limit reset, cache clear, audit log)";
  defaultPort = 8087;
}
