"""nginx answering every path on 127.0.0.1, in a temp folder, for tests whose target must cost less than the
load generator (docs: field notes, "This machine": nginx answers ~228,000 requests/s to wrk here, about 20
times what Locust can send), so that the generator is the bottleneck. The launcher is scenariokit's own
(scenariokit.run.nginx); this keeps the tests' one-line form.
"""

from __future__ import annotations

from types import TracebackType

from scenariokit.ports import free_port
from scenariokit.run.nginx import NginxConfig, NginxServer, have_nginx

__all__ = ["Nginx", "have_nginx"]


class Nginx:
    """`with Nginx() as url:` an nginx answering every path with 200 and `{"ok": true}`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = NginxServer(NginxConfig(self.port, worker_connections=4096, body='{"ok": true}\n'))

    def __enter__(self) -> str:
        self._server.start()
        return self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.stop()
