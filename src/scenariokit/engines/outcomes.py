"""What a request's outcome is called: the one error vocabulary every runtime writes in its records.

    connection_refused, connection_reset, timeout   no response: the failure, named by FAILURES
    http_<status>                                   a status the request does not expect
    bad_stream                                      a 2xx chat answer that is not one (unparsable)
    wrong_answer                                    the answer lacks the expected text
    other                                           anything else that left no response

A failure without a response is named by the first row of FAILURES that matches it. The table is the only
copy: each engine's codegen writes the columns its runtime matches on into the generated script as data,
and `failure_kind` here is its reference reading (tests hold both runtimes to it). Results read records
through `taxonomy`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

OTHER = "other"
BAD_STREAM = "bad_stream"
WRONG_ANSWER = "wrong_answer"


@dataclass(frozen=True)
class Failure:
    """One row: the kind, and what names it. A failure matches when its error is an instance of one of
    `exceptions` (Python's classes, by name: Locust's client raises them), has one of `k6_codes` (k6's
    error codes), or says one of `fragments` (lower-case) in its message, where Python's includes the
    exception's class name."""

    kind: str
    exceptions: tuple[str, ...]
    k6_codes: tuple[int, ...]
    fragments: tuple[str, ...]


# k6 error codes: https://grafana.com/docs/k6/latest/javascript-api/error-codes/
FAILURES = (
    Failure("connection_refused", ("ConnectionRefusedError",), (1212,), ("refused",)),
    Failure(
        "connection_reset",
        ("ConnectionResetError", "BrokenPipeError"),
        (1201, 1220),
        ("reset", "broken pipe"),
    ),
    Failure("timeout", ("TimeoutError",), (1050, 1211), ("timeout", "timed out")),
)

ERROR_KINDS = frozenset({f.kind for f in FAILURES} | {BAD_STREAM, WRONG_ANSWER, OTHER})


def failure_kind(message: str, exceptions: Iterable[str] = (), k6_code: int = 0) -> str:
    """The kind of a failure that left no response (see Failure for what matches)."""
    names = set(exceptions)
    text = message.lower()
    for row in FAILURES:
        if names & set(row.exceptions) or k6_code in row.k6_codes or any(f in text for f in row.fragments):
            return row.kind
    return OTHER


def http_error(status: int) -> str:
    return f"http_{status}"


def taxonomy(error: str | None) -> str | None:
    """How results group an error: http_4xx:<code> and http_5xx:<code> by status, the vocabulary's other
    names as they are, and anything outside it (another status, a name from an older runtime) `other`."""
    if error is None:
        return None
    code = error.removeprefix("http_")
    if error.startswith("http_") and len(code) == 3 and code[0] in "45" and code.isdigit():
        return f"http_{code[0]}xx:{code}"
    return error if error in ERROR_KINDS else OTHER
