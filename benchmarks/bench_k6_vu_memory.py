"""Benchmark: what a k6 VU's JS runtime holds, per VU, for stock and scenariokit scripts (issue 17).

    python benchmarks/bench_k6_vu_memory.py [--users 2000] [--repeats 3]

k6 initialises every VU (each its own JS runtime, running the script's init code) before the test
starts. This starts k6 with `--paused` (no request is sent), waits until its RSS stops growing (under 2%
in a second, at most 30 s), and divides the RSS by the VU count. Variants, each the seed-shaped load of
bench_scale.py at `--users` VUs, GOGC at Go's default (as the driver sets it above 500 VUs):

- stock: bench_scale.py's hand-written script;
- stock + runtime imported: the same, importing scenariokit's runtime module (nothing of it called):
  what evaluating the module's top level (its functions, class and constants) costs each VU;
- scenariokit: the compiled script, records on (as the driver runs it): written out for the scenario;
- scenariokit, runtime's tables: the same load without think time, which compiles to the generic runtime
  and its tables (batched records), records on;
- stock + one regex / one String method / Date.now() at init, k6/execution imported: what each VU's
  runtime makes the first time a VU uses that built-in (or module);
- stock + 20 function declarations / 20 arrow functions: a declaration carries a prototype object;
- stock + 60 functions / 60 objects: the same as stock with a module of 60 small functions, or 60
  objects `{a, b, c: [1, 2]}`: what one JS object costs a VU in k6's interpreter.

Variants alternate within each repeat; the median of the repeats is printed, with the difference to stock.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_scale import SPAWN_RATE, STOCK_K6, sk_launch

from scenariokit.engines.k6.driver import k6_binary
from scenariokit.ports import free_port

RUNTIME = Path(__file__).parents[1] / "src/scenariokit/engines/k6/files/scenariokit-runtime.js"
URL = "http://127.0.0.1:9"  # never sent to: the test stays paused


def paused_rss(script: Path, env: dict[str, str]) -> int:
    """k6's RSS (bytes) once every VU of the script is initialised, the test paused."""
    address = f"127.0.0.1:{free_port()}"
    argv = [k6_binary(), "run", "--paused", "--quiet", "--no-summary", "--address", address, script.name]
    process = subprocess.Popen(
        argv, cwd=script.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_api(address, process)
        started, last = time.monotonic(), 0
        while True:  # the VUs are initialised in parallel after the API is up: wait until RSS settles
            time.sleep(1)
            current = rss(process.pid)
            if abs(current - last) < 0.02 * current or time.monotonic() - started > 30:
                return current
            last = current
    finally:
        process.kill()
        process.wait(10)


def wait_for_api(address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{address}/v1/status", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"k6 did not start (exit {process.poll()})")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def variants(work: Path, users: int) -> dict[str, tuple[Path, dict[str, str]]]:
    """Each variant's script and environment."""
    stock = STOCK_K6.format(url=URL, users=users, ramp=users / SPAWN_RATE, hold=10)
    argv, sk_env = sk_launch(work, URL, users, 10, "k6")
    compiled = Path(next(arg for arg in argv if arg.endswith(".k6.js")))
    # the same load without think time compiles to the runtime's tables (batched records: engines/k6/lean.py)
    batched = sk_launch(work / "batched", URL, users, 10, "k6", think="none")
    batched_script = Path(next(arg for arg in batched[0] if arg.endswith(".k6.js")))
    runtime = RUNTIME
    plain = {key: value for key, value in os.environ.items() if key not in ("GOGC", "GOMEMLIMIT")}
    at_init = stock.replace('const base = "', 'const base = INIT + "')  # a value made at init, used
    scripts = {
        "stock": stock,
        "stock + runtime imported": 'import { Runner } from "./scenariokit-runtime.js";\n' + stock,
        "stock + 60 functions": 'import { f0 } from "./m-functions.js";\n' + stock,
        "stock + 60 objects": 'import { o0 } from "./m-objects.js";\n' + stock,
        "stock + 20 function declarations": stock
        + "".join(f"function g{i}(a) {{ return a + {i}; }}\n" for i in range(20)),
        "stock + 20 arrow functions": stock + "".join(f"const g{i} = (a) => a + {i};\n" for i in range(20)),
        "stock + one regex at init": at_init.replace("INIT", '"/".replace(/\\/+$/, "")'),
        "stock + one String method at init": at_init.replace("INIT", '"/".slice(1)'),
        "stock + Date.now() at init": at_init.replace("INIT", '(Date.now() > 0 ? "" : "-")'),
        # k6 refuses to read a VU's execution info at init: the module imported, used in an expression
        "stock + k6/execution imported": 'import exec from "k6/execution";\n'
        + at_init.replace("INIT", '(exec ? "" : "-")'),
    }
    (work / "m-functions.js").write_text(
        "".join(f"export function f{i}(a, b) {{ return a + b + {i}; }}\n" for i in range(60))
    )
    (work / "m-objects.js").write_text(
        "".join(f"export const o{i} = {{ a: {i}, b: 'x{i}', c: [1, 2] }};\n" for i in range(60))
    )
    (work / "scenariokit-runtime.js").write_text(runtime.read_text())
    out: dict[str, tuple[Path, dict[str, str]]] = {}
    for i, (label, text) in enumerate(scripts.items()):
        path = work / f"v{i}.js"
        path.write_text(text)
        out[label] = (path, plain)
    out["scenariokit"] = (compiled, sk_env)
    out["scenariokit, runtime's tables"] = (batched_script, batched[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    per_vu: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-k6-vu-memory-") as name:
        runs = variants(Path(name), args.users)
        for repeat in range(args.repeats):
            order = list(runs)[repeat % len(runs) :] + list(runs)[: repeat % len(runs)]
            for label in order:
                script, env = runs[label]
                kib = paused_rss(script, env) / args.users / 1024
                per_vu.setdefault(label, []).append(kib)
                print(f"  {label:<32} {kib:7.1f} KiB/VU", file=sys.stderr, flush=True)
    stock = statistics.median(per_vu["stock"])
    print(f"\nk6, {args.users} VUs initialised (paused), RSS per VU, median of {args.repeats}")
    print(f"{'variant':<32} {'KiB/VU':>8} {'vs stock':>9}")
    for label in runs:
        kib = statistics.median(per_vu[label])
        print(f"{label:<32} {kib:8.1f} {kib - stock:+9.1f}")


if __name__ == "__main__":
    main()
