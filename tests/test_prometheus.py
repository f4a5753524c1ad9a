"""`--monitor prometheus`: Debian's Prometheus on loopback scrapes the embedded target and scenariokit's
live endpoint during the run, and every metric the shipped Grafana dashboard reads is there."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scenariokit.ports import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]

DASHBOARD = Path(__file__).parent.parent / "monitoring" / "grafana" / "dashboards" / "scenariokit.json"
GPU_ONLY = {"vllm:kv_cache_usage_perc"}  # vLLM's paged KV cache: no such thing on the CPU server
SCENARIO = """\
version: 1
name: prom
target: {kind: openai-chat, base_url: embedded, model: moderation, timeout: 10s,
         embedded: {workers: 1, fault: latency=50ms}}
load: {curve: "ramp(1, 3, 4s) -> hold(14s)", think_time: constant(50ms)}
data:
  images: {source: builtin:text-cards, count: 4}
requests:
  moderate: {prompt: "Is this image safe?", image: "{images}", max_tokens: 4, stream: true}
slo:
  - error_rate < 5%
  - p95(latency) < 5s
"""
# The run makes about 220 requests: < 5% and p95 are decided from 59 samples with none over (95%
# confidence), while < 1% needs 299 and left the run inconclusive (exit 4). Prometheus is what is tested.


def dashboard_metric_names() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    names = set()
    for panel in panels:
        for target in panel.get("targets", []):  # rows have none
            names |= set(re.findall(r"(?:scenariokit_|vllm:|process_)[a-z0-9_:]+", target["expr"]))
    return names


def query(url: str, path: str, **params: str) -> list[object]:
    body = httpx.get(f"{url}{path}", params=params, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_target_and_scenariokit_during_the_run(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's prometheus: .ci/run installs it with apt-get")
        pytest.skip("Debian's prometheus is not installed (apt-get install prometheus)")
    scenario = tmp_path / "prom.yaml"
    scenario.write_text(SCENARIO)
    run_dir = tmp_path / "run"
    code = "from scenariokit.cli import main; raise SystemExit(main())"
    argv = [sys.executable, "-c", code, "run", str(scenario), "--engine", "k6", "--out", str(run_dir)]
    port = free_port()  # --metrics-listen: the live endpoint where it is told, as compose scrapes it
    argv += ["--metrics-listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen([*argv, "--quiet", "--monitor", "prometheus"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)  # fmt: skip
    try:
        info_path = run_dir / "monitor" / "prometheus.json"
        deadline = time.monotonic() + 60
        while not info_path.is_file() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        info = json.loads(info_path.read_text())
        url = info["url"]
        assert info["scenariokit"] == f"http://127.0.0.1:{port}/metrics"
        seen: dict[str, list[object]] = {}
        names: set[str] = set()
        recorded: list[object] = []
        while time.monotonic() < deadline and process.poll() is None:
            try:
                for job in ("target", "scenariokit"):
                    seen[job] = query(url, "/api/v1/series", **{"match[]": f'{{job="{job}"}}'})
                names = set(query(url, "/api/v1/label/__name__/values"))  # type: ignore[arg-type]
                requests = query(url, "/api/v1/query", query="sum(scenariokit_requests_total)")
                # a dashboard query as the recording rule the run's Prometheus loaded from monitoring/
                recorded = query(url, "/api/v1/query", query="scenariokit_run:panel2:b")
            except (httpx.HTTPError, ValueError):  # ValueError: a 503 "Service Unavailable" text (not ready)
                time.sleep(0.5)
                continue
            if all(seen.values()) and requests and recorded and dashboard_metric_names() - GPU_ONLY <= names:
                break
            time.sleep(1)
        assert process.poll() is None, "the run ended before Prometheus had both jobs' series"
        assert seen["target"] and seen["scenariokit"]
        assert recorded, "the achieved-load panel's recording rule has no value"
        missing = dashboard_metric_names() - GPU_ONLY - names
        assert not missing, f"the dashboard reads series Prometheus never got: {missing}"
        assert any(s["__name__"].startswith("vllm:") for s in seen["target"])  # type: ignore[index]
    finally:
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    assert (run_dir / "monitor" / "prometheus" / "data").is_dir()
    # the runner started the target, so it sampled the server and its model worker beside the generator
    generator = json.loads((run_dir / "generator.json").read_text())
    assert generator["target_pid"] and max(s["target_cores"] for s in generator["samples"]) > 0
