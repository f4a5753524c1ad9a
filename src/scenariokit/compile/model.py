"""Stage 2: the scenario's shape as pydantic v2 models (also the source of the JSON Schema).

Values written in the small expression languages (durations, curves, distributions, SLOs, templates) are
kept as strings here and parsed in `lower.py`, where their source spans are at hand. Models are strict:
unknown keys are errors (extra="forbid"), so a typo never passes silently.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from scenariokit.compile.limits import (
    DATASET_NAME_PATTERN,
    MAX_COMMAND_ARG_CHARS,
    MAX_COMMAND_ARGS,
    MAX_DATASET_NAME_CHARS,
    MAX_EMBEDDED_INSTANCES,
    MAX_EXPR_CHARS,
    MAX_FAULTS,
    MAX_STEP_NAME_CHARS,
    MAX_STEPS,
    MAX_USERS,
    MAX_WEIGHT,
    STEP_NAME_PATTERN,
)
from scenariokit.engines import DEFAULT_ENGINE, engine_names

DURATION_HELP = "A duration with a unit: `500ms`, `2s`, `1m30s`, `1h`."


def _number_as_text(value: Any) -> Any:
    """`timeout: 30` reaches the duration parser as "30", which then says which unit to add."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


# A value written in one of the expression languages (parsed in lower.py, where spans are at hand).
Expr = Annotated[str, BeforeValidator(_number_as_text), StringConstraints(max_length=MAX_EXPR_CHARS)]


# One argument of a start command: passed to the program as written (no shell); NUL cannot be passed.
def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("an argument cannot hold NUL (a program's arguments end at it)")
    return value


CommandArg = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_COMMAND_ARG_CHARS),
    AfterValidator(_no_nul),
]
# A data set's name: referenced as `{name}` in templates and shipped as `data/<name>.json`.
DatasetName = Annotated[
    str, StringConstraints(pattern=DATASET_NAME_PATTERN, min_length=1, max_length=MAX_DATASET_NAME_CHARS)
]


