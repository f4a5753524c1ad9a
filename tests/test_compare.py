"""`scenariokit compare`: a planted 20% latency regression (the embedded server's added-latency fault) is
flagged with exit 1; a rerun of the same build is not. Plus the statistics on synthetic runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.engines.records import RequestRecord
from scenariokit.results.compare import Thresholds, error_rate_diff, latency_diffs, throughput_diff

SCENARIO = """\
version: 1
name: compare-{tag}
target:
  kind: openai-chat
  base_url: embedded
  model: moderation
  timeout: 10s
  embedded: {{workers: 1, max_in_flight: 4, max_queue: 16, fault: "latency={latency}"}}
load: {{curve: "hold(2, 6s)", think_time: none}}
data:
  images: {{source: builtin:text-cards, count: 4}}
requests:
  moderate: {{prompt: "Is this image safe?", image: "{{images}}", max_tokens: 4}}
"""


def run(tmp_path: Path, tag: str, latency: str) -> Path:
    path = tmp_path / f"{tag}.yaml"
    # one scenario text for all three runs apart from the fault, so only the server differs
    path.write_text(SCENARIO.format(tag="run", latency=latency))
    out = tmp_path / tag
    assert main(["run", str(path), "--engine", "k6", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.solo
def test_compare_flags_a_planted_20_percent_regression_and_not_a_rerun(tmp_path: Path) -> None:
    base = run(tmp_path, "base", "100ms")
    rerun = run(tmp_path, "rerun", "100ms")
    slower = run(tmp_path, "slower", "125ms")  # +25 ms on ~115 ms end to end: about +20%

    assert main(["compare", str(base), str(rerun), "--json", str(tmp_path / "same.json")]) == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert same["regressions"] == 0

    assert main(["compare", str(base), str(slower), "--json", str(tmp_path / "slow.json")]) == 1
    slow = json.loads((tmp_path / "slow.json").read_text())
    flagged = {(d["metric"], d["scope"]) for d in slow["diffs"] if d["regression"]}
    assert ("p50(latency)", "all") in flagged and ("p50(latency)", "moderate") in flagged
    p50 = next(d for d in slow["diffs"] if d["metric"] == "p50(latency)" and d["scope"] == "all")
    assert 0.12 <= p50["change"] <= 0.32 and p50["p_value"] < 0.01


def rec(latency: float, ok: bool = True, t: float = 0.0) -> RequestRecord:
    return RequestRecord(t, "a", "", 200 if ok else 500, ok, None if ok else "http_500", latency)


def test_small_shifts_are_not_regressions_even_when_significant() -> None:
    base = [rec(0.100 + i * 1e-5) for i in range(2000)]
    new = [rec(0.104 + i * 1e-5) for i in range(2000)]  # +4%: significant with 2,000 samples, but small
    diffs = latency_diffs("all", base, new, Thresholds())
    assert all(d.p_value is not None and d.p_value < 0.01 for d in diffs)
    assert not any(d.regression for d in diffs)


def test_large_shifts_on_few_samples_are_not_regressions_without_significance() -> None:
    base = [rec(0.1), rec(0.3), rec(0.2)]
    new = [rec(0.15), rec(0.35), rec(0.25)]
    assert not any(d.regression for d in latency_diffs("all", base, new, Thresholds()))


def test_error_rate_and_throughput_regressions() -> None:
    base = [rec(0.1, ok=i % 100 != 0, t=i / 20) for i in range(2000)]  # 1% errors, 20/s
    worse = [rec(0.1, ok=i % 20 != 0, t=i / 10) for i in range(1000)]  # 5% errors, 10/s
    err = error_rate_diff("all", base, worse, Thresholds())
    assert err.regression and err.change == pytest.approx(0.04)
    thr = throughput_diff(base, worse, Thresholds())
    assert thr.regression and thr.change == pytest.approx(-0.5, abs=0.05)
    assert not error_rate_diff("all", base, base, Thresholds()).regression


def test_compare_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
