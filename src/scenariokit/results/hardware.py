"""Hardware facts in run.json (`RunMeta.hardware`): the generator's machine, probed by the runner
(run/hardware.py), and the target's when known.

The target's facts come from what the run already stored, never from a new request:
- an embedded target runs on the generator's host: the same facts, `source: "embedded: the generator's
  host"`;
- a `dcgm`-role entry of `monitoring.targets` (NVIDIA's dcgm-exporter): its series carry the labels
  `modelName`, `Hostname`, `gpu`, `UUID` and, since dcgm-exporter 3.1, `DCGM_FI_DRIVER_VERSION`; the GPU's
  memory is `DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE (+ FB_RESERVED)`, in MiB
  (github.com/NVIDIA/dcgm-exporter, etc/default-counters.csv). DCGM gives no CUDA version: absent.
- a `node`-role entry (node_exporter): `node_cpu_info{model_name=...}` one series per logical CPU (the cpu
  collector's info, `--collector.cpu.info`), `node_memory_MemTotal_bytes`.

What no source gave is None and `missing` says why, so a matrix of runs never shows a guess.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MIB = 2**20
TAIL_BYTES = 8 * MIB  # the last scrapes of an endpoint are enough: hardware does not change mid-run
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class GpuInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int | None = None
    name: str
    memory_bytes: int | None = None
    uuid: str | None = None


class MachineInfo(BaseModel):
    """One machine's facts; None where the source did not say."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="where the facts come from: probe, embedded, dcgm, node, …")
    hostname: str | None = None
    cpu_model: str | None = None
    cpu_cores: int | None = Field(None, description="physical cores, when the source tells them apart")
    cpu_threads: int | None = Field(None, description="logical CPUs")
    memory_bytes: int | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)
    gpu_driver: str | None = None
    cuda_version: str | None = None
    missing: list[str] = Field(default_factory=list, description="facts not known, each with why")


class Hardware(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generator: MachineInfo
    target: MachineInfo | None = Field(None, description="null: no source told the target's hardware")


def with_target(hardware: Hardware | None, run_dir: Path, embedded: bool) -> Hardware | None:
    """`hardware` with the target's facts filled in from the run's stored scrapes (end of the run)."""
    if hardware is None:
        return None
    if embedded:
        same = hardware.generator.model_copy(update={"source": "embedded: the generator's host"})
        return hardware.model_copy(update={"target": same})
    target = target_from_scrapes(run_dir / "monitor")
    return hardware.model_copy(update={"target": target}) if target is not None else hardware


def target_from_scrapes(monitor_dir: Path) -> MachineInfo | None:
    """The target's facts from `monitor/targets.json`'s dcgm and node endpoints, or None."""
    listing = _listing(monitor_dir / "targets.json")
    dcgm = [_last_metrics(monitor_dir / "targets", t["name"]) for t in listing if t.get("role") == "dcgm"]
    node = [_last_metrics(monitor_dir / "targets", t["name"]) for t in listing if t.get("role") == "node"]
    facts: dict[str, Any] = {}
    sources = []
    if gpus := [g for metrics in dcgm for g in _dcgm_gpus(metrics)]:
        facts["gpus"] = gpus
        facts |= _dcgm_host(dcgm)
        sources.append("dcgm")
    if any(node):
        facts |= _node_facts(node)
        sources.append("node")
    if not sources:
        return None
    missing = [f"{name}: not in the scraped exporters" for name in _UNSET if facts.get(name) is None]
    return MachineInfo(source="+".join(sources), missing=missing, **facts)


_UNSET = ("cpu_model", "cpu_threads", "memory_bytes", "gpu_driver", "cuda_version")


def _listing(path: Path) -> list[dict[str, Any]]:
    try:
        listing = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    ok = isinstance(listing, list)
    return [t for t in listing if isinstance(t, dict) and isinstance(t.get("name"), str)] if ok else []


def _last_metrics(folder: Path, name: str) -> dict[str, float]:
    """The last successful scrape's series of `targets/<name>.jsonl` (a name with a path in it: none)."""
    if "/" in name or name.startswith("."):
        return {}
    try:
        lines = _tail_lines(folder / f"{name}.jsonl")
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(sample, dict)
            and sample.get("scrape") == "ok"
            and isinstance(sample.get("metrics"), dict)
        ):
            return sample["metrics"]
    return {}


