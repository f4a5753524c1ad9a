"""uvicorn's h11 protocol with a deadline for each request head.

uvicorn times out a keep-alive connection only after a response, and cancels even that timer as soon as
any byte arrives: a client that connects and sends nothing, or sends half a request line and stalls (the
slowloris attack on headers), holds its connection for ever. Here every connection must deliver each
request head within `head_timeout_s` of opening or of its previous response, or it is closed. The body has
its own deadline in the app (`Settings.body_timeout_s`), where the bytes are counted.

This subclasses uvicorn's `H11Protocol` and reads two of its attributes (`cycle`, `transport`) and one
hook (`on_response_complete`); `tests/test_server_abuse.py` fails if a uvicorn upgrade changes them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadDeadlineH11(H11Protocol):
    head_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        # the cycle that exists now: if it is still the newest when the timer fires, no new head came
        self.loop.call_later(self.head_timeout_s, self._head_overdue, self.cycle)

    def _head_overdue(self, previous: Any) -> None:
        idle = previous is None or previous.response_complete
        if self.cycle is previous and idle and not self.transport.is_closing():
            self.transport.close()


def with_head_deadline(timeout_s: float) -> type[HeadDeadlineH11]:
    """The protocol class to pass as uvicorn's `http`, with this deadline."""
    return type("HeadDeadlineH11", (HeadDeadlineH11,), {"head_timeout_s": timeout_s})
