"""The one table of sources: which series a plan reads, and the PromQL of the attainment
sizing's signals (their values against a real Prometheus: tests/integration/prometheus/
test_prom_signals.py; as rules: the generated promtool tests)."""

from __future__ import annotations

import pytest

from helpers import make_plan, not_about_buckets, plan_dict, with_changes
from scaler import naming, sources
from scaler.core.plan import Plan
from scaler.prom.reader import ready_queries, throughput_queries

SRC = sources.SOURCES["dynamo"]
BASE = ["requests", "isl", "osl", "ttft_ms", "itl_ms", "request_duration_s"]
SEL = {"dynamo_namespace": "ns", "model": "m"}


def keys(plan, kind: str = "throughput") -> list[str]:
    return [s.key for s in sources.plan_series(plan, kind)]


def test_dynamo_sizing_reads_what_it_always_read_and_attainment_adds_its_signals() -> None:
    assert keys(make_plan(sizing="dynamo", interval_seconds=180)) == BASE
    assert keys(make_plan(sizing="attainment", interval_seconds=180)) == BASE + ["peak_rate", "arrival_dispersion", "backlog", "ttft_miss"]
    # below two 30-s bins there is no dispersion (None, as in the simulator)
    assert keys(make_plan(sizing="attainment", interval_seconds=45)) == BASE + ["peak_rate", "backlog", "ttft_miss"]
    # a load-only plan reads the request count for activation, nothing else
    assert keys(make_plan(sizing="attainment", throughput=False, load=True)) == BASE
    assert set(throughput_queries(make_plan(sizing="dynamo"))) == set(BASE)
    assert ready_queries(make_plan(sizing="dynamo")) == {}
    assert ready_queries(make_plan(sizing="attainment")) == {
        "prefill": 'max(kube_deployment_status_replicas_ready{deployment="llama-prefill",namespace="inference"})',
        "decode": 'max(kube_deployment_status_replicas_ready{deployment="llama-decode",namespace="inference"})',
    }


def test_ttft_miss_is_the_fraction_above_the_sla_bucket() -> None:
    plan = make_plan(sizing="attainment", interval_seconds=180)
    series = sources.SERIES_BY_KEY["ttft_miss"]
    bound = plan.bucket_bound_ms("ttft")
    assert bound == plan.spec.sla.ttft_ms
    ttft = "dynamo_frontend_time_to_first_token_seconds"
    assert sources.plan_raw_expr(plan, series, 180) == (
        f'1 - sum(increase({ttft}_bucket{{dynamo_namespace="inference-llama-8b",le="0.2"}}[180s]))'
        f' / sum(increase({ttft}_count{{dynamo_namespace="inference-llama-8b"}}[180s]))'
    )
    assert sources.plan_record_name(plan, series, 180) == f"dynplan_plan:{ttft}:over_sla_fraction180s"
    # the read falls back to the raw expression where the rule has no sample yet
    assert sources.plan_read_query(plan, series, 180).endswith(f"or on() ({sources.plan_raw_expr(plan, series, 180)})")
    assert sources.le_matcher(800) == 'le="0.8"'
    assert sources.le_matcher(1000) == 'le=~"1|1\\\\.0"'
    with pytest.raises(ValueError, match="bucket bound"):
        sources.raw_expr(sources.SOURCES["dynamo"], series, SEL, 180)


def test_peak_rate_expression_by_window_length() -> None:
    peak = sources.SERIES_BY_KEY["peak_rate"]
    started = 'sum(increase(dynamo_frontend_requests_started_total{dynamo_namespace="ns",model="m"}[60s]))'
    completed = 'sum(increase(dynamo_frontend_requests_total{dynamo_namespace="ns",model="m"}[60s]))'
    minute = f"({started} or {completed}) / 60"
    assert sources.raw_expr(SRC, peak, SEL, 180) == f"max_over_time(({minute})[120s1ms:30s])"
    assert sources.raw_expr(SRC, peak, SEL, 75) == minute  # one sub-window: the minute ending at t
    assert sources.raw_expr(SRC, peak, SEL, 60) == minute  # the window is its own sub-window
    assert sources.raw_expr(SRC, peak, SEL, 45) == minute.replace("[60s]", "[45s]").replace("/ 60", "/ 45")


