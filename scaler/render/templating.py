"""The jinja2 environment for rendered files: strict undefined, exact scalars.

Templates live in the repository's `templates/` directory and ship inside the wheel as
`scaler/templates` (pyproject force-include). Every scalar reaches a template already
formatted by the two filters here, so the output never depends on Python's float repr;
text that lands in a comment goes through a third (`comment`), so it stays one line.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from scaler import naming

_REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def template_dir() -> Path:
    """`scaler/templates` of an installed wheel, else the source checkout's `templates/`."""
    packaged = resources.files("scaler") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    if _REPO_TEMPLATES.is_dir():
        return _REPO_TEMPLATES
    raise FileNotFoundError(f"dynplan templates not found (looked in {packaged} and {_REPO_TEMPLATES})")


def quote(value: Any) -> str:
    """A YAML double-quoted scalar (JSON string syntax is a subset of YAML's)."""
    if not isinstance(value, str):
        raise TypeError(f"quote expects a string, got {type(value).__name__}")
    return json.dumps(value, ensure_ascii=False)


def number(value: Any) -> str:
    """An exact, stable decimal for an int or float: 15 -> "15", 0.05 -> "0.05", 1e-05 -> "0.00001".

    Floats go through their shortest round-trip repr, so values a user typed come out as typed.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"number expects an int or float, got {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"cannot render non-finite number {value!r}")
    if value.is_integer():
        return str(int(value))
    text = format(Decimal(repr(value)).normalize(), "f")
    return text


@lru_cache(maxsize=4)
def _environment(directory: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = quote
    env.filters["num"] = number
    # user text in a `#` comment (the plan file's name): one line, printable, whatever it is
    env.filters["comment"] = naming.comment_text
    return env


def render_template(name: str, **context: Any) -> str:
    """Render one template from the template directory with StrictUndefined."""
    return _environment(str(template_dir())).get_template(name).render(**context)
