"""Stage 3: validated models -> the engine-neutral IR.

Here the expression strings are parsed (with spans that point inside the YAML values), names are
cross-checked (SLO `for` names, `during` windows, `{dataset.field}` references), chat requests are built
into their JSON bodies, and the open model's user pool is sized by Little's law. Each request leaves here
as it is sent: its templates parsed into parts and its headers merged with the target's (ir.merge_headers),
so that the engines' runtimes only join parts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from scenariokit.compile import expr
from scenariokit.compile.datasets import DataBudget, DataRoot, DatasetError, LoadedData, load_dataset
from scenariokit.compile.diagnostics import Diagnostic, DiagnosticBag, Span, did_you_mean
from scenariokit.compile.expr.errors import span_at
from scenariokit.compile.faults import FaultLowerer
from scenariokit.compile.instances import lower_instances
from scenariokit.compile.ir import (
    DATA_URL_ENV,
    FLEET_METRICS,
    NO_THINK_TIME,
    AbortRule,
    Dataset,
    Distribution,
    Expect,
    Fault,
    Headers,
    JsonTemplate,
    LoadProfile,
    Monitoring,
    MonitorTarget,
    RequestTemplate,
    Scenario,
    Slo,
    Stage,
    Target,
    Task,
    Template,
    Text,
    as_text,
    merge_headers,
)
from scenariokit.compile.limits import (
    HEADER_NAME_PATTERN,
    HEADER_VALUE_FORBIDDEN,
    MAX_FLEET_USERS,
    MAX_RATE,
    MAX_RUN_S,
    MAX_STAGES,
    MAX_TIME_S,
    MAX_USERS,
    MIN_RUN_S,
)
from scenariokit.compile.model import (
    CHAT_FIELDS,
    REST_FIELDS,
    RequestFields,
    RequestSpec,
    ScenarioSpec,
    TargetSpec,
)
from scenariokit.compile.parse import Document, Path_

STREAM_METRICS = frozenset({"ttft", "itl", "tpot"})
# Open model: users started up front cover the expected concurrency with this headroom; the engine may
# grow to `MAX_USERS_FACTOR` times the expected concurrency before it starts dropping arrivals.
PRE_ALLOCATED_HEADROOM = 1.2
MAX_USERS_FACTOR = 4
MIN_MONITOR_INTERVAL_S, MAX_MONITOR_INTERVAL_S = 0.1, 60.0


def control_name(char: str) -> str:
    """`CR (U+000D)`: how a message names a control character (never the text around it)."""
    short = {"\r": "CR ", "\n": "LF ", "\0": "NUL "}.get(char, "the control character ")
    return f"{short}(U+{ord(char):04X})"


def monitor_url_problem(url: str) -> str | None:
    """Why a `monitoring.targets` URL cannot be scraped, or None. Any host is the user's choice; a scheme
    other than http(s), credentials (they would sit in run.json and every log) and control characters
    (a CR/LF would split the request line) are refused."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "holds a control character (CR, LF, ...)"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        return "holds credentials (user:password@); they would be kept in the run folder"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        return "has a port that is not a number from 0 to 65535"
    return None


