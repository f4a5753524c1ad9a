"""The reference guide's workflow on one real short run (issue 19): image_url bodies served by the runner to
the embedded server over loopback, a URL off loopback refused unfetched, the guide's error-case flow, the
guide's columns (mean latency, peak in flight, open connections) in every table of summary.md and the
report, the network and the target's CPU and memory plotted, and Locust's web UI (`run --web`) watched
during the run."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scenariokit.cli import main
from scenariokit.ports import free_port
from scenariokit.results.inflight import InFlight
from scenariokit.results.store import load_records
from scenariokit.run.images import read_stats

pytestmark = pytest.mark.engine
USERS = 3

SCENARIO = f"""\
version: 1
name: guide
target: {{kind: http, base_url: embedded, embedded: {{workers: 1}}, timeout: 10s}}
load: {{curve: "ramp(0, {USERS}, 1s) -> hold(4s) as steady", think_time: "between(0.1s, 0.3s)"}}
data:
  images: {{source: builtin:text-cards, count: 4, serve: http}}
requests:
  identify: {{weight: 3, method: POST, path: /api/identify, json: {{image_url: "{{images.url}}"}}}}
  off-loopback:
    method: POST
    path: /api/identify
    json: {{image_url: "https://example.com/test1.jpg"}}
    expect: {{status: 400}}
  error-cases:
    steps:
      - {{method: POST, path: /api/identify, json: {{image_url: ""}}, expect: {{status: 400}}}}
      - {{method: POST, path: /api/identify, json: {{wrong_field: test}}, expect: {{status: 400}}}}
slo:
  - mean(latency) <= 2s
"""


@dataclass
class Run:
    folder: Path
    ui: list[tuple[int, dict]]  # what Locust's web UI answered during the run (`--web`)


def watch(url: str, seen: list[tuple[int, dict]], stop: threading.Event) -> None:
    """Polls the UI's page and its stats while the run goes: what a user watching it would see."""
    while not stop.is_set():
        try:
            page = httpx.get(url + "/", timeout=1)
            stats = httpx.get(url + "/stats/requests", timeout=1).json()
            if b"<html" in page.content.lower():
                seen.append((page.status_code, stats))
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.25)


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One run, with Locust's web UI on (`--web`), watched while it goes."""
    folder = tmp_path_factory.mktemp("guide")
    path = folder / "guide.yaml"
    path.write_text(SCENARIO)
    port, seen, stop = free_port(), [], threading.Event()
    watcher = threading.Thread(target=watch, args=(f"http://127.0.0.1:{port}", seen, stop), daemon=True)
    watcher.start()
    try:
        argv = ["run", str(path), "--web", "--web-port", str(port), "--out", str(folder / "run"), "--quiet"]
        code = main(argv)
    finally:
        stop.set()
        watcher.join(5)
    assert code in (0, 4), code  # the one SLO is loose: pass, or too few samples on a loaded host
    return Run(folder / "run", seen)


@pytest.fixture(scope="module")
def run(guide: Run) -> Path:
    return guide.folder


def test_locusts_web_ui_showed_the_run_while_the_runner_recorded_it(guide: Run) -> None:
    assert summary(guide.folder)["exit_reason"] == "completed"
    assert guide.ui and all(status == 200 for status, _ in guide.ui)
    running = [stats for _, stats in guide.ui if stats.get("state") == "running"]
    assert running and max(stats["user_count"] for stats in running) == USERS  # the shape started itself
    counted = max(row["num_requests"] for _, stats in guide.ui for row in stats["stats"])
    assert 0 < counted <= summary(guide.folder)["overall"]["requests"] + USERS


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_image_urls_reach_the_embedded_server_through_the_runners_server_only(run: Path) -> None:
    rows = summary(run)["by_request"]
    assert rows["identify"]["requests"] > 10 and rows["identify"]["errors"] == 0
    stats = read_stats(run)
    assert stats is not None and stats.origin.startswith("http://127.0.0.1:")
    # every identify fetched its card from the image server, nothing else was asked of it
    assert (stats.served, stats.not_found, stats.refused) == (rows["identify"]["requests"], 0, 0)
    # the guide's https URL was refused from its text (400), never fetched (that would be 502 or 504)
    assert rows["off-loopback"]["requests"] > 0 and rows["off-loopback"]["errors"] == 0
    assert {r.status for r in load_records(run) if r.name == "off-loopback"} == {400}
    assert rows["error-cases.1"]["errors"] == rows["error-cases.2"]["errors"] == 0


