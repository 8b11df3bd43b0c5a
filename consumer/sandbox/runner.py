"""Running the sandbox: in the foreground (`fboc sandbox`) or in a thread (tests, tools)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Collection
from types import TracebackType

from aiohttp import web

from consumer.sandbox.app import create_app
from consumer.sandbox.state import DEFAULT_MAX_STORED_EVENTS

SHUTDOWN_TIMEOUT_SECONDS = 5.0


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    tokens: Collection[str] = ("sandbox-token",),
    app_secret: str | None = None,
    max_stored_events: int = DEFAULT_MAX_STORED_EVENTS,
) -> None:
    """Serve until interrupted.

    aiohttp's access log stays off (it would print query strings, where a misbehaving client may
    have put a token). A handler whose client disconnects is cancelled, as under aiohttp's
    TestServer, so a held request ends when the client gives up.
    """
    web.run_app(
        create_app(tokens=tokens, app_secret=app_secret, max_stored_events=max_stored_events),
        host=host,
        port=port,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        handler_cancellation=True,
    )


class SandboxThread:
    """The sandbox on its own event loop in a daemon thread, on 127.0.0.1 and a free port."""

    def __init__(
        self,
        *,
        tokens: Collection[str] = ("sandbox-token",),
        app_secret: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._app = create_app(tokens=tokens, app_secret=app_secret, now=now)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the sandbox thread is not running")
        return self._url

    def start(self) -> SandboxThread:
        if self._thread is not None:
            raise RuntimeError("the sandbox thread was already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fboc-sandbox", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise RuntimeError("the sandbox failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._url = None

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(
            self._app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS
        )
        try:
            loop.run_until_complete(self._serve(runner))
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    async def _serve(self, runner: web.AppRunner) -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
