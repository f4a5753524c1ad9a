"""The fleet's metrics by role: `monitoring.targets` samples (run/monitor.py) read back as series per GPU,
per host, per process and per vLLM server, on the run's clock (seconds from the engine's start).

- dcgm: per GPU (labels gpu, UUID, modelName, Hostname of DCGM's exporter): utilisation in percent
  (DCGM_FI_DEV_GPU_UTIL) and framebuffer memory (DCGM_FI_DEV_FB_USED / FB_FREE, MiB); the memory share is
  used / (used + free), the GPU's framebuffer as DCGM reports it.
- node: the CPU busy share (1 - the idle and iowait seconds' rate over all modes' rate, all CPUs),
  memory used (1 - MemAvailable / MemTotal), network bytes/s received and sent (every device but `lo`).
- process: CPU in cores (the rate of process_cpu_seconds_total) and resident memory.
- vllm: requests running and waiting, and the KV-cache usage (vllm:kv_cache_usage_perc, V0's
  vllm:gpu_cache_usage_perc), a share from 0 to 1.

Counters become rates between consecutive samples (a counter that went down, a restarted exporter, gives
no point). A point stands at its sample's time; the monitor samples once per `monitoring.interval` (1 s by
default), so the series are per second unless the scenario says otherwise. Scrapes that failed give no
point: a gap, never a zero.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from scenariokit.compile.ir import FLEET_METRICS, Slo
from scenariokit.results.metrics import RunData, window_intervals
from scenariokit.results.slo import Verdict, show
from scenariokit.results.store import read_samples

MIB = 2**20
_LABEL = re.compile(r'(\w+)="([^"]*)"')
IDLE_MODES = frozenset({"idle", "iowait"})
KV_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # V1, V0


def split_key(key: str) -> tuple[str, dict[str, str]]:
    """`name{a="x",b="y"}` (run/monitor.py's flat key) -> (name, labels)."""
    name, _, rest = key.partition("{")
    return name, dict(_LABEL.findall(rest))


@dataclass(frozen=True)
class Point:
    t: float  # seconds from the engine's start
    value: float


@dataclass(frozen=True)
class GpuId:
    target: str
    index: str  # DCGM's `gpu` label
    uuid: str = ""
    model: str = ""
    hostname: str = ""

    @property
    def label(self) -> str:
        """How plots and verdicts name it: `dcgm-1 GPU 0 (NVIDIA H100 80GB HBM3)`."""
        return f"{self.target} GPU {self.index}" + (f" ({self.model})" if self.model else "")

    def named(self, names: Iterable[str]) -> bool:
        """Whether an SLO's `for` names this GPU: its target, its UUID, or `<target>-gpu<index>`."""
        return any(n in (self.target, self.uuid, f"{self.target}-gpu{self.index}") for n in names)


@dataclass
class GpuSeries:
    gpu: GpuId
    util: list[Point] = field(default_factory=list)  # percent
    memory: list[Point] = field(default_factory=list)  # share of the framebuffer used, 0 to 1
    used_bytes: list[Point] = field(default_factory=list)
    total_bytes: float = 0.0  # the largest used + free seen


@dataclass
class NodeSeries:
    target: str
    cpu: list[Point] = field(default_factory=list)  # busy share, 0 to 1
    memory: list[Point] = field(default_factory=list)  # used share, 0 to 1
    rx: list[Point] = field(default_factory=list)  # bytes/s
    tx: list[Point] = field(default_factory=list)


@dataclass
class ProcessSeries:
    target: str
    cpu: list[Point] = field(default_factory=list)  # cores
    rss: list[Point] = field(default_factory=list)  # bytes


@dataclass
class VllmSeries:
    target: str
    running: list[Point] = field(default_factory=list)
    waiting: list[Point] = field(default_factory=list)
    kv: list[Point] = field(default_factory=list)  # share, 0 to 1


@dataclass
class Fleet:
    gpus: list[GpuSeries] = field(default_factory=list)
    nodes: list[NodeSeries] = field(default_factory=list)
    processes: list[ProcessSeries] = field(default_factory=list)
    vllm: list[VllmSeries] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.gpus or self.nodes or self.processes or self.vllm)


