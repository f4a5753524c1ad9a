"""Stage: the single-file HTML report of a run (`report.html`), next to summary.md.

Built from the run folder alone (run.json, the stored records, the monitor samples and the summary), so
`scenariokit report RUN_DIR` rebuilds it. Plots are Plotly figures with plotly.js inlined once: the file
opens offline, anywhere, with zoom and hover. Every value reaches the page through Jinja2's autoescaping
or as JSON data, never as markup.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader, select_autoescape
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from scenariokit.compile.ir import Stage, StageTable
from scenariokit.engines.records import RequestRecord
from scenariokit.results.autoscaling import AutoscalingOut, offered_per_second, ready_per_second
from scenariokit.results.fleet import Fleet, read_fleet
from scenariokit.results.health import generator_samples
from scenariokit.results.inflight import connection_counts
from scenariokit.results.metrics import RunData
from scenariokit.results.runfolder import RunFolder
from scenariokit.results.seconds import RequestSeconds, request_seconds
from scenariokit.results.slo import GoodputRule, show
from scenariokit.results.summary import FaultOut, Summary, VerdictOut, recovery_text, write_summary
from scenariokit.results.trend import target_rss

REPORT_NAME = "report.html"
PLOT_HEIGHT = 330
COLORS = {"p50": "#2a9d8f", "p95": "#e9c46a", "p99": "#e76f51", "ok": "#264653", "errors": "#d62828",
          "goodput": "#6a4c93", "fault": "#d62828"}  # fmt: skip
NOT_OVER_TIME = frozenset({"histogram", "capacity"})  # every other plot has the run's seconds as x
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
PALETTE = ("#264653", "#e76f51", "#2a9d8f", "#6a4c93", "#e9c46a", "#1d3557", "#d62828", "#8d99ae")


def write_html_report(run_dir: Path, summary: Summary) -> Path:
    folder = RunFolder(run_dir)
    meta = folder.meta
    stages = tuple(meta.stages)
    data = RunData([], summary.started_unix, summary.ended_unix, stages)  # the clock; records are streamed
    seconds = request_seconds(folder.records(), data.started_unix, data.duration_s)
    target = folder.samples("target.jsonl")
    host = folder.samples("host.jsonl")
    gpu = folder.samples("gpu.jsonl")
    gpu_info = folder.gpu_info
    unit = summary.analysis.unit
    good = goodput_seconds(folder, summary, meta.slos, data)
    figures = {
        "load": load_figure(data, unit, seconds.timeline, good, connection_counts(summary.generator)),
        "instances": instances_figure(data, summary.autoscaling, seconds.timeline),
        "latency": latency_figure(data, summary, seconds.timeline),
        "histogram": histogram_figure(folder),
        "errors": errors_figure(data, seconds),
        "server": server_figure(data, target),
        "host": host_figure(data, host, gpu, summary.generator),
        "network": network_figure(data, host),
        "target": target_figure(data, target, summary.generator),
        **fleet_figures(data, read_fleet(run_dir, data.started_unix)),
        "capacity": capacity_figure(summary),
        "trends": trends_figure(summary),
    }
    for name, fig in figures.items():
        if fig is not None and name not in NOT_OVER_TIME:
            fault_bands(fig, summary.faults)
    plots = {
        name: fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{name}", config=PLOT_CONFIG)
        for name, fig in figures.items()
        if fig is not None
    }
    env = Environment(
        loader=PackageLoader("scenariokit.results", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        s=summary,
        meta=meta,
        plots=plots,
        plotly_js=get_plotlyjs(),
        gpu_info=gpu_info,
        started=datetime.fromtimestamp(summary.started_unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        ms=_ms,
        pct=_pct,
        num=_num,
        count=lambda value: "—" if value is None else f"{value:,}",
        quantity=lambda value, unit: "—" if value is None else show(value, unit),
        interval=_interval,
        recovery=recovery_text,
    )
    path = run_dir / REPORT_NAME
    path.write_text(html, encoding="utf-8")
    return path


def _interval(v: VerdictOut) -> str:
    """The bounds that decided the verdict: the share beyond the limit for a percentile (what decides),
    the value's own bounds otherwise; `?` where the samples give none."""
    level = f"{v.confidence:.4g}"
    if v.share_low is not None and v.share_high is not None:
        return f"{v.k:,} of {v.samples:,} beyond: {v.share_low:.2%} to {v.share_high:.2%} ({level})"
    if v.low is None and v.high is None:
        return "—"
    if v.low == v.high:
        return "exact"
    low = "?" if v.low is None else show(v.low, v.unit)
    high = "?" if v.high is None else show(v.high, v.unit)
    return f"{low} to {high} ({level})"


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.1f}"


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share:.2%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


