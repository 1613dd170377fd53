"""`render manifests` as three steps, like Sloth: validate (load plans) -> build (plain values)
-> render (templates), then check what was rendered and write it all or nothing.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, TextIO

import yaml

from scaler import naming
from scaler.errors import FieldError, RenderError
from scaler.planfile import LoadedPlan, load_plans
from scaler.render import checks, objects
from scaler.render.dashboard import build_dashboard
from scaler.render.objects import PlanObjects, build
from scaler.render.promtest import rule_test
from scaler.render.templating import render_template
from scaler.render.writer import KUSTOMIZATION, write_directory, write_stream

DEFAULT_SCALER_NAMESPACE = "keda"

ROLE_OBJECT = "object"
ROLE_RULES = "rules"
ROLE_RULES_TEST = "rules-test"
ROLE_KUSTOMIZATION = "kustomization"
ROLE_DASHBOARD = "dashboard"


@dataclass(frozen=True)
class RenderedFile:
    """One output file: relative name, text, role, and the plan file it came from."""

    name: str
    text: str
    role: str
    origin: str


@dataclass(frozen=True)
class Rendering:
    plans: tuple[PlanObjects, ...]
    files: tuple[RenderedFile, ...]

    def by_role(self, role: str) -> tuple[RenderedFile, ...]:
        return tuple(f for f in self.files if f.role == role)

    @property
    def texts(self) -> dict[str, str]:
        return {f.name: f.text for f in self.files}

    def stream_texts(self) -> list[str]:
        """The Kubernetes objects only (what `-o -` prints), in file-name order."""
        return [f.text for f in sorted(self.by_role(ROLE_OBJECT), key=lambda f: f.name)]


def load(paths: Sequence[str]) -> list[LoadedPlan]:
    """Step 1: load and validate every plan (PlanError lists all problems of all files)."""
    if not paths:
        raise RenderError([FieldError("-f", "", "give at least one plan file")])
    return load_plans(paths, runtime=False)  # rendering needs no predictor libraries


def _profile_field(lp: LoadedPlan) -> str:
    return "spec.profile" if lp.plan.spec.profile is not None else "spec.profileData" if lp.profile is not None else "metadata"


def preflight(loaded: Sequence[LoadedPlan]) -> list[FieldError]:
    """Limits that are known before anything is dumped or rendered: a profile whose arrays
    alone overflow the plan ConfigMap is refused here, in milliseconds (dumping a 12 MB
    profile to YAML and parsing it back took three minutes before it was refused)."""
    errors = []
    for lp in loaded:
        floor = objects.inlined_profile_bytes_floor(lp)
        if floor > checks.MAX_CONFIGMAP_BYTES:
            errors.append(
                FieldError(
                    str(lp.path), _profile_field(lp),
                    f"the profile inlined into ConfigMap {naming.plan_configmap_name(lp.plan.namespace, lp.plan.name)} is at least {floor} bytes; "
                    f"a ConfigMap holds at most {checks.MAX_CONFIGMAP_BYTES}: use a profile with fewer points",
                )
            )
    return errors


def collected_name_errors(
    loaded: Sequence[LoadedPlan], scaler_namespace: str, placement: objects.ConfigMapPlacement = "scaler"
) -> list[FieldError]:
    """The plan collector names a file `namespace_<ConfigMap namespace>.configmap_<ConfigMap
    name>.<key>` (naming.collected_file_name); past 255 bytes it cannot write it and the plan
    would silently never load. The ConfigMap name and key each hold the plan's namespace and
    name, so long ones (and a ConfigMap in the plan's namespace) can overflow."""
    errors = []
    for lp in loaded:
        plan = lp.plan
        cm_namespace = objects.configmap_namespace(plan, scaler_namespace, placement)
        file_name = naming.collected_file_name(
            cm_namespace, naming.plan_configmap_name(plan.namespace, plan.name), naming.plan_file_name(plan.namespace, plan.name)
        )
        size = len(file_name.encode())
        excess = size - naming.MAX_FILE_NAME_BYTES
        if excess <= 0:
            continue
        # metadata.name: shortening it always suffices (a namespace is at most 63 characters)
        errors.append(FieldError(
            str(lp.path), "metadata.name",
            f"the plan collector's file for it (namespace_{cm_namespace}.configmap_<ConfigMap>.<key>) would be "
            f"{size} bytes, over the {naming.MAX_FILE_NAME_BYTES} of a file name: the collector could not write it "
            f"and the plan would never load; shorten metadata.name ({len(plan.name)} characters, each counted twice) "
            f"or metadata.namespace ({len(plan.namespace)}, each counted {3 if cm_namespace == plan.namespace else 2} "
            f"times) by {excess} in all",
        ))
    return errors


def build_all(
    loaded: Sequence[LoadedPlan], scaler_namespace: str, placement: objects.ConfigMapPlacement = "scaler"
) -> tuple[PlanObjects, ...]:
    """Step 2: plain values for every plan, in plan-name order (independent of -f order);
    `preflight` first, so that nothing large is built for a plan that cannot be rendered."""
    problems = preflight(loaded) + collected_name_errors(loaded, scaler_namespace, placement)
    if problems:
        raise RenderError(problems)
    return tuple(build(lp, scaler_namespace, placement) for lp in sorted(loaded, key=lambda lp: (lp.plan.name, lp.plan.namespace, str(lp.path))))


def render(plans: Sequence[PlanObjects]) -> Rendering:
    """Step 3: every output file's text."""
    files: list[RenderedFile] = []
    for po in plans:
        origin = str(po.loaded.path)
        plan_file = po.loaded.path.name
        plan = po.plan.name
        namespace = po.plan.namespace
        for so in po.scaled_objects:
            files.append(RenderedFile(naming.scaled_object_file(so.plan, so.pool), render_template("scaledobject.yaml.j2", so=so, plan_file=plan_file), ROLE_OBJECT, origin))
        rule = po.prometheus_rule
        rules_file = naming.rules_file(namespace, plan)
        files.append(
            RenderedFile(
                naming.prometheus_rule_file(plan),
                render_template("prometheusrule.yaml.j2", rule=rule, plan=plan, rules_file=rules_file, plan_file=plan_file),
                ROLE_OBJECT,
                origin,
            )
        )
        files.append(RenderedFile(rules_file, render_template("rules.yaml.j2", groups=rule.groups, plan=plan, plan_file=plan_file), ROLE_RULES, origin))
        test = rule_test(po.plan, rule.groups, rules_file)
        files.append(RenderedFile(naming.rules_test_file(namespace, plan), render_template("rules-test.yaml.j2", test=test, plan_file=plan_file), ROLE_RULES_TEST, origin))
        cm = po.configmap
        files.append(RenderedFile(naming.configmap_file(namespace, plan), render_template("configmap.yaml.j2", cm=cm, plan=plan, plan_file=plan_file), ROLE_OBJECT, origin))
        # the Grafana dashboard: its JSON (to import by hand) and the sidecar's ConfigMap
        dash = build_dashboard(po.plan, rule.groups, cm.namespace)
        files.append(RenderedFile(naming.dashboard_file(namespace, plan), dash.json, ROLE_DASHBOARD, origin))
        files.append(RenderedFile(
            naming.dashboard_configmap_file(namespace, plan),
            render_template("dashboard-configmap.yaml.j2", dash=dash, plan=plan, plan_file=plan_file),
            ROLE_OBJECT,
            origin,
        ))
    resources = sorted(f.name for f in files if f.role == ROLE_OBJECT)
    extra = sorted(f.name for f in files if f.role != ROLE_OBJECT)
    plan_files = sorted({po.loaded.path.name for po in plans})
    files.append(
        RenderedFile(
            KUSTOMIZATION,
            render_template("kustomization.yaml.j2", resources=resources, extra=extra, plan_files=plan_files),
            ROLE_KUSTOMIZATION,
            ", ".join(str(po.loaded.path) for po in plans),
        )
    )
    names = [f.name for f in files]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise RenderError(
            [
                FieldError(f.origin, "metadata.name", f"another plan renders the same file {n!r}: plans rendered together need distinct names "
                           "(render same-named plans of different namespaces separately)")
                for n in clashes
                for f in files
                if f.name == n
            ]
        )
    return Rendering(tuple(plans), tuple(sorted(files, key=lambda f: f.name)))


def oversized_configmaps(rendering: Rendering) -> tuple[set[str], list[FieldError]]:
    """Plan ConfigMaps over the API server's 1 MiB, by file name, each blamed on the plan
    field that made it large: found from the values, before their text is parsed back."""
    files, errors = set(), []
    for po in rendering.plans:
        cm = po.configmap
        size = checks.configmap_data_bytes({cm.key: cm.content.rstrip("\n") + "\n"})  # a `|` block keeps one "\n"
        if size > checks.MAX_CONFIGMAP_BYTES:
            name = naming.configmap_file(po.plan.namespace, po.plan.name)
            files.add(name)
            profile = objects.inlined_profile_bytes_floor(po.loaded)
            errors.append(
                FieldError(
                    str(po.loaded.path), _profile_field(po.loaded) if profile * 2 > size else "metadata",
                    f"the plan inlined into {name} (ConfigMap {cm.name}) is {size} bytes, its profile at least {profile}; "
                    f"a ConfigMap holds at most {checks.MAX_CONFIGMAP_BYTES}",
                )
            )
    return files, errors


def parsed_objects(rendering: Rendering, skip: frozenset[str] = frozenset()) -> tuple[list[checks.RenderedObject], list[FieldError]]:
    """Parse every rendered Kubernetes object back from its text (what is checked is what is
    written), except the files in `skip` (already refused, and too large to parse cheaply)."""
    items, errors = [], []
    for f in rendering.by_role(ROLE_OBJECT):
        if f.name in skip:
            continue
        try:
            docs = checks.parse_documents(f.text)
        except yaml.YAMLError as exc:  # a template bug: report it like any other check failure
            errors.append(FieldError(f.origin, f.name, f"rendered YAML does not parse: {exc}"))
            continue
        items += [checks.RenderedObject(f.name, f.origin, d) for d in docs]
    return items, errors


def static_checks(rendering: Rendering) -> list[FieldError]:
    """In-process checks, always run: CRD schemas, admission rules, ConfigMap plan round trip."""
    oversized, errors = oversized_configmaps(rendering)
    items, parse_errors = parsed_objects(rendering, frozenset(oversized))
    errors += parse_errors
    for item in items:
        errors += checks.schema_errors(item)
    errors += checks.admission_errors(items)
    by_name = {(i.kind, i.namespace, i.name): i for i in items}
    for po in rendering.plans:
        cm = po.configmap
        cm_item = by_name.get(("ConfigMap", cm.namespace, cm.name))
        if cm_item is not None and cm_item.origin == str(po.loaded.path):
            fp = po.loaded.profile.fingerprint if po.loaded.profile is not None else None
            errors += checks.configmap_plan_errors(cm_item, cm.key, po.plan, fp)
    return errors


# Called once per promtool run as (done, total, file name), after the run.
Progress = Callable[[int, int, str], None]


def promtool_checks(rendering: Rendering, directory: Path, progress: Optional[Progress] = None) -> list[FieldError]:
    """`promtool check rules` and `promtool test rules` on the files written in `directory`:
    every rule file is checked before any test runs (a test of a broken file says less)."""
    try:
        checks.promtool_path()
    except FileNotFoundError as exc:
        return [FieldError("--check", "", str(exc))]
    origin = {f.name: f.origin for f in rendering.files}
    rules = [f.name for f in rendering.by_role(ROLE_RULES)]
    tests = [f.name for f in rendering.by_role(ROLE_RULES_TEST)]
    total = len(rules) + len(tests)
    errors: list[FieldError] = []
    for done, name in enumerate(rules, 1):
        errors += checks.promtool_check_rules(directory, [name], origin)
        if progress is not None:
            progress(done, total, name)
    if errors:
        return errors
    for done, name in enumerate(tests, len(rules) + 1):
        errors += checks.promtool_test_rules(directory, [name], origin)
        if progress is not None:
            progress(done, total, name)
    return errors


def render_manifests(
    paths: Sequence[str],
    output: str,
    scaler_namespace: str = DEFAULT_SCALER_NAMESPACE,
    check: bool = False,
    stdout: Optional[TextIO] = None,
    configmap_namespace: objects.ConfigMapPlacement = "scaler",
    progress: Optional[Progress] = None,
) -> Rendering:
    """Load, build, render, check; then write DIR atomically or print the stream for `-`.
    `progress` hears of each promtool run (--check)."""
    rendering = render(build_all(load(paths), scaler_namespace, configmap_namespace))
    problems = static_checks(rendering)
    if problems:
        raise RenderError(problems)

    def verify(directory: Path) -> list[FieldError]:
        return promtool_checks(rendering, directory, progress) if check else []

    if output == "-":
        if check:
            with tempfile.TemporaryDirectory(prefix="dynplan-render-") as tmp:
                for name, text in rendering.texts.items():
                    (Path(tmp) / name).write_text(text, encoding="utf-8")
                problems = verify(Path(tmp))
            if problems:
                raise RenderError(problems)
        write_stream(rendering.stream_texts(), stdout or sys.stdout)
    else:
        write_directory(rendering.texts, Path(output), verify)
    return rendering
