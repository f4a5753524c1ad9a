"""`scenariokit compare`: a planted +25 ms latency regression is flagged with exit 1; a rerun against an
identical server is not. Plus the statistics on synthetic runs.

The three runs (base, rerun, and the slower one) go at the same time, each k6 against its own loopback
server, so that whatever else the machine does falls on all three alike: only the servers' delays differ.
Each server keeps the time it spent per request, and the verdicts are judged against that: the planted
shift must be flagged and be the shift the servers made, and a rerun may be flagged only at a percentile
where its server was in fact that much slower.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from scenariokit.cli import main
from scenariokit.engines.records import RequestRecord
from scenariokit.results.compare import Thresholds, error_rate_diff, latency_diffs, throughput_diff
from scenariokit.results.store import load_records
from tests.support.loopback import TRANSPORT_S, LoopbackServer, quantile_bounds

SCENARIO = """\
version: 1
name: compare
target: {kind: http, base_url: "http://127.0.0.1:9"}
load: {curve: "hold(2, 6s)", think_time: none}
requests:
  moderate: {path: /moderate}
"""
DELAYS_S = {"base": 0.100, "rerun": 0.100, "slower": 0.125}  # +25 ms on ~101 ms end to end: about +25%
RUN_TIMEOUT_S = 90


def run_together(tmp_path: Path) -> dict[str, list[float]]:
    """The three runs at once, one scenario file (so compare sees the same scenario) and one server each;
    each server's time per request."""
    path = tmp_path / "compare.yaml"
    path.write_text(SCENARIO)
    with ExitStack() as stack:
        servers = {tag: stack.enter_context(LoopbackServer(delay_s=d)) for tag, d in DELAYS_S.items()}
        runs = {}
        for tag, server in servers.items():
            argv = ["run", str(path), "--engine", "k6", "--out", str(tmp_path / tag), "--quiet"]
            log = stack.enter_context((tmp_path / f"{tag}.log").open("wb"))
            runs[tag] = subprocess.Popen(
                [sys.executable, "-m", "scenariokit", *argv, "--base-url", server.url],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(runs[tag].kill)  # a no-op once it has exited; bounds a run that hangs
        for tag, process in runs.items():
            code = process.wait(timeout=RUN_TIMEOUT_S)
            assert code == 0, (tag, (tmp_path / f"{tag}.log").read_text()[-2000:])
        return {tag: [s.service_s for s in server.served()] for tag, server in servers.items()}


def p50_shift(base: list[float], new: list[float]) -> tuple[float, float]:
    """Confidence bounds of the shift of the median from `base` to `new`."""
    b_lo, b_hi = quantile_bounds(base, 0.5)
    n_lo, n_hi = quantile_bounds(new, 0.5)
    return n_lo - b_hi, n_hi - b_lo


def client_latencies(run_dir: Path) -> list[float]:
    return [r.corrected_latency for r in load_records(run_dir) if r.ok]


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.solo
def test_compare_flags_a_planted_25ms_regression_and_not_a_rerun(tmp_path: Path) -> None:
    served = run_together(tmp_path)
    base, rerun, slower = (tmp_path / tag for tag in DELAYS_S)

    code = main(["compare", str(base), str(rerun), "--json", str(tmp_path / "same.json")])
    same = json.loads((tmp_path / "same.json").read_text())
    assert same["warnings"] == [] and code == (1 if same["regressions"] else 0)
    for d in same["diffs"]:
        # only a latency percentile at which the rerun's server was itself that much slower may be flagged
        assert not d["regression"] or server_change(served, d["metric"]) >= Thresholds().latency, d

    assert main(["compare", str(base), str(slower), "--json", str(tmp_path / "slow.json")]) == 1
    slow = json.loads((tmp_path / "slow.json").read_text())
    flagged = {(d["metric"], d["scope"]) for d in slow["diffs"] if d["regression"]}
    assert ("p50(latency)", "all") in flagged and ("p50(latency)", "moderate") in flagged
    p50 = next(d for d in slow["diffs"] if d["metric"] == "p50(latency)" and d["scope"] == "all")
    assert p50["p_value"] < 0.01
    # the shift the records show is the one the servers made, within the quantiles' bounds and transport
    c_lo, c_hi = p50_shift(client_latencies(base), client_latencies(slower))
    s_lo, s_hi = p50_shift(served["base"], served["slower"])
    assert max(c_lo, s_lo) - min(c_hi, s_hi) <= TRANSPORT_S, ((c_lo, c_hi), (s_lo, s_hi))


def server_change(served: dict[str, list[float]], metric: str) -> float:
    """The relative change from the base's server to the rerun's at a latency percentile, `p95(latency)`."""
    if not metric.startswith("p") or not metric.endswith("(latency)"):
        return 0.0  # error rate and throughput: the servers answer every request alike
    q = float(metric[1 : metric.index("(")]) / 100
    base, rerun = (float(np.quantile(served[tag], q, method="inverted_cdf")) for tag in ("base", "rerun"))
    return rerun / base - 1


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
