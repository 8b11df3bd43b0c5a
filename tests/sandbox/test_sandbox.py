"""fboc sandbox: Meta-like validation, auth, recording, inspection and fault injection."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from consumer.sandbox import SandboxThread, create_app

NOW = 1_800_000_000
TOKEN = "tok-secret-123"
DAY = 86400
H = hashlib.sha256(b"alex@example.com").hexdigest()
H2 = hashlib.sha256(b"12025550146").hexdigest()
APP_DATA = {
    "advertiser_tracking_enabled": True,
    "application_tracking_enabled": False,
    "extinfo": [
        "a2",
        "com.example.app",
        "1.0",
        "1.0 long",
        "17.0",
        "iPhone15,2",
        "en_US",
        "CET",
        "Carrier",
        "393",
        "852",
        "3",
        "6",
        "256",
        "128",
        "Europe/Paris",
    ],
}


def event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": "Purchase",
        "event_time": NOW - 60,
        "event_id": f"e{i}",
        "action_source": "physical_store",
        "user_data": {"em": [H], "ph": [H2]},
        "custom_data": {"value": 12.5, "currency": "USD", "order_id": f"o{i}"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@asynccontextmanager
async def sandbox(**kwargs: Any) -> AsyncIterator[TestClient[Any, Any]]:
    kwargs.setdefault("tokens", (TOKEN,))
    kwargs.setdefault("now", lambda: float(NOW))
    async with TestClient(TestServer(create_app(**kwargs))) as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    async with sandbox() as c:
        yield c


async def post(
    client: TestClient[Any, Any],
    data: Any,
    set_id: str = "123",
    token: str | None = TOKEN,
    version: str = "v26.0",
    **body: Any,
) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await client.post(f"/{version}/{set_id}/events", json={"data": data, **body}, headers=headers)


async def get_json(client: TestClient[Any, Any], path: str) -> Any:
    response = await client.get(path)
    assert response.status == 200
    return await response.json()


async def error_of(
    response: aiohttp.ClientResponse, status: int = 400, kind: str = "OAuthException"
) -> dict[str, Any]:
    assert response.status == status
    body = await response.json()
    error: dict[str, Any] = body["error"]
    assert error["type"] == kind
    assert error["fbtrace_id"]
    return error


async def add_fault(client: TestClient[Any, Any], rule: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/_sandbox/faults", json=rule)
    assert response.status == 201, await response.text()
    fault: dict[str, Any] = (await response.json())["fault"]
    return fault


# --- success and recording -----------------------------------------------------------------


async def test_accepts_valid_events_and_records_them(client: TestClient[Any, Any]) -> None:
    response = await post(
        client, [event(0), event(1)], upload_tag="store-1", test_event_code="TEST1", partner_agent="fboc"
    )
    assert response.status == 200
    body = await response.json()
    assert body["events_received"] == 2
    assert body["messages"] == []
    assert body["fbtrace_id"]
    assert response.headers["x-fb-trace-id"] == body["fbtrace_id"]

    events = (await get_json(client, "/_sandbox/events"))["events"]
    assert [e["event"]["event_id"] for e in events] == ["e0", "e1"]
    assert events[0]["event"] == event(0)
    assert {e["event_set_id"] for e in events} == {"123"}
    assert {e["upload_tag"] for e in events} == {"store-1"}
    assert {e["test_event_code"] for e in events} == {"TEST1"}
    assert events[0]["request_id"] == events[1]["request_id"]
    assert events[0]["received_at"] == NOW

    [request] = (await get_json(client, "/_sandbox/requests"))["requests"]
    assert request["request_id"] == events[0]["request_id"]
    assert request["event_set_id"] == "123"
    assert request["status"] == 200
    assert request["events"] == 2
    assert request["accepted_events"] == 2
    assert request["error_code"] is None
    assert request["fault"] is None


async def test_events_filter_by_event_set(client: TestClient[Any, Any]) -> None:
    assert (await post(client, [event(0)], set_id="111")).status == 200
    assert (await post(client, [event(1), event(2)], set_id="222")).status == 200
    only = (await get_json(client, "/_sandbox/events?event_set_id=222"))["events"]
    assert [e["event"]["event_id"] for e in only] == ["e1", "e2"]
    assert len((await get_json(client, "/_sandbox/events"))["events"]) == 3


async def test_accepts_exactly_1000_events(client: TestClient[Any, Any]) -> None:
    response = await post(client, [event(i) for i in range(1000)])
    assert response.status == 200
    assert (await response.json())["events_received"] == 1000


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"event_time": NOW + 60}, id="60s-in-future"),
        pytest.param({"event_time": NOW - 7 * DAY, "action_source": "system_generated"}, id="exactly-7-days"),
        pytest.param({"event_time": NOW - 62 * DAY}, id="physical-store-62-days"),
        pytest.param({"user_data": {"external_id": ["customer-42"]}}, id="plain-external-id"),
        pytest.param({"user_data": {"external_id": [H]}}, id="hashed-external-id"),
        pytest.param(
            {
                "user_data": {
                    k: [H] for k in ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country")
                }
            },
            id="every-hashed-key",
        ),
        pytest.param(
            {"user_data": {"client_ip_address": "203.0.113.9", "client_user_agent": "UA/1"}}, id="ip-and-ua"
        ),
        pytest.param(
            {
                "action_source": "website",
                "event_source_url": "https://shop.example/",
                "user_data": {"em": [H], "client_user_agent": "UA/1"},
            },
            id="website",
        ),
        pytest.param({"event_name": "Lead", "custom_data": None}, id="lead-without-value"),
    ],
)
async def test_accepts_valid_edge_cases(client: TestClient[Any, Any], overrides: dict[str, Any]) -> None:
    response = await post(client, [event(0, **overrides)])
    assert response.status == 200, await response.text()
    assert len((await get_json(client, "/_sandbox/events"))["events"]) == 1


# --- validation: all or nothing ------------------------------------------------------------


BAD_EVENTS = [
    pytest.param({"event_name": None}, 2804007, id="no-event-name"),
    pytest.param({"event_name": "  "}, 2804007, id="blank-event-name"),
    pytest.param({"event_time": None}, 2804007, id="no-event-time"),
    pytest.param({"event_time": str(NOW)}, 2804007, id="string-event-time"),
    pytest.param({"event_time": NOW - 0.5}, 2804007, id="float-event-time"),
    pytest.param({"event_time": True}, 2804007, id="bool-event-time"),
    pytest.param({"action_source": None}, 2804007, id="no-action-source"),
    pytest.param({"action_source": "store"}, 2804019, id="bad-action-source"),
    pytest.param({"user_data": None}, 2804050, id="no-user-data"),
    pytest.param({"user_data": {}}, 2804050, id="empty-user-data"),
    pytest.param({"user_data": [H]}, 2804050, id="user-data-not-object"),
    pytest.param(
        {"event_time": NOW - 7 * DAY - 1, "action_source": "system_generated"},
        2804003,
        id="older-than-7-days",
    ),
    pytest.param({"event_time": NOW - 62 * DAY - 1}, 2804003, id="physical-store-over-62-days"),
    pytest.param({"event_time": NOW + 61}, 2804001, id="61s-in-future"),
    pytest.param({"user_data": {"em": ["alex@example.com"]}}, 2804016, id="plaintext-em"),
    pytest.param({"user_data": {"em": H}}, 2804016, id="em-not-list"),
    pytest.param({"user_data": {"em": [H.upper()]}}, 2804016, id="upper-case-hash"),
    pytest.param({"user_data": {"ph": [H[:63]]}}, 2804016, id="short-hash"),
    pytest.param({"user_data": {"em": []}}, 2804016, id="empty-list"),
    pytest.param({"user_data": {"em": [H], "zp": ["90210"]}}, 2804016, id="plaintext-zp"),
    pytest.param({"user_data": {"em": [H], "country": ["us"]}}, 2804016, id="plaintext-country"),
    pytest.param({"user_data": {"external_id": "customer-42"}}, 2804016, id="external-id-str"),
    pytest.param({"user_data": {"external_id": [""]}}, 2804016, id="external-id-empty"),
    pytest.param({"user_data": {"fn": [H], "ge": [H]}}, 2804050, id="only-fn-ge"),
    pytest.param({"user_data": {"ct": [H], "client_user_agent": "UA/1"}}, 2804050, id="only-location-ua"),
    pytest.param(
        {"action_source": "website", "event_source_url": "https://shop.example/"},
        2804007,
        id="website-without-user-agent",
    ),
    pytest.param(
        {"action_source": "website", "user_data": {"em": [H], "client_user_agent": "U"}},
        2804007,
        id="website-without-url",
    ),
    pytest.param({"custom_data": {"value": 10}}, 2804019, id="purchase-without-currency"),
    pytest.param({"custom_data": {"currency": "USD"}}, 2804019, id="purchase-without-value"),
    pytest.param({"custom_data": [1]}, 2804019, id="custom-data-not-object"),
    pytest.param({"custom_data": {"value": 1, "currency": "XYZ"}}, 2804019, id="currency-xyz"),
    pytest.param(
        {"event_name": "Lead", "custom_data": {"currency": "EURO"}}, 2804019, id="lead-currency-not-iso"
    ),
    pytest.param({"custom_data": {"value": 1, "currency": 840}}, 2804019, id="currency-number"),
    pytest.param({"action_source": "app"}, 2804007, id="app-without-app-data"),
    pytest.param(
        {"action_source": "app", "app_data": {**APP_DATA, "extinfo": []}}, 2804007, id="app-without-extinfo"
    ),
    pytest.param(
        {"action_source": "app", "app_data": {"application_tracking_enabled": True, "extinfo": ["a2"]}},
        2804007,
        id="app-without-advertiser-tracking",
    ),
    pytest.param({"action_source": "business_messaging"}, 2804007, id="business-messaging-without-channel"),
    pytest.param(
        {"action_source": "business_messaging", "messaging_channel": ""},
        2804007,
        id="business-messaging-empty-channel",
    ),
]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"action_source": "app", "app_data": APP_DATA}, id="app"),
        pytest.param(
            {"action_source": "business_messaging", "messaging_channel": "whatsapp"}, id="business-messaging"
        ),
        pytest.param({"custom_data": {"value": 1, "currency": "jpy"}}, id="currency-any-case"),
        pytest.param({"event_name": "Lead", "custom_data": {}}, id="lead-without-currency"),
    ],
)
async def test_events_meta_takes(client: TestClient[Any, Any], overrides: dict[str, Any]) -> None:
    response = await post(client, [event(0, **overrides)])
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(("overrides", "subcode"), BAD_EVENTS)
async def test_one_invalid_event_rejects_the_whole_request(
    client: TestClient[Any, Any], overrides: dict[str, Any], subcode: int
) -> None:
    response = await post(client, [event(0), event(1, **overrides), event(2)])
    error = await error_of(response)
    assert error["code"] == 100
    assert error["error_subcode"] == subcode
    assert error["is_transient"] is False
    assert error["error_user_title"]
    assert error["error_user_msg"].startswith("Event 1: ")
    assert "alex@example.com" not in await response.text()
    assert (await get_json(client, "/_sandbox/events"))["events"] == []
    [request] = (await get_json(client, "/_sandbox/requests"))["requests"]
    assert (request["status"], request["error_code"], request["error_subcode"]) == (400, 100, subcode)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-data"),
        pytest.param({"data": []}, id="empty-data"),
        pytest.param({"data": {"event_name": "Purchase"}}, id="data-not-list"),
        pytest.param({"data": [event(i) for i in range(1001)]}, id="1001-events"),
        pytest.param({"data": [event(0), "nope"]}, id="event-not-object"),
    ],
)
async def test_rejects_bad_data(client: TestClient[Any, Any], body: dict[str, Any]) -> None:
    response = await client.post("/v26.0/123/events", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    error = await error_of(response)
    assert (error["code"], error["error_subcode"]) == (100, 2804048)
    assert (await get_json(client, "/_sandbox/events"))["events"] == []


async def test_rejects_non_string_upload_tag(client: TestClient[Any, Any]) -> None:
    error = await error_of(await post(client, [event()], upload_tag=7))
    assert (error["code"], error["error_subcode"]) == (100, 2804019)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
async def test_rejects_body_that_is_not_a_json_object(client: TestClient[Any, Any], raw: bytes) -> None:
    response = await client.post(
        "/v26.0/123/events",
        data=raw,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    error = await error_of(response)
    assert (error["code"], error["error_subcode"]) == (100, 2804048)


@pytest.mark.parametrize("version", ["26.0", "v26", "latest", "v26.0.1"])
async def test_rejects_bad_api_version(client: TestClient[Any, Any], version: str) -> None:
    error = await error_of(await post(client, [event()], version=version))
    assert error["code"] == 2500


@pytest.mark.parametrize("set_id", ["abc", "12a", "act_123"])
async def test_rejects_non_numeric_event_set(client: TestClient[Any, Any], set_id: str) -> None:
    error = await error_of(await post(client, [event()], set_id=set_id))
    assert (error["code"], error["error_subcode"]) == (100, 33)


# --- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer wrong"}, id="unknown-token"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="not-bearer"),
        pytest.param({"Authorization": "Bearer "}, id="empty-bearer"),
    ],
)
async def test_refuses_missing_or_unknown_token(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    response = await client.post("/v26.0/123/events", json={"data": [event()]}, headers=headers)
    error = await error_of(response)
    assert error["code"] == 190
    assert error["is_transient"] is False
    assert (await get_json(client, "/_sandbox/events"))["events"] == []


async def test_accepts_any_configured_token() -> None:
    async with sandbox(tokens=("a", "b")) as client:
        assert (await post(client, [event()], token="a")).status == 200
        assert (await post(client, [event()], token="b")).status == 200
        assert (await post(client, [event()], token=TOKEN)).status == 400


@pytest.mark.parametrize("param", ["access_token", "appsecret_proof"])
async def test_refuses_secrets_in_the_url_and_never_echoes_them(
    client: TestClient[Any, Any], param: str
) -> None:
    with capture_logs() as logs:
        response = await client.post(
            f"/v26.0/123/events?{param}={TOKEN}",
            json={"data": [event()]},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    error = await error_of(response)
    assert error["code"] == 190
    assert TOKEN not in await response.text()
    assert TOKEN not in str(logs)
    assert (await get_json(client, "/_sandbox/events"))["events"] == []
    assert TOKEN not in await (await client.get("/_sandbox/requests")).text()


async def test_appsecret_proof_required_when_app_secret_set() -> None:
    proof = hmac.new(b"app-secret", TOKEN.encode(), hashlib.sha256).hexdigest()
    async with sandbox(app_secret="app-secret") as client:
        # like Meta: code 100 without a subcode, a GraphMethodException naming the proof
        error = await error_of(await post(client, [event()]), kind="GraphMethodException")
        assert error["code"] == 100
        assert "error_subcode" not in error
        assert "appsecret_proof" in error["message"]
        error = await error_of(
            await post(client, [event()], appsecret_proof="0" * 64), kind="GraphMethodException"
        )
        assert (error["code"], error.get("error_subcode")) == (100, None)
        assert "appsecret_proof" in error["message"]
        error = await error_of(
            await post(client, [event()], appsecret_proof=proof.upper()), kind="GraphMethodException"
        )
        assert error["code"] == 100
        response = await post(client, [event()], appsecret_proof=proof)
        assert response.status == 200
        events = (await get_json(client, "/_sandbox/events"))["events"]
        assert len(events) == 1


async def test_appsecret_proof_ignored_without_app_secret(client: TestClient[Any, Any]) -> None:
    assert (await post(client, [event()], appsecret_proof="anything")).status == 200


def test_tokens_must_be_a_collection_not_a_string() -> None:
    with pytest.raises(TypeError):
        create_app(tokens="sandbox-token")


# --- inspection ----------------------------------------------------------------------------


async def test_requests_list_every_request_without_token(client: TestClient[Any, Any]) -> None:
    await post(client, [event(0)], set_id="111", upload_tag="u")
    await post(client, [event(1, event_time=NOW - 30 * DAY, action_source="email")], set_id="222")
    await post(client, [event(2)], token="bad")
    text = await (await client.get("/_sandbox/requests")).text()
    assert TOKEN not in text
    requests = json.loads(text)["requests"]
    assert [(r["event_set_id"], r["status"], r["error_code"], r["error_subcode"]) for r in requests] == [
        ("111", 200, None, None),
        ("222", 400, 100, 2804003),
        ("123", 400, 190, None),
    ]
    assert requests[0]["upload_tag"] == "u"
    assert len({r["request_id"] for r in requests}) == 3
    assert all(r["done"] for r in requests)


async def test_stats_count_requests_events_and_statuses(client: TestClient[Any, Any]) -> None:
    await post(client, [event(0), event(1)])
    await post(client, [event(2)])
    await post(client, [event(3, event_name="")])
    await add_fault(client, {"action": {"http_status": 503}, "times": 1})
    await post(client, [event(4)])
    stats = await get_json(client, "/_sandbox/stats")
    assert stats == {
        "requests": 4,
        "accepted_requests": 2,
        "rejected_requests": 2,
        "in_progress": 0,
        "accepted_events": 3,
        "stored_events": 3,
        "deduplicated": 0,
        "deduplicated_distinct": 0,
        "deduplicated_changed": 0,
        "faults_applied": 1,
        "by_status": {"200": 2, "400": 1, "503": 1},
        "by_error_code": {"100": 1, "2": 1},
    }


async def test_only_the_latest_events_are_kept_but_stats_count_every_one() -> None:
    async with sandbox(max_stored_events=2) as client:
        await post(client, [event(0), event(1)])
        await post(client, [event(2)])
        stored = (await get_json(client, "/_sandbox/events"))["events"]
        assert [e["event"]["event_id"] for e in stored] == ["e1", "e2"]
        stats = await get_json(client, "/_sandbox/stats")
        assert (stats["accepted_events"], stats["stored_events"]) == (3, 2)


# --- offline dedup, as Meta does it -------------------------------------------------------


async def stats_of(client: TestClient[Any, Any]) -> tuple[int, int, int, int]:
    stats = await get_json(client, "/_sandbox/stats")
    return (
        stats["accepted_events"],
        stats["stored_events"],
        stats["deduplicated"],
        stats["deduplicated_distinct"],
    )


def purchase(**custom: Any) -> dict[str, Any]:
    return {"value": 12.5, "currency": "USD", **custom}


async def test_offline_dedup_drops_a_later_event_with_the_same_key(client: TestClient[Any, Any]) -> None:
    # same order, name and time, another event_id: Meta counts it received, keeps the first
    assert (await (await post(client, [event(1)])).json())["events_received"] == 1
    again = event(2, custom_data={"value": 99.0, "currency": "USD", "order_id": "o1"})
    assert (await (await post(client, [again])).json())["events_received"] == 1
    assert (await post(client, [event(1)])).status == 200  # a plain redelivery
    stored = (await get_json(client, "/_sandbox/events"))["events"]
    assert [e["event"]["event_id"] for e in stored] == ["e1"]
    assert await stats_of(client) == (3, 1, 2, 1)
    # the first duplicate also differed in content (value 99), the plain redelivery did not
    assert (await get_json(client, "/_sandbox/stats"))["deduplicated_changed"] == 1
    requests = (await get_json(client, "/_sandbox/requests"))["requests"]
    assert [r["deduplicated_events"] for r in requests] == [0, 1, 1]


async def test_offline_dedup_without_order_id_keys_on_the_customer(client: TestClient[Any, Any]) -> None:
    plain = {"value": 5.0, "currency": "USD"}
    same_person = [event(i, custom_data=plain) for i in range(3)]
    other_person = event(3, custom_data=plain, user_data={"em": [H2]})
    await post(client, [*same_person, other_person])
    stored = (await get_json(client, "/_sandbox/events"))["events"]
    assert [e["event"]["event_id"] for e in stored] == ["e0", "e3"]
    assert await stats_of(client) == (4, 2, 2, 2)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"custom_data": purchase(order_id="o1", item_number="2")}, id="item-number"),
        pytest.param({"event_time": NOW - 59}, id="event-time"),
        pytest.param({"event_name": "AddToCart"}, id="event-name"),
        pytest.param({"custom_data": purchase(order_id="o2")}, id="order-id"),
        pytest.param(
            {
                "action_source": "website",
                "event_source_url": "https://shop.example/",
                "user_data": {"em": [H], "client_user_agent": "UA/1"},
            },
            id="website",
        ),
    ],
)
async def test_offline_dedup_keeps_events_that_differ_in_the_key(
    client: TestClient[Any, Any], overrides: dict[str, Any]
) -> None:
    first = event(1, custom_data=purchase(order_id="o1"))
    if "website" in str(overrides):  # website events are not deduplicated offline
        first = event(1, **overrides)
    await post(client, [first, event(2, **overrides)])
    assert await stats_of(client) == (2, 2, 0, 0)


async def test_offline_dedup_is_per_dataset_and_lasts_seven_days() -> None:
    clock = [float(NOW)]
    async with sandbox(now=lambda: clock[0]) as client:
        await post(client, [event(1)], set_id="111")
        await post(client, [event(2, custom_data=purchase(order_id="o1"))], set_id="222")
        clock[0] += 7 * DAY - 1
        await post(client, [event(3, custom_data=purchase(order_id="o1"))], set_id="111")
        assert await stats_of(client) == (3, 2, 1, 1)
        clock[0] += 1
        # a week after the first was kept its key is gone; event_time is checked against now
        await post(client, [event(4, custom_data=purchase(order_id="o1"), event_time=NOW - 60)], set_id="111")
        assert await stats_of(client) == (4, 3, 1, 1)
        response = await client.post("/_sandbox/reset")
        assert response.status == 200
        assert await stats_of(client) == (0, 0, 0, 0)


async def test_reset_clears_events_requests_and_faults(client: TestClient[Any, Any]) -> None:
    await post(client, [event()])
    await add_fault(client, {"action": {"http_status": 500}, "match": {"event_set_id": "999"}})
    response = await client.post("/_sandbox/reset")
    assert response.status == 200
    assert (await get_json(client, "/_sandbox/events"))["events"] == []
    assert (await get_json(client, "/_sandbox/requests"))["requests"] == []
    assert (await get_json(client, "/_sandbox/faults"))["faults"] == []
    assert (await get_json(client, "/_sandbox/stats"))["requests"] == 0
    assert (await post(client, [event()], set_id="999")).status == 200


async def test_index_page_says_what_it_is(client: TestClient[Any, Any]) -> None:
    response = await client.get("/")
    assert response.status == 200
    text = await response.text()
    assert "sandbox" in text
    assert "/_sandbox/faults" in text


async def test_logs_one_line_per_request_without_secrets_or_contents(
    client: TestClient[Any, Any],
) -> None:
    with capture_logs() as logs:
        await post(client, [event(0, event_id="evt-distinctive")])
        await post(client, [event(1, event_name="")])
        await client.get("/_sandbox/events")
    assert [entry["event"] for entry in logs] == ["sandbox_request", "sandbox_request"]
    assert [entry["status"] for entry in logs] == [200, 400]
    assert [entry["request_id"] for entry in logs] == ["req-000001", "req-000002"]
    for secret in (TOKEN, H, "evt-distinctive", "order_id"):
        assert secret not in str(logs)


# --- faults --------------------------------------------------------------------------------


async def test_latency_fault_delays_then_handles_normally(client: TestClient[Any, Any]) -> None:
    await add_fault(client, {"action": {"latency_ms": 300}, "times": 1})
    started = time.monotonic()
    response = await post(client, [event()])
    assert time.monotonic() - started >= 0.3
    assert response.status == 200
    assert len((await get_json(client, "/_sandbox/events"))["events"]) == 1
    started = time.monotonic()
    assert (await post(client, [event(1)])).status == 200
    assert time.monotonic() - started < 0.3
    requests = (await get_json(client, "/_sandbox/requests"))["requests"]
    assert [r["fault"] for r in requests] == ["latency_ms", None]


async def test_latency_fault_still_validates(client: TestClient[Any, Any]) -> None:
    await add_fault(client, {"action": {"latency_ms": 1}})
    error = await error_of(await post(client, [event(0, event_name="")]))
    assert error["code"] == 100


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_http_status_fault_is_a_transient_error(client: TestClient[Any, Any], status: int) -> None:
    await add_fault(client, {"action": {"http_status": status}, "times": 1})
    response = await post(client, [event()])
    error = await error_of(response, status)
    assert error["code"] == 2
    assert error["is_transient"] is True
    assert error["message"] == "Service temporarily unavailable"
    assert (await get_json(client, "/_sandbox/events"))["events"] == []
    assert (await post(client, [event()])).status == 200
    requests = (await get_json(client, "/_sandbox/requests"))["requests"]
    assert [(r["status"], r["fault"]) for r in requests] == [(status, "http_status"), (200, None)]


async def test_throttle_error_fault_with_regain_header(client: TestClient[Any, Any]) -> None:
    await add_fault(
        client, {"action": {"error": {"code": 80004, "error_subcode": 2446079}, "regain_minutes": 7}}
    )
    response = await post(client, [event()])
    error = await error_of(response)
    assert (error["code"], error["error_subcode"], error["is_transient"]) == (80004, 2446079, True)
    usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
    [entries] = usage.values()
    assert entries[0]["estimated_time_to_regain_access"] == 7


async def test_throttle_without_regain_sends_no_usage_header(
    client: TestClient[Any, Any],
) -> None:
    await add_fault(client, {"action": {"error": {"code": 17}}})
    response = await post(client, [event()])
    assert (await error_of(response))["code"] == 17
    assert "X-Business-Use-Case-Usage" not in response.headers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"code": 190}, (190, None, False), id="token"),
        pytest.param({"code": 100, "error_subcode": 33}, (100, 33, False), id="no-dataset"),
        pytest.param({"code": 1, "is_transient": False}, (1, None, False), id="override"),
        pytest.param({"code": 2}, (2, None, True), id="transient-default"),
        pytest.param({"code": 613}, (613, None, True), id="throttle-613"),
    ],
)
async def test_error_fault_returns_meta_error(
    client: TestClient[Any, Any], spec: dict[str, Any], expected: tuple[int, int | None, bool]
) -> None:
    await add_fault(client, {"action": {"error": spec}, "times": 1})
    error = await error_of(await post(client, [event()]))
    assert (error["code"], error.get("error_subcode"), error["is_transient"]) == expected
    assert (await get_json(client, "/_sandbox/events"))["events"] == []


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        pytest.param(
            {"code": 102}, "OAuthException", "Session key invalid or no longer valid", id="session-102"
        ),
        pytest.param({"code": 100}, "GraphMethodException", "Invalid parameter", id="100-no-subcode"),
        pytest.param(
            {"code": 100, "type": "OAuthException"}, "OAuthException", "Invalid parameter", id="explicit-type"
        ),
    ],
)
async def test_request_level_error_faults_answer_like_meta(
    client: TestClient[Any, Any], spec: dict[str, Any], kind: str, message: str
) -> None:
    await add_fault(client, {"action": {"error": spec}, "times": 1})
    error = await error_of(await post(client, [event()]), kind=kind)
    assert (error["code"], error.get("error_subcode"), error["message"]) == (spec["code"], None, message)


async def test_error_fault_message_and_http_status(client: TestClient[Any, Any]) -> None:
    await add_fault(client, {"action": {"error": {"code": 1, "message": "boom", "http_status": 200}}})
    error = await error_of(await post(client, [event()]), 200)
    assert (error["code"], error["message"]) == (1, "boom")


async def test_reject_events_fault_only_hits_requests_with_those_events(
    client: TestClient[Any, Any],
) -> None:
    await add_fault(client, {"match": {"event_ids": ["e5"]}, "action": {"reject_events": True}})
    error = await error_of(await post(client, [event(4), event(5), event(6)]))
    assert (error["code"], error["is_transient"]) == (100, False)
    assert error["error_user_msg"].startswith("Event 1: ")
    assert (await post(client, [event(4)])).status == 200
    assert (await post(client, [event(6)])).status == 200
    error = await error_of(await post(client, [event(5)]))
    assert error["error_user_msg"].startswith("Event 0: ")
    events = (await get_json(client, "/_sandbox/events"))["events"]
    assert [e["event"]["event_id"] for e in events] == ["e4", "e6"]


async def test_timeout_fault_holds_longer_than_client_timeout(
    client: TestClient[Any, Any],
) -> None:
    await add_fault(client, {"action": {"timeout": True}, "times": 1})
    with pytest.raises(asyncio.TimeoutError):
        await client.post(
            "/v26.0/123/events",
            json={"data": [event()]},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    await asyncio.sleep(0.05)
    [request] = (await get_json(client, "/_sandbox/requests"))["requests"]
    assert (request["fault"], request["status"], request["client_disconnected"]) == ("timeout", None, True)
    assert (await post(client, [event(1)])).status == 200
    assert (await get_json(client, "/_sandbox/events"))["events"][0]["event"]["event_id"] == "e1"


async def test_timeout_fault_is_released_on_shutdown() -> None:
    async with sandbox() as client:
        await add_fault(client, {"action": {"timeout": True}})
        held = asyncio.ensure_future(post(client, [event()]))
        await asyncio.sleep(0.1)
        assert (await get_json(client, "/_sandbox/stats"))["in_progress"] == 1
        [request] = (await get_json(client, "/_sandbox/requests"))["requests"]
        assert (request["fault"], request["done"]) == ("timeout", False)
        started = time.monotonic()
        assert client.server.runner is not None
        await client.server.runner.cleanup()
        response = await held
        assert time.monotonic() - started < 5
        assert response.status == 503


async def test_timeout_fault_with_short_hold_answers_transient(
    client: TestClient[Any, Any],
) -> None:
    await add_fault(client, {"action": {"timeout": True, "seconds": 0.2}})
    error = await error_of(await post(client, [event()]), 503)
    assert (error["code"], error["is_transient"]) == (2, True)
    assert (await get_json(client, "/_sandbox/events"))["events"] == []


async def test_reset_fault_drops_the_connection(client: TestClient[Any, Any]) -> None:
    await add_fault(client, {"action": {"reset": True}, "times": 1})
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(client, [event()])
    assert (await post(client, [event(1)])).status == 200
    requests = (await get_json(client, "/_sandbox/requests"))["requests"]
    assert [(r["fault"], r["status"], r["done"], r["client_disconnected"]) for r in requests] == [
        ("reset", None, True, False),
        (None, 200, True, False),
    ]
    events = (await get_json(client, "/_sandbox/events"))["events"]
    assert [e["event"]["event_id"] for e in events] == ["e1"]


async def test_wrong_events_received_fault(client: TestClient[Any, Any]) -> None:
    await add_fault(client, {"action": {"wrong_events_received": True}, "times": 1})
    response = await post(client, [event(0), event(1), event(2)])
    assert response.status == 200
    assert (await response.json())["events_received"] == 2
    assert (await get_json(client, "/_sandbox/events"))["events"] == []
    stats = await get_json(client, "/_sandbox/stats")
    assert (stats["accepted_requests"], stats["rejected_requests"]) == (0, 1)


async def test_fault_matches_event_set(client: TestClient[Any, Any]) -> None:
    await add_fault(client, {"match": {"event_set_id": "111"}, "action": {"http_status": 500}})
    assert (await post(client, [event()], set_id="222")).status == 200
    assert (await post(client, [event()], set_id="111")).status == 500
    assert (await post(client, [event()], set_id="111")).status == 500


async def test_fault_times_count_down(client: TestClient[Any, Any]) -> None:
    rule = await add_fault(client, {"action": {"http_status": 502}, "times": 2})
    assert (rule["id"], rule["remaining"]) == ("f1", 2)
    statuses = [(await post(client, [event(i)])).status for i in range(3)]
    assert statuses == [502, 502, 200]
    [listed] = (await get_json(client, "/_sandbox/faults"))["faults"]
    assert (listed["remaining"], listed["applied"], listed["times"]) == (0, 2, 2)


async def test_first_matching_rule_wins(client: TestClient[Any, Any]) -> None:
    await add_fault(client, {"match": {"event_set_id": "111"}, "action": {"http_status": 500}, "times": 1})
    await add_fault(client, {"action": {"http_status": 503}, "times": 1})
    assert (await post(client, [event()], set_id="111")).status == 500
    assert (await post(client, [event()], set_id="111")).status == 503
    assert (await post(client, [event()], set_id="111")).status == 200


async def test_faults_apply_after_auth(client: TestClient[Any, Any]) -> None:
    await add_fault(client, {"action": {"http_status": 500}, "times": 1})
    assert (await error_of(await post(client, [event()], token="bad")))["code"] == 190
    assert (await post(client, [event()])).status == 500


async def test_delete_faults(client: TestClient[Any, Any]) -> None:
    first = await add_fault(client, {"action": {"http_status": 500}})
    await add_fault(client, {"action": {"http_status": 503}})
    assert (await client.delete(f"/_sandbox/faults/{first['id']}")).status == 200
    assert (await client.delete("/_sandbox/faults/nope")).status == 404
    assert (await post(client, [event()])).status == 503
    response = await client.delete("/_sandbox/faults")
    assert (await response.json())["cleared"] == 1
    assert (await post(client, [event()])).status == 200


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param([], id="not-object"),
        pytest.param({}, id="no-action"),
        pytest.param({"action": {}}, id="empty-action"),
        pytest.param({"action": {"explode": True}}, id="unknown-action"),
        pytest.param({"action": {"reset": True, "timeout": True}}, id="two-actions"),
        pytest.param({"action": {"http_status": 404}}, id="non-5xx"),
        pytest.param({"action": {"latency_ms": -1}}, id="negative-latency"),
        pytest.param({"action": {"error": {"message": "x"}}}, id="error-without-code"),
        pytest.param({"action": {"error": {"code": "4"}}}, id="string-code"),
        pytest.param({"action": {"reject_events": True}}, id="reject-without-event-ids"),
        pytest.param({"action": {"reset": True}, "times": 0}, id="zero-times"),
        pytest.param({"action": {"reset": True}, "match": {"event_ids": "e1"}}, id="ids-str"),
        pytest.param({"action": {"reset": True}, "match": {"event": "e1"}}, id="unknown-match"),
        pytest.param({"action": {"reset": True}, "when": 1}, id="unknown-key"),
        pytest.param({"action": {"timeout": True, "seconds": 0}}, id="zero-seconds"),
    ],
)
async def test_bad_fault_rules_are_refused(client: TestClient[Any, Any], rule: Any) -> None:
    response = await client.post("/_sandbox/faults", json=rule)
    assert response.status == 400
    assert (await response.json())["error"]["message"].startswith("bad fault rule")
    assert (await get_json(client, "/_sandbox/faults"))["faults"] == []


async def test_fault_rule_list_shows_rules(client: TestClient[Any, Any]) -> None:
    rule = {
        "match": {"event_set_id": 111, "event_ids": ["a"]},
        "action": {"reject_events": True},
        "times": None,
    }
    await add_fault(client, rule)
    [listed] = (await get_json(client, "/_sandbox/faults"))["faults"]
    assert listed == {
        "id": "f1",
        "match": {"event_set_id": "111", "event_ids": ["a"]},
        "times": None,
        "remaining": None,
        "applied": 0,
        "action": {"reject_events": True},
    }


# --- running in a thread -------------------------------------------------------------------


async def test_sandbox_thread_serves_and_stops() -> None:
    thread = SandboxThread(tokens=("t",), now=lambda: float(NOW))
    with pytest.raises(RuntimeError):
        _ = thread.url
    with thread as running:
        url = running.url
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"{url}/v26.0/123/events", json={"data": [event()]}, headers={"Authorization": "Bearer t"}
            )
            assert response.status == 200
            async with session.get(f"{url}/_sandbox/events") as listing:
                assert len((await listing.json())["events"]) == 1
    with pytest.raises(RuntimeError):
        _ = thread.url
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{url}/")


async def test_sandbox_thread_releases_requests_the_client_gave_up_on() -> None:
    with SandboxThread(tokens=("t",), now=lambda: float(NOW)) as running:
        async with aiohttp.ClientSession() as session:
            rule = {"action": {"timeout": True}}
            async with session.post(f"{running.url}/_sandbox/faults", json=rule) as added:
                assert added.status == 201
            with pytest.raises(asyncio.TimeoutError):
                await session.post(
                    f"{running.url}/v26.0/123/events",
                    json={"data": [event()]},
                    headers={"Authorization": "Bearer t"},
                    timeout=aiohttp.ClientTimeout(total=0.3),
                )
            await asyncio.sleep(0.1)
            async with session.get(f"{running.url}/_sandbox/requests") as listing:
                [request] = (await listing.json())["requests"]
        assert (request["fault"], request["done"], request["client_disconnected"]) == ("timeout", True, True)
        started = time.monotonic()
    assert time.monotonic() - started < 5


def test_run_sandbox_serves_without_logging_url_secrets() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"from consumer.sandbox import run_sandbox; run_sandbox(port={port}, tokens=['t'])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/", timeout=1) as page:
                    assert "sandbox" in page.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "sandbox did not start"
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{url}/v26.0/123/events?access_token=leaky-{TOKEN}",
            method="POST",
            data=json.dumps({"data": [event()]}).encode(),
            headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert json.loads(refused.value.read())["error"]["code"] == 190
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
    assert "sandbox_request" in output
    assert f"leaky-{TOKEN}" not in output
