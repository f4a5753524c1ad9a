"""What a request's outcome is called: the one error vocabulary every runtime writes in its records.

    too_many_open_files, address_unavailable        no response: the generator's host ran out of sockets
                                                    or local ports (the generator's limit, not the target's)
    connection_refused, connection_reset, dns, tls  no response: the failure, named by FAILURES
    timeout
    http_<status>                                   a status the request does not expect
    bad_stream                                      a 2xx chat answer that is not one (unparsable)
    wrong_answer                                    the answer lacks the expected text
    other                                           anything else that left no response

A failure without a response is named by the first row of FAILURES that matches it. The table is the only
copy: each engine's codegen writes the columns its runtime matches on into the generated script as data,
and `failure_kind` here is its reference reading (tests hold both runtimes to it). Results read records
through `taxonomy`.

Such a failure also keeps the engine's own reason, whatever kind it was given: its code (k6's numeric
`error_code`, or the Python exception's class name for Locust) on every record of it, and its message,
cleaned by `sample_message`, on the first record of each (request, kind, code) in a generator process (or
k6 VU), so that a storm of errors does not repeat the same text. `other` then still says what happened.
"""

from __future__ import annotations

import re
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


# k6 error codes: https://grafana.com/docs/k6/latest/javascript-api/error-codes/ (and k6's
# lib/netext/httpext/error_codes.go, which writes a socket's errno into the message of 1213, "dial: unknown
# errno 24 error with msg `too many open files`"). First match wins: the generator's own limits come first
# (their messages are the same in Go and Python), DNS before timeout (a lookup that timed out is a DNS
# failure, k6 1100), TLS before reset.
FAILURES = (
    Failure("too_many_open_files", (), (), ("too many open files",)),
    Failure("address_unavailable", (), (), ("cannot assign requested address",)),
    Failure("connection_refused", ("ConnectionRefusedError",), (1212,), ("refused",)),
    Failure(
        "dns",
        ("gaierror", "herror"),
        (1100, 1101),
        ("no such host", "name or service not known", "name resolution", "nodename nor servname"),
    ),
    Failure(
        "tls",
        ("SSLError", "CertificateError"),
        (1300, 1310, 1311),
        ("x509:", "certificate verify failed"),
    ),
    Failure(
        "connection_reset",
        ("ConnectionResetError", "BrokenPipeError"),
        (1201, 1220),
        ("reset", "broken pipe"),
    ),
    Failure("timeout", ("TimeoutError",), (1050, 1211), ("timeout", "timed out")),
)
# a failure's sample message: at most this many characters, control characters out, secrets redacted
MESSAGE_CHARS = 200
REDACTED = "[redacted]"
# a value shorter than this is not looked for in messages (a 1-character header value would redact every
# digit); a secret is longer
SECRET_MIN_CHARS = 4
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")

ERROR_KINDS = frozenset({f.kind for f in FAILURES} | {BAD_STREAM, WRONG_ANSWER, OTHER})


def failure_kind(message: str, exceptions: Iterable[str] = (), k6_code: int = 0) -> str:
    """The kind of a failure that left no response (see Failure for what matches)."""
    names = set(exceptions)
    text = message.lower()
    for row in FAILURES:
        if names & set(row.exceptions) or k6_code in row.k6_codes or any(f in text for f in row.fragments):
            return row.kind
    return OTHER


def sample_message(message: str, secrets: Iterable[str] = ()) -> str:
    """A failure's message as a record keeps it: every secret (the request's header values and the
    environment values it reads) replaced by REDACTED, runs of control characters by one space, at most
    MESSAGE_CHARS characters. Redacted before it is cut, so no prefix of a secret survives the cut."""
    for secret in sorted(set(secrets), key=len, reverse=True):  # a longer value first: it may hold another
        if len(secret) >= SECRET_MIN_CHARS:
            message = message.replace(secret, REDACTED)
    text = _CONTROL.sub(" ", message).strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


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
