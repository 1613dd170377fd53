"""scaler.sim.hpa, .hpa_config, .keda and .actuation: the KEDA + HPA path, against hand-computed
cases of the HPA's algorithm.

Every expected number below is worked out by hand from kubernetes'
pkg/controller/podautoscaler (replica_calculator.go, horizontal.go) and KEDA's
scale_handler.go / fallback.go / scale_scaledobjects.go, as summarised in those modules' docstrings.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import pytest
import yaml

from helpers import REPO, make_plan
from scaler.planfile import LoadedPlan, load_plan
from scaler.render import pipeline
from scaler.sim.actuation import ActuationConfig, ActuationPath, config_from_plan, config_from_scaled_object
from scaler.sim.hpa import HpaController, Tolerances, average_value_replicas, tolerances_for
from scaler.sim.hpa_config import (
    DEFAULT_SCALE_DOWN_RULES,
    DEFAULT_SCALE_UP_RULES,
    Behavior,
    ControllerSettings,
    HpaConfig,
    ScalingPolicy,
    ScalingRules,
)
from scaler.sim.keda import (
    SCALER_TARGET,
    FallbackConfig,
    KedaConfig,
    KedaScaledObject,
    ScalerReading,
    keda_metric_milli,
    last_poll_at_or_before,
    observed_at,
)

DISAGG = REPO / "tests" / "fixtures" / "render" / "disagg.yaml"
GOLDEN_DECODE = REPO / "tests" / "golden" / "render" / "llama-disagg-decode.scaledobject.yaml"


def pods_rules(window: int = 0, pods: int = 100, period: int = 15, tolerance: Optional[float] = None) -> ScalingRules:
    return ScalingRules(window, "Max", (ScalingPolicy("Pods", pods, period),), tolerance)


def free_hpa(
    min_replicas: int = 1,
    max_replicas: int = 100,
    target_average_value: float = 1.0,
    controller: Optional[ControllerSettings] = None,
) -> HpaConfig:
    """No windows, one huge Pods policy: only the metric arithmetic and the clamps act."""
    return HpaConfig(
        min_replicas,
        max_replicas,
        Behavior(pods_rules(), pods_rules()),
        target_average_value,
        controller if controller is not None else ControllerSettings(),
    )


def one_sync(config: HpaConfig, current: int, metric: Optional[float], status: Optional[int] = None) -> int:
    return HpaController(config).step(0.0, metric, current, status)


def run_syncs(controller: HpaController, start: int, metrics: Sequence[Optional[float]], period: float = 15.0) -> list[int]:
    """Sync every `period` from t=0, the spec following the HPA; the spec after each sync."""
    replicas, out = start, []
    for i, m in enumerate(metrics):
        replicas = controller.step(i * period, m, replicas)
        out.append(replicas)
    return out


# -- AverageValue arithmetic and tolerance -------------------------------------------------------


@pytest.mark.parametrize(
    "current, metric, expected",
    [
        (10, 10.5, 10),  # ratio 1.05: inside the 10% band
        (10, 11.5, 12),  # ratio 1.15: ceil(11.5)
        (10, 11.0, 10),  # ratio exactly 1.1: the band is closed, +1 from 10 is swallowed
        (10, 12.0, 12),
        (10, 9.0, 10),  # ratio exactly 0.9: inside
        (10, 8.9, 9),  # ratio 0.89: ceil(8.9)
        (11, 10.0, 11),  # -1 from 11: ratio 0.909, swallowed
        (3, 20.0, 20),  # outside the band the proposal ignores the current count
    ],
)
def test_average_value_with_the_default_tolerance(current: int, metric: float, expected: int) -> None:
    assert one_sync(free_hpa(), current, metric) == expected


def test_average_value_divides_the_total_by_the_target() -> None:
    # 3 pods, target 5, a total of 20: ratio 20/(5*3) = 1.33, desired ceil(20/5) = 4 (not 3 * 1.33).
    assert one_sync(free_hpa(target_average_value=5.0), 3, 20.0) == 4
    assert average_value_replicas(20_000, 5_000, 3, Tolerances(0.1, 0.1)) == 4
    # status.replicas (pods that exist), not the spec, is in the ratio: spec 10, 5 pods, metric
    # 10.5 -> ratio 2.1 -> ceil(10.5) = 11; with status 10 the ratio 1.05 is inside the band.
    assert one_sync(free_hpa(), 10, 10.5, status=5) == 11
    assert one_sync(free_hpa(), 10, 10.5, status=10) == 10
    # No pods yet: ratio +Inf, never inside the band.
    assert average_value_replicas(3_000, 1_000, 0, Tolerances(0.1, 0.1)) == 3
    assert average_value_replicas(0, 1_000, 0, Tolerances(0.1, 0.1)) == 0  # NaN ratio


def test_per_direction_tolerance_from_behavior() -> None:
    cfg = HpaConfig(1, 100, Behavior(pods_rules(tolerance=0.01), pods_rules(tolerance=0.2)))
    assert tolerances_for(cfg) == Tolerances(scale_down=0.2, scale_up=0.01)
    assert one_sync(cfg, 10, 10.5) == 11  # 1.05 > 1.01: ceil(10.5)
    assert one_sync(cfg, 10, 8.5) == 10  # 0.85 >= 0.8: inside
    assert one_sync(cfg, 10, 7.5) == 8  # 0.75 < 0.8: ceil(7.5)
    # Without the HPAConfigurableTolerance gate the per-HPA fields are ignored: 10% both ways.
    gated = HpaConfig(1, 100, cfg.behavior, controller=ControllerSettings(configurable_tolerance=False))
    assert tolerances_for(gated) == Tolerances(0.1, 0.1)
    assert one_sync(gated, 10, 10.5) == 10
    # And the cluster flag sets both directions.
    wide = HpaConfig(1, 100, cfg.behavior, controller=ControllerSettings(tolerance=0.3, configurable_tolerance=False))
    assert one_sync(wide, 10, 12.9) == 10 and one_sync(wide, 10, 13.5) == 14


def test_keda_milli_conversion() -> None:
    assert keda_metric_milli(10.0004) == 10_000
    assert keda_metric_milli(0.0006) == 1
    assert keda_metric_milli(0.0004) == 0
    assert keda_metric_milli(2.5) == 2_500
    assert keda_metric_milli(-1.0) == 0
    assert keda_metric_milli(math.nan) == 0
    assert keda_metric_milli(math.inf) == 0
    # 1.0004 rounds to 1.000: ratio exactly 1 -> no change even with tolerance 0.
    tight = free_hpa(controller=ControllerSettings(tolerance=0.0))
    assert one_sync(tight, 1, 1.0004) == 1
    assert one_sync(tight, 1, 1.0006) == 2  # 1.001 -> ceil = 2
    # A sub-milli value is 0: the proposal 0 is clamped to minReplicas.
    c = HpaController(free_hpa())
    sync = c.sync(0.0, 0.0004, 2)
    assert (sync.proposal, sync.desired) == (0, 1)


# -- min/max and the early branches ------------------------------------------------------------------


def test_min_max_clamps_and_early_branches() -> None:
    cfg = free_hpa(min_replicas=2, max_replicas=12)
    c = HpaController(cfg)
    s = c.sync(0.0, 50.0, 4)
    assert (s.proposal, s.stabilized, s.desired, s.reason) == (50, 50, 12, "Computed")
    s = HpaController(cfg).sync(0.0, 0.0, 4)
    assert (s.proposal, s.desired) == (0, 2)
    # Outside [min, max] the HPA clamps without reading the metric at all.
    for current, expected, reason in ((15, 12, "AboveMaxReplicas"), (1, 2, "BelowMinReplicas")):
        c = HpaController(cfg)
        assert not c.computes_metrics(current)
        s = c.sync(0.0, None, current)
        assert (s.proposal, s.desired, s.reason) == (None, expected, reason)
    # 0 replicas: scaling disabled (KEDA owns 0 <-> 1).
    s = HpaController(cfg).sync(0.0, 7.0, 0)
    assert (s.desired, s.reason) == (0, "ScalingDisabled")
    # A metrics error keeps the current count and records nothing.
    s = HpaController(cfg).sync(0.0, None, 4)
    assert (s.proposal, s.desired, s.reason) == (None, 4, "FailedGetExternalMetric")


# -- scale-up policies ------------------------------------------------------------------------------


def test_default_scale_up_policies_four_pods_or_double_per_15s() -> None:
    # behavior given but empty: the API fills scaleUp = max(Pods 4, Percent 100) per 15 s, window 0.
    cfg = HpaConfig(1, 100, Behavior())
    assert cfg.effective_behavior is not None and cfg.effective_behavior.scale_up == DEFAULT_SCALE_UP_RULES
    # From 1 toward 20: max(1+4, ceil(1*2)) = 5; max(5+4, 10) = 10; max(14, 20) = 20.
    assert run_syncs(HpaController(cfg), 1, [20.0] * 4) == [5, 10, 20, 20]
    # The cap is maxReplicas.
    assert run_syncs(HpaController(HpaConfig(1, 16, Behavior())), 1, [20.0] * 4) == [5, 10, 16, 16]


def test_policy_period_counts_the_replicas_added_inside_it() -> None:
    # Syncing every 10 s under a 15 s period: the +4 made at t=0 still counts at t=10
    # (period start 1 -> limit 5: no change), is out at t=20 (start 5 -> max(9, 10) = 10),
    # the +5 of t=20 counts at t=30, and at t=40 the start is 10 -> max(14, 20) = 20.
    c = HpaController(HpaConfig(1, 100, Behavior()))
    assert run_syncs(c, 1, [20.0] * 5, period=10.0) == [5, 5, 10, 10, 20]


def test_percent_scale_up_rounds_up() -> None:
    cfg = HpaConfig(1, 100, Behavior(ScalingRules(0, "Max", (ScalingPolicy("Percent", 50, 60),)), pods_rules()))
    # ceil(3 * 1.5) = 5; the +2 counts for 60 s: period start stays 3 until t=60, then 5 -> ceil(7.5) = 8.
    assert run_syncs(HpaController(cfg), 3, [20.0] * 6) == [5, 5, 5, 5, 8, 8]


def test_select_policy_min_takes_the_smaller_scale_up() -> None:
    cfg = HpaConfig(1, 100, Behavior(scale_up=ScalingRules(select_policy="Min"), scale_down=pods_rules()))
    # min(1+4, 2) = 2; min(6, 4) = 4; min(8, 8) = 8; min(12, 16) = 12; min(16, 24) = 16.
    assert run_syncs(HpaController(cfg), 1, [20.0] * 5) == [2, 4, 8, 12, 16]


def test_legacy_path_without_behavior() -> None:
    # spec.behavior nil is not the defaulted behaviour: max(2 * current, 4) per sync, no history.
    assert run_syncs(HpaController(HpaConfig(1, 100, None)), 1, [20.0] * 5) == [4, 8, 16, 20, 20]
    # Scale-down: max over the controller's 300 s window, which holds the initial recommendation.
    c = HpaController(HpaConfig(1, 100, None))
    out = run_syncs(c, 10, [4.0] * 22)  # t = 0 .. 315
    assert out[19] == 10  # t=285
    assert out[20] == 4  # t=300: the t=0 samples left the window; no rate limit on the way down
    assert out[21] == 4


# -- stabilisation ----------------------------------------------------------------------------------


def test_scale_down_window_ignores_a_dip_shorter_than_the_window() -> None:
    cfg = HpaConfig(1, 100, Behavior(pods_rules(0), pods_rules(60)))
    metrics = [10.0, 4.0, 10.0, 4.0, 4.0, 4.0, 4.0]  # t = 0, 15, ..., 90
    # The dip at t=15 is covered by 10 at t=0; from t=45 on the metric stays at 4, but the 10
    # recorded at t=30 holds the count until it is 60 s old: the scale-down happens at t=90.
    assert run_syncs(HpaController(cfg), 10, metrics) == [10, 10, 10, 10, 10, 10, 4]


def test_a_fresh_hpa_cannot_scale_down_inside_its_first_window() -> None:
    # The first sync records the current count (10) as a recommendation.
    cfg = HpaConfig(1, 100, Behavior(pods_rules(0), pods_rules(60)))
    assert run_syncs(HpaController(cfg), 10, [4.0] * 5) == [10, 10, 10, 10, 4]


def test_default_scale_down_window_is_the_controller_flag() -> None:
    cfg = HpaConfig(1, 100, Behavior())
    assert cfg.effective_behavior is not None and cfg.effective_behavior.scale_down is not None
    assert DEFAULT_SCALE_DOWN_RULES.stabilization_window_seconds is None
    assert cfg.effective_behavior.scale_down.stabilization_window_seconds == 300
    out = run_syncs(HpaController(cfg), 10, [2.0] * 21)  # t = 0 .. 300
    assert out[19] == 10 and out[20] == 2  # Percent 100 / 15 s allows the whole drop at t=300
    short = HpaConfig(1, 100, Behavior(), controller=ControllerSettings(downscale_stabilization_seconds=30))
    assert run_syncs(HpaController(short), 10, [2.0] * 3) == [10, 10, 2]


def test_scale_up_window_takes_the_minimum_recommendation() -> None:
    cfg = HpaConfig(1, 100, Behavior(pods_rules(30), pods_rules(0)))
    # The initial recommendation 2 (t=0) and the 8 of t=0 are inside a 30 s window until t=30.
    assert run_syncs(HpaController(cfg), 2, [8.0] * 4) == [2, 2, 8, 8]
    # A spike shorter than the window never scales up.
    assert run_syncs(HpaController(cfg), 2, [2.0, 8.0, 2.0, 8.0, 2.0]) == [2, 2, 2, 2, 2]


# -- scale-down policies and selectPolicy ------------------------------------------------------------


def test_scale_down_one_pod_per_120_seconds() -> None:
    cfg = HpaConfig(1, 100, Behavior(scale_down=pods_rules(0, pods=1, period=120)))
    c = HpaController(cfg)
    replicas, changes = 10, []
    for i in range(18):  # t = 0 .. 255
        t = i * 15.0
        new = c.step(t, 2.0, replicas)
        if new != replicas:
            changes.append((t, replicas, new))
        replicas = new
    assert changes == [(0.0, 10, 9), (120.0, 9, 8), (240.0, 8, 7)]


def test_select_policy_max_and_min_on_scale_down() -> None:
    policies = (ScalingPolicy("Pods", 1, 120), ScalingPolicy("Percent", 50, 60))
    # Max = the biggest change: min(10-1, int(10*0.5)) = 5; the -5 counts for 60 s in the
    # Percent policy (start 10 -> 5) and 120 s in the Pods one (start 10 -> 9); at t=60 the
    # Percent period starts at 5 -> int(2.5) = 2, and min(9, 2) = 2 reaches the metric.
    big = HpaConfig(1, 100, Behavior(scale_down=ScalingRules(0, "Max", policies)))
    assert run_syncs(HpaController(big), 10, [2.0] * 5) == [5, 5, 5, 5, 2]
    # Min = the smallest change: max(9, 5) = 9 at t=0, then the Pods policy's 120 s period holds it.
    small = HpaConfig(1, 100, Behavior(scale_down=ScalingRules(0, "Min", policies)))
    assert run_syncs(HpaController(small), 10, [2.0] * 9) == [9, 9, 9, 9, 9, 9, 9, 9, 8]


def test_select_policy_disabled_blocks_one_direction_only() -> None:
    no_up = HpaConfig(1, 100, Behavior(ScalingRules(select_policy="Disabled"), ScalingRules(stabilization_window_seconds=0)))
    assert one_sync(no_up, 5, 20.0) == 5
    assert one_sync(no_up, 5, 2.0) == 2  # default Percent 100: int(5 * 0) = 0 -> clamped by the metric
    no_down = HpaConfig(1, 100, Behavior(ScalingRules(), ScalingRules(0, "Disabled")))
    assert one_sync(no_down, 5, 2.0) == 5
    assert one_sync(no_down, 5, 20.0) == 10  # default scale-up: max(5+4, 10)


# -- KEDA: when the scaler is observed -------------------------------------------------------------


def step_reading(before: ScalerReading, after: ScalerReading, at: float) -> Callable[[float], ScalerReading]:
    return lambda t: before if t < at else after


def hpa_timeline(path: ActuationPath) -> list[tuple[float, Optional[float], int]]:
    return [(e.time, e.metric_value, e.replicas_after) for e in path.events if e.source == "hpa-sync"]


def test_cached_metrics_are_the_last_poll_live_metrics_are_the_sync() -> None:
    hpa = free_hpa()
    reading = step_reading(ScalerReading(2.0, True), ScalerReading(6.0, True), at=5.0)
    cached = ActuationPath(ActuationConfig(KedaConfig(polling_interval_seconds=30, use_cached_metrics=True, min_replica_count=1), hpa), 2)
    assert cached.advance(60.0, reading) == 6
    # Polls at 0, 30, 60; the sync at 15 still reads the t=0 poll, the sync at 30 runs after its poll.
    assert hpa_timeline(cached) == [(0.0, 2.0, 2), (15.0, 2.0, 2), (30.0, 6.0, 6), (45.0, 6.0, 6), (60.0, 6.0, 6)]
    live = ActuationPath(ActuationConfig(KedaConfig(polling_interval_seconds=30, min_replica_count=1), hpa), 2)
    assert live.advance(60.0, reading) == 6
    assert hpa_timeline(live)[:2] == [(0.0, 2.0, 2), (15.0, 6.0, 6)]
    assert observed_at(15.0, cached.config.keda) == 0.0
    assert observed_at(15.0, live.config.keda) == 15.0
    assert last_poll_at_or_before(59.9, 30.0) == 30.0
    assert last_poll_at_or_before(60.0, 30.0) == 60.0
    assert last_poll_at_or_before(4.0, 30.0, first_poll=5.0) is None


def test_keda_activates_from_zero_and_cools_down_to_zero() -> None:
    keda = KedaConfig(polling_interval_seconds=15, min_replica_count=0, max_replica_count=10, cooldown_period_seconds=300)
    path = ActuationPath(ActuationConfig(keda, free_hpa(1, 10)), 0)

    def reading(t: float) -> ScalerReading:
        return ScalerReading(3.0, True) if 40.0 <= t < 100.0 else ScalerReading(0.0, False)

    assert path.advance(44.9, reading) == 0  # HPA disabled at 0; polls see an inactive scaler
    assert path.advance(45.0, reading) == 3  # poll: 0 -> 1; the sync right after: ceil(3) = 3
    assert [e for e in path.events if e.time == 45.0][0].replicas_after == 1
    assert path.keda.last_active_time == 45.0
    assert path.advance(104.9, reading) == 3
    assert path.keda.last_active_time == 90.0  # the last active poll
    assert path.advance(105.0, reading) == 1  # the HPA goes to its minReplicas (1)
    assert path.advance(404.9, reading) == 1  # 90 + 300 = 390 is not strictly past at the 390 poll
    assert path.advance(405.0, reading) == 0  # KEDA scales to minReplicaCount 0


def test_inactive_below_min_replica_count_is_raised_by_keda() -> None:
    keda = KedaConfig(polling_interval_seconds=15, min_replica_count=2)
    obj = KedaScaledObject(keda)
    assert obj.poll(0.0, ScalerReading(0.0, False), 1) == 2
    assert obj.poll(15.0, ScalerReading(0.0, False), 2) is None
    assert obj.poll(30.0, ScalerReading(5.0, True), 0) == 2  # activation goes to max(min, 1)


# -- KEDA: fallback ----------------------------------------------------------------------------------


def test_fallback_after_more_than_failure_threshold_errors() -> None:
    obj = KedaScaledObject(KedaConfig(fallback=FallbackConfig(3, 2, "currentReplicasIfHigher")))
    err = ScalerReading.error()
    assert [obj.hpa_metric(t, err, 5) for t in (0.0, 15.0, 30.0)] == [None, None, None]
    assert obj.hpa_metric(45.0, err, 5) == 5.0  # 4 > 3: max(current 5, replicas 2) replicas' worth
    assert obj.hpa_metric(60.0, err, 1) == 2.0
    assert obj.hpa_metric(75.0, ScalerReading(7.0, True), 5) == 7.0 and obj.failures == 0
    assert obj.hpa_metric(90.0, err, 5) is None  # the count starts over
    static = KedaScaledObject(KedaConfig(fallback=FallbackConfig(0, 2, "static")))
    assert static.hpa_metric(0.0, err, 5) == 2.0  # 1 > 0
    lower = KedaScaledObject(KedaConfig(fallback=FallbackConfig(0, 2, "currentReplicasIfLower")))
    assert lower.hpa_metric(0.0, err, 5) == 2.0 and lower.hpa_metric(15.0, err, 1) == 1.0
    none = KedaScaledObject(KedaConfig())
    assert [none.hpa_metric(t, err, 5) for t in range(6)] == [None] * 6


def test_polls_and_hpa_requests_share_the_failure_count() -> None:
    keda = KedaConfig(min_replica_count=0, fallback=FallbackConfig(3, 2, "static"))
    obj = KedaScaledObject(keda)
    err = ScalerReading.error()
    obj.last_active_time = -1000.0  # long cooled down
    assert obj.poll(0.0, err, 4) is None  # an error with fallback.replicas != 0 never scales to zero
    assert obj.poll(1.0, err, 4) is None
    assert obj.hpa_metric(2.0, err, 4) is None  # third failure
    assert obj.hpa_metric(3.0, err, 4) == 2.0  # fourth: fallback
    assert obj.poll(4.0, err, 4) is None and obj.last_active_time == 4.0  # fallback counts as active


def test_hpa_holds_the_count_while_the_scaler_fails_without_fallback() -> None:
    path = ActuationPath(ActuationConfig(KedaConfig(polling_interval_seconds=15, min_replica_count=1), free_hpa()), 4)
    reading = step_reading(ScalerReading(4.0, True), ScalerReading.error(), at=10.0)
    assert path.advance(60.0, reading) == 4
    assert [m for _, m, _ in hpa_timeline(path)] == [4.0, None, None, None, None]


# -- from the plan: exactly the rendered ScaledObject -----------------------------------------------


def rendered(loaded: LoadedPlan) -> dict[str, dict[str, Any]]:
    """The plan's ScaledObjects exactly as `dynplan render manifests` writes them, parsed back, by pool."""
    rendering = pipeline.render(pipeline.build_all([loaded], "keda"))
    out: dict[str, dict[str, Any]] = {}
    for f in rendering.by_role(pipeline.ROLE_OBJECT):
        doc = yaml.safe_load(f.text)
        if doc["kind"] == "ScaledObject":
            out[doc["metadata"]["labels"]["dynplan.io/pool"]] = doc
    return out


