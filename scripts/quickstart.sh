#!/usr/bin/env bash
# The main-job command: set up .venv if needed, then run `rmpsnn quickstart` (about 4 minutes on
# 2 CPU cores): conversion with soft vs hard reset, direct training with and without RMP-Loss,
# and a report in runs/quickstart/report/.  Arguments go to the command (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/rmpsnn quickstart "$@"
