"""The sampler: Prometheus text parsing, and real samples of the host and a real /metrics endpoint."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from scenariokit.results.store import read_samples
from scenariokit.run.monitor import Monitor, parse_prometheus, scrape
from tests.support.loopback import LoopbackServer

VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="ocr"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="ocr"} 7.0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="0.5",model_name="ocr"} 4.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="ocr"} 5.0
vllm:e2e_request_latency_seconds_count{model_name="ocr"} 5.0
vllm:e2e_request_latency_seconds_sum{model_name="ocr"} 2.5
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 10.0
"""


def test_vllm_metrics_are_kept_and_buckets_dropped() -> None:
    values = parse_prometheus(VLLM_TEXT)
    assert values['vllm:num_requests_running{engine="0",model_name="ocr"}'] == 3
    assert values['vllm:num_requests_waiting{engine="0",model_name="ocr"}'] == 7
    assert values['vllm:e2e_request_latency_seconds_sum{model_name="ocr"}'] == 2.5
    assert not any("_bucket" in k or k.startswith("python_gc") for k in values)


def test_monitor_samples_a_live_metrics_endpoint_and_the_host(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    running = Gauge("vllm:num_requests_running", "running", registry=registry)
    served = Counter("vllm:request_success", "done", registry=registry)
    Histogram("vllm:time_to_first_token_seconds", "ttft", registry=registry).observe(0.2)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with Monitor(tmp_path, url, interval_s=0.2):
            for i in range(5):
                running.set(i)
                served.inc()
                time.sleep(0.2)
    finally:
        server.shutdown()
    target = read_samples(tmp_path, "target.jsonl")
    host = read_samples(tmp_path, "host.jsonl")
    assert len(target) >= 3 and all(s["up"] and s["scrape"] == "ok" for s in target)
    counts = [s["metrics"]["vllm:request_success_total"] for s in target]
    assert counts == sorted(counts) and counts[-1] > counts[0]  # the counter moved, and we saw it move
    assert "vllm:time_to_first_token_seconds_sum" in target[0]["metrics"]
    assert all(0 <= s["cpu_percent"] <= 100 and s["memory_used_bytes"] > 0 for s in host)


def test_a_dead_target_is_recorded_as_refused(tmp_path: Path) -> None:
    with Monitor(tmp_path, "http://127.0.0.1:9", interval_s=0.1):
        time.sleep(0.35)
    samples = read_samples(tmp_path, "target.jsonl")
    assert samples and all(s["scrape"] == "refused" and s["status"] == 0 for s in samples)
    assert not any(s["up"] for s in samples)  # old readers' one bool stays


@pytest.mark.parametrize(
    ("status_by_path", "status"),
    [({}, 200), ({"/metrics": 404}, 404), ({"/metrics": 405}, 405)],
    ids=["json-page", "404", "405"],
)
def test_a_target_without_prometheus_metrics_is_absent_not_down(
    status_by_path: dict[str, int], status: int
) -> None:
    """A REST service answers /metrics with a JSON page (a catch-all route) or 404/405: absent."""
    with LoopbackServer(status_by_path=status_by_path) as server, httpx.Client(timeout=2.0) as client:
        sample = scrape(client, f"{server.url}/metrics")
    assert sample == {"scrape": "absent", "status": status, "up": False, "metrics": {}}


def test_a_server_error_at_metrics_is_an_error() -> None:
    with LoopbackServer(status_by_path={"/metrics": 503}) as server, httpx.Client(timeout=2.0) as client:
        assert scrape(client, f"{server.url}/metrics")["scrape"] == "error"


def test_gpu_presence_is_stated_either_way(tmp_path: Path) -> None:
    """NVML (nvidia-ml-py, a dependency) is asked on every run; without a GPU the run says why."""
    with Monitor(tmp_path, None, interval_s=0.1):
        time.sleep(0.25)
    gpu = json.loads((tmp_path / "monitor" / "gpu.json").read_text())
    if gpu["available"]:  # a machine with a GPU: samples with utilisation and memory
        (first, *_) = read_samples(tmp_path, "gpu.jsonl")
        assert {"util_percent", "memory_used_bytes", "memory_total_bytes"} <= set(first["gpus"][0])
    else:
        assert gpu["reason"].startswith(("GPU metrics absent: NVMLError", "NVML found no GPU")), gpu
