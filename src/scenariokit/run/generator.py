"""The load generator's own CPU, sampled once a second over every process that generates load.

A saturated generator measures itself, so the run keeps what each engine process used: the engine's leader
(which leads its own process group), everything in that group, and everything under it in the process tree
(`run --processes N` forks Locust's workers from its master). When the runner started the target itself (the
embedded server), its process group and tree (the server and its model workers, which restart) are sampled the
same way, and a target the supervisor restarts is followed to its new pid: on one host the target's CPU is
what a pegged host's split names. What is written to `generator.json` is read
back and judged by `results/health.py` (docs/results-format.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psutil

from scenariokit.processes import group_members
from scenariokit.results.health import SATURATED_CPU, SATURATED_FOR_S, generator_facts
from scenariokit.run.connections import open_connections

MAX_PROCESSES_KEPT = 16  # per sample, the busiest; the count of processes is kept whole


class ProcessCpu:
    """CPU per process of the engine's group and tree, in shares of one core (1.0 = one core busy).

    psutil measures `cpu_percent(None)` since the previous call *on the same object*; a new object's first
    call has nothing to compare with and reads 0.0. So the objects are kept per pid across polls: a
    process seen for the first time is primed and counted from its second reading, one that is gone is
    dropped, and a pid reused by another process (psutil compares pid and start time) starts afresh.
    """

    def __init__(self, leader_pid: int) -> None:
        self.leader_pid = leader_pid
        self._known: dict[int, psutil.Process] = {}
        self.count = 0  # processes found at the last reading, counted or not yet

    @property
    def tracked(self) -> set[int]:
        """The pids whose psutil objects are kept (primed or counted)."""
        return set(self._known)

    def members(self) -> dict[int, psutil.Process]:
        tree: list[psutil.Process] = []
        with suppress(psutil.Error):
            leader = psutil.Process(self.leader_pid)
            tree = [leader, *leader.children(recursive=True)]
        found = {p.pid: p for p in tree if _alive(p)}
        for member in group_members(self.leader_pid):  # the engine leads its group (start_new_session)
            found.setdefault(member.pid, member)
        return found

    def read(self) -> dict[int, float]:
        """pid -> share of one core since the previous reading, for the processes read before."""
        current = self.members()
        self.count = len(current)
        shares: dict[int, float] = {}
        for pid, fresh in current.items():
            known = self._known.get(pid)
            if known is None or known != fresh:  # new, or the pid now names another process
                self._known[pid] = fresh
                with suppress(psutil.Error):
                    fresh.cpu_percent(None)  # primes its counters; this first figure means nothing
                continue
            with suppress(psutil.Error):
                shares[pid] = known.cpu_percent(None) / 100.0
        for pid in set(self._known) - set(current):  # exited: a zombie or gone
            del self._known[pid]
        return shares


def _alive(process: psutil.Process) -> bool:
    """A zombie has exited: where PID 1 does not reap orphans it stays in the table, using nothing."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class GeneratorHealth:
    """The samples of one run and what `generator.json` says of them."""

    leader_pid: int
    capacity_cores: int  # the cores the engine's processes may use (Engine.cpu_capacity)
    one_core_each: bool  # each process is single-threaded (not Capabilities.uses_every_core)
    host_cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    samples: list[dict[str, Any]] = field(default_factory=list)

    # the embedded target's server pid now (the supervisor's: a restart changes it); None for an external one
    target_pid_now: Callable[[], int | None] | None = field(default=None, repr=False, compare=False)
    target_pids: list[int] = field(default_factory=list)  # each pid the target had, in order
    # the target's address and port as /proc/net/tcp writes them (run/connections.py); empty: not counted
    target_endpoints: frozenset[str] = frozenset()
    # Locust workers on other machines (run --master), as their master wrote them (engines/records.py):
    # id -> clock_offset_s, clock_rtt_s, samples [[t, share of one core], ...], lost_at
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(
        self,
        t: float,
        shares: dict[int, float],
        count: int,
        runner_cores: float | None = None,
        target_cores: float | None = None,
        connections: int | None = None,
    ) -> None:
        cores = sum(shares.values())
        busiest = sorted(shares.items(), key=lambda item: -item[1])[:MAX_PROCESSES_KEPT]
        sample = {
            "t": t,
            "share": cores / self.capacity_cores,
            "cores": cores,
            "count": count,
            "processes": {str(pid): round(share, 4) for pid, share in busiest},
            "runner_cores": runner_cores,  # this process: the poll loop, the store, the monitor
        }
        if target_cores is not None:  # absent, not null, for a target the runner did not start
            sample["target_cores"] = round(target_cores, 4)
        if connections is not None:  # absent where the OS does not list them (not Linux)
            sample["connections"] = connections
        self.samples.append(sample)

    def as_dict(self) -> dict[str, Any]:
        raw = {
            "format": 3,
            "leader_pid": self.leader_pid,
            "target_pid": self.target_pids[0] if self.target_pids else None,
            "target_pids": self.target_pids,
            "capacity_cores": self.capacity_cores,
            "host_cores": self.host_cores,
            "process_core_limit": 1.0 if self.one_core_each else None,
            "threshold": SATURATED_CPU,
            "saturated_for_s": SATURATED_FOR_S,
            "samples": self.samples,
        }
        if self.workers:  # absent for a run on one machine
            raw["workers"] = self.workers
        return generator_facts(raw) | raw


