"""A locustfile's syntax tree -> `UserClass`es (model.py), with a positioned warning for everything else.

The reader follows what Locust itself does with a class body (locust/user/task.py, users.py): `@task` and
`@task(N)` methods and a `tasks` list or dict are all the user's tasks, each picked in proportion to its
weight; `wait_time` is called between tasks; `host` is the default base URL; `weight` and `fixed_count`
share users between classes; `on_start` runs once when a user starts. A user class inherits its tasks and
attributes from a user class it extends in the same file.

What has no literal meaning (loops, conditions, computed values, f-strings with variables, custom clients,
event hooks, TaskSets, load shapes) is a warning at its line and column with a hint, and the import goes on
without it: a request that cannot be translated is left out, never guessed.
"""

from __future__ import annotations

import ast
import copy
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from fractions import Fraction
from urllib.parse import urlencode, urlsplit

from scenariokit.compile.diagnostics import Diagnostic, DiagnosticBag
from scenariokit.compile.limits import HEADER_NAME_PATTERN, HEADER_VALUE_FORBIDDEN
from scenariokit.importers import literals
from scenariokit.importers.literals import Untranslatable
from scenariokit.importers.model import Expect, HttpCall, Task, UserClass, WaitTime
from scenariokit.importers.source import Source

HTTP_USERS = frozenset({"HttpUser", "FastHttpUser"})
WAIT_FUNCTIONS = frozenset({"between", "constant", "constant_pacing", "constant_throughput"})
LOCUST_NAMES = HTTP_USERS | WAIT_FUNCTIONS | {"User", "task", "tag", "events", "TaskSet", "LoadTestShape"}
LOCUST_NAMES |= {"SequentialTaskSet"}
CLIENT_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})
METHODS = frozenset(m.upper() for m in CLIENT_METHODS)
# Positional parameters after the URL, per client method (requests' and Locust's signatures).
POSITIONAL = {"post": ("data", "json"), "put": ("data",), "patch": ("data",)}
# Keyword arguments that change nothing on the wire: left out without a warning.
IGNORED_KWARGS = frozenset({"catch_response", "context"})
# Module constants put in place of their names: each at most this many nodes, all uses together at most
# MAX_INLINED_NODES (a 1 MiB file cannot grow its tree past that).
MAX_CONSTANT_NODES = 1000
MAX_INLINED_NODES = 50_000
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FORM = "application/x-www-form-urlencoded"

STATEMENT_WHAT = {
    ast.For: ("a `for` loop", "write its requests out as steps of the task (`steps:`), or as requests"),
    ast.AsyncFor: ("a `for` loop", "write its requests out as steps of the task (`steps:`)"),
    ast.While: ("a `while` loop", "write its requests out as steps of the task (`steps:`)"),
    ast.If: ("a condition", "a scenario sends every request of a task; split the branches into requests"),
    ast.Try: ("a `try` block", "a request's `expect:` says what counts as an error"),
    ast.Assign: ("a computed value", "write the value into the request where it is used"),
}


class LocustNames:
    """Which names in the file stand for Locust's (`from locust import task as t`, `import locust`)."""

    def __init__(self, tree: ast.Module) -> None:
        self.aliases: dict[str, str] = {}
        self.modules: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "locust":
                self.aliases.update({a.asname or a.name: a.name for a in node.names if a.name != "*"})
            elif isinstance(node, ast.Import):
                self.modules |= {a.asname or a.name for a in node.names if a.name.split(".")[0] == "locust"}

    def of(self, node: ast.AST) -> str | None:
        """Locust's name for `node` (a name or `locust.x.Name`), or None."""
        if isinstance(node, ast.Name):
            name = self.aliases.get(node.id, node.id)
            return name if name in LOCUST_NAMES else None
        if isinstance(node, ast.Attribute) and node.attr in LOCUST_NAMES:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.modules | {"locust"}:
                return node.attr
        return None


