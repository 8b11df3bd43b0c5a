"""Realistic Segment track calls for the demo and the benchmarks, with a few bad records."""

from __future__ import annotations

import random
import time
from typing import Any

NAMES = ["Order Completed", "Product Added", "Product Viewed", "Checkout Started", "Signed Up"]
CITIES = [
    ("New Orleans", "Louisiana", "70112"),
    ("Menlo Park", "CA", "94025-1234"),
    ("Austin", "TX", "78701"),
    ("Seattle", "Washington", "98101"),
]


def track(i: int, rng: random.Random, now: float, customers: int = 5000) -> dict[str, Any]:
    c = rng.randrange(customers)
    city, state, zipcode = CITIES[c % len(CITIES)]
    price = round(5 + (c % 50) * 1.25, 2)
    products = [
        {
            "product_id": f"sku-{(c + k) % 300}",
            "price": price,
            "quantity": 1 + k % 3,
            "category": "Games" if k % 2 else "Books",
            "brand": "Acme",
        }
        for k in range(1 + c % 3)
    ]
    return {
        "type": "track",
        "event": NAMES[i % len(NAMES)],
        "messageId": f"msg-{i}",
        "userId": f"customer-{c}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600 - i % 600)),
        "properties": {
            "order_id": f"order-{i}",
            "currency": "usd",
            "products": products,
            "store_id": f"store-{c % 12}",
            "coupon": None if c % 3 else "WINTER",
        },
        "context": {
            "ip": f"10.0.{c % 250}.{i % 250}",
            "traits": {
                "email": f"Customer.{c}@Example.com",
                "phone": f"(202) 555-{c % 10000:04d}",
                "firstName": "Jean-Luc" if c % 2 else "Zoë",
                "lastName": "O'Brien",
                "address": {"city": city, "state": state, "postalCode": zipcode, "country": "United States"},
            },
        },
    }


def bad(i: int, rng: random.Random, now: float) -> tuple[dict[str, Any] | bytes, str]:
    """One of the bad kinds, with the dead-letter reason fboc must give it."""
    kind = i % 4
    if kind == 0:
        return b"\x03not avro at all", "undecodable"
    record = track(i, rng, now)
    if kind == 1:
        return {**record, "type": "identify"}, "unsupported_type"
    if kind == 2:
        record["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30 * 86400))
        record["properties"]["action_source"] = "website"
        return record, "event_too_old"
    return {**record, "event": None}, "missing_event"


def generate(
    n: int, bad_every: int = 100, seed: int = 1, now: float | None = None
) -> list[tuple[bytes, dict[str, Any] | bytes, str | None]]:
    """n records (key, payload or raw bytes, expected dead-letter reason or None)."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    out: list[tuple[bytes, dict[str, Any] | bytes, str | None]] = []
    for i in range(n):
        key = f"customer-{i % 997}".encode()
        if bad_every and i % bad_every == bad_every - 1:
            payload, reason = bad(i // bad_every, rng, now)
            out.append((key, payload, reason))
        else:
            out.append((key, track(i, rng, now), None))
    return out
