"""What the engines' runtimes still do themselves, each fed the same cases in Python and JavaScript.

The compiler does the request semantics (compile/ir.py: templates parsed into parts, headers merged, the
stage table; engines/outcomes.py: the failure table) and each codegen writes them into its script as data.
A runtime keeps only the small functions that read that data per request: join a template's parts with a
data record (`render`), find the stage at a moment, name a failure that left no response, and read a chat
answer. Each is run here on one table of cases, through the codegen's own conversion to the script's data:

- the Locust runtime, imported in a subprocess (importing Locust patches the process with gevent);
- the k6 runtime under node, its k6 imports replaced by empty stand-ins (none of them is called here);
- the compiler's Python reading, where there is one (the stage table, the failure table).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from scenariokit.compile.ir import DataRef, EnvRef, JsonTemplate, LiteralText, Stage, StageTable, Template
from scenariokit.engines.k6.codegen import js_json, js_literal
from scenariokit.engines.locust.codegen import as_data
from scenariokit.engines.outcomes import FAILURES, failure_kind, sample_message
from tests.support.engines import NODE, needs_node

ROOT = Path(__file__).resolve().parents[1]
LOCUST_FILES = ROOT / "src/scenariokit/engines/locust/files"
K6_RUNTIME = ROOT / "src/scenariokit/engines/k6/files/scenariokit-runtime.js"
ENV = {"KEY": "s3cr$t&", "EMPTY": ""}  # the environment both runtimes render with; UNSET is not in it


def run_locust(function: str, cases: list[Any]) -> list[Any]:
    """`function(case)` for each case, in a Python process that imported the Locust runtime."""
    program = f"""
import json, sys
sys.path.insert(0, {str(LOCUST_FILES)!r})
import scenariokit_locust_runtime as sk
{function}
print(json.dumps([run(case) for case in json.loads(sys.stdin.read())]))
"""
    env = {"PATH": "/usr/bin:/bin", **ENV}
    ran = subprocess.run(
        [sys.executable, "-c", program], input=json.dumps(cases), capture_output=True, text=True, env=env
    )
    assert ran.returncode == 0, ran.stderr
    result: list[Any] = json.loads(ran.stdout)
    return result


def runtime_module() -> str:
    """The k6 runtime as a module node imports: each k6 import an empty stand-in, __ENV the global ENV."""
    stubs, body = ["const __ENV = globalThis.__ENV;"], []
    for line in K6_RUNTIME.read_text(encoding="utf-8").splitlines():
        match = re.match(r"import (?:\{(.*)\}|(\w+)) from ", line)
        if match and match.group(1):
            stubs += [f"class {name.strip()} {{}}" for name in match.group(1).split(",")]
        elif match:
            stubs.append(f"const {match.group(2)} = {{}};")
        else:
            body.append(line)
    return "data:text/javascript;base64," + base64.b64encode("\n".join([*stubs, *body]).encode()).decode()


def run_k6(program: str) -> Any:
    """What a node program prints (one JSON value), run with the runtime imported as `rt`."""
    assert NODE is not None
    source = (
        f"globalThis.__ENV = {json.dumps(ENV)};\nconst rt = await import({json.dumps(runtime_module())});\n"
    )
    ran = subprocess.run(
        [NODE, "--input-type=module"], input=source + program, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


# --- render: a template's parts joined with one record of each data set --------------------------------


def data(dataset: str, field: str) -> DataRef:
    return DataRef(dataset, field)


def text(*parts: str | DataRef | EnvRef) -> Template:
    return Template(tuple(LiteralText(p) if isinstance(p, str) else p for p in parts))


ROW = {"images": {"data_url": "data:image/png;base64,AAAA", "text": 'HI "$&" </script>\u2028'}}
RENDER_CASES: list[tuple[JsonTemplate, Any]] = [
    ("plain {text} ${stays}", "plain {text} ${stays}"),
    (text("Bearer ", EnvRef("KEY")), "Bearer s3cr$t&"),
    (text("Bearer ", EnvRef("UNSET"), "!"), "Bearer !"),
    (text(EnvRef("EMPTY")), ""),
    (text(data("images", "text")), ROW["images"]["text"]),
    (text("a", data("images", "text"), "-", data("images", "data_url"), EnvRef("KEY")), None),
    (text("\u2028</script>${{", data("images", "text")), "\u2028</script>${{" + ROW["images"]["text"]),
    (
        {
            "url": text(data("images", "data_url")),
            "n": [1, 2.5, None, True, text("x", EnvRef("KEY"))],
            "k": "v",
        },
        {"url": "data:image/png;base64,AAAA", "n": [1, 2.5, None, True, "xs3cr$t&"], "k": "v"},
    ),
    ({"nested": [{"deep": [text(data("images", "text"))]}], "{{": "}}"}, None),
]


def expected_render(value: JsonTemplate) -> Any:
    """What rendering must give: the table's value, or where it says None, the parts joined here."""
    if isinstance(value, Template):
        return "".join(
            p.text if isinstance(p, LiteralText) else ENV.get(p.name, "") if isinstance(p, EnvRef) else
            ROW[p.dataset][p.field or ""]
            for p in value.parts
        )  # fmt: skip
    if isinstance(value, dict):
        return {k: expected_render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expected_render(v) for v in value]
    return value


