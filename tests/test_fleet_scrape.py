"""`monitoring.targets` by role: what a scrape keeps from DCGM's and node_exporter's text, how hostile
exporters are bounded, that one slow endpoint does not stall the others, and the series results/fleet.py
reads back (per GPU, per host), on real loopback HTTP."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.expr import parse_slo
from scenariokit.compile.expr.errors import ExprError
from scenariokit.compile.ir import MonitorTarget, Stage
from scenariokit.compile.pipeline import load_scenario
from scenariokit.results.analysis import fleet_signals
from scenariokit.results.fleet import (
    Fleet,
    gpu_series,
    judge_gpu,
    node_series,
    read_fleet,
    split_key,
    vllm_series,
)
from scenariokit.results.metrics import RunData
from scenariokit.results.report import fleet_figures
from scenariokit.run.monitor import MAX_BODY_BYTES, MAX_SERIES, ROLE_SERIES, Monitor, parse_prometheus, scrape
from tests.support.exporters import GpuReading, NodeReading, dcgm_text, gpu_uuid, node_text


class RawServer:
    """Answers every GET with a body made by `body()`, written in 64 KiB pieces, after `delay_s`."""

    def __init__(self, body: bytes, delay_s: float = 0.0) -> None:
        payload, delay = body, delay_s

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    for i in range(0, len(payload), 65536):
                        self.wfile.write(payload[i : i + 65536])
                except (BrokenPipeError, ConnectionResetError):  # the scraper stopped reading: expected
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2.0) as c:
        yield c


def served(body: str | bytes, client: httpx.Client, role: str, delay_s: float = 0.0) -> dict:
    server = RawServer(body.encode() if isinstance(body, str) else body, delay_s)
    try:
        return scrape(client, server.url, ROLE_SERIES[role])
    finally:
        server.close()


def test_dcgm_keeps_the_three_gpu_series_with_their_identity_labels() -> None:
    text = dcgm_text([GpuReading(73, 1024, 80_000), GpuReading(10, 500, 80_524)])
    values = parse_prometheus(text, ROLE_SERIES["dcgm"])
    assert len(values) == 6  # 3 series x 2 GPUs; SM clock and the driver/PCI labels are left out
    _, labels = split_key(next(k for k in values if k.startswith("DCGM_FI_DEV_GPU_UTIL")))
    assert set(labels) == {"gpu", "UUID", "modelName", "Hostname"} and labels["UUID"] == gpu_uuid(0)
    assert values[f'DCGM_FI_DEV_GPU_UTIL{{Hostname="gpu-node-1",UUID="{gpu_uuid(0)}",gpu="0",'
                  'modelName="NVIDIA H100 80GB HBM3"}'] == 73  # fmt: skip


def test_node_keeps_cpu_memory_and_network_only() -> None:
    text = node_text(NodeReading([5.0, 6.0], [95.0, 94.0], 8e9, 6e9, 1e6, 2e6))
    names = {split_key(k)[0] for k in parse_prometheus(text, ROLE_SERIES["node"])}
    assert names == {
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
    }  # node_boot_time_seconds is not kept


HOSTILE = [
    pytest.param(
        "nan_inf",
        'DCGM_FI_DEV_GPU_UTIL{gpu="0"} NaN\nDCGM_FI_DEV_FB_USED{gpu="0"} +Inf\n'
        'DCGM_FI_DEV_FB_FREE{gpu="0"} 7\n',
        "ok",
        {"DCGM_FI_DEV_FB_FREE"},
        id="nan-inf-dropped",
    ),
    pytest.param(
        "html", "<html><body>DCGM_FI_DEV_GPU_UTIL 5</body></html>\n", "absent", set(), id="html-page"
    ),
    pytest.param("json", '{"DCGM_FI_DEV_GPU_UTIL": 5}\n', "absent", set(), id="json-page"),
    pytest.param(
        "crlf",
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",modelName="A\\nB\r\\"C"} 5\n',
        "ok",
        {"DCGM_FI_DEV_GPU_UTIL"},
        id="cr-lf-quote-in-label",
    ),
    pytest.param("empty", "", "ok", set(), id="empty-body"),
]


@pytest.mark.parametrize(("kind", "body", "outcome", "names"), HOSTILE)
def test_hostile_bodies(kind: str, body: str, outcome: str, names: set[str], client: httpx.Client) -> None:
    sample = served(body, client, "dcgm")
    assert sample["scrape"] == outcome
    assert {split_key(k)[0] for k in sample["metrics"]} == names
    json.dumps(sample, allow_nan=False)  # what the monitor writes: strict JSON
    for key in sample["metrics"]:
        assert not any(c in key for c in "\r\n\\") and key.count('"') % 2 == 0, key


def test_a_label_with_cr_lf_stays_one_clean_series(client: httpx.Client) -> None:
    (key,) = served(HOSTILE[3].values[1], client, "dcgm")["metrics"]
    assert split_key(key)[1] == {"gpu": "0", "modelName": "A_B__C"}


def test_a_50_mb_body_is_cut_at_the_limit(client: httpx.Client) -> None:
    line = b'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 5\n'
    body = line * (50 * 2**20 // len(line))
    started = time.monotonic()
    sample = served(body, client, "dcgm")
    assert sample == {"scrape": "oversize", "status": 200, "up": False, "metrics": {}}
    assert len(body) > MAX_BODY_BYTES
    assert time.monotonic() - started < 10  # read no further than the limit (generous on a loaded host)


def test_100k_series_are_bounded(client: httpx.Client) -> None:
    """100,000 series of a kept name: MAX_SERIES kept; 100,000 of other names: none, and no parse."""
    kept = "".join(f'node_cpu_seconds_total{{cpu="{i}",mode="idle"}} {i}\n' for i in range(100_000))
    assert len(served(kept, client, "node")["metrics"]) == MAX_SERIES
    other = "".join(f'go_thing{{i="{i}"}} {i}\n' for i in range(100_000)) + "node_load1 0.5\n"
    assert served(other, client, "node")["metrics"] == {"node_load1": 0.5}


@pytest.mark.solo
def test_a_slow_endpoint_does_not_stall_the_others(tmp_path: Path) -> None:
    """Scraped concurrently: an exporter that answers after 2.5 s (over the 2 s budget) times out alone;
    the fast one and the host are sampled on every tick meanwhile."""
    slow = RawServer(b"node_load1 1\n", delay_s=2.5)
    fast = RawServer(b"node_load1 2\n")
    targets = (MonitorTarget("slow", slow.url, "node"), MonitorTarget("fast", fast.url, "node"))
    try:
        with Monitor(tmp_path, None, interval_s=0.2, targets=targets):
            time.sleep(1.7)
    finally:
        slow.close()
        fast.close()
    read = lambda name: [json.loads(x) for x in (tmp_path / "monitor" / name).read_text().splitlines()]  # noqa: E731
    host, quick = read("host.jsonl"), read("targets/fast.jsonl")
    slow_samples = read("targets/slow.jsonl") if (tmp_path / "monitor/targets/slow.jsonl").exists() else []
    assert len(host) >= 5 and len(quick) >= len(host) - 1  # every tick, whatever the slow one does
    assert all(s["scrape"] == "ok" and s["metrics"] == {"node_load1": 2.0} for s in quick)
    assert all(s["scrape"] == "timeout" for s in slow_samples) and len(slow_samples) <= 2


def sample(t: float, metrics: dict[str, float]) -> dict:
    return {"t": t, "scrape": "ok", "metrics": metrics}


def dcgm_sample(t: float, *gpus: GpuReading) -> dict:
    return sample(t, parse_prometheus(dcgm_text(list(gpus)), ROLE_SERIES["dcgm"]))


def test_gpu_series_per_gpu_and_memory_share() -> None:
    samples = [
        dcgm_sample(
            100 + i,
            GpuReading(50 + i, 1000 * i, 8000 - 1000 * i),
            GpuReading(50 + i, 1000 * i, 8000 - 1000 * i),
        )
        for i in range(3)
    ]
    gpus = gpu_series("dcgm-1", samples, 100.0)
    assert [g.gpu.index for g in gpus] == ["0", "1"] and gpus[1].gpu.uuid == gpu_uuid(1)
    assert [p.value for p in gpus[0].util] == [50, 51, 52] and [p.t for p in gpus[0].util] == [0, 1, 2]
    assert [p.value for p in gpus[0].memory] == [0.0, 0.125, 0.25] and gpus[0].total_bytes == 8000 * 2**20
    assert gpus[0].gpu.named(["dcgm-1-gpu0"]) and not gpus[0].gpu.named(["dcgm-1-gpu1"])


def test_node_series_rates_from_counters() -> None:
    """2 CPUs, 1 s apart: 0.5 s busy of 2 s -> 25% busy; 1 MB more received -> 1 MB/s; lo left out."""
    a = node_text(NodeReading([10.0, 10.0], [90.0, 90.0], 8e9, 6e9, 1e6, 5e5))
    b = node_text(NodeReading([10.25, 10.25], [90.75, 90.75], 8e9, 2e9, 2e6, 1e6))
    keep = ROLE_SERIES["node"]
    node = node_series(
        "node-1", [sample(10, parse_prometheus(a, keep)), sample(11, parse_prometheus(b, keep))], 10
    )
    assert [p.value for p in node.cpu] == [pytest.approx(0.25)]
    assert [p.value for p in node.memory] == [0.25, 0.75]
    assert [p.value for p in node.rx] == [1e6] and [p.value for p in node.tx] == [5e5]


def test_read_fleet_skips_failed_scrapes_and_foreign_names(tmp_path: Path) -> None:
    monitor = tmp_path / "monitor"
    (monitor / "targets").mkdir(parents=True)
    listing = [
        {"name": "dcgm-1", "url": "u", "role": "dcgm"},
        {"name": "../evil", "url": "u", "role": "node"},
    ]
    (monitor / "targets.json").write_text(json.dumps(listing))
    ok = parse_prometheus(dcgm_text([GpuReading(80, 7000, 1000)]), ROLE_SERIES["dcgm"])
    lines = [sample(5, ok), {"t": 6, "scrape": "timeout", "metrics": {}}, sample(7, ok)]
    (monitor / "targets" / "dcgm-1.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    fleet = read_fleet(tmp_path, 0.0)
    assert [p.t for p in fleet.gpus[0].util] == [5, 7] and not fleet.nodes


# --- GPU SLOs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status", "value"),
    [
        ("max(gpu_util) < 90%", "fail", 0.95),  # GPU 1's peak
        ("max(gpu_util) < 96%", "pass", 0.95),
        ("mean(gpu_util) >= 70%", "fail", 0.55),  # GPU 0's mean is the lower one: the worst decides
        ("mean(gpu_util) >= 70% for dcgm-1-gpu1", "pass", 0.85),
        ("mean(gpu_util) <= 90%", "pass", 0.85),
        ("max(gpu_memory) < 95%", "pass", 0.5),
        ("max(gpu_util) < 90% during late", "pass", 0.85),  # 95% was in `early`
        ("max(gpu_util) < 90% for GPU-nope", "inconclusive", None),
    ],
)
def test_gpu_slos_are_judged_on_the_samples(text: str, status: str, value: float | None) -> None:
    gpus = gpu_series(
        "dcgm-1",
        [
            dcgm_sample(t, GpuReading(u0, 4000, 4000), GpuReading(u1, 1000, 7000))
            for t, u0, u1 in ((0.5, 50, 75), (1.5, 55, 95), (2.5, 60, 85))
        ],
        0.0,
    )
    stages = (Stage("hold", "early", 2.0, 1, 1), Stage("hold", "late", 1.0, 1, 1))
    verdict = judge_gpu(parse_slo(text), gpus, RunData([], 0.0, 3.0, stages), "dcgm targets: dcgm-1", 0.95)
    assert verdict.status == status
    assert verdict.value == (None if value is None else pytest.approx(value))
    assert "sampled gauge" in verdict.rule and "observed fact" in verdict.rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p95(gpu_util) < 90%", "sampled gauge"),
        ("gpu_util < 90%", "needs a statistic"),
        ("max(gpu_memory) < 1s", "not a duration"),
        ("max(gpu_util) < 150%", "more than 100%"),
    ],
)
def test_gpu_slo_grammar_refuses(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        parse_slo(text)


def test_nan_never_reaches_a_sample() -> None:
    assert all(
        math.isfinite(v)
        for v in parse_prometheus("process_x NaN\nprocess_y 1\n", ROLE_SERIES["process"]).values()
    )


# --- the compiler: what a GPU SLO's `for` may name ---------------------------------------------------

SCENARIO = """\
version: 1
name: t
target: {{kind: http, base_url: "http://127.0.0.1:9"}}
load: {{curve: "hold(1, 5s)"}}
requests:
  a: {{path: /a}}
