"""The serving process's AnswerBook (scaler.service.answers): the same answers and errors as
the registry's PlanLoops, updates applied in order, a restarted decider's empty answers not
hiding the decisions already received."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from helpers import REPO
from scaler.errors import MetadataError, NoDecisionYet, PlanNotFound, StaleDecision, grpc_status_for
from scaler.prom.client import DEFAULT_CONCURRENCY
from scaler.service.answers import AnswerBook, BookUpdate, PlanAnswer, book_changes, check_fresh
from scaler.service.config import PoolRef
from scaler.service.options import ServeConfig

NOW = 1_800_000_000.0


def _answer(name: str = "alpha", made_at: float | None = NOW - 10, prefill: int = 3, decode: int = 2,
            requests: float | None = 120.0, error: str | None = None) -> PlanAnswer:
    return PlanAnswer(
        namespace="inference", name=name, mode="disagg", pools=("prefill", "decode"), staleness_factor=3.0,
        interval=30.0, replica_counts=None if made_at is None else (("prefill", prefill), ("decode", decode)),
        made_at=made_at, traffic_requests=None if made_at is None else requests, last_error=error,
    )


def _ref(plan: str = "alpha", pool: str = "decode", namespace: str = "inference") -> PoolRef:
    return PoolRef(namespace=namespace, plan=plan, pool=pool)


def _book(*answers: PlanAnswer, now: float = NOW) -> AnswerBook:
    book = AnswerBook(clock=lambda: now)
    book.apply(BookUpdate(answers=answers, loaded=True, full=True))
    return book


def test_a_fresh_answer_serves_its_replicas_and_activity() -> None:
    book = _book(_answer(prefill=3, decode=2))
    served = book.lookup(_ref(pool="prefill")).current()
    assert (served.replicas("prefill"), served.replicas("decode")) == (3, 2)
    assert served.active("decode") is True
    idle = _book(_answer(prefill=0, decode=0, requests=0.0)).lookup(_ref()).current()
    assert idle.active("decode") is False


def test_errors_are_the_registrys_texts_and_codes() -> None:
    book = _book(_answer())
    with pytest.raises(PlanNotFound, match=r"^no plan 'beta' in namespace 'inference'$"):
        book.lookup(_ref(plan="beta"))
    with pytest.raises(PlanNotFound):
        book.lookup(_ref(namespace="other"))  # same answer as an absent plan
    with pytest.raises(MetadataError, match=r"plan 'alpha' has no pool 'aggregated' \(mode disagg: prefill, decode\)"):
        book.lookup(_ref(pool="aggregated"))
    none_yet = _book(_answer(made_at=None, error="Prometheus down"))
    with pytest.raises(NoDecisionYet) as exc:
        none_yet.lookup(_ref()).current()
    assert str(exc.value) == "plan inference/alpha has no decision yet (waiting for Prometheus); last error: Prometheus down"
    assert grpc_status_for(exc.value) == "UNAVAILABLE"
    # 3 x 30 s bound: 90 s old is served, 90.5 s is not
    assert _book(_answer(made_at=NOW - 90)).lookup(_ref()).current().replicas("decode") == 2
    with pytest.raises(StaleDecision) as stale:
        _book(_answer(made_at=NOW - 90.5)).lookup(_ref()).current()
    assert str(stale.value) == ("plan inference/alpha: the latest good decision is 90.5s old, above the staleness "
                                "bound of 90s (3 x interval 30s)")


def test_check_fresh_is_the_loops_rule() -> None:
    check_fresh("a/b", 100.0, None, 130.0, 1.0, 30.0)  # exactly at the bound: served
    with pytest.raises(StaleDecision):
        check_fresh("a/b", 100.0, None, 130.01, 1.0, 30.0)


def test_updates_replace_remove_and_wake_waiters() -> None:
    async def run() -> None:
        book = _book(_answer("alpha"), _answer("beta"))
        version = book.version
        waiter = asyncio.ensure_future(book.wait_changed(version, 5.0))
        await asyncio.sleep(0)
        book.apply(BookUpdate(answers=(_answer("alpha", decode=7),), removed=(("inference", "beta"),)))
        assert await asyncio.wait_for(waiter, 1.0) == version + 1
        assert book.lookup(_ref()).current().replicas("decode") == 7
        with pytest.raises(PlanNotFound):
            book.lookup(_ref(plan="beta"))
        assert await book.wait_changed(book.version, 0.01) == book.version  # nothing new: times out

    asyncio.run(run())


def test_a_restarted_decider_does_not_hide_the_decisions_received() -> None:
    """A new decider's first (full) book has no decisions yet: the received ones are served
    until their own staleness bound; plans it no longer has are dropped."""
    book = _book(_answer("alpha", made_at=NOW - 40, decode=5), _answer("gone"))
    book.apply(BookUpdate(answers=(_answer("alpha", made_at=None, error="warming up"),), loaded=True, full=True))
    served = book.lookup(_ref()).current()
    assert (served.replicas("decode"), served.made_at, served.last_error) == (5, NOW - 40, "warming up")
    with pytest.raises(PlanNotFound):
        book.lookup(_ref(plan="gone"))
    # its own decision replaces the kept one
    book.apply(BookUpdate(answers=(_answer("alpha", made_at=NOW - 1, decode=6),)))
    assert book.lookup(_ref()).current().replicas("decode") == 6


def test_book_changes_sends_only_what_changed() -> None:
    sent = {("inference", "a"): _answer("a"), ("inference", "b"): _answer("b")}
    now = {("inference", "a"): _answer("a"), ("inference", "c"): _answer("c", decode=4)}
    changed, removed = book_changes(sent, now)
    assert [a.name for a in changed] == ["c"] and removed == (("inference", "b"),)
    assert book_changes(now, dict(now)) == ((), ())


def test_an_answer_is_small_on_the_pipe() -> None:
    assert len(pickle.dumps(BookUpdate(answers=(_answer(),)))) < 600


def test_serve_defaults_agree_with_the_prometheus_client() -> None:
    assert ServeConfig(plans_dir=REPO).prometheus_concurrency == DEFAULT_CONCURRENCY
