"""A third engine, defined only in tests/support/echo_engine (one package) and registered with one line,
validates, compiles, appears in the schema and runs end to end through the runner: the shared code knows
engines only through the registry and the Engine class."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.schema import scenario_schema_text
from scenariokit.engines import engine_names, register, unregister
from tests.support.loopback import LoopbackServer

SCENARIO = """\
version: 1
name: third
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(1, 2s)", think_time: none}}
requests:
  a: {{weight: 3, path: /a}}
  b: {{weight: 1, path: /b}}
slo: ["error_rate < 50%", "p95(ttfb) < 1s"]
engine: {engine}
"""


@pytest.fixture
def echo() -> Iterator[str]:
    register("echo", "tests.support.echo_engine:EchoEngine")  # the one registry line
    yield "echo"
    unregister("echo")


def write(tmp_path: Path, engine: str, url: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "third.yaml"
    path.write_text(SCENARIO.format(url=url, engine=engine))
    return path


def test_the_third_engine_validates_and_appears_in_the_schema(echo: str, tmp_path: Path) -> None:
    assert main(["validate", str(write(tmp_path, echo))]) == 0
    assert echo in engine_names()
    engine_field = json.loads(scenario_schema_text())["properties"]["engine"]
    assert engine_field["enum"] == ["locust", "k6", "echo"]


def test_an_unregistered_engine_is_a_positioned_error_naming_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(write(tmp_path, "ekho"))]) == 2
    out = capsys.readouterr().err
    assert "third.yaml:9:9: error: `ekho` is not allowed for `engine`" in out
    assert "'locust' or 'k6'" in out


def test_an_unregistered_engine_fails_until_registered(tmp_path: Path) -> None:
    assert main(["validate", str(write(tmp_path, "echo"))]) == 2


def test_the_third_engine_compiles(echo: str, tmp_path: Path) -> None:
    assert main(["compile", str(write(tmp_path, echo)), "-o", str(tmp_path / "build")]) == 0
    plan = json.loads((tmp_path / "build" / "third.echo.json").read_text())
    assert [r["name"] for r in plan["requests"]] == ["a", "b"]


@pytest.mark.engine
def test_the_runner_runs_and_judges_the_third_engine(echo: str, tmp_path: Path) -> None:
    with LoopbackServer() as server:
        code = main(
            ["run", str(write(tmp_path, echo, server.url)), "--out", str(tmp_path / "run"), "--quiet"]
        )
        served = server.count("/a") + server.count("/b")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert code == 0, summary
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["engine"] == "echo" and meta["engine_version"] == "echo 1"
    assert summary["by_request"]["a"]["requests"] + summary["by_request"]["b"]["requests"] == served > 10
    statuses = {v["slo"]: v["status"] for v in summary["verdicts"]}
    # the engine's capability table, not its name, makes TTFB "not measured"
    assert statuses == {"error_rate < 50%": "pass", "p95(ttfb) < 1s": "not_measured"}
