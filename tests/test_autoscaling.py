"""Autoscaling observation (issue 20): ready instances over time and time-to-scale.

The must-show: the run's own Prometheus (Debian's, `monitoring.prometheus: true`) scrapes two embedded
servers listed as `monitoring.targets` of role `vllm` (job `vllm`), C2's FaultProxy round-robins over both
with the scenario's base URL at the proxy, and the test starts the second server mid-run (the proxy skips it
while it refuses). An open model at 10 req/s exceeds one instance's capacity (2 in flight, 1 queued, 250 ms
added to each request: 7 to 8 ok/s measured here; declared 7/s), and two cover it. Ready instances are
counted by Prometheus, `count(up{job="vllm"} == 1)`. Requests send `Connection: close`, so that each one is
a new connection the proxy's round robin places (a kept-alive connection stays on the instance it first
reached, and the second instance would never be used).

The rest are small: the time-to-scale rules on hand-made series, the DSL's positioned errors, a query with
no Prometheus refused before anything is sent, a Prometheus the test starts answering the sampler's
queries, and `from: targets` counting the endpoints that answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from scenariokit.cli import main
from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.ir import Instances, MonitorTarget
from scenariokit.compile.pipeline import load_scenario
from scenariokit.ports import free_port
from scenariokit.results.autoscaling import capacity_of, ready_per_second, scale_episodes
from scenariokit.results.runfolder import RunFolder
from scenariokit.run.faultproxy import FaultProxy
from scenariokit.run.instances import InstanceSampler, query_value
from scenariokit_server.launcher import ServerHandle, spawn_server
from tests.test_report import open_in_chromium

QUERY = 'count(up{job="vllm"} == 1)'
SERVER = {"workers": 1, "max_in_flight": 2, "max_queue": 1, "fault": "latency=250ms"}
RATE, CAPACITY, HOLD_S = 10, 7, 3
SPAWN_AFTER_S = 1.0  # after the sampler's first sample: about when the engine starts its load


def needs_prometheus() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's prometheus: .ci/run installs it with apt-get")
        pytest.skip("Debian's prometheus is not installed (apt-get install prometheus)")
    return binary


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def count(self, query: str = QUERY) -> int | None:
        with httpx.Client(timeout=2) as client:
            return query_value(client, self.url, query)[0]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Prometheus, int, int]]:
    """Debian's Prometheus scraping two instance ports every 500 ms as job `vllm` (nothing listens yet)."""
    binary = needs_prometheus()
    ports = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "500ms", "scrape_timeout": "400ms"},
        "scrape_configs": [
            {"job_name": "vllm", "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", process), *ports
    finally:
        process.terminate()
        process.wait(15)


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:g}s: {what}")


SCENARIO = """\
version: 1
name: autoscale
target:
  kind: openai-chat
  base_url: "http://127.0.0.1:{proxy}"
  model: classify
  timeout: 5s
  headers: {{Connection: close}}
load: {{model: open, curve: "ramp(0, {rate}, 2s) -> hold(24s)"}}
data:
  images: {{source: builtin:text-cards, count: 4}}
requests:
  identify: {{prompt: "Name the main object.", image: "{{images}}", max_tokens: 4}}
monitoring:
  prometheus: true
  interval: 500ms
  targets:
    - {{url: "http://127.0.0.1:{port_a}/metrics", role: vllm}}
    - {{url: "http://127.0.0.1:{port_b}/metrics", role: vllm}}
  instances: {{query: '{query}', capacity_per_instance: {capacity}/s, hold: {hold}s}}
slo:
  - error_rate < 100%
engine: k6
"""


@dataclass
class ScaleRun:
    code: int
    summary: dict[str, Any]
    run_dir: Path
    spawned_s: float  # when the test started the second server, seconds from the run's start
    ready_s: float  # when it answered /health 200 (its port opens then), seconds from the run's start
    served_by_second: float  # ok answers the second server counted by the end


