"""Exit codes mean one thing each (../shared/notes/decisions.md): 0 pass, 1 breach, 2 invalid input, 3 run
error, 4 inconclusive (`--allow-inconclusive`: 0); what a run says matches its code (a run that did not
finish never prints "verdict: pass"); progress off a terminal is one whole line per interval."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from scenariokit.cli import main
from scenariokit.engines.records import RequestRecord
from scenariokit.exitcodes import ExitCode
from scenariokit.results.store import RecordStore
from scenariokit.results.summary import exit_code_of, rebuild_summary, write_summary
from scenariokit.run.live import LiveView, clock
from tests.support.ir_examples import closed_chat_scenario
from tests.support.loopback import LoopbackServer

T0 = 1_700_000_000.0


def fake_run(
    run_dir: Path,
    slos: list[str],
    requests: int = 300,
    engine: str = "locust",
    exit_reason: str = "completed",
) -> None:
    """A stored run of `requests` good 10 ms requests (no engine runs). 300 with no error: enough for
    `error_rate < 1%` to pass at 95% (0 of 299 is the least)."""
    store = RecordStore(run_dir)
    store.append([RequestRecord(T0 + i * 0.013, "a", "hold", 200, True, None, 0.01) for i in range(requests)])
    store.close()
    meta = {
        "scenario_name": "codes", "scenario_path": "codes.yaml", "scenario_sha256": "cd" * 32,
        "git_commit": None, "engine": engine, "engine_version": engine, "base_url": "http://x",
        "started_unix": T0, "engine_started_unix": T0, "ended_unix": T0 + 4, "load_model": "closed",
        "stages": [{"kind": "hold", "label": "hold", "duration_s": 4.0, "start": 2, "end": 2}],
        "slos": slos, "exit_reason": exit_reason, "exit_detail": "stopped by SIGTERM during the run",
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("reason", "verdict", "strict", "allow", "code"),
    [
        ("completed", "pass", False, False, ExitCode.OK),
        ("completed", "fail", False, False, ExitCode.SLO_BREACHED),
        ("aborted", "fail", False, False, ExitCode.SLO_BREACHED),
        # abort_when held: a breach of the run's own rule, whatever the SLOs say of what was measured
        ("aborted", "pass", False, False, ExitCode.SLO_BREACHED),
        ("aborted", "inconclusive", False, True, ExitCode.SLO_BREACHED),
        ("completed", "inconclusive", False, False, ExitCode.INCONCLUSIVE),
        ("completed", "inconclusive", False, True, ExitCode.OK),
        ("completed", "inconclusive", True, False, ExitCode.SLO_BREACHED),
        ("interrupted", "pass", False, False, ExitCode.RUN_ERROR),
        ("engine_crashed", "fail", False, False, ExitCode.RUN_ERROR),
        ("engine_hung", "inconclusive", False, True, ExitCode.RUN_ERROR),
        ("target_down", "pass", False, False, ExitCode.RUN_ERROR),
    ],
)
def test_one_meaning_per_code(reason: str, verdict: str, strict: bool, allow: bool, code: ExitCode) -> None:
    assert exit_code_of(reason, verdict, strict, allow) == code


def test_an_slo_the_engine_cannot_measure_does_not_make_the_run_inconclusive(tmp_path: Path) -> None:
    fake_run(tmp_path, ["error_rate < 1%", "p95(ttft) < 1s"], engine="k6")
    summary = rebuild_summary(tmp_path)
    assert [v.status for v in summary.verdicts] == ["pass", "not_measured"]
    assert summary.verdict == "pass" and summary.exit_code == 0


def test_too_few_samples_is_inconclusive_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_run(tmp_path, ["error_rate < 1%", "p99.9(latency) < 1s"])  # 300 samples; a p99.9 needs 2,995
    assert main(["report", str(tmp_path)]) == 4
    printed = capsys.readouterr().out
    assert (
        "verdict: inconclusive — too few samples for p99.9(latency) < 1s (bounds at 0.95 confidence)"
        in printed
    )
    assert "2,995 samples with none at or over would pass at 95%" in printed
    assert main(["report", str(tmp_path), "--allow-inconclusive"]) == 0
    assert "(allowed by --allow-inconclusive)" in capsys.readouterr().out
    assert main(["report", str(tmp_path), "--strict"]) == 1


def test_nothing_measured_is_inconclusive_even_without_slos(tmp_path: Path) -> None:
    fake_run(tmp_path, [], requests=0)
    summary = rebuild_summary(tmp_path)
    assert summary.verdict == "inconclusive" and summary.exit_code == 4
    assert summary.headline() == "inconclusive — nothing measured"


@pytest.mark.parametrize("reason", ["interrupted", "engine_crashed", "engine_hung", "target_down"])
def test_a_run_that_did_not_finish_never_says_pass(tmp_path: Path, reason: str) -> None:
    fake_run(tmp_path, ["error_rate < 1%"], exit_reason=reason)
    summary = rebuild_summary(tmp_path, allow_inconclusive=True)
    assert summary.verdict == "pass" and summary.exit_code == 3  # the SLOs held on what was measured
    assert summary.headline() == f"error ({reason}) — 300 requests measured, SLOs judged on them: pass"
    write_summary(tmp_path, summary)
    assert (tmp_path / "summary.md").read_text().startswith(f"# codes: ERROR ({reason}; ")
    out = io.StringIO()
    LiveView(closed_chat_scenario(), console=Console(file=out, width=80)).print_verdict(summary, tmp_path)
    assert (
        out.getvalue().startswith(f"verdict: error ({reason}) — 300 requests")
        and "verdict: pass" not in out.getvalue()
    )


def test_compare_with_a_run_that_measured_nothing_is_inconclusive(tmp_path: Path) -> None:
    fake_run(tmp_path / "base", ["error_rate < 1%"])
    fake_run(tmp_path / "empty", ["error_rate < 1%"], requests=0)
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "empty")]) == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "RUN", "--strict", "--allow-inconclusive"],  # they contradict each other
        ["report", "RUN", "--allow-inconclusive=yes"],
        ["compare", "RUN", "RUN", "--allow-inconclusive"],  # compare has no SLOs to leave undecided
        ["validate", "scenarios/smoke.yaml", "--force"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_hostile_flags_are_usage_errors(tmp_path: Path, argv: list[str]) -> None:
    fake_run(tmp_path, ["error_rate < 1%"])
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path) if word == "RUN" else word for word in argv])
    assert exited.value.code == 2
    assert not (tmp_path / "summary.json").exists()  # nothing ran


@pytest.mark.parametrize("command", [["plan", "scenarios/smoke.yaml"], ["validate", "scenarios/smoke.yaml"]])
def test_a_crash_in_any_command_is_exit_3_in_one_line(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr("scenariokit.cli.load_scenario", crash)
    monkeypatch.setattr("scenariokit.compile.plan.render_plan", crash)
    assert main(command) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {command[0]} crashed: RuntimeError: disk on fire") and "\n" not in err


# --- progress off a terminal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (59.99, "59s"), (60.208771, "1m00s"), (100, "1m40s"), (3725, "1h02m05s")],
)
def test_elapsed_time_is_whole_seconds_in_fixed_fields(seconds: float, text: str) -> None:
    assert clock(seconds) == text


def test_a_progress_line_is_never_wrapped(tmp_path: Path) -> None:
    out = io.StringIO()
    view = LiveView(closed_chat_scenario(), console=Console(file=out, width=40))
    view.refresh(0.0)
    view.refresh(0.3)  # the same interval: no second line
    assert len(out.getvalue().splitlines()) == 1 and len(out.getvalue()) > 40


PROGRESS = """\
version: 1
name: progress
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(2, 5s) as {label}", think_time: constant(20ms)}}
requests:
  a: {{path: /a}}