def _tail_lines(path: Path) -> list[str]:
    """The lines of the file's last TAIL_BYTES (a day's scrapes are not read to find the last one)."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        start = max(0, size - TAIL_BYTES)
        handle.seek(start)
        text = handle.read().decode("utf-8", "replace")
    lines = text.splitlines()
    return lines[1:] if start > 0 else lines  # the first may be cut


def labels_of(key: str) -> tuple[str, dict[str, str]]:
    """`name{a="1",b="2"}` (monitor.parse_prometheus's key) -> (name, labels)."""
    name, _, rest = key.partition("{")
    return name, {k: v.replace('\\"', '"') for k, v in LABEL.findall(rest)}


def _dcgm_gpus(metrics: dict[str, float]) -> list[GpuInfo]:
    by_gpu: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        name, labels = labels_of(key)
        gpu = labels.get("UUID") or labels.get("gpu")
        if not name.startswith("DCGM_") or gpu is None or "modelName" not in labels:
            continue
        entry = by_gpu.setdefault(gpu, {"name": labels["modelName"], "uuid": labels.get("UUID"), "mib": 0.0})
        if labels.get("gpu", "").isdigit():
            entry["index"] = int(labels["gpu"])
        if name in ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED"):
            entry["mib"] += value
    return [
        GpuInfo(
            index=e.get("index"), name=e["name"], uuid=e["uuid"], memory_bytes=int(e["mib"] * MIB) or None
        )
        for e in sorted(by_gpu.values(), key=lambda e: (e.get("index", 1 << 30), e["uuid"] or ""))
    ]


def _dcgm_host(scrapes: list[dict[str, float]]) -> dict[str, Any]:
    labels = [labels_of(key)[1] for metrics in scrapes for key in metrics]
    hostnames = sorted({lab["Hostname"] for lab in labels if lab.get("Hostname")})
    drivers = sorted({lab["DCGM_FI_DRIVER_VERSION"] for lab in labels if lab.get("DCGM_FI_DRIVER_VERSION")})
    return {"hostname": ", ".join(hostnames) or None, "gpu_driver": ", ".join(drivers) or None}


def _node_facts(scrapes: list[dict[str, float]]) -> dict[str, Any]:
    models, cpus, memory = set(), set(), 0.0
    for i, metrics in enumerate(scrapes):
        for key, value in metrics.items():
            name, labels = labels_of(key)
            if name == "node_cpu_info":
                models.add(labels.get("model_name", ""))
                cpus.add((i, labels.get("cpu", "")))
            elif name == "node_memory_MemTotal_bytes":
                memory += value
    models.discard("")
    return {
        "cpu_model": ", ".join(sorted(models)) or None,
        "cpu_threads": len(cpus) or None,
        "memory_bytes": int(memory) or None,
    }


def short(machine: MachineInfo | None) -> str:
    """One line for a table cell: `2× AMD EPYC, 24 GiB; 1× NVIDIA H100 (80 GiB), driver 550`."""
    if machine is None:
        return "unknown"
    parts = []
    if machine.cpu_model or machine.cpu_threads:
        threads = f"{machine.cpu_threads}× " if machine.cpu_threads else ""
        parts.append(f"{threads}{machine.cpu_model or 'CPU'}")
    if machine.memory_bytes:
        parts.append(f"{machine.memory_bytes / 2**30:.0f} GiB")
    text = ", ".join(parts)
    if machine.gpus:
        names: dict[str, int] = {}
        for gpu in machine.gpus:
            names[gpu.name] = names.get(gpu.name, 0) + 1
        gpus = ", ".join(f"{n}× {name}" for name, n in names.items())
        driver = f", driver {machine.gpu_driver}" if machine.gpu_driver else ""
        cuda = f", CUDA {machine.cuda_version}" if machine.cuda_version else ""
        text += f"; {gpus}{driver}{cuda}"
    else:
        text += "; no GPU seen"
    return text
