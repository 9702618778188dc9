#!/usr/bin/env bash
# The quick start, from a fresh clone: installs what is missing, builds, makes a tiny
# Qwen3-architecture model and dataset (no download), and launches two CPU ranks with
# weights 3:1 on configs/quickstart.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
.venv/bin/python tools/make_tiny_example.py --out examples/tiny
launch/local.sh 2 configs/quickstart.yaml --dry-run
echo "[quickstart] the world above is what training will use. Training itself lands with the" \
  "distributed-training work (README, 'Status'); until then the quick start stops at --dry-run." >&2
