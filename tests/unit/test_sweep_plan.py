"""`dynplan profile sweep`'s pure parts: the grid, a stream's timings -> a point, points ->
a profile, and the engine facts read from /metrics (scaler/profiling/sweep_plan.py)."""

from __future__ import annotations

import pytest

from scaler.core.interpolation import perf_model
from scaler.profiling import sweep_plan as sp

CFG = sp.SweepConfig(
    isl_min=100, isl_max=2000, isl_points=5, repeats=3, osl=24, context_points=3, concurrency_points=3,
    max_concurrency=16, max_kv_tokens=24_000,
)


def test_even_grid_includes_both_ends_and_never_repeats() -> None:
    assert sp.even_grid(100, 2000, 5) == (100, 575, 1050, 1525, 2000)
    assert sp.even_grid(1, 3, 8) == (1, 2, 3)  # more points than integers: each once
    assert sp.even_grid(7, 7, 4) == (7,)


def test_concurrency_reaches_the_kv_capacity_or_the_cap() -> None:
    # 24000 // (1000 + 24) = 23 requests fit; the cap of 16 binds
    assert sp.concurrency_grid(1000, 24, 24_000, 16, 3) == (1, 8, 16)
    # 24000 // (2000 + 24) = 11 fit: the cache binds
    assert sp.concurrency_grid(2000, 24, 24_000, 16, 3) == (1, 6, 11)
    assert sp.concurrency_grid(30_000, 24, 24_000, 16, 3) == (1,)  # not even one fits: one, and the engine queues
    # whole 16-token blocks: 1025 tokens hold 1040, so 3100 tokens take 2 such requests, not 3
    assert sp.concurrency_grid(1000, 25, 3100, 16, 2) == (1, 2)


def test_the_plan_measures_prefill_then_decode_rows_light_to_heavy() -> None:
    plan = sp.plan_sweep(CFG)
    assert [p.isl for p in plan.prefill] == [100, 575, 1050, 1525, 2000]
    assert [(d.isl, d.concurrency) for d in plan.decode] == [
        (100, 1), (100, 8), (100, 16), (1050, 1), (1050, 8), (1050, 16), (2000, 1), (2000, 6), (2000, 11)
    ]
    assert plan.keys[0] == "prefill/isl=100" and plan.keys[-1] == "decode/isl=2000/n=11"
    assert len(set(plan.keys)) == len(plan.keys)


def test_config_problems_name_the_option() -> None:
    assert CFG.problems() == []
    bad = sp.SweepConfig(isl_min=500, isl_max=100, isl_points=2, repeats=0, osl=4, context_points=1, concurrency_points=3,
                         max_concurrency=0, max_kv_tokens=24_000)
    assert [opt for opt, _ in bad.problems()] == ["--isl-min/--isl-max", "--isl-points", "--repeats", "--osl", "--max-concurrency"]
    tiny = sp.SweepConfig(isl_min=100, isl_max=2000, isl_points=5, repeats=1, osl=24, context_points=3, concurrency_points=3,
                          max_concurrency=16, max_kv_tokens=100)
    assert tiny.problems() == [("--max-kv-tokens", "100 tokens hold not even one request of ISL 100 + OSL 24")]


def _stream(sent: float, first: float, step: float, chunks: int, *, prompt: int = 1000, tokens: int | None = None) -> sp.StreamTiming:
    return sp.StreamTiming(sent, tuple(first + i * step for i in range(chunks)), prompt, tokens if tokens is not None else chunks)


def test_decode_point_times_the_steady_window() -> None:
    # 4 streams, one token each 10 ms; first tokens staggered by prefills (0, 50, 100, 150 ms)
    streams = [_stream(0.0, 0.05 * i, 0.010, 40) for i in range(4)]
    r = sp.decode_result(1000, streams)
    assert r.method == "steady-window"
    assert r.itl_ms.median == pytest.approx(10.0)
    assert r.tokens_per_s == pytest.approx(400.0)  # 4 streams x 100 tokens/s
    assert r.window_s == pytest.approx(0.39 - 0.15)  # last first token (0.15) to first last token (0.39)
    assert r.ttft_ms.median == pytest.approx(75.0) and r.ttft_ms.max == pytest.approx(150.0)
    assert (r.isl, r.osl, r.concurrency) == (1000, 40.0, 4)


def test_several_tokens_a_chunk_count_as_tokens() -> None:
    # SGLang's stream_interval / speculative decoding: 2 tokens per chunk, a chunk each 20 ms
    streams = [_stream(0.0, 0.01 * i, 0.020, 30, tokens=60) for i in range(3)]
    r = sp.decode_result(1000, streams)
    assert r.itl_ms.median == pytest.approx(10.0)
    assert r.tokens_per_s == pytest.approx(300.0)


