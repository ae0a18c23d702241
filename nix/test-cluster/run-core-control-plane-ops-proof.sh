#!/usr/bin/env bash
# Standalone entry point to the core-control-plane-ops-proof lane. Needs only Node.js >= 20.19 and npm
# (no nix): it runs the repository's set-up, then the lane. Artifacts land in
# work/core-control-plane-ops-proof/<UTC timestamp>/ (work/core-control-plane-ops-proof/latest points
# at the newest run); the exit status is the lane's verdict. Extra arguments go to the lane: `--netns`
# (each member in its own network namespace) needs root and iproute2.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if ! command -v node >/dev/null 2>&1; then
  echo "run-core-control-plane-ops-proof: node is not on PATH; install Node.js 20.19 or newer" >&2
  exit 2
fi

node scripts/setup.mjs
exec node test-cluster/bin/cluster.js core-control-plane-ops-proof "$@"
