"""Seeded fuzzing of the plan and profile loaders: random mutations of the example plans and
profiles, plus adversarial YAML (aliases, deep nesting, huge scalars, odd unicode, duplicate
keys, tags, binary). Every case either loads or raises the loader's own error (PlanError /
ProfileError, exit 2 in the CLI) with short messages, within a time and memory bound per
case; never another exception. Red-team H1, L8, L11-L14. The same hostile files through the
real `dynplan validate`: tests/integration/test_cli_hostile_inputs.py."""

from __future__ import annotations

import io
import json
import random
import shutil
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from helpers import EXAMPLES, SYNTHETIC_PROFILE_DIR
from scaler.errors import FieldError, PlanError, ProfileError
from scaler.planfile import LoadedPlan, load_plan
from scaler.profile_io import load_profile

SEED = 20261201
CASE_SECONDS = 2.0  # per case; the slowest legitimate one takes ~50 ms
CASE_PEAK_BYTES = 64 << 20  # traced Python allocations per case
MESSAGE_CHARS = 700  # one error line: file path + field + clipped message

ODD_SCALARS = [
    "9" * 5000, "x" * 200_000, "1e308", "-1e308", "1e-320", "-0.0", ".nan", ".inf", "-.inf", "true", "null", "~",
    "''", '""', "0x7fffffffffffffff", "0o777", "1_000", "2024-01-01", "12:30:00", "!!binary aGVsbG8=",
    "!!python/object/apply:os.system ['true']", "!!set {a, b}", "!!omap [a: 1]", "!!str 5", "!!int '5'",
    '"\\u202e\\u200b"', '"\\ud800"', '"\\x85\\u2028\\u2029"', '"\\0"', '"\\x1b[31m"', "🦙🦙🦙", "ｌｌａｍａ",
    "[" * 40 + "]" * 40, "{a: " * 40 + "1" + "}" * 40, "&x [1, 2]", "*undefined", "<<: {a: 1}",
    "'" + "'" * 3, "[1, 2", "{a: 1", "- - - -", "|\n  block\n  text", ">-\n  folded", "? [a, b]\n  : c",
]


def _base_texts(tmp: Path) -> list[str]:
    disagg = (EXAMPLES / "llama-8b-disagg.yaml").read_text().replace("profile: profiles/", f"profile: {EXAMPLES / 'profiles'}/")
    prefill = json.loads((SYNTHETIC_PROFILE_DIR / "prefill_raw_data.json").read_text())
    decode = json.loads((SYNTHETIC_PROFILE_DIR / "decode_raw_data.json").read_text())
    inline = (EXAMPLES / "llama-8b-agg.yaml").read_text() + "  profileData:\n" + "".join(
        f"    {part}:\n" + "".join(f"      {k}: {json.dumps(v)}\n" for k, v in arrays.items())
        for part, arrays in (("prefill", prefill), ("decode", decode))
    )
    return [disagg, (EXAMPLES / "llama-8b-agg.yaml").read_text(), inline.replace("\n  pools:", "\n  pools:", 1)]