# --- figures --------------------------------------------------------------------------------------


def _layout(fig: go.Figure, title: str, y_title: str, x_title: str = "seconds into the run") -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        height=PLOT_HEIGHT,
        margin={"l": 60, "r": 20, "t": 50, "b": 45},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
        hovermode="x unified",
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def _stage_bands(fig: go.Figure, stages: tuple[Stage, ...]) -> None:
    """Shade every other stage and name it, so each curve reads against the load it was under."""
    for i, stage in enumerate(StageTable.of(stages).windows):
        fig.add_vrect(
            x0=stage.start_s,
            x1=stage.end_s,
            fillcolor="#8d99ae",
            opacity=0.08 if i % 2 == 0 else 0.0,
            line_width=0,
            annotation_text=stage.label,
            annotation_position="top left",
            annotation_font_size=10,
        )


def fault_bands(fig: go.Figure, faults: list[FaultOut]) -> None:
    """Shade each fault occurrence, named, on a plot over the run's seconds."""
    for f in faults:
        band = {
            "x0": f.start_s,
            "x1": max(f.end_s, f.start_s + 0.2),  # a kill with no downtime still shows as a line
            "fillcolor": COLORS["fault"],
            "opacity": 0.15,
            "line_width": 0,
            "annotation_text": f"fault: {f.name}",
            "annotation_position": "top right",
            "annotation_font_size": 10,
            "annotation_font_color": COLORS["fault"],
        }
        bands = [band]
        if f.ready_s is not None and f.ready_s > band["x1"]:  # kill-target: down until it answers again
            bands.append(band | {"x0": band["x1"], "x1": f.ready_s, "opacity": 0.07,
                                 "annotation_text": f"{f.name}: until ready"})  # fmt: skip
        for shade in bands:
            try:  # a figure of several rows (the soak trends) gets the band on each
                fig.add_vrect(**shade, row="all", col="all")
            except Exception:  # a figure without subplots takes no row
                fig.add_vrect(**shade)


def goodput_seconds(folder: RunFolder, summary: Summary, slos: Any, data: RunData) -> list[int] | None:
    """Good requests (slo.GoodputRule) per second of the run, when a latency SLO makes them differ from
    the ok ones; one more pass over the stored records."""
    if summary.goodput is None or not summary.goodput.latency_slos:
        return None
    spans: dict[str, list[tuple[float, float]]] = {}
    for f in summary.faults:
        spans.setdefault(f.name, []).append((f.start_s, max(f.start_s, f.end_s)))
    rule = GoodputRule.of(tuple(slos), data.stages, spans)
    counts = [0] * max(1, math.ceil(data.duration_s))
    for batch in folder.records():
        for r in batch:
            offset = r.t - data.started_unix
            if 0 <= offset < len(counts) and rule.good(r, offset):
                counts[math.floor(offset)] += 1
    return counts