@pytest.fixture
def scale_run(tmp_path: Path) -> Iterator[ScaleRun]:
    """The run's own Prometheus (`monitoring.prometheus: true`, Debian's) scrapes both instances as job
    `vllm` (`monitoring.targets` of that role); the second one's port refuses until the test starts it."""
    needs_prometheus()
    port_a, port_b = free_port(), free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    first = spawn_server(port_a, log_path=logs / "a.log", **SERVER)  # type: ignore[arg-type]
    second: list[ServerHandle] = []
    proxy = FaultProxy([("127.0.0.1", port_a), ("127.0.0.1", port_b)], seed=1)
    try:
        first.wait_ready(60)
        scenario = tmp_path / "autoscale.yaml"
        scenario.write_text(SCENARIO.format(proxy=proxy.start(), rate=RATE, query=QUERY, port_a=port_a,
                                            port_b=port_b, capacity=CAPACITY, hold=HOLD_S))  # fmt: skip
        run_dir = tmp_path / "run"
        times: dict[str, float] = {}
        starter = threading.Thread(target=start_second, args=(run_dir, port_b, logs, second, times))
        starter.start()
        code = main(["run", str(scenario), "--out", str(run_dir), "--quiet"])
        starter.join(90)
        served = ok_answers(second[0]) if second else 0.0
        summary = json.loads((run_dir / "summary.json").read_text())
        origin = summary["started_unix"]
        yield ScaleRun(code, summary, run_dir, times["spawned"] - origin, times["ready"] - origin, served)
    finally:
        proxy.stop()
        for handle in (first, *second):
            handle.stop()


def start_second(
    run_dir: Path, port: int, logs: Path, out: list[ServerHandle], times: dict[str, float]
) -> None:
    """Mid-run: SPAWN_AFTER_S after the instance sampler's first line, the second server starts."""
    samples = run_dir / "monitor" / "instances.jsonl"
    wait_for(samples.is_file, 60, "the run's instance samples")
    time.sleep(SPAWN_AFTER_S)
    times["spawned"] = time.time()
    handle = spawn_server(port, log_path=logs / "b.log", **SERVER)  # type: ignore[arg-type]
    out.append(handle)
    handle.wait_ready(60)
    times["ready"] = time.time()


def ok_answers(handle: ServerHandle) -> float:
    text = httpx.get(f"{handle.base_url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total{"))  # fmt: skip


@pytest.mark.engine
@pytest.mark.solo  # times a scale-up against the moment the test started the second server
def test_time_to_scale_follows_the_second_instance_started_mid_run(scale_run: ScaleRun) -> None:
    run = scale_run
    assert run.code == 0, run.summary["exit_detail"]
    auto = run.summary["autoscaling"]
    assert auto["source"] == "query" and auto["query"] == QUERY
    own = json.loads((run.run_dir / "monitor" / "prometheus.json").read_text())["url"]
    assert auto["prometheus_url"] == own  # the run's own: the scenario names none
    assert auto["capacity_source"] == "declared" and auto["capacity_per_instance"] == CAPACITY
    assert auto["unread"] == 0, auto["first_error"]
    # the series: one instance until Prometheus saw the second one's port open, then two; Prometheus
    # scrapes every 500 ms and the sampler reads it every 500 ms, so the change lags the port by <= ~1 s
    points = [(p["t_s"], p["ready"]) for p in auto["instances"]]
    assert points[0][1] == 1 and points[-1][1] == 2, points
    rose = next(t for t, ready in points if ready == 2)
    assert run.ready_s - 1.0 <= rose <= run.ready_s + 2.0, (points, run.ready_s)
    # started by the test as the load began, up once the load had passed one instance's capacity (1-2 s)
    assert run.spawned_s < rose and run.ready_s > 2.0, (run.spawned_s, run.ready_s)
    # one episode: the ramp passes 7/s in its second second (7.5/s at 1.5 s), and ends when throughput
    # caught up with two instances ready: not before the second instance was up (the first cannot serve
    # 10/s), and at most ~1 s of Prometheus lag + 1 s of whole seconds + 2 s of slack after it
    (episode,) = auto["episodes"]
    assert episode["start_s"] in (1, 2) and episode["ready_at_start"] == 1, episode
    assert episode["cause"] == "scaled" and episode["ready_at_end"] == 2, episode
    caught = episode["caught_up_s"]
    assert run.ready_s - 1.0 <= caught <= run.ready_s + 4.0, (episode, run.ready_s)
    assert auto["time_to_scale_s"] == episode["time_to_scale_s"] == caught - episode["start_s"]
    # the scale-up was needed and happened: one instance fell short of the rate, the second one served
    timeline = seconds_ok(run.run_dir, run.summary)
    before = [timeline[s] for s in range(2, int(run.ready_s))]  # the hold at 10/s, one instance up
    assert sum(before) / len(before) < (1 - auto["band"]) * RATE, before
    assert run.served_by_second > 0
    # the report draws the ready instances right under the load plot, with no console message
    dom, console = open_in_chromium(run.run_dir / "report.html", run.run_dir.parent)
    assert console == [], console
    assert dom.index('id="plot-load"') < dom.index('id="plot-instances"') < dom.index('id="plot-latency"')
    drawn = dom.split('id="plot-instances"', 1)[1].split('id="plot-', 1)[0]
    assert 'class="main-svg"' in drawn and "time to scale" in drawn
    assert "## Autoscaling" in (run.run_dir / "summary.md").read_text()


