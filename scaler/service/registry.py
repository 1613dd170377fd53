"""Plans served by the scaler: loaded from a directory, reloaded when files change.

Plan files are the top-level `*.yaml`/`*.yml` files of the directory (dotfiles skipped,
so Kubernetes ConfigMap mounts with their `..data` symlinks work); profiles they reference
live beside them. The directory is polled; a changed file is reloaded, a file that became
invalid is reported (a `plan_load_failed` log event + `dynplan_plan_load_failing`) and the last good version
of its plan keeps serving. Plans are keyed by (namespace, name): a ScaledObject only ever
sees plans of its own namespace.

A file the plan collector named after its ConfigMap (`namespace_<ns>.configmap_<name>.<key>`,
naming.collected_namespace) may only define a plan of namespace <ns>, unless <ns> is the
trusted namespace (the scaler's own, where its admin renders every team's plans): whoever
can create a labelled ConfigMap in one watched namespace cannot define another's plans.
Files without that prefix are not checked.

The walk below the directory (profiles) follows symlinks but never enters a directory it
has already seen (a symlink loop is skipped and logged once), and it is bounded in depth
and entries, so a hostile or broken tree cannot stall change detection. Parsing a plan and
building its loop (the profile's model) run in a worker thread: the event loop only swaps
the finished loop in, so RPCs of every other plan keep being answered meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from scaler import naming
from scaler.core.plan import Plan
from scaler.errors import FieldError, PlanError
from scaler.planfile import LoadedPlan, load_plan
from scaler.service.answers import Changes, check_pool, not_found
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


# Bounds of the walk below the plans directory: profiles are a few levels deep and a few
# files each; anything beyond this is not a profile tree, and stat-ing it every
# --reload-seconds would cost a core.
MAX_WALK_DEPTH = 8
MAX_WALK_ENTRIES = 10_000


@dataclass(frozen=True)
class Walk:
    """What one walk below the plans directory saw: the stats, and what it skipped."""

    stats: tuple[tuple[str, int, int], ...]
    skipped: tuple[str, ...] = ()  # one line per skipped subtree (a loop, too deep, too many entries)


def walk_support(directory: Path, max_depth: int = MAX_WALK_DEPTH, max_entries: int = MAX_WALK_ENTRIES) -> Walk:
    """Stat of everything below the directory that is not a plan file (profiles).

    Symlinks are followed (ConfigMap mounts are symlinks) but a directory already visited,
    by (st_dev, st_ino), is not entered again: `ln -s . loop` is one skipped entry, not
    2^40 paths."""
    out: list[tuple[str, int, int]] = []
    skipped: list[str] = []
    seen: set[tuple[int, int]] = set()
    entries = 0
    try:
        st = directory.stat()
    except OSError:
        return Walk(())
    seen.add((st.st_dev, st.st_ino))
    stack: list[tuple[Path, int]] = [(directory, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        subdirs: list[Path] = []
        for name in names:
            if name.startswith("."):
                continue  # dotfiles, and ConfigMap's ..data machinery
            path = folder / name
            if folder == directory and path.suffix in PLAN_SUFFIXES:
                continue
            entries += 1
            if entries > max_entries:
                skipped.append(f"{folder}: more than {max_entries} entries below {directory}; the rest is not watched")
                return Walk(tuple(out), tuple(skipped))
            try:
                st = path.stat()  # follows symlinks
            except OSError:
                continue  # dangling symlink, or gone meanwhile
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    skipped.append(f"{path}: symlink loop (a directory already watched), skipped")
                elif depth + 1 > max_depth:
                    skipped.append(f"{path}: deeper than {max_depth} levels below {directory}, not watched")
                else:
                    seen.add((st.st_dev, st.st_ino))
                    subdirs.append(path)
            else:
                out.append((os.path.realpath(path), st.st_mtime_ns, st.st_size))
        stack.extend((d, depth + 1) for d in reversed(subdirs))
    return Walk(tuple(sorted(out)), tuple(skipped))


def support_fingerprint(directory: Path) -> Fingerprint:
    """The stats of `walk_support`: what changes when a profile changes."""
    return walk_support(directory).stats


def _snapshot(directory: Path) -> tuple[Walk, dict[Path, Fingerprint]]:
    stats: dict[Path, Fingerprint] = {}
    for path in plan_files(directory):
        try:
            stats[path] = _stat(path)
        except OSError:
            continue
    return walk_support(directory), stats


def provenance_errors(loaded: LoadedPlan, trusted_namespace: Optional[str]) -> list[FieldError]:
    """A collected file's plan must be of its ConfigMap's namespace, unless that is the
    trusted namespace; other files are not checked."""
    source = naming.collected_namespace(loaded.path.name)
    namespace = loaded.plan.namespace
    if source is None or source == namespace or source == trusted_namespace:
        return []
    trusted = f"'{trusted_namespace}'" if trusted_namespace else "none (--trusted-namespace)"
    return [FieldError(
        str(loaded.path), "metadata.namespace",
        f"is '{namespace}', but the file comes from a ConfigMap in namespace '{source}': a ConfigMap "
        f"defines plans of its own namespace only (of any namespace in the trusted namespace: {trusted})",
    )]


def _prepare(path: Path, profile_roots: Optional[tuple[Path, ...]], trusted_namespace: Optional[str] = None) -> LoadedPlan:
    """Parse a plan, check its provenance and build its profile's model (cached by
    content), in a worker thread."""
    loaded = load_plan(path, profile_roots=profile_roots)
    refused = provenance_errors(loaded, trusted_namespace)
    if refused:
        raise PlanError(refused)
    loaded.model  # noqa: B018 - built here, off the event loop; PlanLoop reads the cached one
    return loaded


@dataclass(frozen=True)
class LoadFailure:
    file: str
    message: str


class PlanRegistry(Changes):
    """The live set of plans and their decision loops."""

    def __init__(
        self,
        directory: Path,
        make_plan_loop: Callable[[LoadedPlan], PlanLoop],
        *,
        metrics: Optional[ServiceMetrics] = None,
        run_loops: bool = True,
        profile_roots: Optional[tuple[Path, ...]] = None,
        trusted_namespace: Optional[str] = None,
    ) -> None:
        super().__init__()  # Changes: `notify` on a new plan version or a new decision
        self.directory = Path(directory)
        # where spec.profile may point: None = anywhere; else these and the plans directory
        self.profile_roots = None if profile_roots is None else (self.directory, *profile_roots)
        # collected files of this namespace may define plans of any namespace (provenance_errors)
        self.trusted_namespace = trusted_namespace
        self.make_plan_loop = make_plan_loop
        self.metrics = metrics
        self.run_loops = run_loops
        self.by_file: dict[Path, PlanLoop] = {}         # last good version per file
        self.index: dict[tuple[str, str], PlanLoop] = {}  # (namespace, name) -> its PlanLoop
        self.failures: dict[Path, LoadFailure] = {}
        self._plan_fp: dict[Path, Fingerprint] = {}
        self._support_fp: Optional[tuple[tuple[str, int, int], ...]] = None  # stats of the walk
        self._duplicates: dict[Path, tuple[str, str]] = {}  # file -> the key another file owns
        self._skipped: set[str] = set()  # subtrees of the last walk that were skipped (logged once)
        self._leaving: set[Path] = set()  # files removed in the scan under way
        self.loaded = False

    # -- lookups (what the servicer calls; never blocks) --------------------------------
    def lookup(self, ref: PoolRef) -> PlanLoop:
        plan_loop = self.index.get((ref.namespace, ref.plan))
        if plan_loop is None:
            raise not_found(ref)
        check_pool(ref, plan_loop.plan.spec.mode, tuple(plan_loop.plan.pool_names))
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
        walk, stats = await asyncio.to_thread(_snapshot, self.directory)
        self._report_skipped(walk.skipped)
        support = walk.stats
        # Which files below the directory changed (realpaths): only the plans whose
        # profile directory holds one are reloaded, not every plan.
        touched = {entry[0] for entry in set(support).symmetric_difference(self._support_fp or ())}
        self._support_fp = support
        changed = False
        for path, fp in stats.items():
            profile_changed = bool(touched) and self._uses(path, touched)
            if not profile_changed and self._plan_fp.get(path) == fp:
                continue
            self._plan_fp[path] = fp
            changed |= await self._load(path, profile_changed)
        removed = [p for p in self._plan_fp if p not in stats]  # a dict: 1,000 plans, not 1,000,000 comparisons
        # A file that lost a duplicate-name race gets the plan once its rival goes
        # ("create new, delete old" renames a plan file): it takes over before the rival
        # is retired, adopting its decision, so the plan is never missing meanwhile.
        self._leaving = set(removed)
        try:
            for path, key in sorted(self._duplicates.items()):
                owner = self.index.get(key)
                if path in stats and owner is not None and owner.loaded.path in self._leaving:
                    changed |= await self._load(path)
        finally:
            self._leaving = set()
        for path in removed:
            del self._plan_fp[path]
            changed |= await self._remove(path)
        # ... or once its rival now defines another plan.
        for path, key in sorted(self._duplicates.items()):
            if key not in self.index and path in stats:
                changed |= await self._load(path)
        self.loaded = True
        if self.metrics is not None:
            self.metrics.plans.set(len(self.index))
        if changed:
            self.notify()
        return changed

    def _uses(self, path: Path, touched: set[str]) -> bool:
        """Whether the plan of `path` reads one of the `touched` files (its profile
        directory's); a file that failed to load is retried on any change (the fix may be
        in its profile)."""
        if path in self.failures:
            return True
        plan_loop = self.by_file.get(path)
        profile = plan_loop.plan.spec.profile if plan_loop is not None else None
        if profile is None:
            return False
        directory = os.path.realpath(path.parent / profile)
        return any(t == directory or t.startswith(directory + os.sep) for t in touched)

    def _report_skipped(self, skipped: tuple[str, ...]) -> None:
        """Log each skipped subtree once (not every --reload-seconds); again if it comes back."""
        for line in skipped:
            if line not in self._skipped:
                log_event(log, "plans_dir_skipped", logging.WARNING, directory=str(self.directory), reason=line)
        self._skipped = set(skipped)

    async def _load(self, path: Path, profile_changed: bool = False) -> bool:
        self._duplicates.pop(path, None)
        try:
            loaded = await asyncio.to_thread(_prepare, path, self.profile_roots, self.trusted_namespace)
        except PlanError as exc:
            self._record_failure(path, str(exc), exc.errors)
            return False
        except Exception as exc:  # noqa: BLE001 - an unexpected loader bug must not stop the scaler
            self._record_failure(path, f"{path}: cannot load: {exc!r}")
            return False
        key = (loaded.plan.namespace, loaded.plan.name)
        owner = self.index.get(key)
        leaving = owner if owner is not None and owner.loaded.path in self._leaving else None
        if owner is not None and owner.loaded.path != path and leaving is None:
            self._duplicates[path] = key
            self._record_failure(path, f"{path}: plan {key[0]}/{key[1]} is already defined by {owner.loaded.path}")
            return False
        previous = self.by_file.get(path)
        # Unchanged plan and profiles: keep the running loop (and its state).
        if previous is not None and not profile_changed and previous.loaded.plan == loaded.plan:
            self._clear_failure(path)
            return False
        # The loop (its reader, its model) is built off the event loop too.
        try:
            plan_loop = await asyncio.to_thread(self.make_plan_loop, loaded)
        except PlanError as exc:  # its Prometheus URL or credentials are not allowed here
            self._record_failure(path, str(exc), exc.errors)
            return False
        except Exception as exc:  # noqa: BLE001 - as above: report it, keep the last good version
            self._record_failure(path, f"{path}: cannot start its decision loop: {exc!r}")
            return False
        if previous is not None or leaving is not None:
            plan_loop.adopt((previous or leaving).latest)  # type: ignore[union-attr]
        # Swap first, then retire: an RPC in between sees the old or the new version,
        # never no plan (a hot reload is not a NOT_FOUND).
        self.by_file[path] = plan_loop
        self.index[key] = plan_loop
        if previous is not None:
            await self._retire(previous, keep_series=previous.key == plan_loop.key
                               and set(previous.plan.pool_names) == set(plan_loop.plan.pool_names))
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
        self._duplicates.pop(path, None)
        self._clear_failure(path, gone=True)
        previous = self.by_file.pop(path, None)
        if previous is None:
            return False
        successor = self.index.get((previous.plan.namespace, previous.plan.name))
        # A duplicate took the plan over (same key): its series are the plan's series now.
        keep = successor is not None and successor is not previous and \
            set(successor.plan.pool_names) == set(previous.plan.pool_names)
        await self._retire(previous, keep_series=keep)
        log_event(log, "plan_removed", file=str(path), plan=previous.key)
        return True

    async def _retire(self, plan_loop: PlanLoop, keep_series: bool = False) -> None:
        """Stop a loop that no longer serves; drop its plan's series unless its successor
        (same key, same pools) goes on exporting them."""
        key = (plan_loop.plan.namespace, plan_loop.plan.name)
        if self.index.get(key) is plan_loop:
            del self.index[key]
        await plan_loop.stop()
        # After the stop, so a tick finishing meanwhile cannot write a series back.
        if not keep_series and self.metrics is not None:
            self.metrics.forget_plan(key[0], key[1])

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

    def _clear_failure(self, path: Path, gone: bool = False) -> None:
        """A valid file's failing gauge goes to 0; a removed file's series go altogether."""
        failed = self.failures.pop(path, None) is not None
        if self.metrics is None:
            return
        if gone:
            self.metrics.forget_file(str(path))
        elif failed:
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
