"""`dynplan profile`: making profiles without Dynamo's profiler (sweep a live endpoint, learn
from a deployment's Prometheus history) and checking them. The module list is in
docs/architecture.md."""
