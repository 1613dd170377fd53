"""A non-editable install works from anywhere: build the wheel, install it into a fresh
directory, and run the CLI from another working directory against that copy only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import EXAMPLES, REPO

pytestmark = pytest.mark.slow  # builds and installs the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: hatchling comes from the test extra, so this needs no network.
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    wheels = list(out.glob("dynplan-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return target


def test_wheel_contains_runtime_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "scaler/proto/externalscaler.proto" in names
    assert "scaler/cli.py" in names and "scaler/core/planner.py" in names
    templates = [n for n in names if n.startswith("scaler/templates/")]
    assert templates, "templates must ship inside the package"
    assert any(n.endswith("dynplan-0.1.0.dist-info/entry_points.txt") for n in names)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "dynplan = scaler.cli:main" in entry
    # nothing from tests or the repo's working files leaks into the wheel
    assert not any(n.startswith(("tests/", "examples/", ".venv")) for n in names)
    # nor the developer tooling (demo, fake frontend, backfill writer)
    assert not [n for n in names if n.startswith("scaler/devtools")]


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed)
    # -I would drop PYTHONPATH too; -s and -P keep the user site and the cwd out of sys.path.
    return subprocess.run([sys.executable, "-s", "-P", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_installed_copy_is_imported_and_validates(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(EXAMPLES / "llama-8b-disagg.yaml", work / "plan.yaml")
    shutil.copytree(EXAMPLES / "profiles", work / "profiles")
    shutil.copy(EXAMPLES / "llama-8b-agg.yaml", work / "agg.yaml")

    res = _run(installed, work, "-c", "import scaler, sys; print(scaler.__file__)")
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).resolve().is_relative_to(installed.resolve())

    res = _run(installed, work, "-m", "scaler.cli", "validate", "plan.yaml", "agg.yaml")
    assert res.returncode == 0, res.stderr
    assert "plan.yaml: ok (disagg, pools: prefill, decode)" in res.stdout
    assert "agg.yaml: ok (agg, pools: worker)" in res.stdout

    res = _run(installed, work, "-m", "scaler.cli", "capacity", "-f", "plan.yaml", "--rate", "20", "-o", "json")
    assert res.returncode == 0, res.stderr
    # the example plan's default sizing: 4 prefill (Erlang-C tail) + 1 decode, as in the README
    assert '"totalGpus": 5' in res.stdout


def test_installed_copy_finds_its_templates_and_proto(installed: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.resources as r; "
        "p = r.files('scaler'); "
        "print((p / 'proto' / 'externalscaler.proto').is_file(), (p / 'templates').is_dir(), str(p))"
    )
    res = _run(installed, tmp_path, "-c", code)
    assert res.returncode == 0, res.stderr
    proto_ok, templates_ok, where = res.stdout.split()
    assert (proto_ok, templates_ok) == ("True", "True")
    assert Path(where).resolve().is_relative_to(installed.resolve())


def test_installed_validate_rejects_bad_plan(installed: Path, tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "bad" / "min-above-max.yaml", tmp_path / "bad.yaml")
    res = _run(installed, tmp_path, "-m", "scaler.cli", "validate", "bad.yaml")
    assert res.returncode == 2
    assert "bad.yaml: spec.pools.decode.maxReplicas" in res.stderr
    assert "Traceback" not in res.stderr


def test_demo_reads_the_example_plan_from_the_clone(tmp_path: Path) -> None:
    from scaler.core.plan import Plan
    from scaler.devtools import demo

    root = demo.repo_root()
    assert root == REPO.resolve()
    doc = demo.demo_plan(root, "http://127.0.0.1:9")
    plan = Plan.model_validate(doc)
    assert plan.name == "llama-8b" and plan.pool_names == ("prefill", "decode")
    assert plan.spec.scaling.throughput.interval_seconds == demo.INTERVAL_SECONDS
    assert plan.spec.metrics.prometheus.url == "http://127.0.0.1:9"
    assert Path(doc["spec"]["profile"]).is_absolute() and Path(doc["spec"]["profile"]).is_dir()
    groups = demo.rule_file_document(doc)["groups"]
    # the SLO group's SLI ratios come along (its alerts do not: the demo records only)
    assert [g["name"] for g in groups] == ["dynplan-llama-8b-throughput", "dynplan-llama-8b-slo"] and groups[0]["interval"] == "1s"

    with pytest.raises(demo.DemoError, match="runs from a clone of the dynplan repository"):
        demo.repo_root([tmp_path])
