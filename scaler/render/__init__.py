"""The generator: plans -> KEDA ScaledObjects, Prometheus recording rules (PrometheusRule and
plain rule file, with a promtool unit test), plan ConfigMaps and a kustomization.

Public entry points: `render_manifests` (the whole command), and the steps `load`,
`build_all`, `render`, `static_checks`, `promtool_checks` in `scaler.render.pipeline`.
"""

from scaler.render.pipeline import RenderedFile, Rendering, render_manifests

__all__ = ["Rendering", "RenderedFile", "render_manifests"]