def _finite_numbers(value: JsonValue) -> JsonValue:
    """NaN and infinity are not JSON (YAML's `.nan`, `.inf` are floats); pydantic's JsonValue takes them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _finite_numbers(item)
    return value


# A value sent as written, as JSON (validate.py points at whatever in it JSON cannot carry).
JsonBody = Annotated[JsonValue, AfterValidator(_finite_numbers)]
JSON_HELP = "Any JSON value, sent as written; its strings may hold templates. Quote a date to send text."


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=False)


class EmbeddedOptions(Strict):
    """Settings for the bundled model server when `base_url: embedded`."""

    workers: int | None = Field(None, ge=1, le=64, description="Model worker processes (default: cores).")
    max_in_flight: int | None = Field(None, ge=1, description="Requests processed at once.")
    max_queue: int | None = Field(None, ge=0, description="Requests allowed to wait; more get 429/503.")
    fault: str | None = Field(None, description="Fault hook, e.g. `latency=200ms,error_rate=0.1`.")
    instances: int | None = Field(
        None,
        ge=1,
        le=MAX_EMBEDDED_INSTANCES,
        description="Servers started on ports of their own behind a round-robin proxy (default 1); a "
        "`kill-target` fault with `instance: random` kills one of them.",
    )


class TargetSpec(Strict):
    """The service under test."""

    kind: Literal["openai-chat", "http"] = Field(
        "openai-chat", description="`openai-chat` for vLLM-compatible chat completions, `http` for REST."
    )
    base_url: str = Field(
        "embedded",
        description="`embedded` for the bundled CPU model server, or a URL such as http://127.0.0.1:8000.",
        examples=["embedded", "http://127.0.0.1:8000"],
    )
    model: str | None = Field(None, description="Served model name sent in chat requests.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers on every request; secrets only as `${env:NAME}`."
    )
    timeout: Expr = Field("60s", description="Per-request timeout. " + DURATION_HELP)
    chat_path: str = Field("/v1/chat/completions", description="Path of the chat completions endpoint.")
    embedded: EmbeddedOptions | None = None
    start: Literal["cold", "warm"] = Field(
        "warm",
        description="How the runner starts the target it starts (`base_url: embedded`, or a "
        "`start_command`): `warm` loads the models before the target reports ready, `cold` on first use, "
        "so the first requests' penalty is measured (summary: `target_starts`).",
    )
    start_command: list[CommandArg] | None = Field(
        None,
        min_length=1,
        max_length=MAX_COMMAND_ARGS,
        description="An external target's start command, as an argv list (no shell), run by the runner "
        "only with `--allow-exec`; the run waits until `base_url` answers HTTP.",
        examples=[["python", "-m", "http.server", "8080"]],
    )
    ready_timeout: Expr = Field(
        "2m", description="How long a started target may take to become ready. " + DURATION_HELP
    )


class LoadSpec(Strict):
    """How much load, and how it changes over time."""

    model: Literal["closed", "open"] = Field(
        "closed", description="`closed`: concurrent users. `open`: arrival rate in requests per second."
    )
    curve: Expr = Field(
        ...,
        description="Load curve: ramp/hold/spike/steps chained with `->`; levels are users (closed) or "
        "requests/s (open).",
        examples=["ramp(0, 50, 30s) -> hold(1m) -> spike(150, 10s) -> ramp(0, 10s)"],
    )
    think_time: Expr = Field(
        "none",
        description="Pause between a user's requests: `none`, `constant(1s)`, `uniform(0.5s, 2.5s)`, "
        "`exponential(mean=1s)`, `normal(mean=1s, sd=200ms)`.",
    )
    expected_latency: Expr = Field(
        "1s", description="Open model: the latency used to size the user pool by Little's law."
    )
    pre_allocated_users: int | None = Field(
        None, ge=1, le=MAX_USERS, description="Open model: users started up front."
    )
    max_users: int | None = Field(
        None, ge=1, le=MAX_USERS, description="Open model: most users the engine may start."
    )


class DatasetSpec(Strict):
    source: str = Field(
        ...,
        description="`builtin:text-cards`, a folder of images, or a CSV file (relative to the scenario).",
    )
    count: int | None = Field(None, ge=1, le=10_000, description="Records to generate (builtin sets).")
    seed: int = Field(0, description="Seed for generated sets.")
    pick: Literal["random", "sequential"] = "random"
    split: Literal["workers"] | None = Field(
        None,
        description="`workers`: in a run spread over several generators (Locust workers, k6 instances: "
        "`run --processes`, `--master`), generator i of n uses only records i, i+n, i+2n, ..., so no "
        "record is sent by two of them (docs/distributed.md); default: each uses every record.",
    )
    serve: Literal["http"] | None = Field(
        None,
        description="`http`: `scenariokit run` serves the set's images on 127.0.0.1 for the run (and lets "
        "only that origin through to the embedded server); `{name.url}` renders each image's URL there.",
    )


class ExpectSpec(Strict):
    status: int | list[int] | None = Field(None, description="Expected status code(s); default any 2xx.")
    contains: str | None = Field(
        None, description="Text the answer must contain (case-insensitive); may use `{dataset.field}`."
    )

    @field_validator("status")
    @classmethod
    def _status_range(cls, value: int | list[int] | None) -> int | list[int] | None:
        codes = value if isinstance(value, list) else [value] if value is not None else []
        for code in codes:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599)")
        return value


class RawSpec(Strict):
    """A request sent exactly as written: deliberately bad requests, or anything the builder can't say."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] | None = None
    path: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: JsonBody = Field(None, alias="json", description=JSON_HELP)
    body: str | None = None


