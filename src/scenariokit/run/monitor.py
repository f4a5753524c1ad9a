"""Watch the target and the host once a second while a run goes, into the run folder.

- target: its Prometheus `/metrics` text (vLLM's names understood: requests running and waiting, KV-cache
  usage, TTFT and end-to-end histograms; plus process CPU and memory), parsed with prometheus_client.
- host: CPU (total and per core), memory, network bytes, from psutil.
- GPU: utilisation and memory through NVML when a GPU and `nvidia-ml-py` are present; marked absent
  otherwise, never guessed.

- `monitoring.targets`: each listed endpoint on the same tick, into `monitor/targets/<name>.jsonl` (same
  fields as target.jsonl; the series kept by the endpoint's role, ROLE_SERIES, with a bounded set of
  labels), listed in `monitor/targets.json`. results/fleet.py reads them back per GPU and per host.

Scrapes run concurrently, one thread per endpoint, each bounded in time (SCRAPE_BUDGET_S), body size
(MAX_BODY_BYTES) and series (MAX_SERIES): a slow or hostile exporter costs its own samples, never the
others' or the host's. An endpoint still busy with the last tick's scrape skips this tick.

Each sample is one JSON line in `monitor/target.jsonl`, `monitor/host.jsonl`, `monitor/gpu.jsonl`, written
as it is taken, so a crash keeps what was seen. A target sample says what its scrape found (`scrape`: ok,
absent, refused, timeout, error, oversize; see SCRAPE_OUTCOMES) and the HTTP status, so that the analysis
can tell a target without /metrics from one that went down. `t` is the tick's unix time, the records' clock.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from scenariokit.compile.ir import MonitorTarget

INTERVAL_S = 1.0
# One scrape's whole budget (connect, headers, body): an exporter that drips its body slower is cut off.
SCRAPE_BUDGET_S = 2.0
# node_exporter on a large host writes ~0.5 MB, DCGM's exporter on 8 GPUs ~0.1 MB: 8 MiB is far above any
# real exporter and keeps a runaway one from filling the monitor's memory.
MAX_BODY_BYTES = 8 * 2**20
MAX_SERIES = 2_000  # kept series per scrape, after the role's filter (a node with 256 cores: ~2,050 CPU
#                     series would be cut; such a node is far outside what a generator host watches)
MAX_LABEL_CHARS = 128
VALIDATED_LINES = 50  # the body's first lines are parsed whole, so a page that is not Prometheus text shows


@dataclass(frozen=True)
class SeriesFilter:
    """What one kind of endpoint keeps: exact sample names or name prefixes, and the labels that identify
    a series (None: all of them). Histogram buckets are never kept (sums and counts are)."""

    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    labels: frozenset[str] | None = None

    def keeps(self, name: str) -> bool:
        return (name in self.names or name.startswith(self.prefixes)) and not name.endswith("_bucket")


# Series kept from the target's /metrics: vLLM's (V1 and V0 names), our server's, the process's.
KEPT_PREFIXES = ("vllm:", "scenariokit_", "process_cpu_seconds", "process_resident_memory", "model_server_")
TARGET_FILTER = SeriesFilter(prefixes=KEPT_PREFIXES)
# Series kept from a `monitoring.targets` endpoint, by its role: what that kind of exporter is for, so that
# a node exporter's thousand-odd series of other kinds do not fill the run folder.
# - dcgm: NVIDIA dcgm-exporter's default counters (etc/default-counters.csv: DCGM_FI_DEV_GPU_UTIL gauge %,
#   DCGM_FI_DEV_FB_USED / FB_FREE gauges in MiB), labelled per GPU with gpu, UUID, modelName, Hostname.
# - node: node_exporter's CPU seconds per cpu and mode, memory, network bytes per device, load.
ROLE_SERIES: dict[str, SeriesFilter] = {
    "process": SeriesFilter(prefixes=("process_",)),
    "node": SeriesFilter(
        names=frozenset(
            {
                "node_cpu_seconds_total",
                "node_memory_MemAvailable_bytes",
                "node_memory_MemTotal_bytes",
                "node_network_receive_bytes_total",
                "node_network_transmit_bytes_total",
                "node_load1",
            }
        ),
        labels=frozenset({"cpu", "mode", "device", "instance"}),
    ),
    "vllm": SeriesFilter(prefixes=("vllm:",)),
    "dcgm": SeriesFilter(
        names=frozenset({"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"}),
        labels=frozenset({"gpu", "UUID", "modelName", "Hostname"}),
    ),
}
# the prefixes each role kept before series were chosen by name (readers of older folders)
ROLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "process": ("process_",),
    "node": ("node_",),
    "vllm": ("vllm:",),
    "dcgm": ("DCGM_",),
}
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')  # control characters (CR, LF), quotes and backslashes


def _clean(value: str) -> str:
    """A label value safe inside the flat key `name{k="v"}`: no quote, backslash or control character
    (a CR/LF would split the JSON line for readers that split on lines), at most MAX_LABEL_CHARS."""
    return _UNSAFE.sub("_", value)[:MAX_LABEL_CHARS]


def _kept_lines(text: str, keep: SeriesFilter) -> list[str]:
    """The sample lines whose metric name the filter keeps, at most MAX_SERIES: only these are parsed, so
    100,000 series of other kinds cost a scan of names, not a parse."""
    out = []
    for line in text.split("\n"):  # the format's line end; a stray CR stays inside its line
        if not line or line[0] == "#":
            continue
        match = _NAME.match(line)
        if match and keep.keeps(match.group()):
            out.append(line)
            if len(out) >= MAX_SERIES:
                break
    return out


def parse_prometheus(text: str, kept: tuple[str, ...] | SeriesFilter = KEPT_PREFIXES) -> dict[str, float]:
    """Flat `name{label="v",...}` -> value for the series the filter keeps (histogram buckets dropped;
    sums and counts kept so latency means can be derived; NaN and infinities dropped: a gauge with no
    value yet). Raises ValueError when the text is not Prometheus exposition."""
    keep = kept if isinstance(kept, SeriesFilter) else SeriesFilter(prefixes=kept)
    head = "\n".join(text.split("\n", VALIDATED_LINES)[:VALIDATED_LINES]) + "\n"
    for _ in text_string_to_metric_families(head):  # a JSON or HTML page raises here
        pass
    values: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(_kept_lines(text, keep)) + "\n"):
        for sample in family.samples:
            value = float(sample.value)
            if not keep.keeps(sample.name) or not math.isfinite(value):
                continue
            labels = ",".join(
                f'{k}="{_clean(v)}"'
                for k, v in sorted(sample.labels.items())
                if keep.labels is None or k in keep.labels
            )
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = value
    return values


# What one scrape of the target's /metrics found (`scrape` in each target.jsonl sample):
#   ok       200 with Prometheus text
#   absent   the target serves no Prometheus text there (404, 405, or a page that is not Prometheus text):
#            a plain REST service or a mock; nothing about the target's health
#   refused  the connection was refused: nothing listens
#   timeout  no whole answer within SCRAPE_BUDGET_S
#   error    anything else (a 5xx, a connection that broke)
#   oversize a body over MAX_BODY_BYTES: read no further, nothing kept
SCRAPE_OUTCOMES = ("ok", "absent", "refused", "timeout", "error", "oversize")


class _Oversize(Exception):
    pass


def _body(response: httpx.Response, deadline: float) -> str:
    """The body, read no further than MAX_BODY_BYTES and no later than `deadline` (a slow drip)."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Oversize
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the body outlasted the scrape's budget")
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def scrape(
    client: httpx.Client, url: str, kept: tuple[str, ...] | SeriesFilter = KEPT_PREFIXES
) -> dict[str, Any]:
    """One scrape: its outcome, the HTTP status (0 without a response), `up` (old readers' one bool: the
    scrape worked) and the kept series."""
    deadline = time.monotonic() + SCRAPE_BUDGET_S
    try:
        with client.stream("GET", url) as response:
            status = response.status_code
            if status != 200:
                # 4xx: the path is not served (a REST API answers 404 or 405); 5xx: the target is failing
                return _scraped("error" if status >= 500 else "absent", status)
            text = _body(response, deadline)
    except httpx.ConnectError as exc:  # refused, or no route: either way nothing answers there
        return _scraped("refused" if "refused" in str(exc).lower() else "error", 0)
    except httpx.TimeoutException:
        return _scraped("timeout", 0)
    except httpx.HTTPError:
        return _scraped("error", 0)
    except _Oversize:
        return _scraped("oversize", 200)
    try:
        values = parse_prometheus(text, kept)
    except ValueError:  # JSON, HTML: a catch-all route, not an exporter
        return _scraped("absent", status)
    return _scraped("ok", status, values)