def test_dispersion_expression_by_window_length() -> None:
    disp = sources.SERIES_BY_KEY["arrival_dispersion"]
    two = sources.raw_expr(SRC, disp, SEL, 60)
    # two bins: (now - before)^2 / (now + before), arrivals or completions counted each time
    assert "over_time" not in two and two.count("offset 30s") == 4 and " ^ 2 / (" in two
    six = sources.raw_expr(SRC, disp, SEL, 180)
    # 5 differences at the last 5 bin ends, 6 bins for the mean; means as sum / count
    assert six.count("[120s1ms:30s]") == 2 and six.count("[150s1ms:30s]") == 2
    assert six.startswith("(sum_over_time(") and "/ (2 * sum_over_time(" in six
    with pytest.raises(ValueError, match="at least 60s"):
        sources.raw_expr(SRC, disp, SEL, 59)


def test_backlog_reads_the_stage_gauge_first_without_its_missing_model_label() -> None:
    backlog = sources.SERIES_BY_KEY["backlog"]
    assert sources.raw_expr(SRC, backlog, SEL, 180) == (
        'sum(dynamo_frontend_stage_requests{dynamo_namespace="ns",stage=~"preprocess|route|dispatch"})'
        ' or sum(dynamo_frontend_queued_requests{dynamo_namespace="ns",model="m"})'
    )
    assert sources.record_name(SRC, backlog, 180) == "dynplan_plan:dynamo_frontend_stage_requests:sum"


def test_record_names_are_valid_and_distinct_per_plan() -> None:
    for window in (45, 60, 90, 180, 600):
        names = [sources.record_name(SRC, s, window) for s in sources.series_for("throughput", "attainment", window)]
        assert len(set(names)) == len(names)
        for name in names:
            assert naming.PROM_METRIC_NAME_RE.match(name), name


def test_ready_query_by_kind() -> None:
    assert sources.ready_query("apps/v1", "StatefulSet", "ns", "w") == 'max(kube_statefulset_status_replicas_ready{namespace="ns",statefulset="w"})'
    assert sources.ready_query("nvidia.com/v1alpha1", "DynamoGraphDeploymentScalingAdapter", "ns", "w") is None
    assert sources.ready_query("apps/v1", "Deployment", 'a"b', "w") == 'max(kube_deployment_status_replicas_ready{deployment="w",namespace="a\\"b"})'


# -- engine sources (vLLM, SGLang) ---------------------------------------------------------
def engine_plan(source: str, mode: str = "disagg", pool_selectors: dict | None = None, scrape: int = 1, **kw):
    metrics = {"source": source, "selector": {"namespace": "inference", "model_name": "llama"}, "scrapeIntervalSeconds": scrape}
    doc = with_changes(plan_dict(mode=mode, **kw), {"spec.metrics": metrics})
    for pool, sel in (pool_selectors or {}).items():
        doc["spec"]["pools"][pool]["selector"] = sel
    return Plan.model_validate(doc)


VLLM_POOLS = {"prefill": {"pod": "=~llama-prefill-.*"}, "decode": {"pod": "=~llama-decode-.*"}}
PLAN_SEL = 'model_name="llama",namespace="inference"'


def N(metric: str, sel: str) -> str:
    """How an engine metric is selected: either spelling of its colon (see series_selector)."""
    return "{" + f'__name__=~"{metric.replace(":", "[:_]")}",' + sel[1:-1] + "}"


