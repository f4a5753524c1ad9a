"""Benchmark: the cost of scenariokit's per-request result collection, per engine (Locust and k6).

    python benchmarks/bench_collection.py [--seconds 8] [--users 32] [--repeats 3] [--engines locust,k6]

For each engine it measures the most requests/s the engine reaches against a fast loopback endpoint
(nginx on 127.0.0.1 when `nginx` is on PATH, else a small asyncio server in a subprocess), closed model,
`--users` users with no think time, one GET per iteration, three ways:

- stock: a plain script with no scenariokit hooks or outputs (a minimal FastHttpUser locustfile; a minimal
  k6 script with `http.get` and no `--out`), counted from the engine's own stats (Locust
  `--json-file`, k6 `--summary-export`);
- scenariokit, engine only: the script scenariokit compiles from a scenario (`hold(N, Xs)`,
  `think_time: none`), launched as the driver launches it (`driver.launch`: same argv, environment and
  working directory), its raw record files read once it has exited;
- scenariokit, full runner: the same script through `scenariokit.run.monitored_run`, the runner's own
  path (what `scenariokit run` does between compiling and summarizing): the engine, the loop that polls
  the raw records into the Parquet store and the live view, the live metrics exporter, the host/target
  monitor.

The scenariokit variants are counted from the records scenariokit collected. A rate is requests over
the test's own span, so that engine start-up and shutdown do not count: from the test start marker in
the records (Locust) or the scenario start (k6) to the last response for scenariokit; from the first
request to the last response in Locust's stats, and k6's own `http_reqs` rate (count / test duration),
for stock. Both variants run `--seconds` of load and start and stop their users the same way. Trials
alternate between the variants (their order rotates each repeat) and the median of `--repeats` is
reported, because a small machine is noisy; beside it the median of each repeat's ratio to the stock
trial of the same repeat (paired), which a machine whose speed drifts from one repeat to the next moves
less. The target is a collection overhead of at most 10%: scenariokit req/s >= 0.9 x stock req/s, on the
full runner path (the engine-only ratio is shown beside it), judged on the paired ratio. Only 127.0.0.1
is ever sent to; every trial is bounded by `--seconds` plus start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario, get_engine
from scenariokit.engines.base import LaunchPlan
from scenariokit.engines.k6.driver import k6_binary
from scenariokit.ports import free_port
from scenariokit.run.live import LiveView
from scenariokit.run.orchestrate import (
    ENGINE_GRACE_S,
    RunOptions,
    apply_overrides,
    make_run_dir,
    monitored_run,
)

TARGET = 0.9
PATH = "/ping"
STATUS_PATH = "/_served"  # nginx only: its stub_status page
BODY = b"ok\n"
VARIANTS = ("stock", "sk-engine", "sk-runner")

SCENARIO = """\
version: 1
name: bench-collection
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold({users}, {seconds}s)", think_time: none}}
requests:
  ping: {{method: GET, path: {path}}}
"""

STOCK_LOCUSTFILE = """\
from locust import FastHttpUser, constant, task


class StockUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def ping(self):
        self.client.get({path!r})
"""

STOCK_K6 = """\
import http from "k6/http";

export const options = {{
  scenarios: {{ load: {{ executor: "constant-vus", vus: {users}, duration: "{seconds}s" }} }},
}};

export default function () {{
  http.get(`${{__ENV.BENCH_BASE_URL}}{path}`);
}}
"""

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "ok\\n";
        }}
        location = {status_path} {{
            stub_status;  # the requests served so far (bench_k6_ablation.py counts with it)
        }}
    }}
}}
"""


# --- the endpoint ---------------------------------------------------------------------------------


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the endpoint exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f}s")