class LocustReader:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.names = LocustNames(source.tree)
        self.bag = DiagnosticBag()
        self.functions = {n.name: n for n in source.tree.body if isinstance(n, ast.FunctionDef)}
        self.users: dict[str, UserClass] = {}
        self.abstract: set[str] = set()
        inline_constants(source.tree)

    @property
    def warnings(self) -> list[Diagnostic]:
        return sorted(self.bag.warnings, key=lambda d: (d.span.line, d.span.column, d.message))

    def warn(self, node: ast.AST, message: str, hint: str | None = None) -> None:
        self.bag.warning(self.source.span(node), message, hint)

    def read(self) -> list[UserClass]:
        """The HTTP user classes that can run (not `abstract`), in the file's order."""
        for node in self.source.tree.body:
            if isinstance(node, ast.ClassDef):
                self._class(node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._hooks(node.decorator_list)
            elif isinstance(node, ast.Expr) and self._names_events(node.value):
                self.warn(
                    node, "an event listener is code: not translated", "scenariokit records every request"
                )
        return [user for name, user in self.users.items() if name not in self.abstract]

    def _names_events(self, node: ast.AST) -> bool:
        return any(self.names.of(sub) == "events" for sub in ast.walk(node) if isinstance(sub, ast.Name))

    def _hooks(self, decorators: Iterable[ast.expr]) -> None:
        for decorator in decorators:
            if self._names_events(decorator):
                self.warn(
                    decorator, "an event hook is code: not translated", "scenariokit records every request"
                )

    # --- classes --------------------------------------------------------------------------------------

    def _class(self, node: ast.ClassDef) -> None:
        bases = [self.names.of(b) or (b.id if isinstance(b, ast.Name) else None) for b in node.bases]
        parent = next((self.users[b] for b in bases if b in self.users), None)
        if parent is None and not HTTP_USERS & set(bases):
            self._other_class(node, bases)
            return
        user = UserClass(node.name, node.lineno)
        if parent is not None:  # Locust's metaclass adds a base class's tasks; attributes are inherited
            user = replace(parent, name=node.name, line=node.lineno, tasks=[replace(t) for t in parent.tasks])
            user.on_start = list(parent.on_start)
        self.users[node.name] = user
        methods: dict[str, ast.FunctionDef] = {}
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef):
                methods[stmt.name] = stmt
                self._method(user, stmt)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                self._attribute(user, stmt, methods)
            elif isinstance(stmt, ast.AsyncFunctionDef):
                self.warn(stmt, f"`async def {stmt.name}`: Locust runs no coroutines; not translated")
            elif not _is_docstring(stmt) and not isinstance(stmt, ast.Pass):
                self.warn(
                    stmt, "class-level code is not translated", "keep a user class to attributes and tasks"
                )
        if not user.tasks and node.name not in self.abstract:
            self.warn(node, f"user class `{node.name}` has no task that could be translated: left out")

    def _other_class(self, node: ast.ClassDef, bases: Sequence[str | None]) -> None:
        kinds = {
            "User": ("a `User` with its own client: only HttpUser and FastHttpUser are translated", None),
            "LoadTestShape": (
                "a load shape's tick() is code: not translated",
                "write its stages as `load.curve` (ramp/hold/spike/steps), or use -u/-r/-t",
            ),
        }
        for base in bases:
            if base in kinds:
                message, hint = kinds[base]
                self.warn(node, f"class `{node.name}`: {message}", hint)
                return

    def _method(self, user: UserClass, node: ast.FunctionDef) -> None:
        self._hooks(node.decorator_list)
        weight = self._task_weight(node)
        if weight is not None:
            origin = "@task" if weight == 1 and not _task_call(node) else f"@task({weight})"
            self._add_task(user, node, weight, origin)
        elif node.name == "on_start":
            user.on_start = self._calls(node.body, _receiver(node))
        elif node.name in ("on_stop", "wait_time"):
            self.warn(node, f"`{node.name}` is code: not translated", "a scenario has no per-user stop step")

    def _task_weight(self, node: ast.FunctionDef) -> Fraction | None:
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            if self.names.of(call.func if call else decorator) != "task":
                continue
            if call is None or not (call.args or call.keywords):
                return Fraction(1)
            argument = call.args[0] if call.args else call.keywords[0].value
            return self._weight(argument, "a task's weight")
        return None

    def _weight(self, node: ast.AST, what: str) -> Fraction:
        try:
            value = literals.number(node, what)
        except Untranslatable as exc:
            self.warn(exc.node, f"{exc}: weight 1 used", exc.hint)
            return Fraction(1)
        if value < 0:
            self.warn(node, f"{what} of {value:g} is negative: weight 0 used")
            return Fraction(0)
        return Fraction(value).limit_denominator(1_000_000)

    def _attribute(
        self, user: UserClass, node: ast.Assign | ast.AnnAssign, methods: dict[str, ast.FunctionDef]
    ) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if len(names) != 1 or node.value is None:
            return
        name, value = names[0], node.value
        try:
            if name == "wait_time":
                user.wait = self._wait(value)
            elif name == "host":
                user.host = literals.string(value, "host")
            elif name == "weight":
                user.weight = self._weight(value, "a user class's weight")
            elif name == "fixed_count":
                user.fixed_count = int(literals.number(value, "fixed_count"))
            elif name == "abstract" and literals.literal(value) is True:
                self.abstract.add(user.name)
            elif name == "tasks":
                self._tasks_attribute(user, value, methods)
        except Untranslatable as exc:
            self.warn(exc.node, f"`{name}`: {exc}: not translated", exc.hint)

    def _wait(self, node: ast.AST) -> WaitTime | None:
        kind = self.names.of(node.func) if isinstance(node, ast.Call) else None
        if not isinstance(node, ast.Call) or kind not in WAIT_FUNCTIONS:
            self.warn(
                node, "a wait_time of its own is code: not translated (no think time)", "use between(...)"
            )
            return None
        args = [literals.number(a, f"{kind}'s argument") for a in node.args]
        args += [literals.number(k.value, f"{kind}'s argument") for k in node.keywords]
        needed = 2 if kind == "between" else 1
        if len(args) != needed or min(args) < 0:
            raise Untranslatable(node, f"{kind} takes {needed} non-negative number(s)")
        written = ast.get_source_segment("\n".join(self.source.lines), node) or kind
        if kind == "constant_throughput":
            if args[0] <= 0:
                raise Untranslatable(node, "constant_throughput needs a rate above 0")
            return WaitTime("pacing", 1 / args[0], 1 / args[0], node.lineno, written)
        low, high = (args[0], args[1]) if kind == "between" else (args[0], args[0])
        if low > high:
            raise Untranslatable(node, f"between({low:g}, {high:g}): the low end is above the high end")
        return WaitTime("pacing" if kind == "constant_pacing" else kind, low, high, node.lineno, written)

    def _tasks_attribute(self, user: UserClass, node: ast.AST, methods: dict[str, ast.FunctionDef]) -> None:
        """`tasks = [a, b, a]` (each entry weight 1) or `tasks = {a: 3, b: 1}`."""
        if isinstance(node, ast.Dict):
            entries = [(k, v) for k, v in zip(node.keys, node.values, strict=True) if k is not None]
        elif isinstance(node, ast.List | ast.Tuple):
            entries = [(item, None) for item in node.elts]
        else:
            raise Untranslatable(node, "`tasks` is not a list or dict literal")
        for key, weight_node in entries:
            function = self._task_function(key, methods)
            if function is not None:
                weight = Fraction(1) if weight_node is None else self._weight(weight_node, "a task's weight")
                origin = "tasks = [...]" if weight_node is None else f"tasks = {{...: {weight}}}"
                self._add_task(user, function, weight, origin)

    def _task_function(self, node: ast.AST, methods: dict[str, ast.FunctionDef]) -> ast.FunctionDef | None:
        name = node.id if isinstance(node, ast.Name) else None
        function = methods.get(name or "") or self.functions.get(name or "")
        if function is None:
            what = f"`{name}`" if name else literals.describe(node)
            hint = "TaskSets are not translated: move their tasks into the user class" if name else None
            self.warn(node, f"task {what} is not a function of this file: not translated", hint)
        return function

    def _add_task(self, user: UserClass, node: ast.FunctionDef, weight: Fraction, origin: str) -> None:
        for task in user.tasks:  # `tasks = [a, a]` picks a twice as often
            if task.name == node.name:
                task.weight += weight
                return
        calls = self._calls(node.body, _receiver(node))
        if not calls:
            self.warn(node, f"task `{node.name}` sends no request that could be translated: left out")
            return
        user.tasks.append(Task(node.name, node.lineno, weight, calls, origin))

    # --- a task's body ---------------------------------------------------------------------------------

    def _calls(self, body: Sequence[ast.stmt], receiver: str | None) -> list[HttpCall]:
        calls: list[HttpCall] = []
        for stmt in body:
            if _is_docstring(stmt) or (isinstance(stmt, ast.Pass | ast.Return) and stmt_value_is_none(stmt)):
                continue
            value = (
                stmt.value if isinstance(stmt, ast.Expr | ast.Assign | ast.AnnAssign | ast.Return) else None
            )
            method = self._client_method(value, receiver)
            if method is not None and isinstance(value, ast.Call):
                calls += self._translated(value, method)
            elif isinstance(stmt, ast.With):
                calls += self._with(stmt, receiver)
            else:
                self._untranslated(stmt, receiver)
        return calls

    def _untranslated(self, stmt: ast.stmt, receiver: str | None) -> None:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and _is_sleep(stmt.value.func):
            self.warn(stmt, "a pause inside a task is not translated", "a flow's steps run back to back")
            return
        what, hint = STATEMENT_WHAT.get(type(stmt), ("a statement", None))
        inside = sum(1 for sub in ast.walk(stmt) if self._client_method(sub, receiver))
        sends = f" (its {inside} request(s) are not sent)" if inside else ""
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and not inside:
            what, hint = (
                "a call to other code (a custom client?)",
                "only self.client's requests are translated",
            )
        self.warn(stmt, f"{what} is not translated{sends}", hint)

    def _client_method(self, node: ast.AST | None, receiver: str | None) -> str | None:
        """'get' ... 'request' for `<receiver>.client.<method>(...)`, else None."""
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) or receiver is None:
            return None
        client = node.func.value
        if not (isinstance(client, ast.Attribute) and client.attr == "client"):
            return None
        if not (isinstance(client.value, ast.Name) and client.value.id == receiver):
            return None
        return node.func.attr if node.func.attr in CLIENT_METHODS | {"request"} else None

    def _translated(self, call: ast.Call, method: str) -> list[HttpCall]:
        try:
            return [self._http_call(call, method)]
        except Untranslatable as exc:
            self.warn(exc.node, f"request not translated: {exc}", exc.hint)
            return []

    def _http_call(self, call: ast.Call, method: str) -> HttpCall:
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            raise Untranslatable(call, "arguments passed with * or ** (computed)")
        args = list(call.args)
        kwargs = {k.arg: k.value for k in call.keywords if k.arg is not None}
        if method == "request":
            verb = literals.string(args.pop(0) if args else kwargs.pop("method", call), "the method").upper()
            if verb not in METHODS:
                raise Untranslatable(call, f"the method {verb!r} is not one of {', '.join(sorted(METHODS))}")
            method = verb.lower()
        url = args.pop(0) if args else kwargs.pop("url", None)
        if url is None:
            raise Untranslatable(call, "a request without a URL")
        for position, arg in enumerate(args):
            names = POSITIONAL.get(method, ())
            if position >= len(names):
                raise Untranslatable(arg, "an extra positional argument")
            kwargs[names[position]] = arg
        notes: list[str] = []
        path = self._path(url, kwargs.pop("params", None))
        request = HttpCall(call.lineno, method.upper(), path)
        request = self._body(request, kwargs, notes)
        request = self._options(request, kwargs)
        for name, value in kwargs.items():
            if name not in IGNORED_KWARGS:
                self.warn(value, f"`{name}=` is not translated (the request is kept without it)")
        return replace(request, notes=tuple(notes))

    def _path(self, node: ast.AST, params: ast.AST | None) -> str:
        path = literals.string(node, "the URL")
        if CONTROL.search(path):
            raise Untranslatable(node, "the URL holds a control character (CR or LF would split the request)")
        if re.match(r"(?i)https?://", path):
            parts = urlsplit(path)
            self.warn(node, f"an absolute URL: sent to the scenario's base_url, not {parts.netloc}")
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        elif not path.startswith("/"):
            self.warn(node, f"the path {path!r} does not start with `/`: written `/{path}`")
            path = "/" + path
        if params is not None:
            query = urlencode(literals.string_dict(params, "params", numbers=True))
            path += ("&" if "?" in path else "?") + query
        return path

    def _body(self, request: HttpCall, kwargs: dict[str, ast.expr], notes: list[str]) -> HttpCall:
        json_node, data_node = kwargs.pop("json", None), kwargs.pop("data", None)
        headers = self._headers(kwargs.pop("headers", None))
        if data_node is not None and not _is_none(data_node):
            data = literals.literal(data_node)
            if isinstance(data, dict):
                form = urlencode(literals.string_dict(data_node, "data", numbers=True))
                if not any(name.lower() == "content-type" for name in headers):
                    headers = {**headers, "Content-Type": FORM}
                return replace(request, body=form, headers=headers)  # requests sends data= before json=
            if isinstance(data, bytes):
                try:
                    data = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise Untranslatable(data_node, "binary data= that is not UTF-8 text") from None
            if not isinstance(data, str):
                raise Untranslatable(data_node, "data= is not text or a dict")
            return replace(request, body=data, headers=headers)
        if json_node is not None and not _is_none(json_node):
            return replace(request, json=literals.json_value(json_node), headers=headers)
        return replace(request, headers=headers)

    def _headers(self, node: ast.expr | None) -> dict[str, str]:
        if node is None or _is_none(node):
            return {}
        headers = literals.string_dict(node, "headers")
        for name, value in headers.items():
            if not re.fullmatch(HEADER_NAME_PATTERN, name) or re.search(HEADER_VALUE_FORBIDDEN, value):
                raise Untranslatable(node, f"the header {name!r} is not one line of text", "no CR, LF or NUL")
        return headers

    def _options(self, request: HttpCall, kwargs: dict[str, ast.expr]) -> HttpCall:
        """`name=` and `timeout=`: neither changes what is sent, so one that cannot be read is left out
        with a warning and the request kept."""
        name_node, timeout_node = kwargs.pop("name", None), kwargs.pop("timeout", None)
        try:
            if name_node is not None:
                request = replace(request, name=literals.string(name_node, "name="))
            if timeout_node is not None and not _is_none(timeout_node):
                request = replace(request, timeout_s=self._timeout(timeout_node))
        except Untranslatable as exc:
            self.warn(exc.node, f"{exc}: left out, the request kept", exc.hint)
        return request

    def _timeout(self, node: ast.expr) -> float:
        # (connect, read): the whole request may take the larger of the two
        if isinstance(node, ast.Tuple | ast.List) and node.elts:
            self.warn(node, "a (connect, read) timeout: the larger is the request's timeout")
            seconds = max(literals.number(item, "a timeout") for item in node.elts)
        else:
            seconds = literals.number(node, "timeout=")
        if seconds <= 0:
            raise Untranslatable(node, "timeout= is not above 0")
        return seconds

    # --- `with self.client.get(..., catch_response=True) as r:` ----------------------------------------

    def _with(self, stmt: ast.With, receiver: str | None) -> list[HttpCall]:
        item = stmt.items[0]
        method = self._client_method(item.context_expr, receiver)
        if len(stmt.items) != 1 or method is None or not isinstance(item.context_expr, ast.Call):
            self._untranslated(stmt, receiver)
            return []
        calls = self._translated(item.context_expr, method)
        var = item.optional_vars.id if isinstance(item.optional_vars, ast.Name) else None
        catch = any(k.arg == "catch_response" and _is_true(k.value) for k in item.context_expr.keywords)
        expect = self._checks(stmt.body, var) if catch and var else None
        if not catch:
            for inner in stmt.body:
                if not isinstance(inner, ast.Pass):
                    self.warn(
                        inner, "code inside `with` is not translated", "checks need catch_response=True"
                    )
        return [replace(c, expect=expect) for c in calls]

    def _checks(self, body: Sequence[ast.stmt], var: str) -> Expect | None:
        expect = Expect()
        for stmt in body:
            if _is_docstring(stmt) or isinstance(stmt, ast.Pass):
                continue
            found = _check(stmt, var) if isinstance(stmt, ast.If) else None
            if found is None:
                self.warn(stmt, "a response check not translated", CHECK_HINT)
                continue
            expect = Expect(found.status or expect.status, found.contains or expect.contains)
            if any(code >= 400 for code in found.status) and not _calls_success(stmt, var):
                self.warn(
                    stmt,
                    f"Locust still counts {', '.join(map(str, found.status))} as a failure here (nothing "
                    f"calls {var}.success()); the scenario expects it, as the check means",
                    f"add `else: {var}.success()` to the locustfile to make it agree",
                )
        return expect if expect != Expect() else None