def _scraped(outcome: str, status: int, values: dict[str, float] | None = None) -> dict[str, Any]:
    return {"scrape": outcome, "status": status, "up": outcome == "ok", "metrics": values or {}}


class GpuProbe:
    """NVML, when there is a GPU and the library; `available` says which."""

    def __init__(self) -> None:
        self.available = False
        self.reason = ""
        try:
            import pynvml  # from nvidia-ml-py

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.available = bool(self._handles)
            self.reason = "" if self.available else "NVML found no GPU"
        except Exception as exc:  # no library, no driver, no device: all mean "absent"
            self.reason = f"GPU metrics absent: {type(exc).__name__}: {exc}"

    def sample(self) -> list[dict[str, Any]]:
        out = []
        for i, handle in enumerate(self._handles):
            util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                {
                    "gpu": i,
                    "util_percent": util.gpu,
                    "memory_used_bytes": memory.used,
                    "memory_total_bytes": memory.total,
                }
            )
        return out


class Monitor:
    """A daemon thread that samples until stopped. Use as a context manager around the run."""

    def __init__(
        self,
        run_dir: Path,
        base_url: str | None,
        interval_s: float = INTERVAL_S,
        targets: tuple[MonitorTarget, ...] = (),
    ) -> None:
        self.dir = run_dir / "monitor"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url
        self.targets = targets
        if targets:
            # the roles travel with the samples: `scenariokit report` judges memory_growth from the folder
            (self.dir / "targets").mkdir(exist_ok=True)
            listing = [{"name": t.name, "url": t.url, "role": t.role} for t in targets]
            (self.dir / "targets.json").write_text(json.dumps(listing, indent=1) + "\n")
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scenariokit-monitor", daemon=True)
        self.samples = 0
        self.gpu = GpuProbe()
        (self.dir / "gpu.json").write_text(
            json.dumps({"available": self.gpu.available, "reason": self.gpu.reason}) + "\n"
        )

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _endpoints(self) -> list[tuple[str, str, SeriesFilter]]:
        """(file, url, filter) of every endpoint scraped on each tick."""
        out = [("target.jsonl", f"{self.base_url}/metrics", TARGET_FILTER)] if self.base_url else []
        return out + [(f"targets/{t.name}.jsonl", t.url, ROLE_SERIES[t.role]) for t in self.targets]

    def _loop(self) -> None:
        psutil.cpu_percent(percpu=True)  # prime: the first call has no interval to measure
        net = psutil.net_io_counters()
        endpoints = self._endpoints()
        # certificate checks only where there is TLS: loading the CA bundle costs CPU that a plain-HTTP
        # target would take from the engine as the run starts (docs/performance.md)
        verify = any(url.startswith("https://") for _, url, _ in endpoints)
        timeout = httpx.Timeout(SCRAPE_BUDGET_S)
        limits = httpx.Limits(max_connections=max(1, len(endpoints)))
        busy: dict[str, Future[None]] = {}
        with (
            httpx.Client(timeout=timeout, verify=verify, limits=limits) as client,
            ThreadPoolExecutor(max(1, len(endpoints)), thread_name_prefix="scenariokit-scrape") as pool,
        ):
            while not self._stop.wait(self.interval_s):
                now = time.time()
                net = self._host(now, net)
                for name, url, keep in endpoints:
                    if name in busy and not busy[name].done():
                        continue  # still on an earlier tick: its own samples thin out, no one else's
                    busy[name] = pool.submit(self._scrape_into, client, name, url, keep, now)
                if self.gpu.available:
                    self._write("gpu.jsonl", {"t": now, "gpus": self.gpu.sample()})
                self.samples += 1

    def _scrape_into(self, client: httpx.Client, name: str, url: str, keep: SeriesFilter, now: float) -> None:
        """One endpoint's scrape, in its own thread; only this endpoint's thread writes its file."""
        self._write(name, {"t": now, **scrape(client, url, keep)})

    def _host(self, now: float, last_net: Any) -> Any:
        per_cpu = psutil.cpu_percent(percpu=True)
        memory = psutil.virtual_memory()
        net = psutil.net_io_counters()
        self._write(
            "host.jsonl",
            {
                "t": now,
                "cpu_percent": sum(per_cpu) / len(per_cpu),
                "cpu_per_core": per_cpu,
                "memory_used_bytes": memory.used,
                "memory_percent": memory.percent,
                "net_sent_bytes": net.bytes_sent - last_net.bytes_sent,
                "net_recv_bytes": net.bytes_recv - last_net.bytes_recv,
            },
        )
        return net

    def _write(self, name: str, payload: dict[str, Any]) -> None:
        with (self.dir / name).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, separators=(",", ":"), allow_nan=False) + "\n")
