"""A tiny Confluent Schema Registry on loopback (its HTTP API: a third party to fboc), in its own
thread: fboc looks schemas up synchronously on its event loop, so the stub must not share it."""

from __future__ import annotations

import asyncio
import socket
import threading

from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RegistryStub:
    """`schemas[id]` is the schema text answered for an id (404 for others); `status`, when
    set, is answered instead (a registry in trouble). Not listening until `start()`, so a URL
    taken before that is refused."""

    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas
        self.status: int | None = None
        self.requests = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    async def _schema(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.status is not None:
            return web.json_response({"error_code": self.status * 100, "message": "down"}, status=self.status)
        text = self.schemas.get(int(request.match_info["id"]))
        if text is None:
            return web.json_response({"error_code": 40403, "message": "Schema not found"}, status=404)
        return web.json_response({"schema": text})

    def start(self) -> RegistryStub:
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/schemas/ids/{id}", self._schema)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
            ready.set()

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        assert ready.is_set()
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = self._runner = None