def seconds_ok(run_dir: Path, summary: dict[str, Any]) -> list[int]:
    counts = [0] * 40
    for batch in RunFolder(run_dir).records():
        for r in batch:
            second = int(r.t - summary["started_unix"])
            if r.ok and 0 <= second < len(counts):
                counts[second] += 1
    return counts


# --- the rules on hand-made series ------------------------------------------------------------------


def samples(*points: tuple[float, int | None]) -> list[dict[str, Any]]:
    return [{"t": 100.0 + t, "ready": r} for t, r in points]


def episodes(
    offered: list[float], ok: list[int], points: list[dict[str, Any]], capacity: float = 6.0
) -> list:
    ready = ready_per_second(points, 100.0, len(offered))
    return scale_episodes(offered, ok, ready, capacity, 0.1, 3.0, points, 100.0)


def test_an_episode_runs_from_overload_to_three_caught_up_seconds_with_more_instances() -> None:
    offered = [5.0, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    ok = [5, 6, 6, 6, 6, 10, 9, 10, 10, 10]
    (e,) = episodes(offered, ok, samples((0, 1), (4.2, 2)))
    assert (e.start_s, e.caught_up_s, e.time_to_scale_s, e.cause, e.scaled_s) == (1, 5, 4.0, "scaled", 4.2)


def test_a_second_below_the_band_restarts_the_hold() -> None:
    offered = [10.0] * 10
    ok = [6, 6, 10, 10, 8, 10, 10, 10, 10, 10]  # 8 < 9: the run of caught-up seconds starts again
    (e,) = episodes(offered, ok, samples((0, 1), (1.9, 2)))
    assert (e.start_s, e.caught_up_s) == (0, 5)


def test_load_that_falls_back_ends_the_episode_without_scaling() -> None:
    offered = [10.0, 10, 4, 4, 4, 4]
    (e,) = episodes(offered, [6, 6, 4, 4, 4, 4], samples((0, 1)))
    assert (e.cause, e.caught_up_s, e.ready_at_end) == ("load fell", 2, 1)


def test_an_episode_the_run_never_closes_has_no_time_to_scale() -> None:
    (e,) = episodes([10.0] * 6, [6] * 6, samples((0, 1), (2, 2)))  # two ready, yet ok stays short
    assert (e.caught_up_s, e.time_to_scale_s, e.cause) == (None, None, "not caught up")


def test_unknown_counts_are_not_judged_and_two_episodes_are_kept_apart() -> None:
    offered = [10.0] * 4 + [20.0] * 6 + [30.0] * 3
    ok = [10] * 4 + [12, 12, 20, 20, 20, 20] + [24] * 3
    points = samples((0.9, 2), (5.5, 4))  # second 0: before the first sample, unknown (not judged)
    first, second = episodes(offered, ok, points)
    assert (first.start_s, first.ready_at_start, first.caught_up_s, first.cause) == (4, 2, 6, "scaled")
    assert (second.start_s, second.ready_at_start, second.caught_up_s) == (10, 4, None)


def test_the_capacity_is_declared_or_the_knee_over_the_instances_ready_there() -> None:
    assert capacity_of(5.0, (12.0, 40.0, [0, 1, 2]), [2, 2, 2])[:2] == (5.0, "declared")
    per, source, note = capacity_of(None, (12.0, 40.0, [0, 1, 2]), [2, None, 2])
    assert (per, source) == (6.0, "knee") and "12.00 ok/s at 40 with 2 instance(s)" in note
    assert capacity_of(None, (None, None, []), [1, 1])[:2] == (None, None)
    assert capacity_of(None, (12.0, 40.0, [5]), [1, 1])[:2] == (None, None)  # no count read at the knee


def test_the_ready_count_is_the_last_sample_at_or_before_each_seconds_middle() -> None:
    points = samples((0.2, 1), (1.5, None), (1.6, 3), (3.9, 2))
    assert ready_per_second(points, 100.0, 5) == [1, None, 3, 3, 2]


# --- the DSL ----------------------------------------------------------------------------------------

BASE = """\
version: 1
name: dsl
target: {{base_url: "http://127.0.0.1:9", model: classify}}
load: {{curve: "hold(2, 5s)"}}
requests:
  a: {{prompt: hi}}
monitoring:
  targets: [{{url: "http://127.0.0.1:9400/metrics", role: dcgm}}]
  instances: {body}
"""
ROWS = [
    ("two-sources", "{query: up, from: targets, role: dcgm}", 9, 26, "one source"),
    ("no-source", "{capacity_per_instance: 5/s}", 9, 3, "one source"),
    ("role-missing", "{from: targets}", 9, 15, "needs a `role`"),
    (
        "role-not-listed",
        "{from: targets, role: vllm}",
        9,
        36,
        "no `monitoring.targets` endpoint has the role",
    ),
    ("role-with-query", "{query: up, role: dcgm}", 9, 26, "`role` goes with `from: targets`"),
    (
        "prometheus-with-targets",
        "{from: targets, role: dcgm, prometheus: 'http://x:9090'}",
        9,
        42,
        "goes with a",
    ),
    ("credentials", "{query: up, prometheus: 'http://u:p@x:9090'}", 9, 39, "holds credentials"),
    ("crlf-url", '{query: up, prometheus: "http://x:9090/\\r\\nX: y"}', 9, 39, "control character"),
    ("not-http", "{query: up, prometheus: 'file:///etc/passwd'}", 9, 39, "not an http(s) URL"),
    ("nul-in-query", '{query: "up\\0"}', 9, 23, "control character U+0000"),
    ("blank-query", "{query: '  '}", 9, 23, "the query is empty"),
    ("rate-without-unit", "{query: up, capacity_per_instance: 50}", 9, 49, "a rate needs a unit"),
    ("zero-capacity", "{query: up, capacity_per_instance: 0/s}", 9, 49, "above 0/s"),
    ("band-too-wide", "{query: up, band: 60%}", 9, 32, "out of range"),
    ("hold-too-short", "{query: up, hold: 100ms}", 9, 32, "out of range"),
    ("unknown-key", "{query: up, capcity: 5/s}", 9, 26, "unknown key `capcity`"),
]


@pytest.mark.parametrize(
    ("body", "line", "column", "fragment"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_a_bad_instances_section_is_a_positioned_error(
    tmp_path: Path, body: str, line: int, column: int, fragment: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE.format(body=body))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    found = [(d.span.line, d.span.column, d.message) for d in info.value.diagnostics]
    assert any((ln, col) == (line, column) and fragment in msg for ln, col, msg in found), found


def test_the_query_is_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    query = 'count(up{job="vllm", instance=~".*:80\\\\d+"} == 1) # "quotes" and {braces}'
    path.write_text(BASE.format(body=json.dumps({"query": query, "capacity_per_instance": "1.5/s"})))
    instances = load_scenario(path).scenario.monitoring.instances
    assert instances is not None and instances.query == query and instances.capacity_per_instance == 1.5


@pytest.mark.engine  # reaches `scenariokit run` (refused before any load)
def test_a_query_without_a_prometheus_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE.format(body="{query: up}"))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert "needs a Prometheus" in capsys.readouterr().err and not out.exists()


# --- the sampler against real endpoints -------------------------------------------------------------


def test_the_sampler_reads_prometheus_answers(prometheus: tuple[Prometheus, int, int]) -> None:
    prom = prometheus[0]
    wait_for(lambda: httpx.get(f"{prom.url}/-/ready", timeout=1).status_code == 200, 30, "prometheus")
    with httpx.Client(timeout=2) as client:
        wait_for(lambda: query_value(client, prom.url, "count(up == 0)")[0] == 2, 10, "two targets down")
        assert query_value(client, prom.url, QUERY) == (0, None)  # count() of nothing: none up
        assert query_value(client, prom.url, "scalar(vector(3))") == (3, None)
        # sent as written: quotes, a regex, `&`, `?`, `=` and a comment reach Prometheus whole (pasted into
        # the URL, `#` would cut the query and `&` would split it into parameters)
        hostile = 'count(up{job="vllm", instance=~".+:\\\\d+"} == 0) # comment & ?query=up'
        assert query_value(client, prom.url, hostile) == (2, None)
        assert (
            query_value(client, prom.url, "up")[1]
            == "the query returned 2 series; wrap it in count() or sum()"
        )
        value, error = query_value(client, prom.url, "count(up{")
        assert value is None and error is not None and "refused the query (400)" in error
        closed = f"http://127.0.0.1:{free_port()}"
        assert query_value(client, closed, QUERY)[1].startswith("Prometheus did not answer")  # type: ignore[union-attr]


def test_from_targets_counts_the_endpoints_of_the_role_that_answer(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    Gauge("vllm:num_requests_running", "running", registry=registry).set(1)
    port, down = free_port(), free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        targets = (
            MonitorTarget("a", f"http://127.0.0.1:{port}/metrics", "vllm"),
            MonitorTarget("b", f"http://127.0.0.1:{down}/metrics", "vllm"),
            MonitorTarget("c", f"http://127.0.0.1:{port}/metrics", "dcgm"),  # another role: not counted
        )
        spec = Instances(source="targets", role="vllm")
        with InstanceSampler(tmp_path, spec, None, targets, 0.2):
            time.sleep(0.5)
    finally:
        server.shutdown()
        thread.join(5)
    lines = [json.loads(line) for line in (tmp_path / "monitor" / "instances.jsonl").read_text().splitlines()]
    assert len(lines) >= 2 and {line["ready"] for line in lines} == {1}
    described = json.loads((tmp_path / "monitor" / "instances.json").read_text())
    assert described["counted"] == ["a", "b"] and described["source"] == "targets"


@pytest.mark.parametrize(
    "answer",
    [
        b'{"status": "success", "data": [1, 2]}',
        b'{"status": "success", "data": {"resultType": "vector", "result": [{"value": "x"}]}}',
        b'{"status": "success", "data": {"resultType": "scalar", "result": [0, "NaN"]}}',
        b'{"status": "success", "data": {"resultType": "scalar", "result": [0, "-1"]}}',
        b'{"status": "success", "data": {"resultType": "matrix", "result": []}}',
        b"[]",
        b"<html>not json</html>",
    ],
)
def test_an_answer_that_is_not_a_count_is_an_error_in_the_sample_not_a_crash(answer: bytes) -> None:
    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(timeout=2) as client:
            value, error = query_value(client, f"http://127.0.0.1:{server.server_port}", QUERY)
    finally:
        server.shutdown()
    assert value is None and error, (value, error)
