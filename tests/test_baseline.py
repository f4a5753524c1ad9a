"""Baselines, compare of N runs, trend and hardware (issue 20): real k6 runs against a loopback server
whose latency the test sets (100 ms; 120 ms for the planted 20% slowdown), a stored baseline gating
`scenariokit run --baseline`, the matrix of three runs, the trend page in headless Chromium, the histogram
test against the record test on the same runs, and the hostile rows (a scenario name with `../`, a corrupt
run folder, a hostile baseline file, a huge run)."""

from __future__ import annotations

import base64
import fcntl
import json
import math
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from html import unescape
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.engines.records import RequestRecord
from scenariokit.results.baseline import (
    MAX_SCOPES,
    BadBaseline,
    Digest,
    digest_run,
    read_digest,
)
from scenariokit.results.compare import Comparison, MetricDiff, Thresholds, compare_runs, latency_diffs
from scenariokit.results.hardware import target_from_scrapes, with_target
from scenariokit.results.matrix import compare_digests, holm
from scenariokit.results.store import RecordStore
from scenariokit.run.hardware import probe_hardware
from tests.conftest import _flock
from tests.support.loopback import LoopbackServer
from tests.test_report import chromium, open_in_chromium
from tests.test_summary import make_run

# An open model, so that throughput is the arrival rate whatever the latency: the planted slowdown shows
# in the latency alone, and a busy host cannot turn into a throughput "regression" of the clean run.
SCENARIO = """\
version: 1
name: gate-demo
target: {{kind: http, base_url: "{url}"}}
load:
  model: open
  curve: hold(120/s, 5s)
  expected_latency: 120ms
requests:
  get: {{path: /item}}
slo:
  - p95(latency) < 1s
engine: k6
"""
# +20% of the server's sleep. The loopback round trip adds ~1 ms at the median and up to ~25 ms in the tail
# on this host under other test runs (an absolute noise): 100 ms keeps that a small share of the tail.
BASE_DELAY_S = 0.100
SLOW_DELAY_S = 0.120

HDR_RESOLUTION = 1e-3  # the latency histograms keep 3 significant digits


