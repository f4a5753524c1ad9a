"""SLOs about faults and the guide's requirement table: `during`/`after` fault windows, recovery_time,
success_rate, goodput and max(throughput), judged alike by the streaming tracker and the records path,
from the SLO text to summary.json, summary.md and the report's fault bands."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.expr import ExprError, parse_slo
from scenariokit.compile.ir import Slo, Stage
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.records import RequestRecord
from scenariokit.results.faults import FaultEvent, append_fault_event
from scenariokit.results.metrics import TIME_METRIC_VALUES, RunData, timeline, window_intervals
from scenariokit.results.recovery import Occurrence, RecoveryPolicy, occurrences, recovery_of
from scenariokit.results.runfolder import RunFolder
from scenariokit.results.slo import facts_of, judge
from scenariokit.results.tracker import MAX_PENDING, SloTracker
from tests.test_summary import make_run

T0 = 1_700_000_000.0
STAGES = (Stage("ramp", "warmup", 10.0, 0, 10), Stage("hold", "steady", 50.0, 10, 10))
END = T0 + 60


def occurrence(name: str, start: float, end: float, index: int = 0) -> Occurrence:
    return Occurrence(name, "kill-target", index, start, end, None, False, RecoveryPolicy())


# --- the grammar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "statistic", "window", "subject"),
    [
        ("p95(latency) < 1s during kill", "latency", "p95", ("kill", False, None), None),
        ("error_rate < 1% after kill", "error_rate", None, ("kill", True, None), None),
        ("error_rate < 1% after kill for 30s", "error_rate", None, ("kill", True, 30.0), None),
        ("error_rate < 1% for a after kill for 1m for", None, None, None, None),  # `for` with nothing
        ("recovery_time(kill) < 10s", "recovery_time", None, None, "kill"),
        ("max(throughput) >= 5000/s", "throughput", "max", None, None),
        ("mean(latency) <= 300ms", "latency", "mean", None, None),
        ("success_rate > 99.5%", "success_rate", None, None, None),
        ("goodput >= 40/s for a during steady", "goodput", None, ("steady", False, None), None),
    ],
)
def test_the_new_forms_parse(
    text: str, metric: str | None, statistic: str | None, window: tuple | None, subject: str | None
) -> None:
    if metric is None:
        with pytest.raises(ExprError):
            parse_slo(text)
        return
    slo = parse_slo(text)
    assert (slo.metric, slo.statistic, slo.subject) == (metric, statistic, subject)
    got = None if slo.window is None else (slo.window.stage, slo.window.after, slo.window.length_s)
    assert got == window


HOSTILE = [
    ("error_rate < 1% after", "`after` needs a stage or fault name", 21),
    ("error_rate < 1% after kill for -3s", "`-3s` is negative", 31),
    ("error_rate < 1% after kill for 0s", "a window lasts more than 0 s", 31),
    ("error_rate < 1% after kill for 5", "needs a unit", 31),
    ("error_rate < 1% for 30s", "a length bounds an `after` window", 16),
    ("error_rate < 1% during kill after kill", "a window is given twice", 28),
    ("recovery_time(kill) < 10s during steady", "recovery_time is measured over all requests", 26),
    ("recovery_time < 10s", "recovery_time needs the fault", 0),
    ("recovery_time(kill) < 10", "recovery_time is a time", 22),
    ("recovery_time(kill) < 10%", "recovery_time is a time", 22),
    ("success_rate > 5/s", "success_rate is a fraction, not a rate", 15),
    ("goodput >= 40%", "goodput is a rate", 11),
    ("p95(throughput) > 1/s", "throughput takes no statistic", 0),
    ("max(throughput) >= 1e999/s", "unknown unit", 19),
    ("error_rate < 1% after kill\r\nfor 3s", None, None),  # CR/LF is blank space: it still parses
    ("error_rate < 1% after ki\rll", "out of place", 25),
]


@pytest.mark.parametrize(("text", "message", "column"), HOSTILE, ids=[row[0] for row in HOSTILE])
def test_hostile_slos_are_refused_at_their_token(text: str, message: str | None, column: int | None) -> None:
    if message is None:
        assert parse_slo(text).window is not None
        return
    with pytest.raises(ExprError) as caught:
        parse_slo(text)
    assert message in caught.value.diagnostic.message, caught.value.diagnostic.message
    assert caught.value.diagnostic.span.column == column  # the offset in the text (no file)


def test_huge_lengths_are_finite_and_clip_at_the_run() -> None:
    slo = parse_slo("error_rate < 1% after kill for 99999999999999999999h")
    assert slo.window is not None and math.isfinite(slo.window.length_s or math.inf)
    data = RunData([], T0, END, STAGES, occurrences=[occurrence("kill", 10.0, 12.0)])
    assert data.select(window=slo.window) == ([], 48.0)  # from the fault's end to the run's


SCENARIO = """\
version: 1
name: t
target: {{kind: http, base_url: embedded}}
load:
  curve: ramp(0, 2, 10s) -> hold(50s) as steady
