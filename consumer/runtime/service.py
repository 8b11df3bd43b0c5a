"""Wires the pipeline for `fboc run`: Kafka, Graph clients, health/readiness/metrics, signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from datetime import date

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer.adapters.codec import AvroSchema, Decoder, RegistryDecoder
from consumer.adapters.graph import GraphClient
from consumer.adapters.kafka.deadletter import DeadLetterWriter
from consumer.adapters.kafka.source import KafkaSource
from consumer.config.graph_versions import LATEST, major_of, version_warning
from consumer.config.settings import ServiceSettings, Settings
from consumer.core.capi import normalize
from consumer.core.dialects import get_dialect
from consumer.errors import Fatal
from consumer.runtime.pipeline import Pipeline, Route
from consumer.telemetry.metrics import METRICS, register_secret

log = structlog.get_logger("fboc.service")

WEDGED_AFTER_S = 30.0


def version_is_old(api_version: str, today: date) -> bool:
    """Near or past its end of life, by the release table in consumer/config/graph_versions.py."""
    major = major_of(api_version)
    return major is not None and major <= LATEST and version_warning(api_version, today) is not None


def build_routes(settings: Settings) -> dict[str, Route]:
    registry = (
        RegistryDecoder(settings.kafka.schema_registry_url) if settings.kafka.schema_registry_url else None
    )
    routes = {}
    for source in settings.sources:
        decoder: Decoder
        if registry is not None:
            decoder = registry
        else:
            assert source.schema_ is not None  # guaranteed by config cross-checks
            decoder = AvroSchema.from_file(source.schema_).decode_body
        routes[source.topic] = Route(
            source, get_dialect(source.dialect), decoder, settings.destination(source.destination)
        )
    normalize.warm()  # country names of every language: not on the first record's time
    return routes


def startup_warnings(settings: Settings) -> None:
    warning = version_warning(settings.facebook.api_version, date.today())
    if warning:
        log.warning("graph_version", api_version=settings.facebook.api_version, warning=warning)
    for dest in settings.destinations:
        if dest.test_event_code:
            log.warning(
                "test_event_code_set",
                destination=dest.name,
                note="test events are NOT discarded by Meta: they count for ads",
            )


def health_app(pipeline: Pipeline) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        idle = time.monotonic() - pipeline.last_turn
        if idle > WEDGED_AFTER_S:
            return web.Response(status=503, text=f"loop wedged for {idle:.0f}s\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        halted = sorted(name for name, client in pipeline.clients.items() if client.halted)
        if halted:  # records are held until the destination is fixed (README, Delivery policy)
            return web.Response(status=503, text=f"destination halted: {', '.join(halted)}\n")
        return web.Response(
            status=200 if pipeline.ready else 503, text="ready\n" if pipeline.ready else "not assigned yet\n"
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(METRICS.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health(pipeline: Pipeline, service: ServiceSettings) -> web.AppRunner:
    """/healthz, /readyz and /metrics on `service.bind_address` (loopback by default)."""
    runner = web.AppRunner(health_app(pipeline), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, service.bind_address, service.port).start()
    return runner


def log_fatal(exc: Fatal) -> None:
    """By its class; a stop that came up while shutting down after another names that one too
    (the final commit fails after the brokers stayed unreachable)."""
    first = exc.__context__
    extra = {}
    if isinstance(first, Fatal):
        extra = {"first_condition": type(first).__name__, "first_error": str(first)}
    log.error("fatal", condition=type(exc).__name__, error=str(exc), **extra)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until stopped; 0 on a clean stop, 1 on a fatal error."""
    for dest in settings.destinations:
        for secret in (dest.access_token, dest.app_secret):
            register_secret(secret.get_secret_value() if secret else None)
    startup_warnings(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(RuntimeError, ValueError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    routes = build_routes(settings)
    connector = aiohttp.TCPConnector(limit=settings.batching.max_in_flight * len(settings.destinations))
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = {d.name: GraphClient(session, settings.facebook, d) for d in settings.destinations}
        dead_letters = DeadLetterWriter(settings.kafka)
        pipeline = Pipeline(
            settings,
            routes,
            clients,
            dead_letters,
            make_source=lambda p: KafkaSource(
                settings.kafka,
                list(routes),
                on_assign=p.on_assign,
                on_revoke=p.on_revoke,
                on_lost=p.on_lost,
                on_error=p.brokers.on_error,
                on_stats=p.brokers.on_stats,
                on_commit=p.on_commit,
            ),
        )
        runner = await start_health(pipeline, settings.service)
        log.info(
            "started",
            topics=list(routes),
            group_id=settings.kafka.group_id,
            bind_address=settings.service.bind_address,
            port=settings.service.port,
        )
        try:
            await pipeline.run(stop)
        except Fatal as exc:  # the one place fboc's stop conditions are caught
            log_fatal(exc)
            return 1
        finally:
            await runner.cleanup()
    return 0