def test_rendered_plan_round_trip() -> None:
    loaded = load_plan(DISAGG)
    plan = loaded.plan
    manifests = rendered(loaded)
    assert sorted(manifests) == sorted(plan.pool_names)
    for pool in plan.pool_names:
        assert config_from_scaled_object(manifests[pool]) == config_from_plan(plan, pool)
    decode = config_from_plan(plan, "decode")
    assert config_from_scaled_object(yaml.safe_load(GOLDEN_DECODE.read_text())) == decode
    assert decode.keda == KedaConfig(
        polling_interval_seconds=10,
        use_cached_metrics=False,
        min_replica_count=2,
        max_replica_count=12,
        cooldown_period_seconds=300,
        fallback=FallbackConfig(3, 2, "currentReplicasIfHigher"),
        target_value=1.0,
    )
    assert decode.hpa == HpaConfig(
        2,
        12,
        Behavior(
            ScalingRules(0, "Max", (ScalingPolicy("Pods", 12, 15),), 0.05),
            ScalingRules(30, "Max", (ScalingPolicy("Percent", 50, 120),), 0.05),
        ),
    )
    assert tolerances_for(decode.hpa) == Tolerances(0.05, 0.05)
    # The rendered behaviour executes the planner's jump in one sync, with a 5% band.
    assert one_sync(decode.hpa, 2, 12.0) == 12
    assert one_sync(decode.hpa, 10, 10.4) == 10 and one_sync(decode.hpa, 10, 10.6) == 11
    # ... and scales down once the 30 s window has passed (the initial 10 is in it until t=30),
    # by at most half per start-up (120 s): 10 -> 5 at t=30, -> 3 (the target) at t=150.
    assert run_syncs(HpaController(decode.hpa), 10, [3.0] * 11) == [10, 10, 5, 5, 5, 5, 5, 5, 5, 5, 3]


