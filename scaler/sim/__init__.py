"""`dynplan simulate`: replay a request trace against simulated prefill/decode pools, with the
real planning core in the loop, and compare scaling policies on SLA attainment and GPU cost.

engine (the discrete-event loop and routing), replicas (each pool's replicas, scaling and
actuation), workers (the simulated workers' state), window (what the throughput path observes),
actuation (the scaler -> KEDA -> HPA path of one pool: keda, hpa, hpa_config), controller (the
protocol a policy implements), policies (the controllers), oracle (cost lower bound), workload
(trace -> Arrivals, replication), results (what a run produced), run (several policies on one
workload), report (numbers and the table), plot (the PNG), cli (the command).
"""