def test_render_is_the_same_in_both_runtimes() -> None:
    expected = [want if want is not None else expected_render(value) for value, want in RENDER_CASES]
    locust = run_locust(
        "import ast\ndef run(case): return sk.render_json(ast.literal_eval(case[0]), case[1])",
        [[repr(as_data(value)), ROW] for value, _ in RENDER_CASES],
    )
    assert locust == expected
    if NODE is not None:
        values = ", ".join(js_json(value) for value, _ in RENDER_CASES)
        k6 = run_k6(
            f"const template = rt.template;\nconst row = {js_literal(ROW)};\n"
            f"console.log(JSON.stringify([{values}].map((value) => rt.renderJson(value, row))));\n"
        )
        assert k6 == expected


def test_a_template_is_data_the_runtimes_only_join() -> None:
    """A template's literal text is never scanned again: `${env:KEY}` written as literal text stays."""
    literal = text("${env:KEY} {images.text} {{", data("images", "text"))
    (got,) = run_locust(
        "import ast\ndef run(case): return sk.render(ast.literal_eval(case[0]), case[1])",
        [[repr(as_data(literal)), ROW]],
    )
    assert got == "${env:KEY} {images.text} {{" + ROW["images"]["text"]


# --- the stage at a moment: label and level -----------------------------------------------------------

CURVES = {
    # ramp, hold, a spike's jump up, hold and jump back down, hold, ramp to 0
    "spike-inside": (
        Stage("ramp", "ramp", 10, 0, 4),
        Stage("hold", "hold", 5, 4, 4),
        Stage("spike", "peak", 0, 4, 20),
        Stage("spike", "peak", 5, 20, 20),
        Stage("spike", "peak", 0, 20, 4),
        Stage("ramp", "down", 5, 4, 0),
    ),
    "spike-first-and-last": (
        Stage("spike", "s", 0, 0, 8),
        Stage("spike", "s", 3, 8, 8),
        Stage("spike", "s", 0, 8, 0),
    ),
    "jumps-only": (Stage("spike", "j", 0, 0, 5),),
    "none": (),
}
MOMENTS = [-1.0, 0.0, 2.5, 9.999, 10.0, 12.0, 15.0, 17.5, 20.0, 24.9, 25.0, 99.0]


def python_stages() -> dict[str, list[tuple[str, float]]]:
    out = {}
    for name, stages in CURVES.items():
        table = StageTable.of(stages)
        out[name] = [[(w.label if (w := table.window_at(t)) else ""), table.level_at(t)] for t in MOMENTS]
    return out


