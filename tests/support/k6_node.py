"""A k6 script written out for its scenario (engines/k6/lean.py), run under node with k6's modules replaced by
recording stand-ins: what it would send and what records it would write, without k6 or a server.

Each k6 call is recorded as {method, url, body, params} and answered with `response` (a 200 with a chat
answer by default); `console.log` lines are kept (the records, with SCENARIOKIT_RECORDS=console in `env`).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.support.engines import NODE

_STUBS = """
const __calls = [];
const __lines = [];
const __files = [];
const __response = @RESPONSE@;
const __answer = () => Object.assign({ timings: { duration: 1.5, waiting: 1.25 } }, __response);
const http = {
  request(method, url, body, params) {
    __calls.push({ method, url, body: body ?? null, params: params ?? null });
    return __answer();
  },
  expectedStatuses(...statuses) { return { statuses }; },
  setResponseCallback() {},
};
for (const [name, method] of Object.entries({ get: "GET", head: "HEAD", post: "POST", put: "PUT",
                                              patch: "PATCH", del: "DELETE", options: "OPTIONS" })) {
  const bodiless = method === "GET" || method === "HEAD";
  http[name] = (url, ...rest) =>
    http.request(method, url, bodiless ? null : rest[0], bodiless ? rest[0] : rest[1]);
}
const exec = { scenario: { iterationInTest: 0, iterationInInstance: 0 } };
const sleep = () => {};
class SharedArray { constructor(name, make) { return make(); } }
const __FILES = @FILES@;
const open = (path) => { __files.push(path); return __FILES[path.replace(/^\\.\\//, "")]; };
class Trend { add() {} }
class Rate { add() {} }
class Counter { add() {} }
const __ENV = @ENV@;
const __VU = 1;
console.log = (line) => __lines.push(line);
"""

CHAT_ANSWER = {"status": 200, "body": json.dumps({"choices": [{"message": {"content": "ok"}}]})}


def run_lean(
    files: dict[str, str],
    entry: str,
    iterations: int = 1,
    env: dict[str, str] | None = None,
    response: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs the script's setup, then its default function `iterations` times: {calls, lines, files,
    options, start (what setup returned)}."""
    script = files[entry]
    assert "scenariokit-runtime.js" not in files, "not a written-out script"
    lines = [line for line in script.splitlines() if not line.startswith("import ")]
    body = "\n".join(lines).replace("export const ", "const ")
    body = body.replace("export default function", "function __default")
    stubs = (
        _STUBS.replace("@RESPONSE@", json.dumps(response or CHAT_ANSWER))
        .replace("@FILES@", json.dumps({k: v for k, v in files.items() if k != entry}))
        .replace("@ENV@", json.dumps(env or {}))
    )
    program = (
        stubs
        + body
        + "\nconst __start = setup();\n"  # as k6 does: setup once, its value to every iteration
        + f"for (let k = 0; k < {iterations}; k++) __default(__start);\n"
        + "const __out = { calls: __calls, lines: __lines, files: __files, options, start: __start };\n"
        + "process.stdout.write(JSON.stringify(__out));\n"
    )
    result: dict[str, Any] = json.loads(node_output(program))
    return result


def node_output(program: str) -> str:
    """What a node program (an ES module) prints; it must exit 0."""
    assert NODE is not None
    ran = subprocess.run(
        [NODE, "--input-type=module"],
        input=program,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return ran.stdout


def records(lines: list[str]) -> list[dict[str, Any]]:
    """The record lines' JSON values (a console line may hold the test start, then a record)."""
    return [json.loads(part) for line in lines for part in line.split("\n") if part]