@contextmanager
def alone(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """conftest's solo lock for a module-scoped fixture (set up before the function-scoped autouse lock):
    the three timed runs go while the other xdist worker waits between its tests."""
    if not hasattr(config, "workerinput"):
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent
    with ExitStack() as held:
        with _flock(shared / "solo.turnstile", fcntl.LOCK_EX):
            held.enter_context(_flock(shared / "solo.lock", fcntl.LOCK_EX))
        yield


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """base (100 ms), saved as the baseline; then `run --baseline` at 100 ms (same) and 120 ms (slow)."""
    root = tmp_path_factory.mktemp("baseline")
    codes = {}
    with alone(request.config, tmp_path_factory), LoopbackServer(delay_s=BASE_DELAY_S) as server:
        scenario = root / "gate-demo.yaml"
        scenario.write_text(SCENARIO.format(url=server.url))
        codes["base"] = main(["run", str(scenario), "--out", str(root / "base"), "--quiet"])
        codes["save"] = main(["baseline", "save", str(root / "base"), "--dir", str(root / "baselines")])
        for name, delay in (("same", BASE_DELAY_S), ("slow", SLOW_DELAY_S)):
            server.delay_s = delay
            argv = ["run", str(scenario), "--out", str(root / name), "--quiet"]
            codes[name] = main([*argv, "--baseline", str(root / "baselines")])
    return {"root": root, "codes": codes}


@pytest.mark.engine
@pytest.mark.solo
def test_a_planted_20_percent_slowdown_fails_the_baseline_gate_and_a_clean_run_passes(runs: dict) -> None:
    root, codes = runs["root"], runs["codes"]
    assert codes["base"] == 0 and codes["save"] == 0
    stored = root / "baselines" / "gate-demo" / "baseline.json"
    assert stored.is_file() and stored.stat().st_size < 64 * 1024  # small enough for git
    assert codes["same"] == 0, (root / "same" / "baseline-compare.md").read_text()
    assert codes["slow"] == 1, (root / "slow" / "baseline-compare.md").read_text()
    slow = (root / "slow" / "baseline-compare.md").read_text()
    assert "| p50(latency) | all |" in slow and "REGRESSION" in slow


@pytest.mark.engine
@pytest.mark.solo
def test_the_histogram_test_agrees_with_the_record_test_on_the_same_runs(runs: dict) -> None:
    """A stored baseline has no records: its percentile test resamples the HDR histogram. On the same
    pairs of runs, every verdict must match the records' bootstrap (but where both p-values lie within 0.01
    of each other across alpha: a p99 of +17% read p = 0.018 and 0.014 here, and a run whose p99 reads 0.009
    and 0.011 is a coin toss for either test), and every p-value be close."""
    root = runs["root"]
    th = Thresholds()
    base = digest_run(root / "base")
    for name in ("same", "slow"):
        by_records = compare_runs(root / "base", root / name, th)
        by_histograms = compare_digests(base, digest_run(root / name), th)
        pairs = list(zip(by_records.diffs, by_histograms.diffs, strict=True))
        for r, h in pairs:
            assert (r.metric, r.scope) == (h.metric, h.scope)
            if r.regression != h.regression:  # only on the edge: p-values a hair apart on both sides of alpha
                straddle = min(r.p_value, h.p_value) < th.alpha <= max(r.p_value, h.p_value)
                assert straddle and abs(r.p_value - h.p_value) < 0.01, (name, r, h)
            if r.metric == "throughput":  # seconds from the engine's start, not from the first answer
                assert all(abs(a - b) <= 1 for a, b in zip(r.samples, h.samples, strict=True))
                continue
            assert r.samples == h.samples
            if r.metric.startswith("p"):  # percentiles: the histogram's value is the record's to 0.1%
                assert h.base == pytest.approx(r.base, rel=1e-3) and h.new == pytest.approx(r.new, rel=1e-3)
                # p-values are close once the change is past the histogram's resolution (3 significant
                # digits): a +0.06% p50 (101.055 vs 101.119 ms, in one 0.1% bucket) read p = 0.002 from the
                # records and 0.127 from the histograms, both far from a regression
                if abs(r.change or 0.0) >= HDR_RESOLUTION * 5:
                    assert abs(r.p_value - h.p_value) < 0.1, (name, r, h)
            elif r.metric == "error_rate":
                assert h.p_value == r.p_value


@pytest.mark.engine
def test_compare_of_three_runs_shows_the_matrix_and_the_page(
    runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = runs["root"]
    page = tmp_path / "compare.html"
    code = main(["compare", str(root / "base"), str(root / "same"), str(root / "slow"), "-o", str(page)])
    assert code == 1  # run 3 is the slowdown, significant after Holm's correction
    assert "compare: 3 runs, " in capsys.readouterr().out
    html = page.read_text()
    text = unescape(html.split('id="text"', 1)[1])  # the matrix as Markdown, as the terminal shows it
    assert "Holm-adjusted" in text and "| source | `" in text
    for row in ("generator", "target", "p50", "p95", "p99", "mean", "error rate", "throughput"):
        assert f"| {row} |" in text, row
    assert "| SLO `p95(latency) < 1s` | pass" in text and "(baseline)" in text
    assert re.search(r"\| 3 \| p50\(latency\) \| all \|", text), text  # the slowdown is run 3's
    assert 'id="plot-percentiles"' in html and 'id="plot-cdf"' in html
    # the stored baseline in place of run 1: the same matrix, from histograms
    code = main(["compare", str(root / "baselines" / "gate-demo"), str(root / "same"), str(root / "slow")])
    assert code == 1 and "HDR histograms" in capsys.readouterr().out


@pytest.mark.engine
def test_trend_over_three_runs_opens_in_headless_chromium(runs: dict, tmp_path: Path) -> None:
    root = runs["root"]
    browser = chromium()
    page = tmp_path / "trend.html"
    inputs = [str(root / "baselines" / "gate-demo"), str(root / "same"), str(root / "slow")]
    assert main(["trend", *inputs, "-o", str(page)]) == 0
    dom, console = open_in_chromium(page, tmp_path)
    assert console == [], f"console messages from {browser}: {console}"
    assert 'class="main-svg"' in dom.split('id="plot-trend"', 1)[1]
    assert dom.count("<tr><td>") == 3  # one row per run, oldest first


@pytest.mark.engine
def test_run_json_records_the_generator_hardware_and_the_embedded_target_is_the_same_host(runs: dict) -> None:
    meta = json.loads((runs["root"] / "base" / "run.json").read_text())
    generator = meta["hardware"]["generator"]
    assert generator["cpu_threads"] >= 1 and generator["memory_bytes"] > 0 and generator["source"] == "probe"
    if not generator["gpus"]:  # no GPU here: said so, never guessed
        assert any(m.startswith("gpus:") for m in generator["missing"])
    assert meta["hardware"]["target"] is None  # an external loopback target with no dcgm or node endpoint
    embedded = with_target(probe_hardware(), runs["root"], embedded=True)
    assert (
        embedded is not None and embedded.target is not None and embedded.target.source.startswith("embedded")
    )


# --- no engine: the rows that need no run --------------------------------------------------------------

# dcgm-exporter's exposition (github.com/NVIDIA/dcgm-exporter, README "Quickstart" sample output), as
# scenariokit's monitor stores it: `name{labels sorted}` -> value; written by us.
DCGM_SAMPLE = {
    'DCGM_FI_DEV_GPU_UTIL{DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="gpu-node-1",UUID="GPU-aaa",'
    'device="nvidia0",gpu="0",modelName="NVIDIA H100 80GB HBM3"}': 71.0,
    'DCGM_FI_DEV_FB_USED{DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="gpu-node-1",UUID="GPU-aaa",'
    'device="nvidia0",gpu="0",modelName="NVIDIA H100 80GB HBM3"}': 60000.0,
    'DCGM_FI_DEV_FB_FREE{DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="gpu-node-1",UUID="GPU-aaa",'
    'device="nvidia0",gpu="0",modelName="NVIDIA H100 80GB HBM3"}': 21559.0,
    'DCGM_FI_DEV_GPU_UTIL{Hostname="gpu-node-1",UUID="GPU-bbb",device="nvidia1",gpu="1",'
    'modelName="NVIDIA H100 80GB HBM3"}': 12.0,
}
# node_exporter's cpu collector with --collector.cpu.info and the meminfo collector (node_exporter README)
NODE_SAMPLE = {
    'node_cpu_info{cachesize="512 KB",core="0",cpu="0",family="25",model="1",'
    'model_name="AMD EPYC 7763 64-Core Processor",package="0",stepping="1",vendor="AuthenticAMD"}': 1.0,
    'node_cpu_info{cachesize="512 KB",core="1",cpu="1",family="25",model="1",'
    'model_name="AMD EPYC 7763 64-Core Processor",package="0",stepping="1",vendor="AuthenticAMD"}': 1.0,
    "node_memory_MemTotal_bytes": 540_000_000_000.0,
}


def write_scrapes(monitor: Path, entries: dict[str, tuple[str, dict[str, float]]]) -> None:
    (monitor / "targets").mkdir(parents=True)
    listing = [{"name": n, "url": f"http://x/{n}", "role": role} for n, (role, _) in entries.items()]
    (monitor / "targets.json").write_text(json.dumps(listing))
    for name, (_, metrics) in entries.items():
        lines = [
            {"t": 1.0, "scrape": "refused", "metrics": {}},
            {"t": 2.0, "scrape": "ok", "metrics": metrics},
        ]
        (monitor / "targets" / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_the_targets_hardware_comes_from_its_dcgm_labels_and_node_exporter(tmp_path: Path) -> None:
    write_scrapes(tmp_path, {"gpus": ("dcgm", DCGM_SAMPLE), "host": ("node", NODE_SAMPLE)})
    target = target_from_scrapes(tmp_path)
    assert target is not None and target.source == "dcgm+node"
    assert [(g.index, g.name, g.uuid) for g in target.gpus] == [
        (0, "NVIDIA H100 80GB HBM3", "GPU-aaa"),
        (1, "NVIDIA H100 80GB HBM3", "GPU-bbb"),
    ]
    assert target.gpus[0].memory_bytes == 81559 * 2**20 and target.gpus[1].memory_bytes is None
    assert (target.gpu_driver, target.hostname) == ("550.54.15", "gpu-node-1")
    assert (target.cpu_model, target.cpu_threads) == ("AMD EPYC 7763 64-Core Processor", 2)
    assert target.memory_bytes == 540_000_000_000 and target.cuda_version is None
    assert "cuda_version: not in the scraped exporters" in target.missing


def test_no_scrape_of_a_dcgm_or_node_endpoint_leaves_the_target_unknown(tmp_path: Path) -> None:
    write_scrapes(tmp_path, {"app": ("process", {"process_resident_memory_bytes": 1.0})})
    assert target_from_scrapes(tmp_path) is None
    (tmp_path / "targets.json").write_text("[{]")  # damaged listing: unknown, not a crash
    assert target_from_scrapes(tmp_path) is None


def diff(metric: str, p: float, change: float) -> MetricDiff:
    return MetricDiff(metric, "all", 1.0, 1.0 + change, change, p, "t", p < 0.01, False, (1000, 1000))


def test_holm_adjusts_each_metric_over_the_comparisons_with_the_first_run() -> None:
    """Family = one metric in one scope over the N-1 comparisons: p (0.004, 0.006, 0.03) -> (0.012, 0.012,
    0.03): the second is no longer below 0.01; p95 (0.001 in one family of 3) stays below."""
    th = Thresholds()
    raw = [[diff("p50(latency)", 0.006, 0.2), diff("p95(latency)", 0.001, 0.2)],
           [diff("p50(latency)", 0.004, 0.2), diff("p95(latency)", 0.5, 0.0)],
           [diff("p50(latency)", 0.03, 0.2), diff("p95(latency)", 0.9, 0.0)]]  # fmt: skip
    adjusted = holm([Comparison("a", f"r{k}", ds, []) for k, ds in enumerate(raw)], th)
    p50 = [c.diffs[0] for c in adjusted]
    assert [d.p_value for d in p50] == pytest.approx([0.012, 0.012, 0.03])
    assert [d.regression for d in p50] == [False, False, False]
    assert adjusted[0].diffs[1].p_value == pytest.approx(0.003) and adjusted[0].diffs[1].regression
    single = holm([Comparison("a", "b", raw[0], [])], th)  # two runs: one test per family, unchanged
    assert [d.p_value for d in single[0].diffs] == [0.006, 0.001]


@pytest.mark.parametrize("name", ["../escape", "..", "a/b", ".hidden", "x" * 200, "semi;colon", ""])
def test_a_scenario_name_that_is_not_a_plain_folder_name_is_refused(tmp_path: Path, name: str) -> None:
    run = tmp_path / "run"
    make_run(run)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(meta | {"scenario_name": name}))
    assert main(["baseline", "save", str(run), "--dir", str(tmp_path / "baselines")]) == 2
    assert not (tmp_path / "baselines").exists() and not (tmp_path / "escape").exists()


def test_a_linked_scenario_folder_is_not_written_through(tmp_path: Path) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside"
    make_run(run)
    outside.mkdir()
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "demo").symlink_to(outside)
    assert main(["baseline", "save", str(run), "--dir", str(tmp_path / "baselines")]) == 2
    assert list(outside.iterdir()) == []


def test_a_corrupt_run_folder_is_a_run_error_and_a_missing_one_invalid(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_run(run)
    part = sorted((run / "records").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])  # cut short: no footer
    assert main(["baseline", "save", str(run), "--dir", str(tmp_path / "b")]) == 3
    assert main(["baseline", "save", str(tmp_path / "nothing"), "--dir", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()


def saved(tmp_path: Path) -> tuple[Path, dict]:
    run = tmp_path / "run"
    make_run(run)
    assert main(["baseline", "save", str(run), "--dir", str(tmp_path / "b")]) == 0
    path = tmp_path / "b" / "demo" / "baseline.json"
    return path, json.loads(path.read_text())


def packed(values: list[int], raw: bytes | None = None) -> str:
    data = raw if raw is not None else b"".join(v.to_bytes(8, "little") for v in values)
    return base64.b64encode(zlib.compress(data)).decode()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["scopes"]["all"]["latency"].update(buckets=packed([99_999, 5])), "off the grid"),
        (lambda d: d["scopes"]["all"]["latency"].update(buckets=packed([1, 2])), "add up"),
        (lambda d: d["scopes"]["all"]["latency"].update(buckets=packed([], b"\0" * 50_000_000)), "longer"),
        (lambda d: d["scopes"]["all"]["latency"].update(buckets="***"), "decode"),
        (lambda d: d["seconds"].update(ok=packed([1, 2, 3])), "differ in length"),
        (lambda d: d.update(kind="something-else"), "kind"),
        (lambda d: d.pop("scopes"), "scopes"),
    ],
)
def test_a_hostile_baseline_file_is_refused_without_blowing_up(
    tmp_path: Path, edit: Callable[[dict], object], message: str
) -> None:
    path, document = saved(tmp_path)
    edit(document)
    path.write_text(json.dumps(document))
    with pytest.raises(BadBaseline, match=message):
        read_digest(path)
    assert main(["compare", str(path), str(tmp_path / "run")]) == 3