def test_the_stage_at_a_moment_is_the_compilers_in_both_runtimes() -> None:
    expected = python_stages()
    rows = {name: [vars(row) for row in StageTable.of(stages).stages] for name, stages in CURVES.items()}
    (locust,) = run_locust(
        "def run(case):\n"
        "    out = {}\n"
        "    for name, rows in case['rows'].items():\n"
        "        stages = [sk.Stage(**row) for row in rows]\n"
        "        out[name] = [list(sk.stage_and_level(stages, t)) for t in case['moments']]\n"
        "    return out",
        [{"rows": rows, "moments": MOMENTS}],
    )
    assert locust == expected
    if NODE is not None:
        k6_rows = {  # as the k6 codegen writes them
            name: [{"label": r.label, "kind": r.kind, "start": r.start_s, "end": r.end_s} for r in table]
            for name, table in ((n, StageTable.of(stages).stages) for n, stages in CURVES.items())
        }
        k6 = run_k6(
            f"const rows = {js_literal(k6_rows)};\nconst moments = {json.dumps(MOMENTS)};\n"
            "const out = {};\n"
            "for (const [name, stages] of Object.entries(rows)) {\n"
            "  const windows = rt.stageWindows(stages);\n"
            "  const at = (t) => windows[rt.stageAfter(windows, 0, t)] || { label: '' };\n"
            "  out[name] = moments.map((t) => at(t).label);\n"
            "}\n"
            "console.log(JSON.stringify(out));\n"
        )
        assert k6 == {name: [label for label, _ in rows] for name, rows in expected.items()}


def test_the_stage_table_walks_the_curve() -> None:
    table = StageTable.of(CURVES["spike-inside"])
    assert [w.label for w in table.windows] == ["ramp", "hold", "peak", "down"]
    assert [(w.start_s, w.end_s) for w in table.windows] == [(0, 10), (10, 15), (15, 20), (20, 25)]
    assert table.intervals("spike") == table.intervals("peak") == [(15, 20)]
    assert [table.level_at(t) for t in (5, 15, 19.9, 20, 25)] == [2, 20, 20, 4, 0]


# --- a failure without a response -----------------------------------------------------------------

FAILURE_CASES: list[tuple[str, tuple[str, ...], int, str]] = [
    # message, exception classes (the error's and its bases), k6 error code: kind
    (
        "[Errno 111] Connection refused",
        ("ConnectionRefusedError", "ConnectionError", "OSError"),
        0,
        "connection_refused",
    ),
    ("dial tcp 127.0.0.1:9: connect: connection refused", (), 1212, "connection_refused"),
    ("", (), 1212, "connection_refused"),
    ("", ("ConnectionRefusedError",), 0, "connection_refused"),
    ("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer", (), 1220, "connection_reset"),
    ("[Errno 32] Broken pipe", ("BrokenPipeError", "ConnectionError"), 0, "connection_reset"),
    ("write: broken pipe", (), 0, "connection_reset"),
    ("", (), 1201, "connection_reset"),
    ("timed out", ("TimeoutError", "OSError"), 0, "timeout"),
    ("ConnectTimeout: ", ("ConnectTimeout",), 0, "timeout"),
    ("request timeout", (), 1050, "timeout"),
    ("dial: i/o timeout", (), 1211, "timeout"),
    ("EOF", (), 1000, "other"),
    ('malformed HTTP response "HELLO"', (), 1000, "other"),
    # the generator's own limits, named the same from Go's message and Python's
    ("dial: unknown errno 24 error with msg `too many open files`", (), 1213, "too_many_open_files"),
    ("dial tcp 127.0.0.1:80: socket: too many open files", (), 1000, "too_many_open_files"),
    ("[Errno 24] Too many open files", ("OSError",), 0, "too_many_open_files"),
    (
        "dial: unknown errno 99 error with msg `cannot assign requested address`",
        (),
        1213,
        "address_unavailable",
    ),
    ("[Errno 99] Cannot assign requested address", ("OSError",), 0, "address_unavailable"),
    ("lookup: no such host", (), 1101, "dns"),
    ("lookup example.invalid: i/o timeout", (), 1100, "dns"),  # a lookup that timed out: DNS first
    ("[Errno -2] Name or service not known", ("gaierror", "OSError"), 0, "dns"),
    ("x509: unknown authority", (), 1310, "tls"),
    ("SSLError: certificate verify failed", ("SSLError", "OSError"), 0, "tls"),
    ("", (), 0, "other"),
]


