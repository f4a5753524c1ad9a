"""`scenariokit import`: a locustfile read as a syntax tree becomes a scenario that validates and compiles.

The reference guide's locustfile (tests/fixtures/guide_locustfile.py, typed in by us in its shape) is the
headline row; one-line tables cover each construct translated, each one warned about (with its line and
column), the -u/-r/-t curve, and the hostile inputs, which end in exit 2 with a positioned error and no
output written. The wire comparison against stock Locust is tests/test_import_wire.py.
"""

from __future__ import annotations

import ast
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from scenariokit.cli import main
from scenariokit.compile.diagnostics import Span
from scenariokit.compile.expr import parse_template
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario
from scenariokit.importers.curve import LoadOptions, load_curve
from scenariokit.importers.emit import flow, scalar, template
from scenariokit.importers.locust import MAX_INLINED_NODES, inline_constants

FIXTURE = Path(__file__).parent / "fixtures" / "guide_locustfile.py"
HEADER = "from locust import HttpUser, task, between, constant, constant_pacing, constant_throughput\n"


def run_import(
    tmp_path: Path, source: str | bytes, *flags: str, name: str = "locustfile.py"
) -> tuple[int, Path]:
    path = tmp_path / name
    if isinstance(source, bytes):
        path.write_bytes(source)
    else:
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    out = tmp_path / "scenario.yaml"
    code = main(["import", str(path), "-o", str(out), *flags])
    return code, out


def imported(tmp_path: Path, body: str, *flags: str) -> dict[str, Any]:
    """The scenario (as data) for a locustfile of HEADER + `body`; it must import and validate."""
    code, out = run_import(tmp_path, HEADER + textwrap.dedent(body), *flags)
    assert code == 0
    return yaml.safe_load(out.read_text(encoding="utf-8"))


def user(tasks: str, attributes: str = "wait_time = between(1, 2)") -> str:
    return f"class U(HttpUser):\n    {attributes}\n" + textwrap.indent(textwrap.dedent(tasks), "    ")


# --- the reference guide's locustfile -------------------------------------------------------------------


def test_the_guides_locustfile_imports_validates_and_compiles_to_both_engines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "guide.yaml"
    flags = ["-u", "10000", "-r", "100", "-t", "10m", "--host", "http://your-service"]
    assert main(["import", str(FIXTURE), "-o", str(out), *flags]) == 0
    printed = capsys.readouterr()
    assert "3 requests (1 with several requests in order) from 1 user class, 0 warnings" in printed.out
    assert printed.err == ""
    scenario = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert scenario["target"] == {"kind": "http", "base_url": "http://your-service"}
    assert scenario["load"] == {
        "model": "closed",
        "curve": "ramp(0, 10000, 100/s) -> hold(8m20s)",
        "think_time": "between(0.5s, 2.5s)",
    }
    requests = scenario["requests"]
    assert {name: r["weight"] for name, r in requests.items()} == {
        "identify_object": 3,
        "identify_text": 1,
        "test_error_cases": 1,
    }
    assert requests["identify_text"] == {
        "weight": 1,
        "method": "POST",
        "path": "/api/ocr",
        "json": {"image_url": "https://example.com/test2.jpg"},
    }
    assert scenario["slo"] == ["error_rate < 1%"]  # Locust's exit 1 on any failure, as an SLO that can decide
    bodies = [step["json"] for step in requests["test_error_cases"]["steps"]]
    assert bodies == [{"image_url": ""}, {"wrong_field": "test"}]
    loaded = load_scenario(out)
    for engine in ("locust", "k6"):
        script = compile_scenario(loaded.scenario, engine)
        assert script.files, engine
        assert not [d for d in script.diagnostics if d.severity.value == "error"], engine