def listed_targets(run_dir: Path) -> list[dict[str, str]]:
    """monitor/targets.json: the endpoints the monitor scraped, with their roles."""
    try:
        entries = json.loads((run_dir / "monitor" / "targets.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]


def read_fleet(run_dir: Path, origin: float) -> Fleet:
    """Every listed target's samples as series by role, `origin` (unix s) being the run's zero."""
    fleet = Fleet()
    readers: dict[str, Callable[[str, list[dict[str, Any]], float], None]] = {
        "dcgm": lambda name, samples, o: fleet.gpus.extend(gpu_series(name, samples, o)),
        "node": lambda name, samples, o: fleet.nodes.append(node_series(name, samples, o)),
        "process": lambda name, samples, o: fleet.processes.append(process_series(name, samples, o)),
        "vllm": lambda name, samples, o: fleet.vllm.append(vllm_series(name, samples, o)),
    }
    for entry in listed_targets(run_dir):
        reader = readers.get(str(entry.get("role")))
        if reader is None or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", entry["name"]):
            continue  # a name that is no file name of ours: not written by the monitor
        samples = read_samples(run_dir, f"targets/{entry['name']}.jsonl")
        reader(entry["name"], [s for s in samples if s.get("scrape", "ok") == "ok"], origin)
    return fleet


def _metrics(sample: dict[str, Any]) -> dict[str, float]:
    values = sample.get("metrics")
    if not isinstance(values, dict):
        return {}
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}


# --- dcgm ------------------------------------------------------------------------------------------


def gpu_series(target: str, samples: list[dict[str, Any]], origin: float) -> list[GpuSeries]:
    """One series per GPU the exporter reported (keyed by its `gpu` label and UUID)."""
    series: dict[tuple[str, str], GpuSeries] = {}
    for sample in samples:
        t = float(sample["t"]) - origin
        per_gpu: dict[tuple[str, str], dict[str, float]] = {}
        for key, value in _metrics(sample).items():
            name, labels = split_key(key)
            gpu_key = (labels.get("gpu", ""), labels.get("UUID", ""))
            per_gpu.setdefault(gpu_key, {})[name] = value
            if gpu_key not in series:
                gpu = GpuId(
                    target, gpu_key[0], gpu_key[1], labels.get("modelName", ""), labels.get("Hostname", "")
                )
                series[gpu_key] = GpuSeries(gpu)
        for gpu_key, values in per_gpu.items():
            _add_gpu_point(series[gpu_key], t, values)
    return sorted(series.values(), key=lambda s: (_index_order(s.gpu.index), s.gpu.uuid))


def _index_order(index: str) -> tuple[int, str]:
    return (int(index), "") if index.isdigit() else (1 << 30, index)


def _add_gpu_point(s: GpuSeries, t: float, values: dict[str, float]) -> None:
    if (util := values.get("DCGM_FI_DEV_GPU_UTIL")) is not None:
        s.util.append(Point(t, util))
    used, free = values.get("DCGM_FI_DEV_FB_USED"), values.get("DCGM_FI_DEV_FB_FREE")
    if used is None:
        return
    s.used_bytes.append(Point(t, used * MIB))
    if free is not None and used + free > 0:
        s.memory.append(Point(t, used / (used + free)))
        s.total_bytes = max(s.total_bytes, (used + free) * MIB)


# --- node ------------------------------------------------------------------------------------------


def _sums(metrics: dict[str, float]) -> dict[str, float]:
    """The node series summed the way the panels read them: CPU seconds all and idle, bytes by way."""
    out = dict.fromkeys(("cpu_all", "cpu_idle", "rx", "tx"), 0.0)
    for key, value in metrics.items():
        name, labels = split_key(key)
        if name == "node_cpu_seconds_total":
            out["cpu_all"] += value
            if labels.get("mode") in IDLE_MODES:
                out["cpu_idle"] += value
        elif name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total"):
            if labels.get("device") != "lo":  # loopback is the host talking to itself
                out["rx" if "receive" in name else "tx"] += value
        elif name.startswith("node_memory_"):
            out[name] = value
    return out


def node_series(target: str, samples: list[dict[str, Any]], origin: float) -> NodeSeries:
    s = NodeSeries(target)
    points = [(float(x["t"]) - origin, _sums(_metrics(x))) for x in samples]
    for t, sums in points:
        total, available = sums.get("node_memory_MemTotal_bytes"), sums.get("node_memory_MemAvailable_bytes")
        if total and available is not None:
            s.memory.append(Point(t, 1 - available / total))
    for (t0, a), (t1, b) in itertools.pairwise(points):
        span, cpu_all = t1 - t0, b["cpu_all"] - a["cpu_all"]
        if span <= 0:
            continue
        if cpu_all > 0 and b["cpu_idle"] >= a["cpu_idle"]:
            s.cpu.append(Point(t1, min(1.0, max(0.0, 1 - (b["cpu_idle"] - a["cpu_idle"]) / cpu_all))))
        for way, out in (("rx", s.rx), ("tx", s.tx)):
            if b[way] >= a[way]:
                out.append(Point(t1, (b[way] - a[way]) / span))
    return s


# --- process and vllm ------------------------------------------------------------------------------


def _summed(metrics: dict[str, float], names: tuple[str, ...]) -> float | None:
    found = [v for k, v in metrics.items() if split_key(k)[0] in names]
    return sum(found) if found else None


def process_series(target: str, samples: list[dict[str, Any]], origin: float) -> ProcessSeries:
    s = ProcessSeries(target)
    points = [(float(x["t"]) - origin, _metrics(x)) for x in samples]
    for t, metrics in points:
        if (rss := _summed(metrics, ("process_resident_memory_bytes",))) is not None:
            s.rss.append(Point(t, rss))
    for (t0, a), (t1, b) in itertools.pairwise(points):
        c0, c1 = _summed(a, ("process_cpu_seconds_total",)), _summed(b, ("process_cpu_seconds_total",))
        if c0 is not None and c1 is not None and t1 > t0 and c1 >= c0:
            s.cpu.append(Point(t1, (c1 - c0) / (t1 - t0)))
    return s


def vllm_series(target: str, samples: list[dict[str, Any]], origin: float) -> VllmSeries:
    s = VllmSeries(target)
    for sample in samples:
        t, metrics = float(sample["t"]) - origin, _metrics(sample)
        for names, out in (
            (("vllm:num_requests_running",), s.running),
            (("vllm:num_requests_waiting",), s.waiting),
        ):
            if (value := _summed(metrics, names)) is not None:
                out.append(Point(t, value))
        kv = [v for k, v in metrics.items() if split_key(k)[0] in KV_NAMES]
        if kv:
            s.kv.append(Point(t, max(kv)))  # several engines: the fullest cache is the one that refuses
    return s


# --- what the summary keeps -------------------------------------------------------------------------


def is_fleet(slo: Slo) -> bool:
    return slo.metric in FLEET_METRICS


def peak(points: list[Point]) -> Point | None:
    return max(points, key=lambda p: p.value) if points else None


def mean(points: list[Point]) -> float | None:
    return sum(p.value for p in points) / len(points) if points else None


def local_gpus(run_dir: Path, origin: float) -> list[GpuSeries]:
    """The generator host's own GPUs, sampled through NVML (monitor/gpu.jsonl), as target `generator`."""
    series: dict[int, GpuSeries] = {}
    for sample in read_samples(run_dir, "gpu.jsonl"):
        t = float(sample["t"]) - origin
        for g in sample.get("gpus") or []:
            s = series.setdefault(int(g["gpu"]), GpuSeries(GpuId("generator", str(g["gpu"]))))
            s.util.append(Point(t, float(g["util_percent"])))
            total = float(g["memory_total_bytes"])
            s.used_bytes.append(Point(t, float(g["memory_used_bytes"])))
            if total > 0:
                s.memory.append(Point(t, float(g["memory_used_bytes"]) / total))
                s.total_bytes = max(s.total_bytes, total)
    return [series[i] for i in sorted(series)]


# --- GPU SLOs --------------------------------------------------------------------------------------

GAUGE_RULE = (
    "a sampled gauge, not per-request samples: the {statistic} over each GPU's samples inside the window "
    "({source}) is the observed fact, judged exactly; the worst GPU decides"
)


def judge_gpu(slo: Slo, gpus: list[GpuSeries], data: RunData, source: str, c: float) -> Verdict:
    """`max(gpu_util) < 90%`, `mean(gpu_memory) <= 80% for dcgm-1`: each chosen GPU's statistic over its
    samples in the window (utilisation as a fraction: 90% = 0.9), the worst one deciding. No sample at all:
    inconclusive, saying what was missing."""
    rule = GAUGE_RULE.format(statistic=slo.statistic, source=source)
    chosen = [g for g in gpus if not slo.requests or g.gpu.named(slo.requests)]
    intervals = window_intervals(slo.window, data.stages, data.duration_s, data.faults)
    values: list[tuple[float, int, GpuSeries]] = []
    for g in chosen:
        points = g.util if slo.metric == "gpu_util" else g.memory
        scale = 0.01 if slo.metric == "gpu_util" else 1.0
        inside = [p.value * scale for p in points if any(a <= p.t < b for a, b in intervals)]
        if inside:
            values.append((_statistic(slo.statistic, inside), len(inside), g))
    if not values:
        what = f"named {', '.join(slo.requests)}" if slo.requests else "at all"
        why = f"not measured: no GPU sample {what} inside the window ({source})"
        return Verdict(
            slo.text, slo.metric, "inconclusive", None, slo.threshold, "ratio", 0, None, None, why, c, rule
        )
    upper = slo.op in ("<", "<=")
    value, n, worst = max(values, key=lambda v: v[0] if upper else -v[0])
    holds = slo.holds(value)
    margin = slo.threshold - value if upper else value - slo.threshold
    words = (
        f"{'pass' if holds else 'fail'}: {slo.statistic} {show(value, 'ratio')} on {worst.gpu.label} "
        f"over {n} samples" + (f" (the worst of {len(values)} GPUs)" if len(values) > 1 else "")
    )
    return Verdict(
        slo.text,
        slo.metric,
        "pass" if holds else "fail",
        value,
        slo.threshold,
        "ratio",
        sum(v[1] for v in values),
        margin,
        margin / slo.threshold * 100 if slo.threshold else None,
        words,
        c,
        rule,
        None,
        value,
        value,
    )


def _statistic(name: str | None, values: list[float]) -> float:
    if name == "min":
        return min(values)
    if name == "max":
        return max(values)
    return sum(values) / len(values)


def gpu_sources(run_dir: Path, origin: float) -> tuple[list[GpuSeries], str]:
    """The GPUs a GPU SLO reads: the dcgm targets' when the scenario lists any, else the generator's own
    (NVML); and the words the rule names the source with."""
    dcgm = [e["name"] for e in listed_targets(run_dir) if e.get("role") == "dcgm"]
    if dcgm:
        return read_fleet(run_dir, origin).gpus, "dcgm targets: " + ", ".join(dcgm)
    return local_gpus(run_dir, origin), "NVML on the generator's host (no dcgm target listed)"


# --- summary.json ------------------------------------------------------------------------------------


class GpuOut(BaseModel):
    """One GPU of a dcgm target (or the generator's, through NVML): its peaks over the run."""

    target: str
    gpu: str = Field(description="DCGM's `gpu` label (the device index)")
    uuid: str
    model: str
    hostname: str
    samples: int
    peak_util_percent: float | None
    peak_util_at_s: float | None = Field(description="seconds from the engine's start")
    mean_util_percent: float | None
    peak_memory_share: float | None = Field(description="framebuffer used / (used + free), 0 to 1")
    peak_memory_at_s: float | None
    peak_memory_bytes: float | None
    memory_total_bytes: float | None


class NodeOut(BaseModel):
    """One node_exporter target: peaks of its CPU busy share, memory used share and network bytes/s."""

    target: str
    peak_cpu_share: float | None
    peak_memory_share: float | None
    peak_receive_bytes_per_s: float | None
    peak_transmit_bytes_per_s: float | None


class VllmOut(BaseModel):
    """One vllm target: the most requests running and waiting, and the fullest KV cache (0 to 1)."""

    target: str
    peak_running: float | None
    peak_waiting: float | None
    peak_kv_cache_share: float | None


class FleetOut(BaseModel):
    """What `monitoring.targets` saw, by role (results/fleet.py)."""

    gpus: list[GpuOut] = Field(default_factory=list)
    nodes: list[NodeOut] = Field(default_factory=list)
    vllm: list[VllmOut] = Field(default_factory=list)


def _top(points: list[Point]) -> float | None:
    top = peak(points)
    return None if top is None else top.value


def fleet_out(fleet: Fleet) -> FleetOut | None:
    if not (fleet.gpus or fleet.nodes or fleet.vllm):
        return None
    gpus = []
    for g in fleet.gpus:
        util, memory, used = peak(g.util), peak(g.memory), _top(g.used_bytes)
        gpus.append(
            GpuOut(
                target=g.gpu.target,
                gpu=g.gpu.index,
                uuid=g.gpu.uuid,
                model=g.gpu.model,
                hostname=g.gpu.hostname,
                samples=max(len(g.util), len(g.memory)),
                peak_util_percent=util and util.value,
                peak_util_at_s=util and round(util.t, 3),
                mean_util_percent=mean(g.util),
                peak_memory_share=memory and memory.value,
                peak_memory_at_s=memory and round(memory.t, 3),
                peak_memory_bytes=used,
                memory_total_bytes=g.total_bytes or None,
            )
        )
    nodes = [
        NodeOut(
            target=n.target,
            peak_cpu_share=_top(n.cpu),
            peak_memory_share=_top(n.memory),
            peak_receive_bytes_per_s=_top(n.rx),
            peak_transmit_bytes_per_s=_top(n.tx),
        )
        for n in fleet.nodes
    ]
    vllm = [
        VllmOut(
            target=v.target,
            peak_running=_top(v.running),
            peak_waiting=_top(v.waiting),
            peak_kv_cache_share=_top(v.kv),
        )
        for v in fleet.vllm
    ]
    return FleetOut(gpus=gpus, nodes=nodes, vllm=vllm)


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def markdown_lines(out: FleetOut | None) -> list[str]:
    """summary.md's fleet section: each target GPU's peaks, and each node's and vLLM server's."""
    if out is None:
        return []
    lines = ["", "## Fleet (monitoring.targets)", ""]
    if out.gpus:
        lines += [
            "| GPU | model | peak util | at s | mean util | peak memory | at s |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in out.gpus:
            util = "—" if g.peak_util_percent is None else f"{g.peak_util_percent:.0f}%"
            mean_util = "—" if g.mean_util_percent is None else f"{g.mean_util_percent:.0f}%"
            lines.append(
                f"| {g.target} GPU {g.gpu} | {g.model or '—'} | {util} | {_at(g.peak_util_at_s)} "
                f"| {mean_util} | {_share(g.peak_memory_share)} | {_at(g.peak_memory_at_s)} |"
            )
        lines.append("")
    for n in out.nodes:
        lines.append(
            f"- host {n.target}: peak CPU {_share(n.peak_cpu_share)}, memory {_share(n.peak_memory_share)}, "
            f"network {_rate(n.peak_receive_bytes_per_s)} in, {_rate(n.peak_transmit_bytes_per_s)} out"
        )
    for v in out.vllm:
        lines.append(
            f"- vLLM {v.target}: peak running {_count(v.peak_running)}, waiting {_count(v.peak_waiting)}, "
            f"KV cache {_share(v.peak_kv_cache_share)}"
        )
    return lines


def _at(t: float | None) -> str:
    return "—" if t is None else f"{t:.0f}"


def _rate(x: float | None) -> str:
    return "—" if x is None else f"{x / 1e6:.2f} MB/s"


def _count(x: float | None) -> str:
    return "—" if x is None else f"{x:g}"


__all__ = [
    "Fleet",
    "FleetOut",
    "GpuId",
    "GpuSeries",
    "NodeSeries",
    "Point",
    "ProcessSeries",
    "VllmSeries",
    "fleet_out",
    "gpu_sources",
    "is_fleet",
    "judge_gpu",
    "listed_targets",
    "local_gpus",
    "markdown_lines",
    "mean",
    "peak",
    "read_fleet",
    "split_key",
]
