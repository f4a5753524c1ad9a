"""`--monitor prometheus`: a real Prometheus server (Debian's `prometheus`) on loopback for the run.

It gets a generated config that scrapes the target's /metrics (job `target`) and scenariokit's live
endpoint (job `scenariokit`) every second, keeps its database in the run folder
(`monitor/prometheus/data`), and serves its HTTP API and UI at the URL written to
`monitor/prometheus.json`. The Grafana dashboard in `monitoring/grafana/` reads exactly these series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlparse

import httpx
import yaml

from scenariokit.ports import free_port

READY_TIMEOUT_S = 30.0


class PrometheusUnavailable(RuntimeError):
    pass


def scrape_job(name: str, url: str) -> dict[str, object]:
    parts = urlparse(url)
    path = parts.path.rstrip("/")
    return {
        "job_name": name,
        "scheme": parts.scheme or "http",
        "metrics_path": path if path.endswith("/metrics") else f"{path}/metrics",
        "static_configs": [{"targets": [parts.netloc]}],
    }


def config(target_url: str, exporter_url: str, interval_s: float = 1.0) -> dict[str, object]:
    interval = f"{round(interval_s * 1000)}ms"  # Prometheus durations take ms
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [scrape_job("target", target_url), scrape_job("scenariokit", exporter_url)],
    }


class PrometheusServer:
    """Started and stopped around the run; its data stays in the run folder."""

    def __init__(self, run_dir: Path, target_url: str, exporter_url: str, interval_s: float = 1.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusUnavailable(
                "--monitor prometheus needs the `prometheus` server on PATH (apt-get install prometheus)"
            )
        self.dir = run_dir / "monitor" / "prometheus"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "prometheus.yml").write_text(
            yaml.safe_dump(config(target_url, exporter_url, interval_s), sort_keys=False)
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [
            binary,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process: subprocess.Popen[bytes] | None = None
        (run_dir / "monitor" / "prometheus.json").write_text(
            json.dumps({"url": self.url, "target": target_url, "scenariokit": exporter_url}) + "\n"
        )

    def __enter__(self) -> PrometheusServer:
        log = (self.dir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusUnavailable(f"prometheus exited at start; see {self.dir / 'prometheus.log'}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self._stop()
        raise PrometheusUnavailable(f"prometheus was not ready within {READY_TIMEOUT_S:.0f}s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Prometheus flushes its head block and exits
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
