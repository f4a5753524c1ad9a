"""Benchmark: where k6's requests/s go when scenariokit collects results (an ablation of the k6 runtime).

    python benchmarks/bench_k6_ablation.py [--seconds 6] [--users 32] [--repeats 2]

Against the same fast loopback endpoint as bench_collection.py (nginx on 127.0.0.1 when installed), closed
model, `--users` VUs, no think time, one GET per iteration, each variant's rate is k6's own `http_reqs`
rate from `--summary-export`:

- stock: a minimal script (`http.get`), no output;
- stock+json: the same with `--out json` and scenariokit's system tags (what raw collection costs k6);
- scenariokit: the compiled script with the runtime as shipped, `--out json` as the driver runs it;
- no-metadata: the runtime without the per-request `ttfb` point metadata (set and deleted);
- no-custom-metrics: the runtime without its per-request metric point (and so no metadata).

The last two record nothing usable; they show what each part of the runtime costs. Variants alternate
within each repeat; the median of the repeats is printed with its ratio to stock. Only 127.0.0.1 is ever
sent to, and every run is bounded by `--seconds`.
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
from scenariokit.drivers import K6_SYSTEM_TAGS, k6_binary

RUNTIME = Path(__file__).resolve().parent.parent / "backends" / "k6" / "scenariokit-runtime.js"
SET_TTFB = "    this.metadata.ttfb = res.timings.waiting;\n"
ADD_POINT = "    skLatency.add(res.timings.duration, tags);\n"
DELETE_TTFB = "    delete this.metadata.ttfb;\n"


def runtime_variants() -> dict[str, str]:
    shipped = RUNTIME.read_text()
    assert SET_TTFB + ADD_POINT + DELETE_TTFB in shipped, "the runtime's record() changed: update this"
    # the bench scenario has no thresholds, so sk_latency is the only per-request point
    return {
        "scenariokit": shipped,
        "no-metadata": shipped.replace(SET_TTFB, "").replace(DELETE_TTFB, ""),
        "no-custom-metrics": shipped.replace(SET_TTFB + ADD_POINT + DELETE_TTFB, ""),
    }


def k6_rate(argv: list[str], env: dict[str, str], cwd: Path, seconds: int) -> float:
    summary = cwd / "summary.json"
    summary.unlink(missing_ok=True)
    argv = [*argv, "--quiet", "--no-color", "--summary-export", str(summary)]
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=seconds + 60, check=False)
    return float(json.loads(summary.read_text())["metrics"]["http_reqs"]["rate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    variants = runtime_variants()
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-k6-ablation-") as name, endpoint(Path(name)) as (url, _):
        work = Path(name)
        (work / "stock.js").write_text(STOCK_K6.format(users=args.users, seconds=args.seconds, path=PATH))
        source = work / "scenario.yaml"
        source.write_text(SCENARIO.format(url=url, users=args.users, seconds=args.seconds, path=PATH))
        script = compile_scenario(load_scenario(source).scenario, "k6").write(work / "script")
        env = dict(os.environ, BENCH_BASE_URL=url, SCENARIOKIT_BASE_URL=url)
        json_out = ["--out", f"json={work / 'out.json'}", "--system-tags", K6_SYSTEM_TAGS]
        for _ in range(args.repeats):
            runs = {"stock": [str(work / "stock.js")], "stock+json": [str(work / "stock.js"), *json_out]}
            runs |= {label: [str(script), *json_out] for label in variants}
            for label, extra in runs.items():
                if label in variants:
                    (script.parent / "scenariokit-runtime.js").write_text(variants[label])
                rate = k6_rate([k6_binary(), "run", *extra], env, work, args.seconds)
                rates.setdefault(label, []).append(rate)
                print(f"  {label:<18} {rate:10,.0f} req/s", file=sys.stderr, flush=True)
    stock = statistics.median(rates["stock"])
    print(f"\n{'variant':<18} {'req/s':>10}  ratio   (k6, {args.users} VUs, median of {args.repeats})")
    for label, values in rates.items():
        rate = statistics.median(values)
        print(f"{label:<18} {rate:10,.0f}  {rate / stock:.2f}")


if __name__ == "__main__":
    main()
