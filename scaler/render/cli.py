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
@click.option("--plan-configmap-namespace", "configmap_namespace", type=click.Choice(["scaler", "plan"]), default="scaler",
              show_default=True, help="Where a plan's ConfigMap goes when the plan has no spec.scaler.planConfigMapNamespace: "
              "the scaler's namespace, or the plan's own (the scaler's collector must watch it: docs/generator.md).")
@click.option("--check", is_flag=True, help="Also run `promtool check rules` and the generated `promtool test rules` before writing "
              "(a progress bar on stderr when it is a terminal).")
@handle_errors
def manifests(plans: tuple[str, ...], output: str, scaler_namespace: str, configmap_namespace: str, check: bool) -> None:
    """ScaledObjects, PrometheusRules, rule files, plan ConfigMaps and a kustomization.

    Everything is checked (CRD schemas, KEDA admission rules, ConfigMap round trip) before
    anything is written; on any error the output directory is left as it was (exit 2).
    """
    from scaler.progress import tty_progress
    from scaler.render.objects import ConfigMapPlacement
    from scaler.render.pipeline import ROLE_OBJECT, render_manifests

    placement: ConfigMapPlacement = "plan" if configmap_namespace == "plan" else "scaler"  # the Choice, as a Literal
    with tty_progress("promtool") as progress:
        rendering = render_manifests(
            list(plans), output, scaler_namespace=scaler_namespace, check=check,
            configmap_namespace=placement, progress=progress,
        )
    for po in rendering.plans:
        for w in po.loaded.warnings:
            click.echo(str(w), err=True)
    if output != "-":
        objects = len(rendering.by_role(ROLE_OBJECT))
        names = ", ".join(po.plan.name for po in rendering.plans)
        checked = " (promtool checked)" if check else ""
        click.echo(f"{output}: {len(rendering.files)} files, {objects} objects for plan(s) {names}{checked}", err=True)