slo:
  - {slo}
{monitoring}"""
DCGM = "monitoring:\n  targets:\n    - {url: 'http://127.0.0.1:9400/metrics', role: dcgm, name: gpus}\n"


@pytest.mark.parametrize(
    ("slo", "monitoring", "error"),
    [
        ("max(gpu_util) < 90% for gpus", DCGM, None),
        ("max(gpu_util) < 90% for gpus-gpu3", DCGM, None),
        ("max(gpu_memory) < 95% for GPU-5a1e4c3b-9d2e", DCGM, None),
        ("max(gpu_util) < 90% for gpu", DCGM, "no dcgm target or GPU is called `gpu`"),
        ("max(gpu_util) < 90% for a", DCGM, "no dcgm target or GPU is called `a`"),  # a request is no GPU
        ("max(gpu_util) < 90% during nowhere", DCGM, "no load stage or fault is called `nowhere`"),
    ],
)
def test_gpu_slo_names_are_checked(slo: str, monitoring: str, error: str | None, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(slo=slo, monitoring=monitoring))
    if error is None:
        assert load_scenario(path).scenario.slos[0].metric in ("gpu_util", "gpu_memory")
        return
    with pytest.raises(ScenarioError, match=error) as caught:
        load_scenario(path)
    assert "s.yaml:8:" in str(caught.value)  # the SLO's line


def test_a_gpu_slo_without_a_dcgm_target_warns(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(slo="max(gpu_util) < 90%", monitoring=""))
    (warning,) = load_scenario(path).warnings
    assert "none is listed" in warning.message and "NVML" in warning.message


def test_vllm_series_read_both_kv_names_and_the_analysis_names_a_full_cache() -> None:
    """V1's kv_cache_usage_perc and V0's gpu_cache_usage_perc are one series; at 90% for 3 s: "KV cache"."""
    texts = [
        f'vllm:num_requests_running{{model_name="m"}} {i}\nvllm:num_requests_waiting{{model_name="m"}} 0\n'
        f'vllm:{"kv" if i % 2 else "gpu"}_cache_usage_perc{{model_name="m"}} {0.5 + 0.1 * i}\n'
        for i in range(6)
    ]
    samples = [sample(float(i), parse_prometheus(text, ROLE_SERIES["vllm"])) for i, text in enumerate(texts)]
    v = vllm_series("vllm-1", samples, 0.0)
    assert [p.value for p in v.kv] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert [p.value for p in v.running] == [0, 1, 2, 3, 4, 5]
    signals = {name: at for name, at, _ in fleet_signals(Fleet(vllm=[v]))}
    assert signals["KV cache (vllm-1)"] is None  # 0.9 and 1.0: 2 s, not the 3 s a signal needs
    longer = vllm_series("vllm-1", [*samples, sample(6.0, {"vllm:kv_cache_usage_perc": 0.95})], 0.0)
    assert {n: at for n, at, _ in fleet_signals(Fleet(vllm=[longer]))}["KV cache (vllm-1)"] == 4.0


def test_the_report_draws_each_role() -> None:
    gpus = gpu_series("dcgm-1", [dcgm_sample(t, GpuReading(50, 1000, 7000)) for t in (1.0, 2.0)], 0.0)
    node = node_series("host", [sample(t, {"node_load1": 1.0}) for t in (1.0, 2.0)], 0.0)
    figures = fleet_figures(RunData([], 0.0, 3.0, ()), Fleet(gpus=gpus, nodes=[node]))
    assert figures["gpus"] is not None and figures["nodes"] is not None and figures["vllm"] is None
    names = [trace.name for trace in figures["gpus"].data]
    assert names == [
        "dcgm-1 GPU 0 (NVIDIA H100 80GB HBM3) util %",
        "dcgm-1 GPU 0 (NVIDIA H100 80GB HBM3) memory %",
    ]
