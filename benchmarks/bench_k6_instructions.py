"""Benchmark: k6's instructions per request, stock and as scenariokit drives it (callgrind: no noise).

    python benchmarks/bench_k6_instructions.py [--requests 2000]

On a small shared machine the requests/s of bench_collection.py and bench_k6_ablation.py move by a tenth
or more between runs. Instructions do not: valgrind's callgrind counts what k6 executes, the same for the
same binary and inputs, whatever else the machine does. One VU sends `--requests` GETs (k6's
shared-iterations executor) to nginx on 127.0.0.1, and once 200 more; the difference over `--requests`
is the cost of one request, start-up and shutdown cancelled out. k6 runs with GOMAXPROCS=1 (each idle Go
thread would otherwise spin a varying number of instructions) and without asynchronous preemption
(callgrind cannot follow its signals). Variants:

- stock: a minimal script (`http.get`), stock settings (GOGC=100, default system tags and summary);
- stock, sk settings: the same with the settings the driver gives a closed model;
- scenariokit, no records / scenariokit: the compiled script launched as the driver launches it,
  without and with SCENARIOKIT_RECORDS.

Instructions are not time: with 32 VUs k6's caches and its collector weigh more than one VU shows (see
bench_k6_ablation.py for the rate). Needs valgrind and nginx (Debian's packages). Only 127.0.0.1 is sent
to, and every run is bounded in requests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_collection import PATH, SCENARIO, endpoint

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario, get_engine
from scenariokit.engines.base import LaunchPlan
from scenariokit.engines.k6.driver import k6_binary

STOCK = """\
import http from "k6/http";
export const options = {
  scenarios: { load: { executor: "shared-iterations", vus: 1, iterations: Number(__ENV.N) } },
};
export default function () {
  http.get(`${__ENV.BENCH_BASE_URL}/ping`);
}
"""

# the compiled script's closed-model executor, swapped for a fixed number of requests from one VU
EXECUTOR = re.compile(r"executor: \"ramping-vus\",.*?gracefulRampDown: \"[^\"]*\",", re.DOTALL)
FIXED = 'executor: "shared-iterations", vus: 1, iterations: Number(__ENV.N), maxDuration: "1000s",'


def instructions(argv: list[str], env: dict[str, str], cwd: Path, requests: int) -> int:
    """What k6 executed for `requests` requests (callgrind's total)."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    run_env = env | {"N": str(requests), "GOMAXPROCS": "1", "GODEBUG": "asyncpreemptoff=1"}
    result = subprocess.run(
        [*valgrind, *argv], env=run_env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"callgrind counted nothing: {result.stderr[-1500:]}")
    return int(match.group(1))


def per_request(argv: list[str], env: dict[str, str], cwd: Path, requests: int) -> float:
    return (instructions(argv, env, cwd, requests + 200) - instructions(argv, env, cwd, 200)) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench_k6_instructions.py needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="bench-k6-instr-") as name, endpoint(Path(name)) as (url, _):
        work = Path(name)
        (work / "stock.js").write_text(STOCK)
        source = work / "scenario.yaml"
        source.write_text(SCENARIO.format(url=url, users=1, seconds=1000, path=PATH))
        script = compile_scenario(load_scenario(source).scenario, "k6").write(work / "script")
        compiled, replaced = EXECUTOR.subn(FIXED, script.read_text())
        if replaced != 1:
            sys.exit("the compiled script's executor has changed: update EXECUTOR")
        script.write_text(compiled)
        raw = work / "raw"
        raw.mkdir()
        launch = get_engine("k6").launch(LaunchPlan(script, url, raw, 1000, open_model=False))
        flags = launch.argv[launch.argv.index("--no-thresholds") :]
        stock_flags = [f for i, f in enumerate(flags) if "--console-output" not in (f, flags[i - 1])]
        plain = dict(os.environ, BENCH_BASE_URL=url)
        no_records = {k: v for k, v in launch.env.items() if k != "SCENARIOKIT_RECORDS"}
        runs = {
            "stock": ([k6_binary(), "run", "--quiet", str(work / "stock.js")], plain | {"GOGC": "100"}),
            "stock, sk settings": ([k6_binary(), "run", "--quiet", str(work / "stock.js"), *stock_flags],
                                   plain | launch.env),
            "sk, no records": (launch.argv, no_records),
            "sk (as the driver)": (launch.argv, launch.env),
        }  # fmt: skip
        counts = {}
        for label, (argv, env) in runs.items():
            counts[label] = per_request(argv, env, script.parent, args.requests)
            print(f"  {label:<20} {counts[label]:10,.0f} instructions/request", file=sys.stderr, flush=True)
    stock, tuned = counts["stock"], counts["stock, sk settings"]
    print(f"\nk6, 1 VU, {args.requests} requests (minus 200), callgrind")
    print(f"{'variant':<20} {'instr/req':>10}  stock/variant  like-for-like/variant")
    for label, count in counts.items():
        print(f"{label:<20} {count:10,.0f}  {stock / count:13.2f}  {tuned / count:21.2f}")


if __name__ == "__main__":
    main()