def test_failures_are_named_by_the_one_table_in_both_runtimes() -> None:
    assert [failure_kind(m, names, code) for m, names, code, _ in FAILURE_CASES] == [
        kind for *_, kind in FAILURE_CASES
    ]
    # each runtime sees what its engine gives it: Locust the exception (class and message), k6 a code and
    # a message; each must name it as the table does from the same
    rows = [[f.kind, list(f.exceptions), list(f.fragments)] for f in FAILURES]
    locust = run_locust(
        "def run(case): return sk.classify(case[0], case[1], case[2])",
        [[list(names), message, rows] for message, names, _, _ in FAILURE_CASES],
    )
    assert locust == [failure_kind(message, names) for message, names, _, _ in FAILURE_CASES]
    if NODE is not None:
        k6_rows = [[f.kind, list(f.k6_codes), list(f.fragments)] for f in FAILURES]
        cases = [[code, message] for message, _, code, _ in FAILURE_CASES]
        k6 = run_k6(
            f"const rows = {json.dumps(k6_rows)};\n"
            f"console.log(JSON.stringify({json.dumps(cases)}.map(([c, m]) => rt.failureKind(rows, c, m))));\n"
        )
        assert k6 == [failure_kind(message, (), code) for message, _, code, _ in FAILURE_CASES]


SECRET = "sk-live-canary-5f0c1e9b7d"
MESSAGE_CASES: list[tuple[str, list[str], str]] = [
    # message, secrets (the request's header values and env values): what a record keeps
    ("dial: connection refused", [], "dial: connection refused"),
    # a client that refuses a header quotes its value: redacted, and a longer secret before a shorter one
    (
        f"invalid value for header field 'X': '{SECRET}\u20ac'",
        [SECRET, "sk-l"],
        "invalid value for header field 'X': '[redacted]\u20ac'",
    ),
    ("short values stay: 1 abc", ["1", "abc"], "short values stay: 1 abc"),
    # control characters (C0, DEL, C1, line separators) become one space; ends trimmed
    ("\r\nline one\x00\x1b[31m\x7f\x85line\u2028two\t\n", [], "line one [31m line two"),
    ("x" * 250, [], "x" * 199 + "\u2026"),  # cut at 200 characters
    ("\U0001f600" * 201, [], "\U0001f600" * 199 + "\u2026"),  # characters, not UTF-16 units
    # redacted before the cut: a secret that straddles character 200 leaves no prefix
    ("y" * 190 + SECRET, [SECRET], "y" * 190 + "[redacted]"),
]


def test_failure_messages_are_cleaned_alike_in_both_runtimes() -> None:
    assert [sample_message(m, secrets) for m, secrets, _ in MESSAGE_CASES] == [w for *_, w in MESSAGE_CASES]
    locust = run_locust("def run(case): return sk.sample_message(case[0], case[1])", MESSAGE_CASES)
    assert locust == [w for *_, w in MESSAGE_CASES]
    if NODE is not None:
        cases = json.dumps([[m, secrets] for m, secrets, _ in MESSAGE_CASES])
        k6 = run_k6(f"console.log(JSON.stringify({cases}.map(([m, s]) => rt.sampleMessage(m, s))));\n")
        assert k6 == [w for *_, w in MESSAGE_CASES]