def test_default_plan_config() -> None:
    plan = make_plan()
    manifests = rendered(LoadedPlan(REPO / "plan.yaml", plan, None))
    for pool in plan.pool_names:
        cfg = config_from_plan(plan, pool)
        assert config_from_scaled_object(manifests[pool]) == cfg
        assert cfg.keda.polling_interval_seconds == 15
        assert cfg.keda.fallback == FallbackConfig(3, 1, "currentReplicasIfHigher")
        assert cfg.hpa.behavior == Behavior(pods_rules(0, pods=16), ScalingRules(0, "Max", (ScalingPolicy("Percent", 50, 120),)))
        assert tolerances_for(cfg.hpa) == Tolerances(0.1, 0.1)  # no per-HPA tolerance rendered
        # 10 -> 11 is swallowed by the cluster's 10% band; 1 -> 16 happens in one sync.
        assert one_sync(cfg.hpa, 10, 11.0) == 10
        assert one_sync(cfg.hpa, 1, 16.0) == 16


def test_min_replicas_zero_pool_gets_an_hpa_minimum_of_one() -> None:
    plan = make_plan(min_replicas={"prefill": 0, "decode": 0})
    cfg = config_from_plan(plan, "prefill")
    assert (cfg.keda.min_replica_count, cfg.hpa.min_replicas) == (0, 1)


