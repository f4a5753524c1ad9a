"""Loopback stand-ins for the exporters `monitoring.targets` scrapes, written by us in their documented
formats.

- DCGM (NVIDIA dcgm-exporter): series names, kinds and units from its default counters file
  (github.com/NVIDIA/dcgm-exporter, etc/default-counters.csv: `DCGM_FI_DEV_GPU_UTIL, gauge, GPU utilization
  (in %)`, `DCGM_FI_DEV_FB_FREE, gauge, Framebuffer memory free (in MiB)`, `DCGM_FI_DEV_FB_USED, gauge,
  Framebuffer memory used (in MiB)`); the labels per GPU (gpu, UUID, pci_bus_id, device, modelName,
  Hostname, DCGM_FI_DRIVER_VERSION) and `# HELP` / `# TYPE` lines as in the exporter's README and NVIDIA's
  GPU Operator docs' `curl .../metrics` output.
- node_exporter (prometheus/node_exporter): node_cpu_seconds_total{cpu,mode} (counter, seconds),
  node_memory_MemTotal_bytes / MemAvailable_bytes (gauges), node_network_{receive,transmit}_bytes_total
  {device} (counters), as its collectors name them (collector/cpu_linux.go, meminfo.go, netdev_common.go).

Each fixture's values come from a function the test gives, called per scrape: the tests drive them from
the load the server under test carries (its own /metrics), never from a clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class TextExporter:
    """Prometheus text on 127.0.0.1 from `body()`, called once per scrape; counts its scrapes."""

    def __init__(self, body: Callable[[], str]) -> None:
        self.body, self.scrapes = body, 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                exporter.scrapes += 1
                payload = exporter.body().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def __enter__(self) -> TextExporter:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass(frozen=True)
class GpuReading:
    util_percent: float
    used_mib: float
    free_mib: float


GPU_MODEL = "NVIDIA H100 80GB HBM3"
DRIVER = "550.54.15"


def gpu_uuid(index: int) -> str:
    return f"GPU-5a1e4c3b-9d2e-4f10-8a7b-0000000000{index:02d}"


def dcgm_text(gpus: list[GpuReading], hostname: str = "gpu-node-1") -> str:
    """dcgm-exporter's exposition for these GPUs (the three series we read, plus one we do not)."""
    fields = (
        ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda g: 1980.0),
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda g: g.util_percent),
        ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", lambda g: g.free_mib),
        ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda g: g.used_mib),
    )
    lines = []
    for name, help_text, value in fields:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for i, g in enumerate(gpus):
            labels = (
                f'gpu="{i}",UUID="{gpu_uuid(i)}",pci_bus_id="00000000:{i + 0x18:02X}:00.0",'
                f'device="nvidia{i}",modelName="{GPU_MODEL}",Hostname="{hostname}",'
                f'DCGM_FI_DRIVER_VERSION="{DRIVER}"'
            )
            lines.append(f"{name}{{{labels}}} {value(g):g}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NodeReading:
    cpu_busy_s: list[float]  # per CPU: seconds in user mode so far
    cpu_idle_s: list[float]  # per CPU: seconds idle so far
    mem_total: float
    mem_available: float
    rx_bytes: float  # eth0, so far
    tx_bytes: float


def node_text(r: NodeReading) -> str:
    """node_exporter's exposition of the series we read, plus loopback traffic we must leave out."""
    lines = [
        "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.",
        "# TYPE node_cpu_seconds_total counter",
    ]
    for cpu, (busy, idle) in enumerate(zip(r.cpu_busy_s, r.cpu_idle_s, strict=True)):
        lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="idle"}} {idle:.2f}')
        lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="user"}} {busy:.2f}')
        lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="system"}} 0')
    lines += [
        "# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.",
        "# TYPE node_memory_MemAvailable_bytes gauge",
        f"node_memory_MemAvailable_bytes {r.mem_available:.0f}",
        "# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.",
        "# TYPE node_memory_MemTotal_bytes gauge",
        f"node_memory_MemTotal_bytes {r.mem_total:.0f}",
        "# HELP node_network_receive_bytes_total Network device statistic receive_bytes.",
        "# TYPE node_network_receive_bytes_total counter",
        f'node_network_receive_bytes_total{{device="eth0"}} {r.rx_bytes:.0f}',
        'node_network_receive_bytes_total{device="lo"} 9.9e+12',
        "# HELP node_network_transmit_bytes_total Network device statistic transmit_bytes.",
        "# TYPE node_network_transmit_bytes_total counter",
        f'node_network_transmit_bytes_total{{device="eth0"}} {r.tx_bytes:.0f}',
        'node_network_transmit_bytes_total{device="lo"} 9.9e+12',
        "# HELP node_boot_time_seconds Node boot time, in unixtime.",
        "# TYPE node_boot_time_seconds gauge",
        "node_boot_time_seconds 1.7e+09",
    ]
    return "\n".join(lines) + "\n"