def every_worker_lost(workers: dict[str, dict[str, Any]]) -> str:
    """The workers' ids when every one of them was lost (none was left to carry the load), else ''."""
    lost = [worker for worker, facts in workers.items() if facts.get("lost_at") is not None]
    return ", ".join(sorted(lost)) if workers and len(lost) == len(workers) else ""


def embedded_target(supervisor: Any) -> Callable[[], int | None] | None:
    """Where the sampler reads the embedded target's pid now (run/target.py's supervisor: a restart gives it
    a new one); None without a target the runner started, and for a target started by a command, whose
    work may run outside its process tree (a container)."""
    if supervisor is None or not getattr(supervisor, "embedded", False):
        return None
    return lambda: supervisor.pid


class GeneratorSampler:
    """Samples the generator once a second from the runner's poll loop."""

    def __init__(self, health: GeneratorHealth, every_s: float = 1.0) -> None:
        self.health = health
        self.cpu = ProcessCpu(health.leader_pid)
        self.every_s = every_s
        self._last: float | None = None
        # the runner shares the host with the engine: its own CPU tells who else took the cores
        self._runner = psutil.Process()
        # the embedded target too (its group and tree, like the engine's: workers that restart are new pids)
        self.target: ProcessCpu | None = None

    def poll(self, now_monotonic: float, now_unix: float) -> None:
        if self._last is None:  # the first reading primes every process found so far
            self.cpu.read()
            self._runner.cpu_percent(None)
            self._target_cores()
            self._last = now_monotonic
            return
        if now_monotonic - self._last >= self.every_s:
            shares = self.cpu.read()
            runner = self._runner.cpu_percent(None) / 100.0
            # the engine's processes just read: their sockets open to the target now
            connections = open_connections(self.cpu.tracked, self.health.target_endpoints)
            self.health.add(now_unix, shares, self.cpu.count, runner, self._target_cores(), connections)
            self._last = now_monotonic

    def _target_cores(self) -> float | None:
        """The target's processes' cores since the previous reading; None for a target the runner did not
        start. A restarted target is a new leader: read afresh (its first reading primes it, and is 0)."""
        if self.health.target_pid_now is None:
            return None
        pid = self.health.target_pid_now()
        if pid is None:  # stopped by the supervisor (a chaos kill) and not started again yet
            self.target = None
            return 0.0
        if self.target is None or self.target.leader_pid != pid:
            self.target = ProcessCpu(pid)
            self.health.target_pids.append(pid)
        return sum(self.target.read().values())