def module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    """`NAME = <literal>` at the top level, for names bound nowhere else in the file (no other assignment,
    parameter, loop variable or import), so every use of the name is that value."""
    bindings: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bindings[node.id] += 1
        elif isinstance(node, ast.arg):
            bindings[node.arg] += 1
        elif isinstance(node, ast.alias):
            bindings[(node.asname or node.name).split(".")[0]] += 1
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bindings[node.name] += 1
        elif isinstance(node, ast.Global | ast.Nonlocal):
            bindings.update(node.names)
    constants: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                literals.literal(node.value)
            except Untranslatable:
                continue
            if bindings[name] == 1 and sum(1 for _ in ast.walk(node.value)) <= MAX_CONSTANT_NODES:
                constants[name] = node.value
    return constants


class _Inline(ast.NodeTransformer):
    def __init__(self, constants: dict[str, ast.expr]) -> None:
        self.constants = constants
        self.budget = MAX_INLINED_NODES  # a big constant used many times must not multiply the tree

    def visit_Name(self, node: ast.Name) -> ast.AST:
        value = self.constants.get(node.id)
        if value is None or not isinstance(node.ctx, ast.Load):
            return node
        self.budget -= sum(1 for _ in ast.walk(value))
        return node if self.budget < 0 else ast.copy_location(copy.deepcopy(value), node)


