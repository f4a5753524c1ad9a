"""Stage 3 for `monitoring.instances`: where the ready instance count comes from, and what time-to-scale
reads, lowered to `ir.Instances` with positioned errors.

Two sources, exactly one per scenario: a PromQL `query` (sent to the Prometheus the scenario names, or the
one the run starts) or `from: targets` with a `role` (the `monitoring.targets` of that role answering their
scrape). The query is data: it travels to Prometheus as a URL-encoded parameter and is never edited or
pasted into anything; only characters no query holds (NUL and other controls but tab and newline) are
refused. The Prometheus URL obeys the rules of every monitoring URL (`lower.monitor_url_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from scenariokit.compile import expr
from scenariokit.compile.diagnostics import DiagnosticBag
from scenariokit.compile.ir import Instances, MonitorTarget
from scenariokit.compile.model import InstancesSpec
from scenariokit.compile.parse import Path_, SourceMap

PATH: Path_ = ("monitoring", "instances")
# PromQL spans lines and may hold tabs; no query holds another control character
_QUERY_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MIN_HOLD_S, MAX_HOLD_S = 1.0, 600.0
MAX_BAND = 0.5  # "caught up" at less than half the offered rate would not be catching up


def lower_instances(
    spec: InstancesSpec | None,
    targets: Sequence[MonitorTarget],
    source: SourceMap,
    bag: DiagnosticBag,
    url_problem: Callable[[str], str | None],
) -> Instances | None:
    """`url_problem` is `lower.monitor_url_problem` (passed in: lower imports this module)."""
    if spec is None:
        return None
    check = _Checks(spec, source, bag)
    kind = check.source_kind(targets)
    if spec.prometheus is not None and (problem := url_problem(spec.prometheus)):
        bag.error(
            source.text((*PATH, "prometheus")),
            f"this Prometheus URL {problem}",  # not echoed: it may hold a password
            "an http(s) URL such as http://127.0.0.1:9090",
        )
    return Instances(
        source=kind,
        query=spec.query,
        prometheus_url=spec.prometheus.rstrip("/") if spec.prometheus else None,
        role=spec.role,
        capacity_per_instance=check.capacity(),
        band=check.band(),
        hold_s=check.hold(),
        span=source.value(PATH),
    )


class _Checks:
    def __init__(self, spec: InstancesSpec, source: SourceMap, bag: DiagnosticBag) -> None:
        self.spec, self.source, self.bag = spec, source, bag

    def source_kind(self, targets: Sequence[MonitorTarget]) -> str:
        spec = self.spec
        if (spec.query is None) == (spec.from_ is None):
            self.bag.error(
                self.source.key(PATH) if spec.query is None else self.source.key((*PATH, "from")),
                "`monitoring.instances` takes one source: a `query` or `from: targets`",
                "`{query: 'count(up{job=\"vllm\"} == 1)'}` or `{from: targets, role: vllm}`",
            )
            return "query"
        if spec.query is not None:
            self._query(spec.query)
            return "query"
        self._targets(targets)
        return "targets"

    def _query(self, query: str) -> None:
        if not query.strip():
            self.bag.error(self.source.text((*PATH, "query")), "the query is empty", "e.g. count(up == 1)")
        elif (bad := _QUERY_FORBIDDEN.search(query)) is not None:
            self.bag.error(
                self.source.text((*PATH, "query")),
                f"the query holds the control character U+{ord(bad.group()):04X}",
                "PromQL is text: tabs and newlines are fine, other control characters are not",
            )
        if self.spec.role is not None:
            self.bag.error(
                self.source.key((*PATH, "role")),
                "`role` goes with `from: targets`, not with a query",
                'name the job in the query instead: count(up{job="vllm"} == 1)',
            )

    def _targets(self, targets: Sequence[MonitorTarget]) -> None:
        spec = self.spec
        if spec.prometheus is not None:
            self.bag.error(
                self.source.key((*PATH, "prometheus")),
                "`prometheus` goes with a `query`: `from: targets` counts the scrapes the run makes itself",
                "remove it, or count with a query",
            )
        if spec.role is None:
            self.bag.error(
                self.source.key((*PATH, "from")),
                "`from: targets` needs a `role`: the endpoints of which role to count",
                "e.g. `{from: targets, role: vllm}`",
            )
        elif not any(t.role == spec.role for t in targets):
            self.bag.error(
                self.source.text((*PATH, "role")),
                f"no `monitoring.targets` endpoint has the role `{spec.role}`: nothing to count",
                f"list each instance's /metrics under `monitoring.targets` with `role: {spec.role}`",
            )

    def capacity(self) -> float | None:
        text = self.spec.capacity_per_instance
        if text is None:
            return None
        path = (*PATH, "capacity_per_instance")
        try:
            rate = float(expr.parse_rate(text, self.source.text(path)))
        except expr.ExprError as exc:
            self.bag.items.append(exc.diagnostic)
            return None
        if rate <= 0:
            self.bag.error(self.source.text(path), "an instance's capacity must be above 0/s", "e.g. `50/s`")
            return None
        return rate

    def band(self) -> float:
        path = (*PATH, "band")
        try:
            band = float(expr.parse_fraction(self.spec.band, self.source.text(path)))
        except expr.ExprError as exc:
            self.bag.items.append(exc.diagnostic)
            return 0.1
        if not 0 <= band <= MAX_BAND:
            self.bag.error(
                self.source.text(path),
                f"a band of {band:.0%} is out of range",
                f"0% to {MAX_BAND:.0%} below the offered rate; 10% suits most runs",
            )
        return band

    def hold(self) -> float:
        path = (*PATH, "hold")
        try:
            hold = float(expr.parse_duration(self.spec.hold, self.source.text(path)))
        except expr.ExprError as exc:
            self.bag.items.append(exc.diagnostic)
            return 3.0
        if not MIN_HOLD_S <= hold <= MAX_HOLD_S:
            self.bag.error(
                self.source.text(path),
                f"a hold of {self.spec.hold} is out of range",
                "1s to 10m: the seconds in a row throughput must stay caught up",
            )
        return hold
