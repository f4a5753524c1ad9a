"""Stage: compare two or more runs (run folders or stored baselines), each with the first, as a matrix.

- The tests are compare.py's: a bootstrap of each latency percentile, Fisher's exact test on the error
  counts, Mann-Whitney U on the ok requests per second. When every input is a run folder they run on the
  records (`compare_runs`); when one is a baseline (no records), every pair is tested from the digests
  (results/baseline.py): the percentile bootstrap then resamples the HDR histogram (a multinomial draw of
  the same number of samples over its buckets, each bucket standing for the value nearest-rank reports),
  which is the records' bootstrap with each value rounded to its bucket (3 significant digits);
  `tests/test_baseline.py` checks that both give the same verdicts and close p-values on the same runs.
- Multiple comparisons: Holm's step-down correction (Holm 1979), the family being one metric in one scope
  (say p95(latency) of `all`) over the N-1 comparisons with the first run. Each comparison is a separate
  question (is run k worse than the baseline?) that the matrix asks N-1 times; with two runs the family
  has one test and the result is compare.py's, unchanged. A change is a regression when it is large
  enough (compare.Thresholds) and its Holm-adjusted p-value is below alpha.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenariokit.results.baseline import BASELINE_FILE, Digest, Histogram, digest_run, load_any, read_digest
from scenariokit.results.compare import (
    BOOTSTRAP_MAX_SAMPLES,
    BOOTSTRAP_RESAMPLES,
    Comparison,
    MetricDiff,
    Thresholds,
    compare_runs,
    error_rate_of_counts,
    is_large,
    percentile_diff,
    throughput_of_rates,
    value_text,
)
from scenariokit.results.compare import (
    markdown as compare_markdown,
)
from scenariokit.results.hardware import short
from scenariokit.results.metrics import HDR_GRID, MICROS

HISTOGRAM_TEST = "bootstrap of the percentile over the HDR histogram (candidate higher)"
PERCENTILES = ("p50", "p95", "p99")


# --- pairs from digests ------------------------------------------------------------------------------


def compare_digests(base: Digest, new: Digest, th: Thresholds) -> Comparison:
    warnings = _warnings(base, new)
    names = sorted((set(base.scopes) & set(new.scopes)) - {"all"})
    diffs: list[MetricDiff] = []
    for scope in ["all", *names]:
        b, n = base.scopes[scope], new.scopes[scope]
        for metric in ("latency", "ttft"):
            hb, hn = getattr(b, metric), getattr(n, metric)
            if hb is not None and hn is not None and hb.count and hn.count:
                diffs += histogram_diffs(metric, scope, hb, hn, th)
        diffs.append(error_rate_of_counts(scope, (b.errors, b.requests), (n.errors, n.requests), th))
    diffs.append(throughput_of_rates(base.seconds.ok_rates(), new.seconds.ok_rates(), th))
    return Comparison(base.label, new.label, diffs, warnings)


def _warnings(base: Digest, new: Digest) -> list[str]:
    warnings = []
    if base.scenario_sha256 != new.scenario_sha256:
        warnings.append("the runs come from different scenario files: differences may be the scenario's")
    if base.engine != new.engine:
        warnings.append(f"different engines: {base.engine} vs {new.engine}")
    if base.seconds.width_s != new.seconds.width_s:
        warnings.append("the runs' ok/s are counted over different steps (a run longer than a day)")
    return warnings


def histogram_diffs(
    metric: str, scope: str, base: Histogram, new: Histogram, th: Thresholds
) -> list[MetricDiff]:
    cb, cn = base.counts(), new.counts()
    out = []
    for p in PERCENTILES:
        q = float(p[1:])
        values = (base.percentile(q, cb), new.percentile(q, cn))
        p_values = histogram_bootstrap_p_values(cb, cn, q)
        samples = (base.count, new.count)
        out.append(percentile_diff(f"{p}({metric})", scope, values, p_values, samples, th, HISTOGRAM_TEST))
    return out


def histogram_bootstrap_p_values(base: np.ndarray, new: np.ndarray, percentile: float) -> tuple[float, float]:
    """compare.bootstrap_p_values from bucket counts: one-sided (candidate higher, candidate lower)."""
    rng = np.random.default_rng(0)
    higher = lower = 0
    for _ in range(BOOTSTRAP_RESAMPLES // 100):
        rb = _resampled_percentiles(base, percentile, rng)
        rn = _resampled_percentiles(new, percentile, rng)
        higher += int(np.sum(rn <= rb))
        lower += int(np.sum(rn >= rb))
    total = BOOTSTRAP_RESAMPLES
    return (higher + 1) / (total + 1), (lower + 1) / (total + 1)


def _resampled_percentiles(counts: np.ndarray, percentile: float, rng: np.random.Generator) -> np.ndarray:
    """100 resamples' nearest-rank percentiles: each a multinomial draw of n (capped as the records' test
    caps) over the non-zero buckets."""
    (where,) = np.nonzero(counts)
    n = int(min(counts.sum(), BOOTSTRAP_MAX_SAMPLES))
    draws = rng.multinomial(n, counts[where] / counts[where].sum(), size=100)
    rank = max(1, int(np.ceil(percentile / 100 * n - 1e-9)))
    picked = (np.cumsum(draws, axis=1) >= rank).argmax(axis=1)
    return (
        np.array(
            [
                HDR_GRID.get_highest_equivalent_value(HDR_GRID.get_value_from_index(int(i)))
                for i in where[picked]
            ]
        )
        / MICROS
    )


# --- N runs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matrix:
    digests: list[Digest]
    comparisons: list[Comparison]  # run k (k >= 1) against run 0, p-values Holm-adjusted
    raw_p: list[dict[tuple[str, str], float | None]]  # before the correction, per comparison
    records_tested: bool  # the tests ran on the records (every input a run folder)

    @property
    def regressions(self) -> list[tuple[int, MetricDiff]]:
        """(run number, 1-based as the matrix shows it, and the regression); run 1 is the baseline."""
        return [(k + 2, d) for k, c in enumerate(self.comparisons) for d in c.regressions]

    @property
    def unmeasured(self) -> list[str]:
        return [d.label for d in self.digests if d.scopes["all"].requests == 0]

    def as_json(self) -> str:
        body = {
            "runs": [d.label for d in self.digests],
            "correction": "holm, per metric and scope over the comparisons with the first run",
            "regressions": len(self.regressions),
            "comparisons": [json.loads(c.as_json()) for c in self.comparisons],
        }
        return json.dumps(body, indent=2)


def compare_many(paths: Sequence[Path], th: Thresholds) -> Matrix:
    """Each input against the first; raises NotARun, CorruptRun, BadBaseline."""
    digests = [load_any(p) for p in paths]
    records = all(
        p.is_dir() and (p / "run.json").is_file() and not (p / BASELINE_FILE).exists() for p in paths
    )
    if records:
        pairs = [compare_runs(paths[0], p, th) for p in paths[1:]]
    else:
        pairs = [compare_digests(digests[0], d, th) for d in digests[1:]]
    raw = [{(d.metric, d.scope): d.p_value for d in c.diffs} for c in pairs]
    return Matrix(digests, holm(pairs, th), raw, records)


def holm(comparisons: list[Comparison], th: Thresholds) -> list[Comparison]:
    """Holm-adjusted p-values per family (metric, scope) across the comparisons; regressions re-decided."""
    family: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for ci, c in enumerate(comparisons):
        for di, d in enumerate(c.diffs):
            if d.p_value is not None:
                family[(d.metric, d.scope)].append((ci, di))
    diffs = [list(c.diffs) for c in comparisons]
    for members in family.values():
        ordered = sorted(members, key=lambda m: diffs[m[0]][m[1]].p_value or 0.0)
        running, m = 0.0, len(ordered)
        for rank, (ci, di) in enumerate(ordered):
            d = diffs[ci][di]
            running = max(running, min(1.0, (m - rank) * (d.p_value or 0.0)))
            diffs[ci][di] = dataclasses.replace(
                d, p_value=running, regression=is_large(d, th) and running < th.alpha
            )
    return [dataclasses.replace(c, diffs=ds) for c, ds in zip(comparisons, diffs, strict=True)]


# --- what the matrix shows ----------------------------------------------------------------------------


def run_rows(m: Matrix) -> list[tuple[str, list[str]]]:
    """(row label, one cell per run): hardware, latency, errors, throughput, SLO verdicts."""
    ds = m.digests
    rows: list[tuple[str, list[str]]] = [
        ("scenario", [f"{d.scenario_name} ({d.scenario_sha256[:8]})" for d in ds]),
        ("commit", [(d.git_commit or "—")[:12] for d in ds]),
        ("engine", [d.engine_version or d.engine for d in ds]),
        ("generator", [short(d.hardware.generator) if d.hardware else "unknown" for d in ds]),
        ("target", [short(d.hardware.target) if d.hardware else "unknown" for d in ds]),
        ("requests", [f"{d.scopes['all'].requests:,}" for d in ds]),
    ]
    for p in PERCENTILES:
        rows.append((p, _cells(m, f"{p}(latency)", lambda d, q=float(p[1:]): _ms(_percentile(d, q)))))
    rows.append(("mean", [_ms(_latency(d).mean if _latency(d) else None) for d in ds]))
    rows.append(("error rate", _cells(m, "error_rate", lambda d: _rate(d))))
    rows.append(("throughput", _cells(m, "throughput", lambda d: _tput(d.throughput()))))
    for slo in dict.fromkeys(v.slo for d in ds for v in d.verdicts):
        rows.append((f"SLO `{slo}`", [_verdict(d, slo) for d in ds]))
    rows.append(("verdict", [d.verdict or "—" for d in ds]))
    return rows


def _cells(m: Matrix, metric: str, value: Callable[[Digest], str]) -> list[str]:
    cells = [value(m.digests[0]) + " (baseline)"]
    for c, d in zip(m.comparisons, m.digests[1:], strict=True):
        diff = next((x for x in c.diffs if x.metric == metric and x.scope == "all"), None)
        cells.append(value(d) if diff is None else f"{value(d)} ({_change(diff)})")
    return cells


def _change(diff: MetricDiff) -> str:
    p = "—" if diff.p_value is None else f"{diff.p_value:.2g}"
    flag = " REGRESSION" if diff.regression else " better" if diff.improvement else ""
    return f"{diff.change_text()}, p={p}{flag}"


def _latency(d: Digest) -> Histogram | None:
    return d.scopes["all"].latency


def _percentile(d: Digest, q: float) -> float | None:
    hist = _latency(d)
    return hist.percentile(q) if hist else None


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f} ms"


def _rate(d: Digest) -> str:
    scope = d.scopes["all"]
    return "—" if not scope.requests else f"{scope.errors / scope.requests:.3%}"


def _tput(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}/s"


def _verdict(d: Digest, slo: str) -> str:
    found = next((v for v in d.verdicts if v.slo == slo), None)
    if found is None:
        return "—"
    value = "" if found.value is None else f" {found.value:.4g} {found.unit}".rstrip()
    return f"{found.status}{value}"


def markdown(m: Matrix) -> str:
    n = len(m.digests)
    verdict = f"{len(m.regressions)} regression(s)" if m.regressions else "no regression"
    lines = [f"# compare: {n} runs, {verdict}", ""]
    tested = "records" if m.records_tested else "HDR histograms (a baseline has no records)"
    lines.append(
        "Each run against run 1 (the baseline); p-values Holm-adjusted per metric and scope over the "
        f"{n - 1} comparison(s); tests on the {tested}."
    )
    lines.append("")
    for k, c in enumerate(m.comparisons, start=2):
        lines += [f"> run {k}: {w}" for w in c.warnings]
    header = "| | " + " | ".join(f"run {k}" for k in range(1, n + 1)) + " |"
    lines += ["", header, "|---" * (n + 1) + "|"]
    lines.append("| source | " + " | ".join(f"`{d.label}`" for d in m.digests) + " |")
    for label, cells in run_rows(m):
        lines.append(f"| {label} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if m.regressions:
        lines += ["", "## Regressions", "", "| run | metric | scope | base | new | change | p (Holm) |"]
        lines.append("|---|---|---|---|---|---|---|")
        for k, d in m.regressions:
            base, new = value_text(d)
            lines.append(
                f"| {k} | {d.metric} | {d.scope} | {base} | {new} | {d.change_text()} | {d.p_value:.2g} |"
            )
    return "\n".join(lines) + "\n"


# --- run --baseline -------------------------------------------------------------------------------------


def gate(run_dir: Path, baseline: Path, run_code: int, th: Thresholds | None = None) -> tuple[int, str]:
    """`run --baseline`: the new run against the stored digest. Exit 1 on a significant regression, else
    the run's own code; a run that could not be judged (3) stays 3, untested."""
    if run_code == 3:
        return run_code, "baseline: not compared (the run did not finish)\n"
    comparison = compare_digests(read_digest(baseline), digest_run(run_dir), th or Thresholds())
    text = compare_markdown(comparison)
    return (1 if comparison.regressions else run_code), text