def load_figure(
    data: RunData,
    unit: str,
    rows: list[dict[str, Any]],
    good: list[int] | None = None,
    connections: list[tuple[float, int]] | None = None,
) -> go.Figure:
    seconds = [row["second"] for row in rows]
    table = StageTable.of(data.stages)
    intended = [table.level_at(float(s) + 0.5) for s in seconds]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(x=seconds, y=intended, name=f"intended {unit}", line={"shape": "hv", "dash": "dot"})
    fig.add_scatter(x=seconds, y=[row["concurrency"] for row in rows], name="in flight (achieved)")
    if connections:  # the engine's open connections to the target (run/connections.py)
        fig.add_scatter(x=[t - data.started_unix for t, _ in connections], y=[n for _, n in connections],
                        name="open connections", line={"shape": "hv", "dash": "dash"})  # fmt: skip
    fig.add_bar(x=seconds, y=[row["ok"] for row in rows], name="ok/s", marker_color=COLORS["ok"], opacity=0.5,
                secondary_y=True)  # fmt: skip
    fig.add_bar(x=seconds, y=[row["errors"] for row in rows], name="errors/s", marker_color=COLORS["errors"],
                opacity=0.6, secondary_y=True)  # fmt: skip
    if good is not None:
        fig.add_scatter(x=seconds, y=good[: len(seconds)], name="goodput/s (ok and within the latency SLOs)",
                        line={"color": COLORS["goodput"], "shape": "hv"}, secondary_y=True)  # fmt: skip
    fig.update_layout(barmode="stack")
    _layout(fig, "Load: intended vs achieved, and responses per second", unit)
    fig.update_yaxes(title_text="responses/s", secondary_y=True, showgrid=False)
    _stage_bands(fig, data.stages)
    return fig


def instances_figure(
    data: RunData, autoscaling: AutoscalingOut | None, rows: list[dict[str, Any]]
) -> go.Figure | None:
    """Ready instances under the load plot (`monitoring.instances`), with the capacity they give, the
    offered rate and ok/s, and each time-to-scale episode shaded."""
    if autoscaling is None:
        return None
    seconds = [row["second"] for row in rows]
    points = autoscaling.instances
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ready_line = {"shape": "hv", "width": 3, "color": COLORS["ok"]}
    steps_x = [p.t_s for p in points] + ([data.duration_s] if points else [])  # the last count held
    steps_y = [p.ready for p in points] + ([points[-1].ready] if points else [])
    fig.add_scatter(x=steps_x, y=steps_y, name="ready instances", line=ready_line)
    model = "open" if autoscaling.offered_source == "intended" else "closed"
    offered = offered_per_second(data.stages, model, rows)
    hv = {"shape": "hv"}
    fig.add_scatter(x=seconds, y=offered, name="offered req/s", line=hv | {"dash": "dot"}, secondary_y=True)
    fig.add_scatter(x=seconds, y=[row["ok"] for row in rows], name="ok/s", line=hv, secondary_y=True)
    if (per_instance := autoscaling.capacity_per_instance) is not None:
        ready = ready_per_second([{"t": p.t_s, "ready": p.ready} for p in points], 0.0, len(rows))
        capacity = [None if r is None else r * per_instance for r in ready]
        name = "capacity present (ok/s)"
        fig.add_scatter(x=seconds, y=capacity, name=name, line=hv | {"dash": "dash"}, secondary_y=True)
    for e in autoscaling.episodes:
        _episode_band(fig, e.start_s, e.caught_up_s, e.time_to_scale_s, data.duration_s)
    per = autoscaling.capacity_per_instance
    capacity = f"{per:.2f} ok/s per instance ({autoscaling.capacity_source})" if per else "capacity unknown"
    _layout(fig, f"Ready instances under the load; {capacity}", "instances")
    fig.update_yaxes(
        title_text="req/s", secondary_y=True, showgrid=False, rangemode="tozero", tickmode="auto"
    )
    fig.update_yaxes(rangemode="tozero", dtick=1, secondary_y=False)
    return fig


def _episode_band(
    fig: go.Figure, start: float, caught: float | None, tts: float | None, end_s: float
) -> None:
    label = f"time to scale {tts:g} s" if tts is not None else "not caught up"
    end = caught if caught is not None else end_s
    fig.add_vrect(
        x0=start,
        x1=max(end, start + 0.2),
        fillcolor=COLORS["p95"],
        opacity=0.2,
        line_width=0,
        annotation_text=label,
        annotation_position="top left",
        annotation_font_size=10,
    )