def test_a_huge_run_gives_a_bounded_baseline(tmp_path: Path) -> None:
    """Three days of requests under 500 names: the per-second counts go into 3-second steps (a day of
    steps at most) and only MAX_SCOPES names keep their own histograms."""
    run = tmp_path / "run"
    make_run(run)
    meta = json.loads((run / "run.json").read_text())
    start = meta["engine_started_unix"]
    span = 3 * 86_400
    store = RecordStore(run)
    for chunk in range(10):
        records = [
            RequestRecord(start + (chunk * 10_000 + i) * span / 100_000, f"name-{i % 500}", "ramp", 200, True,
                          None, 0.001 * (1 + i % 997))
            for i in range(10_000)
        ]  # fmt: skip
        store.append(records)
        store.flush()
    store.close()
    assert main(["baseline", "save", str(run), "--dir", str(tmp_path / "b")]) == 0
    path = tmp_path / "b" / "demo" / "baseline.json"
    assert path.stat().st_size < 1024 * 1024, path.stat().st_size
    digest = read_digest(path)
    assert len(digest.scopes) == MAX_SCOPES + 1 and digest.scopes_left_out > 0
    assert digest.scopes["all"].requests == 100_400 and digest.seconds.width_s == math.ceil(span / 86_400)
    ok, _ = digest.seconds.arrays()
    assert int(ok.sum()) == 100_000 + 384 and len(ok) <= 86_400