def test_vllm_disagg_reads_rate_isl_osl_itl_from_decode_and_ttft_backlog_from_prefill() -> None:
    plan = engine_plan("vllm", pool_selectors=VLLM_POOLS, sizing="attainment", interval_seconds=180)
    q = {s.key: sources.plan_raw_expr(plan, s, 180) for s in sources.plan_series(plan, "throughput")}
    dec, pre = f'{{{PLAN_SEL},pod=~"llama-decode-.*"}}', f'{{{PLAN_SEL},pod=~"llama-prefill-.*"}}'
    assert q["requests"] == f"sum(increase({N('vllm:request_success_total', dec)}[180s]))"
    assert q["isl"] == f"sum(increase({N('vllm:request_prompt_tokens_sum', dec)}[180s])) / sum(increase({N('vllm:request_prompt_tokens_count', dec)}[180s]))"
    assert q["itl_ms"].startswith(f"sum(increase({N('vllm:inter_token_latency_seconds_sum', dec)}[180s]))")
    assert q["ttft_ms"].startswith(f"sum(increase({N('vllm:time_to_first_token_seconds_sum', pre)}[180s]))")
    assert "time_per_output_token" not in " ".join(q.values())
    # the gateway's queue is added to the prefill engines' waiting requests when it has a series
    engines = f"sum({N('vllm:num_requests_waiting', pre)})"
    assert q["backlog"] == f'((sum(llm_d_epp_flow_control_queue_size{{namespace="inference"}})) + ({engines})) or ({engines})'
    assert sources.record_name(sources.SOURCES["vllm"], sources.SERIES_BY_KEY["isl"], 180) == "dynplan_plan:vllm:request_prompt_tokens:mean180s"


def test_vllm_per_worker_load_is_per_pod_and_reads_either_kv_gauge() -> None:
    plan = engine_plan("vllm", pool_selectors=VLLM_POOLS, load=True)
    sel = f'{{{PLAN_SEL},pod=~"llama-decode-.*"}}'
    kv = sources.plan_raw_expr(plan, sources.SERIES_BY_KEY["active_decode_blocks"], 10, "decode")
    assert kv == (f"avg by (pod) (avg_over_time({N('vllm:kv_cache_usage_perc', sel)}[10s]))"
                  f" or avg by (pod) (avg_over_time({N('vllm:gpu_cache_usage_perc', sel)}[10s]))")
    queued = sources.plan_raw_expr(plan, sources.SERIES_BY_KEY["active_prefill_tokens"], 10, "decode")
    assert queued.startswith(f"sum by (pod) (avg_over_time({N('vllm:num_requests_waiting', sel)}[10s])) * on (pod) (")
    ttft = sources.plan_raw_expr(plan, sources.SERIES_BY_KEY["last_ttft_ms"], 10, "decode")
    assert ttft == (f"sum by (pod) (increase({N('vllm:time_to_first_token_seconds_sum', sel)}[10s]))"
                    f" / sum by (pod) (increase({N('vllm:time_to_first_token_seconds_count', sel)}[10s]))")
    assert sources.worker_pools(plan) == ("prefill", "decode")
    q = sources.plan_read_query(plan, sources.SERIES_BY_KEY["last_ttft_ms"], 10, "decode")
    assert q.startswith('dynplan_plan_pod:vllm:time_to_first_token_seconds:mean10s{dynplan_namespace="inference",dynplan_plan="llama-8b",dynplan_pool="decode"} or on() (')


def test_sglang_means_from_counters_ranks_collapsed_and_pools_by_engine_type() -> None:
    plan = engine_plan("sglang", sizing="attainment", interval_seconds=180, load=True)
    dec = f'{{{PLAN_SEL},engine_type="decode"}}'
    pre = f'{{{PLAN_SEL},engine_type="prefill"}}'
    isl = sources.plan_raw_expr(plan, sources.SERIES_BY_KEY["isl"], 180)
    assert isl == f"sum(increase({N('sglang:prompt_tokens_total', dec)}[180s])) / sum(increase({N('sglang:num_requests_total', dec)}[180s]))"
    assert sources.plan_raw_expr(plan, sources.SERIES_BY_KEY["backlog"], 180) == f"sum(max without (tp_rank, pp_rank) ({N('sglang:num_queue_reqs', pre)}))"
    used = sources.plan_raw_expr(plan, sources.SERIES_BY_KEY["active_decode_blocks"], 10, "decode")
    assert used == f"sum by (pod) (max without (tp_rank, pp_rank) (avg_over_time({N('sglang:num_used_tokens', dec)}[10s])))"
    assert sources.source_errors(plan) == []
    # aggregated: no pool matcher at all (every pod of the plan's selector is the one pool)
    agg = engine_plan("sglang", mode="agg")
    assert sources.plan_raw_expr(agg, sources.SERIES_BY_KEY["requests"], 60) == f"sum(increase({N('sglang:num_requests_total', '{' + PLAN_SEL + '}')}[60s]))"


