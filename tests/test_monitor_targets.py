"""`monitoring.targets`: each listed endpoint scraped on the monitor's tick into monitor/targets/<name>.jsonl,
and memory_growth read from the `process`-role targets' summed `process_resident_memory_bytes`.

The exporters are tiny real HTTP servers on loopback whose RSS grows by a set step at every scrape; the run
is a real `scenariokit run` (k6) against the loopback target.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import numpy as np
import pytest

from scenariokit.cli import main
from scenariokit.compile.expr import parse_slo
from scenariokit.compile.ir import Stage
from scenariokit.results.trend import judge_trend, memory_series
from tests.support.loopback import LoopbackServer

MiB = 1024 * 1024


class Exporter:
    """Prometheus text with process_* (RSS = base + step x scrapes served so far), a node_* series and a
    series of neither kind, on 127.0.0.1."""

    def __init__(self, base: float, step: float) -> None:
        self.base, self.step, self.scrapes = base, step, 0
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with exporter._lock:
                    rss = exporter.base + exporter.step * exporter.scrapes
                    exporter.scrapes += 1
                body = (
                    "# TYPE process_resident_memory_bytes gauge\n"
                    f"process_resident_memory_bytes {rss}\n"
                    "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n"
                    "# TYPE node_load1 gauge\nnode_load1 0.25\n"
                    "# TYPE go_goroutines gauge\ngo_goroutines 7\n"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def __enter__(self) -> Exporter:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


SCENARIO = """\
version: 1
name: targets
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "ramp(0, 2, 1s) -> hold(10s) as steady", think_time: constant(50ms)}}
requests:
  a: {{path: /a}}
slo:
  - memory_growth < 1GB/h
monitoring:
  interval: 500ms
  targets:
    - {{url: "{leaky}", role: process, name: server}}
    - {{url: "{flat}", role: process, name: sidecar}}
    - {{url: "{flat}", role: node}}