def _mutate(rng: random.Random, text: str) -> str | bytes:
    lines = text.splitlines(keepends=True)
    op = rng.randrange(10)
    if op == 0:  # a scalar value replaced by an odd one
        i = rng.randrange(len(lines))
        head, sep, _ = lines[i].partition(": ")
        lines[i] = f"{head}{sep or ': '}{rng.choice(ODD_SCALARS)}\n"
    elif op == 1:  # a line duplicated (duplicate keys) or moved
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines.insert(j, lines[i]) if rng.random() < 0.7 else lines.insert(j, lines.pop(i))
    elif op == 2:  # a span deleted
        i = rng.randrange(len(lines))
        del lines[i : i + rng.randint(1, 5)]
    elif op == 3:  # an anchor and aliases
        i = rng.randrange(len(lines))
        head, sep, value = lines[i].partition(": ")
        if sep:
            lines[i] = f"{head}: &a {value}"
            lines.append(f"extra: [*a, *a, *a]\n")
    elif op == 4:  # indentation changed
        i = rng.randrange(len(lines))
        lines[i] = rng.choice(["", " ", "\t", "    "]) + lines[i]
    elif op == 5:  # random bytes flipped
        data = bytearray("".join(lines).encode())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    elif op == 6:  # a deep block or flow structure appended
        depth = rng.choice([10, 31, 33, 100, 5000])
        if rng.random() < 0.5:
            lines.append("x: " + "[" * depth + "]" * depth + "\n")
        else:
            lines.append("x:\n" + "".join(" " * (2 * k + 2) + f"k{k}:\n" for k in range(min(depth, 400))))
    elif op == 7:  # line endings, BOM, documents
        variant = rng.randrange(3)
        joined = "".join(lines)
        return ["\ufeff" + joined, joined.replace("\n", "\r\n"), joined + "---\n" * rng.randint(1, 50)][variant]
    elif op == 8:  # a numeric array element made adversarial
        i = rng.randrange(len(lines))
        if "[" in lines[i]:
            lines[i] = lines[i].replace("[", "[" + rng.choice(["true", "'1'", "[1]", "1e400", "-.inf", "9" * 400]) + ", ", 1)
    else:  # unicode in keys and values
        i = rng.randrange(len(lines))
        lines[i] = lines[i].replace(":", rng.choice(["\u0130:", "\u00a0:", ":\u2028", "\u0000:", ": \U0001f999"]), 1)
    return "".join(lines)


def _adversarial() -> Iterator[tuple[str, str | bytes]]:
    base = (EXAMPLES / "llama-8b-agg.yaml").read_text()
    for levels in (3, 6, 9):
        bomb = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
        yield f"alias-bomb-{levels}", "\n".join(bomb) + "\n" + base.replace("kind: Plan", f"kind: *a{levels - 1}")
    yield "merge-alias", base.replace("sla:", "sla: &s").replace("workload:", "workload:\n    <<: *s\n   ", 1)
    yield "deep-flow", base + "x: " + "[" * 100_000 + "]" * 100_000 + "\n"
    yield "deep-map", base + "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"
    yield "many-nodes", base + "x: [" + ",".join(["0"] * 300_000) + "]\n"
    yield "long-line", base + "x: " + "y" * (1 << 20) + "\n"
    yield "huge-key", base + "? " + "k" * 500_000 + "\n: 1\n"
    yield "many-docs", base + "---\n{}\n" * 10_000
    yield "binary", bytes(random.Random(SEED).randrange(256) for _ in range(4096))
    yield "nul", base.replace("kind", "ki\0nd")
    yield "utf16", base.encode("utf-16")
    yield "dup-top", base + "kind: Plan\n"
    yield "huge-int", base.replace("maxReplicas: 8", "maxReplicas: " + "9" * 5000, 1)  # ValueError before
    yield "python-tag", base.replace("kind: Plan", "kind: !!python/object/apply:os.system ['touch /tmp/pwned']")


def _check(run: Callable[[], object], expected: type[Exception]) -> tuple[float, int, object]:
    """Run one case: (seconds, traced peak bytes or 0, LoadedPlan/Profile or None)."""
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
    t0 = time.perf_counter()
    result: object = None
    try:
        result = run()
    except expected as exc:
        errors: list[FieldError] = exc.errors  # type: ignore[attr-defined]
        assert errors, "an error with no message"
        for err in errors:
            assert err.message and len(str(err)) < MESSAGE_CHARS, str(err)[:2000]
    elapsed = time.perf_counter() - t0
    return elapsed, tracemalloc.get_traced_memory()[1] if tracing else 0, result


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def test_plan_loader_adversarial(tmp_path: Path) -> None:
    """Each hand-made hostile plan: bounded time untraced, bounded memory traced."""
    for name, content in _adversarial():
        path = _write(tmp_path / "case.yaml", content)
        elapsed, _, result = _check(lambda: load_plan(path), PlanError)
        assert result is None, name  # every one of them is refused
        assert elapsed < CASE_SECONDS, (name, elapsed)
        tracemalloc.start()
        try:
            _, peak, _ = _check(lambda: load_plan(path), PlanError)
        finally:
            tracemalloc.stop()
        assert peak < CASE_PEAK_BYTES, (name, peak)
    assert not Path("/tmp/pwned").exists()