def brute_peak(spans: list[tuple[float, float]], origin: float, step_s: float, steps: int) -> int:
    """In flight at the same instants (k * step_s, start <= instant < end), by a sweep over every request."""
    events = []
    for start, end in spans:
        first = min(max(math.ceil((start - origin) / step_s), 0), steps)
        after = max(min(max(math.ceil((end - origin) / step_s), 0), steps), first)
        events += [(first, 1), (after, -1)]
    level = peak = 0
    for _, change in sorted(events):  # at one instant, ends (-1) before starts
        level += change
        peak = max(peak, level)
    return peak


def exact_peak(spans: list[tuple[float, float]]) -> int:
    """The true most in flight at once, over continuous time."""
    level = peak = 0
    for _, change in sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans]):
        level += change
        peak = max(peak, level)
    return peak


def test_peak_in_flight_is_counted_from_the_records(run: Path) -> None:
    s = summary(run)
    records = load_records(run)
    origin = json.loads((run / "run.json").read_text())["engine_started_unix"]
    grid = InFlight(origin, s["duration_s"])
    spans = [(r.t, r.t + r.latency) for r in records]
    assert s["overall"]["peak_in_flight"] == brute_peak(spans, origin, grid.step_s, grid.steps)
    # counted at instants 1 ms apart it never overstates: a flow's back-to-back requests never overlap
    assert 1 <= s["overall"]["peak_in_flight"] <= exact_peak(spans) <= USERS
    for name, row in s["by_request"].items():
        mine = [(r.t, r.t + r.latency) for r in records if r.name == name]
        assert row["peak_in_flight"] == brute_peak(mine, origin, grid.step_s, grid.steps), name
    assert max(st["peak_in_flight"] for st in s["by_stage"]) == s["overall"]["peak_in_flight"]
    assert s["overall"]["latency"]["mean"] == pytest.approx(
        sum(r.corrected_latency for r in records) / len(records), rel=1e-9
    )


def test_open_connections_are_counted_by_the_os_once_a_second(run: Path) -> None:
    s = summary(run)
    samples = json.loads((run / "generator.json").read_text())["samples"]
    counts = [sample["connections"] for sample in samples if "connections" in sample]
    assert len(counts) >= 4 and max(counts) == s["overall"]["peak_connections"]
    assert 1 <= s["overall"]["peak_connections"] <= USERS  # a user reuses its keep-alive connection
    assert all(row["peak_connections"] is None for row in s["by_request"].values())  # shared by requests
    assert max(st["peak_connections"] or 0 for st in s["by_stage"]) == s["overall"]["peak_connections"]
    assert all(lv["peak_connections"] is not None for lv in s["analysis"]["levels"])


def columns(markdown: str, heading: str) -> list[str]:
    table = markdown.split(f"## {heading}", 1)[1].split("\n\n")[1]
    return [c.strip() for c in table.splitlines()[0].strip("|").split("|")]


def test_every_table_shows_the_mean_and_the_peak_in_flight(run: Path) -> None:
    md = (run / "summary.md").read_text()
    for heading in ("Requests", "Stages", "Capacity"):
        header = columns(md, heading)
        assert {"mean ms", "peak in flight", "peak connections"} <= set(header), heading
    all_row = next(line for line in md.splitlines() if line.startswith("| all |"))
    cells = [c.strip() for c in all_row.strip("|").split("|")]
    s = summary(run)
    assert cells[5] == f"{s['overall']['latency']['mean'] * 1000:.1f}"
    assert cells[10] == str(s["overall"]["peak_in_flight"])
    html = (run / "report.html").read_text()
    for section in ("requests", "stages", "levels"):
        part = html.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
        assert "mean ms" in part and "peak in flight" in part and "peak connections" in part, section


def plotted(html: str, section: str) -> list[dict]:
    """The traces of one plot of the report (plotly's JSON in the section's script)."""
    part = html.split(f'id="section-{section}"', 1)[1].split("</section>", 1)[0]
    match = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", part, re.S)
    assert match, section
    return json.loads(match.group(1))


def test_the_report_plots_the_network_and_the_targets_cpu_and_memory(run: Path) -> None:
    html = (run / "report.html").read_text()
    load = {t["name"]: t for t in plotted(html, "load")}
    assert max(load["open connections"]["y"]) == summary(run)["overall"]["peak_connections"]
    network = {t["name"]: t for t in plotted(html, "network")}
    assert set(network) == {"sent bytes/s", "received bytes/s"}
    assert max(network["sent bytes/s"]["y"]) > 10_000  # the card PNGs crossed loopback to the target
    target = {t["name"]: t for t in plotted(html, "target")}
    assert set(target) == {"target CPU (cores)", "target memory (MiB)"}
    assert max(target["target CPU (cores)"]["y"]) > 0
    assert min(target["target memory (MiB)"]["y"]) > 50  # a model worker holds its models
