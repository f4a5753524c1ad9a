"""Stage: compare two runs (a baseline and a candidate) metric by metric, with a statistical test.

A regression is flagged only when the change is both large enough to matter (a threshold per kind of
metric) and unlikely to be noise (a one-sided test at `alpha`): a rerun of the same build differs a little
everywhere and must not fail CI; a planted 20% slowdown must. The tests:

- latency (p50/p95/p99, per request name and overall; ttft when streamed): a bootstrap test of each
  percentile (resampling both runs, seeded: the share of resamples in which the candidate's percentile is
  not higher), so a tail percentile from few samples is not flagged on noise; and a percentile is never
  flagged when a run has fewer than MIN_BEYOND samples above it (p99 needs 500), where the bootstrap itself
  is overconfident (a base of one sample gave p = 0.001 against any slower run);
- error rate: Fisher's exact test on the 2x2 table of errors and successes, one-sided "candidate worse";
- throughput: Mann-Whitney U on successful responses per second, one-sided "candidate lower".

A baseline is just a run folder; keep one in git (run.json, records/, summary.json: small) and compare
every CI run against it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import fisher_exact, mannwhitneyu

from scenariokit.engines.records import RequestRecord
from scenariokit.results.metrics import sample_stats
from scenariokit.results.runfolder import RunFolder

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_MAX_SAMPLES = 20_000  # a larger run is subsampled (seeded) before resampling
MIN_BEYOND = 5  # samples above a percentile each run needs for it to be flagged (p50: 10, p95: 100, p99: 500)


@dataclass(frozen=True)
class Thresholds:
    latency: float = 0.10  # relative increase of a latency percentile
    error_rate: float = 0.005  # absolute increase (0.5 percentage points)
    throughput: float = 0.10  # relative decrease
    alpha: float = 0.01


@dataclass(frozen=True)
class MetricDiff:
    metric: str
    scope: str  # "all" or a request name
    base: float | None
    new: float | None
    change: float | None  # relative for latency and throughput, absolute for error rate
    p_value: float | None
    test: str
    regression: bool
    improvement: bool
    samples: tuple[int, int]

    def change_text(self) -> str:
        if self.change is None:
            return "—"
        return f"{self.change * 100:+.2f} pp" if self.metric == "error_rate" else f"{self.change:+.1%}"


@dataclass(frozen=True)
class Comparison:
    base: str
    new: str
    diffs: list[MetricDiff]
    warnings: list[str]

    @property
    def regressions(self) -> list[MetricDiff]:
        return [d for d in self.diffs if d.regression]

    def as_json(self) -> str:
        body = {"base": self.base, "new": self.new, "warnings": self.warnings}
        body |= {"regressions": len(self.regressions), "diffs": [asdict(d) for d in self.diffs]}
        return json.dumps(body, indent=2)


def check_run(run_dir: Path) -> RunFolder:
    """The run folder, its run.json validated (results/runfolder.py), records/ present and each part's
    footer readable. Raises NotARun or CorruptRun."""
    folder = RunFolder(run_dir)
    folder.check_records()
    return folder


def compare_runs(base_dir: Path, new_dir: Path, thresholds: Thresholds = Thresholds()) -> Comparison:
    base_folder, new_folder = check_run(base_dir), check_run(new_dir)
    base, new = base_folder.all_records(), new_folder.all_records()  # rank tests need every sample at once
    base_meta, new_meta = base_folder.meta, new_folder.meta
    warnings = []
    if base_meta.scenario_sha256 != new_meta.scenario_sha256:
        warnings.append("the runs come from different scenario files: differences may be the scenario's")
    if base_meta.engine != new_meta.engine:
        warnings.append(f"different engines: {base_meta.engine} vs {new_meta.engine}")
    names = sorted({r.name for r in base} & {r.name for r in new})
    diffs: list[MetricDiff] = []
    for scope in ["all", *names]:
        b = base if scope == "all" else [r for r in base if r.name == scope]
        n = new if scope == "all" else [r for r in new if r.name == scope]
        diffs += latency_diffs(scope, b, n, thresholds)
        diffs.append(error_rate_diff(scope, b, n, thresholds))
    diffs.append(throughput_diff(base, new, thresholds))
    return Comparison(str(base_dir), str(new_dir), diffs, warnings)


def _relative(base: float | None, new: float | None) -> float | None:
    if base is None or new is None or base == 0 or math.isnan(base) or math.isnan(new):
        return None
    return new / base - 1


def latency_diffs(
    scope: str, base: Sequence[RequestRecord], new: Sequence[RequestRecord], th: Thresholds
) -> list[MetricDiff]:
    out = []
    for metric, values in (
        ("latency", lambda rs: [r.corrected_latency for r in rs if r.ok]),
        ("ttft", lambda rs: [r.ttft for r in rs if r.ok and r.ttft is not None]),
    ):
        b, n = values(base), values(new)
        if not b or not n:
            continue
        db, dn = sample_stats(b), sample_stats(n)
        for p in ("p50", "p95", "p99"):
            p_values = bootstrap_p_values(b, n, float(p[1:]))
            values = (db.percentiles.get(p), dn.percentiles.get(p))
            out.append(percentile_diff(f"{p}({metric})", scope, values, p_values, (len(b), len(n)), th))
    return out


def percentile_diff(
    metric: str,
    scope: str,
    values: tuple[float | None, float | None],
    p_values: tuple[float, float],
    samples: tuple[int, int],
    th: Thresholds,
    test: str = "bootstrap of the percentile (candidate higher)",
) -> MetricDiff:
    change = _relative(*values)
    p_slower, p_faster = p_values
    enough = enough_beyond(metric, samples)
    if not enough:
        test += f"; not flagged: fewer than {MIN_BEYOND} samples beyond the percentile in a run"
    return MetricDiff(
        metric=metric,
        scope=scope,
        base=values[0],
        new=values[1],
        change=change,
        p_value=p_slower,
        test=test,
        regression=enough and change is not None and change >= th.latency and p_slower < th.alpha,
        improvement=enough and change is not None and change <= -th.latency and p_faster < th.alpha,
        samples=samples,
    )


def enough_beyond(metric: str, samples: tuple[int, int]) -> bool:
    """Each run has at least MIN_BEYOND samples above a percentile (`p95(...)`: n x 5%): below that the
    bootstrap of the percentile is overconfident (a base of one sample resamples to that sample every time,
    and any slower run then reads p = 0.001)."""
    q = float(metric[1 : metric.index("(")]) / 100
    return min(samples) * (1 - q) >= MIN_BEYOND


def bootstrap_p_values(base: Sequence[float], new: Sequence[float], percentile: float) -> tuple[float, float]:
    """One-sided p-values (candidate higher, candidate lower) for a percentile, by resampling both runs."""
    rng = np.random.default_rng(0)
    b, n = _capped(np.asarray(base), rng), _capped(np.asarray(new), rng)
    higher = lower = 0
    for _ in range(BOOTSTRAP_RESAMPLES // 100):  # in chunks: 100 resamples of 20k floats is 16 MB
        rb = np.percentile(rng.choice(b, (100, len(b))), percentile, axis=1, method="inverted_cdf")
        rn = np.percentile(rng.choice(n, (100, len(n))), percentile, axis=1, method="inverted_cdf")
        higher += int(np.sum(rn <= rb))  # resamples that do not show the candidate higher
        lower += int(np.sum(rn >= rb))
    total = BOOTSTRAP_RESAMPLES
    return (higher + 1) / (total + 1), (lower + 1) / (total + 1)


def _capped(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= BOOTSTRAP_MAX_SAMPLES:
        return values
    return rng.choice(values, BOOTSTRAP_MAX_SAMPLES, replace=False)


def error_rate_diff(
    scope: str, base: Sequence[RequestRecord], new: Sequence[RequestRecord], th: Thresholds
) -> MetricDiff:
    b_err, n_err = sum(1 for r in base if not r.ok), sum(1 for r in new if not r.ok)
    return error_rate_of_counts(scope, (b_err, len(base)), (n_err, len(new)), th)


def error_rate_of_counts(
    scope: str, base: tuple[int, int], new: tuple[int, int], th: Thresholds
) -> MetricDiff:
    """Fisher's exact test on (errors, requests) of each run: the records' test, from counts alone."""
    (b_err, b_n), (n_err, n_n) = base, new
    b_rate = b_err / b_n if b_n else None
    n_rate = n_err / n_n if n_n else None
    change = None if b_rate is None or n_rate is None else n_rate - b_rate
    p_value = None
    if b_n and n_n:
        table = [[n_err, n_n - n_err], [b_err, b_n - b_err]]
        p_value = float(fisher_exact(table, alternative="greater").pvalue)
    return MetricDiff(
        metric="error_rate",
        scope=scope,
        base=b_rate,
        new=n_rate,
        change=change,
        p_value=p_value,
        test="Fisher's exact (candidate worse)",
        regression=change is not None
        and p_value is not None
        and change >= th.error_rate
        and p_value < th.alpha,
        improvement=change is not None and change <= -th.error_rate,
        samples=(b_n, n_n),
    )


def _ok_per_second(records: Sequence[RequestRecord]) -> list[int]:
    ok = [r.t for r in records if r.ok]
    if not ok:
        return []
    start = min(ok)
    counts = np.bincount(np.floor(np.asarray(ok) - start).astype(int))
    return counts[:-1].tolist() if len(counts) > 2 else counts.tolist()  # the last second is partial


def throughput_diff(
    base: Sequence[RequestRecord], new: Sequence[RequestRecord], th: Thresholds
) -> MetricDiff:
    return throughput_of_rates(_ok_per_second(base), _ok_per_second(new), th)


def throughput_of_rates(b: Sequence[float], n: Sequence[float], th: Thresholds) -> MetricDiff:
    """Mann-Whitney U on the ok requests of each second (or each step of a long run's digest)."""
    b_mean = float(np.mean(b)) if len(b) else None
    n_mean = float(np.mean(n)) if len(n) else None
    change = _relative(b_mean, n_mean)
    p_value = float(mannwhitneyu(n, b, alternative="less").pvalue) if len(b) > 1 and len(n) > 1 else None
    return MetricDiff(
        metric="throughput",
        scope="all",
        base=b_mean,
        new=n_mean,
        change=change,
        p_value=p_value,
        test="Mann-Whitney U on ok/s (candidate lower)",
        regression=change is not None
        and p_value is not None
        and change <= -th.throughput
        and p_value < th.alpha,
        improvement=change is not None and change >= th.throughput,
        samples=(len(b), len(n)),
    )


def is_large(diff: MetricDiff, th: Thresholds) -> bool:
    """The change is large enough to matter (the threshold half of `regression`)."""
    if diff.change is None:
        return False
    if diff.metric == "error_rate":
        return diff.change >= th.error_rate
    if diff.metric == "throughput":
        return diff.change <= -th.throughput
    return diff.change >= th.latency and enough_beyond(diff.metric, diff.samples)


def value_text(diff: MetricDiff) -> tuple[str, str]:
    def one(v: float | None) -> str:
        if v is None:
            return "—"
        if diff.metric == "error_rate":
            return f"{v:.3%}"
        if diff.metric == "throughput":
            return f"{v:.2f}/s"
        return f"{v * 1000:.1f} ms"

    return one(diff.base), one(diff.new)


def markdown(c: Comparison) -> str:
    verdict = f"{len(c.regressions)} regression(s)" if c.regressions else "no regression"
    lines = [f"# compare: {verdict}", "", f"base `{c.base}` vs new `{c.new}`", ""]
    lines += [f"> {w}" for w in c.warnings] + ([""] if c.warnings else [])
    lines += ["| metric | scope | base | new | change | p-value | verdict |", "|---|---|---|---|---|---|---|"]
    for d in c.diffs:
        base, new = value_text(d)
        p = "—" if d.p_value is None else f"{d.p_value:.2g}"
        flag = "REGRESSION" if d.regression else "better" if d.improvement else "same"
        lines.append(f"| {d.metric} | {d.scope} | {base} | {new} | {d.change_text()} | {p} | {flag} |")
    return "\n".join(lines) + "\n"
