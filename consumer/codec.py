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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from consumer.errors import InvalidMessage

JSON_FIELDS_KEY = "fboc.json_fields"
Decoder = Callable[[bytes], dict[str, Any]]


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
            raise InvalidMessage("undecodable", f"not Avro of {self.raw.get('name')}: "
                                 f"{type(exc).__name__}") from None
        if not isinstance(record, dict):
            raise InvalidMessage("undecodable", "the schema's top level is not a record")
        for name in self.json_fields:
            text = record.get(name)
            if text is None:
                continue
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise InvalidMessage("invalid_json_field", f"field {name} is not JSON") from None
            if not isinstance(value, dict | list):
                raise InvalidMessage("invalid_json_field",
                                     f"field {name} is not a JSON object or array")
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


class RegistryDecoder:
    """Confluent wire format; schemas looked up by id through the Schema Registry client."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url})
        self._schemas: dict[int, AvroSchema] = {}

    @classmethod
    def with_client(cls, client: Any) -> RegistryDecoder:
        decoder = cls.__new__(cls)
        decoder._client = client
        decoder._schemas = {}
        return decoder

    def _schema(self, schema_id: int) -> AvroSchema:
        schema = self._schemas.get(schema_id)
        if schema is None:
            try:
                registered = self._client.get_schema(schema_id)
            except Exception as exc:
                raise InvalidMessage("unknown_schema", f"schema id {schema_id} not found in the "
                                     f"registry ({type(exc).__name__})") from None
            schema = self._schemas[schema_id] = AvroSchema(orjson.loads(registered.schema_str or ""))
        return schema

    def __call__(self, value: bytes) -> dict[str, Any]:
        if len(value) < 5 or value[0] != 0:
            raise InvalidMessage("bad_magic_byte", "not in the Confluent wire format")
        (schema_id,) = struct.unpack(">I", value[1:5])
        return self._schema(schema_id).decode_body(value[5:])


def wire_format(schema_id: int, body: bytes) -> bytes:
    """Frame an Avro body in the Confluent wire format (for producers and tests)."""
    return b"\x00" + struct.pack(">I", schema_id) + body
