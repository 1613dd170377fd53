"""Cost of `dynplan render manifests`: load + build + render + static checks, and promtool.

Run: .venv/bin/python -m bench.bench_render
Not a test: timings depend on the machine; this prints them for a human to read.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from scaler.render.pipeline import build_all, load, promtool_checks, render, render_manifests, static_checks

PLANS = [str(ROOT / "tests/fixtures/render/disagg.yaml"), str(ROOT / "tests/fixtures/render/agg.yaml")]


def best_ms(fn, n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> None:
    loaded = load(PLANS)
    built = build_all(loaded, "keda")
    rendering = render(built)
    print(f"load 2 plans (profiles from npz):   {best_ms(lambda: load(PLANS)):8.1f} ms")
    print(f"build + render templates:           {best_ms(lambda: render(build_all(loaded, 'keda'))):8.1f} ms")
    print(f"static checks (schema, admission, ConfigMap round trip): {best_ms(lambda: static_checks(rendering)):8.1f} ms")
    print(f"whole command to stdout:            {best_ms(lambda: render_manifests(PLANS, '-', stdout=io.StringIO())):8.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in rendering.texts.items():
            (Path(tmp) / name).write_text(text)
        print(f"promtool check + test (2 plans):    {best_ms(lambda: promtool_checks(rendering, Path(tmp)), 3):8.1f} ms")
    size = sum(len(f.text) for f in rendering.files)
    print(f"output: {len(rendering.files)} files, {size} bytes")


if __name__ == "__main__":
    main()
