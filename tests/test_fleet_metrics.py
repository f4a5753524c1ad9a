"""Issue 20's must-show: a real run against the embedded server, with a loopback DCGM exporter and a
node_exporter beside it whose values follow the load the server carries (its own /metrics: the requests it
has finished), never a clock.

The DCGM fixture fills GPU 0's framebuffer as requests are served (95% at about 60) and, once 150 have
been served, turns the server's admin fault on (every model call answers 500): the GPU's memory fills
before errors rise, and the analysis must name "GPU memory" first. The report has the GPU and host plots,
summary.json the per-GPU peaks, and the GPU SLOs are judged on the samples.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scenariokit.cli import main
from scenariokit.exitcodes import ExitCode
from scenariokit.results.fleet import split_key
from scenariokit_server.launcher import ServerHandle, start_server
from tests.support.exporters import GpuReading, NodeReading, TextExporter, dcgm_text, node_text

pytestmark = pytest.mark.engine

MEMORY_START, MEMORY_STEP, MEMORY_CAP = 0.40, 0.0095, 0.99  # share of the framebuffer; +0.95 pt a request
FAIL_AFTER = 150  # requests served before the fixture turns the server's errors on
FB_TOTAL_MIB = 81_559.0  # an H100 80GB's framebuffer as DCGM reports used + free


class Load:
    """What the server under test has done, read from its /metrics at each scrape of a fixture."""

    def __init__(self, server: ServerHandle) -> None:
        self.server, self.failing = server, False
        self._lock = threading.Lock()

    def served(self) -> float:
        text = httpx.get(f"{self.server.base_url}/metrics", timeout=2).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if split_key(line.split(" ", 1)[0])[0] == "vllm:request_success_total"
        )

    def dcgm(self) -> str:
        served = self.served()
        with self._lock:
            if served >= FAIL_AFTER and not self.failing:  # the memory is full: now the server fails
                admin = httpx.post(f"{self.server.base_url}/admin/fault", json={"error_rate": 1.0}, timeout=5)
                admin.raise_for_status()
                self.failing = True
        share = min(MEMORY_CAP, MEMORY_START + MEMORY_STEP * served)
        busy = GpuReading(min(90.0, 40 + 0.2 * served), share * FB_TOTAL_MIB, (1 - share) * FB_TOTAL_MIB)
        idle = GpuReading(0.0, 500.0, FB_TOTAL_MIB - 500.0)  # a second GPU the model does not use
        return dcgm_text([busy, idle])

    def node(self) -> str:
        served = self.served()
        return node_text(
            NodeReading(
                cpu_busy_s=[0.02 * served] * 2,
                cpu_idle_s=[0.5 + 0.01 * served] * 2,
                mem_total=64e9,
                mem_available=60e9 - 2e7 * served,
                rx_bytes=4_000 * served,
                tx_bytes=1_000 * served,
            )
        )


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with start_server(workers=1, max_in_flight=2, max_queue=16, extra_args=["--admin"]) as handle:
        yield handle


SCENARIO = """\
version: 1
name: fleet-gpu
target: {{kind: openai-chat, base_url: "{url}", model: classify, timeout: 10s}}
load:
  model: open
  curve: hold(20/s, 13s) as steady
  expected_latency: 100ms
data:
  images: {{source: builtin:text-cards, count: 2}}
requests:
  identify: {{prompt: "Name the main object.", image: "{{images}}", max_tokens: 16}}
slo:
  - max(gpu_memory) < 95%
  - mean(gpu_util) >= 40% for dcgm-1-gpu0
  - max(gpu_util) < 90% for dcgm-1
monitoring:
  targets:
    - {{url: "{dcgm}", role: dcgm, name: dcgm-1}}
    - {{url: "{node}", role: node, name: gpu-host}}
"""


def test_gpu_memory_fills_first_and_is_named(server: ServerHandle, tmp_path: Path) -> None:
    load = Load(server)
    try:
        with TextExporter(load.dcgm) as dcgm, TextExporter(load.node) as node:
            path = tmp_path / "fleet.yaml"
            path.write_text(SCENARIO.format(url=server.base_url, dcgm=dcgm.url, node=node.url))
            code = main(["run", str(path), "--engine", "k6", "--out", str(tmp_path / "run"), "--quiet"])
    finally:
        httpx.post(f"{server.base_url}/admin/fault", json={}, timeout=5)  # the module's server, healthy again
    assert load.failing, "the run ended before the fixture turned the errors on"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    verdicts = {v["slo"]: v for v in summary["verdicts"]}

    # the GPU SLOs, judged on the DCGM samples as observed facts
    memory = verdicts["max(gpu_memory) < 95%"]
    assert memory["status"] == "fail" and memory["value"] == pytest.approx(MEMORY_CAP)
    assert "dcgm-1 GPU 0" in memory["explanation"] and "sampled gauge" in memory["rule"]
    assert verdicts["mean(gpu_util) >= 40% for dcgm-1-gpu0"]["status"] == "pass"
    util = verdicts["max(gpu_util) < 90% for dcgm-1"]
    assert util["status"] == "pass" and util["value"] < 0.9
    assert code == ExitCode.SLO_BREACHED

    # the GPU's memory is named first, before the errors the fault then caused, with what it read; the
    # generator's own host (this machine, shared with other tests) may be pegged: a trust fact, not the target
    signals = summary["analysis"]["signals"]
    first = next(s for s in signals if not s["component"].startswith(("host:", "load generator:")))
    assert first["component"] == "GPU memory (dcgm-1 GPU 0)", signals
    errors = next(s for s in signals if s["component"].startswith("errors:"))
    assert errors["at_s"] > first["at_s"]
    assert first["detail"].startswith("NVIDIA H100 80GB HBM3: framebuffer at or above 95% (")
    assert any(text.startswith("First to fail: GPU memory") for text in summary["analysis"]["suggestions"])

    # per-GPU peaks in summary.json; the host's panels from the node fixture
    gpu0, gpu1 = summary["fleet"]["gpus"]
    assert gpu0["peak_memory_share"] == pytest.approx(MEMORY_CAP) and gpu0["model"] == "NVIDIA H100 80GB HBM3"
    assert gpu1["peak_util_percent"] == 0 and gpu0["memory_total_bytes"] == FB_TOTAL_MIB * 2**20
    (host,) = summary["fleet"]["nodes"]
    assert (
        host["target"] == "gpu-host"
        and 0 < host["peak_cpu_share"] <= 1
        and host["peak_receive_bytes_per_s"] > 0
    )

    report = (tmp_path / "run" / "report.html").read_text()
    for plot in ("plot-gpus", "plot-nodes", "plot-host"):
        assert f'id="{plot}"' in report, plot
    assert "dcgm-1 GPU 0 (NVIDIA H100 80GB HBM3) memory %" in report
    markdown = (tmp_path / "run" / "summary.md").read_text()
    assert "## Fleet (monitoring.targets)" in markdown and "| dcgm-1 GPU 0 |" in markdown