def inline_constants(tree: ast.Module) -> None:
    """Puts module constants in place of their names (`BASE = "/api"` ... `f"{BASE}/ocr"`), so requests
    built from them are literals. A tree too deep to walk keeps its names (they are then warned about)."""
    constants = module_constants(tree)
    if not constants:
        return
    inline = _Inline(constants)
    try:
        for node in tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                inline.visit(node)
    except RecursionError:
        pass


CHECK_HINT = (
    "translated: `if r.status_code != 200: r.failure(...)` (also `not in (...)`, or `==` with "
    'r.success() / else r.failure()) and `if "text" not in r.text: r.failure(...)`'
)


def _check(stmt: ast.If, var: str) -> Expect | None:
    """`if r.status_code != N: r.failure()`, `if "x" not in r.text: r.failure()`, and their `==`/`in`
    forms with `r.success()` and `else: r.failure()`; None for any other shape."""
    test = stmt.test
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return None
    op, right = test.ops[0], test.comparators[0]
    fails_when_true = _only_call(stmt.body, var, "failure") and (
        not stmt.orelse or _only_call(stmt.orelse, var, "success")
    )
    passes_when_true = _only_call(stmt.body, var, "success") and _only_call(stmt.orelse, var, "failure")
    negated = isinstance(op, ast.NotEq | ast.NotIn)
    if not ((negated and fails_when_true) or (not negated and passes_when_true)):
        return None
    if _is_attr(test.left, var, "status_code") and isinstance(op, ast.NotEq | ast.Eq | ast.In | ast.NotIn):
        try:
            codes = literals.literal(right)
        except Untranslatable:
            return None
        codes = codes if isinstance(codes, list) else [codes]
        if isinstance(op, ast.In | ast.NotIn) != isinstance(literals.literal(right), list):
            return None
        if all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
            return Expect(status=tuple(codes))
        return None
    if isinstance(op, ast.In | ast.NotIn) and _is_attr(right, var, "text"):
        try:
            text = literals.string(test.left, "the text")
        except Untranslatable:
            return None
        return Expect(contains=text) if text else None
    return None


def _calls_success(stmt: ast.If, var: str) -> bool:
    return _only_call(stmt.body, var, "success") or _only_call(stmt.orelse, var, "success")


def _only_call(body: Sequence[ast.stmt], var: str, method: str) -> bool:
    return (
        len(body) == 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Call)
        and _is_attr(body[0].value.func, var, method)
    )


def _is_attr(node: ast.AST, var: str, attr: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == attr
        and isinstance(node.value, ast.Name)
        and (node.value.id == var)
    )


def _receiver(node: ast.FunctionDef) -> str | None:
    """The user object's name inside a task: `self` in a method, `user` in `def task(user)`."""
    return node.args.args[0].arg if node.args.args else None


def _task_call(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and (d.args or d.keywords) for d in node.decorator_list)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _is_true(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def stmt_value_is_none(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Pass) or getattr(stmt, "value", None) is None


def _is_sleep(func: ast.AST) -> bool:
    return (
        isinstance(func, ast.Attribute | ast.Name)
        and (func.attr if isinstance(func, ast.Attribute) else func.id) == "sleep"
    )
