from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer.adapters.codec import (
    MAX_LOOKUPS,
    REGISTRY_BACKOFF_S,
    UNKNOWN_SCHEMA_TTL_S,
    AvroSchema,
    RegistryDecoder,
    wire_format,
)
from consumer.errors import InvalidMessage, SchemaUnavailable
from tests.helpers import SEGMENT_SCHEMA, track


def test_schemaless_round_trip_keeps_free_form_properties() -> None:
    record = track(1, coupon={"code": "X", "nested": [1, 2.5, None]})
    decoded = SEGMENT_SCHEMA.decode_body(SEGMENT_SCHEMA.encode(record))
    assert decoded["properties"] == record["properties"]
    assert decoded["context"] == record["context"]
    assert decoded["traits"] is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x05\x00\xff", "undecodable"),
        (SEGMENT_SCHEMA.encode({"type": "track", "properties": "12"}), "invalid_json_field"),
        (SEGMENT_SCHEMA.encode({"type": "track", "properties": "{not json"}), "invalid_json_field"),
    ],
)
def test_undecodable_values_get_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        SEGMENT_SCHEMA.decode_body(value)
    assert info.value.reason == reason


def test_registry_wire_format_through_the_confluent_client() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://codec-test"})
    schema_id = client.register_schema(
        "events-value", Schema(AvroSchema.from_file("schemas/segment_track.avsc").raw_json, "AVRO")
    )
    decoder = RegistryDecoder.with_client(client)
    record = track(7)
    assert (
        decoder(wire_format(schema_id, SEGMENT_SCHEMA.encode(record)))["properties"] == record["properties"]
    )
    with pytest.raises(InvalidMessage) as info:
        decoder(SEGMENT_SCHEMA.encode(record))  # no magic byte
    assert info.value.reason == "bad_magic_byte"
    with pytest.raises(InvalidMessage) as info:
        decoder(wire_format(schema_id + 99, b""))
    assert info.value.reason == "unknown_schema"


class Registry:
    """The registry client's `get_schema`, answering from a table (or failing with `error`)."""

    def __init__(self, schemas: dict[int, Schema]) -> None:
        self.schemas = schemas
        self.error: Exception | None = None
        self.calls = 0

    def get_schema(self, schema_id: int) -> Schema:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if schema_id not in self.schemas:
            raise SchemaRegistryError(404, 40403, "Schema not found")
        return self.schemas[schema_id]


def registry_decoder(registry: Registry, clock: list[float]) -> RegistryDecoder:
    decoder = RegistryDecoder.with_client(registry)
    decoder.clock = lambda: clock[0]
    return decoder


@pytest.mark.parametrize(
    "error",
    [
        SchemaRegistryError(500, 50001, "boom"),
        SchemaRegistryError(401, 40101, "unauthorized"),
        ConnectionRefusedError("refused"),
        TimeoutError(),
    ],
)
def test_a_registry_that_does_not_answer_holds_and_backs_off(error: Exception) -> None:
    registry, clock = Registry({1: Schema(SEGMENT_SCHEMA.raw_json, "AVRO")}), [100.0]
    decoder = registry_decoder(registry, clock)
    value = wire_format(1, SEGMENT_SCHEMA.encode(track(3)))
    registry.error = error
    with pytest.raises(SchemaUnavailable):
        decoder(value)
    with pytest.raises(SchemaUnavailable):  # backing off: no request
        decoder(value)
    assert registry.calls == 1
    clock[0] += REGISTRY_BACKOFF_S
    with pytest.raises(SchemaUnavailable):  # asked again, then backs off twice as long
        decoder(value)
    assert registry.calls == 2
    clock[0] += REGISTRY_BACKOFF_S
    with pytest.raises(SchemaUnavailable):
        decoder(value)
    assert registry.calls == 2
    clock[0] += REGISTRY_BACKOFF_S
    registry.error = None
    assert decoder(value)["messageId"] == "m-3"
    assert decoder(value)["messageId"] == "m-3"  # cached
    assert registry.calls == 3


@pytest.mark.parametrize(
    "schema",
    [
        Schema("this is not JSON {", "AVRO"),
        Schema('"string"', "AVRO"),
        Schema('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}', "AVRO"),
        Schema('{"type": "record", "name": "X", "fields": [], "fboc.json_fields": "a"}', "AVRO"),
        Schema('syntax = "proto3";', "PROTOBUF"),
    ],
)
def test_a_schema_fboc_cannot_read_is_invalid_schema_and_asked_once(schema: Schema) -> None:
    registry = Registry({2: schema})
    decoder = registry_decoder(registry, [0.0])
    for _ in range(2):
        with pytest.raises(InvalidMessage) as info:
            decoder(wire_format(2, b"\x00"))
        assert info.value.reason == "invalid_schema"
    assert registry.calls == 1


def test_an_unknown_schema_id_is_dead_lettered_not_held() -> None:
    decoder = registry_decoder(Registry({}), [0.0])
    with pytest.raises(InvalidMessage) as info:
        decoder(wire_format(9, b"\x00"))
    assert info.value.reason == "unknown_schema"


class HungRegistry(Registry):
    """A registry that answers only once `answer` is set: a lookup on the caller's thread would
    hang the test."""

    def __init__(self, schemas: dict[int, Schema]) -> None:
        super().__init__(schemas)
        self.answer = threading.Event()

    def get_schema(self, schema_id: int) -> Schema:
        assert self.answer.wait(30), "the registry was never allowed to answer"
        return super().get_schema(schema_id)


def decoded_once_looked_up(decoder: RegistryDecoder, value: bytes) -> dict[str, Any]:
    for _ in range(3000):
        try:
            return decoder(value)
        except SchemaUnavailable:
            time.sleep(0.01)
    raise AssertionError("the lookup never finished")


def test_a_hung_registry_never_blocks_the_caller() -> None:
    registry = HungRegistry({1: Schema(SEGMENT_SCHEMA.raw_json, "AVRO")})
    with ThreadPoolExecutor(1) as lookups:
        decoder = RegistryDecoder.with_client(registry, lookups)
        value = wire_format(1, SEGMENT_SCHEMA.encode(track(5)))
        for _ in range(3):  # held while the lookup hangs, and only one lookup asked for
            with pytest.raises(SchemaUnavailable, match="looking the schema up"):
                decoder(value)
        registry.answer.set()
        assert decoded_once_looked_up(decoder, value)["messageId"] == "m-5"
    assert registry.calls == 1


def test_lookups_under_way_are_bounded() -> None:
    registry = HungRegistry({})
    with ThreadPoolExecutor(1) as lookups:
        decoder = RegistryDecoder.with_client(registry, lookups)
        for schema_id in range(MAX_LOOKUPS + 10):
            with pytest.raises(SchemaUnavailable):
                decoder(wire_format(schema_id, b"\x00"))
        assert len(decoder._lookups) == MAX_LOOKUPS
        registry.answer.set()
    assert registry.calls == MAX_LOOKUPS


def test_an_unknown_schema_id_is_believed_for_a_minute() -> None:
    registry, clock = Registry({}), [0.0]
    decoder = registry_decoder(registry, clock)
    for _ in range(3):
        with pytest.raises(InvalidMessage, match="not found"):
            decoder(wire_format(9, b"\x00"))
    assert registry.calls == 1
    clock[0] += UNKNOWN_SCHEMA_TTL_S
    registry.schemas[9] = Schema(SEGMENT_SCHEMA.raw_json, "AVRO")  # registered since
    assert decoder(wire_format(9, SEGMENT_SCHEMA.encode(track(2))))["messageId"] == "m-2"
    assert registry.calls == 2
