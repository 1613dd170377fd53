"""`make bench`: run every benchmark script in turn and print what each measures.

Benchmarks print numbers for a human (the README records them); they are not tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        t0 = time.perf_counter()
        # as a module from the repository root: `import scaler` and `import bench` resolve there
        rc = subprocess.call([sys.executable, "-m", f"bench.{script.stem}"], cwd=HERE.parent)
        print(f"== {script.name}: exit {rc}, {time.perf_counter() - t0:.1f} s\n", flush=True)
        if rc != 0:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