def test_pool_selector_operators_are_rendered_and_escaped() -> None:
    assert sources.matchers({"pod": "=~a.*", "role": "prefill", "x": '!=q"', "y": "!~b|c"}) == (
        'pod=~"a.*",role="prefill",x!="q\\"",y!~"b|c"'
    )


def test_validation_says_what_a_source_cannot_read() -> None:
    assert [p for p, _ in sources.source_errors(engine_plan("vllm"))] == ["spec.pools.prefill.selector", "spec.pools.decode.selector"]
    same = engine_plan("vllm", pool_selectors={"prefill": {"pod": "=~x.*"}, "decode": {"pod": "=~x.*"}})
    assert [p for p, _ in sources.source_errors(same)] == ["spec.pools.decode.selector"]
    assert sources.source_errors(engine_plan("vllm", mode="agg")) == []
    dyn = with_changes(plan_dict(), {"spec.pools.prefill.selector": {"pod": "p"}})
    (err,) = sources.source_errors(Plan.model_validate(dyn))
    assert err[0] == "spec.pools.prefill.selector" and "worker_type" in err[1]
    with pytest.raises(ValueError, match="not a regular expression"):
        engine_plan("vllm", pool_selectors={"prefill": {"pod": "=~("}})


def test_windows_shorter_than_four_scrapes_warn_that_they_are_read_over_four() -> None:
    plan = engine_plan("vllm", mode="agg", load=True, scrape=30)  # load interval 10 s, throughput 60 s
    warned = dict(not_about_buckets(sources.source_warnings(plan)))
    assert sorted(warned) == ["spec.scaling.load.intervalSeconds", "spec.scaling.throughput.intervalSeconds"]
    assert "read over the last 120s" in warned["spec.scaling.load.intervalSeconds"]
    assert "decisions still every 10s" in warned["spec.scaling.load.intervalSeconds"]
    fast = engine_plan("vllm", mode="agg", load=True, scrape=2)  # 4 x 2 s <= 10 s
    assert not_about_buckets(sources.source_warnings(fast)) == []
    wrong_label = Plan.model_validate(with_changes(plan_dict(), {"spec.metrics.source": "vllm", "spec.mode": "agg", "spec.metrics.selector": {"model": "m"}}))
    assert "model_name" in dict(sources.source_warnings(wrong_label)).get("spec.metrics.selector.model", "")


def test_query_ranges_are_at_least_four_scrapes_and_counts_are_scaled_to_the_window() -> None:
    assert [sources.query_range(w, 30) for w in (10, 60, 119, 120, 180)] == [120, 120, 120, 120, 180]
    assert sources.query_range(10, 1) == 10
    plan = engine_plan("vllm", mode="agg", load=True, scrape=30)  # throughput 60 s, load 10 s
    sel = f'{{{PLAN_SEL}}}'
    assert sources.plan_range(plan, "throughput") == 120 and sources.plan_range(plan, "worker") == 120
    req = sources.SERIES_BY_KEY["requests"]
    assert sources.plan_raw_expr(plan, req, 60) == f"(sum(increase({N('vllm:request_success_total', sel)}[120s]))) * 60 / 120"
    assert sources.plan_record_name(plan, req, 60) == "dynplan_plan:vllm:request_success:increase60s_over120s"
    kv = sources.SERIES_BY_KEY["active_decode_blocks"]
    assert f"[120s]" in sources.plan_raw_expr(plan, kv, 10, "worker") and "[10s]" not in sources.plan_raw_expr(plan, kv, 10, "worker")
    assert sources.plan_record_name(plan, kv, 10) == "dynplan_plan_pod:vllm:kv_cache_usage_perc:avg_over_time120s"
    # the recorded side and the raw side of a read name the same range
    q = sources.plan_read_query(plan, kv, 10, "worker")
    assert q.startswith('dynplan_plan_pod:vllm:kv_cache_usage_perc:avg_over_time120s{') and q.count("[120s]") == 2
    # windows of four scrapes or more: names and ranges as they always were
    slow = engine_plan("vllm", mode="agg", load=True, scrape=15, interval_seconds=180)
    assert sources.plan_record_name(slow, sources.SERIES_BY_KEY["isl"], 180) == "dynplan_plan:vllm:request_prompt_tokens:mean180s"
    with pytest.raises(ValueError, match="shorter than its window"):
        sources.raw_expr(SRC, req, SEL, 60, range_seconds=30)


