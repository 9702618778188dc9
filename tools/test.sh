#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test tier
# (unit, mpi, reference; gpu tests skip with a reason where no GPU is visible).
# Extra arguments go to ctest, e.g. tools/test.sh -L unit  or  tools/test.sh -R Config
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
build=${LOOM_BUILD_DIR:-build}
ctest --test-dir "$build" --output-on-failure --timeout 900 -j "${LOOM_TEST_JOBS:-2}" "$@"
