"""Benchmark: how long compiling every example scenario takes, per engine.

    python benchmarks/bench_compile.py

Prints a table (best of N runs per scenario) and the ratio of compile time to the parse-only baseline
measured in the same process.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from scenariokit.compile.parse import parse_file
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 5


def best_of(fn: object, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    os.chdir(ROOT)
    # warm caches (grammar construction, imports, the built-in card renderer) once, as a CLI run would
    for path in sorted(Path("scenarios").glob("*.yaml")):
        compile_scenario(load_scenario(path).scenario, "locust")
    print(f"{'scenario':32} {'parse ms':>9} {'locust ms':>10} {'k6 ms':>8} {'ratio':>6}")
    totals = []
    for path in sorted(Path("scenarios").glob("*.yaml")):
        parse = best_of(lambda p=path: parse_file(p))
        locust = best_of(lambda p=path: compile_scenario(load_scenario(p).scenario, "locust"))
        k6 = best_of(lambda p=path: compile_scenario(load_scenario(p).scenario, "k6"))
        totals.append(max(locust, k6))
        print(f"{path.name:32} {parse * 1e3:9.1f} {locust * 1e3:10.1f} {k6 * 1e3:8.1f} {locust / parse:6.0f}")
    print(
        f"\nslowest full compile: {max(totals) * 1e3:.1f} ms; median {statistics.median(totals) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
