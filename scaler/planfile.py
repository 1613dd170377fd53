"""Reading plan files (edge): YAML -> validated Plan + Profile, every error with file and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

import yaml
from pydantic import ValidationError

from scaler.bounded_input import load_yaml_documents, read_regular_file, short_repr
from scaler.core.plan import Plan, semantic_errors
from scaler.core.profile import MAX_PROFILE_POINTS, Profile, profile_from_raw, profile_problems
from scaler.errors import FieldError, InputBoundExceeded, PlanError, ProfileError
from scaler.sources import source_errors, source_warnings

if TYPE_CHECKING:  # numpy/scipy load only when a model is first asked for
    from scaler.core.interpolation import PerfModel


# Bounds on a plan file, checked before the work they protect (docs/plan-spec.md, "Limits").
MAX_PLAN_BYTES = 1 << 20  # a ConfigMap holds at most 1 MiB, so no deployed plan is larger
MAX_PLAN_DEPTH = 32  # the deepest plan field (an inline profile array) is 5 levels down
MAX_PLAN_NODES = 7 * MAX_PROFILE_POINTS + 10_000  # a full inline profile and the rest of the plan
MAX_REPORTED_ERRORS = 20  # per file; the rest are counted, so stderr and logs stay short
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class LoadedPlan:
    """A valid plan, where it came from, its profile (if any) and non-fatal warnings."""

    path: Path
    plan: Plan
    profile: Optional[Profile]
    warnings: tuple[FieldError, ...] = ()

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def model(self) -> Optional[PerfModel]:  # built once per profile and cached
        if self.profile is None:
            return None
        from scaler.core.interpolation import perf_model

        return perf_model(self.profile)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _loc_to_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:  # a key is user input too: an unknown 1 MB key must not make a 1 MB message
            out += ("." if out else "") + _clip(str(part), 100)
    return out


def _capped(file: str, errors: list[FieldError]) -> list[FieldError]:
    """At most MAX_REPORTED_ERRORS errors, then one line counting the rest."""
    if len(errors) <= MAX_REPORTED_ERRORS:
        return errors
    rest = len(errors) - MAX_REPORTED_ERRORS
    return errors[:MAX_REPORTED_ERRORS] + [FieldError(file, "", f"... and {rest} more errors")]


def _pydantic_errors(file: str, exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        path = _loc_to_path(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {short_repr(err.get('input'))})"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our validator's own words, without pydantic's prefix
        errors.append(FieldError(file, path, _clip(msg, MAX_MESSAGE_CHARS)))
    return _capped(file, errors)


def parse_plan_document(
    doc: Any,
    file: str,
    base_dir: Optional[Path] = None,
    *,
    runtime: bool = True,
    profile_roots: Optional[Sequence[Path]] = None,
) -> LoadedPlan:
    """Validate one already-parsed YAML document. Raises PlanError with every problem.

    `runtime=False` skips checks that only matter where the plan runs (optional predictor
    libraries installed): rendering manifests on a laptop must not need prophet.
    `profile_roots`: when given, `spec.profile` must resolve (symlinks followed) inside one
    of them; `dynplan serve` passes its plans directory and `--profile-root`s, so a plan
    cannot make the scaler read other directories.
    """
    if not isinstance(doc, dict):
        raise PlanError([FieldError(file, "", "a plan must be a YAML mapping (apiVersion, kind, metadata, spec)")])
    try:
        plan = Plan.model_validate(doc)
    except ValidationError as exc:
        raise PlanError(_pydantic_errors(file, exc)) from None
    # Cross-field messages may quote values (a selector, a label): clipped like pydantic's.
    errors = [
        FieldError(file, _clip(path, 300), _clip(msg, MAX_MESSAGE_CHARS))
        for path, msg in semantic_errors(plan) + source_errors(plan)
    ]
    if runtime:
        errors += _predictor_errors(file, plan)
    profile: Optional[Profile] = None
    spec = plan.spec
    if spec.profile is not None:
        directory = Path(spec.profile)
        if not directory.is_absolute():
            directory = (base_dir or Path(file).resolve().parent) / directory
        from scaler.profile_io import load_profile

        outside = profile_roots is not None and not _inside_any(directory, profile_roots)
        if outside:
            roots = ", ".join(str(r) for r in profile_roots or ())
            errors.append(FieldError(file, "spec.profile", f"{_clip(str(spec.profile), 200)} lies outside the "
                                     f"directories this scaler reads profiles from ({_clip(roots, 300)}; "
                                     "serve --profile-root adds one)"))
        else:
            try:
                profile = load_profile(directory, plan_file=file)
            except ProfileError as exc:
                errors += exc.errors
    elif spec.profile_data is not None:
        prefill, decode = spec.profile_data.prefill.arrays(), spec.profile_data.decode.arrays()
        problems = profile_problems(prefill, decode)
        errors += [FieldError(file, f"spec.profileData.{path}", msg) for path, msg in problems]
        if not problems:
            profile = profile_from_raw(prefill, decode, source=f"{file}#spec.profileData")
    if errors:
        raise PlanError(_capped(file, errors))
    warnings = tuple(coverage_warnings(file, plan, profile)) if profile is not None else ()
    warnings += tuple(sizing_warnings(file, plan))
    warnings += tuple(FieldError(file, path, msg, "warning") for path, msg in source_warnings(plan))
    return LoadedPlan(path=Path(file), plan=plan, profile=profile, warnings=warnings)


def _inside_any(directory: Path, roots: Sequence[Path]) -> bool:
    target = directory.resolve()
    return any(target == r.resolve() or r.resolve() in target.parents for r in roots)


def _predictor_errors(file: str, plan: Plan) -> list[FieldError]:
    if not plan.spec.scaling.throughput.enabled:
        return []
    from scaler.core.predictors import predictor_missing_dependency

    kind = plan.spec.scaling.throughput.predictor.type
    hint = predictor_missing_dependency(kind)
    if hint:
        return [FieldError(file, "spec.scaling.throughput.predictor.type", f"predictor {kind!r} is not installed: {hint}")]
    return []


def sizing_warnings(file: str, plan: Plan) -> list[FieldError]:
    """Settings the chosen sizing does not use: said, not silently ignored."""
    tp = plan.spec.scaling.throughput
    if tp.sizing == "attainment" and tp.queueing.enabled:
        return [
            FieldError(file, "spec.scaling.throughput.queueing.enabled", "applies to sizing: dynamo only; the "
                       "attainment sizing models queueing itself (set sizing: dynamo, or remove queueing)", "warning")
        ]
    return []


def coverage_warnings(file: str, plan: Plan, profile: Profile) -> list[FieldError]:
    """Warn when the workload priors lie outside what was profiled (values get clamped)."""
    out: list[FieldError] = []
    lo, hi = profile.isl_range
    isl, osl = plan.spec.workload.isl, plan.spec.workload.osl
    if not lo <= isl <= hi:
        out.append(
            FieldError(file, "spec.workload.isl", f"{isl:g} lies outside the profiled ISL range [{lo:g}, {hi:g}]; "
                       "prefill numbers are clamped to the nearest profiled ISL", "warning")
        )
    clo, chi = profile.context_range
    ctx = isl + osl / 2
    if not clo <= ctx <= chi:
        out.append(
            FieldError(file, "spec.workload", f"decode context ISL+OSL/2 = {ctx:g} lies outside the profiled "
                       f"context range [{clo:g}, {chi:g}]; decode numbers come from the nearest profiled points", "warning")
        )
    return out


def parse_plan_text(
    text: str,
    file: str,
    base_dir: Optional[Path] = None,
    *,
    runtime: bool = True,
    profile_roots: Optional[Sequence[Path]] = None,
) -> LoadedPlan:
    """Validate one plan's YAML text (one document) within the plan bounds; raises PlanError."""
    if len(text) > MAX_PLAN_BYTES:  # characters, at least as many bytes: a cheap first check
        raise PlanError([FieldError(file, "", f"is more than {MAX_PLAN_BYTES} bytes; a plan must fit a ConfigMap")])
    try:
        docs = [d for d in load_yaml_documents(text, max_depth=MAX_PLAN_DEPTH, max_nodes=MAX_PLAN_NODES) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanError([FieldError(file, "", _clip(f"invalid YAML{where}: {problem}", MAX_MESSAGE_CHARS))]) from None
    if len(docs) != 1:
        raise PlanError([FieldError(file, "", f"expected exactly one plan document, found {len(docs)}")])
    return parse_plan_document(docs[0], file, base_dir=base_dir, runtime=runtime, profile_roots=profile_roots)


def load_plan(
    path: str | Path, *, runtime: bool = True, profile_roots: Optional[Sequence[Path]] = None
) -> LoadedPlan:
    """Read and validate one plan file (one YAML document of at most MAX_PLAN_BYTES);
    `profile_roots` as in `parse_plan_document`."""
    p = Path(path)
    file = str(path)
    try:
        text = read_regular_file(p, MAX_PLAN_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise PlanError([FieldError(file, "", "no such file")]) from None
    except InputBoundExceeded as exc:
        raise PlanError([FieldError(file, "", str(exc))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError([FieldError(file, "", f"cannot read: {exc}")]) from None
    return parse_plan_text(text, file, base_dir=p.resolve().parent, runtime=runtime, profile_roots=profile_roots)


def load_plans(paths: Iterable[str | Path], *, runtime: bool = True) -> list[LoadedPlan]:
    """Load several plans; report the errors of all of them together."""
    loaded, errors = [], []
    for path in paths:
        try:
            loaded.append(load_plan(path, runtime=runtime))
        except PlanError as exc:
            errors += exc.errors
    if errors:
        raise PlanError(errors)
    return loaded