"""


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.engine
def test_a_run_scrapes_each_target_and_judges_their_summed_rss(tmp_path: Path) -> None:
    """A fake server leaking 4 MiB a scrape (2 a second: about 28 GiB/h) beside a flat sidecar: the run
    fails `memory_growth < 1GB/h`, and the verdict says it read the process targets."""
    with LoopbackServer() as target, Exporter(300 * MiB, 4 * MiB) as leaky, Exporter(50 * MiB, 0) as flat:
        path = tmp_path / "targets.yaml"
        path.write_text(SCENARIO.format(url=target.url, leaky=leaky.url, flat=flat.url))
        code = main(["run", str(path), "--engine", "k6", "--out", str(tmp_path / "run"), "--quiet"])
        leaky_scrapes = leaky.scrapes
    monitor = tmp_path / "run" / "monitor"
    assert json.loads((monitor / "targets.json").read_text())[2] == {
        "name": "node-3",
        "url": flat.url,
        "role": "node",
    }
    server = lines(monitor / "targets" / "server.jsonl")
    assert len(server) == leaky_scrapes >= 16  # every scrape written, about 2 a second over 11 s
    assert all(s["scrape"] == "ok" and s["status"] == 200 and s["up"] for s in server)
    # each role keeps its own series: process_* here, node_* there, go_* nowhere
    assert set(server[0]["metrics"]) == {"process_resident_memory_bytes", "process_cpu_seconds_total"}
    assert set(lines(monitor / "targets" / "node-3.jsonl")[0]["metrics"]) == {"node_load1"}
    rss = [s["metrics"]["process_resident_memory_bytes"] for s in server]
    assert rss == [300 * MiB + 4 * MiB * i for i in range(len(rss))]

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (verdict,) = summary["verdicts"]
    assert code == 1 and verdict["status"] == "fail", verdict["explanation"]
    assert verdict["low"] > 1e9  # the leak's slope, far above the limit
    assert "summed over the process targets" in verdict["rule"]
    assert "monitor/targets/server.jsonl" in verdict["rule"]
    assert "monitor/targets/sidecar.jsonl" in verdict["rule"]
    (trend,) = summary["trends"]
    assert min(trend["y"]) > 350 * MiB  # the sidecar's 50 MiB is in every bucket's sum


# --- the series, from files written as the monitor writes them -------------------------------------------

STAGES = (Stage("ramp", "r", 60, 0, 3), Stage("hold", "soak", 600, 3, 3))


def write_target(run_dir: Path, name: str, rss: np.ndarray) -> None:
    folder = run_dir / "monitor" / "targets"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.jsonl").open("w") as out:
        for t, value in enumerate(rss):
            metrics = {"process_resident_memory_bytes": float(value)}
            out.write(
                json.dumps({"t": float(t), "scrape": "ok", "status": 200, "up": True, "metrics": metrics})
            )
            out.write("\n")


def write_listing(run_dir: Path, roles: dict[str, str]) -> None:
    listing = [{"name": n, "url": "http://127.0.0.1:1/metrics", "role": r} for n, r in roles.items()]
    (run_dir / "monitor" / "targets.json").write_text(json.dumps(listing))


def test_the_process_targets_are_summed_and_other_roles_left_out(tmp_path: Path) -> None:
    t = np.arange(660.0)
    write_target(tmp_path, "a", 100e6 + t * 1e3)
    write_target(tmp_path, "b", np.full(660, 200e6))
    write_target(tmp_path, "gpu", np.full(660, 9e9))  # a dcgm exporter's file: not the target's memory
    write_listing(tmp_path, {"a": "process", "b": "process", "gpu": "dcgm"})
    mids, y = memory_series(tmp_path, 0.0, (60.0, 660.0), 15.0)
    assert len(mids) == 40
    np.testing.assert_allclose(y, 300e6 + mids * 1e3 - 0.5e3)  # a bucket's mean: its mid-point less half


def test_a_bucket_missing_one_target_is_left_out_not_summed_short(tmp_path: Path) -> None:
    rss = np.full(660, 100e6)
    write_target(tmp_path, "a", rss)
    write_target(tmp_path, "b", rss)
    with (tmp_path / "monitor" / "targets" / "b.jsonl").open("w") as out:  # b down for 100..200 s
        for t in [*range(100), *range(200, 660)]:
            sample = {"t": float(t), "metrics": {"process_resident_memory_bytes": 100e6}}
            out.write(json.dumps(sample) + "\n")
        out.write('{"t": 659.5, "metr')  # a line cut by a crash
    write_listing(tmp_path, {"a": "process", "b": "process"})
    mids, y = memory_series(tmp_path, 0.0, (60.0, 660.0), 15.0)
    assert np.all(y == 200e6) and len(mids) == 40 - 6  # 105..195 s: six buckets without b


@pytest.mark.parametrize(("step", "status"), [(0.0, "pass"), (3e3, "fail")])
def test_the_verdict_reads_the_process_targets_not_the_target(
    tmp_path: Path, step: float, status: str
) -> None:
    """The target's own /metrics (monitor/target.jsonl) leaks; the listed process target is flat, or
    leaks 3 kB/s (10.8 MB/h): the listed one decides."""
    rng = np.random.default_rng(3)
    t = np.arange(660.0)
    write_target(tmp_path, "server", 500e6 + step * t + rng.normal(0, 2e5, 660))
    write_listing(tmp_path, {"server": "process"})
    with (tmp_path / "monitor" / "target.jsonl").open("w") as out:
        for second in t:
            sample = {"t": second, "metrics": {"process_resident_memory_bytes": 1e8 + 1e6 * second}}
            out.write(json.dumps(sample) + "\n")
    v = judge_trend(parse_slo("memory_growth < 5MB/h"), [], tmp_path, 0.0, 660.0, STAGES, 0.95).verdict
    assert v.status == status, v.explanation
    assert "monitor/targets/server.jsonl" in v.rule


def test_without_process_targets_the_target_own_metrics_are_read(tmp_path: Path) -> None:
    (tmp_path / "monitor").mkdir()
    write_listing(tmp_path, {"node-1": "node"})
    with (tmp_path / "monitor" / "target.jsonl").open("w") as out:
        for second in range(660):
            sample = {"t": float(second), "metrics": {"process_resident_memory_bytes": 1e8 + 1e4 * second}}
            out.write(json.dumps(sample) + "\n")
    v = judge_trend(parse_slo("memory_growth < 5MB/h"), [], tmp_path, 0.0, 660.0, STAGES, 0.95).verdict
    assert v.status == "fail" and "monitor/target.jsonl" in v.rule, v.rule
