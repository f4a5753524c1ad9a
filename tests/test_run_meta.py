"""The typed run folder (results/runfolder.py): run.json written by the runner's writer reads back as the
same IR stages and SLOs (spans included), a run folder written before the change (format 1, SLOs as texts)
still summarizes to the very summary it had, and a hostile run.json is one line and the right exit code."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from scenariokit.cli import main
from scenariokit.compile.expr import parse_slo
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import get_engine
from scenariokit.results.runfolder import (
    MAX_RUN_JSON_BYTES,
    RUN_FORMAT,
    CorruptRun,
    NotARun,
    RunFolder,
    RunMeta,
    write_run_meta,
)
from scenariokit.run.orchestrate import write_run_metadata
from tests.support.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
RUN_SCHEMA = json.loads((ROOT / "schemas" / "run.schema.json").read_text())
# a real k6 run folder written at 9c3d8d2, before run.json was typed: SLOs as texts, stage spans null
FORMAT_1 = ROOT / "tests" / "support" / "run_format1"
SCENARIO = """\
version: 1
name: typed
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "ramp(0, 2, 1s) -> hold(1s) as steady", think_time: constant(50ms)}}
requests:
  a: {{path: /a}}
slo:
  - error_rate < 20% for a
  - p50(latency) < 2s during steady