class RequestFields(Strict):
    """What one request sends and expects (a request entry, or one step of a flow).

    Chat targets take `prompt`/`image`/`max_tokens`/`stream`; REST targets take `method`/`path`/`json`.
    `raw` sends a request exactly as written on either kind.
    """

    # chat form
    prompt: str | None = None
    image: str | None = Field(None, description="An image reference such as `{images}` (a data: URL).")
    system: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    stream: bool = False
    model: str | None = Field(None, description="Overrides the target's model for this request.")
    # REST form
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] | None = None
    path: str | None = None
    json_body: JsonBody = Field(None, alias="json", description=JSON_HELP)
    body: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    raw: RawSpec | None = None
    expect: ExpectSpec | None = None
    timeout: Expr | None = Field(None, description="Overrides the target's timeout. " + DURATION_HELP)


class StepSpec(RequestFields):
    """One request of a flow: every field of a request entry but `weight` (the flow's) and `steps` (flows
    do not nest)."""

    name: str | None = Field(
        None,
        max_length=MAX_STEP_NAME_CHARS,
        pattern=STEP_NAME_PATTERN,
        description="The step's name: its records are named `<entry>.<name>` (default: its 1-based "
        "position, `<entry>.1`). Letters, digits and `_`, joined by single `-`; unique in the flow.",
    )


class RequestSpec(RequestFields):
    """One entry of the weighted mix: a request, or with `steps:` a flow of requests sent in order."""

    weight: float = Field(
        1.0,
        ge=0,
        le=MAX_WEIGHT,
        allow_inf_nan=False,
        description="Relative share of the mix (a non-negative number); a flow's counts once per flow.",
    )
    steps: list[StepSpec] | None = Field(
        None,
        min_length=1,
        max_length=MAX_STEPS,
        description=f"A flow: up to {MAX_STEPS} requests one user sends in order, one after the other, for "
        "one pick of the mix (one arrival in an open model). Each step has its own expectation and record; "
        "a failed step does not stop the next. The entry then has no request fields of its own.",
    )


MAX_MONITOR_TARGETS = 16


class MonitorTargetSpec(Strict):
    """An endpoint scraped on the run's clock besides the target's own /metrics (`monitor/targets/`)."""

    url: str = Field(
        ...,
        min_length=1,
        max_length=2000,
        description="An http(s) URL of Prometheus text, such as `http://127.0.0.1:9100/metrics`; no "
        "credentials in it.",
    )
    role: Literal["vllm", "dcgm", "node", "process"] = Field(
        ...,
        description="What the endpoint exports, which decides the series kept: `process` (process_*; their "
        "summed `process_resident_memory_bytes` is what `memory_growth` reads), `node` (node_exporter's CPU "
        "seconds, memory and network bytes), `vllm` (vllm:*), `dcgm` (DCGM's GPU utilisation and framebuffer "
        "used/free per GPU: the gpu_util and gpu_memory SLOs).",
    )
    name: str | None = Field(
        None,
        min_length=1,
        max_length=40,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Its file's name under `monitor/targets/` (lower-case letters, digits, `-`); "
        "`<role>-<n>` when left out.",
    )


class InstancesSpec(Strict):
    """Ready target instances over time (autoscaling), sampled on the run's clock into
    `monitor/instances.jsonl`: a PromQL query's value, or the `monitoring.targets` of a role answering their
    scrape; with them, time-to-scale in the summary (docs/dsl-reference.md#instances)."""

    query: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="A PromQL query whose one value is the ready instances now, e.g. "
        '`count(up{job="vllm"} == 1)`; sent to Prometheus as data, never edited.',
        examples=['count(up{job="vllm"} == 1)'],
    )
    prometheus: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="The Prometheus the query is sent to (http(s), no credentials); default: the one the "
        "run starts (`--monitor prometheus` or `monitoring.prometheus: true`).",
    )
    from_: Literal["targets"] | None = Field(
        None,
        alias="from",
        description="`targets`: count the `monitoring.targets` of `role` whose scrape answers (instead of "
        "a query).",
    )
    role: Literal["vllm", "dcgm", "node", "process"] | None = Field(
        None, description="With `from: targets`: the role whose endpoints are counted."
    )
    capacity_per_instance: Expr | None = Field(
        None,
        description="One instance's capacity in ok responses per second, e.g. `50/s`; default: measured "
        "(the run's knee divided by the instances ready there).",
    )
    band: Expr = Field(
        "10%", description="Throughput has caught up when ok/s is within this share below the offered rate."
    )
    hold: Expr = Field("3s", description="... for this many seconds in a row. " + DURATION_HELP)


