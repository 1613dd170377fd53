"""`dynplan profile check`: the tables are the planner's own interpolation, a broken profile
exits 2 naming file and field, the warnings a user needs, the PNG written, and a clear error
without matplotlib."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from helpers import SYNTHETIC_PROFILE_DIR, linear_profile
from scaler.cli import main
from scaler.core.interpolation import perf_model
from scaler.core.profile import profile_from_raw
from scaler.profile_io import load_profile, write_profile, write_profile_json
from scaler.profiling.check import KV_COLUMNS, check_profile


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["profile", "check", *args])


def test_json_tables_equal_the_planners_interpolation() -> None:
    out = run(str(SYNTHETIC_PROFILE_DIR), "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    model = perf_model(load_profile(SYNTHETIC_PROFILE_DIR))
    assert len(doc["prefill"]) == 9
    assert doc["prefill"][0]["isl"] == 100.0 and doc["prefill"][-1]["isl"] == pytest.approx(15860.0)
    for row in doc["prefill"]:
        assert row["ttftMs"] == model.prefill.ttft_ms(row["isl"])
        assert row["thptPerGpu"] == model.prefill.thpt_per_gpu(row["isl"])
    assert [r["context"] for r in doc["decode"]] == [350.0, 2997.0, 5644.0, 8291.0, 10938.0, 13585.0]
    for row in doc["decode"]:
        assert row["kvUsage"] == list(KV_COLUMNS)
        assert row["itlMs"] == [model.decode.itl_ms(kv, row["context"]) for kv in KV_COLUMNS]
        assert row["thptPerGpu"] == [model.decode.thpt_per_gpu(kv, row["context"]) for kv in KV_COLUMNS]
    # this fixture's shortest context was swept only to KV 0.58: the nearest-point fill above it drops ITL
    assert any(w.startswith("decode: ITL falls with load at context 350") for w in doc["warnings"])
    assert any(w.startswith("decode: context 350 profiled up to KV usage 0.58 only") for w in doc["warnings"])


def test_text_table_shows_the_interpolated_values(tmp_path: Path) -> None:
    write_profile(linear_profile(), tmp_path / "p")
    out = run(str(tmp_path / "p"))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    # linear_profile: TTFT = 10 + 0.01 ISL; ITL = 1 + 99 kv at every context
    assert "     100      11.00      40000" in lines
    assert "   16000     170.00      40000" in lines
    i = lines.index("decode ITL ms by KV usage (rows: context), as the planner reads it:")
    assert lines[i + 2].split() == ["50", "10.90", "20.80", "30.70", "40.60", "50.50", "60.40", "70.30", "80.20", "90.10", "100.00"]
    assert not [line for line in lines if line.startswith("warning:")]
    assert "note: prefill: ISL profiled 100-16000; outside it TTFT and throughput are held at the nearest end" in lines


def test_a_broken_profile_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    write_profile_json(linear_profile(), d)
    doc = json.loads((d / "prefill_raw_data.json").read_text())
    doc["prefill_ttft"][2] = -1.0
    (d / "prefill_raw_data.json").write_text(json.dumps(doc))
    out = run(str(d))
    assert out.exit_code == 2
    assert f"error: {d / 'prefill_raw_data.json'}: prefill.prefill_ttft: values must be positive" in out.output
    assert run(str(tmp_path / "absent")).exit_code == 2


def test_warnings_for_falling_ttft_and_itl_and_few_points() -> None:
    prefill = {"prefill_isl": [100.0, 1000.0, 2000.0, 4000.0], "prefill_ttft": [10.0, 50.0, 40.0, 80.0],
               "prefill_thpt_per_gpu": [1e4, 2e4, 5e4, 5e4]}
    decode = {"x_kv_usage": [0.1, 0.3, 0.5, 0.7], "y_context_length": [1000.0] * 4, "z_itl": [5.0, 9.0, 7.0, 12.0],
              "z_thpt_per_gpu": [100.0, 200.0, 300.0, 400.0], "max_kv_tokens": 1e5}
    report = check_profile(profile_from_raw(prefill, decode))
    text = "\n".join(report.warnings)
    assert "prefill: TTFT falls with ISL" in text
    assert "decode: ITL falls with load at context 1000" in text
    assert "prefill: 4 points only" in text
    assert "decode: one context length (1000) only" in text
    assert "decode: KV usage profiled up to 0.70; above it ITL is held flat, which is optimistic" in text


def test_plot_writes_a_png(tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    out = run(str(SYNTHETIC_PROFILE_DIR), "--plot", str(png))
    assert out.exit_code == 0, out.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert f"wrote {png}" in out.output


def test_plot_without_matplotlib_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = run(str(SYNTHETIC_PROFILE_DIR), "--plot", str(tmp_path / "x.png"))
    assert out.exit_code == 2
    assert "profile check --plot needs the optional package 'matplotlib': pip install 'dynplan[plot]'" in out.output
    assert not (tmp_path / "x.png").exists()
