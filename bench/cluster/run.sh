#!/usr/bin/env bash
# Cluster benchmark: REGISTER/s and calls/s with every request entering at a random node, for
# 1 and 3 sipmesh nodes (one real redis-server, nodes on 127.0.0.11..13), and the time from
# SIGKILL to full service through the survivors (median and max over --kills kills); then the
# same load against one Kamailio (bench/load/kamailio.cfg) as the reference column, with the
# ratios. --no-kamailio leaves that column out.
# The load comes from closed-loop UDP agents in `cluster-bench` (simulations/), not SIPp: SIPp
# cannot pick a random node per request. See docs/PERFORMANCE.md, "Cluster".
#
# Usage: bench/cluster/run.sh [--debug] [--no-kamailio] [cluster-bench options]
#   --nodes 1,3  --agents 200  --seconds 10  --kills 20  --any-node-in-dialog  --json  --seed N
# --debug uses the dev profile (quick to build; figures not comparable with release ones).
set -euo pipefail
root="$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)"
profile=release
dir=release
if [[ "${1:-}" == "--debug" ]]; then
  profile=dev
  dir=debug
  shift
fi
kamailio=(--kamailio-cfg "$root/bench/load/kamailio.cfg")
if [[ "${1:-}" == "--no-kamailio" ]]; then
  kamailio=()
  shift
fi
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server" >&2; exit 2; }
if (( ${#kamailio[@]} )); then
  command -v kamailio >/dev/null || { echo "kamailio missing: apt-get install kamailio (or pass --no-kamailio)" >&2; exit 2; }
fi
cd "$root"
cargo build --profile "$profile" -p sipmesh-node --bin sipmesh -p sipmesh-simulations --bin cluster-bench
target="${CARGO_TARGET_DIR:-$root/target}/$dir"
echo "# cluster-bench ($profile build), $(nproc) cores, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
exec "$target/cluster-bench" --sipmesh "$target/sipmesh" "${kamailio[@]}" "$@"