class MonitoringSpec(Strict):
    """What is watched during the run, besides the requests: the target's /metrics and the host are always
    sampled into the run folder; a Prometheus server can be added."""

    prometheus: bool = Field(
        False,
        description="Also run Debian's `prometheus` on loopback with monitoring/prometheus's config, "
        "scraping the target, scenariokit's live metrics endpoint and `targets` (a job per role), as "
        "`--monitor prometheus`; its data stays in the run folder.",
    )
    interval: Expr = Field(
        "1s",
        description="How often the target and the host are sampled (and Prometheus scrapes), 100ms to 1m. "
        + DURATION_HELP,
    )
    targets: list[MonitorTargetSpec] = Field(
        default_factory=list,
        max_length=MAX_MONITOR_TARGETS,
        description=f"At most {MAX_MONITOR_TARGETS} more endpoints scraped on the same tick (exporters of "
        "the model server's processes, the node, the GPUs).",
    )
    instances: InstancesSpec | None = Field(
        None,
        description="Ready target instances over time, for autoscaling runs: "
        "`{query: 'count(up{job=\"vllm\"} == 1)'}` or `{from: targets, role: vllm}`; the summary gives "
        "time-to-scale.",
    )


FAULT_KINDS = (
    "kill-target",
    "latency",
    "bandwidth",
    "reset",
    "hang",
    "drop",
    "packet-loss",
    "server-latency",
    "server-errors",
    "stall-worker",
)
# A fault's name is a window name (`during X`, `after X`), written like a stage label.
WINDOW_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*([-.][A-Za-z0-9_]+)*$"


class RandomTimeSpec(Strict):
    """One start time drawn uniformly between two times, from the seed (the same every run)."""

    between: list[Expr] = Field(
        ..., min_length=2, max_length=2, description="Earliest and latest start, e.g. `[1m, 9m]`."
    )
    seed: int | None = Field(None, description="Seed of the draw (default: the scenario's `seed`).")


class RecoverySpec(Strict):
    """How `recovery_time(<fault>)` reads recovery: the steady state before the fault and the band a second
    must be back in, held for `hold` seconds in a row (docs/dsl-reference.md)."""

    steady: Expr | None = Field(
        None, description="The steady state: this long before the fault (default 30s)."
    )
    hold: Expr | None = Field(None, description="Seconds in a row back within the band (default 3s).")
    error_rate: Expr | None = Field(
        None, description="Error-rate points allowed above the steady rate (default 1%)."
    )
    p95: Expr | None = Field(
        None, description="p95 allowed, as a factor of the steady p95 (default 1.5x; plus 10 ms)."
    )