def test_burst_signals_are_read_only_where_their_bins_hold_two_scrapes() -> None:
    def attainment_keys(scrape: int, window: int = 180) -> list[str]:
        return keys(engine_plan("vllm", mode="agg", sizing="attainment", interval_seconds=window, scrape=scrape))

    # the dispersion's bins hold two scrapes: 30 s up to 15-s scrapes, 60 s at 30 s, 90 s at 31 s
    assert [sources.dispersion_bin(s) for s in (1, 15, 16, 30, 31, 60)] == [30, 30, 60, 60, 90, 120]
    assert attainment_keys(15) == BASE + ["peak_rate", "arrival_dispersion", "backlog", "ttft_miss"]
    assert attainment_keys(30) == BASE + ["peak_rate", "arrival_dispersion", "backlog", "ttft_miss"]  # 60-s bins
    assert attainment_keys(31) == BASE + ["arrival_dispersion", "backlog", "ttft_miss"]  # the 60-s sub-window: under two scrapes
    assert attainment_keys(31, window=150) == BASE + ["backlog", "ttft_miss"]  # one 90-s bin in 150 s
    warned = dict(sources.source_warnings(engine_plan("vllm", mode="agg", sizing="attainment", interval_seconds=180, scrape=31)))
    assert "peak_rate without a value" in warned["spec.metrics.scrapeIntervalSeconds"]
    assert "scrape the engines every 30s or less" in warned["spec.metrics.scrapeIntervalSeconds"]
    # at 30-s scrapes the dispersion reads 60-s bins, recorded under its own name
    at30 = engine_plan("vllm", mode="agg", sizing="attainment", interval_seconds=180, scrape=30)
    disp = sources.SERIES_BY_KEY["arrival_dispersion"]
    assert sources.plan_record_name(at30, disp, 180) == "dynplan_plan:vllm:request_success:dispersion_increase60s_180s"
    expr = sources.plan_raw_expr(at30, disp, 180)
    assert "[60s] offset 60s" in expr and "[60s1ms:60s]" in expr and "[120s1ms:60s]" in expr and "[30s]" not in expr


def test_every_source_names_every_series_and_record_names_are_valid() -> None:
    for name, src in sources.SOURCES.items():
        for window in (60, 180):
            names = [sources.record_name(src, s, window) for s in sources.SERIES if sources.defined(s, window)]
            assert len(set(names)) == len(names), name
            for rec in names:
                assert naming.PROM_METRIC_NAME_RE.match(rec), rec
        assert src.versions, name


@pytest.mark.parametrize("source", ["vllm", "sglang"])
def test_the_demo_reads_the_fake_engine_pods(source: str) -> None:
    from prometheus_client import generate_latest

    from scaler.devtools.demo import demo_plan, repo_root
    from scaler.devtools.fake_frontend import EngineFrontend

    plan = Plan.model_validate(demo_plan(repo_root(), "http://127.0.0.1:9", source))
    assert plan.spec.metrics.source == source and sources.source_errors(plan) == []
    fake = EngineFrontend(sources.SOURCES[source], model="llama", namespace="inference")
    fake.set_worker("prefill-0", "prefill", active_prefill_tokens=6000, last_isl=3000)
    fake.set_worker("decode-0", "decode", active_decode_blocks=4096)
    fake.observe_request(3000, 5, 0.2, 0.01, 0.3, started=False)
    text = generate_latest(fake.engines.registry).decode()
    # the pods the demo plan's pool selectors pick, with one finished request each
    for pool in ("prefill", "decode"):
        assert sources.pool_extra(plan, pool) == f'pod=~"llama-{pool}-.*"'
        assert f'pod="llama-{pool}-0"' in text
    waiting = "vllm:num_requests_waiting" if source == "vllm" else "sglang:num_queue_reqs"
    assert any(line.startswith(waiting) and 'pod="llama-prefill-0"' in line and line.endswith(" 2.0") for line in text.splitlines())