requests:
  a: {{path: /health}}
slo:
  - {slo}
faults:
  - {{name: kill, kind: kill-target, at: 20s, recovery: {{steady: 10s, hold: 2s, error_rate: 2%, p95: 2x}}}}
"""


def compile_with(tmp_path: Path, slo: str) -> tuple[Slo, ...]:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(slo=slo))
    compiled = load_scenario(path).scenario
    assert dict(compiled.faults[0].params)["recovery_hold_s"] == 2.0
    return compiled.slos


@pytest.mark.parametrize(
    ("slo", "message", "name"),
    [
        ("error_rate < 1% during kil", "no load stage or fault is called `kil`", "kil"),
        ("error_rate < 1% after nothing for 3s", "no load stage or fault is called `nothing`", "nothing"),
        ("recovery_time(steady) < 10s", "no fault is called `steady`", "steady"),
        ("recovery_time( kil) < 10s", "did you mean `kill`", "kil"),
    ],
)
def test_unknown_window_and_fault_names_are_positioned_errors(
    tmp_path: Path, slo: str, message: str, name: str
) -> None:
    with pytest.raises(ScenarioError) as caught:
        compile_with(tmp_path, slo)
    text = str(caught.value)
    column = 5 + slo.index(name)  # the SLO's value starts at column 5, after `  - `
    assert message in text and f"s.yaml:9:{column}:" in text, text


def test_a_fault_name_and_a_stage_label_are_one_namespace(tmp_path: Path) -> None:
    assert compile_with(tmp_path, "p95(latency) < 1s after kill for 10s")[0].window is not None
    clash = SCENARIO.format(slo="error_rate < 1%").replace("name: kill,", "name: steady,")
    path = tmp_path / "clash.yaml"
    path.write_text(clash)
    with pytest.raises(ScenarioError, match="steady"):
        load_scenario(path)


def test_a_recovery_band_out_of_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(slo="error_rate < 1%").replace("p95: 2x", "p95: 0.5x"))
    with pytest.raises(ScenarioError, match="not a factor from 1x to 100x"):
        load_scenario(path)


# --- one rule on both paths ----------------------------------------------------------------------------

FAULTS = [occurrence("kill", 20.0, 24.5), occurrence("kill", 40.0, 41.0, 1), occurrence("slow", 30.0, 35.0)]
SLOS = tuple(
    parse_slo(text)
    for text in (
        "p95(latency) < 300ms",
        "p90(latency) < 200ms for a during kill",
        "mean(latency) <= 300ms after kill",
        "error_rate < 5% after kill for 3s",
        "error_rate < 50% during slow",
        "success_rate > 90% during steady",
        "success_rate >= 50% for b after slow for 2s",
        "throughput >= 5/s during kill",
        "max(throughput) >= 3/s",
        "max(throughput) > 1/s for a during steady",
        "goodput >= 2/s",
        "goodput > 1/s for b after kill",
        "p99(latency) < 400ms for b after kill for 10s",
    )
)


def synthetic(seed: int, n: int = 1500) -> list[RequestRecord]:
    """Requests over the minute; errors and slow answers crowd into the faults' windows."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        offset = rng.uniform(-0.5, 60.5)
        faulty = any(o.start_s <= offset < o.end_s + 2 for o in FAULTS)
        ok = rng.random() > (0.6 if faulty else 0.03)
        latency = rng.uniform(0.01, 0.8 if faulty else 0.25)
        status = 200 if ok else (0 if faulty else 503)
        error = None if ok else ("connection_refused" if status == 0 else "http_503")
        out.append(RequestRecord(T0 + offset, rng.choice("ab"), "", status, ok, error, latency))
    return sorted(out, key=lambda r: r.t)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_tracker_and_the_records_path_agree_on_fault_windows(seed: int) -> None:
    records = synthetic(seed)
    data = RunData(records, T0, END, STAGES, occurrences=FAULTS)
    tracker = SloTracker(SLOS, STAGES, 0.95, "locust", origin_unix=T0, faults=data.faults)
    for i in range(0, len(records), 211):
        tracker.add(records[i : i + 211])
    for slo in SLOS:
        ours, theirs = tracker.facts(slo, END), facts_of(slo, data, 0.95, SLOS)
        assert (ours.value, ours.samples, ours.k, ours.length, ours.first_s) == (
            theirs.value,
            theirs.samples,
            theirs.k,
            theirs.length,
            theirs.first_s,
        ), slo.text
    reference = judge(SLOS, data, "locust", 0.95)
    statuses = [(v.status, v.value) for v in tracker.verdicts(END)]
    assert statuses == [(v.status, v.value) for v in reference]
    assert {v.status for v in reference} >= {"pass", "fail"}  # the rows decide both ways


