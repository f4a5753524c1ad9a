"""`scenariokit run --web` (issue 19): the engine's own web UI on 127.0.0.1 while the run starts by itself
and records as usual. Locust's UI is watched during a real run in tests/test_guide_workflow.py (one run
serves both); here its command line, k6's web dashboard in its launch (its page answered by hand during a
run: a 307 to /ui), and the flags refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.engines import get_engine
from scenariokit.engines.base import LaunchPlan

SCENARIO = """\
version: 1
name: web
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "ramp(0, 2, 1s) -> hold(5s)", think_time: constant(100ms)}}
requests:
  a: {{path: /a}}
"""


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


@pytest.mark.engine  # reaches `scenariokit run` (refused before any engine starts)
@pytest.mark.parametrize("port", ["0", "65536", "http", "-1", "80a"])
def test_a_web_port_that_is_not_a_port_is_refused(port: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "x.yaml", "--web", "--web-port", port])
    assert exit_.value.code == 2


@pytest.mark.engine  # reaches `scenariokit run` (refused before any engine starts)
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
