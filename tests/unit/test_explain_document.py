"""`explain --scaler` rebuilds the scaler's Decision from its /decisions JSON: every field
survives the round trip, so the table it prints is the one `explain -f` prints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scaler.core.attainment_sizing import AttainmentInputs
from scaler.core.decision import Decision, LoadPoolInputs, PoolDecision, Reason, ThroughputInputs
from scaler.errors import InputError
from scaler.explain import Explanation, decision_from_dict, parse_plan_ref, parse_scaler_address, render_table
from scaler.service.decisions import display_url

ATTAINMENT = AttainmentInputs(
    target=0.99, planned_rate=52.5, burst_factor=1.05, dispersion=1.3, backlog=2.0, prefill_service_ms=41.5,
    prefill_slowdown=1.1, prefill_wait_tail=None, decode_slowdown=1.2, decode_sequences_mean=96.0,
    decode_sequences_quantile=120.0, decode_sequences_per_replica=64.0, sized={"prefill": 4, "decode": 2},
    held={"prefill": 4, "decode": 3}, hold_seconds={"prefill": 130.0, "decode": 130.0},
)
FULL = Decision(
    plan="llama-8b",
    pools={
        "prefill": PoolDecision(4, 4, 1, (Reason.SCALE,), 41000.0),
        "decode": PoolDecision(3, 2, 2, (Reason.HELD, Reason.AT_MIN), None),
    },
    reason=Reason.SCALE,
    timestamp=1796121740.0,
    throughput=ThroughputInputs(
        observed_rate=50.0, observed_isl=3000.0, observed_osl=600.0, observed_ttft_ms=None, observed_itl_ms=5.0,
        predicted_rate=50.0, predicted_isl=3000.0, predicted_osl=600.0, prefill_thpt_per_gpu=40000.0,
        decode_thpt_per_gpu=2000.0, decode_itl_target_ms=10.0, decode_itl_at_point_ms=8.5,
        decode_kv_usage_at_point=0.6, profiled_ttft_ms=40.0, correction_prefill=1.0, correction_decode=1.25,
        correction_enabled=True, queueing_factor=1.4, prefill_queueing_replicas=3.2, sizing="attainment",
        attainment=ATTAINMENT,
    ),
    load={"prefill": {"ttft": LoadPoolInputs(4, 0.5, 10.0, 12, 80.0, None, Reason.LOAD_HOLD, 0)}},
    budget_gpus=16,
    warnings=("a warning",),
)


def test_every_field_survives_the_json_round_trip() -> None:
    wire = json.loads(json.dumps(FULL.to_dict()))
    assert decision_from_dict(wire) == FULL
    plain = Decision(plan="p", pools={"worker": PoolDecision(1, 1, 1)}, reason=Reason.IDLE)
    assert decision_from_dict(json.loads(json.dumps(plain.to_dict()))) == plain


def test_the_table_from_the_document_is_the_table_from_the_decision() -> None:
    def doc(decision: Decision) -> Explanation:
        return Explanation(plan="llama-8b", namespace="inference", prometheus="http://prom:9090", window_end=1796121740.0,
                           window_seconds=10.0, replayed_windows=32, decision=decision)

    assert render_table(doc(decision_from_dict(json.loads(json.dumps(FULL.to_dict()))))) == render_table(doc(FULL))


def test_a_document_of_another_shape_is_an_error_not_a_traceback() -> None:
    broken_docs: list[dict[str, Any]] = [{}, {"pools": {}}, {**FULL.to_dict(), "reason": "no-such-reason"},
                                         {**FULL.to_dict(), "pools": {"x": {"replicas": "many"}}}]
    for broken in broken_docs:
        with pytest.raises((KeyError, TypeError, ValueError)):
            decision_from_dict(broken)


def test_addresses_and_plan_refs() -> None:
    assert parse_scaler_address("127.0.0.1:9091") == ("127.0.0.1", 9091)
    assert parse_scaler_address("dynplan.keda.svc:8080") == ("dynplan.keda.svc", 8080)
    assert parse_scaler_address("[::1]:9091") == ("::1", 9091)
    for bad in ("http://x:80", "x", "x:0", "x:99999", "u@x:80", "x:80/path", ":80"):
        with pytest.raises(InputError, match="--scaler"):
            parse_scaler_address(bad)
    assert parse_plan_ref("inference/llama-8b") == ("inference", "llama-8b")
    for bad in ("llama-8b", "a/b/c", "A/b", "a/../b", "/b"):
        with pytest.raises(InputError, match="--plan"):
            parse_plan_ref(bad)


def test_urls_are_shown_without_userinfo() -> None:
    assert display_url("http://prom:9090/x") == "http://prom:9090/x"
    assert display_url("https://user:pw@prom:9090/x") == "https://prom:9090/x"
