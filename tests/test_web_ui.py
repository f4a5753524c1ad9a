"""`scenariokit run --web` (issue 19): the engine's own web UI on 127.0.0.1 while the run starts by itself
and records as usual. Locust's UI is fetched during a short real run against a loopback target; k6's web
dashboard is checked in its launch (its page answered the same way by hand: a 307 to /ui)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from scenariokit.cli import main
from scenariokit.engines import get_engine
from scenariokit.engines.base import LaunchPlan
from scenariokit.ports import free_port
from scenariokit.results.store import load_records
from tests.support.loopback import LoopbackServer

SCENARIO = """\
version: 1
name: web
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "ramp(0, 2, 1s) -> hold(5s)", think_time: constant(100ms)}}
requests:
  a: {{path: /a}}
"""


def watch(url: str, seen: list[tuple[int, dict]], stop: threading.Event) -> None:
    """Polls the UI's page and its stats while the run goes: what a user watching it would see."""
    while not stop.is_set():
        try:
            page = httpx.get(url + "/", timeout=1)
            stats = httpx.get(url + "/stats/requests", timeout=1).json()
            if b"<html" in page.content.lower():
                seen.append((page.status_code, stats))
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.25)


@pytest.mark.engine
def test_locusts_web_ui_shows_the_run_while_the_runner_records_it(tmp_path: Path) -> None:
    port = free_port()
    seen: list[tuple[int, dict]] = []
    stop = threading.Event()
    with LoopbackServer() as server:
        path = tmp_path / "web.yaml"
        path.write_text(SCENARIO.format(url=server.url))
        watcher = threading.Thread(target=watch, args=(f"http://127.0.0.1:{port}", seen, stop), daemon=True)
        watcher.start()
        try:
            argv = ["run", str(path), "--web", "--web-port", str(port), "--out", str(tmp_path / "run")]
            code = main([*argv, "--quiet"])
        finally:
            stop.set()
            watcher.join(5)
        served = server.total()
    assert code == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["exit_reason"] == "completed"
    # recorded as a headless run is (the same gap as tests/test_run.py allows, measured the same headless)
    assert 0 <= served - len(load_records(tmp_path / "run")) <= 8
    assert seen and all(status == 200 for status, _ in seen)
    running = [stats for _, stats in seen if stats.get("state") == "running"]
    assert running and max(stats["user_count"] for stats in running) == 2  # the shape started by itself
    assert max(row["num_requests"] for stats in running for row in stats["stats"]) > 0


def test_the_web_ui_listens_on_loopback_only() -> None:
    plan = LaunchPlan(Path("s.py"), "http://127.0.0.1:9", Path("raw"), 10.0, web_port=8089)
    argv = get_engine("locust").launch(plan).argv
    assert "--headless" not in argv and "--autostart" in argv
    assert argv[argv.index("--web-host") + 1] == "127.0.0.1" and argv[argv.index("--web-port") + 1] == "8089"
    assert argv[argv.index("--autoquit") + 1] == "0"  # Locust ends with its shape, as headless
    env = get_engine("k6").launch(plan).env
    assert (env["K6_WEB_DASHBOARD"], env["K6_WEB_DASHBOARD_HOST"]) == ("true", "127.0.0.1")
    assert env["K6_WEB_DASHBOARD_PORT"] == "8089"
    headless = get_engine("locust").launch(LaunchPlan(Path("s.py"), "http://x", Path("raw"), 10.0)).argv
    assert "--headless" in headless and "--web-port" not in headless


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1", "80a"])
def test_a_web_port_that_is_not_a_port_is_refused(port: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "x.yaml", "--web", "--web-port", port])
    assert exit_.value.code == 2


def test_a_web_port_in_use_is_refused_before_any_load(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(SCENARIO.format(url="http://127.0.0.1:9"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["run", str(path), "--web", "--web-port", str(port), "--out", str(tmp_path / "run")])
    assert code == 2
    assert not (tmp_path / "run").exists()