def latency_figure(data: RunData, summary: Summary, rows: list[dict[str, Any]]) -> go.Figure:
    seconds = [row["second"] for row in rows]
    fig = go.Figure()
    for p in ("p50", "p95", "p99"):
        values = [None if row[p] is None else float(row[p]) * 1000 for row in rows]  # type: ignore[arg-type]
        fig.add_scatter(x=seconds, y=values, name=p, line={"color": COLORS[p]}, connectgaps=False)
    for verdict in summary.verdicts:
        if verdict.unit == "s" and verdict.metric in ("latency", "uncorrected_latency"):
            fig.add_hline(
                y=verdict.threshold * 1000,
                line_dash="dash",
                line_color="#d62828" if verdict.status == "fail" else "#6c757d",
                annotation_text=verdict.slo,
                annotation_font_size=10,
            )
    _layout(fig, "Latency percentiles per second (requests started in that second)", "ms")
    _stage_bands(fig, data.stages)
    return fig


def _ok_latencies_ms(batch: list[RequestRecord]) -> dict[str, np.ndarray]:
    by_name: dict[str, list[float]] = defaultdict(list)
    for r in batch:
        if r.ok:
            by_name[r.name].append(r.corrected_latency * 1000)
    return {name: np.asarray(values) for name, values in by_name.items()}


def histogram_figure(folder: RunFolder) -> go.Figure | None:
    """Pre-binned on log-spaced edges: the page stays small whatever the number of requests. Two passes
    over the stored records (the extremes, then the counts), a batch at a time."""
    count, low, high = 0, math.inf, -math.inf
    for batch in folder.records():
        for values in _ok_latencies_ms(batch).values():
            count, low, high = count + len(values), min(low, values.min()), max(high, values.max())
    if not count:
        return None
    low, high = max(0.01, float(low)), float(high)
    edges = np.geomspace(low, high * 1.0001, num=min(60, max(10, int(math.sqrt(count)))))
    by_name: dict[str, np.ndarray] = {}
    for batch in folder.records():
        for name, values in _ok_latencies_ms(batch).items():
            counts, _ = np.histogram(values, bins=edges)
            by_name[name] = by_name.get(name, 0) + counts
    fig = go.Figure()
    for name, counts in sorted(by_name.items()):
        centers = np.sqrt(edges[:-1] * edges[1:])
        fig.add_bar(x=centers.tolist(), y=counts.tolist(), name=name, opacity=0.7,
                    width=(edges[1:] - edges[:-1]).tolist())  # fmt: skip
    fig.update_layout(barmode="overlay")
    _layout(fig, "Latency distribution of successful requests", "requests", "ms (log scale)")
    fig.update_xaxes(type="log")
    fig.update_layout(hovermode="closest")
    return fig


def errors_figure(data: RunData, view: RequestSeconds) -> go.Figure | None:
    seconds = len(view.timeline)
    by_kind = {kind: counts for kind, counts in view.kind_seconds.items() if kind is not None}
    if not by_kind:
        return None
    fig = go.Figure()
    totals = Counter({kind: sum(counts) for kind, counts in by_kind.items()})
    for kind, _ in totals.most_common():
        fig.add_bar(x=list(range(seconds)), y=by_kind[kind], name=kind)
    fig.update_layout(barmode="stack")
    _layout(fig, "Errors per second by kind", "errors/s")
    _stage_bands(fig, data.stages)
    return fig


def _target_series(
    samples: list[dict[str, Any]], metric: str, origin: float
) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for sample in samples:
        matched = [
            v for k, v in sample.get("metrics", {}).items() if k == metric or k.startswith(metric + "{")
        ]
        if matched:
            xs.append(sample["t"] - origin)
            ys.append(sum(matched))
    return xs, ys