def test_manifest_without_behavior_uses_keda_defaults_and_the_legacy_path() -> None:
    doc = {"spec": {"scaleTargetRef": {"name": "w"}, "triggers": [{"type": "external", "metadata": {}}]}}
    cfg = config_from_scaled_object(doc)
    assert cfg.keda == KedaConfig()
    assert (cfg.hpa.min_replicas, cfg.hpa.max_replicas, cfg.hpa.behavior) == (1, 100, None)
    partial = {
        "spec": {
            "triggers": [{"type": "external", "metadata": {}, "useCachedMetrics": True}],
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"tolerance": "50m"}}}},
        }
    }
    cfg = config_from_scaled_object(partial)
    assert cfg.keda.use_cached_metrics
    assert cfg.hpa.effective_behavior == Behavior(DEFAULT_SCALE_UP_RULES, ScalingRules(300, "Max", DEFAULT_SCALE_DOWN_RULES.policies, 0.05))
    with pytest.raises(ValueError, match="AverageValue"):
        config_from_scaled_object({"spec": {"triggers": [{"type": "external", "metricType": "Value", "metadata": {}}]}})


def test_scaler_target_is_the_servicers() -> None:
    from scaler.service.servicer import TARGET

    assert SCALER_TARGET == TARGET == 1.0
