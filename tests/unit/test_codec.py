from __future__ import annotations

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from consumer.codec import AvroSchema, RegistryDecoder, wire_format
from consumer.errors import InvalidMessage
from tests.helpers import SEGMENT_SCHEMA, track


def test_schemaless_round_trip_keeps_free_form_properties() -> None:
    record = track(1, coupon={"code": "X", "nested": [1, 2.5, None]})
    decoded = SEGMENT_SCHEMA.decode_body(SEGMENT_SCHEMA.encode(record))
    assert decoded["properties"] == record["properties"]
    assert decoded["context"] == record["context"]
    assert decoded["traits"] is None


@pytest.mark.parametrize(("value", "reason"), [
    (b"\x05\x00\xff", "undecodable"),
    (SEGMENT_SCHEMA.encode({"type": "track", "properties": "12"}), "invalid_json_field"),
    (SEGMENT_SCHEMA.encode({"type": "track", "properties": "{not json"}), "invalid_json_field"),
])
def test_undecodable_values_get_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        SEGMENT_SCHEMA.decode_body(value)
    assert info.value.reason == reason


def test_registry_wire_format_through_the_confluent_client() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://codec-test"})
    schema_id = client.register_schema("events-value",
                                       Schema(AvroSchema.from_file(
                                           "schemas/segment_track.avsc").raw_json, "AVRO"))
    decoder = RegistryDecoder.with_client(client)
    record = track(7)
    assert decoder(wire_format(schema_id, SEGMENT_SCHEMA.encode(record)))["properties"] == \
        record["properties"]
    with pytest.raises(InvalidMessage) as info:
        decoder(SEGMENT_SCHEMA.encode(record))  # no magic byte
    assert info.value.reason == "bad_magic_byte"
    with pytest.raises(InvalidMessage) as info:
        decoder(wire_format(schema_id + 99, b""))
    assert info.value.reason == "unknown_schema"