slo:
  - error_rate < 1%
"""
LABEL = "a-stage-label-long-enough-to-take-the-line-past-eighty-columns"


@pytest.mark.engine
def test_progress_into_a_pipe_is_one_whole_line_per_interval(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        path = tmp_path / "progress.yaml"
        path.write_text(PROGRESS.format(url=server.url, label=LABEL))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}  # a plain pipe
        result = subprocess.run(
            [sys.executable, "-m", "scenariokit", "run", str(path), "--out", str(tmp_path / "run")],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    pattern = re.compile(
        rf"^\[(\d+)s/5s\] stage {LABEL}, 2\.0 users, [\d.]+ req/s, p95 (\d+ ms|—), errors .* of \d+$"
    )
    progress = [text for text in result.stderr.splitlines() if text.startswith("[")]
    matches = [pattern.match(text) for text in progress]
    assert len(progress) >= 3 and all(matches), progress
    elapsed = [int(m[1]) for m in matches if m]
    assert elapsed == sorted(set(elapsed))  # one line per one-second interval of a 5 s run
    assert all(len(text) > 80 for text in progress)
    assert "verdict: pass" in result.stderr


@pytest.mark.parametrize("value", ["1", "0", "0.4999", "nan", "inf", "abc", "1e400", "-0.95", "95%", ""])
@pytest.mark.parametrize("command", ["run", "report"])
def test_a_confidence_outside_half_to_one_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, value: str
) -> None:
    """1 would bound nothing (every bound the whole range), 1e400 reads as inf: exit 2, naming the flag,
    before a run starts or a summary is rewritten."""
    fake_run(tmp_path / "done", ["error_rate < 1%"])
    target = "scenarios/smoke.yaml" if command == "run" else str(tmp_path / "done")
    extra = ["--out", str(tmp_path / "new")] if command == "run" else []
    assert main([command, target, *extra, f"--confidence={value}"]) == 2
    err = capsys.readouterr().err
    assert "--confidence" in err and ("out of range" in err or "is not a number" in err)
    assert not (tmp_path / "new").exists() and not (tmp_path / "done" / "summary.json").exists()


def test_report_rejudges_at_the_runs_confidence_unless_told_another(tmp_path: Path) -> None:
    """0 errors of 100 bound the rate below 2.95% at 95% (inconclusive against 1%) and below 0.69% at 50%."""
    fake_run(tmp_path, ["error_rate < 1%"], requests=100)
    assert main(["report", str(tmp_path)]) == 4
    assert main(["report", str(tmp_path), "--confidence", "0.5"]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["verdicts"][0]["confidence"] == 0.5
    meta = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps(meta | {"confidence": 0.5}))  # as `run --confidence 0.5`
    assert main(["report", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path), "--confidence", "0.99"]) == 4