def test_goodput_equals_a_brute_force_count() -> None:
    records = synthetic(3)
    data = RunData(records, T0, END, STAGES, occurrences=FAULTS)
    latency_slos = [s for s in SLOS if s.metric == "latency"]
    spans = data.faults

    def covers(slo: Slo, r: RequestRecord) -> bool:
        offset = r.t - T0
        inside = any(a <= offset < b for a, b in window_intervals(slo.window, STAGES, 60.0, spans))
        return inside and (not slo.requests or r.name in slo.requests)

    good = [
        r
        for r in records
        if r.t >= T0 and r.ok and all(slo.holds(r.latency) for slo in latency_slos if covers(slo, r))
    ]
    facts = facts_of(parse_slo("goodput >= 2/s"), data, 0.95, SLOS)
    assert facts.k == len(good) and facts.value == len(good) / 60.0
    assert 0 < len(good) < sum(r.ok for r in records)  # the latency SLOs take some ok requests out


def test_max_throughput_is_the_best_ten_seconds() -> None:
    # 2 ok/s for the first 30 s, then 9 ok/s for 12 s, then 1 ok/s
    rates = [2] * 30 + [9] * 12 + [1] * 18
    records = [
        RequestRecord(T0 + second + (k + 0.5) / rate, "a", "", 200, True, None, 0.01)
        for second, rate in enumerate(rates)
        for k in range(rate)
    ]
    data = RunData(records, T0, END, STAGES)
    verdict = judge((parse_slo("max(throughput) >= 9/s"),), data, "locust")[0]
    assert verdict.status == "pass" and verdict.value == 9.0 and "seconds 30–40" in verdict.explanation
    short = RunData(records, T0, T0 + 9.5, STAGES)
    assert judge((parse_slo("max(throughput) >= 1/s"),), short, "locust")[0].status == "inconclusive"


# --- recovery ------------------------------------------------------------------------------------------


def outage_records(outage_s: float, back_after_s: float) -> list[RequestRecord]:
    """10 requests a second for 40 s; from 15 s every request is refused for `outage_s`, then for
    `back_after_s` more seconds answers are slow, then steady again."""
    out = []
    for i in range(400):
        offset = i / 10
        down = 15 <= offset < 15 + outage_s
        slow = 15 + outage_s <= offset < 15 + outage_s + back_after_s
        ok = not down
        out.append(
            RequestRecord(
                T0 + offset, "a", "", 200 if ok else 0, ok, None if ok else "refused", 0.5 if slow else 0.02
            )
        )
    return out


def test_recovery_is_read_from_the_per_second_band() -> None:
    found = occurrence("kill", 15.0, 17.0)
    data = RunData(outage_records(2.0, 3.0), T0, T0 + 40, STAGES, occurrences=[found])
    recovery = recovery_of(found, timeline(data))
    assert recovery.steady_error_rate == 0.0 and recovery.seconds == 3.0
    assert recovery_of(found, timeline(RunData(outage_records(2.0, 0.0), T0, T0 + 40, STAGES))).seconds == 0.0


