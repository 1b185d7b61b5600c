#!/usr/bin/env bash
# The GPU benchmark suite in one command (see benchmarks/gpu_suite.py): OUT=/path bash benchmarks/gpu_suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_suite.py "$@"
