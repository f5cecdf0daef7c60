#!/usr/bin/env bash
# The issue-3 benchmark: k6/full-flow.js against the local stack, then the time until the
# pipeline has drained (no payment, refund or outbox row in a transient state) and until
# `ledger reconcile` is clean, then the outbox lag histogram.
#
#   k6/full-flow-bench.sh [RATE] [DURATION_S] [OUT_PREFIX]
#
# Needs `cargo xtask up` (reads .stack/ for the DB password and the hosts); the load goes
# through the gateway, from the client namespace on the two-host mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-300}
DURATION=${2:-60}
OUT=${3:-k6/results/full-flow-$RATE}
PASSWORD=$(cat .stack/secrets/db-password)
# Hosts of vm1 and vm2 as `cargo xtask up` placed them (two-host mirror or 127.0.0.1).
read -r VM1 VM2 < .stack/layout
export BASE_URL=${BASE_URL:-http://$VM2:8080}

transient() {
  local total=0 n shard
  for shard in "$VM1:3307" "$VM2:3308"; do
    n=$(mysql -h"${shard%:*}" -P"${shard#*:}" -upayrail -p"$PASSWORD" payrail -N -e "
      SELECT (SELECT COUNT(*) FROM payment WHERE status IN ('CAPTURE_REQUESTED','REFUND_REQUESTED'))
           + (SELECT COUNT(*) FROM refund WHERE status = 'REQUESTED')
           + (SELECT COUNT(*) FROM outbox_event WHERE published_at IS NULL)")
    total=$((total + n))
  done
  echo "$total"
}

# From the load client namespace when the mirror runs, else from here.
RUNNER=()
if ip netns list 2>/dev/null | grep -q '^payrail-cl'; then RUNNER=(ip netns exec payrail-cl); fi
"${RUNNER[@]}" k6 run -e BASE_URL="$BASE_URL" -e RATE="$RATE" -e DURATION="${DURATION}s" --summary-export "$OUT.json" k6/full-flow.js \
  | tee "$OUT.txt" || true
ended=$(date +%s.%N)
{
  echo "machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), all co-located, durable InnoDB, kafka storage ${PAYRAIL_KAFKA_STORAGE:-sqlite}"
  for _ in $(seq 1 600); do
    if [ "$(transient)" -eq 0 ]; then
      echo "pipeline drained $(echo "$(date +%s.%N) - $ended" | bc) s after k6 ended"
      break
    fi
    sleep 0.5
  done
  for _ in $(seq 1 600); do
    if report=$(target/release/ledger --config .stack/ledger/ledger.toml reconcile 2>&1); then
      echo "reconcile: $report ($(echo "$(date +%s.%N) - $ended" | bc) s after k6 ended)"
      break
    fi
    sleep 1
  done
  for ingest in "$VM1:8081" "$VM2:8082"; do
    curl -s "$ingest/metrics" | grep -E '^payrail_outbox_lag_seconds_(bucket|count)' || true
  done
} | tee -a "$OUT.txt"