class FaultSpec(Strict):
    """One fault injected on schedule: a kind, its parameters, when, and for how long (docs/chaos.md)."""

    name: str = Field(
        ...,
        min_length=1,
        max_length=64,
        pattern=WINDOW_NAME_PATTERN,
        description="Its window name in SLOs (`during outage`, `after outage`): unique, and not a stage's.",
    )
    kind: Literal[FAULT_KINDS] = Field(  # type: ignore[valid-type]
        ...,
        description="`kill-target`; network faults through the runner's proxy: `latency`, `bandwidth`, "
        "`reset`, `hang`, `drop`, `packet-loss`; the embedded server's own: `server-latency`, "
        "`server-errors`, `stall-worker`.",
    )
    at: Expr | None = Field(None, description="Start once, this long after the run's start. " + DURATION_HELP)
    every: Expr | None = Field(None, description="Start every this long (first at `from`, default `every`).")
    from_: Expr | None = Field(None, alias="from", description="With `every`: the first start.")
    random: RandomTimeSpec | None = Field(None, description="Start once at a seeded random time.")
    duration: Expr | None = Field(
        None,
        description="How long the fault lasts; for `kill-target` how long the target stays down before it is "
        "restarted (default 0s: at once). " + DURATION_HELP,
    )
    # kill-target
    signal: Literal["SIGKILL", "SIGTERM"] | None = Field(None, description="kill-target: default SIGKILL.")
    instance: Literal["random"] | Annotated[int, Field(ge=0)] | None = Field(
        None, description="kill-target on several embedded instances: `random` (seeded, default) or an index."
    )
    exec_: list[CommandArg] | None = Field(
        None,
        alias="exec",
        min_length=1,
        max_length=MAX_COMMAND_ARGS,
        description="kill-target on an external target: an argv list (no shell) run with `--allow-exec`.",
        examples=[["kubectl", "delete", "pod", "-l", "app=vllm"]],
    )
    # network and server-side faults
    delay: Expr | None = Field(None, description="latency, server-latency: added time, e.g. `200ms`.")
    jitter: Expr | None = Field(None, description="latency: spread around `delay` (default 0s).")
    rate: Expr | None = Field(None, description="bandwidth: bytes per second each way, e.g. `100KB/s`.")
    share: Expr | None = Field(
        None, description="reset, hang, drop, packet-loss, server-errors: the share affected, e.g. `10%`."
    )
    stall: Expr | None = Field(None, description="packet-loss: the stall per lost packet (default 200ms).")
    recovery: RecoverySpec | None = Field(
        None,
        description="The band `recovery_time(<fault>)` waits for: "
        "`{steady: 30s, hold: 3s, error_rate: 1%, p95: 1.5x}`.",
    )


DataEntry = Annotated[str | DatasetSpec, Field(description="A source string, or a mapping with options.")]


def _registered_engine(value: str) -> str:
    """An engine name from the one registry (`scenariokit.engines`), reported like a literal choice."""
    names = engine_names()
    if value not in names:
        expected = (
            ", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}"
            if len(names) > 1
            else repr(names[0])
        )
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return value


def _engine_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = engine_names()  # read when the schema is generated: registered engines appear too


class ScenarioSpec(Strict):
    """A scenariokit load-test scenario."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"$id": "https://scenariokit.dev/schemas/scenario.schema.json"},
    )

    version: Literal[1] = Field(..., description="DSL version; always 1 for now.")
    name: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    target: TargetSpec
    load: LoadSpec
    data: dict[DatasetName, DataEntry] = Field(
        default_factory=dict,
        description="Named data sets; a name is letters, digits, `_` and `-`, starting with a letter or `_`.",
    )
    requests: dict[str, RequestSpec] = Field(..., min_length=1)
    slo: list[Expr] = Field(default_factory=list, description="SLOs such as `p99(latency) < 500ms`.")
    engine: Annotated[str, AfterValidator(_registered_engine)] = Field(
        DEFAULT_ENGINE,
        description="The stock engine that runs the scenario.",
        json_schema_extra=_engine_enum,
    )
    seed: int = Field(0, description="Seed for request and data selection.")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    abort_when: Expr | list[Expr] = Field(
        default_factory=list,
        description="Rules that end the run at once (exit 1) when they hold over their trailing window: "
        "`error_rate > 20% over 10s`, `success_rate < 50% over 30s`; one rule or a list.",
        examples=["error_rate > 20% over 10s"],
    )
    faults: list[FaultSpec] = Field(
        default_factory=list,
        max_length=MAX_FAULTS,
        description=f"At most {MAX_FAULTS} faults injected on schedule during the run (docs/chaos.md).",
    )


# Fields a request may use per form; used for "did you mean" and form checks in lowering.
CHAT_FIELDS = frozenset({"prompt", "image", "system", "max_tokens", "temperature", "stream", "model"})
REST_FIELDS = frozenset({"method", "path", "json_body", "body"})
