#!/usr/bin/env bash
# Idle WebSocket/WSS connection benchmark of sipmesh (issue 3). See docs/PERFORMANCE.md.
# Usage: bench/ws/run.sh [--ns 10000,50000] [--transports ws,wss] [--runs 3] [--no-build] ...
set -euo pipefail
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$(dirname "$(readlink -f "$0")")/run.py" "$@"
