"""Compare two quickstart runs: ``python scripts/compare_quickstart.py RUN_A RUN_B`` (run
directories of ``rmpsnn quickstart --out`` or their ``summary.json``).

They agree when every headline claim is decided the same way and every accuracy of one run
lies inside the other's 95 % interval.  Exit status 0 when they agree, 1 when not, 2 for bad
input.  Use it to check that the quickstart's table reproduces on another machine, thread
count or torch build (e.g. ``OMP_NUM_THREADS=1 rmpsnn quickstart --out runs/qs-1thread``).
"""

import json
import sys
from pathlib import Path

from rmpsnn.app.claims import compare_summaries


def _load(arg: str) -> dict:
    path = Path(arg)
    path = path / "summary.json" if path.is_dir() else path
    try:
        summary = json.loads(path.read_text())
        if not all(k in summary for k in ("conversion_claims", "direct_claim", "timesteps")):
            raise ValueError("no conversion_claims / direct_claim / timesteps")
    except (OSError, ValueError, TypeError) as e:
        print(f"error: {path} is not the summary.json of `rmpsnn quickstart` ({e})", file=sys.stderr)
        sys.exit(2)
    return summary


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    a, b = map(_load, argv)
    for name, s in (("A", a), ("B", b)):
        m = s.get("machine", {})
        print(
            f"{name}: {s.get('seconds', 0):.0f} s wall, {s.get('cpu_seconds', 0):.0f} CPU-s; {m.get('cpu')}, "
            f"{m.get('usable_cores')} cores, {m.get('torch_threads')} torch threads, torch {m.get('torch')}, "
            f"load {m.get('load_average')}"
        )
    agree, lines = compare_summaries(a, b)
    print("\n".join(lines))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
