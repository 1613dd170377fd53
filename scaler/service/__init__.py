"""`dynplan serve`: the KEDA external scaler (gRPC) over Prometheus.

Modules, one job each: config (trigger metadata -> typed value), registry (plans from a
directory, hot reload), loop (one decision loop per plan), servicer (the gRPC handlers),
metrics (/metrics), server (grpc.aio server, health, TLS, shutdown), cli (the command).
"""