def server_figure(data: RunData, target: list[dict[str, Any]]) -> go.Figure | None:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    shown = 0
    for metric, label in (("vllm:num_requests_running", "running"), ("vllm:num_requests_waiting", "waiting")):
        xs, ys = _target_series(target, metric, data.started_unix)
        if xs:
            fig.add_scatter(x=xs, y=ys, name=label, line={"shape": "hv"})
            shown += 1
    for metric in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"):
        xs, ys = _target_series(target, metric, data.started_unix)
        if xs:
            fig.add_scatter(x=xs, y=[y * 100 for y in ys], name="KV cache %", secondary_y=True)
            shown += 1
    if not shown:
        return None
    _layout(fig, "Target: requests running and waiting (its /metrics)", "requests")
    fig.update_yaxes(title_text="KV cache %", secondary_y=True, showgrid=False, range=[0, 100])
    _stage_bands(fig, data.stages)
    return fig


def host_figure(
    data: RunData, host: list[dict[str, Any]], gpu: list[dict[str, Any]], generator: dict[str, Any]
) -> go.Figure | None:
    if not host:
        return None
    origin = data.started_unix
    fig = go.Figure()
    xs = [s["t"] - origin for s in host]
    fig.add_scatter(x=xs, y=[s["cpu_percent"] for s in host], name="host CPU %")
    fig.add_scatter(x=xs, y=[s["memory_percent"] for s in host], name="host memory %")
    samples = generator_samples(generator)
    if samples:
        fig.add_scatter(x=[s.t - origin for s in samples], y=[s.share * 100 for s in samples],
                        name="load generator CPU %", line={"dash": "dot"})  # fmt: skip
    for sample_index in range(len(gpu[0]["gpus"]) if gpu else 0):
        gx = [s["t"] - origin for s in gpu]
        fig.add_scatter(x=gx, y=[s["gpus"][sample_index]["util_percent"] for s in gpu],
                        name=f"GPU {sample_index} util %")  # fmt: skip
        fig.add_scatter(
            x=gx,
            y=[100 * g["memory_used_bytes"] / g["memory_total_bytes"] for g in
               (s["gpus"][sample_index] for s in gpu)],
            name=f"GPU {sample_index} memory %",
        )  # fmt: skip
    _layout(fig, "Host: CPU, memory" + (", GPU" if gpu else "") + " and the load generator", "%")
    fig.update_yaxes(range=[0, 105])
    _stage_bands(fig, data.stages)
    return fig


def network_figure(data: RunData, host: list[dict[str, Any]]) -> go.Figure | None:
    """The host's network throughput both ways, in bytes/s: each host sample's byte counts (every
    interface, loopback included: an embedded target's traffic is loopback) over the time since the last."""
    origin, xs, sent, received = data.started_unix, [], [], []
    for before, now in itertools.pairwise(host):
        span = now["t"] - before["t"]
        if span <= 0 or "net_sent_bytes" not in now:
            continue
        xs.append(now["t"] - origin)
        sent.append(now["net_sent_bytes"] / span)
        received.append(now["net_recv_bytes"] / span)
    if not xs:
        return None
    fig = go.Figure()
    fig.add_scatter(x=xs, y=sent, name="sent bytes/s")
    fig.add_scatter(x=xs, y=received, name="received bytes/s", line={"dash": "dot"})
    _layout(fig, "Network: bytes per second sent and received by the host (every interface)", "bytes/s")
    _stage_bands(fig, data.stages)
    return fig


