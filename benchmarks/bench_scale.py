"""Benchmark: per-user cost at scale, stock scripts against scenariokit's, on k6 and Locust (issue 17).

    python benchmarks/bench_scale.py [--users 10000] [--repeats 3] [--hold 20] [--engines k6,locust]
    python benchmarks/bench_scale.py --users 1000,5000,20000      # the docs table
    python benchmarks/bench_scale.py --engines k6 --users 2000 --sk-env GOGC=400   # another GC setting

The load is the seed's shape: a closed model ramping to `--users` at 500 users/s, then holding for
`--hold` s, think time uniform 0.5-2.5 s, two JSON POSTs at 3:1 (/api/identify, /api/ocr), against nginx
on 127.0.0.1 (started here, in a temp dir, with worker_connections above the user count). Per engine and
user count, each repeat runs a hand-written stock script (k6: `http.post` + `sleep`; Locust: a
FastHttpUser with `between(0.5, 2.5)`, `-u N -r 500`) and the script scenariokit compiles from the same
load, launched exactly as the driver launches it (its argv and environment: records on, GC settings),
back to back, the order alternating each repeat: a pair on the same machine a minute apart. For each run:

- memory: the peak of the engine's whole process tree's RSS (the sum of VmRSS over the process and its
  descendants, sampled every 0.25 s);
- rate: what nginx served (its stub_status counter, sampled with the memory) over the best window of
  `--hold` - 4 s, which lies in the hold where every user is running.

The ratios (scenariokit / stock) are taken per pair and their median printed with the targets of issue
17: memory <= 1.1x, rate >= 0.95x. This host is shared and noisy; only the paired ratios are comparable
across rows. Beyond ~28,000 users one loopback address pair runs out of ephemeral ports (see
docs/performance.md before going higher); the file limit is raised to its hard limit for the engines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario, get_engine
from scenariokit.engines.base import LaunchPlan
from scenariokit.engines.k6.driver import k6_binary
from scenariokit.engines.k6.instances import segment_flags
from scenariokit.ports import free_port
from scenariokit.run.nginx import NginxConfig, NginxServer

SPAWN_RATE = 500  # users/s, as the guide's ramp
MEMORY_TARGET = 1.1
RATE_TARGET = 0.95
STATUS_PATH = "/_served"

SCENARIO = """\
version: 1
name: bench-scale
target: {{kind: http, base_url: "{url}"}}
load:
  model: closed
  curve: "ramp(0, {users}, {ramp}s) -> hold({hold}s)"
  think_time: "{think}"
requests:
  identify: {{weight: 3, method: POST, path: /api/identify, json: {{image_url: "{url}/cat.png"}}}}
  ocr: {{weight: 1, method: POST, path: /api/ocr, json: {{image_url: "{url}/card.png"}}}}
"""

STOCK_K6 = """\
import http from "k6/http";
import {{ sleep }} from "k6";

export const options = {{
  scenarios: {{
    load: {{
      executor: "ramping-vus",
      startVUs: 0,
      stages: [{{ duration: "{ramp}s", target: {users} }}, {{ duration: "{hold}s", target: {users} }}],
    }},
  }},
  discardResponseBodies: true,
}};

const base = "{url}";
const params = {{ headers: {{ "Content-Type": "application/json" }} }};

export default function () {{
  if (Math.random() < 0.75) {{
    http.post(base + "/api/identify", JSON.stringify({{ image_url: base + "/cat.png" }}), params);
  }} else {{
    http.post(base + "/api/ocr", JSON.stringify({{ image_url: base + "/card.png" }}), params);
  }}
  sleep(0.5 + 2 * Math.random());
}}
"""

STOCK_LOCUSTFILE = """\
from locust import FastHttpUser, between, task


class Shopper(FastHttpUser):
    wait_time = between(0.5, 2.5)

    @task(3)
    def identify(self):
        self.client.post("/api/identify", json={{"image_url": "{url}/cat.png"}})

    @task(1)
    def ocr(self):
        self.client.post("/api/ocr", json={{"image_url": "{url}/card.png"}})
