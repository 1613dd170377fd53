"""`dynplan render ...` commands."""

from __future__ import annotations

import click

from scaler.clikit import handle_errors


@click.group()
def render() -> None:
    """Render Kubernetes manifests and Prometheus rules from plans."""


@render.command("manifests")
@click.option("-f", "--file", "plans", multiple=True, required=True, type=click.Path(dir_okay=False), help="Plan file (repeatable).")
@click.option("-o", "--output", required=True, help="Output directory (replaced as a whole), or - for one YAML stream of the Kubernetes objects on stdout.")
@click.option("--scaler-namespace", default="keda", show_default=True, help="Namespace of the plan ConfigMaps when a plan has no spec.scaler.namespace.")
@click.option("--check", is_flag=True, help="Also run `promtool check rules` and the generated `promtool test rules` before writing.")
@handle_errors
def manifests(plans: tuple[str, ...], output: str, scaler_namespace: str, check: bool) -> None:
    """ScaledObjects, PrometheusRules, rule files, plan ConfigMaps and a kustomization.

    Everything is checked (CRD schemas, KEDA admission rules, ConfigMap round trip) before
    anything is written; on any error the output directory is left as it was (exit 2).
    """
    from scaler.render.pipeline import ROLE_OBJECT, render_manifests

    rendering = render_manifests(list(plans), output, scaler_namespace=scaler_namespace, check=check)
    for po in rendering.plans:
        for w in po.loaded.warnings:
            click.echo(str(w), err=True)
    if output != "-":
        objects = len(rendering.by_role(ROLE_OBJECT))
        names = ", ".join(po.plan.name for po in rendering.plans)
        checked = " (promtool checked)" if check else ""
        click.echo(f"{output}: {len(rendering.files)} files, {objects} objects for plan(s) {names}{checked}", err=True)