@pytest.mark.engine  # refused before the engine starts, but it is `scenariokit run`
def test_run_baseline_without_a_stored_baseline_is_refused_before_any_load(tmp_path: Path) -> None:
    scenario = tmp_path / "gate-demo.yaml"
    with LoopbackServer() as server:
        scenario.write_text(SCENARIO.format(url=server.url))
        code = main(
            ["run", str(scenario), "--out", str(tmp_path / "r"), "--baseline", str(tmp_path / "none")]
        )
        assert code == 2 and server.total() == 0


def test_a_digest_round_trips_through_its_file(tmp_path: Path) -> None:
    path, _ = saved(tmp_path)
    stored, fresh = read_digest(path), digest_run(tmp_path / "run")
    assert isinstance(stored, Digest) and stored.model_dump() == fresh.model_dump()
    assert stored.scopes["all"].latency is not None
    assert stored.scopes["all"].latency.percentile(95) == pytest.approx(0.4)


def rec(latency: float, name: str = "a") -> RequestRecord:
    return RequestRecord(0.0, name, "", 200, True, None, latency)


def test_a_percentile_with_too_few_samples_beyond_it_is_never_flagged() -> None:
    """Found on a real smoke run gated on a baseline with one ok `read-card` request: every resample of a
    one-sample base is that sample, so the bootstrap read p = 0.001 against any slower run."""
    base, slower = [rec(5.3)], [rec(7.1 + i / 100) for i in range(12)]
    diffs = {d.metric: d for d in latency_diffs("read-card", base, slower, Thresholds())}
    assert diffs["p50(latency)"].p_value < 0.01 and not diffs["p50(latency)"].regression
    assert "fewer than 5 samples beyond" in diffs["p50(latency)"].test
    enough = latency_diffs("all", [rec(0.1 + i / 1e4) for i in range(100)], [rec(0.2)] * 100, Thresholds())
    assert [d.metric for d in enough if d.regression] == ["p50(latency)", "p95(latency)"]  # p99 needs 500


def test_the_pages_escape_what_run_json_says(tmp_path: Path) -> None:
    """A run.json's scenario name, commit and the folder's path reach the pages as text, never markup."""
    good, bad = tmp_path / "good", tmp_path / "<i>bad</i>"
    make_run(good)
    make_run(bad)
    meta = json.loads((bad / "run.json").read_text())
    hostile = {"scenario_name": "<b>x</b>", "git_commit": "<img src=x onerror=alert(1)>"}
    (bad / "run.json").write_text(json.dumps(meta | hostile))
    assert main(["trend", str(good), str(bad), "-o", str(tmp_path / "t.html")]) == 0
    main(["compare", str(good), str(bad), "-o", str(tmp_path / "c.html")])
    for page in ("t.html", "c.html"):
        html = (tmp_path / page).read_text()
        assert "<b>x</b>" not in html and "<i>bad</i>" not in html and "<img src" not in html, page
        assert "&lt;i&gt;bad&lt;/i&gt;" in html, page
