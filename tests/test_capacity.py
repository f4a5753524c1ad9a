"""`scenariokit calibrate` and `plan --capacity` (issue 17): the calibration file's reading (stale, foreign,
hostile), the capacity arithmetic on round figures, the million-user example planned, and a plan checked
against a measured run of the real engines."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.ir import Scenario
from scenariokit.compile.pipeline import load_scenario
from scenariokit.exitcodes import ExitCode
from scenariokit.run.calibrate import (
    Calibration,
    CalibrationError,
    EngineCost,
    calibration_path,
    cost_from_points,
    host_facts,
    load_calibration,
    local_server,
    run_measured,
)
from scenariokit.run.capacity import Machine, capacity_plan, peak_rate_and_users

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


def scenario(tmp_path: Path, curve: str, think: str, latency: str = "100ms", name: str = "s") -> Scenario:
    source = tmp_path / f"{name}.yaml"
    source.write_text(
        f"version: 1\nname: {name}\ntarget: {{kind: http, base_url: 'http://127.0.0.1:9'}}\n"
        f"load: {{curve: '{curve}', think_time: '{think}', expected_latency: {latency}}}\n"
        "requests:\n  a: {path: /}\n",
        encoding="utf-8",
    )
    return load_scenario(source).scenario


def calibration(per_user_mib: float = 1.0) -> Calibration:
    costs = {
        name: EngineCost(name, "test", 1000.0, 100.0 * MIB, per_user_mib * MIB) for name in ("k6", "locust")
    }
    return Calibration(dt.datetime.now(dt.UTC).isoformat(), host_facts(), costs)


# --- the arithmetic ----------------------------------------------------------------------------------


def test_capacity_on_round_figures(tmp_path: Path) -> None:
    # 9,000 users each sending one request per 0.9 s think + 0.1 s latency: 9,000 requests/s; at 1,000
    # requests per core-second and cores used to 90%, 10 cores
    s = scenario(tmp_path, "hold(9000, 1m)", "constant(900ms)")
    plan = capacity_plan(s, calibration(), Machine(cores=4, memory_bytes=16 * 2**30))
    layouts = {layout.engine: layout for layout in plan.layouts}
    assert plan.rate == pytest.approx(9000) and plan.users == 9000
    locust, k6 = layouts["locust"], layouts["k6"]
    assert locust.cores == pytest.approx(10) and k6.cores == pytest.approx(10)
    # Locust: a process a core, 10 workers on 3 machines of 4 cores; memory is 10 bases + 9,000 users
    assert (locust.workers, locust.machines, locust.per_machine_workers, locust.binds) == (10, 3, 4, "cpu")
    assert locust.memory_bytes == pytest.approx((10 * 100 + 9000) * MIB)
    # k6: one instance a machine, each its own base
    assert (k6.workers, k6.machines, k6.binds) == (3, 3, "cpu")
    assert k6.memory_bytes == pytest.approx((3 * 100 + 9000) * MIB)


def test_memory_binds_when_users_cost_more_than_a_machine_holds(tmp_path: Path) -> None:
    s = scenario(tmp_path, "hold(9000, 1m)", "constant(900ms)")
    plan = capacity_plan(s, calibration(per_user_mib=10.0), Machine(cores=4, memory_bytes=16 * 2**30))
    k6 = next(layout for layout in plan.layouts if layout.engine == "k6")
    usable = 16 * 2**30 * 0.8 - 100 * MIB  # what an instance's users may take on one machine
    assert k6.binds == "memory" and k6.machines == math.ceil(9000 * 10 * MIB / usable) == 7
    assert k6.workers == 7 and k6.machines_for_cpu == 3


def test_an_open_model_plans_its_arrival_rate(tmp_path: Path) -> None:
    source = tmp_path / "open.yaml"
    source.write_text(
        "version: 1\nname: o\ntarget: {kind: http, base_url: 'http://127.0.0.1:9'}\n"
        "load: {model: open, curve: 'hold(2000/s, 1m)', expected_latency: 50ms}\nrequests:\n  a: {path: /}\n",
        encoding="utf-8",
    )
    rate, users = peak_rate_and_users(load_scenario(source).scenario)
    assert rate == pytest.approx(2000) and users >= 2000 * 0.05  # Little's law, or the pre-allocated pool


def test_the_million_user_example_gets_a_layout(tmp_path: Path) -> None:
    s = load_scenario(ROOT / "scenarios" / "million-users.yaml").scenario
    plan = capacity_plan(s, calibration(per_user_mib=0.5), Machine(cores=32, memory_bytes=128 * 2**30))
    assert plan.users == 1_000_000 and plan.rate == pytest.approx(1_000_000 / 1.55)
    for layout in plan.layouts:
        assert layout.machines >= max(layout.machines_for_cpu, layout.machines_for_memory) > 1
        assert layout.workers >= layout.machines


def test_plan_capacity_prints_a_layout_per_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(calibration().as_json(), encoding="utf-8")
    args = ["plan", str(ROOT / "scenarios" / "million-users.yaml"), "--capacity", "--calibration", str(path)]
    assert main([*args, "--machine-cores", "32", "--machine-memory", "128GiB"]) == ExitCode.OK
    text = capsys.readouterr().out
    assert "645,161 requests/s from 1,000,000 users" in text
    assert "k6: " in text and "locust: " in text and "binds" in text


# --- the calibration file ----------------------------------------------------------------------------


def test_calibration_lives_in_the_xdg_cache() -> None:
    assert calibration_path({"XDG_CACHE_HOME": "/c"}) == Path("/c/scenariokit/calibration.json")
    assert calibration_path({}) == Path.home() / ".cache" / "scenariokit" / "calibration.json"


def test_a_fresh_calibration_of_this_host_reads_back_without_warnings(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(calibration().as_json(), encoding="utf-8")
    read, warnings = load_calibration(path)
    assert warnings == [] and read.engines["k6"].memory_per_user_bytes == MIB


def test_a_stale_or_foreign_calibration_is_warned(tmp_path: Path) -> None:
    data = json.loads(calibration().as_json())
    data["created"] = (dt.datetime.now(dt.UTC) - dt.timedelta(days=45)).isoformat()
    data["host"]["cpu_model"] = "Some Other CPU"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    _, warnings = load_calibration(path)
    assert any("45 days old" in w for w in warnings)
    assert any("another host (cpu_model differ)" in w for w in warnings)


def _with(figure: str, value: object) -> str:
    data = json.loads(calibration().as_json())
    data["engines"]["k6"][figure] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"format": 2}',
        json.dumps({"format": 1, "created": "2026-01-01T00:00:00"}),  # no host, no engines
        _with("requests_per_core_s", 0),  # a plan divides by it
        _with("requests_per_core_s", -5),
        _with("requests_per_core_s", "fast"),
        _with("requests_per_core_s", True),
        _with("requests_per_core_s", 1e-300),  # a fleet of 10^300 machines
        _with("requests_per_core_s", 1e300),
        _with("memory_per_user_bytes", 1e30),
        _with("memory_per_user_bytes", float("nan")),
        _with("memory_per_user_bytes", float("inf")),
        _with("memory_base_bytes", None),
        json.dumps({**json.loads(calibration().as_json()), "created": "yesterday"}),
    ],
    # fixed ids: the texts hold the time they were made, and xdist's workers must collect the same names
    ids=[
        "not-json",
        "a-list",
        "format-2",
        "no-host-no-engines",
        "rate-0",
        "rate-negative",
        "rate-text",
        "rate-bool",
        "rate-tiny",
        "rate-huge",
        "memory-huge",
        "memory-nan",
        "memory-inf",
        "base-null",
        "created-not-a-date",
    ],
)
def test_a_broken_calibration_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalibrationError):
        load_calibration(path)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--calibration", "{missing}"], "no calibration at"),
        (["--calibration", "{broken}"], "not a scenariokit calibration"),
        (["--calibration", "{good}", "--machine-memory", "64XB"], "not a memory size"),
        (["--calibration", "{good}", "--machine-memory", "1e400GiB"], "not a memory size"),
        (["--calibration", "{good}", "--machine-memory", "0GiB"], "not a memory size"),
        (["--calibration", "{good}", "--machine-cores", "0"], "a whole number of 1 or more"),
    ],
)
def test_capacity_flags_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    (tmp_path / "broken.json").write_text("[]", encoding="utf-8")
    (tmp_path / "good.json").write_text(calibration().as_json(), encoding="utf-8")
    paths = {k: str(tmp_path / f"{k}.json") for k in ("missing", "broken", "good")}
    argv = ["plan", str(ROOT / "scenarios" / "million-users.yaml"), "--capacity"]
    argv += [f.format(**paths) for f in flags]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusal of a flag's type
        code = int(exc.code or 0)
    assert code == ExitCode.INVALID_SCENARIO
    assert says in capsys.readouterr().err


def test_cost_is_a_line_through_two_counts() -> None:
    from scenariokit.run.calibrate import Point

    points = (Point(40, 0.2, 3, 600, 0.5, 60 * MIB), Point(240, 0.2, 3, 3400, 1.5, 260 * MIB))
    cost = cost_from_points("k6", "v", points)
    assert cost.memory_per_user_bytes == pytest.approx(MIB)
    assert cost.memory_base_bytes == pytest.approx(20 * MIB)
    assert cost.requests_per_core_s == pytest.approx(4000 / 2.0)


# --- against a measured run ----------------------------------------------------------------------------


@pytest.mark.engine
@pytest.mark.solo
@pytest.mark.parametrize("engine", ["k6", "locust"])
def test_a_small_plan_is_within_20_percent_of_a_measured_run(engine: str, tmp_path: Path) -> None:
    """`scenariokit calibrate` (40 and 240 users, 3 s holds), then the plan for 70 users predicts a run's
    rate and memory within 20%. The calibration and the run are measured here, one after the other against
    servers of one kind, so that the comparison is of paired figures on whatever load the shared host
    carries at the time (a calibration from another hour would carry that hour's noise)."""
    stored = tmp_path / "calibration.json"
    assert main(["calibrate", "--engine", engine, "--seconds", "3", "-o", str(stored)]) == ExitCode.OK
    calibration, warnings = load_calibration(stored)
    assert warnings == [] and set(calibration.engines) == {engine}
    assert [p.users for p in calibration.engines[engine].points] == [40, 240]
    # held as long as each calibration point: a Go or Python heap's peak grows with the run's length before
    # its collector settles, so a 5 s run against 3 s points read 105 MB against 87.5 predicted (k6, once)
    small = scenario(tmp_path, "hold(70, 3s)", "constant(100ms)", latency="2ms", name="small")
    with local_server() as url:
        source = tmp_path / "run.yaml"
        source.write_text(
            (tmp_path / "small.yaml").read_text().replace("http://127.0.0.1:9", url), encoding="utf-8"
        )
        (tmp_path / "work").mkdir()
        requests, _, peak = run_measured(source, engine, url, tmp_path / "work")
    plan = capacity_plan(small, calibration, Machine(cores=64, memory_bytes=2**40))
    (layout,) = plan.layouts
    measured_rate = requests / small.load.duration_s
    assert layout.machines == 1 and layout.workers == 1
    assert measured_rate == pytest.approx(plan.rate, rel=0.2), (measured_rate, plan.rate)
    cost = calibration.engines[engine]
    assert peak == pytest.approx(layout.memory_bytes, rel=0.2), (peak, layout.memory_bytes, cost)
    # the same raw records, as a deployed run leaves them, collected into one judged run folder
    run = tmp_path / "collected"
    argv = ["collect", str(source), str(tmp_path / "work" / "raw"), "--engine", engine, "--out", str(run)]
    assert main([*argv, "--quiet"]) == ExitCode.OK
    overall = json.loads((run / "summary.json").read_text(encoding="utf-8"))["overall"]
    assert overall["requests"] == requests and overall["throughput"] == pytest.approx(measured_rate, rel=0.1)


@pytest.mark.parametrize("seconds", ["0.5", "601", "nan", "inf", "-3"])
def test_calibrate_refuses_a_run_length_out_of_range(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate", "--seconds", seconds, "-o", "/nonexistent/c.json"]) == ExitCode.INVALID_SCENARIO
    assert "out of range" in capsys.readouterr().err


def test_deploy_refuses_a_calibration_missing_an_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_k6 = calibration()
    only_k6.engines.pop("locust")
    path = tmp_path / "c.json"
    path.write_text(only_k6.as_json(), encoding="utf-8")
    argv = ["compile", str(ROOT / "scenarios" / "million-users.yaml"), "--deploy", "kubernetes"]
    assert main([*argv, "-o", str(tmp_path / "d"), "--calibration", str(path)]) == ExitCode.INVALID_SCENARIO
    assert "no figures for locust" in capsys.readouterr().err
