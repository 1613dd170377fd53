"""Bounds on what a plan or profile may hold, shared by the plan model and the profile value.

Apart from both so that code reading plans (the serving process of `dynplan serve`) does not
load numpy for a number."""

from __future__ import annotations

# At most this many points per table (prefill, decode). Profiler sweeps have tens to a few
# hundred (the example decode table: 54); the bound keeps every profile that loads small
# enough to check, model and render quickly (docs/plan-spec.md, "Limits").
MAX_PROFILE_POINTS = 8192
