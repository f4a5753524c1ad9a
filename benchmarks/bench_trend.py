"""Soak trends (results/trend.py): how often a flat series is called rising, and what a checkpoint costs.

1. False alarms: fit_trend on flat AR(1) series (phi 0, 0.5, 0.8 at 40 buckets; 0.5 at 1,440, a day of
   one-minute buckets), 1,000 each: the share whose 95% lower bound is above 0 (nominal 5%).
2. Cost: `rebuild_summary` (what a checkpoint runs) of a run folder given as the first argument, if any.

    python benchmarks/bench_trend.py [RUN_DIR]
"""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

from scenariokit.results.trend import fit_trend


def flat_alarm_rate(n: int, phi: float, runs: int, rng: np.random.Generator) -> float:
    fires = 0
    t = np.arange(n) * 60.0
    for _ in range(runs):
        z = rng.normal(0, math.sqrt(1 - phi**2), n)
        e = np.empty(n)
        e[0] = rng.normal()
        for i in range(1, n):
            e[i] = phi * e[i - 1] + z[i]
        fit = fit_trend(t, 100 + e, 0.95)
        fires += fit is not None and fit.low > 0
    return fires / runs


def main() -> None:
    rng = np.random.default_rng(2)
    for n, phi in ((40, 0.0), (40, 0.5), (40, 0.8), (1440, 0.5)):
        print(f"flat AR(1) n={n:5d} phi={phi}: called rising in {flat_alarm_rate(n, phi, 1000, rng):.1%}")
    if len(sys.argv) > 1:
        from scenariokit.results.summary import rebuild_summary

        started = time.perf_counter()
        summary = rebuild_summary(Path(sys.argv[1]))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"rebuild_summary of {summary.overall.requests:,} records: "
            f"{time.perf_counter() - started:.1f} s, peak RSS {peak:.0f} MB"
        )


if __name__ == "__main__":
    main()
