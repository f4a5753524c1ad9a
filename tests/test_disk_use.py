"""A run's disk use (issue 16): `scenariokit plan` prints it per hour and in total, the runner refuses a run
whose estimate does not fit the free space before anything is sent (exit 3), and the estimate's Parquet
constants hold on a real run folder."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.records import RAW_ROTATE_BYTES
from scenariokit.results.store import PARQUET_BYTES_PER_PART, PARQUET_BYTES_PER_RECORD
from scenariokit.run.disk_use import (
    FIXED_BYTES,
    ITL_BYTES_PER_GAP,
    MONITOR_BYTES_PER_S,
    STREAM_TOKENS,
    disk_estimate,
)
from tests.support.loopback import LoopbackServer
from tests.test_disk import mount_allowed

SOAK = """\
version: 1
name: soak
target: {{kind: http, base_url: "{url}"}}
load: {{model: open, curve: "hold({rate}, {duration})", expected_latency: 20ms}}
requests:
  a: {{path: /a}}
"""


def scenario_file(tmp_path: Path, rate: float, duration: str, url: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SOAK.format(url=url, rate=rate, duration=duration))
    return path


def test_the_estimate_grows_with_the_requests_and_raw_stays_bounded(tmp_path: Path) -> None:
    day = disk_estimate(load_scenario(scenario_file(tmp_path, 1000, "24h")).scenario)
    hour = disk_estimate(load_scenario(scenario_file(tmp_path, 1000, "1h")).scenario)
    assert day.requests == pytest.approx(86_400_000) and hour.requests == pytest.approx(3_600_000)
    parts = 3600 / 5 + 1  # a part every PART_SECONDS
    assert hour.records_bytes == pytest.approx(
        3_600_000 * PARQUET_BYTES_PER_RECORD + parts * PARQUET_BYTES_PER_PART, rel=1e-3
    )
    assert day.records_bytes == pytest.approx(24 * hour.records_bytes, rel=1e-3)
    assert day.per_hour_bytes == pytest.approx(hour.per_hour_bytes, rel=1e-3)
    assert hour.monitor_bytes == 3600 * MONITOR_BYTES_PER_S
    # raw/ does not grow with the run: the same bound for an hour and a day, a few rotation steps
    assert day.raw_bound_bytes == hour.raw_bound_bytes < 5 * RAW_ROTATE_BYTES
    assert day.total_bytes == pytest.approx(
        day.records_bytes + day.raw_bound_bytes + day.monitor_bytes + FIXED_BYTES
    )


def test_a_worker_process_adds_its_own_raw_files(tmp_path: Path) -> None:
    scenario = load_scenario(scenario_file(tmp_path, 1000, "1h")).scenario
    one, four = disk_estimate(scenario, 1), disk_estimate(scenario, 4)
    assert four.raw_bound_bytes - one.raw_bound_bytes == 3 * 2 * RAW_ROTATE_BYTES


STREAMED = """\
version: 1
name: chat
target: {{kind: openai-chat, base_url: "http://127.0.0.1:9", model: m}}
load: {{model: open, curve: "hold(10, 1h)", expected_latency: 1s}}
requests:
  a: {{prompt: "hi", stream: {stream}{tokens}}}
"""


@pytest.mark.parametrize(("tokens", "gaps"), [(", max_tokens: 16", 15), ("", STREAM_TOKENS - 1)])
def test_a_streamed_answer_adds_its_token_gaps(tmp_path: Path, tokens: str, gaps: int) -> None:
    sizes = {}
    for stream in ("false", "true"):
        path = tmp_path / f"{stream}.yaml"
        path.write_text(STREAMED.format(stream=stream, tokens=tokens))
        sizes[stream] = disk_estimate(load_scenario(path).scenario).records_bytes
    assert sizes["true"] - sizes["false"] == pytest.approx(36_000 * gaps * ITL_BYTES_PER_GAP)


@pytest.mark.parametrize(
    ("rate", "duration"),
    [(0, "10s"), (0.001, "1s"), (100_000, "168h")],
)
def test_hostile_plans_give_finite_estimates(tmp_path: Path, rate: float, duration: str) -> None:
    loaded = load_scenario(scenario_file(tmp_path, rate, duration))
    estimate = disk_estimate(loaded.scenario)
    assert 0 <= estimate.per_hour_bytes < float("inf") and FIXED_BYTES <= estimate.total_bytes < float("inf")


def test_plan_prints_disk_use_per_hour_and_in_total(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, 1000, "24h")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main(["plan", str(path)]) == 0
    estimate = disk_estimate(load_scenario(path).scenario)
    line = " ".join(text.getvalue().split())  # rich may wrap the line
    match = re.search(r"disk: about ([\d,.]+) (MiB|GiB) per hour, ([\d,.]+) (MiB|GiB) in total", line)
    assert match, line
    scale = {"MiB": 2**20, "GiB": 2**30}
    assert float(match[1]) * scale[match[2]] == pytest.approx(estimate.per_hour_bytes, rel=0.01)
    assert float(match[3]) * scale[match[4]] == pytest.approx(estimate.total_bytes, rel=0.01)


@pytest.mark.engine
@pytest.mark.skipif(not mount_allowed(), reason="needs root and `unshare -m` with mount")
def test_a_run_whose_disk_use_does_not_fit_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    """A 64 MiB disk takes a short run (tests/test_disk.py runs there) but not a day at 1,000/s."""
    with LoopbackServer() as server:
        (tmp_path / "scenario.yaml").write_text(SOAK.format(url=server.url, rate=1000, duration="24h"))
        (tmp_path / "mnt").mkdir()
        code, err = run_on_small_disk(tmp_path, "64m")
        assert server.count("/a") == 0
    assert code == 3, err
    assert "this run needs about" in err and "scenariokit plan" in err and "nothing was sent" in err


def run_on_small_disk(tmp_path: Path, size: str) -> tuple[int, str]:
    """`scenariokit run` with its run folder on a tmpfs of `size`, in a mount namespace of its own (as
    tests/test_disk.py's run_on_tmpfs, which writes a scenario of its own)."""
    run = f"{sys.executable} -m scenariokit run scenario.yaml --quiet --out mnt/run"
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs mnt || exit 99\n{run}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 99, result.stderr
    return result.returncode, result.stderr
