"""Stage: the single-file HTML pages of `compare` (a matrix of runs) and `trend` (runs over time).

As the report: Plotly figures with plotly.js inlined once (the page opens offline), every value through
Jinja2's autoescaping or as JSON data, never as markup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader, select_autoescape
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from scenariokit.results.baseline import Digest, Histogram
from scenariokit.results.matrix import PERCENTILES, Matrix, markdown, run_rows
from scenariokit.results.metrics import HDR_GRID, MICROS

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
COLORS = ("#264653", "#e76f51", "#2a9d8f", "#e9c46a", "#6a4c93", "#d62828", "#8ab17d", "#457b9d")


def _env() -> Environment:
    return Environment(
        loader=PackageLoader("scenariokit.results", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _html(fig: go.Figure, name: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{name}", config=PLOT_CONFIG)


def when(d: Digest) -> str:
    return datetime.fromtimestamp(d.started_unix, UTC).strftime("%Y-%m-%d %H:%M")


def run_label(k: int, d: Digest) -> str:
    commit = f" · {d.git_commit[:8]}" if d.git_commit else ""
    return f"{k}: {when(d)}{commit}"


# --- compare ----------------------------------------------------------------------------------------


def write_compare_page(m: Matrix, path: Path) -> Path:
    labels = [run_label(k, d) for k, d in enumerate(m.digests, start=1)]
    plots = {
        "percentiles": _html(percentiles_figure(m.digests, labels), "percentiles"),
        "cdf": _html(cdf_figure(m.digests, labels), "cdf"),
        "rates": _html(rates_figure(m.digests, labels), "rates"),
    }
    html = (
        _env()
        .get_template("compare.html.j2")
        .render(m=m, labels=labels, rows=run_rows(m), plots=plots, plotly_js=get_plotlyjs(), text=markdown(m))
    )
    path.write_text(html, encoding="utf-8")
    return path


def percentiles_figure(digests: list[Digest], labels: list[str]) -> go.Figure:
    fig = go.Figure()
    for p, color in zip(PERCENTILES, COLORS, strict=False):
        values = [_ms(d.scopes["all"].latency, float(p[1:])) for d in digests]
        fig.add_bar(name=p, x=labels, y=values, marker_color=color)
    fig.update_layout(barmode="group", yaxis_title="latency (ms)", title="latency percentiles by run")
    return fig


def _ms(hist: Histogram | None, q: float) -> float | None:
    value = hist.percentile(q) if hist is not None else None
    return None if value is None else value * 1000


def cdf_figure(digests: list[Digest], labels: list[str]) -> go.Figure:
    """Each run's latency distribution from its histogram: the share of ok requests at or under x."""
    fig = go.Figure()
    for d, label, color in zip(digests, labels, _cycle(len(digests)), strict=True):
        hist = d.scopes["all"].latency
        if hist is None or not hist.count:
            continue
        counts = hist.counts()
        (where,) = np.nonzero(counts)
        x = [
            HDR_GRID.get_highest_equivalent_value(HDR_GRID.get_value_from_index(int(i))) / MICROS * 1000
            for i in where
        ]
        y = np.cumsum(counts[where]) / hist.count
        fig.add_scatter(x=x, y=y.tolist(), mode="lines", name=label, line={"color": color, "shape": "hv"})
    fig.update_layout(xaxis_type="log", xaxis_title="latency (ms)", yaxis_title="share at or under")
    fig.update_layout(title="latency distribution (ok requests)")
    return fig


def rates_figure(digests: list[Digest], labels: list[str]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("error rate (%)", "throughput (ok/s)"))
    errors = [
        100 * d.scopes["all"].errors / d.scopes["all"].requests if d.scopes["all"].requests else None
        for d in digests
    ]
    fig.add_bar(x=labels, y=errors, marker_color=COLORS[5], showlegend=False, row=1, col=1)
    fig.add_bar(
        x=labels, y=[d.throughput() for d in digests], marker_color=COLORS[0], showlegend=False, row=1, col=2
    )
    return fig


def _cycle(n: int) -> list[str]:
    return [COLORS[i % len(COLORS)] for i in range(n)]


# --- trend ------------------------------------------------------------------------------------------


def trend_points(digests: list[Digest]) -> list[dict[str, object]]:
    """One point per run, oldest first: p95, error rate and throughput."""
    out = []
    for d in sorted(digests, key=lambda d: d.started_unix):
        scope = d.scopes["all"]
        out.append(
            {
                "digest": d,
                "p95_ms": _ms(scope.latency, 95.0),
                "error_rate": scope.errors / scope.requests if scope.requests else None,
                "throughput": d.throughput(),
            }
        )
    return out


def write_trend_page(digests: list[Digest], path: Path) -> Path:
    points = trend_points(digests)
    labels = [run_label(k, p["digest"]) for k, p in enumerate(points, start=1)]  # type: ignore[arg-type]
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=("p95 latency (ms)", "error rate (%)", "throughput (ok/s)"),
    )  # fmt: skip
    rate = [None if p["error_rate"] is None else 100 * p["error_rate"] for p in points]  # type: ignore[operator]
    for row, (values, color) in enumerate(
        (
            ([p["p95_ms"] for p in points], COLORS[1]),
            (rate, COLORS[5]),
            ([p["throughput"] for p in points], COLORS[0]),
        ),
        start=1,
    ):
        fig.add_scatter(
            x=labels, y=values, mode="lines+markers", line={"color": color}, showlegend=False, row=row, col=1
        )
    fig.update_layout(height=780, title="across runs, oldest first")
    names = sorted({p["digest"].scenario_name for p in points})  # type: ignore[union-attr]
    html = (
        _env()
        .get_template("trend.html.j2")
        .render(
            points=points,
            labels=labels,
            names=names,
            plot=_html(fig, "trend"),
            plotly_js=get_plotlyjs(),
            when=when,
        )
    )
    path.write_text(html, encoding="utf-8")
    return path
