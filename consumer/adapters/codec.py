"""Avro decoding of Kafka record values into a dialect's JSON form.

Two encodings are accepted:
- with `kafka.schema_registry_url`: the Confluent wire format (magic byte 0, 4-byte big-endian
  schema id, Avro binary body), the writer schema fetched from the registry by id and cached;
- without it: the plain Avro binary body (no header, no container file) written with the
  source's own `schema` file, i.e. what `fastavro.schemaless_writer` produces.

A schema may name fields that carry JSON text (`"fboc.json_fields": [...]` on the record), used
for free-form objects such as Segment `properties`; they are parsed back into objects here.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import structlog
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from consumer.errors import InvalidMessage, SchemaUnavailable

log = structlog.get_logger("fboc.codec")

JSON_FIELDS_KEY = "fboc.json_fields"
Decoder = Callable[[bytes], dict[str, Any]]
REGISTRY_TIMEOUT_S = 5
REGISTRY_BACKOFF_S = 0.5  # doubled after each failed lookup, up to the maximum
REGISTRY_MAX_BACKOFF_S = 10.0
MAX_BAD_SCHEMAS = 1024
MAX_LOOKUPS = 64  # schema lookups queued or running at once
UNKNOWN_SCHEMA_TTL_S = 60.0  # a 404 is believed this long (an id may be registered later)


class AvroSchema:
    """A parsed schema plus the names of its JSON-text fields."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self.raw_json = orjson.dumps(self.raw).decode()
        self.json_fields: tuple[str, ...] = tuple(raw.get(JSON_FIELDS_KEY, ()))
        self.parsed = parse_schema(self.raw)

    @classmethod
    def from_file(cls, path: str | Path) -> AvroSchema:
        return cls(orjson.loads(Path(path).read_bytes()))

    def decode_body(self, body: bytes) -> dict[str, Any]:
        try:
            record = schemaless_reader(io.BytesIO(body), self.parsed, None)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise InvalidMessage(
                "undecodable", f"not Avro of {self.raw.get('name')}: {type(exc).__name__}"
            ) from None
        if not isinstance(record, dict):
            raise InvalidMessage("undecodable", "the schema's top level is not a record")
        for name in self.json_fields:
            text = record.get(name)
            if text is None:
                continue
            try:
                value = orjson.loads(text)
            except (orjson.JSONDecodeError, TypeError):  # TypeError: not a string field
                raise InvalidMessage("invalid_json_field", f"field {name} is not JSON") from None
            if not isinstance(value, dict | list):
                raise InvalidMessage("invalid_json_field", f"field {name} is not a JSON object or array")
            record[name] = value
        return record

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encode a dialect's JSON form (objects in JSON fields are serialised). Used by tools."""
        out = dict(record)
        for name in self.json_fields:
            if out.get(name) is not None and not isinstance(out[name], str):
                out[name] = orjson.dumps(out[name]).decode()
        buf = io.BytesIO()
        schemaless_writer(buf, self.parsed, out)
        return buf.getvalue()