def test_a_window_too_short_falls_back_to_each_requests_own_itl() -> None:
    # the last stream starts when the first ends: no window
    streams = [_stream(0.0, 0.0, 0.010, 20), _stream(0.0, 0.19, 0.010, 20)]
    r = sp.decode_result(1000, streams)
    assert r.method == "per-request"
    assert r.itl_ms.median == pytest.approx(10.0)
    assert r.tokens_per_s == pytest.approx(200.0)
    with pytest.raises(ValueError):
        sp.decode_result(1000, [_stream(0.0, 0.0, 0.01, 1)])


def test_prefill_point_is_the_median_and_the_servers_count() -> None:
    streams = [sp.StreamTiming(0.0, (t,), 1001, 1) for t in (0.050, 0.052, 0.300)]
    r = sp.prefill_result(1000, streams)
    assert (r.isl, r.ttft_ms.median, r.ttft_ms.n) == (1001, pytest.approx(52.0), 3)


def test_results_become_dynamo_arrays_with_its_definitions() -> None:
    prefill = [sp.PrefillResult(t, t, sp.Spread.of([t / 20.0])) for t in (100, 500, 1000, 2000)]
    prefill.append(sp.PrefillResult(2001, 2000, sp.Spread.of([99.0])))  # counted like another: dropped
    decode = [
        sp.DecodeResult(1000, n, 1000, 24.0, sp.Spread.of([10.0 + n]), n * 1000.0 / (10.0 + n), sp.Spread.of([30.0]), 0.2, "steady-window")
        for n in (1, 4, 8, 12)
    ]
    arrays = sp.profile_arrays(prefill, decode, max_kv_tokens=24_000, prefill_gpus=2, decode_gpus=4)
    assert arrays.prefill["prefill_isl"] == [100.0, 500.0, 1000.0, 2000.0]
    assert arrays.prefill["prefill_ttft"] == [5.0, 25.0, 50.0, 100.0]
    assert arrays.prefill["prefill_thpt_per_gpu"] == [10_000.0] * 4  # isl / ttft * 1000 / 2 GPUs
    assert arrays.dropped == ("prefill/isl=2001: same prompt length as another point (2000 tokens)",)
    assert arrays.decode["y_context_length"] == [1012.0] * 4  # isl + osl / 2
    assert arrays.decode["x_kv_usage"] == [round(n * 1012 / 24_000, 6) for n in (1, 4, 8, 12)]
    assert arrays.decode["z_itl"] == [11.0, 14.0, 18.0, 22.0]
    assert arrays.decode["z_thpt_per_gpu"] == [round(n * 1000 / (10 + n) / 4, 3) for n in (1, 4, 8, 12)]
    profile, problems = sp.build_profile(arrays)
    assert problems == [] and profile is not None
    assert perf_model(profile).prefill.ttft_ms(1000) == pytest.approx(50.0)


def test_too_few_points_make_no_profile() -> None:
    prefill = [sp.PrefillResult(t, t, sp.Spread.of([10.0])) for t in (100, 500)]
    arrays = sp.profile_arrays(prefill, [], max_kv_tokens=1000, prefill_gpus=1, decode_gpus=1)
    profile, problems = sp.build_profile(arrays)
    assert profile is None
    assert ("prefill.prefill_isl", "needs at least 4 points, has 2") in problems
    assert ("decode.x_kv_usage", "needs at least 4 points, has 0") in problems


def test_results_round_trip_through_their_journal_form() -> None:
    spread = sp.Spread.of([1.0, 2.0, 3.0])
    for r in (
        sp.PrefillResult(100, 101, spread),
        sp.DecodeResult(100, 8, 101, 24.0, spread, 123.456, spread, 0.5, "steady-window"),
    ):
        assert sp.result_from_dict(r.to_dict()) == r
    assert sp.result_key(sp.PrefillResult(100, 101, spread)) == "prefill/isl=100"


VLLM = """# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",num_cpu_blocks="None",num_gpu_blocks="57402"} 1.0
vllm:num_requests_running{engine="0",model_name="m"} 0.0
"""


def test_kv_capacity_from_vllm_and_sglang_metrics() -> None:
    assert sp.kv_capacity(VLLM) == sp.KvCapacity(57402 * 16, "vllm:cache_config_info num_gpu_blocks x block_size")
    sglang = 'sglang:max_total_num_tokens{model_name="m"} 471258.0\nsglang:token_usage{model_name="m"} 0.1\n'
    assert sp.kv_capacity(sglang) == sp.KvCapacity(471258, "sglang:max_total_num_tokens")
    # before vLLM's profile run the labels are "None"; two data-parallel ranks that disagree are not summed
    assert sp.kv_capacity('vllm:cache_config_info{block_size="16",num_gpu_blocks="None"} 1.0\n') is None
    two = VLLM + 'vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="100"} 1.0\n'
    assert sp.kv_capacity(two) is None
    assert sp.kv_capacity("") is None


def test_engine_name_from_metric_names() -> None:
    assert sp.engine_name(VLLM, None) == "vllm"
    assert sp.engine_name('sglang:token_usage{a="b"} 1\n', "sglang") == "sglang"
    assert sp.engine_name("", "tgi") == "tgi"
    assert sp.engine_name("", None) == "unknown"