"""


@dataclass(frozen=True)
class Trial:
    peak_rss: int  # bytes, the engine's process tree
    rate: float  # requests/s nginx served over the best window of the hold


# --- the target ------------------------------------------------------------------------------------


@contextlib.contextmanager
def nginx(tmp: Path, users: int) -> Iterator[str]:
    """nginx on 127.0.0.1 with room for every user's connection; yields its base URL."""
    if shutil.which("nginx") is None:
        sys.exit("bench_scale.py needs nginx on PATH (its request counter is the rate)")
    tmp.chmod(0o755)  # nginx's worker runs as nobody: a root-only folder gives 403 (field notes)
    connections = users * 2 + 1024
    config = NginxConfig(
        free_port(),
        worker_connections=connections,
        rlimit_nofile=connections * 2,
        body="ok\n",
        content_type="text/plain",
        status_path=STATUS_PATH,
        keepalive_requests=10_000_000,
        keepalive_timeout_s=120,
        backlog=65535,
    )
    with NginxServer(config, tmp / "nginx") as server:
        yield server.url


def served(url: str) -> int:
    """Requests nginx has served so far (this read included)."""
    with urllib.request.urlopen(url + STATUS_PATH, timeout=5) as response:
        page = response.read().decode()
    match = re.search(r"^\s*\d+\s+\d+\s+(\d+)\s*$", page, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no request count in nginx's status page: {page!r}")
    return int(match.group(1))


# --- one run ---------------------------------------------------------------------------------------


def tree_rss(pid: int) -> int:
    """The RSS of a process and all its descendants, in bytes (0 once it is gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
    return total


def best_rate(series: list[tuple[float, int]], window_s: float) -> float:
    """The highest requests/s over any stretch of at least window_s in (time, served) samples."""
    best = 0.0
    for i, (t0, count0) in enumerate(series):
        for t1, count1 in series[i + 1 :]:
            if t1 - t0 >= window_s:
                best = max(best, (count1 - count0) / (t1 - t0))
                break
    return best


def trial(argv: list[str], env: dict[str, str], cwd: Path, url: str, hold: int, log: Path) -> Trial:
    peak, series = 0, []
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            with contextlib.suppress(OSError):  # nginx's status page may time out under 20,000 connections
                series.append((time.monotonic(), served(url)))
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{argv[:3]} ran past 600 s; see {log}")
            time.sleep(0.25)
    if process.returncode not in (0, 1):  # Locust exits 1 when a request failed
        raise RuntimeError(f"{argv[:3]} exited {process.returncode}; see {log}")
    return Trial(peak, best_rate(series, max(1.0, hold - 4)))


# --- the pair of each engine -------------------------------------------------------------------------


def k6_runs(
    work: Path, url: str, users: int, hold: int, processes: int = 1
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Stock k6 and scenariokit's; with `processes` > 1, that many k6 instances on execution segments each
    (stock: started by a shell, as a user would; scenariokit: `run --processes N`'s leader)."""
    ramp = users / SPAWN_RATE
    stock = work / "stock.js"
    stock.write_text(STOCK_K6.format(url=url, users=users, ramp=ramp, hold=hold))
    argv = [k6_binary(), "run", "--quiet", "--no-usage-report", str(stock)]
    if processes > 1:
        instances = [
            shlex.join([*argv, "--address", "", *segment_flags(i, processes)]) for i in range(processes)
        ]
        argv = ["sh", "-c", " & ".join(instances) + " & wait"]
    launch = sk_launch(work, url, users, hold, "k6", processes=processes)
    return {"stock": (argv, dict(os.environ)), "scenariokit": (launch[0], launch[1])}


def locust_runs(
    work: Path, url: str, users: int, hold: int, processes: int = 1
) -> dict[str, tuple[list[str], dict[str, str]]]:
    ramp = users / SPAWN_RATE
    stock = work / "stock_locustfile.py"
    stock.write_text(STOCK_LOCUSTFILE.format(url=url))
    argv = [sys.executable, "-m", "locust", "-f", str(stock), "--headless", "--host", url, "-u", str(users)]
    argv += ["-r", str(SPAWN_RATE), "--run-time", f"{ramp + hold:.0f}s", "--only-summary"]
    argv += ["--loglevel", "WARNING", "--stop-timeout", "5"]
    if processes > 1:
        argv += ["--processes", str(processes)]
    sk = sk_launch(work, url, users, hold, "locust", processes=processes)
    return {"stock": (argv, dict(os.environ)), "scenariokit": sk}


def sk_launch(
    work: Path,
    url: str,
    users: int,
    hold: int,
    engine: str,
    think: str = "uniform(0.5s, 2.5s)",
    processes: int = 1,
) -> tuple[list[str], dict[str, str]]:
    """The compiled script's argv and environment, exactly as the driver launches it."""
    work.mkdir(exist_ok=True)
    source = work / "scenario.yaml"
    ramp = users / SPAWN_RATE
    source.write_text(SCENARIO.format(url=url, users=users, ramp=f"{ramp:g}", hold=hold, think=think))
    scenario = load_scenario(source).scenario
    script = compile_scenario(scenario, engine).write(work / f"script-{engine}")
    raw = work / f"raw-{engine}"
    raw.mkdir(exist_ok=True)
    plan = LaunchPlan(
        script, url, raw, ramp + hold + 120, processes=processes, open_model=False, peak_users=users
    )
    launch = get_engine(engine).launch(plan)
    return launch.argv, launch.env


def measure(
    engine: str, users: int, repeats: int, hold: int, extra: dict[str, str], processes: int = 1
) -> dict[str, list[Trial]]:
    results: dict[str, list[Trial]] = {"stock": [], "scenariokit": []}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as name:
        work = Path(name)
        with nginx(work, users) as url:
            runs = (k6_runs if engine == "k6" else locust_runs)(work, url, users, hold, processes)
            runs["scenariokit"][1].update(extra)
            for repeat in range(repeats):
                order = ["stock", "scenariokit"] if repeat % 2 == 0 else ["scenariokit", "stock"]
                for label in order:
                    argv, env = runs[label]
                    raw = work / f"raw-{engine}"
                    for records in raw.glob("records-*"):  # the last trial's; k6's instance spec stays
                        records.unlink()
                    got = trial(argv, env, work, url, hold, work / f"{label}-{repeat}.log")
                    results[label].append(got)
                    print(
                        f"  {engine} {users:>6} {label:<12} peak {got.peak_rss / 2**20:8.0f} MiB"
                        f"  {got.rate:8,.0f} req/s",
                        file=sys.stderr,
                        flush=True,
                    )
    return results


def raise_file_limit() -> None:
    """Every user holds a connection (a file): the engines inherit the hard limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="10000", help="comma-separated user counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hold", type=int, default=20, help="seconds at the full user count")
    parser.add_argument("--engines", default="k6,locust")
    parser.add_argument(
        "--sk-env", action="append", default=[], metavar="KEY=VALUE", help="set in scenariokit's engine's env"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="generator processes (Locust) or instances (k6), both sides"
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.sk_env)
    raise_file_limit()
    rows = []
    for engine in args.engines.split(","):
        for users in (int(value) for value in args.users.split(",")):
            result = measure(engine, users, args.repeats, args.hold, extra, args.processes)
            rows.append((engine if args.processes == 1 else f"{engine}x{args.processes}", users, result))
    print_table(rows, args.repeats)


def print_table(rows: list[tuple[str, int, dict[str, list[Trial]]]], repeats: int) -> None:
    print(f"\nmedian of {repeats} paired repeats; ratios are scenariokit / stock per pair")
    print(
        f"{'engine':<9} {'users':>6} {'stock MiB':>10} {'sk MiB':>8} {'memory':>7} {'met':>4}"
        f" {'stock req/s':>12} {'sk req/s':>9} {'rate':>6} {'met':>4}"
    )
    for engine, users, result in rows:
        stock, ours = result["stock"], result["scenariokit"]
        stock_rate = statistics.median(t.rate for t in stock)
        our_rate = statistics.median(t.rate for t in ours)
        memory = statistics.median(o.peak_rss / s.peak_rss for s, o in zip(stock, ours, strict=True))
        rate = statistics.median(o.rate / s.rate for s, o in zip(stock, ours, strict=True))
        print(
            f"{engine:<9} {users:>6} {statistics.median(t.peak_rss for t in stock) / 2**20:>10,.0f}"
            f" {statistics.median(t.peak_rss for t in ours) / 2**20:>8,.0f} {memory:>6.2f}x"
            f" {'yes' if memory <= MEMORY_TARGET else 'no':>4}"
            f" {stock_rate:>12,.0f} {our_rate:>9,.0f}"
            f" {rate:>5.2f}x {'yes' if rate >= RATE_TARGET else 'no':>4}"
        )
    print(f"targets: memory <= {MEMORY_TARGET}x, rate >= {RATE_TARGET}x (issue 17)")


if __name__ == "__main__":
    main()