class Lowerer:
    def __init__(self, spec: ScenarioSpec, doc: Document, source_path: str, root: DataRoot) -> None:
        self.spec = spec
        self.doc = doc
        self.source = doc.source
        self.source_path = source_path
        self.root = root
        self.bag = DiagnosticBag()
        self.datasets: dict[str, Dataset] = {}
        self.target_headers: Headers = ()
        self.faults: tuple[Fault, ...] = ()
        self.flows: dict[str, tuple[str, ...]] = {}  # a flow's name -> its steps' record names

    # -- helpers -----------------------------------------------------------------------------------

    def _expr(self, parse: Any, text: str, path: Path_, default: Any = None) -> Any:
        """Run an expression parser on the value at `path`, turning its error into a diagnostic."""
        try:
            return parse(text, self.source.text(path))
        except expr.ExprError as exc:
            self.bag.items.append(exc.diagnostic)
            return default

    def _bounded(self, value: float, low: float, high: float, span: Span, message: str, hint: str) -> None:
        """An error unless low <= value <= high (limits.py: what a hostile or mistyped scenario may ask)."""
        if not low <= value <= high:  # also catches NaN
            self.bag.error(span, message, hint)

    def _time(self, seconds: float, path: Path_, what: str, low: float = 1e-3) -> None:
        self._bounded(
            seconds,
            low,
            MAX_TIME_S,
            self.source.text(path),
            f"{what} of {seconds:g}s is out of range",
            f"use {low * 1000:g}ms to {MAX_TIME_S / 3600:g}h",
        )

    def _text(self, text: str, path: Path_) -> Text:
        """A template string, parsed and checked: plain text, or a Template whose data references all
        name their field (a bare `{dataset}` reads the data set's default field)."""
        span = self.source.text(path)
        try:
            parts = expr.parse_template(text, span)
        except expr.ExprError as exc:
            self.bag.items.append(exc.diagnostic)
            return text
        return as_text([p for part in parts for p in self._served(self._resolved(part))], span)

    def _served(self, part: expr.TemplatePart) -> list[expr.TemplatePart]:
        """`{name.url}` of a served data set renders as the image server's origin (read from the
        environment when the request is made: the runner binds its port only then) and the image's path."""
        if not isinstance(part, expr.DataRef) or part.field != "url":
            return [part]
        dataset = self.datasets.get(part.dataset)
        if dataset is None or not dataset.served:
            return [part]
        return [expr.EnvRef(DATA_URL_ENV, part.span), part]

    def _resolved(self, part: expr.TemplatePart) -> expr.TemplatePart:
        if not isinstance(part, expr.DataRef):
            return part
        self._check_data_ref(part)
        dataset = self.datasets.get(part.dataset)
        if part.field is None and dataset is not None:
            return dataclasses.replace(part, field=dataset.default_field)
        return part

    def _check_data_ref(self, ref: expr.DataRef) -> None:
        dataset = self.datasets.get(ref.dataset)
        if dataset is None:
            known = sorted(self.datasets)
            hint = did_you_mean(ref.dataset, known) or (
                f"data sets defined: {', '.join(known)}"
                if known
                else "define it under `data:`, e.g. `images: builtin:text-cards`"
            )
            self.bag.error(ref.span, f"unknown data set `{ref.dataset}`", hint)
        elif ref.field is not None and ref.field not in dataset.fields:
            hint = did_you_mean(ref.field, dataset.fields) or f"fields: {', '.join(dataset.fields)}"
            self.bag.error(ref.span, f"data set `{ref.dataset}` has no field `{ref.field}`", hint)

    def _json(self, value: Any, path: Path_) -> JsonTemplate:
        """A JSON body with its strings parsed as templates (its keys stay plain text)."""
        if isinstance(value, str):
            return self._text(value, path)
        if isinstance(value, dict):
            return {key: self._json(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self._json(item, (*path, i)) for i, item in enumerate(value)]
        return value

    def _headers(self, headers: dict[str, str], path: Path_) -> Headers:
        for name, value in headers.items():
            self._check_header_text(name, value, (*path, name))
        return tuple((name, self._check_header(value, (*path, name))) for name, value in headers.items())

    def _check_header_text(self, name: str, value: str, path: Path_) -> None:
        """A header is one line of text on the wire: a name that is not a token, or a CR or LF in a value,
        would let a scenario end the header early and write others (request splitting)."""
        if not re.fullmatch(HEADER_NAME_PATTERN, name):
            shown = name if name.isprintable() else repr(name)[1:-1]  # a control character as an escape
            self.bag.error(
                self.source.key(path),
                f"`{shown}` is not a header name",
                "a header name is letters, digits and !#$%&'*+-.^_`|~: no space, colon or control character",
            )
        if (bad := re.search(HEADER_VALUE_FORBIDDEN, value)) is not None:
            self.bag.error(
                self.source.text(path),
                f"the `{name.strip()}` header's value holds {control_name(bad.group())}",
                "a header value is one line: no CR, LF, NUL or other control character (a tab is allowed)",
            )

    # -- sections ----------------------------------------------------------------------------------

    def lower(self) -> Scenario:
        target = self._target()
        load = self._load()
        self._data()
        tasks = tuple(self._task(name, spec) for name, spec in self.spec.requests.items())
        requests = tuple(step for task in tasks for step in task.steps)
        self._check_record_names(tasks)
        self.flows = {task.name: tuple(s.name for s in task.steps) for task in tasks if task.is_flow}
        self._check_weights(requests)
        # before the SLOs: a fault's name is a window (`during outage`), in one namespace with stage labels
        self.faults = FaultLowerer(self.spec, self.source, self.bag).lower(load)
        slos = self._slos(requests, load)
        monitoring = self._monitoring()
        abort_when = self._abort_rules(load)
        self.bag.raise_if_errors()
        return Scenario(
            name=self.spec.name,
            source_path=self.source_path,
            source_sha256=hashlib.sha256(self.doc.text.encode("utf-8")).hexdigest(),
            target=target,
            load=load,
            requests=requests,
            datasets=tuple(self.datasets.values()),
            slos=slos,
            engine=self.spec.engine,
            seed=self.spec.seed,
            description=self.spec.description,
            monitoring=monitoring,
            faults=self.faults,
            abort_when=abort_when,
        )

    def _abort_rules(self, load: LoadProfile) -> tuple[AbortRule, ...]:
        """`abort_when:`, one rule or a list; a window longer than the run could never be checked."""
        given = self.spec.abort_when
        texts = (
            [(given, ("abort_when",))]
            if isinstance(given, str)
            else [(text, ("abort_when", i)) for i, text in enumerate(given)]
        )
        rules: list[AbortRule] = []
        for text, path in texts:
            rule: AbortRule | None = self._expr(expr.parse_abort, text, path)
            if rule is not None and rule.window_s > load.duration_s:
                self.bag.error(
                    self.source.text(path),
                    f"the window of {rule.window_s:g}s is longer than the run ({load.duration_s:g}s)",
                    "a rule is checked once the run has lasted its window: shorten it",
                )
            elif rule is not None:
                rules.append(rule)
        return tuple(rules)

    def _monitoring(self) -> Monitoring:
        spec = self.spec.monitoring
        path = ("monitoring", "interval")
        interval = self._expr(expr.parse_duration, spec.interval, path, 1.0)
        if not MIN_MONITOR_INTERVAL_S <= interval <= MAX_MONITOR_INTERVAL_S:
            self.bag.error(
                self.source.text(path),
                f"a sampling interval of {spec.interval} is out of range",
                "use 100ms to 1m; 1s suits most runs",
            )
        targets = self._monitor_targets()
        instances = lower_instances(spec.instances, targets, self.source, self.bag, monitor_url_problem)
        return Monitoring(spec.prometheus, interval, targets, instances)

    def _monitor_targets(self) -> tuple[MonitorTarget, ...]:
        out: list[MonitorTarget] = []
        seen: set[str] = set()
        for i, spec in enumerate(self.spec.monitoring.targets):
            path: tuple[str | int, ...] = ("monitoring", "targets", i)
            problem = monitor_url_problem(spec.url)
            if problem:
                self.bag.error(
                    self.source.text((*path, "url")),
                    f"this monitoring URL {problem}",  # not echoed: it may hold a password
                    "an http(s) URL such as http://127.0.0.1:9100/metrics",
                )
            name = spec.name or f"{spec.role}-{i + 1}"
            if name in seen:  # two targets writing one file would interleave their samples
                self.bag.error(
                    self.source.text((*path, "name") if spec.name else path),
                    f"two monitoring targets are named `{name}`",
                    "give each target its own `name`",
                )
            seen.add(name)
            out.append(MonitorTarget(name=name, url=spec.url, role=spec.role))
        return tuple(out)

    def _target(self) -> Target:
        spec = self.spec.target
        url = spec.base_url
        if url != "embedded" and not url.startswith(("http://", "https://")):
            self.bag.error(
                self.source.text(("target", "base_url")),
                f"`{url}` is not an http(s) URL",
                "write `embedded` for the bundled server, or e.g. http://127.0.0.1:8000",
            )
        if spec.kind == "openai-chat" and not spec.chat_path.startswith("/"):
            self.bag.error(self.source.text(("target", "chat_path")), "paths start with `/`")
        with contextlib.suppress(expr.ExprError):  # a syntax error is reported with each request using it
            self._time(expr.parse_duration(spec.timeout), ("target", "timeout"), "a timeout")
        self.target_headers = self._headers(spec.headers, ("target", "headers"))
        ready_timeout_s = self._expr(
            expr.parse_duration, spec.ready_timeout, ("target", "ready_timeout"), 120.0
        )
        self._time(ready_timeout_s, ("target", "ready_timeout"), "a ready timeout", low=1.0)
        self._check_start(spec)
        return Target(
            kind=spec.kind,
            base_url=url.rstrip("/"),
            model=spec.model,
            headers=tuple(spec.headers.items()),
            embedded_options=tuple(spec.embedded.model_dump(exclude_none=True).items())
            if spec.embedded
            else (),
            span=self.source.value(("target",)),
            start=spec.start,
            start_command=tuple(spec.start_command) if spec.start_command else None,
            ready_timeout_s=ready_timeout_s,
        )

    def _check_start(self, spec: TargetSpec) -> None:
        """`start_command` is for an external target; `start: cold` for a target the runner starts."""
        if spec.start_command and spec.base_url == "embedded":
            self.bag.error(
                self.source.text(("target", "start_command")),
                "`start_command` starts an external target, but `base_url` is `embedded` "
                "(the runner starts that one itself)",
                "remove `start_command`, or set `base_url` to the URL the command's server listens on",
            )
        if spec.start == "cold" and spec.base_url != "embedded" and not spec.start_command:
            self.bag.error(
                self.source.text(("target", "start")),
                "`start: cold` needs a target the runner starts: this one runs already",
                "use `base_url: embedded`, or give a `start_command` (run with --allow-exec)",
            )

    def _check_header(self, value: str, path: Path_) -> Text:
        text = self._text(value, path)
        key = str(path[-1]).lower()
        if (
            key in ("authorization", "x-api-key", "api-key")
            and not (isinstance(text, Template) and any(isinstance(p, expr.EnvRef) for p in text.parts))
            and value.strip()
        ):
            self.bag.warning(
                self.source.text(path),
                f"the `{path[-1]}` header holds a literal secret",
                "reference it instead: `Bearer ${env:API_KEY}`",
            )
        return text

    def _load(self) -> LoadProfile:
        spec = self.spec.load
        stages: tuple[Stage, ...] = self._expr(expr.parse_curve, spec.curve, ("load", "curve"), ())
        think: Distribution = self._expr(
            expr.parse_distribution, spec.think_time, ("load", "think_time"), NO_THINK_TIME
        )
        span = self.source.value(("load",))
        latency = self._expr(expr.parse_duration, spec.expected_latency, ("load", "expected_latency"), 1.0)
        self._time(latency, ("load", "expected_latency"), "an expected latency")
        for name, seconds in think.params:
            self._time(seconds, ("load", "think_time"), f"a think time's {name}", low=0.0)
        self._check_curve(stages, spec.model)
        if stages and max(max(s.start, s.end) for s in stages) == 0:
            self.bag.warning(
                self.source.text(("load", "curve")),
                "the curve never rises above 0: no load",
                "raise a level, e.g. ramp(0, 10, 30s)",
            )
        if spec.model == "closed":
            for stage in stages:
                if stage.start != int(stage.start) or stage.end != int(stage.end):
                    self.bag.error(
                        stage.span,
                        "a closed model counts users: levels must be whole numbers",
                        "use `model: open` for a rate in requests/s",
                    )
            return LoadProfile("closed", stages, think, expected_latency_s=latency, span=span)
        if think.kind != "none":
            self.bag.warning(
                self.source.text(("load", "think_time")),
                "think time is ignored in an open model: arrivals follow the curve",
                "remove `think_time`, or use `model: closed`",
            )
        peak = max((max(s.start, s.end) for s in stages), default=0.0)
        # Little's law: users busy = arrival rate x time in system (an arrival of a flow sends its steps)
        concurrency = peak * latency * steps_per_pick(self.spec)
        if spec.max_users is None and concurrency * MAX_USERS_FACTOR > MAX_USERS:
            self.bag.error(
                self.source.text(("load", "expected_latency")),
                f"{peak:g}/s at {latency:g}s each would size a pool of "
                f"{concurrency * MAX_USERS_FACTOR:.0f} users; one machine runs at most {MAX_USERS}",
                "lower the rate or the expected latency, or set `max_users`",
            )
        pre = spec.pre_allocated_users or max(1, math.ceil(concurrency * PRE_ALLOCATED_HEADROOM))
        most = spec.max_users or max(pre, math.ceil(concurrency * MAX_USERS_FACTOR), 1)
        if most < pre:
            self.bag.error(
                self.source.text(("load", "max_users")),
                f"max_users ({most}) is below pre_allocated_users ({pre})",
            )
        return LoadProfile("open", stages, NO_THINK_TIME, pre, most, latency, span=span)

    def _check_curve(self, stages: tuple[Stage, ...], model: str) -> None:
        """A run's length, its number of stages and its levels, within what one machine can do."""
        if not stages:
            return  # the curve did not parse: already reported
        span = self.source.text(("load", "curve"))
        duration = sum(s.duration_s for s in stages)
        self._bounded(
            duration,
            MIN_RUN_S,
            MAX_RUN_S,
            span,
            f"the curve lasts {duration:g}s",
            f"a run lasts {MIN_RUN_S:g}s to {MAX_RUN_S / 86400:g} days, e.g. ramp(0, 10, 30s) -> hold(5m)",
        )
        self._bounded(
            len(stages), 0, MAX_STAGES, span, f"the curve has {len(stages)} stages", "use fewer steps"
        )
        most, unit = (MAX_FLEET_USERS, "users") if model == "closed" else (MAX_RATE, "requests/s")
        for stage in stages:
            level = max(stage.start, stage.end)
            if not level <= most:
                self.bag.error(
                    stage.span,
                    f"a level of {level:g} {unit} is more than one machine can drive, or a fleet ({most:g})",
                    "a level is users in a closed model, requests/s in an open one",
                )
                return

    def _data(self) -> None:
        budget = DataBudget()  # the data sets' cost together
        for name, entry in self.spec.data.items():
            path: Path_ = ("data", name)
            options = entry if not isinstance(entry, str) else None
            source = entry if isinstance(entry, str) else entry.source
            try:
                count, seed = (options.count, options.seed) if options else (None, 0)
                loaded = load_dataset(source, self.root, count, seed, budget)
            except DatasetError as exc:
                src_path = (*path, "source") if options else path
                self.bag.error(self.source.text(src_path), str(exc), exc.hint)
                continue
            served = options is not None and options.serve == "http"
            if served:
                with_urls = self._with_urls(name, loaded, path)
                if with_urls is None:
                    continue
                loaded = with_urls
            self.datasets[name] = Dataset(
                name=name,
                source=source,
                fields=loaded.fields,
                default_field=loaded.default_field,
                records=loaded.records,
                pick=options.pick if options else "random",
                span=self.source.value(path),
                served=served,
                split=options.split if options else None,
            )

    def _with_urls(self, name: str, loaded: LoadedData, path: Path_) -> LoadedData | None:
        """`serve: http`: each image record gets `url`, its path on the runner's image server
        (`/<set>/<id>/<file>`: the id keeps two CSV rows' files of one name apart)."""
        span = self.source.text((*path, "serve"))
        if not {"base64", "mime", "file"} <= set(loaded.fields):
            self.bag.error(
                span, f"data set `{name}` has no images to serve", "`serve: http` serves image sets"
            )
            return None
        if "url" in loaded.fields:
            self.bag.error(
                span, f"data set `{name}` has a `url` column already", "rename the column, or drop `serve`"
            )
            return None
        records = tuple({**r, "url": f"/{name}/{r['id']}/{quote(r['file'])}"} for r in loaded.records)
        return dataclasses.replace(loaded, fields=(*loaded.fields, "url"), records=records)

    def _task(self, name: str, spec: RequestSpec) -> Task:
        """An entry of the mix: a request, or a flow of steps (records `<entry>.<step name or 1-based
        position>`), which has no request fields of its own."""
        path: Path_ = ("requests", name)
        span = self.source.key(path)
        if spec.steps is None:
            return Task(name, spec.weight, (self._request(name, spec, path, spec.weight),), span)
        for key in sorted(spec.model_fields_set - {"weight", "steps"}):
            field = RequestSpec.model_fields[key]
            self.bag.error(
                self.source.key((*path, field.alias or key)),
                f"`{name}` is a flow (it has `steps:`): `{field.alias or key}` belongs in a step",
                "move it into each step that sends it; a flow holds only `weight` and `steps`",
            )
        steps: list[RequestTemplate] = []
        seen: dict[str, int] = {}
        for i, step in enumerate(spec.steps):
            step_path: Path_ = (*path, "steps", i)
            label = step.name or str(i + 1)
            if label in seen:
                self.bag.error(
                    self.source.text((*step_path, "name")) if step.name else self.source.key(step_path),
                    f"flow `{name}` has two steps named `{label}` (steps {seen[label] + 1} and {i + 1})",
                    "give each step its own `name` (a step without one is named by its position)",
                )
            seen.setdefault(label, i)
            steps.append(self._request(f"{name}.{label}", step, step_path, spec.weight, flow=name))
        return Task(name, spec.weight, tuple(steps), span)

    def _check_record_names(self, tasks: tuple[Task, ...]) -> None:
        """Records are told apart by name: a step's `<entry>.<step>` must not be another entry's name."""
        entries = {task.name: task for task in tasks}
        for task in tasks:
            for step in task.steps:
                other = entries.get(step.name)
                if step.flow is not None and other is not None:
                    self.bag.error(
                        step.span,
                        f"step `{step.name}` has the name of the request `{other.name}`: their records "
                        "could not be told apart",
                        "rename the step or the request",
                    )

    def _request(
        self, name: str, spec: RequestFields, path: Path_, weight: float, flow: str | None = None
    ) -> RequestTemplate:
        given = spec.model_fields_set - {"name"}
        chat_fields = sorted(given & CHAT_FIELDS - {"stream"} | ({"stream"} if spec.stream else set()))
        rest_fields = sorted(given & REST_FIELDS)
        timeout = self._expr(
            expr.parse_duration,
            spec.timeout or self.spec.target.timeout,
            (*path, "timeout") if spec.timeout else ("target", "timeout"),
            60.0,
        )
        if spec.timeout:
            self._time(timeout, (*path, "timeout"), "a timeout")
        headers = self._headers(spec.headers, (*path, "headers"))
        expect = self._expect(spec, path)
        common = dict(
            name=name, weight=weight, expect=expect, timeout_s=timeout, span=self.source.key(path), flow=flow
        )
        if spec.raw is not None:
            if chat_fields or rest_fields:
                self.bag.error(
                    self.source.key((*path, "raw")),
                    f"`raw` sends a request exactly as written; remove {_names(chat_fields + rest_fields)}",
                )
            return self._raw(spec, path, headers, common)
        if chat_fields and rest_fields:
            self.bag.error(
                self.source.key(path),
                f"request `{name}` mixes chat fields ({_names(chat_fields)}) "
                f"with REST fields ({_names(rest_fields)})",
                "use prompt/image for chat targets, or method/path/json for REST; or `raw:`",
            )
        if self.spec.target.kind == "openai-chat" and not rest_fields:
            return self._chat(spec, path, headers, common)
        if self.spec.target.kind == "http" and chat_fields:
            self.bag.error(
                self.source.key((*path, chat_fields[0])),
                f"`{chat_fields[0]}` needs a chat target (`target.kind: openai-chat`)",
                "for a REST API write method/path/json",
            )
        return self._rest(spec, path, headers, common)

    def _expect(self, spec: RequestFields, path: Path_) -> Expect:
        if spec.expect is None:
            return Expect()
        status = spec.expect.status
        codes = tuple(status if isinstance(status, list) else [status] if status is not None else [])
        contains = spec.expect.contains
        text = None if contains is None else self._text(contains, (*path, "expect", "contains"))
        return Expect(status=codes, contains=text, span=self.source.value((*path, "expect")))

    def _chat(
        self, spec: RequestFields, path: Path_, headers: Any, common: dict[str, Any]
    ) -> RequestTemplate:
        model = spec.model or self.spec.target.model
        if model is None:
            self.bag.error(
                self.source.key(path),
                "chat requests need a model name",
                "set `target.model: ocr` (or `model:` on this request)",
            )
        prompt, image, system = (
            None if value is None else self._text(value, (*path, key))
            for key, value in (("prompt", spec.prompt), ("image", spec.image), ("system", spec.system))
        )
        content: list[dict[str, Any]] = []
        if prompt is not None:
            content.append({"type": "text", "text": prompt})
        if image is not None:
            content.append({"type": "image_url", "image_url": {"url": image}})
        if not content:
            self.bag.error(
                self.source.key(path),
                "a chat request needs a `prompt`, an `image`, or both",
                'e.g. `prompt: "Read the text."` and `image: "{images}"`',
            )
        messages: list[dict[str, Any]] = []
        if system is not None:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": content})
        body: dict[str, Any] = {"model": model, "messages": messages}
        if spec.max_tokens is not None:
            body["max_tokens"] = spec.max_tokens
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        if spec.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return RequestTemplate(
            method="POST",
            path=self.spec.target.chat_path,
            headers=merge_headers(self.target_headers, headers, json_body=True),
            json_body=body,
            chat=True,
            stream=spec.stream,
            **common,
        )

    def _rest(
        self, spec: RequestFields, path: Path_, headers: Any, common: dict[str, Any]
    ) -> RequestTemplate:
        if spec.path is None:
            self.bag.error(
                self.source.key(path),
                f"request `{common['name']}` needs a `path`",
                "e.g. `path: /api/v1/identify`",
            )
        return self._http(spec.method, spec.path or "/", spec.json_body, spec.body, path, headers, common)

    def _raw(self, spec: RequestFields, path: Path_, headers: Any, common: dict[str, Any]) -> RequestTemplate:
        raw = spec.raw
        assert raw is not None
        default_path = self.spec.target.chat_path if self.spec.target.kind == "openai-chat" else None
        if raw.path is None and default_path is None:
            self.bag.error(self.source.key((*path, "raw")), "a raw request to an http target needs a `path`")
        raw_headers = self._headers(raw.headers, (*path, "raw", "headers"))
        return self._http(
            raw.method,
            raw.path or default_path or "/",
            raw.json_body,
            raw.body,
            (*path, "raw"),
            merge_headers(headers, raw_headers),
            common,
        )

    def _http(
        self,
        method: str | None,
        url_path: str,
        json_body: Any,
        body: str | None,
        path: Path_,
        headers: Any,
        common: dict[str, Any],
    ) -> RequestTemplate:
        if json_body is not None and body is not None:
            self.bag.error(self.source.key((*path, "body")), "give either `json` or `body`, not both")
        if not url_path.startswith("/"):
            self.bag.error(self.source.text((*path, "path")), "paths start with `/`", f"write `/{url_path}`")
        has_body = json_body is not None or body is not None
        return RequestTemplate(
            method=method or ("POST" if has_body else "GET"),
            path=self._text(url_path, (*path, "path")),
            headers=merge_headers(self.target_headers, headers, json_body=json_body is not None),
            json_body=self._json(json_body, (*path, "json")),
            text_body=None if body is None else self._text(body, (*path, "body")),
            **common,
        )

    def _check_weights(self, requests: tuple[RequestTemplate, ...]) -> None:
        if requests and sum(r.weight for r in requests) <= 0:
            self.bag.error(
                self.source.key(("requests",)),
                "the request weights add up to 0: nothing would be sent",
                "give at least one request a positive `weight`",
            )

    def _slos(self, requests: tuple[RequestTemplate, ...], load: LoadProfile) -> tuple[Slo, ...]:
        by_name = {r.name: r for r in requests}
        labels = {s.label for s in load.stages} | {s.kind for s in load.stages}
        result: list[Slo] = []
        seen: dict[str, int] = {}
        for i, text in enumerate(self.spec.slo):
            path: Path_ = ("slo", i)
            slo: Slo | None = self._expr(expr.parse_slo, text, path)
            if slo is None:
                continue
            slo = self._flow_steps(slo)
            key = _slo_key(slo)
            if key in seen:
                self.bag.error(
                    self.source.text(path),
                    f"this SLO repeats SLO #{seen[key] + 1}",
                    "k6 would silently ignore one of them; we refuse: remove one",
                )
                continue
            seen[key] = i
            self._check_slo_names(slo, by_name, path)
            self._check_window_names(slo, labels, path)
            if slo.window and slo.window.start_s is not None and slo.window.start_s >= load.duration_s:
                self.bag.error(
                    self.source.text(path), f"this window starts after the run ends ({load.duration_s:g}s)"
                )
            if slo.metric == "dropped_iterations" and load.model == "closed":
                self.bag.warning(
                    self.source.text(path),
                    "dropped iterations only happen in an open model; this SLO always holds",
                )
            self._check_stream_metric(slo, by_name, path)
            result.append(slo)
        return tuple(result)

    def _fault_names(self) -> list[str]:
        """The scenario's fault names (the `faults:` section), in order: windows share their namespace."""
        return [fault.name for fault in self.spec.faults]

    def _check_window_names(self, slo: Slo, labels: set[str], path: Path_) -> None:
        """`during X` / `after X` name a stage or a fault; `recovery_time(X)` a fault."""
        faults = self._fault_names()
        name = slo.window.stage if slo.window else None
        if name is not None and name not in labels and name not in faults:
            known = sorted(labels) + faults
            hint = did_you_mean(name, known) or f"stages and faults: {', '.join(known)}"
            where = self._name_in_slo(path, rf"\b(?:during|after)\s+({re.escape(name)})(?![\w.-])")
            self.bag.error(where, f"no load stage or fault is called `{name}`", hint)
        if slo.subject is not None and slo.subject not in faults:
            hint = did_you_mean(slo.subject, faults) or (
                f"faults: {', '.join(faults)}" if faults else "the scenario has no `faults:` section"
            )
            where = self._name_in_slo(path, rf"recovery_time\s*\(\s*({re.escape(slo.subject)})")
            self.bag.error(where, f"no fault is called `{slo.subject}`", hint)

    def _name_in_slo(self, path: Path_, pattern: str) -> Span:
        """The span of the name the pattern's group finds in the SLO's text (else the whole SLO)."""
        index = path[1]
        text = self.spec.slo[index] if isinstance(index, int) else ""
        found = re.search(pattern, text)
        return span_at(self.source.text(path), text, *found.span(1)) if found else self.source.text(path)

    def _flow_steps(self, slo: Slo) -> Slo:
        """`for <flow>` scopes every step of the flow: the SLO names their records (`<flow>.<step>`)."""
        if not any(name in self.flows for name in slo.requests):
            return slo
        steps = (step for name in slo.requests for step in self.flows.get(name, (name,)))
        return dataclasses.replace(slo, requests=tuple(dict.fromkeys(steps)))

    def _check_slo_names(self, slo: Slo, by_name: dict[str, RequestTemplate], path: Path_) -> None:
        if slo.metric in FLEET_METRICS:
            self._check_gpu_names(slo, path)
            return
        for name in slo.requests:
            if name not in by_name:
                hint = did_you_mean(name, by_name) or f"requests: {', '.join(by_name)}"
                self.bag.error(self.source.text(path), f"no request is called `{name}`", hint)

    def _check_gpu_names(self, slo: Slo, path: Path_) -> None:
        """A GPU SLO's `for` names a dcgm target, `<target>-gpu<N>` or a GPU's UUID (`GPU-...`, known only
        once sampled); without a dcgm target only the generator host's GPUs (NVML) can be read."""
        dcgm = [
            t.name or f"{t.role}-{i + 1}"
            for i, t in enumerate(self.spec.monitoring.targets)
            if t.role == "dcgm"
        ]
        if not dcgm:
            self.bag.warning(
                self.source.text(path),
                f"{slo.metric} reads the target's GPUs from a `dcgm` monitoring target, and none is listed: "
                "only GPUs on the generator's own host (NVML) can be judged",
                "add `monitoring: {targets: [{url: http://gpu-host:9400/metrics, role: dcgm}]}`",
            )
        for name in slo.requests:
            if name in dcgm or name.startswith("GPU-") or any(name.startswith(f"{d}-gpu") for d in dcgm):
                continue
            hint = did_you_mean(name, dcgm) or (
                f"dcgm targets: {', '.join(dcgm)}" if dcgm else "no monitoring target has role dcgm"
            )
            self.bag.error(
                self.source.text(path),
                f"no dcgm target or GPU is called `{name}`",
                hint + "; a GPU is `<target>-gpu<N>` or its UUID (GPU-...)",
            )

    def _check_stream_metric(self, slo: Slo, by_name: dict[str, RequestTemplate], path: Path_) -> None:
        if slo.metric not in STREAM_METRICS:
            return
        chosen = [by_name[n] for n in slo.requests if n in by_name] or list(by_name.values())
        if not any(r.stream for r in chosen):
            self.bag.error(
                self.source.text(path),
                f"{slo.metric} is measured only on streamed chat requests, and none is selected",
                "add `stream: true` to a chat request, or measure `latency` instead",
            )


def steps_per_pick(spec: ScenarioSpec) -> float:
    """The requests one pick of the mix sends, on average over the weights (1 without flows)."""
    weights = [(r.weight, len(r.steps or (r,))) for r in spec.requests.values()]
    total = sum(w for w, _ in weights)
    return sum(w * n for w, n in weights) / total if total > 0 else 1.0


def _slo_key(slo: Slo) -> str:
    window = dataclasses.astuple(slo.window) if slo.window else None
    requests = tuple(sorted(slo.requests))
    return repr((slo.metric, slo.statistic, slo.op, slo.threshold, requests, window, slo.subject))


def _names(fields: list[str]) -> str:
    return ", ".join(f"`{'json' if f == 'json_body' else f}`" for f in fields)


def lower(
    spec: ScenarioSpec, doc: Document, source_path: str, root: DataRoot | None = None
) -> tuple[Scenario, list[Diagnostic]]:
    """The IR and the warnings found on the way (errors raise ScenarioError). Data files come from inside
    `root` (default: the scenario's folder)."""
    lowerer = Lowerer(spec, doc, source_path, root or DataRoot.of(Path(source_path).parent))
    return lowerer.lower(), lowerer.bag.warnings
