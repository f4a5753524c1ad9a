"""The imported scenario sends what the locustfile sends: checked on the wire, against stock Locust.

The reference guide's locustfile (tests/fixtures/guide_locustfile.py) runs under stock Locust (`locust -f
... --headless`), and the scenario `scenariokit import` makes of it runs on both engines, each against a
loopback recorder (tests/support/wire.py) that counts every canonical request (method, path, headers and
JSON body). All three must send the same distinct requests, and their mixes must agree with the
locustfile's weights (identify 3 : OCR 1 : the error-case task 1, whose two requests go out together):
a chi-square goodness-of-fit test per run against 3:1:1, and a test of homogeneity between stock Locust and
each engine, each failing below P_FLOOR. To show the samples can tell mixes apart, the same counts must
reject a 1:1:1 mix.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from scenariokit.cli import main
from tests.support.wire import WireRecorder, recording_key

FIXTURE = Path(__file__).parent / "fixtures" / "guide_locustfile.py"
USERS = "100"  # at 0.5-2.5 s between tasks, ~60 tasks a second: ~300 in a run
RUN_TIME = "5s"
P_FLOOR = 1e-4  # five tests of one run: a false alarm in about 1 run of 2,000

IDENTIFY = ("POST", "/api/identify", {"image_url": "https://example.com/test1.jpg"})
OCR = ("POST", "/api/ocr", {"image_url": "https://example.com/test2.jpg"})
EMPTY_URL = ("POST", "/api/identify", {"image_url": ""})
WRONG_FIELD = ("POST", "/api/identify", {"wrong_field": "test"})
KINDS = (IDENTIFY, OCR, EMPTY_URL, WRONG_FIELD)


class CountingRecorder(WireRecorder):
    """The wire recorder, also counting each canonical request (the set alone cannot weigh a mix)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def _record(self, canonical: Mapping[str, Any]) -> None:
        super()._record(canonical)
        with self._count_lock:
            self.counts[recording_key(canonical)] += 1

    def by_kind(self) -> dict[tuple[str, str, str], int]:
        """Counts per (method, path, body) with the content type checked, as JSON text for the body."""
        out: Counter[tuple[str, str, str]] = Counter()
        for key, n in self.counts.items():
            request = json.loads(key)
            assert ["content-type", "application/json"] in request["headers"], request
            body = json.dumps((request["body"] or {}).get("json"), sort_keys=True)
            out[(request["method"], request["path"], body)] += n
        return dict(out)


def kind_key(kind: tuple[str, str, dict[str, str]]) -> tuple[str, str, str]:
    return kind[0], kind[1], json.dumps(kind[2], sort_keys=True)


def stock_locust(tmp_path: Path) -> dict[tuple[str, str, str], int]:
    with CountingRecorder() as recorder:
        argv = [sys.executable, "-m", "locust", "-f", str(FIXTURE), "--headless", "-u", USERS, "-r", USERS]
        argv += ["-t", RUN_TIME, "--host", recorder.url, "--only-summary", "--loglevel", "WARNING"]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return recorder.by_kind()


def imported_run(tmp_path: Path, engine: str) -> dict[tuple[str, str, str], int]:
    with CountingRecorder() as recorder:
        scenario = tmp_path / f"imported-{engine}.yaml"
        flags = ["-u", USERS, "-r", USERS, "-t", RUN_TIME, "--host", recorder.url]
        assert main(["import", str(FIXTURE), "-o", str(scenario), *flags]) == 0
        code = main(["run", str(scenario), "--engine", engine, "--out", str(tmp_path / engine), "--quiet"])
        assert code not in (2, 3), f"{engine} run exited {code}"
        return recorder.by_kind()


def tasks(counts: dict[tuple[str, str, str], int]) -> list[int]:
    """Tasks started per kind: identify, OCR, and the error-case task (its first request)."""
    return [counts.get(kind_key(kind), 0) for kind in (IDENTIFY, OCR, EMPTY_URL)]


@pytest.mark.engine
def test_the_imported_scenario_sends_what_stock_locust_sends_in_the_same_mix(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    runs = {"stock locust": stock_locust(tmp_path)}
    for engine in ("locust", "k6"):
        runs[f"imported on {engine}"] = imported_run(tmp_path, engine)
    for name, counts in runs.items():  # in --junitxml: identify, OCR, empty URL, wrong field
        record_property(name, [counts.get(kind_key(kind), 0) for kind in KINDS])
    expected_kinds = {kind_key(kind) for kind in KINDS}
    for name, counts in runs.items():
        assert set(counts) == expected_kinds, name  # the same paths, methods and bodies, nothing else
        empty, wrong = counts[kind_key(EMPTY_URL)], counts[kind_key(WRONG_FIELD)]
        assert 0 <= empty - wrong <= int(USERS), (name, empty, wrong)  # a flow cut at the end only
        observed = tasks(counts)
        assert sum(observed) >= 150, (name, observed)  # enough samples for the tests below
        fit = stats.chisquare(observed, [sum(observed) * w / 5 for w in (3, 1, 1)])
        assert fit.pvalue > P_FLOOR, (name, observed, fit.pvalue)
        wrong_mix = stats.chisquare(observed, [sum(observed) / 3] * 3)
        assert wrong_mix.pvalue < P_FLOOR, (name, observed, wrong_mix.pvalue)  # the test can fail
    stock = tasks(runs["stock locust"])
    for engine in ("locust", "k6"):
        table = [stock, tasks(runs[f"imported on {engine}"])]
        same = stats.chi2_contingency(table)
        assert same.pvalue > P_FLOOR, (engine, table, same.pvalue)
