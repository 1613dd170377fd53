"""Trace readers: the Azure code-trace excerpt, Mooncake JSONL, BOM/CRLF, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaler.errors import TraceError
from scaler.traces import Request, read_trace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
CODE_HEAD = FIXTURES / "azure-llm-2023-code-head2000.csv"


def test_azure_code_excerpt_counts_and_first_values() -> None:
    reqs = read_trace(CODE_HEAD)
    assert len(reqs) == 2000
    assert reqs[0] == Request(0.0, 4808, 10)
    # 18:17:04.0319600 - 18:17:03.9799600
    assert reqs[1].isl == 3180 and reqs[1].osl == 8
    assert reqs[1].t == pytest.approx(0.052, abs=1e-6)
    assert reqs[2].t == pytest.approx(0.098189, abs=1e-6)
    # last line: 2023-11-16 18:31:17.0593070,1697,36
    assert reqs[-1].isl == 1697 and reqs[-1].osl == 36
    assert reqs[-1].t == pytest.approx(853.079347, abs=1e-6)
    assert sum(r.isl for r in reqs) == 3973157
    assert sum(r.osl for r in reqs) == 59024
    assert all(a.t <= b.t for a, b in zip(reqs, reqs[1:]))


def test_rate_scale_compresses_time() -> None:
    reqs = read_trace(CODE_HEAD, rate_scale=30)
    assert reqs[-1].t == pytest.approx(853.079347 / 30, abs=1e-6)
    assert [(r.isl, r.osl) for r in reqs[:3]] == [(4808, 10), (3180, 8), (110, 27)]


def test_mooncake_jsonl_sorted_and_in_seconds(tmp_path: Path) -> None:
    f = tmp_path / "m.jsonl"
    rows = [
        {"timestamp": 1500, "input_length": 100, "output_length": 5, "hash_ids": [1, 2]},
        {"timestamp": 500, "input_length": 7000, "output_length": 300},
        {"timestamp": 2750, "input_length": 3, "output_length": 0},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_trace(f) == [Request(0.0, 7000, 300), Request(1.0, 100, 5), Request(2.25, 3, 0)]
    assert read_trace(f, fmt="mooncake", rate_scale=2.0)[2] == Request(1.125, 3, 0)


def test_azure_with_bom_and_crlf(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    body = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        "2023-11-16 23:59:59.5000000,10,2\r\n"
        "2023-11-17 00:00:01.2500000,20,3\r\n"
    )
    f.write_bytes(b"\xef\xbb\xbf" + body.encode())
    # crosses midnight: 1.75 s apart
    assert read_trace(f, fmt="azure") == [Request(0.0, 10, 2), Request(1.75, 20, 3)]


def test_bad_azure_line_names_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,4808,10\n"
        "2023-11-16 18:17:04.0319600,lots,8\n"
        "yesterday,1,1\n"
    )
    with pytest.raises(TraceError) as info:
        read_trace(f)
    errs = info.value.errors
    assert [(e.file, e.path) for e in errs] == [
        (str(f), "line 3: ContextTokens"),
        (str(f), "line 4: TIMESTAMP"),
    ]
    assert "'lots'" in errs[0].message


def test_bad_mooncake_line_names_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 1, "output_length": 1}\n{"timestamp": 5, "input_length": -3, "output_length": 1}\n{oops\n')
    with pytest.raises(TraceError) as info:
        read_trace(f, fmt="mooncake")
    paths = [e.path for e in info.value.errors]
    assert paths == ["line 2: input_length", "line 3"]


def test_mooncake_line_json_rejects_for_other_reasons_is_a_trace_error(tmp_path: Path) -> None:
    # json.loads raises a plain ValueError (no .msg) for an integer over Python's digit limit
    f = tmp_path / "huge.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 1, "output_length": 1}\n{"timestamp": ' + "9" * 5000 + "}\n")
    with pytest.raises(TraceError) as info:
        read_trace(f, fmt="mooncake")
    assert [e.path for e in info.value.errors] == ["line 2"]
    assert "not JSON: Exceeds the limit" in str(info.value)


def test_unknown_format_missing_file_and_bad_scale(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("hello\n")
    with pytest.raises(TraceError, match="unknown trace format"):
        read_trace(f)
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace(tmp_path / "missing.csv")
    with pytest.raises(TraceError, match="rate_scale"):
        read_trace(CODE_HEAD, rate_scale=0)
    empty = tmp_path / "empty.csv"
    empty.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    with pytest.raises(TraceError, match="no requests"):
        read_trace(empty)


def test_a_device_or_a_deeply_nested_line_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="not a regular file"):
        read_trace("/dev/zero", "mooncake")
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n' + "[" * 100_000 + "\n")
    with pytest.raises(TraceError, match="line 2: not JSON: nested too deeply"):
        read_trace(deep, "mooncake")


def test_burstgpt_csv_in_either_column_order(tmp_path: Path) -> None:
    # BurstGPT's release order, and the order its Hugging Face export writes
    release = tmp_path / "b.csv"
    release.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5.0,ChatGPT,472,18,490,Conversation log\n"
        "45.0,GPT-4,1087,0,1087,API log\n"
        "47.5,ChatGPT,12,230,242,Conversation log\n"
    )
    expected = [Request(0.0, 472, 18), Request(40.0, 1087, 0), Request(42.5, 12, 230)]
    assert read_trace(release) == expected
    assert read_trace(release, fmt="burstgpt", rate_scale=4.0)[2] == Request(42.5 / 4.0, 12, 230)
    export = tmp_path / "hf.csv"
    export.write_text(
        "Log Type,Timestamp,Request tokens,Response tokens,Total tokens,Model\n"
        "API log,47.5,12,230,242,ChatGPT\n"
        "Conversation log,5,472,18,490,ChatGPT\n"
        "API log,45,1087,0,1087,GPT-4\n"
    )
    assert read_trace(export) == expected


def test_burstgpt_failed_request_is_an_arrival_of_one_token(tmp_path: Path) -> None:
    from scaler.sim.workload import build_workload

    f = tmp_path / "b.csv"
    f.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n0,GPT-4,900,0,900,API log\n")
    work = build_workload(read_trace(f))
    assert (work.isl.tolist(), work.osl.tolist()) == ([900], [1])


@pytest.mark.parametrize(
    "row, field, message",
    [
        ("-3,ChatGPT,10,5,15,API log", "line 2: Timestamp", "must be a number of seconds, got '-3'"),
        ("nan,ChatGPT,10,5,15,API log", "line 2: Timestamp", "must be a number of seconds, got 'nan'"),
        ("3,ChatGPT,ten,5,15,API log", "line 2: Request tokens", "must be a non-negative integer, got 'ten'"),
        ("3,ChatGPT,10,-5,15,API log", "line 2: Response tokens", "must be a non-negative integer, got '-5'"),
        ("3,ChatGPT,10,5", "line 2", "expected 6 columns, got 4"),
    ],
)
def test_burstgpt_bad_rows_name_line_and_column(tmp_path: Path, row: str, field: str, message: str) -> None:
    f = tmp_path / "b.csv"
    f.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + row + "\n")
    with pytest.raises(TraceError) as info:
        read_trace(f)
    (err,) = info.value.errors
    assert (err.file, err.path) == (str(f), field)
    assert message in err.message


def test_burstgpt_header_without_a_needed_column(tmp_path: Path) -> None:
    f = tmp_path / "b.csv"
    f.write_text("Timestamp,Model,Request tokens,Total tokens\n1,ChatGPT,3,9\n")
    with pytest.raises(TraceError) as info:
        read_trace(f, fmt="burstgpt")
    assert "header must contain Timestamp, Request tokens, Response tokens" in str(info.value)
    with pytest.raises(TraceError) as auto:
        read_trace(f)
    assert "expected Mooncake JSONL, an Azure or a BurstGPT CSV header" in str(auto.value)


def test_azure_2024_stamps_with_utc_offset_and_no_fraction(tmp_path: Path) -> None:
    # the 2024 release: 6 fractional digits and +00:00, some stamps on a whole second
    f = tmp_path / "a2024.csv"
    f.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,4808,10\n"
        "2024-05-10 00:00:01+00:00,100,2\n"
        "2024-05-10 02:00:00.509930+02:00,7,3\n"
        "2024-05-09 23:00:02.009930-01:00,8,4\n"
    )
    reqs = read_trace(f)
    assert [(r.isl, r.osl) for r in reqs] == [(4808, 10), (7, 3), (100, 2), (8, 4)]
    assert [r.t for r in reqs] == pytest.approx([0.0, 0.5, 0.99007, 2.0])


@pytest.mark.parametrize("stamp", ["2024-05-10 00:00:00.1+25:00", "2024-05-10 00:00:00+0000", "2024-05-10 00:00:00+00:6x"])
def test_azure_bad_offsets_are_refused(tmp_path: Path, stamp: str) -> None:
    f = tmp_path / "a.csv"
    f.write_text(f"TIMESTAMP,ContextTokens,GeneratedTokens\n{stamp},1,1\n")
    with pytest.raises(TraceError) as info:
        read_trace(f)
    (err,) = info.value.errors
    assert err.path == "line 2: TIMESTAMP" and stamp in err.message
