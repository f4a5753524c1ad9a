"""`--monitor prometheus`: a real Prometheus server (Debian's `prometheus`) on loopback for the run.

Its configuration is the monitoring stack's own (`monitoring/prometheus/`, the files compose mounts):
prometheus.yml and the dashboards' recording rules are copied into the run folder
(`monitor/prometheus/`), changing only the intervals when `monitoring.interval` is not 1s, and the file_sd
files that say whom to scrape are written beside them from the run: the target's /metrics (job `target`),
scenariokit's live endpoint (job `scenariokit`) and each of `monitoring.targets` (job = its role). The
database stays in the run folder (`monitor/prometheus/data`); the HTTP API and UI are at the URL written to
`monitor/prometheus.json`. The Grafana dashboard in `monitoring/grafana/dashboards/` reads these series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import httpx
import yaml

from scenariokit.compile.ir import MonitorTarget
from scenariokit.ports import free_port
from scenariokit.run.stack import monitoring_dir

READY_TIMEOUT_S = 30.0
SHIPPED_INTERVAL_S = 1.0  # what monitoring/prometheus/prometheus.yml says


class PrometheusUnavailable(RuntimeError):
    pass


def sd_group(url: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    """One file_sd entry for a /metrics URL: a base URL gets `/metrics` appended, as the monitor reads it."""
    parts = urlparse(url)
    path = parts.path.rstrip("/")
    return {
        "targets": [parts.netloc],
        "labels": {
            "__scheme__": parts.scheme or "http",
            "__metrics_path__": path if path.endswith("/metrics") else f"{path}/metrics",
            **(labels or {}),
        },
    }


def sd_files(
    target_url: str, exporter_url: str, targets: tuple[MonitorTarget, ...] = ()
) -> dict[str, list[dict[str, object]]]:
    """File name under targets/ -> its file_sd groups; the name's prefix picks the job (prometheus.yml)."""
    files = {
        "scenariokit.json": [sd_group(exporter_url, {"name": "runner"})],
        "target.json": [sd_group(target_url, {"name": "target"})],
    }
    for target in targets:  # names are [a-z0-9-] and unique (compile/lower.py)
        files[f"{target.role}-{target.name}.json"] = [sd_group(target.url, {"name": target.name})]
    return files


def config(interval_s: float = SHIPPED_INTERVAL_S) -> dict[str, Any]:
    """The shipped prometheus.yml, with the run's sampling interval when it is not the shipped 1s."""
    loaded: dict[str, Any] = yaml.safe_load(
        monitoring_dir().joinpath("prometheus", "prometheus.yml").read_text()
    )
    if interval_s != SHIPPED_INTERVAL_S:
        interval = f"{round(interval_s * 1000)}ms"  # Prometheus durations take ms
        loaded["global"] = {**loaded["global"], "scrape_interval": interval, "evaluation_interval": interval}
    return loaded


def write_config(
    into: Path, target_url: str, exporter_url: str, interval_s: float, targets: tuple[MonitorTarget, ...] = ()
) -> Path:
    """prometheus.yml, rules/ and targets/ in `into`; returns the config's path."""
    shipped = monitoring_dir() / "prometheus"
    into.mkdir(parents=True, exist_ok=True)
    config_path = into / "prometheus.yml"
    if interval_s == SHIPPED_INTERVAL_S:  # the very file, comments and all
        shutil.copyfile(shipped / "prometheus.yml", config_path)
    else:
        config_path.write_text(yaml.safe_dump(config(interval_s), sort_keys=False))
    shutil.copytree(shipped / "rules", into / "rules", dirs_exist_ok=True)
    (into / "targets").mkdir(exist_ok=True)
    for name, groups in sd_files(target_url, exporter_url, targets).items():
        (into / "targets" / name).write_text(json.dumps(groups, indent=2) + "\n")
    return config_path


class PrometheusServer:
    """Started and stopped around the run; its data stays in the run folder."""

    def __init__(
        self,
        run_dir: Path,
        target_url: str,
        exporter_url: str,
        interval_s: float = SHIPPED_INTERVAL_S,
        targets: tuple[MonitorTarget, ...] = (),
    ) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusUnavailable(
                "--monitor prometheus needs the `prometheus` server on PATH (apt-get install prometheus)"
            )
        self.dir = run_dir / "monitor" / "prometheus"
        self.dir.mkdir(parents=True, exist_ok=True)
        config_path = write_config(self.dir, target_url, exporter_url, interval_s, targets)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [
            binary,
            f"--config.file={config_path}",
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
