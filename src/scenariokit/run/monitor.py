"""Watch the target and the host once a second while a run goes, into the run folder.

- target: its Prometheus `/metrics` text (vLLM's names understood: requests running and waiting, KV-cache
  usage, TTFT and end-to-end histograms; plus process CPU and memory), parsed with prometheus_client.
- host: CPU (total and per core), memory, network bytes, from psutil.
- GPU: utilisation and memory through NVML when a GPU and `nvidia-ml-py` are present; marked absent
  otherwise, never guessed.

- `monitoring.targets`: each listed endpoint on the same tick, into `monitor/targets/<name>.jsonl` (same
  fields as target.jsonl; the series kept by the endpoint's role, ROLE_PREFIXES), listed in
  `monitor/targets.json`.

Each sample is one JSON line in `monitor/target.jsonl`, `monitor/host.jsonl`, `monitor/gpu.jsonl`, written
as it is taken, so a crash keeps what was seen. A target sample says what its scrape found (`scrape`: ok,
absent, refused, timeout, error; see SCRAPE_OUTCOMES) and the HTTP status, so that the analysis can tell a
target without /metrics from one that went down.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from scenariokit.compile.ir import MonitorTarget

INTERVAL_S = 1.0
# Series kept from the target's /metrics: vLLM's (V1 and V0 names), our server's, the process's.
KEPT_PREFIXES = ("vllm:", "scenariokit_", "process_cpu_seconds", "process_resident_memory", "model_server_")
# Series kept from a `monitoring.targets` endpoint, by its role: what that kind of exporter is for, so that
# a node exporter's thousand-odd series of other kinds do not fill the run folder.
ROLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "process": ("process_",),
    "node": ("node_",),
    "vllm": ("vllm:",),
    "dcgm": ("DCGM_",),
}


def parse_prometheus(text: str, kept: tuple[str, ...] = KEPT_PREFIXES) -> dict[str, float]:
    """Flat `name{label="v",...}` -> value for the series whose names start with one of `kept` (histogram
    buckets dropped; sums and counts kept so latency means can be derived)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(kept) or sample.name.endswith("_bucket"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return values


# What one scrape of the target's /metrics found (`scrape` in each target.jsonl sample):
#   ok       200 with Prometheus text
#   absent   the target serves no Prometheus text there (404, 405, or a page that is not Prometheus text):
#            a plain REST service or a mock; nothing about the target's health
#   refused  the connection was refused: nothing listens
#   timeout  no answer within the client's timeout
#   error    anything else (a 5xx, a connection that broke)
SCRAPE_OUTCOMES = ("ok", "absent", "refused", "timeout", "error")


def scrape(client: httpx.Client, url: str, kept: tuple[str, ...] = KEPT_PREFIXES) -> dict[str, Any]:
    """One scrape: its outcome, the HTTP status (0 without a response), `up` (old readers' one bool: the
    scrape worked) and the kept series."""
    try:
        response = client.get(url)
    except httpx.ConnectError as exc:  # refused, or no route: either way nothing answers there
        return _scraped("refused" if "refused" in str(exc).lower() else "error", 0)
    except httpx.TimeoutException:
        return _scraped("timeout", 0)
    except httpx.HTTPError:
        return _scraped("error", 0)
    status = response.status_code
    if status != 200:
        # 4xx: the path is not served (a REST API answers 404 or 405); 5xx: the target is failing
        return _scraped("error" if status >= 500 else "absent", status)
    try:
        values = parse_prometheus(response.text, kept)
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

    def _loop(self) -> None:
        psutil.cpu_percent(percpu=True)  # prime: the first call has no interval to measure
        net = psutil.net_io_counters()
        # certificate checks only where there is TLS: loading the CA bundle costs CPU that a plain-HTTP
        # target would take from the engine as the run starts (docs/performance.md)
        urls = [self.base_url or "", *(t.url for t in self.targets)]
        verify = any(url.startswith("https://") for url in urls)
        with httpx.Client(timeout=2.0, verify=verify) as client:
            while not self._stop.wait(self.interval_s):
                now = time.time()
                net = self._host(now, net)
                if self.base_url:
                    self._target(client, now)
                for target in self.targets:  # one after the other: at most 16, each with the 2 s timeout
                    self._listed(client, now, target)
                if self.gpu.available:
                    self._write("gpu.jsonl", {"t": now, "gpus": self.gpu.sample()})
                self.samples += 1

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

    def _target(self, client: httpx.Client, now: float) -> None:
        self._write("target.jsonl", {"t": now, **scrape(client, f"{self.base_url}/metrics")})

    def _listed(self, client: httpx.Client, now: float, target: MonitorTarget) -> None:
        sample = scrape(client, target.url, ROLE_PREFIXES[target.role])
        self._write(f"targets/{target.name}.jsonl", {"t": now, **sample})

    def _write(self, name: str, payload: dict[str, Any]) -> None:
        with (self.dir / name).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, separators=(",", ":")) + "\n")
