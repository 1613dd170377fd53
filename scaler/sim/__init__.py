"""`dynplan simulate`: replay a request trace against simulated prefill/decode pools, with the
real planning core in the loop, and compare scaling policies on SLA attainment and GPU cost.

engine (the discrete-event model), policies (controllers), oracle (cost lower bound),
workload (trace -> requests, replication), run (several policies on one workload),
report (numbers and the table), plot (the PNG), cli (the command).
"""
