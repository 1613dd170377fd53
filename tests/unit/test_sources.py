"""The one table of sources: which series a plan reads, and the PromQL of the attainment
sizing's signals (their values against a real Prometheus: tests/integration/prometheus/
test_prom_signals.py; as rules: the generated promtool tests)."""

from __future__ import annotations

import pytest

from helpers import make_plan
from scaler import naming, sources
from scaler.prom.reader import ready_queries, throughput_queries

SRC = sources.SOURCES["dynamo"]
BASE = ["requests", "isl", "osl", "ttft_ms", "itl_ms", "request_duration_s"]
SEL = {"dynamo_namespace": "ns", "model": "m"}


def keys(plan, kind: str = "throughput") -> list[str]:
    return [s.key for s in sources.plan_series(plan, kind)]


def test_dynamo_sizing_reads_what_it_always_read_and_attainment_adds_its_signals() -> None:
    assert keys(make_plan(sizing="dynamo", interval_seconds=180)) == BASE
    assert keys(make_plan(sizing="attainment", interval_seconds=180)) == BASE + ["peak_rate", "arrival_dispersion", "backlog"]
    # below two 30-s bins there is no dispersion (None, as in the simulator)
    assert keys(make_plan(sizing="attainment", interval_seconds=45)) == BASE + ["peak_rate", "backlog"]
    # a load-only plan reads the request count for activation, nothing else
    assert keys(make_plan(sizing="attainment", throughput=False, load=True)) == BASE
    assert set(throughput_queries(make_plan(sizing="dynamo"))) == set(BASE)
    assert ready_queries(make_plan(sizing="dynamo")) == {}
    assert ready_queries(make_plan(sizing="attainment")) == {
        "prefill": 'max(kube_deployment_status_replicas_ready{deployment="llama-prefill",namespace="inference"})',
        "decode": 'max(kube_deployment_status_replicas_ready{deployment="llama-decode",namespace="inference"})',
    }


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