class InlineExecutor(Executor):
    """Runs the lookup at once in the caller's thread (tests, tools): the decoder answers in the
    same call, as if the lookup thread were instant."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class RegistryDecoder:
    """Confluent wire format; schemas looked up by id through the Schema Registry client.

    Lookups run on their own thread, never on the event loop: a record whose schema is being
    looked up is held (`SchemaUnavailable`) and decoded on a later turn, so a slow or hung
    registry costs the loop nothing (docs/design.md invariant 4). A schema id the registry does
    not know (404, believed for a minute) or a schema fboc cannot read dead-letters the record.
    A registry that does not answer (refused, timeout, 5xx, 401/403...) holds it, and for a
    backoff after each failure no new lookup starts, so an outage costs one request per backoff."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        # No retries inside the client: the pipeline holds and retries the record itself.
        client = SchemaRegistryClient({"url": url, "max.retries": 0, "timeout": REGISTRY_TIMEOUT_S})
        self._init(client, ThreadPoolExecutor(1, thread_name_prefix="fboc-registry"))

    def _init(self, client: Any, lookups: Executor) -> None:
        self._client = client
        self._executor = lookups
        self._lookups: dict[int, Future[Any]] = {}
        self._schemas: dict[int, AvroSchema] = {}
        self._bad: dict[int, InvalidMessage] = {}  # ids whose schema fboc cannot read, bounded
        self._unknown: dict[int, float] = {}  # ids the registry does not know → until when
        self._retry_at = 0.0
        self._backoff = 0.0
        self.clock: Callable[[], float] = time.monotonic

    @classmethod
    def with_client(cls, client: Any, lookups: Executor | None = None) -> RegistryDecoder:
        """A decoder on `client` (anything with `get_schema(id)`); lookups inline by default."""
        decoder = cls.__new__(cls)
        decoder._init(client, lookups or InlineExecutor())
        return decoder

    def _schema(self, schema_id: int) -> AvroSchema:
        schema = self._schemas.get(schema_id)
        if schema is not None:
            return schema
        bad = self._bad.get(schema_id)
        if bad is not None:
            raise bad
        now = self.clock()
        if self._unknown.get(schema_id, 0.0) > now:
            raise _unknown_schema(schema_id)
        future = self._lookups.get(schema_id)
        if future is None:
            if now < self._retry_at:
                raise SchemaUnavailable("the schema registry is unavailable (backing off)")
            if len(self._lookups) >= MAX_LOOKUPS:
                raise SchemaUnavailable("too many schema lookups under way")
            future = self._lookups[schema_id] = self._executor.submit(self._client.get_schema, schema_id)
        if not future.done():
            raise SchemaUnavailable("looking the schema up in the registry")
        del self._lookups[schema_id]
        try:
            registered = future.result()
        except Exception as exc:
            if getattr(exc, "http_status_code", None) == 404:  # SchemaRegistryError: not found
                if len(self._unknown) >= MAX_BAD_SCHEMAS:
                    self._unknown.clear()
                self._unknown[schema_id] = now + UNKNOWN_SCHEMA_TTL_S
                raise _unknown_schema(schema_id) from None
            self._backoff = min(max(self._backoff * 2, REGISTRY_BACKOFF_S), REGISTRY_MAX_BACKOFF_S)
            self._retry_at = now + self._backoff
            status = getattr(exc, "http_status_code", None)
            log.warning(
                "schema_registry_unavailable",
                error=type(exc).__name__,
                status=status,
                schema_id=schema_id,
                retry_in_s=self._backoff,
            )
            raise SchemaUnavailable(f"schema registry error {type(exc).__name__}") from None
        if self._backoff:
            log.info("schema_registry_back", schema_id=schema_id)
            self._backoff = 0.0
        try:
            schema = _registered_schema(registered)
        except InvalidMessage as exc:
            if len(self._bad) >= MAX_BAD_SCHEMAS:
                self._bad.clear()
            self._bad[schema_id] = exc
            raise
        self._schemas[schema_id] = schema
        return schema

    def __call__(self, value: bytes) -> dict[str, Any]:
        if len(value) < 5 or value[0] != 0:
            raise InvalidMessage("bad_magic_byte", "not in the Confluent wire format")
        (schema_id,) = struct.unpack(">I", value[1:5])
        return self._schema(schema_id).decode_body(value[5:])


def _unknown_schema(schema_id: int) -> InvalidMessage:
    return InvalidMessage("unknown_schema", f"schema id {schema_id} not found in the registry")


def _registered_schema(registered: Any) -> AvroSchema:
    """The registry's answer as an Avro record schema, or `invalid_schema`."""
    kind = getattr(registered, "schema_type", None) or "AVRO"
    if kind != "AVRO":
        raise InvalidMessage("invalid_schema", f"the registry's schema is {kind}, not Avro")
    try:
        raw = orjson.loads(registered.schema_str or "")
    except orjson.JSONDecodeError:
        raise InvalidMessage("invalid_schema", "the registry's schema is not JSON") from None
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise InvalidMessage("invalid_schema", "the registry's schema is not an Avro record")
    fields = raw.get(JSON_FIELDS_KEY, ())
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise InvalidMessage("invalid_schema", f"{JSON_FIELDS_KEY} is not a list of names")
    try:
        return AvroSchema(raw)
    except Exception as exc:  # fastavro raises many types on a bad schema
        raise InvalidMessage(
            "invalid_schema", f"the registry's schema is not valid Avro ({type(exc).__name__})"
        ) from None


def wire_format(schema_id: int, body: bytes) -> bytes:
    """Frame an Avro body in the Confluent wire format (for producers and tests)."""
    return b"\x00" + struct.pack(">I", schema_id) + body
