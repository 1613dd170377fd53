"""`dynplan profile check DIR`: validate a profile (the loader's errors, exit 2) and print
its curves as the planner's interpolation reads them, with warnings; `--plot FILE.png`
draws them (the optional `plot` extra), `--json` prints the same as one document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import click

from scaler.clikit import handle_errors

MEASUREMENT = "measurement.json"
MAX_MEASUREMENT_BYTES = 1 << 20


def _method(directory: Path) -> Optional[str]:
    """How the profile was made, from its measurement.json (written by sweep or learn), if readable."""
    from scaler.bounded_input import read_regular_file
    from scaler.errors import InputBoundExceeded

    try:
        doc: Any = json.loads(read_regular_file(directory / MEASUREMENT, MAX_MEASUREMENT_BYTES).decode("utf-8"))
    except (OSError, InputBoundExceeded, ValueError, RecursionError):
        return None
    method = doc.get("method") if isinstance(doc, dict) else None
    if not isinstance(method, str):
        return None
    return "".join(ch if ch.isprintable() else "?" for ch in method[:200])


@click.command("check")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw the curves into this PNG file (needs dynplan[plot]).")
@click.option("--json", "as_json", is_flag=True, help="Print the tables and warnings as one JSON document.")
@handle_errors
def check(directory: str, plot_file: Optional[str], as_json: bool) -> None:
    """Validate a profile and print its curves as the planner will read them."""
    from scaler.profile_io import load_profile
    from scaler.profiling.check import check_profile, plot_png, table_lines

    profile = load_profile(directory)
    report = check_profile(profile)
    method = _method(Path(directory))
    if plot_file is not None:
        plot_png(profile, report, Path(plot_file), title=f"{directory}" + (f" ({method})" if method else ""))
    if as_json:
        doc = {"profile": directory, "method": method, **report.to_dict()}
        click.echo(json.dumps(doc, indent=1, allow_nan=False))
        return
    click.echo(f"profile {directory}" + (f": {method}" if method else ""))
    for line in table_lines(report):
        click.echo(line)
    for note in report.notes:
        click.echo(f"note: {note}")
    for w in report.warnings:
        click.echo(f"warning: {w}")
    if plot_file is not None:
        click.echo(f"wrote {plot_file}")
