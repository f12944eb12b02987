#!/usr/bin/env bash
# SIPp load benchmark, sipmesh vs Kamailio 5.6 on loopback. See docs/PERFORMANCE.md.
# Usage: bench/load/run.sh [--runs 3] [--only register|call|message|memory]
#                          [--target sipmesh|sipmesh-redis|kamailio|both|all] [--no-build] [--workdir DIR]
set -euo pipefail
exec python3 "$(dirname "$(readlink -f "$0")")/run.py" "$@"
