#!/usr/bin/env bash
# The main-job command: set up .venv if needed, then run the demo of the neuron core.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/rmpsnn demo "$@"
