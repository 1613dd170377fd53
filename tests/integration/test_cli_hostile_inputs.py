"""Hostile files and options through the real `dynplan` command (red-team H1, L8, L11-L14):
each is exit 2 with one line naming the file and field or the option, no traceback, fast."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import EXAMPLES, REPO

PROFILE = EXAMPLES / "profiles" / "h200-llama3.1-8b-fp8-tp1"
DECODE_NPZ = Path("selected_decode_interpolation") / "raw_data.npz"


def dynplan(*args: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "scaler.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return res, time.monotonic() - t0


def _example_text() -> str:
    return (EXAMPLES / "llama-8b-disagg.yaml").read_text().replace("profile: profiles/", f"profile: {EXAMPLES / 'profiles'}/")


def _plan_with_profile(directory: Path, edit) -> Path:
    """A copy of the example profile edited by `edit`, and a plan that uses it."""
    prof = directory / "prof"
    shutil.copytree(PROFILE, prof)
    edit(prof)
    doc = yaml.safe_load(_example_text())
    doc["spec"]["profile"] = str(prof)
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _npz_member_header(prof: Path, name: str, shape: tuple, dtype: str = "<f8") -> None:
    path = prof / DECODE_NPZ
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != name}
    np.savez(path, **arrays)
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (dtype, shape)
    hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z, z.open(f"{name}.npy", "w", force_zip64=True) as f:
        f.write(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode() + b"\0" * 64)


def _bare_npy(prof: Path) -> None:
    with open(prof / DECODE_NPZ, "wb") as f:
        np.save(f, np.arange(5.0))


def _complex_npz(prof: Path) -> None:
    with np.load(prof / DECODE_NPZ) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["z_itl"] = arrays["z_itl"] + 1j
    np.savez(prof / DECODE_NPZ, **arrays)


def _json_only(prof: Path) -> Path:
    shutil.rmtree(prof / DECODE_NPZ.parent)
    return prof / "decode_raw_data.json"


def _json_deep(prof: Path) -> None:
    _json_only(prof).write_text('{"z_itl": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _json_bigint(prof: Path) -> None:
    path = _json_only(prof)
    path.write_text(path.read_text().replace('"max_kv_tokens": 932000', '"max_kv_tokens": ' + "9" * 400))


def _alias_bomb() -> str:
    """The report's largest: 10^8 leaves as `kind` (3.6 GB and 722 MB of stderr before)."""
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n" + _example_text().replace("kind: Plan", "kind: *a8", 1)


def _inline(**decode_changes: object) -> str:
    import json

    doc = yaml.safe_load(_example_text())
    del doc["spec"]["profile"]
    prefill = json.loads((PROFILE / "prefill_raw_data.json").read_text())
    decode = json.loads((PROFILE / "decode_raw_data.json").read_text())
    decode.update(decode_changes)
    doc["spec"]["profileData"] = {"prefill": prefill, "decode": decode}
    return yaml.safe_dump(doc, sort_keys=False)


