"""Benchmark: where k6's requests/s go when scenariokit drives it (an ablation).

    python benchmarks/bench_k6_ablation.py [--seconds 6] [--users 32] [--repeats 3]

Against the same fast loopback endpoint as bench_collection.py (nginx on 127.0.0.1 when installed), closed
model, `--users` VUs, no think time, one GET per iteration; each variant's rate is k6's own `http_reqs`
rate from `--summary-export`:

- stock: a minimal script (`http.get`), stock settings;
- stock, scenariokit's settings: the same with the engine settings the driver uses (GOGC and GOMEMLIMIT,
  `--no-thresholds`, trimmed system tags): the like-for-like baseline;
- scenariokit, no records: the compiled script run with the driver's settings but without
  SCENARIOKIT_RECORDS (no records, no points: what the runtime's own work costs);
- scenariokit: the compiled script exactly as the driver launches it (records through console.log).

Variants alternate within each repeat; the median of the repeats is printed with its ratio to stock and to
the like-for-like baseline. Only 127.0.0.1 is ever sent to, and every run is bounded by `--seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_collection import PATH, SCENARIO, STOCK_K6, endpoint

from scenariokit.compiler import compile_scenario, load_scenario
from scenariokit.drivers import K6_SYSTEM_TAGS, K6Driver, k6_binary, k6_gc_env


def k6_rate(argv: list[str], env: dict[str, str], cwd: Path, seconds: int) -> float:
    summary = cwd / "bench-summary.json"
    summary.unlink(missing_ok=True)
    argv = [*argv, "--quiet", "--no-color", "--no-usage-report", "--summary-export", str(summary)]
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=seconds + 60, check=False)
    return float(json.loads(summary.read_text())["metrics"]["http_reqs"]["rate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-k6-ablation-") as name, endpoint(Path(name)) as (url, _):
        work = Path(name)
        stock = work / "stock.js"
        stock.write_text(STOCK_K6.format(users=args.users, seconds=args.seconds, path=PATH))
        source = work / "scenario.yaml"
        source.write_text(SCENARIO.format(url=url, users=args.users, seconds=args.seconds, path=PATH))
        script = compile_scenario(load_scenario(source).scenario, "k6").write(work / "script")
        raw = work / "raw"
        raw.mkdir()
        launch = K6Driver().launch(script, url, raw, args.seconds + 30)
        plain = dict(os.environ, BENCH_BASE_URL=url, SCENARIOKIT_BASE_URL=url)
        tuned = plain | k6_gc_env()
        settings = ["--no-thresholds", "--system-tags", K6_SYSTEM_TAGS]
        runs = {
            "stock": ([k6_binary(), "run", str(stock)], plain),
            "stock, sk settings": ([k6_binary(), "run", str(stock), *settings], tuned),
            "sk, no records": ([k6_binary(), "run", str(script), *settings], tuned),
            "sk (as the driver)": (launch.argv, launch.env),
        }
        for _ in range(args.repeats):
            for label, (argv, env) in runs.items():
                (raw / "records-k6.jsonl").unlink(missing_ok=True)
                rate = k6_rate(argv, env, script.parent, args.seconds)
                rates.setdefault(label, []).append(rate)
                print(f"  {label:<20} {rate:10,.0f} req/s", file=sys.stderr, flush=True)
    stock_rate = statistics.median(rates["stock"])
    tuned_rate = statistics.median(rates["stock, sk settings"])
    print(f"\nk6, {args.users} VUs, median of {args.repeats}")
    print(f"{'variant':<20} {'req/s':>10}  vs stock  vs like-for-like")
    for label, values in rates.items():
        rate = statistics.median(values)
        print(f"{label:<20} {rate:10,.0f}  {rate / stock_rate:8.2f}  {rate / tuned_rate:15.2f}")


if __name__ == "__main__":
    main()
