"""Run folders: `--out` must be new or empty (`--force` replaces a previous run), one run at a time writes
into a folder (a lock), and `report` / `compare` on a damaged folder say what is wrong with exit 3."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.engines.records import RequestRecord
from scenariokit.results.store import RecordStore, load_records
from scenariokit.results.summary import rebuild_summary, write_summary
from scenariokit.run.orchestrate import check_run_dir, default_run_dir
from tests.support.ir_examples import closed_chat_scenario
from tests.support.loopback import LoopbackServer

T0 = 1_700_000_000.0
SCENARIO = """\
version: 1
name: folder
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(2, 1s)", think_time: constant(50ms)}}
requests:
  a: {{path: /a}}
slo:
  - error_rate < 1%
"""


def previous_run(run_dir: Path, requests: int = 300) -> None:
    """A finished run that passed: `requests` good records (0 errors of 300 bound the rate below 1% at
    95%), run.json and its summaries."""
    store = RecordStore(run_dir)
    store.append([RequestRecord(T0 + i * 0.015, "a", "hold", 200, True, None, 0.01) for i in range(requests)])
    store.close()
    meta = {
        "scenario_name": "folder", "scenario_path": "folder.yaml", "scenario_sha256": "ab" * 32,
        "git_commit": None, "engine": "locust", "engine_version": "locust 2", "base_url": "http://x",
        "started_unix": T0, "engine_started_unix": T0, "ended_unix": T0 + 5, "load_model": "closed",
        "stages": [{"kind": "hold", "label": "hold", "duration_s": 5.0, "start": 2, "end": 2}],
        "slos": ["error_rate < 1%"], "exit_reason": "completed", "exit_detail": "",
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(meta))
    write_summary(run_dir, rebuild_summary(run_dir))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def scenario_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "folder.yaml"
    path.write_text(SCENARIO.format(url=url))
    return path


# --- --out: new or empty ----------------------------------------------------------------------------


@pytest.mark.engine
def test_a_zero_user_run_into_a_used_folder_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    used = tmp_path / "used"
    previous_run(used)
    assert json.loads((used / "summary.json").read_text())["verdict"] == "pass"  # the old run's 300 requests
    before = snapshot(used)
    with LoopbackServer() as server:
        code = main(["run", str(scenario_file(tmp_path, server.url)), "--out", str(used), "--users", "0"])
        assert server.total() == 0
    err = capsys.readouterr().err
    assert code == 2 and "is not empty" in err and "--force" in err
    assert snapshot(used) == before


@pytest.mark.engine
def test_force_replaces_the_previous_run_and_never_follows_a_link_out(tmp_path: Path) -> None:
    used, outside = tmp_path / "used", tmp_path / "outside"
    previous_run(used)
    outside.mkdir()
    (outside / "keep.txt").write_text("not the run's")
    (used / "monitor").symlink_to(outside, target_is_directory=True)
    with LoopbackServer() as server:
        argv = ["run", str(scenario_file(tmp_path, server.url)), "--out", str(used), "--quiet"]
        code = main([*argv, "--users", "0", "--force"])
        assert server.count("/a") == 0  # zero users: only the runner's own probes reached the server
    assert code == 4  # nothing measured is inconclusive, not the old run's PASS
    summary = json.loads((used / "summary.json").read_text())
    assert summary["overall"]["requests"] == 0 and summary["verdict"] == "inconclusive"
    assert load_records(used) == []
    assert (outside / "keep.txt").read_text() == "not the run's"
    assert not (used / "monitor").is_symlink()


def hold_lock(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


@pytest.mark.engine
@pytest.mark.parametrize("extra", [[], ["--force"]], ids=["plain", "force"])
def test_a_folder_another_run_is_writing_into_is_refused(
    tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    busy = tmp_path / "busy"
    previous_run(busy)
    fd = hold_lock(busy)  # as a run in progress holds it
    try:
        before = snapshot(busy)
        code = main(["run", str(scenario_file(tmp_path, "http://127.0.0.1:9")), "--out", str(busy), *extra])
    finally:
        os.close(fd)
    assert code == 2 and "another run is writing into it" in capsys.readouterr().err
    assert snapshot(busy) == before


def test_an_empty_folder_or_one_with_a_released_lock_counts_as_new(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    check_run_dir(tmp_path / "empty", force=False)
    os.close(hold_lock(tmp_path / "released"))  # a run that ended before it wrote anything
    check_run_dir(tmp_path / "released", force=False)
    check_run_dir(tmp_path / "new", force=False)


@pytest.mark.engine
@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda p: p.write_text("a file"), [], "is not a folder"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")), ["--force"], "holds files but no run"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")), [], "is not empty"),
    ],
    ids=["a file", "force on a folder that holds no run", "a folder of other files"],
)
def test_hostile_out_folders_are_usage_errors_and_nothing_is_deleted(
    tmp_path: Path, make, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    make(out)
    before = out.read_bytes() if out.is_file() else snapshot(out)
    code = main(["run", str(scenario_file(tmp_path, "http://127.0.0.1:9")), "--out", str(out), *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert (out.read_bytes() if out.is_file() else snapshot(out)) == before


@pytest.mark.engine
@pytest.mark.parametrize("flag", ["--force=yes", "--allow-inconclusive=1"])
def test_boolean_run_flags_take_no_value(tmp_path: Path, flag: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "scenarios/smoke.yaml", "--out", str(tmp_path / "run"), flag])
    assert exited.value.code == 2 and not (tmp_path / "run").exists()


def test_default_run_folders_of_one_second_do_not_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    scenario = closed_chat_scenario()
    first = default_run_dir(scenario)
    first.mkdir(parents=True)
    (first / "run.json").write_text("{}")
    second = default_run_dir(scenario)
    assert second != first and second.name.startswith(first.name)


# --- report and compare on a damaged run folder -----------------------------------------------------


def truncate_a_part(run_dir: Path) -> None:
    part = next((run_dir / "records").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:100])


DAMAGE = {
    "truncated Parquet part": (truncate_a_part, "is not a readable Parquet part"),
    "run.json not JSON": (
        lambda d: (d / "run.json").write_text('{"scenario_name": '),
        "is not readable JSON",
    ),
    "run.json a list": (lambda d: (d / "run.json").write_text("[1, 2]"), "is not an object"),
    "run.json without stages": (
        lambda d: (d / "run.json").write_text(json.dumps({"scenario_name": "x"})),
        "without scenario_path",
    ),
    "run.json not UTF-8": (lambda d: (d / "run.json").write_bytes(b"\xff\xfe{}"), "is not readable JSON"),
    "records/ missing": (lambda d: shutil.rmtree(d / "records"), "no records/"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_damaged_run_folder_is_a_one_line_run_error(
    tmp_path: Path, damage: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    previous_run(good)
    previous_run(bad)
    hurt, message = DAMAGE[damage]
    hurt(bad)
    argv = ["report", str(bad)] if command == "report" else ["compare", str(good), str(bad)]
    assert main(argv) == 3
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_folder_that_is_not_a_run_is_a_usage_error(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    previous_run(tmp_path / "good")
    argv = (
        ["report", str(tmp_path)]
        if command == "report"
        else ["compare", str(tmp_path / "good"), str(tmp_path)]
    )
    assert main(argv) == 2 and "is not a run folder" in capsys.readouterr().err