def test_validate_hostile_files_one_line_each_exit_2(tmp_path: Path) -> None:
    """One `dynplan validate` over every hostile file: each gives exactly its one line."""
    text = _example_text()
    plans: dict[str, tuple[Path, str]] = {}

    def plan(name: str, content: str | bytes, expected: str) -> None:
        path = tmp_path / f"{name}.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        plans[name] = (path, expected)

    plan("alias-bomb", _alias_bomb(), ": invalid YAML (line 2, column 10): aliases (*a0) are not allowed")
    plan("deep-list", text + "x: " + "[" * 10000 + "]" * 10000 + "\n", ": invalid YAML (line ")
    plan("dup-key", text.replace("      maxReplicas: 16", "      maxReplicas: 16\n      maxReplicas: 2", 1),
         "duplicate key 'maxReplicas' (first given at line")
    plan("two-mib", text + "#" * (2 << 20) + "\n", f"bytes; at most {1 << 20} bytes are accepted")
    plan("binary", bytes(range(256)) * 8, ": cannot read: 'utf-8' codec can't decode")
    itl = yaml.safe_load((PROFILE / "decode_raw_data.json").read_text())["z_itl"]
    plan("inline-bool", _inline(z_itl=[True] + itl[1:]), ": spec.profileData.decode.z_itl[0]: Input should be a valid number")
    plan("inline-extra-key", _inline(junk=[1]), ": spec.profileData.decode.junk: unknown field")
    plan("inline-maxkv-list", _inline(max_kv_tokens=[5, -1]), ": spec.profileData.decode.max_kv_tokens: Input should be a valid number")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    plans["fifo"] = (fifo, ": is not a regular file")
    plans["dev-zero"] = (Path("/dev/zero"), ": is not a regular file")
    profiles = {
        "npz-huge-header": (lambda p: _npz_member_header(p, "z_itl", (10**11,)), "decode.z_itl: cannot read npz member: declares 100000000000 values"),
        "npz-bomb-header": (lambda p: _npz_member_header(p, "z_itl", (500_000_000,)), "declares 500000000 values; at most 8192"),
        "npz-bare-npy": (_bare_npy, "decode: cannot read npz file: File is not a zip file"),
        "npz-complex": (_complex_npz, "decode.z_itl: cannot read npz member: dtype complex128 is not a real number type"),
        "json-deep": (_json_deep, "decode: invalid JSON: nested too deeply"),
        "json-bigint": (_json_bigint, "decode.max_kv_tokens: must be a number: too large for a float"),
    }
    for name, (edit, expected) in profiles.items():
        (tmp_path / name).mkdir()
        plans[name] = (_plan_with_profile(tmp_path / name, edit), expected)

    res, elapsed = dynplan("validate", *(str(p) for p, _ in plans.values()))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and res.stdout == ""
    lines = res.stderr.splitlines()
    for name, (path, expected) in plans.items():
        mine = [line for line in lines if line.startswith(f"error: {path}: ")]
        assert len(mine) == 1, (name, mine)
        assert expected in mine[0], (name, mine[0])
    assert len(lines) == len(plans)
    assert max(len(line) for line in lines) < 400
    assert elapsed < 10, elapsed  # the alias bomb alone took 30 s and 3.6 GB before


def test_render_refuses_an_alias_bomb_and_keeps_the_output(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.yaml").write_text("kept: true\n")
    res, _ = dynplan("render", "manifests", "-f", str(path), "-o", str(out))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"error: {path}: invalid YAML (line 2, column 10): aliases (*a0) are not allowed in plan files; write the value out"
    ]
    assert [p.name for p in out.iterdir()] == ["keep.yaml"]


@pytest.mark.parametrize(
    "args, option",
    [
        (["--rate", "inf"], "'--rate': 'inf' is not a finite number in [0, 1e+06]"),
        (["--rate", "nan"], "'--rate': 'nan' is not a finite number in [0, 1e+06]"),
        (["--rate", "1e308"], "'--rate': '1e308' is not a finite number in [0, 1e+06]"),
        (["--rate", "5", "--isl", "inf"], "'--isl': 'inf' is not a finite number in [1, 1e+07]"),
        (["--rate", "5", "--osl", "nan"], "'--osl': 'nan' is not a finite number in [1, 1e+07]"),
    ],
)
def test_capacity_refuses_non_finite_options(args: list[str], option: str) -> None:
    res, _ = dynplan("capacity", "-f", str(EXAMPLES / "llama-8b-disagg.yaml"), *args)
    assert res.returncode == 2  # OverflowError / ValueError tracebacks from the core, exit 1, before
    assert "Traceback" not in res.stderr
    assert res.stderr.splitlines()[-1] == f"Error: Invalid value for {option}"


def test_capacity_at_the_option_bounds_answers() -> None:
    res, _ = dynplan("capacity", "-f", str(EXAMPLES / "llama-8b-disagg.yaml"), "--rate", "1e6", "--isl", "1e7", "--osl", "1e7",
                     "-o", "json")
    assert res.returncode == 0, res.stderr
    import json

    doc = json.loads(res.stdout)
    assert doc["input"] == {"rate": 1e6, "isl": 1e7, "osl": 1e7}
    assert doc["totalGpus"] == doc["budgetGpus"]