def target_figure(data: RunData, target: list[dict[str, Any]], generator: dict[str, Any]) -> go.Figure | None:
    """The target's CPU (cores, sampled with the generator's: the process tree the runner started; else
    the rate of its /metrics' process_cpu_seconds_total) and resident memory (its /metrics: the embedded
    server's workers plus its main process, as memory_growth reads it)."""
    origin = data.started_unix
    cpu_x, cpu_y = _target_cpu(target, generator, origin)
    mem = [(s["t"] - origin, target_rss(s.get("metrics", {}))) for s in target]
    mem = [(x, y) for x, y in mem if y is not None]
    if not cpu_x and not mem:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if cpu_x:
        fig.add_scatter(x=cpu_x, y=cpu_y, name="target CPU (cores)", line={"shape": "hv"})
    if mem:
        fig.add_scatter(x=[x for x, _ in mem], y=[y / 2**20 for _, y in mem], name="target memory (MiB)",
                        line={"dash": "dot"}, secondary_y=True)  # fmt: skip
    _layout(fig, "Target: CPU and resident memory", "cores")
    fig.update_yaxes(title_text="MiB", secondary_y=True, showgrid=False, rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", secondary_y=False)
    _stage_bands(fig, data.stages)
    return fig


def _target_cpu(
    target: list[dict[str, Any]], generator: dict[str, Any], origin: float
) -> tuple[list[float], list[float]]:
    sampled = [s for s in generator.get("samples") or [] if isinstance(s, dict) and "target_cores" in s]
    if sampled:
        return [s["t"] - origin for s in sampled], [s["target_cores"] for s in sampled]
    xs, totals = _target_series(target, "process_cpu_seconds_total", origin)
    rates = [
        (x1, (c1 - c0) / (x1 - x0))
        for (x0, c0), (x1, c1) in itertools.pairwise(zip(xs, totals, strict=True))
        if x1 > x0 and c1 >= c0  # a restarted target's counter starts again
    ]
    return [x for x, _ in rates], [y for _, y in rates]


# --- monitoring.targets (results/fleet.py) ----------------------------------------------------------


def fleet_figures(data: RunData, fleet: Fleet) -> dict[str, go.Figure | None]:
    """The targets' GPUs, vLLM servers and hosts, each plot over the run's seconds."""
    return {
        "gpus": gpus_figure(data, fleet),
        "vllm": vllm_figure(data, fleet),
        "nodes": nodes_figure(data, fleet),
    }


def gpus_figure(data: RunData, fleet: Fleet) -> go.Figure | None:
    """Each GPU's utilisation (solid) and framebuffer used (dotted), in percent, the same colour a GPU."""
    if not fleet.gpus:
        return None
    fig = go.Figure()
    for i, g in enumerate(fleet.gpus):
        color = PALETTE[i % len(PALETTE)]
        fig.add_scatter(x=[p.t for p in g.util], y=[p.value for p in g.util], name=f"{g.gpu.label} util %",
                        line={"color": color})  # fmt: skip
        fig.add_scatter(x=[p.t for p in g.memory], y=[p.value * 100 for p in g.memory],
                        name=f"{g.gpu.label} memory %", line={"color": color, "dash": "dot"})  # fmt: skip
    _layout(fig, "Target GPUs: utilisation and memory used (DCGM)", "%")
    fig.update_yaxes(range=[0, 105])
    _stage_bands(fig, data.stages)
    return fig


def vllm_figure(data: RunData, fleet: Fleet) -> go.Figure | None:
    """Each vLLM target's requests running and waiting, and its KV cache in percent (right axis)."""
    if not fleet.vllm:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for v in fleet.vllm:
        for label, points in (("running", v.running), ("waiting", v.waiting)):
            fig.add_scatter(x=[p.t for p in points], y=[p.value for p in points], name=f"{v.target} {label}",
                            line={"shape": "hv"})  # fmt: skip
        fig.add_scatter(x=[p.t for p in v.kv], y=[p.value * 100 for p in v.kv], name=f"{v.target} KV cache %",
                        line={"dash": "dot"}, secondary_y=True)  # fmt: skip
    _layout(fig, "vLLM targets: queue and KV cache", "requests")
    fig.update_yaxes(title_text="KV cache %", secondary_y=True, showgrid=False, range=[0, 105])
    _stage_bands(fig, data.stages)
    return fig


def nodes_figure(data: RunData, fleet: Fleet) -> go.Figure | None:
    """Each node_exporter target's CPU busy and memory used (percent), and its network bytes/s (right)."""
    if not fleet.nodes:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for n in fleet.nodes:
        for label, points in (("CPU %", n.cpu), ("memory %", n.memory)):
            fig.add_scatter(
                x=[p.t for p in points], y=[p.value * 100 for p in points], name=f"{n.target} {label}"
            )
        for label, points in (("received B/s", n.rx), ("sent B/s", n.tx)):
            fig.add_scatter(x=[p.t for p in points], y=[p.value for p in points], name=f"{n.target} {label}",
                            line={"dash": "dot"}, secondary_y=True)  # fmt: skip
    _layout(fig, "Target hosts (node_exporter): CPU, memory and network", "%")
    fig.update_yaxes(range=[0, 105], secondary_y=False)
    fig.update_yaxes(title_text="bytes/s", secondary_y=True, showgrid=False, rangemode="tozero")
    _stage_bands(fig, data.stages)
    return fig


def capacity_figure(summary: Summary) -> go.Figure | None:
    a = summary.analysis
    if len(a.levels) < 2:
        return None
    levels = [lv.level for lv in a.levels]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(x=levels, y=[lv.throughput for lv in a.levels], name="ok/s", mode="lines+markers",
                    line={"color": COLORS["ok"]})  # fmt: skip
    for p in ("p50", "p95"):
        fig.add_scatter(
            x=levels,
            y=[None if getattr(lv, p) is None else getattr(lv, p) * 1000 for lv in a.levels],
            name=f"{p} ms",
            mode="lines+markers",
            line={"color": COLORS[p], "dash": "dot"},
            secondary_y=True,
        )
    if (fit := a.knee.fit) is not None:  # the two-segment fit: min(slope x level, capacity)
        xs = sorted({0.0, *levels, fit.knee_level})
        fig.add_scatter(x=xs, y=[min(fit.slope * x, fit.capacity) for x in xs], name="fit", mode="lines",
                        line={"color": "#888888", "dash": "dash", "width": 1})  # fmt: skip
    if a.knee.found and a.knee.level is not None:
        fig.add_vline(x=a.knee.level, line_dash="dash", line_color="#d62828", annotation_text="knee")
    _layout(fig, f"Capacity: throughput and latency at each load level ({a.unit})", "ok/s", a.unit)
    fig.update_yaxes(title_text="latency ms", secondary_y=True, showgrid=False)
    fig.update_layout(hovermode="closest")
    return fig


TREND_UNITS = {"latency_trend": ("ms", 1000.0), "error_rate_trend": ("%", 100.0),
               "throughput_trend": ("ok/s", 1.0), "memory_growth": ("MB", 1e-6)}  # fmt: skip


def trends_figure(summary: Summary) -> go.Figure | None:
    """Soak SLOs: each one's per-bucket values and the fitted line (results/trend.py), one row each."""
    if not summary.trends:
        return None
    fig = make_subplots(rows=len(summary.trends), cols=1, shared_xaxes=True,
                        subplot_titles=[t.slo for t in summary.trends])  # fmt: skip
    for row, trend in enumerate(summary.trends, start=1):
        name, scale = TREND_UNITS[trend.metric]
        points = [y * scale for y in trend.y]
        fig.add_scatter(x=trend.t, y=points, name=f"per {trend.bucket_s:g}s, {name}", mode="markers",
                        marker={"color": COLORS["ok"], "size": 4}, row=row, col=1)  # fmt: skip
        if trend.slope_per_h is not None and trend.level is not None and trend.t:
            ends = [trend.t[0], trend.t[-1]]
            line = [(trend.level + trend.slope_per_h * (x - ends[0]) / 3600) * scale for x in ends]
            fig.add_scatter(x=ends, y=line, name=f"fit ({trend.direction or 'no trend shown'})", mode="lines",
                            line={"color": COLORS["p99"], "dash": "dash"}, row=row, col=1)  # fmt: skip
        fig.update_yaxes(title_text=name, row=row, col=1)
    _layout(fig, "Soak trends: per-bucket values and the fitted slope", "")
    fig.update_layout(height=PLOT_HEIGHT * max(1, len(summary.trends)) * 0.7)
    return fig


def write_reports(run_dir: Path, summary: Summary) -> list[str]:
    """summary.json/.md and junit.xml first (they decide CI), then the HTML report. A failure to draw is
    reported, never allowed to cost the verdict: returns the problems met."""
    write_summary(run_dir, summary)
    try:
        write_html_report(run_dir, summary)
    except Exception as exc:  # a plot that cannot be drawn must not hide the summary already written
        return [f"report.html was not written: {type(exc).__name__}: {exc}"]
    return []
