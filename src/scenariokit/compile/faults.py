"""Stage 3 for `faults:`: each fault's schedule expanded into planned start times and its parameters
lowered to SI units (`ir.Fault`), with positioned errors for what cannot be carried out.

A schedule is expanded here, once, so that `scenariokit plan` prints the times the runner will use and a
random time is the same on every run (drawn from its seed). A fault planned to start at or after the
load's end could never happen: an error. One that starts in the run and lasts past its end is a warning
(the runner lifts it when the run ends and marks it cut short).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Set

from scenariokit.compile import expr
from scenariokit.compile.diagnostics import DiagnosticBag
from scenariokit.compile.ir import Fault, FaultParam, LoadProfile
from scenariokit.compile.limits import MAX_FAULT_DELAY_S, MAX_FAULT_OCCURRENCES, MAX_RUN_S
from scenariokit.compile.model import FaultSpec, ScenarioSpec
from scenariokit.compile.parse import Path_, SourceMap

# The parameters each kind takes (model field names; `exec_` is written `exec`).
KIND_PARAMS: dict[str, tuple[str, ...]] = {
    "kill-target": ("signal", "instance", "exec_"),
    "latency": ("delay", "jitter"),
    "bandwidth": ("rate",),
    "reset": ("share",),
    "hang": ("share",),
    "drop": ("share",),
    "packet-loss": ("share", "stall"),
    "server-latency": ("delay",),
    "server-errors": ("share",),
    "stall-worker": (),
}
REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {
    "latency": ("delay",),
    "bandwidth": ("rate",),
    "reset": ("share",),
    "hang": ("share",),
    "drop": ("share",),
    "packet-loss": ("share",),
    "server-latency": ("delay",),
    "server-errors": ("share",),
}
ALL_PARAMS = frozenset(p for params in KIND_PARAMS.values() for p in params)
TIME_KEYS = ("at", "every", "random")
DEFAULT_STALL_S = 0.2
MIN_PERIOD_S = 0.1  # `every:` faster than this is not a schedule the runner can keep
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _yaml_key(field: str) -> str:
    return {"exec_": "exec", "from_": "from"}.get(field, field)


class FaultLowerer:
    """Lowers `spec.faults` against the lowered load (its length) and the stage labels (one namespace of
    window names with the faults')."""

    def __init__(self, spec: ScenarioSpec, source: SourceMap, bag: DiagnosticBag) -> None:
        self.spec = spec
        self.source = source
        self.bag = bag
        self.occurrences = 0

    def lower(self, load: LoadProfile) -> tuple[Fault, ...]:
        labels = {s.label for s in load.stages} | {s.kind for s in load.stages}
        run_s = load.duration_s
        out: list[Fault] = []
        seen: set[str] = set()
        for i, fault in enumerate(self.spec.faults):
            path: Path_ = ("faults", i)
            self._check_name(fault.name, path, labels, seen)
            seen.add(fault.name)
            times = self._times(fault, path, run_s)
            duration = self._duration(fault, path, times, run_s)
            params = {**self._params(fault, path), **self._recovery(fault, (*path, "recovery"))}
            self._check_target(fault, path)
            out.append(Fault(fault.name, fault.kind, times, duration, params, self.source.value(path)))
        return tuple(out)

    # -- names and times ---------------------------------------------------------------------------

    def _check_name(self, name: str, path: Path_, labels: Set[str], seen: Set[str]) -> None:
        span = self.source.text((*path, "name"))
        if name in seen:
            self.bag.error(
                span, f"two faults are named `{name}`", "a fault's name is its window: give each its own"
            )
        if name in labels:
            self.bag.error(
                span,
                f"`{name}` names a load stage too: stage labels and fault names are one set of window names",
                "rename the fault (e.g. `" + name + "-fault`) or label the stage with `as`",
            )

    def _seconds(self, text: str, path: Path_, default: float = 0.0) -> float:
        try:
            return float(expr.parse_duration(text, self.source.text(path)))
        except expr.ExprError as exc:
            self.bag.items.append(exc.diagnostic)
            return default

    def _times(self, fault: FaultSpec, path: Path_, run_s: float) -> tuple[float, ...]:
        given = [key for key in TIME_KEYS if getattr(fault, key) is not None]
        if len(given) != 1:
            what = "no start time" if not given else "more than one start time (" + ", ".join(given) + ")"
            self.bag.error(
                self.source.key((*path, given[1]) if len(given) > 1 else path),
                f"fault `{fault.name}` has {what}",
                "give exactly one of `at: 2m`, `every: 5m` or `random: {between: [1m, 9m], seed: 7}`",
            )
            return ()
        if fault.from_ is not None and fault.every is None:
            self.bag.error(self.source.key((*path, "from")), "`from` goes with `every`", "remove `from`")
        if fault.at is not None:
            at = self._seconds(fault.at, (*path, "at"), -1.0)
            times = (at,) if at >= 0 else ()
            self._within_run(times, (*path, "at"), run_s)
        elif fault.every is not None:
            times = self._every(fault, path, run_s)
        else:
            times = self._random(fault, path, run_s)
        self.occurrences += len(times)
        if self.occurrences > MAX_FAULT_OCCURRENCES:
            self.bag.error(
                self.source.key((*path, given[0])),
                f"the faults plan {self.occurrences} occurrences by here; a run takes at most "
                f"{MAX_FAULT_OCCURRENCES}",
                "a longer period (`every`), or fewer faults",
            )
            return ()
        return times

    def _within_run(self, times: tuple[float, ...], path: Path_, run_s: float) -> None:
        if times and times[0] >= run_s:
            self.bag.error(
                self.source.text(path),
                f"this fault would start at {times[0]:g}s, at or after the load's end ({run_s:g}s): it never "
                "happens",
                f"start it before {run_s:g}s",
            )

    def _every(self, fault: FaultSpec, path: Path_, run_s: float) -> tuple[float, ...]:
        assert fault.every is not None
        period = self._seconds(fault.every, (*path, "every"), -1.0)
        if period < 0:
            return ()
        if period < MIN_PERIOD_S:
            self.bag.error(
                self.source.text((*path, "every")), f"a period of {period:g}s is too short", "100ms at least"
            )
            return ()
        first = period if fault.from_ is None else self._seconds(fault.from_, (*path, "from"), -1.0)
        if first < 0:
            return ()
        self._within_run((first,), (*path, "from") if fault.from_ is not None else (*path, "every"), run_s)
        # the bound keeps a hostile `every: 100ms` over a week from building a huge tuple before it is refused
        count = min(
            int((run_s - first) / period - 1e-9) + 1 if first < run_s else 0, MAX_FAULT_OCCURRENCES + 1
        )
        return tuple(first + k * period for k in range(count))

    def _random(self, fault: FaultSpec, path: Path_, run_s: float) -> tuple[float, ...]:
        assert fault.random is not None
        where = (*path, "random", "between")
        low, high = (self._seconds(text, (*where, j), -1.0) for j, text in enumerate(fault.random.between))
        if low < 0 or high < 0:
            return ()
        if high < low:
            self.bag.error(
                self.source.value(where),
                f"`between` runs backwards ({low:g}s > {high:g}s)",
                "write the earlier time first",
            )
            return ()
        self._within_run((low,), (*where, 0), run_s)
        if low < run_s <= high:
            self.bag.error(
                self.source.text((*where, 1)),
                f"this fault could be drawn after the load's end ({run_s:g}s)",
                f"keep `between` within 0s and {run_s:g}s",
            )
        seed = fault.random.seed if fault.random.seed is not None else self.spec.seed
        # a string seed: the same draw on every run and Python version (random's version-2 seeding)
        return (random.Random(f"{seed}/{fault.name}").uniform(low, high),)

    def _duration(self, fault: FaultSpec, path: Path_, times: tuple[float, ...], run_s: float) -> float:
        where = (*path, "duration")
        if fault.duration is None:
            if fault.kind != "kill-target":
                self.bag.error(
                    self.source.key(path),
                    f"a `{fault.kind}` fault needs a `duration`",
                    "how long it lasts, e.g. `duration: 10s`",
                )
            return 0.0
        seconds = self._seconds(fault.duration, where, -1.0)
        if seconds < 0:
            return 0.0  # already reported
        if seconds > MAX_RUN_S:
            self.bag.error(self.source.text(where), f"a duration of {seconds:g}s is longer than any run")
        elif seconds == 0 and fault.kind != "kill-target":
            self.bag.error(self.source.text(where), "a fault of 0s does nothing", "e.g. `duration: 10s`")
        if len(times) > 1 and seconds >= times[1] - times[0]:
            self.bag.error(
                self.source.text(where),
                f"each occurrence lasts {seconds:g}s, as long as the period or longer: they would overlap",
                "a shorter `duration` or a longer `every`",
            )
        if times and times[-1] < run_s < times[-1] + seconds:
            self.bag.warning(
                self.source.text(where),
                f"fault `{fault.name}` lasts past the load's end ({run_s:g}s): it is lifted when the run "
                "ends",
                "a shorter duration, or an earlier start",
            )
        return seconds

    # -- parameters --------------------------------------------------------------------------------

    def _params(self, fault: FaultSpec, path: Path_) -> dict[str, FaultParam]:
        allowed = KIND_PARAMS[fault.kind]
        given = fault.model_fields_set & ALL_PARAMS
        for name in sorted(given - set(allowed)):
            takes = ", ".join(_yaml_key(p) for p in allowed) or "no parameters"
            self.bag.error(
                self.source.key((*path, _yaml_key(name))),
                f"`{_yaml_key(name)}` is not a parameter of `{fault.kind}` faults",
                f"`{fault.kind}` takes {takes}",
            )
        for name in REQUIRED_PARAMS.get(fault.kind, ()):
            if getattr(fault, name) is None:
                self.bag.error(
                    self.source.key(path),
                    f"a `{fault.kind}` fault needs `{name}`",
                    _EXAMPLES.get(name),
                )
        lowering: dict[str, Callable[[FaultSpec, Path_], dict[str, FaultParam]]] = {
            "kill-target": self._kill_params,
            "latency": lambda f, p: {
                "delay_s": self._delay(f.delay, (*p, "delay")),
                "jitter_s": self._delay(f.jitter, (*p, "jitter"), low=0.0),
            },
            "bandwidth": lambda f, p: {"bytes_per_s": self._byte_rate(f.rate, (*p, "rate"))},
            "packet-loss": lambda f, p: {
                "share": self._share(f.share, (*p, "share")),
                "stall_s": self._delay(f.stall, (*p, "stall"), default=DEFAULT_STALL_S),
            },
            "server-latency": lambda f, p: {"delay_s": self._delay(f.delay, (*p, "delay"))},
            "stall-worker": lambda f, p: {},
        }
        share_only = lambda f, p: {"share": self._share(f.share, (*p, "share"))}  # noqa: E731
        return lowering.get(fault.kind, share_only)(fault, path)

    def _delay(self, text: str | None, path: Path_, default: float = 0.0, low: float = 1e-3) -> float:
        if text is None:
            return default
        seconds = self._seconds(text, path, default)
        if not low <= seconds <= MAX_FAULT_DELAY_S:
            self.bag.error(
                self.source.text(path),
                f"`{path[-1]}` of {seconds:g}s is out of range",
                f"use {low * 1000:g}ms to {MAX_FAULT_DELAY_S:g}s",
            )
        return seconds

    def _recovery(self, fault: FaultSpec, path: Path_) -> dict[str, FaultParam]:
        """`recovery:` lowered to the keys results/recovery.py reads (absent: its defaults)."""
        spec = fault.recovery
        if spec is None:
            return {}
        out: dict[str, FaultParam] = {}
        for key, text, low, high in (("steady", spec.steady, 1.0, 3600.0), ("hold", spec.hold, 1.0, 600.0)):
            if text is not None:
                seconds = self._seconds(text, (*path, key))
                if not low <= seconds <= high:
                    self.bag.error(
                        self.source.text((*path, key)),
                        f"`{key}` of {seconds:g}s is out of range",
                        f"use {low:g}s to {high:g}s",
                    )
                out[f"recovery_{key}_s"] = seconds
        if spec.error_rate is not None:
            try:
                out["recovery_error_rate"] = float(
                    expr.parse_fraction(spec.error_rate, self.source.text((*path, "error_rate")))
                )
            except expr.ExprError as exc:
                self.bag.items.append(exc.diagnostic)
        if spec.p95 is not None:
            factor = re.fullmatch(r"(\d+(?:\.\d+)?)x", spec.p95.strip())
            if factor is None or not 1 <= float(factor.group(1)) <= 100:
                self.bag.error(
                    self.source.text((*path, "p95")),
                    f"`p95: {spec.p95}` is not a factor from 1x to 100x",
                    "e.g. `p95: 1.5x` (1.5 times the steady p95, plus 10 ms)",
                )
            else:
                out["recovery_p95_factor"] = float(factor.group(1))
        return out

    def _share(self, text: str | None, path: Path_) -> float:
        if text is None:
            return 0.0
        try:
            share = float(expr.parse_fraction(text, self.source.text(path)))
        except expr.ExprError as exc:
            self.bag.items.append(exc.diagnostic)
            return 0.0
        if share <= 0:
            self.bag.error(self.source.text(path), "a share of 0 does nothing", "e.g. `share: 10%`")
        return share

    def _byte_rate(self, text: str | None, path: Path_) -> float:
        if text is None:
            return 0.0
        try:
            rate = float(expr.parse_byte_rate(text, self.source.text(path)))
        except expr.ExprError as exc:
            self.bag.items.append(exc.diagnostic)
            return 0.0
        if rate < 1:
            self.bag.error(
                self.source.text(path), "a bandwidth below 1 B/s stops all traffic", "use `hang` for that"
            )
        return rate

    def _kill_params(self, fault: FaultSpec, path: Path_) -> dict[str, FaultParam]:
        argv = tuple(fault.exec_ or ())
        for j, arg in enumerate(argv):
            if (bad := _CONTROL.search(arg)) is not None:
                self.bag.error(
                    self.source.text((*path, "exec", j)),
                    f"an `exec` argument holds the control character U+{ord(bad.group()):04X}",
                    "one line per argument: a CR or LF here is a pasted mistake or an injection attempt",
                )
        return {
            "signal": fault.signal or "SIGKILL",
            "instance": fault.instance if fault.instance is not None else "random",
            "exec": argv,
        }

    # -- the target --------------------------------------------------------------------------------

    def _check_target(self, fault: FaultSpec, path: Path_) -> None:
        target = self.spec.target
        embedded = target.base_url == "embedded"
        kind_span = self.source.text((*path, "kind"))
        if fault.kind in (
            "latency",
            "bandwidth",
            "reset",
            "hang",
            "drop",
            "packet-loss",
        ) and target.base_url.startswith("https://"):
            self.bag.error(
                kind_span,
                "network faults go through the runner's TCP proxy on loopback, whose URL replaces the "
                "target's; TLS would pass through it, but the engine would check the target's certificate "
                "against 127.0.0.1 and send that as SNI, so an https target cannot take them",
                "test the fault against the service's http port, or use a server-side fault",
            )
        if fault.kind in ("server-latency", "server-errors", "stall-worker") and not embedded:
            self.bag.error(
                kind_span,
                f"`{fault.kind}` drives the embedded server's admin endpoint; this target is external",
                "use a network fault (latency, reset, ...) or `base_url: embedded`",
            )
        if fault.kind == "kill-target":
            self._check_kill(fault, path, embedded)

    def _check_kill(self, fault: FaultSpec, path: Path_, embedded: bool) -> None:
        target = self.spec.target
        if embedded and fault.exec_ is not None:
            self.bag.error(
                self.source.key((*path, "exec")),
                "`exec` kills an external target; the embedded server is killed by the runner",
                "remove `exec`",
            )
        if not embedded and fault.instance is not None:
            self.bag.error(
                self.source.key((*path, "instance")),
                "`instance` picks one of several embedded servers; this target is external",
            )
        if not embedded and fault.exec_ is None and not target.start_command:
            self.bag.error(
                self.source.text((*path, "kind")),
                "the runner cannot kill an external target it did not start",
                'give `exec: ["docker", "restart", "my-server"]` (run with --allow-exec), or a '
                "`target.start_command`",
            )
        if fault.exec_ is not None and fault.signal is not None:
            self.bag.error(
                self.source.key((*path, "signal")),
                "`signal` goes to a process the runner started; `exec` runs a command instead",
            )
        instances = (target.embedded.instances if target.embedded else None) or 1
        if isinstance(fault.instance, int) and fault.instance >= instances:
            self.bag.error(
                self.source.text((*path, "instance")),
                f"instance {fault.instance} does not exist: {instances} embedded instance(s), "
                "numbered from 0",
                "set `target.embedded.instances`, or use `instance: random`",
            )


_EXAMPLES = {"delay": "e.g. `delay: 200ms`", "rate": "e.g. `rate: 100KB/s`", "share": "e.g. `share: 10%`"}