def test_a_bound_the_exporters_default_buckets_lack_is_a_warning_naming_the_bounds_either_side() -> None:
    # Dynamo's default TTFT buckets (DYN_METRICS_TTFT 0.001..480 s, 18) hold 0.47 and 1.0 s but
    # not 0.8; its ITL buckets (0.001..2 s, 13) hold 0.024 and 0.045 but not 0.025
    assert {0.47, 1.0} <= set(sources.DEFAULT_BUCKETS["dynamo"]["ttft_seconds"])
    assert 0.8 not in sources.DEFAULT_BUCKETS["dynamo"]["ttft_seconds"]
    plan = Plan.model_validate(with_changes(plan_dict(sizing="attainment"), {"spec.sla": {"ttftMs": 800, "itlMs": 25}}))
    warned = dict(sources.bucket_warnings(plan))
    assert sorted(warned) == ["spec.sla.itlMs", "spec.sla.ttftMs"]
    assert "nearest 470 ms and 1000 ms" in warned["spec.sla.ttftMs"]
    assert "set spec.rules.ttftBucketMs to one of them (the one below counts every request over the SLA" in warned["spec.sla.ttftMs"]
    assert "the fraction of TTFTs over it the attainment sizing calibrates on and the TTFT SLI" in warned["spec.sla.ttftMs"]
    assert "nearest 24 ms and 45 ms" in warned["spec.sla.itlMs"] and "ITL SLI of the SLO alerts stays empty" in warned["spec.sla.itlMs"]
    # bounds that are buckets: nothing to say; a bucket field that is not one is named itself
    aligned = with_changes(plan_dict(sizing="attainment"), {"spec.sla": {"ttftMs": 800, "itlMs": 25},
                                                            "spec.rules": {"ttftBucketMs": 1000, "itlBucketMs": 45}})
    assert sources.bucket_warnings(Plan.model_validate(aligned)) == []
    off = with_changes(aligned, {"spec.rules": {"ttftBucketMs": 900, "itlBucketMs": 45}})
    assert [p for p, _ in sources.bucket_warnings(Plan.model_validate(off))] == ["spec.rules.ttftBucketMs"]
    # vLLM's own defaults: 0.25 and 0.5 s are bounds, 0.3 is not
    vllm = with_changes(plan_dict(sizing="attainment"), {"spec.sla": {"ttftMs": 300, "itlMs": 25},
                                                         "spec.metrics.source": "vllm"})
    assert "nearest 250 ms and 500 ms" in dict(sources.bucket_warnings(Plan.model_validate(vllm)))["spec.sla.ttftMs"]
    # nothing counts above it (dynamo sizing, no alerts): no warning
    quiet = with_changes(plan_dict(sizing="dynamo"), {"spec.sla": {"ttftMs": 800, "itlMs": 25}, "spec.rules": {"alerts": False}})
    assert sources.bucket_warnings(Plan.model_validate(quiet)) == []


def test_the_scrape_interval_decides_which_attainment_series_are_read() -> None:
    at30 = Plan.model_validate(with_changes(plan_dict(sizing="attainment", interval_seconds=180), {"spec.metrics.scrapeIntervalSeconds": 30}))
    at15 = Plan.model_validate(with_changes(plan_dict(sizing="attainment", interval_seconds=180), {"spec.metrics.scrapeIntervalSeconds": 15}))
    at60 = Plan.model_validate(with_changes(plan_dict(sizing="attainment", interval_seconds=180), {"spec.metrics.scrapeIntervalSeconds": 60}))
    assert sources.unreadable_series(at30) == ()  # 60-s bins
    assert sources.unreadable_series(at15) == ()
    assert sources.unreadable_series(at60) == ("peak_rate", "arrival_dispersion")  # 120-s bins: one in 180 s
    assert "scrape the frontends every 30s or less" in dict(sources.source_warnings(at60))["spec.metrics.scrapeIntervalSeconds"]
