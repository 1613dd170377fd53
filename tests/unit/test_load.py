"""Load-based scaling (scaler.core.load_scaling, .load_verdicts, .load_rules): Dynamo's
reference vectors and scenarios.

The reference vectors use Dynamo's settings: TTFT SLA 500 ms, ITL SLA 50 ms, window 50,
minimum 5 observations, sensitivity 80 unless stated. Scenarios run a small simulated
cluster through `scaler.core.planner.decide` tick by tick: per-worker TTFT is
0.1 x (queued prefill tokens + ISL) + 100 ms (capacity 4000 tokens at 500 ms, i.e. 1000
queued tokens per worker at ISL 3000) and ITL is 0.5 x active blocks + 10 ms (capacity
80 blocks at 50 ms); decided replicas become ready after `startup` ticks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

import pytest

from helpers import flat_profile, plan_dict, with_changes
from scaler.core.decision import Decision, Reason
from scaler.core.interpolation import perf_model
from scaler.core.load_rules import pool_step
from scaler.core.load_scaling import ITL, TTFT, new_load_state, rebuild_load_state
from scaler.core.load_verdicts import DOWN, HOLD, UP, combine_aggregated, decode_verdict, prefill_verdict, threshold_direction
from scaler.core.observations import Observation, TrafficWindow, WorkerLoad
from scaler.core.plan import Plan
from scaler.core.planner import decide, new_state
from scaler.core.regression import SlidingRegression

PREFILL_POINTS = [(x, 0.1 * x + 100) for x in range(2000, 4000, 200)]  # x_sla(500) = 4000
DECODE_POINTS = [(x, 0.5 * x + 10) for x in range(20, 120, 10)]       # x_sla(50) = 80


def load_plan(
    mode: str = "disagg",
    *,
    throughput: bool = False,
    sensitivity: float = 80,
    window: int = 50,
    min_obs: int = 5,
    max_gpus: Optional[int] = None,
    max_replicas: Optional[dict[str, int]] = None,
    delay: int = 0,
) -> Plan:
    doc = plan_dict(
        mode=mode,
        ttft_ms=500,
        itl_ms=50,
        throughput=throughput,
        load=True,
        profile="profile" if throughput else None,
        max_gpus=max_gpus,
        max_replicas=max_replicas,
    )
    doc = with_changes(
        doc,
        {
            "spec.scaling.load.window": window,
            "spec.scaling.load.minObservations": min_obs,
            "spec.scaling.load.scaleDownSensitivity": sensitivity,
            # Dynamo's vectors scale down at once; the delay has its own tests
            "spec.scaling.load.scaleDownDelaySeconds": delay,
        },
    )
    return Plan.model_validate(doc)


def _reg(points) -> SlidingRegression:
    reg = SlidingRegression(50, 5)
    reg.extend(points)
    return reg


# -- reference vectors: the verdict functions -------------------------------------------
@pytest.mark.parametrize(
    "loads, sensitivity, expected",
    [
        ((1500, 1200), 80, UP),          # N=2, all above 1000 -> 3
        ((100, 200, 150), 100, DOWN),    # N=3, boundary 666.7 -> 2
        ((1500, 100), 80, HOLD),         # one busy, one idle: neither rule
        ((50,) * 5, 80, DOWN),           # N=5, boundary 640 -> 4
        ((0, 0, 0), 0, HOLD),            # boundary 0: 0 < 0 is false
    ],
)
def test_prefill_reference_vectors(loads, sensitivity, expected):
    v = prefill_verdict(_reg(PREFILL_POINTS), list(loads), 3000.0, 500.0, sensitivity)
    assert v.direction == expected
    assert v.inputs.capacity_per_worker == pytest.approx(1000.0)  # 4000 - ISL 3000
    assert v.inputs.slope == pytest.approx(0.1) and v.inputs.intercept == pytest.approx(100.0)
    assert v.inputs.workers == len(loads) and v.inputs.observations == 10


def test_prefill_too_few_observations_gives_no_decision():
    v = prefill_verdict(_reg(PREFILL_POINTS[:2]), [1500.0, 1200.0], 3000.0, 500.0, 80)
    assert (v.direction, v.reason) == (HOLD, Reason.LOAD_INSUFFICIENT_DATA)
    assert v.inputs.slope is None and v.inputs.observations == 2


def test_prefill_sla_unachievable_at_current_isl():
    v = prefill_verdict(_reg(PREFILL_POINTS), [1500.0, 1200.0], 4500.0, 500.0, 80)
    assert (v.direction, v.reason) == (HOLD, Reason.SLA_INFEASIBLE)
    assert "SLA unachievable at current ISL" in v.warning


@pytest.mark.parametrize(
    "blocks, sensitivity, expected",
    [((100, 95), 80, UP), ((10, 15, 20), 100, DOWN)],
)
def test_decode_reference_vectors(blocks, sensitivity, expected):
    v = decode_verdict(_reg(DECODE_POINTS), list(blocks), 50.0, sensitivity)
    assert v.direction == expected
    assert v.inputs.capacity_per_worker == pytest.approx(80.0)


def test_decode_one_observation_gives_no_decision():
    v = decode_verdict(_reg(DECODE_POINTS[:1]), [100.0, 95.0], 50.0, 80)
    assert v.reason is Reason.LOAD_INSUFFICIENT_DATA and v.direction == HOLD


def test_consolidation_refusal_is_reported():
    # average 700 < 800 (a flat 80 % rule would scale down), but 2100 over 2 workers is 1050
    assert threshold_direction([700, 700, 700], 1000, 80) == (HOLD, Reason.LOAD_REFUSED_CONSOLIDATION)
    assert threshold_direction([], 1000, 80) == (HOLD, Reason.LOAD_INSUFFICIENT_DATA)
    assert threshold_direction([10], 1000, 80) == (HOLD, Reason.LOAD_HOLD)  # never below one worker


def test_aggregated_combination_rule():
    assert combine_aggregated(UP, DOWN) == UP
    assert combine_aggregated(HOLD, UP) == UP
    assert combine_aggregated(DOWN, HOLD) == HOLD
    assert combine_aggregated(DOWN, DOWN) == DOWN


# -- one pool's step: a table per rule of the module docstring ---------------------------
R = Reason


def _step(direction=HOLD, *, ready=3, last=3, previous=None, reporting=True, throughput_only=False,
          down_streak=0, confirm_ticks=1, held=()):
    s = pool_step(
        direction, ready=ready, last=last, previous=previous, reporting=reporting,
        throughput_only=throughput_only, down_streak=down_streak, confirm_ticks=confirm_ticks, held=held,
    )
    return s.reason, s.replicas


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"throughput_only": True, "direction": UP}, (R.LOAD_HOLD, 3)),            # keeps the last decision
        ({"throughput_only": True, "last": None}, (R.LOAD_INSUFFICIENT_DATA, None)),  # none yet: the minimum
        ({"reporting": False, "direction": UP}, (R.LOAD_INSUFFICIENT_DATA, 3)),
        ({"reporting": False, "last": None, "previous": 2}, (R.LOAD_INSUFFICIENT_DATA, 2)),
        ({"reporting": False, "last": None}, (R.LOAD_INSUFFICIENT_DATA, None)),
    ],
)
def test_step_without_load_samples_keeps_the_last_decision(kwargs, expected):
    assert _step(**kwargs) == expected


@pytest.mark.parametrize(
    "direction, ready, last, expected",
    [
        (DOWN, 2, 3, (R.LOAD_DOWN, 2)),      # withdraw the replica that never became ready
        (DOWN, 4, 3, (R.LOAD_NOT_READY, 3)),  # still draining: no second step down
        (UP, 4, 3, (R.LOAD_UP, 5)),          # more ready than decided and overloaded: grow from 4
        (UP, 2, 3, (R.LOAD_NOT_READY, 3)),    # a replica is starting: do not stack another
        (HOLD, 2, 3, (R.LOAD_NOT_READY, 3)),
    ],
)
def test_step_transitions_hold_at_the_decision_in_flight(direction, ready, last, expected):
    assert _step(direction, ready=ready, last=last) == expected


@pytest.mark.parametrize(
    "direction, held, expected",
    [
        (UP, (), (R.LOAD_UP, 4)),
        (DOWN, (), (R.LOAD_DOWN, 2)),
        (HOLD, (R.LOAD_HOLD, R.LOAD_REFUSED_CONSOLIDATION), (R.LOAD_REFUSED_CONSOLIDATION, 3)),
        (HOLD, (R.LOAD_INSUFFICIENT_DATA, R.SLA_INFEASIBLE), (R.SLA_INFEASIBLE, 3)),
        (HOLD, (), (R.LOAD_HOLD, 3)),
    ],
)
def test_step_verdict_moves_one_replica_from_the_ready_count(direction, held, expected):
    assert _step(direction, held=held) == expected
    assert _step(direction, held=held, last=None) == expected  # the first decision too


@pytest.mark.parametrize(
    "down_streak, confirm_ticks, expected",
    [
        (0, 1, (R.LOAD_DOWN, 2)),           # no delay
        (0, 3, (R.LOAD_DOWN_PENDING, 3)),
        (1, 3, (R.LOAD_DOWN_PENDING, 3)),
        (2, 3, (R.LOAD_DOWN, 2)),           # the third down verdict in a row
    ],
)
def test_step_delay_needs_the_down_verdict_on_every_tick(down_streak, confirm_ticks, expected):
    assert _step(DOWN, down_streak=down_streak, confirm_ticks=confirm_ticks) == expected


# -- reference vectors through decide -------------------------------------------------
def _seeded_state(plan: Plan, pool: str = "prefill"):
    state = new_state(plan)
    state.load = new_load_state(plan)
    if plan.spec.mode == "agg" or pool == "prefill":
        state.load.regression(pool, TTFT).extend(PREFILL_POINTS)
    if plan.spec.mode == "agg" or pool == "decode":
        state.load.regression(pool, ITL).extend(DECODE_POINTS)
    return state


def _prefill_workers(loads, isl=3000.0, pool="prefill"):
    # no last TTFT: these ticks add no regression points, so the seeded fit is what decides
    return tuple(WorkerLoad(f"p{i}", pool, active_prefill_tokens=v, last_isl=isl) for i, v in enumerate(loads))


@pytest.mark.parametrize(
    "loads, sensitivity, expected, reason",
    [
        ((1500, 1200), 80, 3, Reason.LOAD_UP),
        ((100, 200, 150), 100, 2, Reason.LOAD_DOWN),
        ((1500, 100), 80, 2, Reason.LOAD_HOLD),
        ((50,) * 5, 80, 4, Reason.LOAD_DOWN),
        ((0, 0, 0), 0, 3, Reason.LOAD_HOLD),
    ],
)
def test_reference_vectors_through_decide(loads, sensitivity, expected, reason):
    plan = load_plan(sensitivity=sensitivity)
    state = _seeded_state(plan)
    n = len(loads)
    d = decide(plan, None, Observation(workers=_prefill_workers(loads), ready_replicas={"prefill": n}), state)
    assert d.replicas("prefill") == expected
    assert d.pools["prefill"].reasons[0] is reason
    inputs = d.load["prefill"][TTFT]
    assert inputs.capacity_per_worker == pytest.approx(1000.0) and inputs.workers == n
    assert inputs.max_worker_load == max(loads)
    # decode reports nothing: it keeps its minimum, with the reason saying why
    assert d.replicas("decode") == 1
    assert d.pools["decode"].reasons[0] is Reason.LOAD_INSUFFICIENT_DATA


def test_decode_vectors_through_decide():
    plan = load_plan(sensitivity=100)
    state = _seeded_state(plan, "decode")
    workers = tuple(WorkerLoad(f"d{i}", "decode", active_decode_blocks=b) for i, b in enumerate((10, 15, 20)))
    d = decide(plan, None, Observation(workers=workers, ready_replicas={"decode": 3}), state)
    assert d.replicas("decode") == 2 and d.reason is Reason.LOAD_DOWN
    assert d.load["decode"]["itl"].capacity_per_worker == pytest.approx(80.0)


# -- a simulated cluster ----------------------------------------------------------------
@dataclass
class Cluster:
    """Workers whose latency follows the module's linear models, with seeded noise."""

    plan: Plan
    ready: dict[str, int]
    startup: int = 1
    seed: int = 0
    isl_jitter: float = 100.0
    t: int = 0
    pending: list[tuple[str, int]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    history: list[Observation] = field(default_factory=list)
    # per-tick replica counts (ready) per pool
    trace: list[dict[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.state = new_state(self.plan)

    def workers(self, pool: str, prefill_tokens: float, decode_blocks: float, silent: tuple[str, ...] = ()):
        n = self.ready[pool]
        out = []
        for i in range(n):
            wid = f"{pool}-{i}"
            if wid in silent:
                continue
            w: dict = {}
            if pool in ("prefill", "worker"):
                active = prefill_tokens / n * self.rng.uniform(0.9, 1.1)
                isl = 3000.0 + self.rng.uniform(-self.isl_jitter, self.isl_jitter)
                ttft = 0.1 * (active + isl) + 100 + self.rng.gauss(0, 3)
                w.update(active_prefill_tokens=active, last_isl=isl, last_ttft_ms=ttft)
            if pool in ("decode", "worker"):
                blocks = decode_blocks / n * self.rng.uniform(0.9, 1.1)
                itl = 0.5 * blocks + 10 + self.rng.gauss(0, 0.5)
                w.update(active_decode_blocks=blocks, last_itl_ms=itl)
            out.append(WorkerLoad(wid, pool, **w))
        return out

    def tick(
        self,
        prefill_tokens: float,
        decode_blocks: float = 0.0,
        *,
        silent: tuple[str, ...] = (),
        ready_override: Optional[dict[str, int]] = None,
        traffic: Optional[TrafficWindow] = None,
        model=None,
    ) -> Decision:
        self.t += 1
        for pool, at in list(self.pending):
            if at <= self.t:
                self.ready[pool] += 1
                self.pending.remove((pool, at))
        workers = []
        for pool in self.plan.pool_names:
            workers += self.workers(pool, prefill_tokens, decode_blocks, silent)
        ready = dict(self.ready)
        if ready_override:
            ready.update(ready_override)
        obs = Observation(timestamp=10.0 * self.t, traffic=traffic, workers=tuple(workers), ready_replicas=ready)
        self.history.append(obs)
        d = decide(self.plan, model, obs, self.state)
        self.decisions.append(d)
        self.trace.append(dict(self.ready))
        self._apply(d)
        return d

    def _apply(self, d: Decision) -> None:
        for pool in self.plan.pool_names:
            want = d.replicas(pool)
            pending = [p for p in self.pending if p[0] == pool]
            have = self.ready[pool] + len(pending)
            for _ in range(want - have):
                self.pending.append((pool, self.t + self.startup))
            for _ in range(have - want):
                if pending:
                    self.pending.remove(pending.pop())
                else:
                    self.ready[pool] -= 1


def _warm(c: Cluster, ticks: int, prefill_tokens: float, decode_blocks: float = 0.0) -> None:
    for _ in range(ticks):
        c.tick(prefill_tokens, decode_blocks)


def test_burst_scales_up_within_two_load_intervals():
    c = Cluster(load_plan(), {"prefill": 2, "decode": 1}, startup=2)
    _warm(c, 10, 1200, 20)  # 600 per worker: 1200 on one worker would exceed 80 % of 1000
    assert c.decisions[-1].replicas("prefill") == 2
    burst_at = len(c.decisions)
    for _ in range(2):
        c.tick(6000, 20)
    assert max(d.replicas("prefill") for d in c.decisions[burst_at:]) >= 3
    assert c.decisions[burst_at].pools["prefill"].reasons[0] is Reason.LOAD_UP
    # the new replica is not ready for 2 ticks: no stacked scale-up meanwhile
    assert c.decisions[burst_at + 1].replicas("prefill") == 3
    assert c.decisions[burst_at + 1].pools["prefill"].reasons[0] is Reason.LOAD_NOT_READY
    # keeps adding one replica at a time until every worker is under its capacity:
    # 6000 queued tokens need 7 workers (6000/7 = 857 < 1000)
    for _ in range(30):
        c.tick(6000, 20)
    final = c.decisions[-1].replicas("prefill")
    assert 6 <= final <= 8
    ups = [d for d in c.decisions[burst_at:] if d.pools["prefill"].reasons[0] is Reason.LOAD_UP]
    assert all(b.replicas("prefill") - a.replicas("prefill") <= 1 for a, b in zip(c.decisions, c.decisions[1:]))
    assert len(ups) == final - 2


def test_steady_load_does_not_flap_over_100_ticks():
    # 2100 queued tokens on 3 workers: ~700 each, under the 1000 capacity but 2100 over
    # 2 workers (1050) would exceed it; a flat 80 % rule would remove a worker every tick
    c = Cluster(load_plan(), {"prefill": 3, "decode": 1}, startup=1, seed=11)
    _warm(c, 100, 2100, 20)
    counts = {d.replicas("prefill") for d in c.decisions}
    assert counts == {3}
    refused = [d for d in c.decisions if d.pools["prefill"].reasons[0] is Reason.LOAD_REFUSED_CONSOLIDATION]
    assert len(refused) > 50


def test_slow_decay_scales_down_step_by_step():
    c = Cluster(load_plan(), {"prefill": 6, "decode": 1}, startup=1, seed=5)
    load = 5000.0
    for _ in range(200):
        c.tick(load, 20)
        load *= 0.985  # ~1.5 % less per 10 s tick: 5000 -> ~245 tokens
    replicas = [d.replicas("prefill") for d in c.decisions]
    assert replicas[-1] == 1
    assert all(b <= a for a, b in zip(replicas, replicas[1:])), "a decaying load never scales up"
    assert all(a - b <= 1 for a, b in zip(replicas, replicas[1:]))
    # every scale-down left the remaining workers under capacity: never back up afterwards
    downs = sum(1 for d in c.decisions if d.pools["prefill"].reasons[0] is Reason.LOAD_DOWN)
    assert downs == 5


def test_worker_disappearing_is_not_counted_and_holds_the_decision():
    c = Cluster(load_plan(), {"prefill": 3, "decode": 1}, seed=2)
    _warm(c, 10, 2100, 20)
    # prefill-2 stops reporting; the reader counts only reporting workers as ready
    d = c.tick(2100, 20, silent=("prefill-2",), ready_override={"prefill": 2})
    inputs = d.load["prefill"]["ttft"]
    assert inputs.workers == 2
    assert d.replicas("prefill") == 3 and d.pools["prefill"].reasons[0] is Reason.LOAD_NOT_READY
    # busy survivors do not trigger a stacked scale-up while the replica is missing
    d = c.tick(6000, 20, silent=("prefill-2",), ready_override={"prefill": 2})
    assert d.replicas("prefill") == 3 and d.pools["prefill"].reasons[0] is Reason.LOAD_NOT_READY
    # back: normal decisions resume
    d = c.tick(6000, 20)
    assert d.replicas("prefill") == 4 and d.pools["prefill"].reasons[0] is Reason.LOAD_UP


def test_ready_but_silent_worker_counts_as_idle():
    # Kubernetes says 3 ready, only 2 publish load: the third is idle, so not every
    # worker is above capacity and there is no scale-up
    plan = load_plan()
    state = _seeded_state(plan)
    obs = Observation(workers=_prefill_workers((1500, 1200)), ready_replicas={"prefill": 3})
    d = decide(plan, None, obs, state)
    assert d.replicas("prefill") == 3 and d.load["prefill"]["ttft"].workers == 3


def test_pending_replica_is_withdrawn_when_load_falls():
    plan = load_plan()
    state = _seeded_state(plan)
    d = decide(plan, None, Observation(workers=_prefill_workers((1500, 1200)), ready_replicas={"prefill": 2}), state)
    assert d.replicas("prefill") == 3
    # the third replica never becomes ready (no GPU); load drops: withdraw it first
    d = decide(plan, None, Observation(workers=_prefill_workers((50, 60)), ready_replicas={"prefill": 2}), state)
    assert d.replicas("prefill") == 2 and d.pools["prefill"].reasons[0] is Reason.LOAD_DOWN


def test_no_workers_reporting_keeps_previous_decision():
    plan = load_plan()
    state = _seeded_state(plan)
    decide(plan, None, Observation(workers=_prefill_workers((1500, 1200)), ready_replicas={"prefill": 2}), state)
    d = decide(plan, None, Observation(), state)
    assert d.replicas("prefill") == 3
    assert d.pools["prefill"].reasons[0] is Reason.LOAD_INSUFFICIENT_DATA


def test_negative_slope_data_uses_fallback_and_reports_bad_fit():
    plan = load_plan()
    state = new_state(plan)
    state.load = new_load_state(plan)
    # TTFT falling with load (e.g. prefix-cache hits growing with traffic)
    state.load.regression("prefill", TTFT).extend([(x, 900 - 0.1 * x) for x in range(3000, 5000, 200)])
    # y < 500 from x = 4200: capacity 4200, target 1200 queued tokens at ISL 3000
    d = decide(plan, None, Observation(workers=_prefill_workers((1500, 1300)), ready_replicas={"prefill": 2}), state)
    assert d.replicas("prefill") == 3
    assert d.pools["prefill"].reasons[:2] == (Reason.LOAD_UP, Reason.LOAD_BAD_FIT)
    inputs = d.load["prefill"]["ttft"]
    assert inputs.reason is Reason.LOAD_BAD_FIT and inputs.slope < 0
    assert inputs.capacity_per_worker == pytest.approx(1200.0)
    assert any("does not rise with load" in w for w in d.warnings)


def test_noisy_data_with_outliers_keeps_steady_pool_steady():
    c = Cluster(load_plan(), {"prefill": 3, "decode": 1}, seed=9, isl_jitter=400)
    rng = random.Random(1)
    for i in range(100):
        workers = c.workers("prefill", 2100, 0)
        # one reading in eight is wild (a stalled request or a cache hit)
        noisy = [
            WorkerLoad(w.worker_id, w.pool, w.active_prefill_tokens, None, w.last_ttft_ms * rng.choice((0.05, 20)), w.last_isl)
            if rng.random() < 0.125
            else w
            for w in workers
        ]
        nan = WorkerLoad("prefill-x", "prefill", float("nan"), None, float("inf"), float("nan"))
        obs = Observation(workers=tuple(noisy) + (nan,), ready_replicas={"prefill": 3})
        d = decide(c.plan, None, obs, c.state)
        assert d.replicas("prefill") == 3, f"tick {i}: {d.pools['prefill']}"
    fit = c.state.load.regression("prefill", TTFT).fit()
    assert fit.slope == pytest.approx(0.1, rel=0.2) and fit.rejected >= 1


def test_aggregated_up_when_either_says_up_down_only_when_both_do():
    plan = load_plan("agg", sensitivity=100)
    state = _seeded_state(plan, "worker")

    def tick(tokens, blocks, n):
        ws = tuple(
            WorkerLoad(f"w{i}", "worker", active_prefill_tokens=t, active_decode_blocks=b, last_isl=3000.0)
            for i, (t, b) in enumerate(zip(tokens, blocks))
        )
        return decide(plan, None, Observation(workers=ws, ready_replicas={"worker": n}), state)

    # prefill busy, decode idle -> up
    d = tick((1500, 1200), (10, 10), 2)
    assert d.replicas("worker") == 3 and d.reason is Reason.LOAD_UP
    assert d.load["worker"]["ttft"].direction == UP and d.load["worker"]["itl"].direction == DOWN
    # prefill idle, decode moderate (180 blocks over 2 workers = 90 > 80: hold) -> no scale-down
    d = tick((10, 10, 10), (60, 60, 60), 3)
    assert d.replicas("worker") == 3
    assert d.load["worker"]["ttft"].direction == DOWN and d.load["worker"]["itl"].direction == HOLD
    # both idle -> down
    d = tick((10, 10, 10), (10, 15, 20), 3)
    assert d.replicas("worker") == 2 and d.reason is Reason.LOAD_DOWN
    # decode saturated only -> up
    d = tick((10, 10), (100, 95), 2)
    assert d.replicas("worker") == 3


def test_workers_of_pools_the_plan_lacks_are_ignored_with_a_warning():
    # Label aliases belong to the edge: the core sees plan pool names only.
    plan = load_plan("agg")
    state = _seeded_state(plan, "worker")
    ws = tuple(WorkerLoad(f"w{i}", "decode", active_prefill_tokens=1500, last_isl=3000.0) for i in range(2))
    d = decide(plan, None, Observation(workers=ws, ready_replicas={"worker": 2}), state)
    assert d.replicas("worker") == 2
    assert "ignored workers of unknown pool 'decode'" in d.warnings


def test_the_prometheus_edge_maps_dynamos_aggregated_label_to_the_worker_pool():
    # Dynamo labels aggregated engines worker_type="decode"; the reader reports pool "worker".
    from scaler.prom.reader import WORKER_SERIES, _workers_from

    plan = load_plan("agg")
    sample = ({"worker_id": "w0", "worker_type": "decode"}, 1500.0)
    per_series = [[sample] if s.key == "active_prefill_tokens" else [] for s in WORKER_SERIES]
    (w,) = _workers_from(plan, per_series)
    assert (w.worker_id, w.pool, w.active_prefill_tokens) == ("w0", "worker", 1500.0)


def test_throughput_floor_wins_over_load_scale_down():
    plan = load_plan(throughput=True)
    model = perf_model(flat_profile(40000, 10000))
    c = Cluster(plan, {"prefill": 3, "decode": 1}, seed=4)
    # 40 req/s x 3000 tokens = 120000 tokens/s = 3 prefill replicas at 40000 each
    d = c.tick(300, 20, traffic=TrafficWindow(60, 40 * 60, isl=3000, osl=150), model=model)
    assert c.state.throughput_floor == {"prefill": 3, "decode": 1}
    for _ in range(20):
        d = c.tick(300, 20)  # 100 tokens per worker: load alone would go down to 1
    assert d.replicas("prefill") == 3
    assert d.pools["prefill"].reasons == (Reason.LOAD_DOWN, Reason.THROUGHPUT_FLOOR)
    assert d.throughput is not None and d.throughput.predicted_rate == pytest.approx(40)


def test_load_scales_above_throughput_floor():
    plan = load_plan(throughput=True)
    model = perf_model(flat_profile(40000, 10000))
    c = Cluster(plan, {"prefill": 3, "decode": 1}, seed=4)
    c.tick(300, 20, traffic=TrafficWindow(60, 40 * 60, isl=3000, osl=150), model=model)
    for _ in range(40):
        c.tick(6000, 20)
    assert c.decisions[-1].replicas("prefill") >= 6
    assert c.decisions[-1].pools["prefill"].requested == c.decisions[-1].replicas("prefill")


def test_joint_budget_applies_to_load_decisions():
    plan = load_plan(max_gpus=4)
    state = new_state(plan)
    state.load = new_load_state(plan)
    state.load.regression("prefill", TTFT).extend(PREFILL_POINTS)
    state.load.regression("decode", ITL).extend(DECODE_POINTS)
    workers = _prefill_workers((1500, 1200, 1400)) + tuple(
        WorkerLoad(f"d{i}", "decode", active_decode_blocks=100) for i in range(2)
    )
    d = decide(plan, None, Observation(workers=workers, ready_replicas={"prefill": 3, "decode": 2}), state)
    # both want one more (4 + 3 = 7 GPUs); the budget of 4 keeps it at 4
    assert (d.pools["prefill"].requested, d.pools["decode"].requested) == (4, 3)
    assert d.total_gpus == 4
    assert any(Reason.BUDGET in d.pools[p].reasons for p in ("prefill", "decode"))
    assert d.budget_gpus == 4


def test_pool_maximum_caps_scale_up():
    plan = load_plan(max_replicas={"prefill": 2})
    state = _seeded_state(plan)
    d = decide(plan, None, Observation(workers=_prefill_workers((1500, 1200)), ready_replicas={"prefill": 2}), state)
    assert d.replicas("prefill") == 2 and Reason.AT_MAX in d.pools["prefill"].reasons


def test_load_path_reports_what_the_throughput_floor_asked_for_with_bound_reasons():
    # 40 req/s asks for 3 prefill replicas; the pool maximum is 2. Through the load path
    # (a throughput tick, then a load tick) the decision must still say 3 was requested
    # and why it got 2, as the throughput path alone does.
    plan = load_plan(throughput=True, max_replicas={"prefill": 2})
    model = perf_model(flat_profile(40000, 10000))
    state = new_state(plan)
    window = TrafficWindow(60, 40 * 60, isl=3000, osl=150)
    alone = decide(plan, model, Observation(timestamp=0.0, traffic=window), state).pools["prefill"]
    assert (alone.replicas, alone.requested, alone.reasons) == (2, 3, (Reason.AT_MAX,))
    state.load = new_load_state(plan)
    state.load.regression("prefill", TTFT).extend(PREFILL_POINTS)
    d = decide(plan, model, Observation(timestamp=60.0, traffic=window), state)
    p = d.pools["prefill"]
    assert (p.replicas, p.requested) == (2, 3)
    assert p.reasons == (Reason.LOAD_INSUFFICIENT_DATA, Reason.THROUGHPUT_FLOOR, Reason.AT_MAX)
    # a load tick holding at 2 (the load rule alone would ask for 2): the floor still asks 3
    d = decide(plan, None, Observation(timestamp=70.0, workers=_prefill_workers((800, 800)), ready_replicas={"prefill": 2}), state)
    p = d.pools["prefill"]
    assert (p.replicas, p.requested) == (2, 3)
    assert p.reasons == (Reason.LOAD_HOLD, Reason.THROUGHPUT_FLOOR, Reason.AT_MAX)
    # scaling up past the maximum on load alone: requested is the load rule's ready + 1
    d = decide(plan, None, Observation(timestamp=80.0, workers=_prefill_workers((1500, 1200)), ready_replicas={"prefill": 2}), state)
    p = d.pools["prefill"]
    assert (p.replicas, p.requested, p.reasons) == (2, 3, (Reason.LOAD_UP, Reason.AT_MAX))


def test_explain_json_and_metrics_show_a_load_decisions_request_and_inputs():
    from prometheus_client import generate_latest

    from scaler.explain import Explanation, render_table
    from scaler.service.metrics import ServiceMetrics

    plan = load_plan(max_replicas={"prefill": 2})
    state = _seeded_state(plan)
    d = decide(plan, None, Observation(workers=_prefill_workers((1500, 1200)), ready_replicas={"prefill": 2}), state)
    table = render_table(Explanation("p", "ns", "http://prom", None, None, 0, d))
    assert "prefill            2          3      2  load_scale_up,at_max" in table
    assert "load prefill.ttft: workers 2, reason load_scale_up, direction +1;" in table
    assert d.to_dict()["load"]["prefill.ttft"]["capacityPerWorker"] == pytest.approx(1000.0)
    metrics = ServiceMetrics()
    metrics.record_decision("ns", d, 1.0)
    text = generate_latest(metrics.registry).decode()
    assert 'dynplan_requested_replicas{namespace="ns",plan="llama-8b",pool="prefill"} 3.0' in text
    assert 'dynplan_load_regression{namespace="ns",param="capacity",plan="llama-8b",pool="prefill",signal="ttft"} 1000.0' in text


def test_load_path_reports_the_budget_that_shrank_the_throughput_floor():
    # 200 req/s asks for 15 prefill + 1 decode; a budget of 6 GPUs gives (5, 1)
    plan = load_plan(throughput=True, max_gpus=6)
    model = perf_model(flat_profile(40000, 10000))
    state = new_state(plan)
    window = TrafficWindow(60, 200 * 60, isl=3000, osl=150)
    alone = decide(plan, model, Observation(timestamp=0.0, traffic=window), state).pools["prefill"]
    assert alone.requested == 15 and alone.replicas < 15 and Reason.BUDGET in alone.reasons
    state.load = new_load_state(plan)
    p = decide(plan, model, Observation(timestamp=60.0, traffic=window), state).pools["prefill"]
    assert (p.replicas, p.requested) == (alone.replicas, 15)
    assert p.reasons == (Reason.LOAD_INSUFFICIENT_DATA, Reason.THROUGHPUT_FLOOR, Reason.BUDGET)


# -- determinism and restart safety -------------------------------------------------------
def test_replaying_observations_gives_the_same_decisions():
    c = Cluster(load_plan(), {"prefill": 2, "decode": 2}, seed=3, startup=2)
    for t in range(60):
        c.tick(1200 if t < 15 else 5000 if t < 35 else 300, 60)
    assert len({d.replicas("prefill") for d in c.decisions}) >= 3  # it did scale both ways
    replay = new_state(c.plan)
    again = [decide(c.plan, None, obs, replay) for obs in c.history]
    assert [d.to_dict() for d in again] == [d.to_dict() for d in c.decisions]


def test_worker_order_does_not_matter():
    plan = load_plan()
    ws = list(_prefill_workers((1500, 1200, 1100)))
    pts = [WorkerLoad(f"p{i}", "prefill", 500, None, 0.1 * (500 + 3000 + i * 100) + 100, 3000 + i * 100) for i in range(6)]
    a, b = new_state(plan), new_state(plan)
    for _ in range(2):
        decide(plan, None, Observation(workers=tuple(pts)), a)
        decide(plan, None, Observation(workers=tuple(reversed(pts))), b)
    da = decide(plan, None, Observation(workers=tuple(ws), ready_replicas={"prefill": 3}), a)
    db = decide(plan, None, Observation(workers=tuple(reversed(ws)), ready_replicas={"prefill": 3}), b)
    assert da == db
    assert a.load.regression("prefill", TTFT).points == b.load.regression("prefill", TTFT).points


def test_rebuilt_state_decides_like_the_running_one():
    c = Cluster(load_plan("agg"), {"worker": 2}, seed=8)
    _warm(c, 30, 1800, 100)
    restarted = new_state(c.plan)
    restarted.load = rebuild_load_state(c.plan, c.history)
    for key, reg in c.state.load.regressions.items():
        assert restarted.load.regressions[key].points == reg.points
    obs = Observation(workers=tuple(c.workers("worker", 1800, 100)), ready_replicas=dict(c.ready))
    assert decide(c.plan, None, obs, restarted).pools == decide(c.plan, None, obs, c.state).pools


def test_plan_reload_resizes_window_and_keeps_newest_points():
    c = Cluster(load_plan(window=50), {"prefill": 2, "decode": 1}, seed=1)
    _warm(c, 20, 600, 20)
    old = c.state.load.regression("prefill", TTFT).points
    smaller = load_plan(window=10, min_obs=5)
    c.plan = smaller
    d = c.tick(600, 20)
    added = d.load["prefill"]["ttft"].workers  # one point per reporting worker
    reg = c.state.load.regression("prefill", TTFT)
    assert reg.window == 10 and len(reg) == 10
    assert reg.points[: 10 - added] == old[-(10 - added):]


def test_throughput_only_tick_keeps_load_replicas_above_the_floor():
    plan = load_plan(throughput=True)
    model = perf_model(flat_profile(40000, 10000))
    c = Cluster(plan, {"prefill": 3, "decode": 1}, seed=4)
    c.tick(300, 20, traffic=TrafficWindow(60, 40 * 60, isl=3000, osl=150), model=model)
    for _ in range(40):
        c.tick(6000, 20)
    scaled = c.decisions[-1].replicas("prefill")
    assert scaled >= 6
    # a later throughput tick without worker samples (floor 3 -> 2 at 20 req/s) must not
    # drop the load path's replicas; it only moves the floor
    window = TrafficWindow(60, 20 * 60, isl=3000, osl=150)
    d = decide(plan, model, Observation(timestamp=1.0, traffic=window), c.state)
    assert c.state.throughput_floor["prefill"] == 2
    assert d.replicas("prefill") == scaled and d.pools["prefill"].reasons[0] is Reason.LOAD_HOLD
    assert "prefill" not in d.load  # no load samples: no made-up verdict
    # a higher floor raises the pools
    window = TrafficWindow(60, 200 * 60, isl=3000, osl=150)  # 15 prefill replicas
    d = decide(plan, model, Observation(timestamp=2.0, traffic=window), c.state)
    assert d.replicas("prefill") == 15 and d.reason is Reason.THROUGHPUT_FLOOR
    assert d.pools["prefill"].reasons == (Reason.LOAD_HOLD, Reason.THROUGHPUT_FLOOR)


def test_restart_starts_from_ready_workers_not_from_the_floor():
    # after a restart the warm-up replays throughput windows (floor 3), then the first
    # tick with workers sees 6 ready: it must decide from those 6, not fall back to 3
    plan = load_plan(throughput=True)
    model = perf_model(flat_profile(40000, 10000))
    state = new_state(plan)
    window = TrafficWindow(60, 40 * 60, isl=3000, osl=150)
    decide(plan, model, Observation(timestamp=0.0, traffic=window), state)
    state.load = new_load_state(plan)
    state.load.regression("prefill", TTFT).extend(PREFILL_POINTS)
    workers = _prefill_workers((700,) * 6)
    d = decide(plan, model, Observation(timestamp=60.0, traffic=window, workers=workers, ready_replicas={"prefill": 6}), state)
    assert d.replicas("prefill") == 6
    assert d.pools["prefill"].reasons[0] is Reason.LOAD_REFUSED_CONSOLIDATION


def test_throughput_only_tick_with_ready_counts_never_invents_load():
    # the state was rebuilt from history (no load decision yet); a throughput tick that
    # carries ready counts but no worker samples must not read them as idle workers
    plan = load_plan(throughput=True)
    model = perf_model(flat_profile(40000, 10000))
    state = new_state(plan)
    state.load = rebuild_load_state(plan, [])
    state.load.regression("prefill", TTFT).extend(PREFILL_POINTS)
    window = TrafficWindow(60, 40 * 60, isl=3000, osl=150)
    d = decide(plan, model, Observation(traffic=window, ready_replicas={"prefill": 5, "decode": 2}), state)
    assert d.replicas("prefill") == 3  # the throughput floor, not 5 - 1
    assert d.pools["prefill"].reasons == (Reason.LOAD_INSUFFICIENT_DATA, Reason.THROUGHPUT_FLOOR)
    assert d.load == {}


# -- scale-down delay, observed SLA violations, more ready than decided ------------------
def test_scale_down_waits_for_the_delay_and_an_interruption_restarts_it():
    plan = load_plan(sensitivity=100, delay=30)  # 30 s at 10 s ticks: 3 down verdicts in a row
    state = _seeded_state(plan)
    low = Observation(workers=_prefill_workers((100, 200, 150)), ready_replicas={"prefill": 3})
    busy = Observation(workers=_prefill_workers((900, 900, 900)), ready_replicas={"prefill": 3})
    seen = []
    for obs in (low, low, busy, low, low, low):
        d = decide(plan, None, obs, state)
        seen.append((d.replicas("prefill"), d.pools["prefill"].reasons[0]))
    assert seen == [
        (3, Reason.LOAD_DOWN_PENDING),
        (3, Reason.LOAD_DOWN_PENDING),
        (3, Reason.LOAD_REFUSED_CONSOLIDATION),  # the lull ended: the count starts again
        (3, Reason.LOAD_DOWN_PENDING),
        (3, Reason.LOAD_DOWN_PENDING),
        (2, Reason.LOAD_DOWN),
    ]


def test_default_delay_is_a_minute_of_load_ticks():
    from scaler.core.load_scaling import down_confirm_ticks

    doc = plan_dict(load=True, throughput=False, profile=None)
    assert down_confirm_ticks(Plan.model_validate(doc)) == 6  # 60 s / 10 s
    doc = with_changes(doc, {"spec.scaling.load.intervalSeconds": 7, "spec.scaling.load.scaleDownDelaySeconds": 20})
    assert down_confirm_ticks(Plan.model_validate(doc)) == 3  # ceil(20 / 7)


def test_slow_decay_with_the_default_delay_still_reaches_one_replica():
    c = Cluster(load_plan(delay=60), {"prefill": 6, "decode": 1}, seed=5)
    load = 5000.0
    for _ in range(260):
        c.tick(load, 20)
        load *= 0.985
    replicas = [d.replicas("prefill") for d in c.decisions]
    assert replicas[-1] == 1 and all(b <= a for a, b in zip(replicas, replicas[1:]))
    pending = sum(1 for d in c.decisions if d.pools["prefill"].reasons[0] is Reason.LOAD_DOWN_PENDING)
    assert pending >= 5 * 5  # five scale-downs, each after five unconfirmed verdicts


def _ttft_workers(queued, ttft, isl=3000.0):
    return tuple(
        WorkerLoad(f"p{i}", "prefill", active_prefill_tokens=q, last_isl=isl, last_ttft_ms=t)
        for i, (q, t) in enumerate(zip(queued, ttft))
    )


def test_every_worker_missing_the_sla_with_a_backlog_scales_up_despite_the_fit():
    # queueing delay landed on low-load points: the fit says even an idle worker misses
    # 500 ms (intercept 2000), i.e. "SLA unachievable"; the workers say they are overloaded
    plan = load_plan()
    state = new_state(plan)
    state.load = new_load_state(plan)
    state.load.regression("prefill", TTFT).extend([(x, 0.1 * x + 2000) for x in range(2000, 4000, 200)])
    # the workers' own points land far off that line: do not let them move it here
    obs = Observation(workers=_ttft_workers((5000, 8000), (None, None)), ready_replicas={"prefill": 2})
    d = decide(plan, None, obs, state)
    assert d.replicas("prefill") == 2 and d.pools["prefill"].reasons[0] is Reason.SLA_INFEASIBLE
    obs = Observation(workers=_ttft_workers((5000, 8000), (2600, 3100)), ready_replicas={"prefill": 2})
    d = decide(plan, None, obs, state)
    assert d.replicas("prefill") == 3
    assert d.pools["prefill"].reasons[:2] == (Reason.LOAD_UP, Reason.LOAD_SLA_VIOLATED)
    assert d.load["prefill"]["ttft"].reason is Reason.LOAD_SLA_VIOLATED


def test_sla_violation_without_a_backlog_everywhere_does_not_scale_up():
    plan = load_plan()
    state = new_state(plan)
    state.load = new_load_state(plan)
    state.load.regression("prefill", TTFT).extend([(x, 0.1 * x + 2000) for x in range(2000, 4000, 200)])
    # one worker idle: slow requests are long prompts, not queueing -> more replicas would not help
    obs = Observation(workers=_ttft_workers((5000, 0), (2600, 2400)), ready_replicas={"prefill": 2})
    d = decide(plan, None, obs, state)
    assert d.replicas("prefill") == 2 and d.pools["prefill"].reasons[0] is Reason.SLA_INFEASIBLE


def test_cold_start_burst_scales_up_before_the_fit_has_data():
    plan = load_plan()
    state = new_state(plan)
    obs = Observation(workers=_ttft_workers((9000, 7000), (1400, 1200)), ready_replicas={"prefill": 2})
    d = decide(plan, None, obs, state)
    assert d.replicas("prefill") == 3 and d.load["prefill"]["ttft"].slope is None
    assert d.pools["prefill"].reasons[:2] == (Reason.LOAD_UP, Reason.LOAD_SLA_VIOLATED)


def test_more_ready_than_decided_grows_from_what_is_there_when_overloaded():
    plan = load_plan()
    state = _seeded_state(plan)
    decide(plan, None, Observation(workers=_prefill_workers((100, 200, 150)), ready_replicas={"prefill": 3}), state)
    assert state.load.decided["prefill"] == 2
    # the third worker is still there (draining, or the HPA holds it) and load is back
    d = decide(plan, None, Observation(workers=_prefill_workers((1500, 1300, 1200)), ready_replicas={"prefill": 3}), state)
    assert d.replicas("prefill") == 4 and d.pools["prefill"].reasons[0] is Reason.LOAD_UP
    # ...but a hold keeps the scale-down going
    state = _seeded_state(plan)
    decide(plan, None, Observation(workers=_prefill_workers((100, 200, 150)), ready_replicas={"prefill": 3}), state)
    d = decide(plan, None, Observation(workers=_prefill_workers((700, 700, 700)), ready_replicas={"prefill": 3}), state)
    assert d.replicas("prefill") == 2 and d.pools["prefill"].reasons[0] is Reason.LOAD_NOT_READY


def test_unachievable_sla_with_less_than_a_request_queued_does_not_grow_the_pool():
    # long prompts miss 500 ms even on an idle worker; a partial request queued everywhere
    # is not an overload that more replicas would fix
    plan = load_plan()
    state = new_state(plan)
    state.load = new_load_state(plan)
    state.load.regression("prefill", TTFT).extend([(x, 0.1 * x + 2000) for x in range(2000, 4000, 200)])
    obs = Observation(workers=_ttft_workers((2900, 1000), (2600, 2400)), ready_replicas={"prefill": 2})
    d = decide(plan, None, obs, state)
    assert d.replicas("prefill") == 2 and d.pools["prefill"].reasons[0] is Reason.SLA_INFEASIBLE


def test_decode_itl_over_the_sla_alone_does_not_override_the_fit():
    plan = load_plan()
    state = new_state(plan)
    state.load = new_load_state(plan)
    state.load.regression("decode", ITL).extend([(x, 0.5 * x + 60) for x in range(20, 120, 10)])
    workers = tuple(WorkerLoad(f"d{i}", "decode", active_decode_blocks=50, last_itl_ms=90) for i in range(2))
    d = decide(plan, None, Observation(workers=workers, ready_replicas={"decode": 2}), state)
    assert d.replicas("decode") == 2 and d.pools["decode"].reasons[0] is Reason.SLA_INFEASIBLE


def test_more_load_never_gives_a_lower_verdict():
    # monotone: raising any worker's load can only move the verdict towards "up"
    rng = random.Random(17)
    for _ in range(2000):
        n = rng.randint(1, 6)
        target = rng.uniform(10, 2000)
        sens = rng.choice((0, 50, 80, 100, rng.uniform(0, 100)))
        loads = [rng.uniform(0, 2 * target) for _ in range(n)]
        more = [v + rng.choice((0.0, rng.uniform(0, target))) for v in loads]
        d0, _ = threshold_direction(loads, target, sens)
        d1, _ = threshold_direction(more, target, sens)
        assert d1 >= d0, (loads, more, target, sens)
        if d0 == DOWN:  # a scale-down always leaves the survivors under the target
            assert sum(loads) / (n - 1) < target * sens / 100