"""


def old_folder(tmp_path: Path) -> Path:
    run_dir = tmp_path / "old"
    shutil.copytree(FORMAT_1, run_dir)
    return run_dir


def summary_json(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / "summary.json").read_text())


def test_the_runners_run_json_reads_back_as_the_compiled_stages_and_slos(tmp_path: Path) -> None:
    source = tmp_path / "typed.yaml"
    source.write_text(SCENARIO.format(url="http://127.0.0.1:9"))
    scenario = load_scenario(source).scenario
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    written = write_run_metadata(run_dir, scenario, source, get_engine("k6"), "http://x", time.time(), 0.9)
    document = json.loads((run_dir / "run.json").read_text())
    jsonschema.Draft202012Validator(RUN_SCHEMA).validate(document)
    meta = RunFolder(run_dir).meta
    assert meta == written and meta.format == RUN_FORMAT and meta.confidence == 0.9
    assert tuple(meta.stages) == scenario.load.stages and tuple(meta.slos) == scenario.slos
    # the SLO keeps where it was written: line 8, after `  - ` (what a late error would point at)
    first = meta.slos[0].span
    assert (first.line, first.column) == (8, 5) and first.file.endswith("typed.yaml")
    assert all(isinstance(s, dict) for s in document["slos"])  # stored structured, not as text


def test_a_format_1_run_folder_summarizes_to_the_summary_it_was_written_with(tmp_path: Path) -> None:
    run_dir = old_folder(tmp_path)
    folder = RunFolder(run_dir)
    texts = json.loads((run_dir / "run.json").read_text())["slos"]
    assert folder.meta.format == 1 and [s.text for s in folder.meta.slos] == texts
    assert tuple(folder.meta.slos) == tuple(parse_slo(t) for t in texts)
    assert json.loads(folder.summary().model_dump_json()) == summary_json(run_dir)


def test_the_same_run_in_format_2_gives_the_same_summary(tmp_path: Path) -> None:
    run_dir = old_folder(tmp_path)
    meta = RunFolder(run_dir).meta
    meta.format = RUN_FORMAT
    write_run_meta(run_dir, meta)
    assert all(isinstance(s, dict) for s in json.loads((run_dir / "run.json").read_text())["slos"])
    assert json.loads(RunFolder(run_dir).summary().model_dump_json()) == summary_json(FORMAT_1)


def test_records_stream_in_batches_and_equal_all_records(tmp_path: Path) -> None:
    folder = RunFolder(old_folder(tmp_path))
    streamed = [r for batch in folder.records() for r in batch]
    assert streamed == folder.all_records() and len(streamed) == summary_json(FORMAT_1)["overall"]["requests"]


def test_stored_paths_are_displayed_never_opened(tmp_path: Path) -> None:
    """run.json's scenario path and SLO spans name files on the machine that ran: report must show them,
    never read them (they may not exist here, or point anywhere)."""
    run_dir = old_folder(tmp_path)
    meta = RunFolder(run_dir).meta
    meta.format = RUN_FORMAT
    meta.scenario_path = "../../../../etc/shadow-not-here"
    meta.slos = [
        type(s)(**{**s.__dict__, "span": type(s.span)("/no/such/dir/x.yaml", 3, 5)}) for s in meta.slos
    ]
    write_run_meta(run_dir, meta)
    assert main(["report", str(run_dir)]) == 0
    assert summary_json(run_dir)["scenario_path"] == "../../../../etc/shadow-not-here"


def test_samples_names_only_a_monitor_file(tmp_path: Path) -> None:
    folder = RunFolder(old_folder(tmp_path))
    assert folder.samples("host.jsonl") and folder.samples("none.jsonl") == []
    with pytest.raises(ValueError):
        folder.samples("../run.json")


def _edit(change: Callable[[dict[str, object]], None]) -> Callable[[Path], None]:
    def hurt(run_dir: Path) -> None:
        document = json.loads((run_dir / "run.json").read_text())
        change(document)
        (run_dir / "run.json").write_text(json.dumps(document))

    return hurt


UNKNOWN_METRIC = {"text": "x", "metric": "joy", "statistic": None, "op": "<", "threshold": 1}
HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "a time as text": (_edit(lambda d: d.update(started_unix="yesterday")), "started_unix"),
    "a time not finite": (_edit(lambda d: d.update(ended_unix=float("inf"))), "finite"),
    "confidence out of range": (_edit(lambda d: d.update(confidence=2)), "confidence"),
    "stages an object": (_edit(lambda d: d.update(stages={"kind": "hold"})), "stages"),
    "a stage without its level": (_edit(lambda d: d["stages"][0].pop("end")), "stages.0.end"),  # type: ignore[index]
    "an SLO text that does not parse": (_edit(lambda d: d.update(slos=["p95(latency) <"])), "does not parse"),
    "an SLO of no known metric": (_edit(lambda d: d.update(slos=[UNKNOWN_METRIC])), "slos.0.metric"),
    "an unknown key": (_edit(lambda d: d.update(surprise=1)), "surprise"),
    "a format from the future": (_edit(lambda d: d.update(format=RUN_FORMAT + 1)), "format"),
    "a load model of its own": (_edit(lambda d: d.update(load_model="both")), "load_model"),
    "nested past the parser": (lambda d: (d / "run.json").write_text("[" * 200_000), "not readable JSON"),
    "huge": (
        lambda d: (d / "run.json").write_text("{" + " " * MAX_RUN_JSON_BYTES + "}"),
        f"over {MAX_RUN_JSON_BYTES // 2**20} MiB",
    ),
}


@pytest.mark.parametrize("row", sorted(HOSTILE))
def test_a_hostile_run_json_is_one_line_and_exit_3(
    tmp_path: Path, row: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = old_folder(tmp_path)
    hurt, message = HOSTILE[row]
    hurt(run_dir)
    with pytest.raises(CorruptRun):
        RunFolder(run_dir)
    assert main(["report", str(run_dir)]) == 3
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(["compare", str(FORMAT_1), str(run_dir)]) == 3


@pytest.mark.parametrize("where", ["missing", "run.json a folder"])
def test_a_folder_without_a_run_json_file_is_not_a_run(tmp_path: Path, where: str) -> None:
    run_dir = tmp_path / "x"
    if where == "run.json a folder":
        (run_dir / "run.json").mkdir(parents=True)
    with pytest.raises(NotARun):
        RunFolder(run_dir)
    assert main(["report", str(run_dir)]) == 2


def test_extra_keys_are_refused_by_the_model_not_dropped() -> None:
    document = json.loads((FORMAT_1 / "run.json").read_text())
    with pytest.raises(ValueError):
        RunMeta.model_validate(document | {"slo": []})  # a typo in a writer must not pass silently


@pytest.mark.engine
def test_a_real_run_writes_format_2_and_report_rebuilds_its_summary(tmp_path: Path) -> None:
    with LoopbackServer(delay_s=0.005) as server:
        source = tmp_path / "typed.yaml"
        source.write_text(SCENARIO.format(url=server.url))
        run_dir = tmp_path / "run"
        code = main(["run", str(source), "--engine", "k6", "--out", str(run_dir), "--quiet"])
    assert code == 0
    document = json.loads((run_dir / "run.json").read_text())
    jsonschema.Draft202012Validator(RUN_SCHEMA).validate(document)
    assert document["format"] == RUN_FORMAT and document["slos"][1]["window"]["stage"] == "steady"
    assert document["live_metrics_url"].startswith("http://127.0.0.1:") and document["engine_returncode"] == 0
    before = summary_json(run_dir)
    assert main(["report", str(run_dir)]) == 0
    assert summary_json(run_dir) == before
