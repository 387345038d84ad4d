#!/usr/bin/env bash
# The demo: installs what it needs, then starts a whole Presage cluster on loopback with a
# workload and a server that degrades and gets drained. Extra arguments go to `presage demo`
# (e.g. --headless --duration 240).
set -euo pipefail
cd "$(dirname "$0")/.."
PRESAGE_SKIP_BROWSER=1 bash scripts/install-deps.sh
exec bin/presage demo "$@"
