#!/usr/bin/env bash
# Create .venv (once) with torch and rmpsnn installed in editable mode, plus the dev tools.
# Safe to run repeatedly: it reinstalls only when pyproject.toml changed.  --test also installs
# what only the tests need (tests/requirements-*.txt).
#
#   TORCH_SPEC   the torch requirement installed first (default: torch==2.13.0, the CPU build
#                this project is tested with; e.g. TORCH_SPEC="torch==2.5.1" for a CUDA machine)
#   PYTHON       the interpreter for the venv (default: python3; needs >= 3.10)
#   VENV         where to put it (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "rmpsnn needs Python >= 3.10, found " + sys.version.split()[0])'

stamp="$VENV/.rmpsnn-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $TORCH_SPEC"
if ! { [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
    echo "setting up $VENV (torch: $TORCH_SPEC) ..." >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # torch first: the package asks only for a range (torch>=2.2), which the build installed here
    # satisfies, so pip never pulls a multi-GB CUDA build on a CPU machine.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$want" > "$stamp"
fi

# --test: also the real snnTorch / Norse / SpikingJelly NIR importers, for the interop tests, and
# triton, whose interpreter runs the CUDA kernels' tests on CPU (not rmpsnn dependencies;
# scripts/test.sh asks for them, the quickstart does not)
if [ "${1:-}" = "--test" ]; then
    tstamp="$VENV/.rmpsnn-test-installed"
    twant="$(cat tests/requirements-*.txt | sha256sum | cut -d' ' -f1) $TORCH_SPEC"
    if ! { [ -f "$tstamp" ] && [ "$(cat "$tstamp")" = "$twant" ]; }; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r tests/requirements-interop.txt -r tests/requirements-kernels.txt "$TORCH_SPEC"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
            -r tests/requirements-interop-nodeps.txt
        echo "$twant" > "$tstamp"
    fi
fi
