"""The dependency rules of docs/architecture.md, on every import of scaler/ (also those inside
functions), and the module map there naming every module."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

SCALER = REPO / "scaler"
CORE_MAY_IMPORT = ("scaler.core", "scaler.errors", "scaler.naming")
CORE_NEVER = ("os", "time", "asyncio", "logging", "grpc", "requests", "subprocess", "socket", "threading")
CORE_ALLOWED = {("scaler.core.predictors", "threading")}  # a lock around statsmodels fits; no threads


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(SCALER.rglob("*.py"))}


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _imports(module: str) -> list[tuple[str, int]]:
    """(dotted name, line) of every import; `from a import b` names a and a.b."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found += [(base, node.lineno)] + [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return found


def _broken_rule(module: str, name: str) -> str | None:
    if _within(module, "scaler.core") and (module, name.split(".")[0]) not in CORE_ALLOWED:
        if _within(name, *CORE_NEVER) or (_within(name, "scaler") and name != "scaler" and not _within(name, *CORE_MAY_IMPORT)):
            return "the core is pure"
    if _within(name, "scaler.devtools") and not _within(module, "scaler.devtools"):
        return "devtools are not shipped"
    if _within(name, "scaler.service") and not _within(module, "scaler.service", "scaler.explain"):
        return "nothing but explain imports the service"
    if _within(name, "scaler.cli") and module != "scaler.cli":
        return "scaler.cli is the entry point"
    if _within(module, "scaler.render") and _within(name, "scaler.prom", "scaler.sim"):
        return "render reads no metrics and runs no simulation"
    if _within(module, "scaler.sim") and _within(name, "scaler.prom"):
        return "the simulator reads no Prometheus"
    return None


def test_every_module_keeps_the_dependency_rules() -> None:
    broken = {
        f"{MODULES[m].relative_to(REPO)}:{line}: {rule}": name
        for m in MODULES
        for name, line in reversed(_imports(m))  # `from a import b`: report a, the module
        if (rule := _broken_rule(m, name))
    }
    assert broken == {}


def test_no_import_cycle_in_scaler() -> None:
    graph: dict[str, set[str]] = {}
    for m in MODULES:
        deps = graph.setdefault(m, set())
        for name, _ in _imports(m):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            # a module's own packages are initialised before it: not an edge
            if name and not _within(m, name):
                deps.add(name)
    done: set[str] = set()

    def visit(m: str, stack: tuple[str, ...]) -> None:
        assert m not in stack, "import cycle: " + " -> ".join((*stack[stack.index(m):], m))
        if m not in done:
            for dep in sorted(graph[m]):
                visit(dep, (*stack, m))
            done.add(m)

    for m in graph:
        visit(m, ())


def test_the_module_map_names_every_module() -> None:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = [p.relative_to(SCALER).as_posix() for p in MODULES.values()]
    missing = [m for m in modules if not m.endswith("__init__.py") and "_pb2" not in m and f"`{m}`" not in text]
    assert missing == [], "add a line to docs/architecture.md's module map"
