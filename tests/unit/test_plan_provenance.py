"""The plan collector's provenance file names (k8s-sidecar with UNIQUE_FILENAMES=true):
`naming.collected_namespace` reads the ConfigMap's namespace back, and `render manifests`
refuses a plan whose collected file name would not fit in 255 bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import flat_profile, plan_dict, write_plan
from scaler import naming
from scaler.cli import main


def sidecar_name(namespace: str, configmap: str, key: str) -> str:
    """k8s-sidecar's helpers.unique_filename for a ConfigMap, written out independently."""
    return "namespace_" + namespace + ".configmap_" + configmap + "." + key


@pytest.mark.parametrize(
    ("file_name", "namespace"),
    [
        (sidecar_name("team-a", "dynplan-plan-team-a.llama-8b", "team-a.llama-8b.yaml"), "team-a"),
        # the ConfigMap name and key may hold dots and a "namespace_" of their own: the first
        # "." ends the namespace (a DNS-1123 label has none)
        (sidecar_name("team-a", "x", "namespace_keda.configmap_y.team-b.p.yaml"), "team-a"),
        (sidecar_name("a" * 63, "x", "k.yaml"), "a" * 63),
        # not the collector's: a plain file, a rendered key, a key that only looks like one
        ("team-a.llama-8b.yaml", None),
        ("namespace_team-a.yaml", None),
        ("namespace_Team-A.configmap_x.k.yaml", None),
        ("namespace_.configmap_x.k.yaml", None),
        ("namespace_team-a.secret_x.k.yaml", None),
        # whatever follows the prefix, the file is checked
        ("namespace_team-a.configmap_\nkind: x.yaml", "team-a"),
    ],
)
def test_collected_namespace(file_name: str, namespace: str | None) -> None:
    assert naming.collected_namespace(file_name) == namespace


def test_collected_file_name_is_the_sidecars() -> None:
    assert naming.collected_file_name("team-a", "dynplan-plan-team-a.p", "team-a.p.yaml") == \
        sidecar_name("team-a", "dynplan-plan-team-a.p", "team-a.p.yaml")


def _plan(tmp_path: Path, namespace: str, name: str) -> Path:
    doc = plan_dict(name=name)
    doc["metadata"]["namespace"] = namespace
    return write_plan(tmp_path / "src", doc, profile=flat_profile())


def _render(plan: Path, out: Path, *flags: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["render", "manifests", "-f", str(plan), "-o", str(out), *flags])
    return res.exit_code, res.output


def test_longest_names_fit_in_the_scaler_namespace(tmp_path: Path) -> None:
    """The default placement (keda): a 63-character namespace and a 40-character plan name
    make a 252-byte file name, which fits."""
    ns, name = "n" * 63, "p" * 40
    code, output = _render(_plan(tmp_path, ns, name), tmp_path / "out")
    assert code == 0, output
    assert len(sidecar_name("keda", naming.plan_configmap_name(ns, name), naming.plan_file_name(ns, name))) == 252


@pytest.mark.parametrize(
    ("namespace", "name", "size"),
    [
        # in the plan's namespace, 42 + 3 * len(namespace) + 2 * len(name) bytes
        ("n" * 63, "p" * 40, 311),
        ("n" * 50, "p" * 32, 256),  # one byte too many: 31 characters fit (next test)
    ],
)
def test_overlong_collected_name_is_refused_with_the_field(tmp_path: Path, namespace: str, name: str, size: int) -> None:
    assert len(sidecar_name(namespace, naming.plan_configmap_name(namespace, name), naming.plan_file_name(namespace, name))) == size
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous render")
    plan = _plan(tmp_path, namespace, name)
    code, output = _render(plan, out, "--plan-configmap-namespace", "plan")
    assert code == 2, output
    assert f"{plan}: metadata.name: the plan collector's file for it (namespace_{namespace}.configmap_<ConfigMap>.<key>) " \
           f"would be {size} bytes, over the 255 of a file name" in output
    assert f"metadata.name ({len(name)} characters, each counted twice) or metadata.namespace ({len(namespace)}, " \
           f"each counted 3 times) by {size - 255} in all" in output
    assert "Traceback" not in output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # nothing written


def test_a_name_one_byte_shorter_fits(tmp_path: Path) -> None:
    code, output = _render(_plan(tmp_path, "n" * 50, "p" * 31), tmp_path / "out", "--plan-configmap-namespace", "plan")
    assert code == 0, output


def test_a_long_scaler_namespace_counts_too(tmp_path: Path) -> None:
    ns, name = "n" * 60, "p" * 40
    code, output = _render(_plan(tmp_path, ns, name), tmp_path / "out", "--scaler-namespace", "s" * 63)
    assert code == 2 and "metadata.name: the plan collector's file for it (namespace_" + "s" * 63 in output, output
    assert not (tmp_path / "out").exists()