def test_plan_loader_fuzz(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    bases = _base_texts(tmp_path)
    loaded = 0
    n_cases = 400
    for n in range(n_cases):
        text: str | bytes = rng.choice(bases)
        for _ in range(rng.choice([1, 1, 2, 3])):
            text = _mutate(rng, text if isinstance(text, str) else text.decode("utf-8", "replace"))
        path = _write(tmp_path / "case.yaml", text)
        elapsed, _, result = _check(lambda: load_plan(path), PlanError)
        assert elapsed < CASE_SECONDS, (n, elapsed)
        loaded += isinstance(result, LoadedPlan)
    # Mild enough that some mutated plans still load, hostile enough that most do not.
    assert 20 < loaded < n_cases - 100, loaded


def _profile_cases(rng: random.Random) -> Iterator[tuple[str, Callable[[Path], None]]]:
    npz = SYNTHETIC_PROFILE_DIR / "selected_decode_interpolation" / "raw_data.npz"
    raw = npz.read_bytes()

    def flip(data: bytes, k: int) -> bytes:
        b = bytearray(data)
        for _ in range(k):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)

    for n in range(60):
        data = flip(raw, rng.randint(1, 20))
        yield f"npz-flip-{n}", lambda d, data=data: (d / "selected_decode_interpolation" / "raw_data.npz").write_bytes(data)
    for n in range(10):
        cut = raw[: rng.randrange(len(raw))]
        yield f"npz-cut-{n}", lambda d, cut=cut: (d / "selected_decode_interpolation" / "raw_data.npz").write_bytes(cut)

    def stored_member_with_method(d: Path) -> None:  # an unsupported compression method
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("z_itl.npy", b"x" * 100)
        data = bytearray(buf.getvalue())
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):
            at = data.find(sig)
            off = 8 if sig == b"PK\x03\x04" else 10
            data[at + off : at + off + 2] = (99).to_bytes(2, "little")
        (d / "selected_decode_interpolation" / "raw_data.npz").write_bytes(bytes(data))

    yield "npz-unknown-method", stored_member_with_method
    text = (SYNTHETIC_PROFILE_DIR / "decode_raw_data.json").read_text()
    for n in range(40):
        chars = list(text)
        for _ in range(rng.randint(1, 6)):
            chars[rng.randrange(len(chars))] = rng.choice('[]{},:"0123456789.eE-tn\\ ')
        mutated = "".join(chars)

        def json_case(d: Path, mutated: str = mutated) -> None:
            shutil.rmtree(d / "selected_decode_interpolation")
            (d / "decode_raw_data.json").write_text(mutated)

        yield f"json-{n}", json_case


def test_profile_loader_fuzz(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    count = 0
    tracemalloc.start()  # profiles are small: tracing every case stays fast
    try:
        for name, edit in _profile_cases(rng):
            d = tmp_path / f"p{count}"
            shutil.copytree(SYNTHETIC_PROFILE_DIR, d)
            edit(d)
            elapsed, peak, _ = _check(lambda: load_profile(d), ProfileError)
            assert elapsed < CASE_SECONDS, (name, elapsed)
            assert peak < CASE_PEAK_BYTES, (name, peak)
            count += 1
    finally:
        tracemalloc.stop()
    assert count == 111
    np.testing.assert_array_equal(load_profile(SYNTHETIC_PROFILE_DIR).decode_kv_usage.shape, (54,))
