"""`abort_when:` (issue 19): the rule's language, its trailing window on the record pipeline, and a run
against a loopback target that starts failing mid-run, ended within the declared window with everything
measured kept, the reason in summary.json, a report, and exit 1 (decisions.md)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.expr import ExprError, parse_abort
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.records import RequestRecord
from scenariokit.results.store import load_records
from scenariokit.run.pipeline import AbortWhen
from tests.support.loopback import LoopbackServer


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("error_rate > 20% over 10s", ("error_rate", ">", 0.2, 10.0)),
        ("success_rate < 50% over 30s", ("success_rate", "<", 0.5, 30.0)),
        ("error_rate >= 0.2 over 1m", ("error_rate", ">=", 0.2, 60.0)),
        ("error_rate>20%over 5s", ("error_rate", ">", 0.2, 5.0)),
    ],
)
def test_a_rule_parses(text: str, parsed: tuple[str, str, float, float]) -> None:
    rule = parse_abort(text)
    assert (rule.metric, rule.op, rule.threshold, rule.window_s) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("error_rate > 20%", "needs its window"),
        ("latency > 20% over 10s", "cannot end a run"),
        ("p99(latency) > 1s over 10s", "expected a comparison"),
        ("error_rate = 20% over 10s", "is not a comparison"),
        ("error_rate > 20% over 10", "needs a unit"),
        ("error_rate > 120% over 10s", "more than 100%"),
        ("error_rate > 5s over 10s", "expected a percentage"),
        ("error_rate > 20% over 0.5s", "out of range"),
        ("error_rate > 20% over 2h", "out of range"),
        ("error_rate > 20% over 10s x", "is extra"),
        ("error_rate > 20% over 10s; rm -rf /", "unexpected"),
        ("", "empty abort rule"),
        ("error_rate > nan% over 10s", "expected a threshold"),
    ],
)
def test_a_bad_rule_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ExprError) as caught:
        parse_abort(text)
    assert message in caught.value.diagnostic.message


SCENARIO = """\
version: 1
name: abort
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "ramp(0, 4, 1s) -> hold({hold})", think_time: constant(50ms)}}
requests:
  a: {{path: /a}}
abort_when: {rules}
"""


def scenario(tmp_path: Path, rules: str, url: str = "http://127.0.0.1:9", hold: str = "30s") -> Path:
    path = tmp_path / "abort.yaml"
    path.write_text(SCENARIO.format(url=url, rules=rules, hold=hold))
    return path


def test_rules_lower_one_or_a_list_and_a_window_past_the_run_is_refused(tmp_path: Path) -> None:
    one = load_scenario(scenario(tmp_path, '"error_rate > 20% over 10s"')).scenario
    assert [r.text for r in one.abort_when] == ["error_rate > 20% over 10s"]
    rules = '["error_rate > 20% over 10s", "success_rate < 90% over 5s"]'
    assert len(load_scenario(scenario(tmp_path, rules)).scenario.abort_when) == 2
    with pytest.raises(ScenarioError, match="longer than the run"):
        load_scenario(scenario(tmp_path, '"error_rate > 20% over 1h"'))
    with pytest.raises(ScenarioError, match="cannot end a run"):
        load_scenario(scenario(tmp_path, '["error_rate > 20% over 10s", "goodput < 1% over 5s"]'))


def records(start: float, seconds: int, per_second: int, failing: bool) -> list[RequestRecord]:
    return [
        RequestRecord(
            start + s + i / per_second, "a", "hold", 500 if failing else 200, not failing, None, 0.01
        )
        for s in range(seconds)
        for i in range(per_second)
    ]


def test_a_rule_holds_only_on_its_trailing_window_once_the_run_has_lasted_it() -> None:
    sink = AbortWhen([parse_abort("error_rate > 20% over 5s")])
    sink.add(records(1000.0, 3, 10, failing=True))  # all failing, but the run is 3 s old
    assert sink.held is None
    sink = AbortWhen([parse_abort("error_rate > 20% over 5s")])
    sink.add(records(1000.0, 20, 10, failing=False))
    sink.add(records(1020.0, 1, 10, failing=True))  # 10 of the last 5 s's 50: exactly 20%, not above
    assert sink.held is None
    sink.add(records(1021.0, 1, 10, failing=True))  # 20 of 50
    assert sink.held is not None and "20 errors of 50 requests (40.0%)" in sink.held
    ok_again = AbortWhen([parse_abort("success_rate < 50% over 5s")])
    ok_again.add(records(1000.0, 4, 10, failing=True))  # 4 s old: not checked yet
    ok_again.add(records(1004.0, 6, 10, failing=False))  # by now the failures left the window
    assert ok_again.held is None
    ok_again.add(records(1010.0, 3, 10, failing=True))  # 30 of the last 5 s's 50 failed: 40% ok
    assert ok_again.held is not None and "20 ok of 50 requests (40.0%)" in ok_again.held


@pytest.mark.engine
def test_a_target_that_starts_failing_ends_the_run_within_the_window(tmp_path: Path) -> None:
    window_s, flip_after_s = 3.0, 2.5
    with LoopbackServer() as server:
        path = scenario(tmp_path, f'"error_rate > 20% over {window_s:g}s"', server.url, hold="40s")
        flipped: list[float] = []
        done = threading.Event()

        def flip() -> None:
            """Every request fails from `flip_after_s` after the first one (setting the run up takes time)."""
            while server.total() == 0 and not done.wait(0.05):
                pass
            if not done.wait(flip_after_s):
                server.status_by_path["/a"] = 500
                flipped.append(time.time())

        flipper = threading.Thread(target=flip, daemon=True)
        started = time.monotonic()
        flipper.start()
        try:
            code = main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"])
        finally:
            done.set()
            flipper.join(5)
        wall_s = time.monotonic() - started
    assert code == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["exit_reason"] == "aborted"
    assert summary["exit_detail"].startswith(f"abort_when `error_rate > 20% over {window_s:g}s` held")
    assert (tmp_path / "run" / "report.html").is_file()
    headline = (tmp_path / "run" / "summary.md").read_text().splitlines()[0]
    assert headline.startswith("# abort: FAIL (aborted by its abort_when rule")  # never PASS with exit 1
    kept = load_records(tmp_path / "run")
    assert summary["overall"]["requests"] == len(kept) > 0
    assert any(r.ok for r in kept) and any(r.status == 500 for r in kept)
    # the last request started within the window after the flip (a poll of 0.5 s and a second's bucket
    # of slack), long before the 41 s curve's end
    assert max(r.t for r in kept) - flipped[0] < window_s + 2.0
    assert wall_s < 30
