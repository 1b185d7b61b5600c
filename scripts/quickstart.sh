#!/usr/bin/env bash
# The main-job command: set up .venv if needed, then run `rmpsnn quickstart` (time: README.md,
# "Two commands"): conversion with soft vs hard reset, direct training with and without RMP-Loss,
# each figure with its 95 % interval, a report in runs/quickstart/report/ and
# runs/quickstart/summary.json.  Arguments go to the command (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/rmpsnn quickstart "$@"