def test_a_1ms_recovery_slo_fails_and_a_generous_one_passes_on_the_same_run() -> None:
    data = RunData(
        outage_records(2.0, 3.0), T0, T0 + 40, STAGES, occurrences=[occurrence("kill", 15.0, 17.0)]
    )
    tight, generous = judge((parse_slo("recovery_time(kill) < 1ms"), parse_slo("recovery_time(kill) < 10s")),
                            data, "locust")  # fmt: skip
    assert (tight.status, generous.status) == ("fail", "pass")
    assert tight.value == generous.value == 3.0 and "observed fact per occurrence" in tight.rule


def test_never_recovered_fails_with_the_time_left() -> None:
    data = RunData(
        outage_records(30.0, 0.0), T0, T0 + 40, STAGES, occurrences=[occurrence("kill", 15.0, 17.0)]
    )
    verdict = judge((parse_slo("recovery_time(kill) < 10m"),), data, "locust")[0]
    assert verdict.status == "fail"
    assert verdict.explanation == "fail: not recovered by the end of the run (23s after the fault)"
    assert (verdict.value, verdict.low, verdict.high, verdict.margin) == (23.0, 23.0, None, None)  # at least


def test_the_worst_occurrence_decides() -> None:
    records = outage_records(2.0, 0.0)
    records += [r._replace(t=r.t + 40) for r in outage_records(2.0, 6.0)]
    found = [occurrence("kill", 15.0, 17.0), occurrence("kill", 55.0, 57.0, 1)]
    data = RunData(records, T0, T0 + 80, STAGES, occurrences=found)
    verdict = judge((parse_slo("recovery_time(kill) < 5s"),), data, "locust")[0]
    assert (
        verdict.status == "fail"
        and verdict.value == 6.0
        and "the worst of 2 occurrences: #2" in verdict.explanation
    )


# --- the live tracker: fault times known only as the run goes -------------------------------------------


def test_the_live_tracker_waits_for_a_fault_to_end_and_places_its_records() -> None:
    during = parse_slo("error_rate < 50% during kill")
    plain = parse_slo("error_rate < 50%")
    live = SloTracker((during, plain), STAGES, origin_unix=T0, faults=None)
    records = synthetic(4)
    first, rest = [r for r in records if r.t < T0 + 22], [r for r in records if r.t >= T0 + 22]
    live.known_faults({"kill": [(T0 + 20.0, math.inf)]}, T0 + 20.0)  # active since 20 s
    live.add(first)
    assert live.errors_of(plain)[1] == len([r for r in first if r.t >= T0])
    assert live.errors_of(during) == (0, 0) and live.pending  # its end is not known yet
    spans = {"kill": [(T0 + o.start_s, T0 + o.end_s) for o in FAULTS if o.name == "kill"]}
    live.known_faults(spans, END + 1)
    live.add(rest)
    after = SloTracker(
        (during, plain), STAGES, origin_unix=T0, faults=RunData([], T0, END, STAGES, [], FAULTS).faults
    )
    after.add(records)
    assert live.errors_of(during) == after.errors_of(during) and not live.pending


def test_the_live_buffer_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scenariokit.results.tracker.MAX_PENDING", 100)
    live = SloTracker((parse_slo("error_rate < 50% during kill"),), STAGES, origin_unix=T0, faults=None)
    live.add(synthetic(5, 400))
    assert len(live.pending) == 100 and live.unplaced == 300 and MAX_PENDING > 100


# --- the run folder: summary.json, summary.md --------------------------------------------------------


