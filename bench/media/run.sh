#!/usr/bin/env bash
# Call-setup time added by sipmesh + rtpengine vs Kamailio + rtpengine. See docs/PERFORMANCE.md.
# Usage: bench/media/run.sh [--runs 3] [--calls 1000] [--rate 100] [--limit 50] [--target sipmesh|kamailio|both] [--no-build]
set -euo pipefail
exec python3 "$(dirname "$(readlink -f "$0")")/run.py" "$@"