def test_the_yaml_names_the_source_lines(tmp_path: Path) -> None:
    out = tmp_path / "guide.yaml"
    assert main(["import", str(FIXTURE), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    source = FIXTURE.read_text(encoding="utf-8").splitlines()
    for function in ("identify_object", "identify_text", "test_error_cases"):
        line = next(i for i, s in enumerate(source, 1) if f"def {function}" in s)
        assert f"RecognitionUser.{function} (@task" in text and f"line {line}" in text
    assert "RecognitionUser.wait_time = between(0.5, 2.5), line" in text
    assert "read, never run" in text


# --- what is translated -------------------------------------------------------------------------------

# (locustfile body after HEADER, flags, path into the scenario, expected value)
TRANSLATED: list[tuple[str, str, tuple[str, ...], Any]] = [
    (user("@task\ndef a(self):\n    self.client.get('/x')"), "", ("requests", "a", "weight"), 1),
    (user("@task(7)\ndef a(self):\n    self.client.get('/x')"), "", ("requests", "a", "weight"), 7),
    (user("@task\ndef a(self):\n    self.client.get('/x')"), "", ("requests", "a", "method"), "GET"),
    (user("@task\ndef a(self):\n    self.client.delete('/x/1')"), "", ("requests", "a", "method"), "DELETE"),
    (
        user("@task\ndef a(self):\n    self.client.request('PATCH', '/x')"),
        "",
        ("requests", "a", "method"),
        "PATCH",
    ),
    (user("@task\ndef a(self):\n    self.client.put('/x', 'text')"), "", ("requests", "a", "body"), "text"),
    (
        user("@task\ndef a(self):\n    self.client.get('/x', params={'q': 1})"),
        "",
        ("requests", "a", "path"),
        "/x?q=1",
    ),
    (user("@task\ndef a(self):\n    self.client.get('x')"), "", ("requests", "a", "path"), "/x"),
    (
        user("@task\ndef a(self):\n    self.client.get('http://h:1/y?z')"),
        "",
        ("requests", "a", "path"),
        "/y?z",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x', timeout=2.5)"),
        "",
        ("requests", "a", "timeout"),
        "2.5s",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x', timeout=(1, 9))"),
        "",
        ("requests", "a", "timeout"),
        "9s",
    ),
    (
        user("@task\ndef a(self):\n    self.client.post('/x', data={'k': 'v w'})"),
        "",
        ("requests", "a"),
        {
            "weight": 1,
            "method": "POST",
            "path": "/x",
            "body": "k=v+w",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    ),
    (
        user(
            "@task\ndef a(self):\n"
            "    self.client.post('/x', json={'n': (1, -2.5, None, True)}, headers={'X-K': 'v'})"
        ),
        "",
        ("requests", "a"),
        {
            "weight": 1,
            "method": "POST",
            "path": "/x",
            "json": {"n": [1, -2.5, None, True]},
            "headers": {"X-K": "v"},
        },
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x', name='by-name')"),
        "",
        ("requests", "by-name", "path"),
        "/x",
    ),
    (
        user(
            "tasks = {f: 5, g: 1}",
            "wait_time = between(1, 2)\n    def f(self): self.client.get('/f')\n"
            "    def g(self): self.client.get('/g')",
        ),
        "",
        ("requests",),
        {
            "f": {"weight": 5, "method": "GET", "path": "/f"},
            "g": {"weight": 1, "method": "GET", "path": "/g"},
        },
    ),
    (
        "def f(user):\n    user.client.get('/f')\n" + user("tasks = [f, f]"),
        "",
        ("requests", "f", "weight"),
        2,
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x')", "wait_time = constant(3)"),
        "",
        ("load", "think_time"),
        "constant(3s)",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x')", "wait_time = constant(0)"),
        "",
        ("load", "think_time"),
        "none",
    ),
    (user("@task\ndef a(self):\n    self.client.get('/x')", "pass"), "", ("load", "think_time"), "none"),
    (
        user("@task\ndef a(self):\n    self.client.get('/x')", "wait_time = constant_throughput(2)"),
        "-u 10 -r 5 -t 1m",
        ("load",),
        {
            "model": "open",
            "curve": "ramp(0, 20/s, 10/s) -> hold(58s)",
            "pre_allocated_users": 10,
            "max_users": 10,
        },
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x')", "wait_time = constant_pacing(4)"),
        "-u 8 -r 8 -t 30s",
        ("load", "curve"),
        "ramp(0, 2/s, 2/s) -> hold(29s)",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x')", "host = 'http://h:8/'"),
        "",
        ("target", "base_url"),
        "http://h:8",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x')", "host = 'http://h:8'"),
        "--host http://o:9",
        ("target", "base_url"),
        "http://o:9",
    ),
    (
        user(
            "@task\ndef a(self):\n    with self.client.get('/x', catch_response=True) as r:\n"
            "        if r.status_code != 201:\n            r.failure('no')\n"
            "        if 'done' not in r.text:\n            r.failure('no')"
        ),
        "",
        ("requests", "a", "expect"),
        {"status": [201], "contains": "done"},
    ),
    (
        user(
            "@task\ndef a(self):\n    with self.client.post('/x', catch_response=True) as resp:\n"
            "        if resp.status_code in (400, 422):\n            resp.success()\n"
            "        else:\n            resp.failure('no')"
        ),
        "",
        ("requests", "a", "expect"),
        {"status": [400, 422]},
    ),
    (
        user(
            "def on_start(self):\n    self.client.post('/login', json={'u': 'a'})\n"
            "@task\ndef a(self):\n    self.client.get('/x')"
        ),
        "",
        ("requests", "on_start", "weight"),
        0,
    ),
    # two classes, 3:1 by weight: each class's tasks share its part of the mix
    (
        "class A(HttpUser):\n    weight = 3\n    @task(1)\n    def a(self): self.client.get('/a')\n"
        "    @task(2)\n    def b(self): self.client.get('/b')\n"
        "class B(HttpUser):\n    @task\n    def a(self): self.client.get('/c')\n",
        "",
        ("requests",),
        {
            "A_a": {"weight": 1, "method": "GET", "path": "/a"},
            "A_b": {"weight": 2, "method": "GET", "path": "/b"},
            "B_a": {"weight": 1, "method": "GET", "path": "/c"},
        },
    ),
    # fixed_count users first (1 of -u 4), the rest by weight; a returned request is sent too
    (
        "class A(HttpUser):\n    fixed_count = 1\n    @task\n    def a(self): self.client.get('/a')\n"
        "class B(HttpUser):\n    @task\n    def b(self): return self.client.get('/b')\n",
        "-u 4",
        ("requests",),
        {
            "A_a": {"weight": 1, "method": "GET", "path": "/a"},
            "B_b": {"weight": 3, "method": "GET", "path": "/b"},
        },
    ),
    # a subclass inherits its base class's tasks and wait time (Locust's metaclass)
    (
        "class A(HttpUser):\n    abstract = True\n    wait_time = constant(2)\n"
        "    @task\n    def a(self): self.client.get('/a')\n"
        "class B(A):\n    @task(4)\n    def b(self): self.client.get('/b')\n",
        "",
        ("requests",),
        {
            "a": {"weight": 1, "method": "GET", "path": "/a"},
            "b": {"weight": 4, "method": "GET", "path": "/b"},
        },
    ),
    # FastHttpUser, and Locust's names through an alias and through the module
    (
        "from locust.contrib.fasthttp import FastHttpUser as Fast\nclass F(Fast):\n"
        "    @task(2)\n    def a(self): self.client.head('/h')\n",
        "",
        ("requests", "a"),
        {"weight": 2, "method": "HEAD", "path": "/h"},
    ),
    (
        "import locust\nclass L(locust.HttpUser):\n    wait_time = locust.between(2, 4)\n"
        "    @locust.task\n    def a(self): self.client.options('/o')\n",
        "",
        ("load", "think_time"),
        "between(2s, 4s)",
    ),
    # module constants, alone and in f-strings, are values; a name bound twice is not
    (
        "BASE = '/api'\nBODY = {'image_url': 'https://e/x.jpg'}\nWAIT = 2\n"
        + user(
            "@task\ndef a(self):\n    self.client.post(f'{BASE}/identify', json=BODY)",
            "wait_time = constant(WAIT)",
        ),
        "",
        ("requests", "a"),
        {"weight": 1, "method": "POST", "path": "/api/identify", "json": {"image_url": "https://e/x.jpg"}},
    ),
    (
        "BASE = '/api'\n" + user("@task\ndef a(self):\n    self.client.get(BASE + '/x' + '?a=1')"),
        "",
        ("requests", "a", "path"),
        "/api/x?a=1",
    ),
    # template characters in a literal are sent as written
    (
        user("@task\ndef a(self):\n    self.client.post('/x/{id}', json={'t': '${HOME} {x}'})"),
        "",
        ("requests", "a", "json", "t"),
        "${{HOME}} {{x}}",
    ),
]


@pytest.mark.parametrize(("body", "flags", "where", "expected"), TRANSLATED)
def test_each_construct_is_translated(
    tmp_path: Path, body: str, flags: str, where: tuple[str, ...], expected: Any
) -> None:
    value: Any = imported(tmp_path, body, *flags.split())
    for key in where:
        value = value[key]
    assert value == expected


def test_a_flow_keeps_its_requests_in_order_and_names_steps_from_name(tmp_path: Path) -> None:
    body = user(
        "@task\ndef login_flow(self):\n    self.client.get('/form', name='form')\n"
        "    self.client.post('/login', data='u=a')\n    self.client.get('/me', name='/me?[id]')"
    )
    steps = imported(tmp_path, body)["requests"]["login_flow"]["steps"]
    assert [(s.get("name"), s["method"], s["path"]) for s in steps] == [
        ("form", "GET", "/form"),
        (None, "POST", "/login"),
        (None, "GET", "/me"),
    ]


# --- what is warned about, with its position -----------------------------------------------------------

# (locustfile after HEADER, the warning's line:column, a part of its message). Line 1 is HEADER.
WARNED: list[tuple[str, str, str]] = [
    (
        user(
            "@task\ndef a(self):\n    for i in range(3):\n        self.client.get('/x')"
            "\n    self.client.get('/y')"
        ),
        "6:9",
        "a `for` loop is not translated (its 1 request(s) are not sent)",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get(f'/item/{self.id}')\n    self.client.get('/y')"),
        "6:25",
        "an f-string with a variable",
    ),
    (
        user(
            "@task\ndef a(self):\n    self.client.post('/x', json={'k': make()})\n    self.client.get('/y')"
        ),
        "6:43",
        "a function call",
    ),
    (
        user("@task\ndef a(self):\n    self.grpc.call('Svc')\n    self.client.get('/y')"),
        "6:9",
        "a custom client",
    ),
    (
        "P = '/a'\nP = '/b'\n"
        + user("@task\ndef a(self):\n    self.client.get(P)\n    self.client.get('/y')"),
        "8:25",
        "the variable `P`",
    ),
    (
        user("@task\ndef a(self):\n    time.sleep(1)\n    self.client.get('/y')"),
        "6:9",
        "a pause inside a task",
    ),
    (
        user("@task\ndef a(self):\n    if self.x:\n        self.client.get('/x')\n    self.client.get('/y')"),
        "6:9",
        "a condition is not translated",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x\\r\\nHost: evil')\n    self.client.get('/y')"),
        "6:25",
        "control character",
    ),
    (
        user(
            "@task\ndef a(self):\n    self.client.get('/x', headers={'X': 'a\\r\\nB: c'})"
            "\n    self.client.get('/y')"
        ),
        "6:39",
        "not one line of text",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x', verify=False)"),
        "6:38",
        "`verify=` is not translated",
    ),
    (
        user(
            "@task\ndef a(self):\n    with self.client.post('/x', json={}, catch_response=True) as r:\n"
            "        if r.status_code != 400:\n            r.failure('no')"
        ),
        "7:13",
        "Locust still counts 400 as a failure here",
    ),
    (
        user("@task\ndef a(self):\n    self.client.get('/x')", "wait_time = lambda self: 1"),
        "3:17",
        "wait_time of its own",
    ),
    (
        "from locust import events\n@events.test_start.add_listener\ndef s(environment, **kw): pass\n"
        + user("@task\ndef a(self):\n    self.client.get('/y')"),
        "3:2",
        "an event hook is code",
    ),
    (
        "from locust import LoadTestShape\nclass S(LoadTestShape):\n    def tick(self): return None\n"
        + user("@task\ndef a(self):\n    self.client.get('/y')"),
        "3:1",
        "a load shape's tick() is code",
    ),
    (
        user("tasks = [Browse]\n@task\ndef a(self):\n    self.client.get('/y')"),
        "4:14",
        "TaskSets"[:0] + "is not a function",
    ),
    (
        user(
            "@task\ndef a(self):\n    self.client.post('/x', json={'k': " + "[" * 70 + "1" + "]" * 70 + "})"
            "\n    self.client.get('/y')"
        ),
        "6:",
        "nested deeper than 64 levels",
    ),
]


@pytest.mark.parametrize(("body", "where", "message"), WARNED)
def test_what_cannot_be_translated_is_a_positioned_warning_and_the_import_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, where: str, message: str
) -> None:
    code, out = run_import(tmp_path, HEADER + body)
    assert code == 0
    err = capsys.readouterr().err
    assert re.search(rf"locustfile\.py:{where}\S*: warning: .*{re.escape(message)}", err), err
    assert "hint" in err or "not translated" in err
    # the rest was translated and the warnings are listed in the file too
    scenario = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert any(r.get("path") == "/y" for r in scenario["requests"].values()) or "/x" in out.read_text()
    assert "# Not translated (" in out.read_text(encoding="utf-8")


def test_two_classes_that_wait_differently_keep_the_larger_ones_think_time_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = (
        "class A(HttpUser):\n    weight = 2\n    wait_time = constant(1)\n"
        "    @task\n    def a(self): self.client.get('/a')\n"
        "class B(HttpUser):\n    wait_time = constant(5)\n    @task\n    def b(self): self.client.get('/b')\n"
    )
    scenario = imported(tmp_path, body)
    assert scenario["load"]["think_time"] == "constant(1s)"
    assert re.search(r"locustfile\.py:8:1: warning: `B` waits otherwise than `A`", capsys.readouterr().err)


# --- the curve from -u/-r/-t ---------------------------------------------------------------------------

CURVES = [
    (LoadOptions("10000", "100", "10m"), "ramp(0, 10000, 100/s) -> hold(8m20s)"),
    (LoadOptions("10", "100", "30s"), "ramp(0, 10, 100/s) -> hold(29.9s)"),
    (LoadOptions("100", "10", "5s"), "ramp(0, 50, 5s)"),  # the run ends midway through the ramp
    (LoadOptions("100", "10", "10"), "ramp(0, 100, 10s)"),  # Locust reads a bare number as seconds
    (LoadOptions("5", "0.5", "1h30m"), "ramp(0, 5, 0.5/s) -> hold(1h29m50s)"),
    (LoadOptions(), "ramp(0, 1, 1/s) -> hold(1m)"),  # Locust's defaults, and a minute's hold
]


@pytest.mark.parametrize(("options", "curve"), CURVES)
def test_the_command_line_becomes_a_curve(options: LoadOptions, curve: str) -> None:
    assert load_curve(options, None).curve == curve


# --- hostile inputs: exit 2, positioned, nothing written ------------------------------------------------

HOSTILE: list[tuple[str, bytes | str, list[str], str]] = [
    ("syntax error", "class U(HttpUser)\n    pass\n", [], r"locustfile\.py:1:18: error: not valid Python"),
    ("huge file", b"#" * (1024 * 1024 + 1), [], r"locustfile\.py:1:1: error: larger than 1024 KiB"),
    (
        "deep nesting",
        "x = " + "(" * 300 + ")" * 300 + "\n",
        [],
        r"locustfile\.py:1:\d+: error: not valid Python",
    ),
    (
        "deep blocks",
        "".join(" " * i + "if x:\n" for i in range(120)) + " " * 120 + "pass\n",
        [],
        r"locustfile\.py:\d+:\d+: error: not valid Python",
    ),
    (
        "non-UTF-8",
        b"# caf\xe9\nfrom locust import HttpUser\n",
        [],
        r"locustfile\.py:1:6: error: not utf-8 text",
    ),
    ("binary", b"\x7fELF\x02\x01\x01\x00\x00", [], r"locustfile\.py:1:1: error: holds a NUL byte"),
    ("no user class", "import os\n", [], r"locustfile\.py:1:1: error: no HttpUser or FastHttpUser class"),
    (
        "bad users",
        HEADER + user("@task\ndef a(self): self.client.get('/')"),
        ["-u", "1e9"],
        r"--users:1:1: error",
    ),
    (
        "bad spawn rate",
        HEADER + user("@task\ndef a(self): self.client.get('/')"),
        ["-r", "nan"],
        r"--spawn-rate:1:1",
    ),
    (
        "bad run time",
        HEADER + user("@task\ndef a(self): self.client.get('/')"),
        ["-t", "5 minutes"],
        r"--run-time:1:1",
    ),
    (
        "bad host",
        HEADER + user("@task\ndef a(self): self.client.get('/')"),
        ["--host", "file:///etc"],
        r"--host:1:1",
    ),
]


@pytest.mark.parametrize(
    ("source", "flags", "pattern"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_locustfiles_are_refused_with_a_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: bytes | str, flags: list[str], pattern: str
) -> None:
    code, out = run_import(tmp_path, source, *flags)
    assert code == 2
    assert re.search(pattern, capsys.readouterr().err)
    assert not out.exists()


def test_the_locustfile_is_read_never_run(tmp_path: Path) -> None:
    """Its top level and its class body would write a file and exit; the import does neither."""
    planted = tmp_path / "ran.txt"
    source = (
        f"import os, sys\nopen({str(planted)!r}, 'w').write('ran')\nos.system('touch {planted}-shell')\n"
        + HEADER
        + f"class U(HttpUser):\n    open({str(planted)!r} + '-class', 'w')\n    sys.exit(3)\n"
        "    @task\n    def a(self): self.client.get('/ok')\nos._exit(4)\n"
    )
    code, out = run_import(tmp_path, source)
    assert code == 0
    assert not list(tmp_path.glob("ran.txt*"))
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["requests"]["a"]["path"] == "/ok"


def test_the_output_is_never_the_locustfile_nor_written_through_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "sub" / "locustfile.py"
    source.parent.mkdir()
    source.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    before = source.read_bytes()
    escape = tmp_path / "sub" / ".." / "sub" / "locustfile.py"  # the same file through `..`
    assert main(["import", str(source), "-o", str(escape), "--force"]) == 2
    assert "is the locustfile itself" in capsys.readouterr().err
    link = tmp_path / "link.yaml"
    link.symlink_to(source)
    assert main(["import", str(source), "-o", str(link), "--force"]) == 2
    assert source.read_bytes() == before
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    other_link = tmp_path / "other.yaml"
    other_link.symlink_to(victim)
    assert main(["import", str(source), "-o", str(other_link)]) == 2  # exists: needs --force
    assert "add --force" in capsys.readouterr().err
    assert main(["import", str(source), "-o", str(other_link), "--force"]) == 0
    assert victim.read_text() == "keep" and not other_link.is_symlink()  # the link replaced, not followed
    assert main(["import", str(source), "-o", str(tmp_path / "no-such" / "x.yaml")]) == 2
    assert main(["import", str(source), "-o", str(tmp_path)]) == 2
    assert main(["import", str(source), "-o", str(tmp_path / "a\nb.yaml")]) == 2
    assert not (tmp_path / "a\nb.yaml").exists()


# --- the YAML writer: every value reads back as written --------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


def untemplated(value: Any) -> Any:
    """A read-back value with the template braces undone (`{{` -> `{`)."""
    if isinstance(value, str):
        return value.replace("{{", "{").replace("}}", "}")
    if isinstance(value, dict):
        return {k: untemplated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untemplated(v) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(JSON_VALUES)
def test_a_body_reads_back_as_the_same_json(value: Any) -> None:
    text = f"json: {flow(value)}\n"
    assert "\n" not in text[:-1]
    assert untemplated(yaml.safe_load(text)["json"]) == value


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_a_string_reads_back_and_its_template_is_literal(text: str) -> None:
    assert yaml.safe_load(f"k: {scalar(text)}  # c\n") == {"k": text}
    sent = template(text)
    if sent.count("{") + sent.count("$") <= 1000:  # the compiler's bound on references in one value
        parts = parse_template(sent, Span("f", 1, 1))
        assert "".join(getattr(p, "text", "") for p in parts) == text


def test_hostile_strings_in_a_locustfile_reach_the_scenario_as_written(tmp_path: Path) -> None:
    values = ["a: b # c", "\u2028x\x85", "- [x]", "yes", "0x1F", "{images}", "${env:HOME}", "'\"\\", "\t"]
    body = user("@task\ndef a(self):\n    self.client.post('/x', json=" + repr({"v": values}) + ")")
    code, out = run_import(tmp_path, HEADER + body)
    assert code == 0
    loaded = load_scenario(out).scenario
    json_body = loaded.requests[0].json_body
    rendered = [v if isinstance(v, str) else "".join(p.text for p in v.parts) for v in json_body["v"]]
    assert rendered == values
    assert os.path.getsize(out) < 4096


def test_a_large_constant_used_many_times_does_not_multiply_the_tree() -> None:
    """900 nodes x 1,000 uses would be 900,000 copied nodes: past the budget the names stay names."""
    calls = "".join(f"    self.client.post('/x{i}', json=B)\n" for i in range(1000))
    tree = ast.parse("B = [" + "0, " * 899 + "0]\n" + user("@task\ndef a(self):\n" + calls))
    before = sum(1 for _ in ast.walk(tree))
    inline_constants(tree)
    grown = sum(1 for _ in ast.walk(tree)) - before
    assert MAX_INLINED_NODES / 2 < grown <= MAX_INLINED_NODES
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "B"]
    assert 900 < len(names) < 1000  # the uses past the budget


def test_the_guide_page_shows_what_the_import_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/from-locust.md's YAML is the import's output today, byte for byte."""
    doc = (Path(__file__).parents[1] / "docs" / "from-locust.md").read_text(encoding="utf-8")
    start = doc.index("```yaml\n# Imported from locustfile.py") + len("```yaml\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "locustfile.py").write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    argv = ["import", "locustfile.py", "-o", "recognition.yaml", "-u", "12", "-r", "4", "-t", "40s"]
    assert main(argv) == 0
    assert (tmp_path / "recognition.yaml").read_text(encoding="utf-8") == doc[start : doc.index("```", start)]
