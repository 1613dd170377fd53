"""Where the planner's work runs: in threads of the deciding process, or in planner processes.

A decision is pure CPU (`scaler.core`: predictor updates, queueing tails, replays of a fold's
windows). `dynplan serve` already keeps that work out of the process that answers KEDA (the
decider process, scaler.service.front), so by default (`--planner-processes 0`,
`ThreadCompute`, also what `explain` and in-process tests use) jobs run in the decider's
threads. With `--planner-processes N` (N >= 1) they run in N further child processes, for
many plans on many cores (or to keep `--one-process`'s RPCs clear of planning): the loop
only sends each job (the plan's state and the windows read, a few kB) and receives the
result, both pickled on two helper threads. Each plan's jobs go to one process, which keeps
the plan and its performance model from the first job on (a model is sent once per
profile), so a job carries only what changes.

A process that dies fails its jobs in flight with PlannerUnavailable (the loop reads those
windows again, as after a failed Prometheus read) and is started again on the next job.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import pickle
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Protocol

from scaler.core.interpolation import PerfModel
from scaler.core.load_scaling import LoadState
from scaler.core.plan import Plan
from scaler.core.planner import PlannerState
from scaler.core.replay import Advanced, advance, decide_window, replay_load
from scaler.errors import PlannerUnavailable
from scaler.service.logs import log_event

log = logging.getLogger("dynplan.compute")

def _advance_on(
    plan: Plan, model: Optional[PerfModel], shadow: Any, prior: Any, obs: Any, state: Optional[PlannerState], ahead: Any
) -> Advanced:
    """`advance` with the load path's live state taken from the plan's current state."""
    return advance(plan, model, shadow, prior, obs, None if state is None else state.load, ahead)


def _with_load(plan: Plan, model: Optional[PerfModel], state: PlannerState, load: Optional[LoadState]) -> PlannerState:
    """The state with the load path's regressions replaced (rebuilt from history)."""
    return replace(state, load=load)


# The planner functions a job may name; each takes (plan, model, *args).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "advance": advance,
    "advance_on": _advance_on,
    "decide_window": decide_window,
    "replay_load": replay_load,
    "with_load": _with_load,
}


