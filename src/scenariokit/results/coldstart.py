"""Target starts and the cold-start penalty: how long the target took to become ready, and what its first
requests paid for it.

The runner's target supervisor (run/target.py) writes every start of the target it started to
`target/starts.jsonl` and the embedded server's worker states (their own restarts) to
`target/workers.jsonl`. The first-requests penalty compares the latency of the run's first N successful
requests (N = 50, or half the successes when there are fewer than 100) with the median of the successes
after them: the ratio of the first N's mean to that steady median, a bootstrap interval on it, and a
one-sided Mann-Whitney test of "the first N are slower". A warm target gives a ratio near 1; a cold one,
whose first requests load its models, gives many times that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from scipy.stats import mannwhitneyu

from scenariokit.engines.records import RequestRecord

FIRST_N = 50
MIN_FIRST = 5  # fewer first requests than this (or steady ones) tell nothing: no penalty is given
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_STEADY_MAX = 2000  # steady latencies resampled: the interval's cost stays flat in the run's length
INTERVAL_LEVEL = 0.95


class TargetStartOut(BaseModel):
    """One start of the target, as the supervisor timed it (seconds from its process's start)."""

    t: float = Field(description="when its process was started, unix seconds")
    kind: str = Field(description="start or restart")
    mode: str = Field(description="cold (models load on first use) or warm")
    pid: int
    port_open_s: float | None = Field(description="process start -> its port accepted a connection")
    time_to_ready_s: float | None = Field(description="process start -> ready (/health 200, or any answer)")
    ok: bool = True
    detail: str = ""
    instance: int = Field(0, description="which of several embedded instances (target.embedded.instances)")
    port: int | None = Field(None, description="where it listened: a restart comes back on the same port")


class FirstRequestsOut(BaseModel):
    """The first N successful requests against the successes after them (the steady state)."""

    n: int = Field(description="first requests compared (50, or half the successes when fewer than 100)")
    first_request_s: float = Field(description="latency of the very first successful request")
    first_mean_s: float
    first_median_s: float
    first_max_s: float
    first_errors: int = Field(description="failed requests among those sent before the N-th success")
    steady_samples: int
    steady_median_s: float
    ratio: float = Field(description="first N's mean latency / steady median (1: no penalty)")
    ratio_low: float = Field(description="bootstrap 95% interval of the ratio, low end")
    ratio_high: float
    median_ratio: float = Field(description="first N's median / steady median")
    excess_s: float = Field(description="seconds the first N spent beyond the steady median, summed")
    p_value: float = Field(description="one-sided Mann-Whitney: the first N are slower than the steady ones")


class WorkerStateOut(BaseModel):
    index: int
    pid: int | None = None
    up: bool = False
    restarts: int = 0


class TargetStartsOut(BaseModel):
    """Starts of a target the runner started (embedded server or start_command), and the cold penalty."""

    starts: list[TargetStartOut]
    time_to_ready_s: float | None = Field(description="of the first start")
    mode: str
    first_requests: FirstRequestsOut | None = Field(
        description="None when the run has fewer than 2 x 5 successful requests"
    )
    worker_restarts: int | None = Field(
        None, description="the embedded server's own worker restarts (its /health at the run's end)"
    )
    workers: list[WorkerStateOut] = Field(default_factory=list)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines file written by the runner; a line cut by a crash is skipped."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def target_starts(run_dir: Path, records: Iterable[RequestRecord]) -> TargetStartsOut | None:
    """The summary's `target_starts`, or None for a target the runner did not start."""
    starts = [TargetStartOut(**row) for row in read_jsonl(run_dir / "target" / "starts.jsonl")]
    if not starts:
        return None
    workers_rows = read_jsonl(run_dir / "target" / "workers.jsonl")
    workers = [WorkerStateOut(**w) for w in workers_rows[-1]["workers"]] if workers_rows else []
    ordered = sorted(records, key=lambda r: r.t)
    return TargetStartsOut(
        starts=starts,
        time_to_ready_s=starts[0].time_to_ready_s,
        mode=starts[0].mode,
        first_requests=first_requests(ordered),
        worker_restarts=sum(w.restarts for w in workers) if workers else None,
        workers=workers,
    )


def first_requests(ordered: Sequence[RequestRecord], n: int = FIRST_N) -> FirstRequestsOut | None:
    """The penalty of the first `n` successes (by start time) against the successes after them."""
    ok_at = [i for i, r in enumerate(ordered) if r.ok]
    n = min(n, len(ok_at) // 2)
    if n < MIN_FIRST:
        return None
    first = np.array([ordered[i].latency for i in ok_at[:n]])
    steady = np.array([ordered[i].latency for i in ok_at[n:]])
    steady_median = float(np.median(steady))
    low, high = _ratio_interval(first, steady)
    return FirstRequestsOut(
        n=n,
        first_request_s=float(first[0]),
        first_mean_s=float(first.mean()),
        first_median_s=float(np.median(first)),
        first_max_s=float(first.max()),
        first_errors=ok_at[n - 1] + 1 - n,
        steady_samples=len(steady),
        steady_median_s=steady_median,
        ratio=_ratio(float(first.mean()), steady_median),
        ratio_low=low,
        ratio_high=high,
        median_ratio=_ratio(float(np.median(first)), steady_median),
        excess_s=float(np.clip(first - steady_median, 0, None).sum()),
        p_value=float(mannwhitneyu(first, steady, alternative="greater").pvalue),
    )


def _ratio(x: float, y: float) -> float:
    return x / y if y > 0 else float("inf") if x > 0 else 1.0


def _ratio_interval(first: np.ndarray, steady: np.ndarray) -> tuple[float, float]:
    """Percentile bootstrap of mean(first) / median(steady), both resampled (seeded: a report is
    reproducible). At most BOOTSTRAP_STEADY_MAX steady latencies take part, drawn evenly over the run."""
    rng = np.random.default_rng(0)
    if len(steady) > BOOTSTRAP_STEADY_MAX:
        steady = steady[np.linspace(0, len(steady) - 1, BOOTSTRAP_STEADY_MAX).astype(int)]
    means = rng.choice(first, (BOOTSTRAP_RESAMPLES, len(first))).mean(axis=1)
    medians = np.median(rng.choice(steady, (BOOTSTRAP_RESAMPLES, len(steady))), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(medians > 0, means / np.where(medians > 0, medians, 1), np.inf)
    tail = (1 - INTERVAL_LEVEL) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def markdown_lines(t: TargetStartsOut) -> list[str]:
    """summary.md's section."""
    lines = [
        "",
        "## Target starts",
        "",
        "| # | kind | mode | pid | port open s | time to ready s | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, s in enumerate(t.starts, 1):
        lines.append(
            f"| {i} | {s.kind} | {s.mode} | {s.pid} | {_s(s.port_open_s)} | {_s(s.time_to_ready_s)} | "
            f"{'yes' if s.ok else 'no: ' + s.detail} |"
        )
    if (f := t.first_requests) is not None:
        lines += [
            "",
            f"First {f.n} requests against the {f.steady_samples:,} after them ({t.mode} start): mean "
            f"{f.first_mean_s * 1000:.1f} ms (first {f.first_request_s * 1000:.1f} ms, max "
            f"{f.first_max_s * 1000:.1f} ms) vs a steady median of {f.steady_median_s * 1000:.1f} ms: "
            f"**{f.ratio:.2f}x** (95% interval {f.ratio_low:.2f}–{f.ratio_high:.2f}; median ratio "
            f"{f.median_ratio:.2f}; {f.excess_s:.2f} s beyond the steady median; Mann-Whitney p = "
            f"{f.p_value:.2g}; {f.first_errors} errors among them).",
        ]
    if t.worker_restarts is not None:
        lines += ["", f"Model worker restarts inside the server: {t.worker_restarts}."]
    return lines


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"
