"""Benchmark: where k6's requests/s go when scenariokit drives it (an ablation).

    python benchmarks/bench_k6_ablation.py [--seconds 6] [--users 32] [--repeats 3]

Against the same fast loopback endpoint as bench_collection.py (nginx on 127.0.0.1; this benchmark needs
it, for its request counter), closed model, `--users` VUs, no think time, one GET per iteration:

- stock: a minimal script (`http.get`), stock settings;
- stock, sk settings: the same with the engine settings the driver uses for a closed model (GOGC and
  GOMEMLIMIT, `--no-thresholds`, `--no-summary`, no REST API, trimmed system tags): the like-for-like
  baseline;
- scenariokit, no records: the compiled script launched exactly as the driver launches it, but without
  SCENARIOKIT_RECORDS (no records, no points: what the runtime's own work costs);
- scenariokit: the compiled script exactly as the driver launches it (records through console.log).

Each variant's rate is what nginx served during the test (its stub_status counter, read before and after,
over `--seconds`), so every variant is counted the same way, with or without k6's own summary. Beside it,
k6's CPU per request (user + system over the served requests, start-up included), which moves less with
the machine's noise than the rate, since the rate also depends on how k6 and nginx share the cores.
Variants alternate within each repeat (their order rotates each repeat); the median of the repeats is
printed with its ratio to stock and to the like-for-like baseline. Only 127.0.0.1 is ever sent to, and every
run is bounded by `--seconds`.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench_collection import PATH, SCENARIO, STATUS_PATH, STOCK_K6, endpoint

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario, get_engine
from scenariokit.engines.base import LaunchPlan
from scenariokit.engines.k6.driver import k6_binary


def served(url: str) -> int:
    """Requests nginx has served so far (this read included)."""
    with urllib.request.urlopen(url + STATUS_PATH, timeout=5) as response:
        page = response.read().decode()
    match = re.search(r"^\s*\d+\s+\d+\s+(\d+)\s*$", page, re.MULTILINE)  # accepts handled requests
    if match is None:
        raise RuntimeError(f"no request count in nginx's status page: {page!r}")
    return int(match.group(1))


def trial(argv: list[str], env: dict[str, str], cwd: Path, url: str, seconds: int) -> tuple[float, float]:
    """(requests/s nginx served during the test, k6's CPU microseconds per request)."""
    before_cpu, before = resource.getrusage(resource.RUSAGE_CHILDREN), served(url)
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=seconds + 60, check=False)
    after, after_cpu = served(url), resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"k6 exited {result.returncode}: {result.stdout[-1000:]!r}")
    count = after - before - 1  # the first status read is counted in `after`
    cpu_s = after_cpu.ru_utime - before_cpu.ru_utime + after_cpu.ru_stime - before_cpu.ru_stime
    return count / seconds, cpu_s / max(1, count) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-k6-ablation-") as name,
        endpoint(Path(name)) as (url, kind),
    ):
        if not kind.startswith("nginx"):
            sys.exit("bench_k6_ablation.py counts the requests nginx served: install nginx")
        work = Path(name)
        stock = work / "stock.js"
        stock.write_text(STOCK_K6.format(users=args.users, seconds=args.seconds, path=PATH))
        source = work / "scenario.yaml"
        source.write_text(SCENARIO.format(url=url, users=args.users, seconds=args.seconds, path=PATH))
        script = compile_scenario(load_scenario(source).scenario, "k6").write(work / "script")
        raw = work / "raw"
        raw.mkdir()
        launch = get_engine("k6").launch(LaunchPlan(script, url, raw, args.seconds + 30, open_model=False))
        settings = launch.argv[launch.argv.index("--no-thresholds") :]  # the driver's flags after the script
        settings = [arg for i, arg in enumerate(settings) if not _is_console_flag(settings, i)]
        plain = dict(os.environ, BENCH_BASE_URL=url)
        no_records = {key: value for key, value in launch.env.items() if key != "SCENARIOKIT_RECORDS"}
        runs = {
            "stock": ([k6_binary(), "run", "--quiet", str(stock)], plain),
            "stock, sk settings": (
                [k6_binary(), "run", "--quiet", str(stock), *settings],
                plain | launch.env,
            ),
            "sk, no records": (launch.argv, no_records),
            "sk (as the driver)": (launch.argv, launch.env),
        }
        for repeat in range(args.repeats):
            order = list(runs)[repeat % len(runs) :] + list(runs)[: repeat % len(runs)]
            for label in order:
                argv, env = runs[label]
                (raw / "records-k6.jsonl").unlink(missing_ok=True)
                rate, cpu_us = trial(argv, env, script.parent, url, args.seconds)
                rates.setdefault(label, []).append(rate)
                cpus.setdefault(label, []).append(cpu_us)
                print(
                    f"  {label:<20} {rate:10,.0f} req/s {cpu_us:7.2f} us CPU/req", file=sys.stderr, flush=True
                )
    print_table(rates, cpus, args.users, args.repeats)


def _is_console_flag(argv: list[str], i: int) -> bool:
    """The driver's console-output flag and its value: the stock script writes no records."""
    return argv[i] == "--console-output" or (i > 0 and argv[i - 1] == "--console-output")


def print_table(
    rates: dict[str, list[float]], cpus: dict[str, list[float]], users: int, repeats: int
) -> None:
    stock_rate = statistics.median(rates["stock"])
    tuned_rate = statistics.median(rates["stock, sk settings"])
    tuned_cpu = statistics.median(cpus["stock, sk settings"])
    print(f"\nk6, {users} VUs, median of {repeats}")
    print(f"{'variant':<20} {'req/s':>10}  vs stock  vs like-for-like  k6 CPU us/req  vs like-for-like")
    for label in rates:
        rate, cpu_us = statistics.median(rates[label]), statistics.median(cpus[label])
        print(
            f"{label:<20} {rate:10,.0f}  {rate / stock_rate:8.2f}  {rate / tuned_rate:15.2f}"
            f"  {cpu_us:13.2f}  {tuned_cpu / cpu_us:16.2f}"
        )
    print(
        "\nreq/s: what nginx served during the test. k6 CPU us/req: k6's user + system CPU over those"
        "\nrequests (start-up included); its last column is like-for-like CPU over the variant's (1.00 = no"
        "\ndearer per request)."
    )


if __name__ == "__main__":
    main()
