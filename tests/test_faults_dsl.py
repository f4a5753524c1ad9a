"""The `faults:` section: schedules expanded at compile time, parameters lowered to SI units under the
names the runner and the proxy read, and every hostile or mistyped fault refused with its position."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.ir import Fault
from scenariokit.compile.limits import MAX_COMMAND_ARGS, MAX_FAULTS
from scenariokit.compile.pipeline import load_scenario
from scenariokit.run.orchestrate import RunOptions, apply_overrides

# Faults start on line 11; a fault row is `  - {...}` with its mapping at column 5.
BASE = """\
version: 1
name: t
target: {kind: http, base_url: embedded}
load:
  curve: ramp(0, 2, 10s) -> hold(50s) as steady
requests:
  a: {path: /health}
slo:
  - error_rate < 100%
faults:
"""
EXTERNAL = BASE.replace("base_url: embedded", "base_url: http://127.0.0.1:9")


def scenario_with(*rows: str, base: str = BASE) -> str:
    return base + "".join(f"  - {row}\n" for row in rows)


def load(tmp_path: Path, text: str) -> tuple[Fault, ...]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_scenario(path).scenario.faults


def test_schedules_are_expanded_and_params_lowered(tmp_path: Path) -> None:
    faults = load(
        tmp_path,
        scenario_with(
            "{name: kill, kind: kill-target, at: 20s}",
            "{name: slow, kind: latency, every: 15s, from: 5s, duration: 3s, delay: 200ms, jitter: 20ms}",
            "{name: cap, kind: bandwidth, at: 55s, duration: 4s, rate: 100KB/s}",
            "{name: lossy, kind: packet-loss, random: {between: [10s, 40s], seed: 7}, duration: 5s, "
            "share: 2%}",
            "{name: errs, kind: server-errors, at: 30s, duration: 5s, share: 0.25}",
            "{name: stall, kind: stall-worker, at: 40s, duration: 2s}",
        ),
    )
    by = {f.name: f for f in faults}
    assert by["kill"].times == (20.0,) and by["kill"].duration_s == 0.0
    assert dict(by["kill"].params) == {"signal": "SIGKILL", "instance": "random", "exec": ()}
    assert by["slow"].times == (5.0, 20.0, 35.0, 50.0) and by["slow"].duration_s == 3.0
    assert dict(by["slow"].params) == {"delay_s": 0.2, "jitter_s": 0.02}
    assert dict(by["cap"].params) == {"bytes_per_s": 100_000.0}
    assert dict(by["lossy"].params) == {"share": 0.02, "stall_s": 0.2}
    assert 10 <= by["lossy"].times[0] <= 40
    assert dict(by["errs"].params) == {"share": 0.25} and dict(by["stall"].params) == {}
    again = load(tmp_path, scenario_with("{name: lossy, kind: reset, random: {between: [10s, 40s], seed: 7}, "
                                         "duration: 5s, share: 2%}"))  # fmt: skip
    assert again[0].times == by["lossy"].times  # the same seed draws the same time, whatever the kind


def test_a_random_time_without_a_seed_follows_the_scenario_seed(tmp_path: Path) -> None:
    row = "{name: r, kind: reset, random: {between: [1s, 50s]}, duration: 1s, share: 1%}"
    first = load(tmp_path, scenario_with(row))[0].times
    assert load(tmp_path, scenario_with(row))[0].times == first
    assert load(tmp_path, "seed: 3\n" + scenario_with(row))[0].times != first


def test_plan_prints_the_fault_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(scenario_with("{name: slow, kind: latency, every: 20s, duration: 2s, delay: 200ms}"))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "faults" in out and "slow" in out and "20s, 40s" in out and "delay_s=0.2" in out


KILL = "{name: k, kind: kill-target, at: 5s"
LONG_EXEC = KILL + ", exec: [" + ", ".join(["x"] * (MAX_COMMAND_ARGS + 1)) + "]}"
# (id, rows, base, the text the error must point at (in the last row), message fragment)
HOSTILE: list[tuple[str, list[str], str, str, str]] = [
    ("unknown kind", ["{name: k, kind: explode, at: 5s}"], BASE, "explode", "not allowed"),
    ("no time", ["{name: k, kind: kill-target}"], BASE, "{name", "no start time"),
    ("two times", [KILL + ", every: 10s}"], BASE, "every", "more than one start time"),
    ("bad duration text", [KILL + ", duration: soon}"], BASE, "soon", "unexpected `soon`"),
    ("negative duration", [KILL + ", duration: -2s}"], BASE, "-2s", "negative"),
    ("negative time", ["{name: k, kind: kill-target, at: -5s}"], BASE, "-5s", "negative"),
    ("time past the end", ["{name: k, kind: kill-target, at: 2m}"], BASE, "2m", "at or after the load's end"),
    (
        "random past the end",
        ["{name: k, kind: kill-target, random: {between: [10s, 2m]}}"],
        BASE,
        "2m",
        "drawn after the load's end",
    ),
    (
        "random backwards",
        ["{name: k, kind: kill-target, random: {between: [30s, 10s]}}"],
        BASE,
        "[30s",
        "runs backwards",
    ),
    (
        "every overlaps",
        ["{name: k, kind: reset, every: 5s, duration: 5s, share: 1%}"],
        BASE,
        "5s, share",
        "they would overlap",
    ),
    (
        "every too fast",
        ["{name: k, kind: reset, every: 1ms, duration: 1ms, share: 1%}"],
        BASE,
        "1ms",
        "too short",
    ),
    (
        "share of 150%",
        ["{name: k, kind: reset, at: 5s, duration: 1s, share: 150%}"],
        BASE,
        "150%",
        "more than 100%",
    ),
    ("share of 0", ["{name: k, kind: drop, at: 5s, duration: 1s, share: 0%}"], BASE, "0%", "share of 0"),
    ("no duration", ["{name: k, kind: hang, at: 5s, share: 5%}"], BASE, "{name", "needs a `duration`"),
    ("no share", ["{name: k, kind: reset, at: 5s, duration: 1s}"], BASE, "{name", "needs `share`"),
    (
        "param of another kind",
        ["{name: k, kind: reset, at: 5s, duration: 1s, share: 1%, delay: 1s}"],
        BASE,
        "delay",
        "not a parameter of `reset`",
    ),
    (
        "rate not a bandwidth",
        ["{name: k, kind: bandwidth, at: 5s, duration: 1s, rate: 100/s}"],
        BASE,
        "100/s",
        "expected a bandwidth",
    ),
    (
        "delay past a minute",
        ["{name: k, kind: latency, at: 5s, duration: 1s, delay: 2m}"],
        BASE,
        "2m",
        "out of range",
    ),
    (
        "clash with a stage",
        ["{name: steady, kind: kill-target, at: 5s}"],
        BASE,
        "steady",
        "names a load stage",
    ),
    (
        "clash with a curve kind",
        ["{name: ramp, kind: kill-target, at: 5s}"],
        BASE,
        "ramp",
        "names a load stage",
    ),
    ("two faults one name", [KILL + "}", KILL + "}"], BASE, "k,", "two faults are named"),
    ("name not a window name", ["{name: 'a b', kind: kill-target, at: 5s}"], BASE, "a b", "should match"),
    (
        "https + network",
        ["{name: k, kind: latency, at: 5s, duration: 1s, delay: 1ms}"],
        EXTERNAL.replace("http://", "https://"),
        "latency",
        "https target",
    ),
    (
        "server fault on external",
        ["{name: k, kind: server-errors, at: 5s, duration: 1s, share: 1%}"],
        EXTERNAL,
        "server-errors",
        "admin endpoint",
    ),
    ("kill an external target", [KILL + "}"], EXTERNAL, "kill-target", "cannot kill an external target"),
    ("exec on embedded", [KILL + ', exec: ["true"]}'], BASE, "exec", "`exec` kills an external target"),
    (
        "exec with LF",
        [KILL + ', exec: [docker, "restart\\nrm -rf /"]}'],
        EXTERNAL,
        "restart",
        "control character U+000A",
    ),
    ("exec with CR", [KILL + ', exec: ["a\\rb"]}'], EXTERNAL, "a\\rb", "control character U+000D"),
    ("exec empty", [KILL + ", exec: []}"], EXTERNAL, "[]", "at least 1"),
    ("exec huge argv", [LONG_EXEC], EXTERNAL, "[x", f"longer than {MAX_COMMAND_ARGS} items"),
    (
        "exec huge argument",
        [KILL + ", exec: [" + "x" * 5000 + "]}"],
        EXTERNAL,
        "xxx",
        "longer than 4096 characters",
    ),
    ("instance out of range", [KILL + ", instance: 3}"], BASE, "3}", "instance 3 does not exist"),
    ("instance not a number", [KILL + ", instance: first}"], BASE, "first", "first"),
    ("signal unknown", [KILL + ", signal: SIGSTOP}"], BASE, "SIGSTOP", "not allowed"),
]


@pytest.mark.parametrize(("case", "rows", "base", "at", "fragment"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_broken_fault_is_refused_where_it_stands(
    tmp_path: Path, case: str, rows: list[str], base: str, at: str, fragment: str
) -> None:
    path = tmp_path / "s.yaml"
    text = scenario_with(*rows, base=base)
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    matching = [d for d in info.value.diagnostics if fragment in d.message]
    assert matching, [d.message for d in info.value.diagnostics]
    line = text.splitlines()[matching[0].span.line - 1]
    assert matching[0].span.line == text.count("\n"), matching[0].message  # the last row
    assert line[matching[0].span.column - 1 :].startswith(at), (matching[0].message, line)


def test_too_many_faults_is_one_positioned_error(tmp_path: Path) -> None:
    rows = [f"{{name: k{i}, kind: kill-target, at: 5s}}" for i in range(MAX_FAULTS + 1)]
    path = tmp_path / "s.yaml"
    path.write_text(scenario_with(*rows))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    (error,) = info.value.diagnostics
    assert error.span.line == 11 and f"longer than {MAX_FAULTS} items" in error.message


def test_too_many_occurrences_is_refused(tmp_path: Path) -> None:
    long_run = BASE.replace("hold(50s)", "hold(7d)").replace("ramp(0, 2, 10s) -> ", "")
    path = tmp_path / "s.yaml"
    path.write_text(
        scenario_with("{name: k, kind: reset, every: 100ms, duration: 10ms, share: 1%}", base=long_run)
    )
    with pytest.raises(ScenarioError, match="occurrences"):
        load_scenario(path)


def test_a_fault_lasting_past_the_end_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(scenario_with("{name: k, kind: hang, at: 55s, duration: 10s, share: 5%}"))
    loaded = load_scenario(path)
    assert [w.message for w in loaded.warnings if "lasts past the load's end" in w.message]


def run_refusal(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    code = main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", *extra])
    return code, capsys.readouterr().err


@pytest.mark.engine  # reaches `scenariokit run` (which refuses before any load)
def test_exec_without_allow_exec_is_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    text = scenario_with(KILL + f', exec: [touch, "{marker}"]}}', base=EXTERNAL)
    code, err = run_refusal(tmp_path, text, capsys)
    assert code == 2 and "--allow-exec" in err and "nothing was sent" in err
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.engine  # reaches `scenariokit run` (which refuses before any load)
def test_a_base_url_override_to_https_with_a_network_fault_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = scenario_with("{name: k, kind: reset, at: 5s, duration: 1s, share: 1%}", base=EXTERNAL)
    code, err = run_refusal(tmp_path, text, capsys, "--base-url", "https://127.0.0.1:9")
    assert code == 2 and "https" in err and not (tmp_path / "run").exists()


def test_run_duration_scales_planned_starts_like_the_stages(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(scenario_with("{name: slow, kind: latency, every: 20s, duration: 2s, delay: 200ms}"))
    scenario = load_scenario(path).scenario
    halved = apply_overrides(scenario, RunOptions(duration_s=30.0)).faults[0]
    assert halved.times == (10.0, 20.0) and halved.duration_s == 2.0  # starts scaled, durations kept
