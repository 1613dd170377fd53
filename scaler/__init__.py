"""dynplan: SLA-driven autoscaling for LLM inference (KEDA external scaler + manifest generator)."""

__version__ = "0.1.0"