def test_the_locust_runtime_names_real_exceptions_by_their_classes() -> None:
    got = run_locust(
        "import socket\n"
        "class Custom(ConnectionResetError): pass\n"
        "ERRORS = [ConnectionRefusedError(111, 'x'), Custom('x'), BrokenPipeError(), socket.timeout(),\n"
        "          TimeoutError(), OSError('Connection reset by peer'), ValueError('nope')]\n"
        "def run(case): return sk.failure_kind(ERRORS[case[0]], case[1])",
        [[i, [[f.kind, f.exceptions, f.fragments] for f in FAILURES]] for i in range(7)],
    )
    assert got == [
        "connection_refused",
        *["connection_reset"] * 2,
        "timeout",
        "timeout",
        "connection_reset",
        "other",
    ]


# --- a chat answer (a bad one is bad_stream) -------------------------------------------------------

COMPLETION = json.dumps(
    {"choices": [{"message": {"content": "HELLO world"}}], "usage": {"completion_tokens": 2}}
)


def sse(*events: str) -> str:
    return "".join(f"data: {e}\n\n" for e in events)


def chunk(content: Any) -> str:
    return json.dumps({"choices": [{"delta": {"content": content}}]})


CHAT_CASES: list[tuple[str, bool, str | None]] = [
    # body, streamed: the answer, None for bad_stream
    (COMPLETION, False, "HELLO world"),
    (json.dumps({"choices": [{"message": {"content": None}}]}), False, ""),
    (json.dumps({"choices": [{"message": {"content": 5}}]}), False, ""),
    (json.dumps({"choices": []}), False, None),
    (json.dumps({"choices": [{"message": {}}]}), False, None),
    (json.dumps({"choices": [{"message": "text"}]}), False, None),
    (json.dumps([1]), False, None),
    ("not json", False, None),
    ("", False, None),
    (
        sse(
            chunk("HEL"),
            chunk("LO"),
            json.dumps({"choices": [], "usage": {"completion_tokens": 2}}),
            "[DONE]",
        ),
        True,
        "HELLO",
    ),
    (sse(chunk("A"), "[DONE]", "not json"), True, "A"),  # nothing after [DONE] is read
    (
        ": keep-alive\n\n" + sse(chunk(None), chunk(" B"), json.dumps({"choices": [{"delta": {}}]})),
        True,
        " B",
    ),
    (sse(chunk("A"), "not json", chunk("B")), True, None),
    (sse(chunk("A"), "5"), True, None),
    (sse(chunk("A"), ""), True, None),
    ("", True, ""),
]


def test_chat_answers_and_bad_streams_are_the_same_in_both_runtimes() -> None:
    expected = [want for *_, want in CHAT_CASES]
    locust = run_locust(
        "import io, time\n"
        "class Raw:\n"
        "    def __init__(self, body): self.lines = io.BytesIO(body.encode())\n"
        "    def readline(self, _): return self.lines.readline()\n"
        "class Response:\n"
        "    def __init__(self, body): self._response = Raw(body)\n"
        "def run(case):\n"
        "    body, stream = case\n"
        "    if not stream:\n"
        "        answer = sk.chat_answer(body)\n"
        "        return None if answer is None else answer[0]\n"
        "    measured = sk.Measured()\n"
        "    sk.read_stream(Response(body), time.perf_counter(), measured)\n"
        "    return None if measured.error == 'bad_stream' else measured.answer",
        [[body, stream] for body, stream, _ in CHAT_CASES],
    )
    assert locust == expected
    if NODE is not None:
        cases = [[body, stream] for body, stream, _ in CHAT_CASES]
        k6 = run_k6(
            f"console.log(JSON.stringify({json.dumps(cases)}.map(([b, s]) => rt.chatAnswer(b, s))));\n"
        )
        assert k6 == expected


@needs_node
def test_the_k6_runtime_loads_with_stand_ins_for_k6() -> None:
    exported = set(run_k6("console.log(JSON.stringify(Object.keys(rt)));\n"))
    assert {
        "Runner",
        "template",
        "render",
        "renderJson",
        "stageAfter",
        "failureKind",
        "chatAnswer",
    } <= exported
