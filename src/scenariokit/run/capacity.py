"""`scenariokit plan FILE --capacity`: the generators a scenario's peak needs, from this machine's
calibration (run/calibrate.py), per engine.

The peak's rate is the plan's: a closed model's users each send n requests per (n x expected latency + mean
think time), n the steps of a pick; an open model's rate is its peak arrivals times n. Cores are that rate
over the engine's requests per core-second, kept below the generator-health limit (SATURATED_CPU: a plan
that fills every core would be judged a saturated generator). Memory is each instance's base plus every
user's cost. Machines are of this machine's size (or `--machine-cores` / `--machine-memory`), each used
up to MEMORY_SHARE of its memory; the resource that needs more machines binds.

How the engines spread: a Locust process uses one core, so Locust needs one worker process per core
(`--processes` on one machine, `scenariokit worker` on the others, one master); a k6 instance uses every
core of its machine, so k6 needs one instance per machine (execution segments; a k6-operator TestRun's
`parallelism`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scenariokit.compile.ir import Scenario
from scenariokit.compile.plan import make_plan
from scenariokit.engines import get_engine
from scenariokit.results.health import SATURATED_CPU
from scenariokit.run.calibrate import Calibration, EngineCost

MEMORY_SHARE = 0.8  # of a machine's memory the generator may use: the OS, the runner and the page cache


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_bytes: int


@dataclass(frozen=True)
class EngineLayout:
    engine: str
    rate: float  # requests/s at the peak
    users: float  # users held in memory at the peak
    cores: float  # generator cores needed (at SATURATED_CPU)
    memory_bytes: float  # every instance's base and every user
    machines: int
    workers: int  # Locust worker processes, or k6 instances
    per_machine_workers: int
    binds: str  # "cpu" or "memory"
    machines_for_cpu: int
    machines_for_memory: int
    unit: str  # what a worker is: "worker processes" (one core each) or "instances" (one a machine)


@dataclass(frozen=True)
class CapacityPlan:
    rate: float
    users: float
    machine: Machine
    layouts: tuple[EngineLayout, ...]


def peak_rate_and_users(scenario: Scenario) -> tuple[float, float]:
    """(requests/s, users in memory) at the scenario's peak."""
    plan = make_plan(scenario)
    load = scenario.load
    n = plan.requests_per_pick
    if load.model == "open":
        # k6 starts its pre-allocated users up front: they are held whether busy or not
        return load.peak * n, max(plan.users_needed_at_peak, float(load.pre_allocated_users))
    per_pick = n * load.expected_latency_s + load.think_time.mean_s
    rate = load.peak * n / per_pick if per_pick > 0 else math.inf
    return rate, float(load.peak)


def capacity_plan(scenario: Scenario, calibration: Calibration, machine: Machine) -> CapacityPlan:
    rate, users = peak_rate_and_users(scenario)
    layouts = tuple(
        layout(name, cost, rate, users, machine) for name, cost in sorted(calibration.engines.items())
    )
    return CapacityPlan(rate, users, machine, layouts)


def layout(engine: str, cost: EngineCost, rate: float, users: float, machine: Machine) -> EngineLayout:
    cores = rate / (cost.requests_per_core_s * SATURATED_CPU)
    usable = machine.memory_bytes * MEMORY_SHARE
    per_core_process = not get_engine(engine).capabilities.uses_every_core
    machines_cpu = max(1, math.ceil(cores / machine.cores))
    if per_core_process:
        # one process per core used: its base is paid once per worker
        workers = max(1, math.ceil(cores))
        memory = workers * cost.memory_base_bytes + users * cost.memory_per_user_bytes
        machines_mem = max(1, math.ceil(memory / usable))
        machines = max(machines_cpu, machines_mem)
        per_machine = math.ceil(workers / machines)
        workers = max(workers, machines)  # every machine runs at least one worker
    else:
        # one instance per machine: each holds its share of the users besides its base
        room = usable - cost.memory_base_bytes
        machines_mem = max(1, math.ceil(users * cost.memory_per_user_bytes / room)) if room > 0 else 10**9
        machines = max(machines_cpu, machines_mem)
        workers, per_machine = machines, 1
        memory = machines * cost.memory_base_bytes + users * cost.memory_per_user_bytes
    binds = "memory" if machines_mem > machines_cpu else "cpu"
    unit = "worker processes" if per_core_process else "instances"
    return EngineLayout(
        engine,
        rate,
        users,
        cores,
        memory,
        machines,
        workers,
        per_machine,
        binds,
        machines_cpu,
        machines_mem,
        unit,
    )


def render_capacity(plan: CapacityPlan) -> list[str]:
    """The plan as lines of text (no markup)."""
    m = plan.machine
    lines = [
        f"capacity at the peak: {plan.rate:,.0f} requests/s from {plan.users:,.0f} users; machines of "
        f"{m.cores} cores and {_gib(m.memory_bytes)} (up to {MEMORY_SHARE:.0%} of it used, cores up to "
        f"{SATURATED_CPU:.0%})"
    ]
    for lay in plan.layouts:
        lines.append(
            f"  {lay.engine}: {lay.cores:,.1f} cores, {_gib(lay.memory_bytes)} -> {lay.machines:,} machine"
            f"{'s' if lay.machines != 1 else ''}, {lay.workers:,} {lay.unit} "
            f"({lay.per_machine_workers:,} a machine); {lay.binds} binds "
            f"(cpu needs {lay.machines_for_cpu:,}, memory {lay.machines_for_memory:,})"
        )
    return lines


def _gib(value: float) -> str:
    return f"{value / 2**30:,.1f} GiB"