def test_the_fault_table_reaches_summary_json_and_markdown(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = make_run(run_dir)
    started = T0  # the engine's start: the records' clock origin
    meta = json.loads((run_dir / "run.json").read_text())
    meta["slos"] = ["error_rate < 90% during kill", "recovery_time(kill) < 30s", "p95(latency) < 2s"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    event = FaultEvent(name="kill", kind="kill-target", planned_s=5.0, start=started + 5, end=started + 7,
                       ready=started + 7.5)  # fmt: skip
    append_fault_event(run_dir, event)
    summary = RunFolder(run_dir).summary()
    (row,) = summary.faults
    inside = [r for r in records if started + 5 <= r.t < started + 7]
    assert (row.name, row.start_s, row.end_s, row.requests) == ("kill", 5.0, 7.0, len(inside))
    assert row.errors == sum(not r.ok for r in inside) and row.lost == sum(r.status == 0 for r in inside)
    assert set(row.slos) == {"error_rate < 90% during kill", "recovery_time(kill) < 30s"}
    outage = [r for r in records if started + 5 <= r.t < started + 7.5]  # the kill until ready again
    assert (row.outage_requests, row.outage_errors) == (len(outage), sum(not r.ok for r in outage))
    assert row.outage_requests > row.requests
    assert summary.goodput is not None and summary.goodput.latency_slos == ["p95(latency) < 2s"]
    from scenariokit.results.summary import markdown

    text = markdown(summary)
    assert "## Faults" in text and "| kill | kill-target | 5.0 | 7.0 |" in text and "Goodput:" in text
    assert f"{row.outage_errors:,} of {row.outage_requests:,} until ready at 7.5 s" in text
    assert occurrences([event], started)[0].ready_s == 7.5


def test_time_metric_values_cover_what_goodput_reads() -> None:
    assert {"latency", "ttfb", "ttft", "itl", "tpot"} <= set(TIME_METRIC_VALUES)


def test_the_report_shades_each_fault_on_every_time_plot(tmp_path: Path) -> None:
    from scenariokit.results.report import NOT_OVER_TIME, write_reports

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    make_run(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["slos"] = ["p95(latency) < 300ms", "error_rate < 90% after kill for 5s"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    append_fault_event(
        run_dir, FaultEvent(name="kill", kind="kill-target", planned_s=5, start=T0 + 5, end=T0 + 7)
    )
    summary = RunFolder(run_dir).summary()
    write_reports(run_dir, summary)
    html = (run_dir / "report.html").read_text()
    plots = {chunk.split('"', 2)[1]: chunk for chunk in html.split("Plotly.newPlot(")[1:]}
    over_time = [name for name in plots if name.removeprefix("plot-") not in NOT_OVER_TIME]
    assert "plot-load" in over_time and "plot-latency" in over_time
    assert all("fault: kill" in plots[name] for name in over_time), over_time
    assert "goodput\\u002fs (ok and within the latency SLOs)" in plots["plot-load"]  # plotly escapes /
    (row,) = summary.faults
    assert 'id="faults"' in html and f"{row.errors:,}" in html.split('id="faults"')[1].split("</section>")[0]


def test_the_live_timeline_is_final_only_before_the_next_planned_start(tmp_path: Path) -> None:
    from scenariokit.compile.ir import Fault
    from scenariokit.results.recovery import LIVE_SLACK_S, live_timeline

    planned = [Fault("kill", "kill-target", (5.0, 30.0), 2.0)]
    append_fault_event(
        tmp_path, FaultEvent(name="kill", kind="kill-target", planned_s=5, start=T0 + 5, end=T0 + 7)
    )
    spans, until = live_timeline(tmp_path, planned, T0, T0 + 20)
    assert spans == {"kill": [(T0 + 5, T0 + 7)]} and until == T0 + 20
    assert live_timeline(tmp_path, planned, T0, T0 + 40)[1] == T0 + 30 - LIVE_SLACK_S  # #2 may be active
    event = FaultEvent(
        name="kill", kind="kill-target", occurrence=1, planned_s=30, start=T0 + 30, end=T0 + 31
    )
    append_fault_event(tmp_path, event)
    assert live_timeline(tmp_path, planned, T0, T0 + 40) == (
        {"kill": [(T0 + 5, T0 + 7), (T0 + 30, T0 + 31)]},
        T0 + 40,
    )


def test_the_streamed_summary_judges_fault_slos_as_the_records_path(tmp_path: Path) -> None:
    from scenariokit.results.store import RecordStore
    from scenariokit.results.stream import stream_run

    records = synthetic(6, 3000)
    store = RecordStore(tmp_path)
    for i in range(0, len(records), 700):
        store.pending.extend(records[i : i + 700])
        store.flush()
    store.close()
    slos = (*SLOS, parse_slo("recovery_time(kill) < 2s"), parse_slo("recovery_time(slow) < 1m"))
    streamed = stream_run(tmp_path, slos, STAGES, "locust", T0, END, (), 0.95, None, FAULTS)
    reference = judge(slos, RunData(records, T0, END, STAGES, occurrences=FAULTS), "locust", 0.95)
    for ours, theirs in zip(streamed.verdicts, reference, strict=True):
        same = ours.rule.startswith("Student")  # a mean's spread is merged batch by batch (test_stream)
        assert (ours.status, ours.value, ours.samples, ours.k) == (
            theirs.status,
            theirs.value,
            theirs.samples,
            theirs.k,
        ), ours.slo
        assert same or ours.explanation == theirs.explanation, ours.slo
    assert {v.status for v in reference[-2:]} == {"pass", "fail"}
    inside = [r for r in records if any(o.start_s <= r.t - T0 < o.end_s for o in FAULTS[:1])]
    assert streamed.faults[0].requests == len(inside) and streamed.faults[0].lost == sum(
        r.status == 0 for r in inside
    )


def test_a_fault_name_with_a_line_break_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(slo="error_rate < 1%").replace("name: kill,", 'name: "ki\\r\\nll",'))
    with pytest.raises(ScenarioError, match="faults"):
        load_scenario(path)


def test_the_live_exporter_judges_a_fault_window_once_the_fault_has_ended(tmp_path: Path) -> None:
    from scenariokit.run.exporter import LiveExporter

    path = tmp_path / "s.yaml"
    path.write_text(
        SCENARIO.format(slo="error_rate < 50% during kill").replace("at: 20s", "at: 2s, duration: 2s")
    )
    scenario = load_scenario(path).scenario
    exporter = LiveExporter(scenario, run_dir=tmp_path)
    origin = T0
    exporter.tracker.origin_unix = origin
    failed = [RequestRecord(origin + 2 + i / 10, "a", "", 0, False, "refused", 0.01) for i in range(20)]
    exporter.tracker.add(failed)  # sent during the kill, whose end is not known yet
    assert exporter.tracker.pending and exporter.tracker.errors_of(scenario.slos[0]) == (0, 0)
    append_fault_event(
        tmp_path, FaultEvent(name="kill", kind="kill-target", planned_s=2, start=origin + 2, end=origin + 4)
    )
    exporter._next_slo = 0.0  # due now
    exporter.tick(origin)
    assert exporter.tracker.errors_of(scenario.slos[0]) == (20, 20) and not exporter.tracker.pending
    status = exporter.registry.get_sample_value(
        "scenariokit_slo_status", {"slo": "error_rate < 50% during kill"}
    )
    assert status == 0.0  # fail: every request during the kill failed


OCCURRENCES = st.lists(
    st.tuples(st.floats(0.0, 55.0, allow_nan=False), st.floats(0.0, 8.0, allow_nan=False)), max_size=4
)
ROW = st.tuples(
    st.floats(-1.0, 61.0, allow_nan=False),
    st.sampled_from("ab"),
    st.floats(0.0, 1.0, allow_nan=False),
    st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(ROW, max_size=300), OCCURRENCES, st.lists(st.integers(0, 300), max_size=5))
def test_any_fault_timeline_gives_the_same_facts_on_both_paths(
    rows: list[tuple[float, str, float, bool]], spans: list[tuple[float, float]], cuts: list[int]
) -> None:
    found = [occurrence("kill", start, start + length, i) for i, (start, length) in enumerate(sorted(spans))]
    records = [
        RequestRecord(T0 + t, name, "", 200 if ok else 0, ok, None if ok else "refused", latency)
        for t, name, latency, ok in rows
    ]
    data = RunData(records, T0, END, STAGES, occurrences=found)
    tracker = SloTracker(SLOS, STAGES, 0.95, "locust", origin_unix=T0, faults=data.faults)
    edges = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    for a, b in itertools.pairwise(edges):
        tracker.add(records[a:b])
    for slo in SLOS:
        ours, theirs = tracker.facts(slo, END), facts_of(slo, data, 0.95, SLOS)
        assert (ours.value, ours.samples, ours.k, ours.length, ours.first_s) == (
            theirs.value,
            theirs.samples,
            theirs.k,
            theirs.length,
            theirs.first_s,
        ), slo.text
