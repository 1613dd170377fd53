"""Plans served by the scaler: loaded from a directory, reloaded when files change.

Plan files are the top-level `*.yaml`/`*.yml` files of the directory (dotfiles skipped,
so Kubernetes ConfigMap mounts with their `..data` symlinks work); profiles they reference
live beside them. The directory is polled; a changed file is reloaded, a file that became
invalid is reported (a `plan_load_failed` log event + `dynplan_plan_load_failing`) and the last good version
of its plan keeps serving. Plans are keyed by (namespace, name): a ScaledObject only ever
sees plans of its own namespace.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from scaler.core.plan import Plan
from scaler.errors import FieldError, MetadataError, PlanError, PlanNotFound
from scaler.planfile import LoadedPlan, load_plan
from scaler.service.config import PoolRef
from scaler.service.logs import log_event
from scaler.service.loop import PlanLoop
from scaler.service.metrics import ServiceMetrics

log = logging.getLogger("dynplan.registry")
PLAN_SUFFIXES = (".yaml", ".yml")
Fingerprint = tuple[object, ...]


def _stat(path: Path) -> tuple[str, int, int]:
    st = path.stat()  # follows symlinks: a ConfigMap update swaps the target
    return (os.path.realpath(path), st.st_mtime_ns, st.st_size)


def plan_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir()
        if p.suffix in PLAN_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def support_fingerprint(directory: Path) -> Fingerprint:
    """Stat of everything below the directory that is not a plan file (profiles)."""
    out: list[tuple[str, int, int]] = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if Path(root) == directory and (path.suffix in PLAN_SUFFIXES or name.startswith(".")):
                continue
            try:
                out.append(_stat(path))
            except OSError:
                continue
    return tuple(out)


def _snapshot(directory: Path) -> tuple[Fingerprint, dict[Path, Fingerprint]]:
    stats: dict[Path, Fingerprint] = {}
    for path in plan_files(directory):
        try:
            stats[path] = _stat(path)
        except OSError:
            continue
    return support_fingerprint(directory), stats


@dataclass(frozen=True)
class LoadFailure:
    file: str
    message: str


class PlanRegistry:
    """The live set of plans and their decision loops."""

    def __init__(
        self,
        directory: Path,
        make_plan_loop: Callable[[LoadedPlan], PlanLoop],
        *,
        metrics: Optional[ServiceMetrics] = None,
        run_loops: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.make_plan_loop = make_plan_loop
        self.metrics = metrics
        self.run_loops = run_loops
        self.by_file: dict[Path, PlanLoop] = {}         # last good version per file
        self.index: dict[tuple[str, str], PlanLoop] = {}  # (namespace, name) -> its PlanLoop
        self.failures: dict[Path, LoadFailure] = {}
        self._plan_fp: dict[Path, Fingerprint] = {}
        self._support_fp: Optional[Fingerprint] = None
        self.version = 0
        self._changed = asyncio.Event()
        self.loaded = False

    # -- change notification ------------------------------------------------------------
    def notify(self) -> None:
        """Wake everyone waiting for a change (new plan version or new decision)."""
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_changed(self, version: int, timeout: float) -> int:
        """Wait until the version moves past `version` or `timeout` passes; return the version."""
        if self.version == version:
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self.version

    # -- lookups (what the servicer calls; never blocks) --------------------------------
    def lookup(self, ref: PoolRef) -> PlanLoop:
        plan_loop = self.index.get((ref.namespace, ref.plan))
        if plan_loop is None:
            # Same answer whether the plan is absent or lives in another namespace.
            raise PlanNotFound(f"no plan {ref.plan!r} in namespace {ref.namespace!r}")
        if ref.pool not in plan_loop.plan.pool_names:
            raise MetadataError(
                f"trigger metadata key 'pool': plan {ref.plan!r} has no pool {ref.pool!r} "
                f"(mode {plan_loop.plan.spec.mode}: {', '.join(plan_loop.plan.pool_names)})"
            )
        return plan_loop

    def plans(self) -> list[Plan]:
        return [plan_loop.plan for plan_loop in self.index.values()]

    # -- loading ------------------------------------------------------------------------
    async def scan(self) -> bool:
        """Reload what changed on disk; return True when the served set changed."""
        if not self.directory.is_dir():
            self._record_failure(self.directory, f"{self.directory}: plans directory does not exist")
            self.loaded = True
            return False
        # File system work off the event loop: RPCs keep being answered meanwhile.
        support, stats = await asyncio.to_thread(_snapshot, self.directory)
        support_changed = support != self._support_fp
        self._support_fp = support
        files = list(stats)
        changed = False
        for path, fp in stats.items():
            if not support_changed and self._plan_fp.get(path) == fp:
                continue
            self._plan_fp[path] = fp
            changed |= await self._load(path, support_changed)
        for path in [p for p in self._plan_fp if p not in files]:
            del self._plan_fp[path]
            changed |= await self._remove(path)
        self.loaded = True
        if self.metrics is not None:
            self.metrics.plans.set(len(self.index))
        if changed:
            self.notify()
        return changed

    async def _load(self, path: Path, support_changed: bool = False) -> bool:
        try:
            loaded = await asyncio.to_thread(load_plan, path)
        except PlanError as exc:
            self._record_failure(path, str(exc), exc.errors)
            return False
        except Exception as exc:  # noqa: BLE001 - an unexpected loader bug must not stop the scaler
            self._record_failure(path, f"{path}: cannot load: {exc!r}")
            return False
        key = (loaded.plan.namespace, loaded.plan.name)
        owner = self.index.get(key)
        if owner is not None and owner.loaded.path != path:
            self._record_failure(path, f"{path}: plan {key[0]}/{key[1]} is already defined by {owner.loaded.path}")
            return False
        previous = self.by_file.get(path)
        # Unchanged plan and profiles: keep the running loop (and its state).
        if previous is not None and not support_changed and previous.loaded.plan == loaded.plan:
            self._clear_failure(path)
            return False
        plan_loop = self.make_plan_loop(loaded)
        if previous is not None:
            plan_loop.adopt(previous.latest)
            await self._retire(path, previous)
        self.by_file[path] = plan_loop
        self.index[key] = plan_loop
        if plan_loop.latest is not None and self.metrics is not None:
            # The adopted decision is still served: keep exporting it.
            self.metrics.record_decision(key[0], plan_loop.latest.decision, plan_loop.latest.made_at)
        self._clear_failure(path)
        if self.run_loops:
            plan_loop.start()
        log_event(log, "plan_loaded", file=str(path), namespace=key[0], plan=key[1],
                  warnings=[str(w) for w in loaded.warnings])
        return True

    async def _remove(self, path: Path) -> bool:
        self._clear_failure(path)
        previous = self.by_file.pop(path, None)
        if previous is None:
            return False
        await self._retire(path, previous)
        log_event(log, "plan_removed", file=str(path), plan=previous.key)
        return True

    async def _retire(self, path: Path, plan_loop: PlanLoop) -> None:
        key = (plan_loop.plan.namespace, plan_loop.plan.name)
        if self.index.get(key) is plan_loop:
            del self.index[key]
            if self.metrics is not None:
                self.metrics.forget_plan(key[0], key[1])
        await plan_loop.stop()

    def _record_failure(self, path: Path, message: str, errors: Optional[list[FieldError]] = None) -> None:
        self.failures[path] = LoadFailure(str(path), message)
        if self.metrics is not None:
            self.metrics.plan_load_errors.labels(str(path)).inc()
            self.metrics.plan_load_failing.labels(str(path)).set(1)
        serving = self.by_file.get(path)
        log_event(log, "plan_load_failed", logging.ERROR,
                  file=str(path),
                  errors=[str(e) for e in errors] if errors else [message],
                  serving=serving.key if serving is not None else None)

    def _clear_failure(self, path: Path) -> None:
        if self.failures.pop(path, None) is not None and self.metrics is not None:
            self.metrics.plan_load_failing.labels(str(path)).set(0)

    # -- running ------------------------------------------------------------------------
    async def watch(self, poll_seconds: float) -> None:
        """Poll the directory until cancelled."""
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await self.scan()
            except Exception as exc:  # noqa: BLE001 - keep serving the last good plans
                log.exception("plans directory scan failed: %r", exc)

    async def close(self) -> None:
        for plan_loop in list(self.by_file.values()):
            await plan_loop.stop()