class Packed:
    """A planner state kept pickled in the serving process (`ProcessCompute`): the loop only
    hands it back to the planner process, and one bytes object instead of about a hundred
    tracked objects per state keeps the serving process's garbage collections short (1,000
    plans replace three states each per interval)."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob


def _pack(value: Any) -> Any:
    """The planner's answer with its states packed (Advanced, (state, result), a state)."""
    if isinstance(value, PlannerState):
        return Packed(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    if isinstance(value, Advanced):
        return replace(value, state=_pack(value.state), shadow=_pack(value.shadow),
                       ahead=None if value.ahead is None else _pack(value.ahead))
    if isinstance(value, tuple) and value and isinstance(value[0], PlannerState):
        return (_pack(value[0]), *value[1:])
    return value


def _unpack(value: Any) -> Any:
    """A job's argument with packed states restored (also inside a tuple: `ahead`)."""
    if isinstance(value, Packed):
        return pickle.loads(value.blob)
    if isinstance(value, tuple):
        return tuple(_unpack(v) for v in value)
    return value


@dataclass(frozen=True)
class PlanHandle:
    """A plan version registered with a Compute: jobs name it instead of carrying it."""

    key: int
    plan: Plan
    model: Optional[PerfModel]


class Compute(Protocol):
    def register(self, plan: Plan, model: Optional[PerfModel]) -> PlanHandle: ...

    def forget(self, handle: PlanHandle) -> None: ...

    async def run(self, handle: PlanHandle, fn: str, *args: Any) -> tuple[Any, float]:
        """`FUNCTIONS[fn](plan, model, *args)` and the seconds it computed."""
        ...

    async def close(self) -> None: ...


def _timed(fn: str, plan: Plan, model: Optional[PerfModel], args: tuple[Any, ...]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = FUNCTIONS[fn](plan, model, *args)
    return result, time.perf_counter() - t0


class ThreadCompute:
    """Jobs in threads of the serving process (`--planner-processes 0`)."""

    def __init__(self) -> None:
        self._keys = itertools.count(1)

    def register(self, plan: Plan, model: Optional[PerfModel]) -> PlanHandle:
        return PlanHandle(next(self._keys), plan, model)

    def forget(self, handle: PlanHandle) -> None:
        pass

    async def run(self, handle: PlanHandle, fn: str, *args: Any) -> tuple[Any, float]:
        return await asyncio.to_thread(_timed, fn, handle.plan, handle.model, args)

    async def close(self) -> None:
        pass


# -- the planner process ------------------------------------------------------------------
# Messages to it: ("job", id, key, plan or None, fingerprint, model or None, fn, args),
# ("forget", key), or None (stop). From it: (id, True, pickled (result, seconds)) or
# (id, False, pickled exception), or (id, None, None) when it lacks the plan or model the
# job names. The answer is pickled apart from its id, so one that cannot be read back
# fails its own job, not the pipe.


def _planner_main(conn: multiprocessing.connection.Connection) -> None:
    """The planner process: answer jobs until the scaler closes the pipe."""
    plans: dict[int, Plan] = {}
    models: dict[str, PerfModel] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the scaler is gone (or closed the pipe): so is this process
        if msg is None:
            return
        if msg[0] == "forget":
            plans.pop(msg[1], None)
            continue
        _, job_id, key, plan, fingerprint, model, fn, args = msg
        if plan is not None:
            plans[key] = plan
        if model is not None:
            models[fingerprint] = model
        if key not in plans or (fingerprint is not None and fingerprint not in models):
            conn.send((job_id, None, None))
            continue
        ok: bool
        try:
            result, seconds = _timed(fn, plans[key], models.get(fingerprint) if fingerprint else None, tuple(_unpack(a) for a in args))
            value: Any = (_pack(result), seconds)
            ok = True
        except Exception as exc:  # noqa: BLE001 - the loop reports it as its own
            value, ok = exc, False
        try:
            blob = pickle.dumps(value)
            if not ok:
                pickle.loads(blob)  # an exception that cannot be rebuilt is sent as text
        except Exception as exc:  # noqa: BLE001
            blob, ok = pickle.dumps(RuntimeError(f"{type(value).__name__}: {value}"[:500] if not ok else f"result not picklable: {exc!r}"[:500])), False
        try:
            conn.send((job_id, ok, blob))
        except (EOFError, OSError):
            return


class _Process:
    """One planner process, its pipe, and the two threads that pickle for the event loop."""

    def __init__(self, index: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs gRPC
        self.index = index
        ours, theirs = ctx.Pipe()
        self.conn = ours
        self.process = ctx.Process(target=_planner_main, args=(theirs,), name=f"dynplan-planner-{index}", daemon=True)
        self.process.start()
        theirs.close()
        self.plans: set[int] = set()   # plan keys this process holds
        self.models: set[str] = set()  # model fingerprints it holds
        self.pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self.lock = threading.Lock()
        self.alive = True
        self.outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._send, name=f"dynplan-planner-send-{index}", daemon=True).start()
        threading.Thread(target=self._receive, name=f"dynplan-planner-recv-{index}", daemon=True).start()

    def _send(self) -> None:
        while True:
            msg = self.outbox.get()
            try:
                self.conn.send(msg)
            except (OSError, ValueError, EOFError):
                self._died()
                return
            except Exception as exc:  # noqa: BLE001 - an argument that cannot be pickled: that job fails
                if msg is not None and msg[0] == "job":
                    self._resolve(msg[1], False, RuntimeError(f"planner job could not be sent: {exc!r}"[:500]))
                continue
            if msg is None:
                return

    def _receive(self) -> None:
        while True:
            try:
                job_id, ok, blob = self.conn.recv()
            except (EOFError, OSError):
                self._died()
                return
            value: Any = None
            if blob is not None:
                try:
                    value = pickle.loads(blob)
                except Exception as exc:  # noqa: BLE001 - that job fails, the others go on
                    ok, value = False, RuntimeError(f"planner answer could not be read: {exc!r}"[:500])
            self._resolve(job_id, ok, value)

    def _resolve(self, job_id: int, ok: Optional[bool], value: Any) -> None:
        with self.lock:
            entry = self.pending.pop(job_id, None)
        if entry is None:
            return
        loop, future = entry
        loop.call_soon_threadsafe(_settle, future, ok, value)

    def _died(self) -> None:
        with self.lock:
            if not self.alive:
                return
            self.alive = False
            pending, self.pending = self.pending, {}
        for loop, future in pending.values():
            loop.call_soon_threadsafe(_settle, future, False, PlannerUnavailable(f"planner process {self.index} stopped before answering"))

    def submit(self, job_id: int, msg: tuple[Any, ...], future: "asyncio.Future[Any]") -> None:
        with self.lock:
            if not self.alive:
                raise PlannerUnavailable(f"planner process {self.index} is not running")
            self.pending[job_id] = (asyncio.get_running_loop(), future)
        self.outbox.put(msg)

    def stop(self, timeout: float) -> None:
        self.outbox.put(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(1.0)
        self.conn.close()
        self._died()


def _settle(future: "asyncio.Future[Any]", ok: Optional[bool], value: Any) -> None:
    if future.done():
        return
    if ok is None:
        future.set_result(_MISSING)
    elif ok:
        future.set_result(value)
    else:
        future.set_exception(value if isinstance(value, BaseException) else RuntimeError(repr(value)))


_MISSING = object()  # the process lacked the plan or model: send them and ask again


class ProcessCompute:
    """Jobs in `processes` planner processes (`--planner-processes N`), each plan on one."""

    def __init__(self, processes: int = 1) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.size = processes
        self._keys = itertools.count(1)
        self._jobs = itertools.count(1)
        self._procs: list[Optional[_Process]] = [None] * processes
        self.restarts = 0
        self._closed = False

    def register(self, plan: Plan, model: Optional[PerfModel]) -> PlanHandle:
        return PlanHandle(next(self._keys), plan, model)

    def forget(self, handle: PlanHandle) -> None:
        proc = self._procs[handle.key % self.size]
        if proc is not None and proc.alive and handle.key in proc.plans:
            proc.plans.discard(handle.key)
            proc.outbox.put(("forget", handle.key))

    def start(self) -> None:
        """Start every process now (blocking: call it in a thread), rather than on the first job."""
        for i in range(self.size):
            self._process(i)

    def _process(self, index: int) -> _Process:
        proc = self._procs[index]
        if proc is None or not proc.alive:
            if self._closed:
                raise PlannerUnavailable("the planner processes are stopped")
            if proc is not None:
                self.restarts += 1
                log_event(log, "planner_process_restarted", logging.WARNING, index=index, restarts=self.restarts)
            proc = _Process(index)
            self._procs[index] = proc
        return proc

    async def run(self, handle: PlanHandle, fn: str, *args: Any) -> tuple[Any, float]:
        for _ in range(2):  # a second time with the plan and model, if the process lacked them
            proc = self._process(handle.key % self.size)
            fingerprint = handle.model.profile.fingerprint if handle.model is not None else None
            send_plan = handle.key not in proc.plans
            send_model = fingerprint is not None and fingerprint not in proc.models
            job_id = next(self._jobs)
            msg = ("job", job_id, handle.key, handle.plan if send_plan else None, fingerprint,
                   handle.model if send_model else None, fn, args)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            proc.submit(job_id, msg, future)
            proc.plans.add(handle.key)
            if fingerprint is not None:
                proc.models.add(fingerprint)
            result = await future
            if result is not _MISSING:
                return result  # type: ignore[no-any-return]
            proc.plans.discard(handle.key)
            if fingerprint is not None:
                proc.models.discard(fingerprint)
        raise PlannerUnavailable(f"planner process {handle.key % self.size} did not take plan {handle.plan.namespace}/{handle.plan.name}")

    async def close(self, timeout: float = 2.0) -> None:
        self._closed = True
        procs, self._procs = [p for p in self._procs if p is not None], [None] * self.size
        await asyncio.gather(*(asyncio.to_thread(p.stop, timeout) for p in procs))

    def pids(self) -> list[int]:
        """Process ids of the running planner processes."""
        return [p.process.pid for p in self._procs if p is not None and p.alive and p.process.pid is not None]
