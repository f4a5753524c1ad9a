"""`scenariokit plan`: what a scenario will do, computed from the IR without sending a request."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from scenariokit.compile.expr import format_duration
from scenariokit.compile.ir import Scenario

SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Plan:
    duration_s: float
    peak: float
    unit: str
    expected_requests: dict[str, float]
    # Open model: users an arrival rate needs by Little's law, and what the engines will be given.
    users_needed_at_peak: float
    pre_allocated_users: int
    max_users: int
    sparkline: str
    requests_per_pick: float = 1.0  # a flow's pick sends its steps


def make_plan(scenario: Scenario, width: int = 60) -> Plan:
    load = scenario.load
    mix = scenario.mix
    weight_sum = sum(t.weight for t in mix) or 1.0
    # a pick of the mix sends every step of its task (a flow's steps one after the other), then thinks
    steps_per_pick = sum(t.weight * len(t.steps) for t in mix) / weight_sum
    per_pick_s = steps_per_pick * load.expected_latency_s + load.think_time.mean_s
    if load.model == "open":
        picks = load.level_integral()  # one arrival runs one task
        needed = load.peak * load.expected_latency_s * steps_per_pick  # as lower sizes the pool
    else:
        picks = load.level_integral() / per_pick_s if per_pick_s > 0 else math.inf
        needed = load.peak
    # each request is sent once per pick of its task (r.weight is its task's weight)
    expected = {r.name: picks * r.weight / weight_sum for r in scenario.requests}
    return Plan(
        duration_s=load.duration_s,
        peak=load.peak,
        unit="requests/s" if load.model == "open" else "users",
        expected_requests=expected,
        users_needed_at_peak=needed,
        pre_allocated_users=load.pre_allocated_users,
        max_users=load.max_users,
        sparkline=sparkline(scenario, width),
        requests_per_pick=steps_per_pick,
    )


def sparkline(scenario: Scenario, width: int = 60) -> str:
    load = scenario.load
    if load.duration_s <= 0 or load.peak <= 0:
        return SPARK[0] * min(width, 1)
    samples = [load.level_at(load.duration_s * (i + 0.5) / width) for i in range(width)]
    return "".join(SPARK[min(len(SPARK) - 1, int(v / load.peak * (len(SPARK) - 1) + 0.5))] for v in samples)


def render_plan(scenario: Scenario, console: Console) -> None:
    plan = make_plan(scenario)
    load = scenario.load
    console.print(
        f"[bold]{scenario.name}[/] — {load.model} model, engine {scenario.engine}, "
        f"target {scenario.target.kind} at {scenario.target.base_url}"
    )
    console.print(
        f"  {plan.sparkline}  peak {plan.peak:g} {plan.unit}, {format_duration(plan.duration_s)} total"
    )
    table = Table("#", "stage", "kind", "from", "to", "duration", "window", title="load curve")
    for i, (stage, start, end) in enumerate(load.stage_windows(), 1):
        table.add_row(
            str(i),
            stage.label,
            stage.kind,
            f"{stage.start:g}",
            f"{stage.end:g}",
            format_duration(stage.duration_s),
            f"{format_duration(start)}–{format_duration(end)}",
        )
    console.print(table)
    if load.model == "open":
        steps = f" x {plan.requests_per_pick:.3g} requests an arrival" if plan.requests_per_pick != 1 else ""
        console.print(
            f"  Little's law: {plan.peak:g}/s x {format_duration(load.expected_latency_s)} expected "
            f"latency{steps} = {plan.users_needed_at_peak:.1f} users busy at peak"
        )
        console.print(
            f"  k6 ramping-arrival-rate: preAllocatedVUs={plan.pre_allocated_users}, maxVUs={plan.max_users}"
        )
    else:
        n = plan.requests_per_pick  # a flow's steps go back to back, think time after the last
        per_user = n / (n * load.expected_latency_s + load.think_time.mean_s)
        console.print(
            f"  each user sends about {per_user:.2f} requests/s (expected latency "
            f"{format_duration(load.expected_latency_s)} + mean think "
            f"{format_duration(load.think_time.mean_s)})"
        )
    requests = Table("request", "weight", "expected requests", title="request mix")
    for r in scenario.requests:
        requests.add_row(r.name, f"{r.weight:g}", f"{plan.expected_requests[r.name]:,.0f}")
    console.print(requests)
    if scenario.faults:
        console.print(fault_table(scenario))
    if scenario.slos:
        console.print("  SLOs: " + "; ".join(s.text for s in scenario.slos))


def fault_table(scenario: Scenario) -> Table:
    """The fault schedule as the runner will carry it out: planned starts from the run's start."""
    table = Table("fault", "kind", "starts at", "lasts", "parameters", title="faults")
    for fault in scenario.faults:
        starts = ", ".join(format_duration(t) for t in fault.times[:8])
        starts += f", … ({len(fault.times)} in all)" if len(fault.times) > 8 else ""
        params = ", ".join(f"{k}={_param(v)}" for k, v in fault.params.items())
        table.add_row(fault.name, fault.kind, starts, format_duration(fault.duration_s), params)
    return table


def _param(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + " ".join(value) + "]" if value else "-"
    return f"{value:g}" if isinstance(value, float) else str(value)