class FixedResponse(asyncio.Protocol):
    """HTTP/1.1 keep-alive: one fixed 200 per request head received (GET only, pipelining tolerated)."""

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        heads = self.pending.count(b"\r\n\r\n")
        if heads:
            self.pending = self.pending[self.pending.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(self.RESPONSE * heads)  # type: ignore[attr-defined]


def serve_forever(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(FixedResponse, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@contextlib.contextmanager
def endpoint(tmp: Path) -> Iterator[tuple[str, str]]:
    """(base URL, what serves it): nginx when installed, else the asyncio server, on 127.0.0.1."""
    port = free_port()
    nginx = shutil.which("nginx")
    if nginx:
        root = tmp / "nginx"
        root.mkdir()
        (root / "nginx.conf").write_text(NGINX_CONF.format(tmp=root, port=port, status_path=STATUS_PATH))
        argv = [nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]
        kind = "nginx (1 worker)"
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
        kind = "python asyncio server"
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}", kind
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT if nginx else signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


# --- one trial each way ---------------------------------------------------------------------------


def run_process(argv: list[str], env: dict[str, str], cwd: Path, log: Path, timeout_s: float) -> int:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            raise RuntimeError(f"{argv[0]} ran past {timeout_s:.0f}s; see {log}") from None


def stock_locust(work: Path, url: str, users: int, seconds: int) -> tuple[int, float]:
    script = work / "stock_locustfile.py"
    script.write_text(STOCK_LOCUSTFILE.format(path=PATH))
    argv = [sys.executable, "-m", "locust", "-f", str(script), "--headless", "--host", url]
    argv += ["-u", str(users), "-r", str(users), "--run-time", f"{seconds}s", "--only-summary"]
    argv += ["--loglevel", "WARNING", "--exit-code-on-error", "0", "--stop-timeout", "5"]
    argv += ["--json-file", str(work / "stock")]  # the final stats (its --csv misses the last second)
    rc = run_process(argv, dict(os.environ), work, work / "stock.log", seconds + 60)
    try:
        entries = json.loads((work / "stock.json").read_text())
    except (FileNotFoundError, ValueError):
        raise RuntimeError(f"locust exited {rc} without its stats; see {work / 'stock.log'}") from None
    # each entry's start_time is its first request; last_request_timestamp its last response
    count = sum(e["num_requests"] for e in entries)
    span = max(e["last_request_timestamp"] for e in entries) - min(e["start_time"] for e in entries)
    return count, span


def stock_k6(work: Path, url: str, users: int, seconds: int) -> tuple[int, float]:
    script = work / "stock.k6.js"
    script.write_text(STOCK_K6.format(users=users, seconds=seconds, path=PATH))
    summary = work / "stock-summary.json"
    argv = [k6_binary(), "run", str(script), "--quiet", "--no-color", "--summary-export", str(summary)]
    env = dict(os.environ, BENCH_BASE_URL=url)
    rc = run_process(argv, env, work, work / "stock.log", seconds + 60)
    if not summary.exists():
        raise RuntimeError(f"k6 exited {rc} without a summary; see {work / 'stock.log'}")
    reqs = json.loads(summary.read_text())["metrics"]["http_reqs"]  # rate: count / test run duration
    return int(reqs["count"]), reqs["count"] / reqs["rate"] if reqs["rate"] else float("nan")


STOCK: dict[str, Callable[[Path, str, int, int], tuple[int, float]]] = {
    "locust": stock_locust,
    "k6": stock_k6,
}


def scenariokit_trial(
    engine: str, work: Path, url: str, users: int, seconds: int, runner: bool
) -> tuple[int, float, str]:
    """(requests in scenariokit's records, seconds from the test's start to the last response, a note)."""
    source = work / "scenario.yaml"
    source.write_text(SCENARIO.format(url=url, users=users, seconds=seconds, path=PATH))
    scenario = apply_overrides(load_scenario(source).scenario, RunOptions(engine=engine, quiet=True))
    driver = get_engine(engine)
    run_dir = make_run_dir(scenario, work / "run")
    raw_dir = run_dir / "raw"
    script = compile_scenario(scenario, engine).write(run_dir / "script")
    note = ""
    if runner:
        # the runner's own path: engine + reader polling into Parquet, live exporter, host/target monitor
        view, options = LiveView(scenario, quiet=True), RunOptions(engine=engine, quiet=True)
        state = monitored_run(scenario, driver, script, url, run_dir, None, options, view, None)
        if state.exit_reason != "completed":
            raise RuntimeError(f"monitored_run: {state.exit_reason} {state.detail}; see {run_dir / 'logs'}")
    launch = driver.launch(
        LaunchPlan(script, url, raw_dir, scenario.load.duration_s + ENGINE_GRACE_S, open_model=False)
    )
    if not runner:
        log = run_dir / "logs" / f"{engine}.log"
        rc = run_process(launch.argv, launch.env, script.parent, log, seconds + ENGINE_GRACE_S + 30)
        if rc not in (0, 99):
            raise RuntimeError(f"{engine} exited {rc}; see {log}")
    reader = driver.reader(raw_dir, launch)  # the raw record files the engine wrote, read from the start
    records = reader.poll()
    if runner and len(records) != state.records:
        note = f"runner stored {state.records} of {len(records)} raw records"
    started = getattr(reader, "origin_unix", None) or reader.started_unix
    if started is None or not records:
        raise RuntimeError(f"{engine}: no test start or no records in {raw_dir}")
    span = max(r.end for r in records) - started
    summary = raw_dir / "k6-summary.json"
    if summary.exists():  # k6's own count of the same run, as a cross-check of the records
        counted = int(json.loads(summary.read_text())["metrics"]["http_reqs"]["count"])
        if abs(counted - len(records)) > max(2, 0.01 * counted):
            note = f"records {len(records)} != k6 http_reqs {counted}"
    return len(records), span, note


def trial(
    engine: str, variant: str, tmp: Path, url: str, users: int, seconds: int, show: bool = True
) -> float:
    """One run of one variant: its requests/s over its own test (start to last response)."""
    work = Path(tempfile.mkdtemp(prefix=f"{engine}-{variant}-", dir=tmp))
    if variant == "stock":
        (count, span), note = STOCK[engine](work, url, users, seconds), ""
    else:
        count, span, note = scenariokit_trial(
            engine, work, url, users, seconds, runner=variant == "sk-runner"
        )
    if count == 0:
        raise RuntimeError(f"{engine} {variant}: no requests counted; see {work}")
    rate = count / span
    if show:
        print(
            f"  {engine:6} {variant:9} {count:>9,} requests in {span:5.2f}s  {rate:>9,.0f} req/s  {note}",
            flush=True,
        )
    shutil.rmtree(work, ignore_errors=True)
    return rate


# --- entry point ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each trial's hold (default 8)")
    parser.add_argument("--users", type=int, default=32, help="concurrent users / VUs (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="trials per variant (median; default 3)")
    parser.add_argument("--engines", default="locust,k6", help="comma-separated (default locust,k6)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the short warm-up trial per engine")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the fallback server
    args = parser.parse_args()
    if args.serve is not None:
        serve_forever(args.serve)
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    rates: dict[tuple[str, str], list[float]] = {(e, v): [] for e in engines for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-collection-") as name, endpoint(Path(name)) as (url, kind):
        tmp = Path(name)
        print(f"endpoint: {kind} at {url}{PATH}; {args.users} users, no think time, {args.seconds}s trials")
        print(f"host: {os.cpu_count()} CPUs; {args.repeats} repeats, variants interleaved")
        if not args.no_warmup:
            for engine in engines:
                print(f"  warm-up {engine} (not counted)")
                trial(engine, "stock", tmp, url, args.users, 2, show=False)
        for repeat in range(args.repeats):
            order = VARIANTS[repeat % 3 :] + VARIANTS[: repeat % 3]
            for engine in engines:
                for variant in order:
                    rates[engine, variant].append(trial(engine, variant, tmp, url, args.users, args.seconds))
    print()
    header = ("engine", "stock req/s", "sk req/s", "ratio", "paired", "engine-only req/s", "ratio", "paired")
    print("{:8} {:>12} {:>10} {:>6} {:>7} {:>18} {:>6} {:>7}  target".format(*header))
    for engine in engines:
        stock, engine_only, runner = (statistics.median(rates[engine, v]) for v in VARIANTS)
        paired_runner, paired_engine = (
            statistics.median(r / s for r, s in zip(rates[engine, v], rates[engine, "stock"], strict=True))
            for v in ("sk-runner", "sk-engine")
        )
        verdict = " ".join(
            f"{label}{'met' if r >= TARGET else 'MISSED'}"
            for label, r in (("", paired_runner), ("/ engine-only ", paired_engine))
        )
        print(
            f"{engine:8} {stock:>12,.0f} {runner:>10,.0f} {runner / stock:>6.2f} {paired_runner:>7.2f} "
            f"{engine_only:>18,.0f} {engine_only / stock:>6.2f} {paired_engine:>7.2f}  {verdict}"
        )
    print(
        "\nsk req/s: scenariokit's script through the runner (monitored_run: records polled into Parquet)."
        "\nengine-only: the same script launched by the driver, records read after it exits."
        f"\nratio: median of {args.repeats} over median of stock; paired: the median of each repeat's"
        "\nratio to the stock trial beside it (the machine drifts between repeats: the target is judged on"
        f"\nthis one); target ratio >= {TARGET}."
    )


if __name__ == "__main__":
    main()
