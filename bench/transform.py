"""Transform throughput per dialect on one core (a benchmark, not a test).

    .venv/bin/python bench/transform.py                 # 20,000 records x 5 rounds per dialect
    .venv/bin/python bench/transform.py --quick         # 3,000 records x 3 rounds
    .venv/bin/python bench/transform.py --json          # one JSON line instead of the table
    .venv/bin/python bench/transform.py --dialect segment --records 50000

Per record it does what the service does between poll and batch: Avro-decode the value with the
dialect's schema from `schemas/`, transform it (normalise + SHA-256 the customer fields, build
the events, fan out to event sets) and JSON-encode every output event with orjson. No Kafka, no
HTTP. Payloads are realistic and come from a recurring population of customers (default 5,000),
so the normalisation cache is exercised as in production: a warm-up pass runs first, then each
round is timed and the median of the rounds is reported. An "event" in the table is one input
record (a track call, an mParticle batch, a Commanders Act event, an Amperity row); the JSON line
also gives output events per record.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import orjson  # noqa: E402
import sample_events  # noqa: E402

from consumer.capi.event import RecordContext  # noqa: E402
from consumer.codec import AvroSchema  # noqa: E402
from consumer.config import DestinationSettings  # noqa: E402
from consumer.dialects import get_dialect  # noqa: E402
from consumer.errors import RecordOutcome  # noqa: E402

NOW = 1_772_452_800  # 2026-03-02T12:00:00Z: payloads and the age checks use this "now"
DIALECTS = ("segment", "mparticle", "commandersact", "amperity")
SCHEMAS = {"segment": "segment_track.avsc", "mparticle": "mparticle_batch.avsc",
           "commandersact": "commandersact_event.avsc", "amperity": "amperity_row.avsc"}
PLACES = [("New Orleans", "Louisiana", "70112"), ("Menlo Park", "CA", "94025-1234"),
          ("Austin", "TX", "78701"), ("Seattle", "Washington", "98101")]
FIRST = ["Zoë", "Jean-Luc", "Mary Ann", "José", "Alex", "Priya"]
LAST = ["O'Brien", "Nguyen", "Smith-Jones", "García", "Keener"]


# ---- realistic payloads (customer c of a recurring population) ---------------------------


class Customer:
    def __init__(self, c: int) -> None:
        self.id = f"customer-{c}"
        self.email = f"Customer.{c}@Example.com"
        self.phone = f"(202) 555-{c % 10000:04d}"
        self.first, self.last = FIRST[c % len(FIRST)], LAST[c % len(LAST)]
        self.gender = "female" if c % 2 else "Male"
        self.birthdate = f"19{50 + c % 50}-{1 + c % 12:02d}-{1 + c % 28:02d}"
        self.city, self.state, self.zip = PLACES[c % len(PLACES)]
        self.country = "United States"
        self.price = round(5 + (c % 50) * 1.25, 2)


def products(c: int, count: int) -> list[tuple[str, float, int, str]]:
    """(sku, price, quantity, category) of `count` products."""
    return [(f"sku-{(c + k) % 300}", round(5 + ((c + k) % 50) * 1.25, 2), 1 + k % 3,
             "Games" if k % 2 else "Books") for k in range(count)]


def segment(i: int, rng: random.Random, customers: int) -> dict[str, Any]:
    return sample_events.track(i, rng, NOW, customers)


MPARTICLE_ACTIONS = ("purchase", "add_to_cart", "view_detail", "checkout", "add_to_wishlist")


def mparticle(i: int, rng: random.Random, customers: int) -> dict[str, Any]:
    """One batch: the user, one qualifying commerce event, every third batch a custom event."""
    c = rng.randrange(customers)
    u = Customer(c)
    ms = (NOW - 3600 - i % 600) * 1000
    action = MPARTICLE_ACTIONS[i % len(MPARTICLE_ACTIONS)]
    items = products(c, 1 + c % 3)
    events: list[dict[str, Any]] = [{"event_type": "commerce_event", "data": {
        "timestamp_unixtime_ms": ms, "source_message_id": f"mp-{i}", "currency_code": "usd",
        "custom_attributes": {"store_id": f"store-{c % 12}", "register": c % 7},
        "product_action": {
            "action": action, "transaction_id": f"order-{i}",
            "total_amount": round(sum(p * q for _, p, q, _ in items), 2),
            "products": [{"id": s, "price": p, "quantity": q, "category": cat, "brand": "Acme"}
                         for s, p, q, cat in items]},
    }}]
    if i % 3 == 0:
        events.append({"event_type": "custom_event", "data": {
            "event_name": "Store Visit", "custom_event_type": "other",
            "timestamp_unixtime_ms": ms - 60_000, "source_message_id": f"mp-{i}-visit"}})
    return {
        "schema_version": 2, "environment": "production", "mpid": 1_000_000 + c,
        "timestamp_unixtime_ms": ms,
        "user_identities": {"email": u.email, "customer_id": u.id},
        "user_attributes": {"$FirstName": u.first, "$LastName": u.last, "$Gender": u.gender,
                            "$City": u.city, "$State": u.state, "$Zip": u.zip,
                            "$Country": u.country, "$Mobile": u.phone, "loyalty_tier": "gold"},
        "device_info": {"ios_advertising_id": f"607258d9-c28b-43ad-95ed-{c:012d}"},
        "events": events,
    }


COMMANDERSACT_EVENTS = ("purchase", "add_to_cart", "view_item", "begin_checkout", "search")


def commandersact(i: int, rng: random.Random, customers: int) -> dict[str, Any]:
    c = rng.randrange(customers)
    u = Customer(c)
    items = products(c, 1 + c % 3)
    return {
        "event_name": COMMANDERSACT_EVENTS[i % len(COMMANDERSACT_EVENTS)],
        "type": "offline", "id": f"order-{i}", "currency": "EUR",
        "amount": round(sum(p * q for _, p, q, _ in items), 2),
        "items": [{"id": s, "quantity": q, "price": p,
                   "product": {"id": s, "name": f"Product {s}", "category_1": cat}}
                  for s, p, q, cat in items],
        "user": {"id": u.id, "email": u.email, "phone": u.phone, "gender": u.gender,
                 "birthdate": u.birthdate, "firstname": u.first, "lastname": u.last,
                 "city": u.city, "state": u.state, "zipcode": u.zip, "country": u.country},
        "browser": {"ip": f"10.0.{c % 250}.{i % 250}", "user_agent": "Mozilla/5.0 (X11; Linux)"},
        "context": {"event_timestamp": (NOW - 3600 - i % 600) * 1000},
        "integrations": {"facebook": {"event_id": f"tc-{i}"}},
    }


def amperity_order(i: int, rng: random.Random, customers: int) -> list[dict[str, Any]]:
    """The rows of one order (one per item, 1 to 3)."""
    c = rng.randrange(customers)
    u = Customer(c)
    return [{
        "external_id": u.id, "email": u.email, "phone": u.phone, "given_name": u.first,
        "surname": u.last, "birthdate": u.birthdate, "gender": u.gender, "city": u.city,
        "state": u.state, "postal": u.zip, "country": u.country, "order_id": f"order-{i}",
        "quantity": q, "product_id": s, "timestamp": NOW - 3600 - i % 600, "price": p,
        "currency": "USD", "action_source": "physical_store",
    } for s, p, q, _ in products(c, 1 + c % 3)]


# ---- measurement ----------------------------------------------------------------------------


Workload = Callable[[], tuple[int, int, int]]  # one pass → (records, output events, rejected)


def record_workload(name: str, records: int, customers: int) -> Workload:
    """Decode + transform + encode each record on its own (segment, mparticle, commandersact)."""
    schema = AvroSchema.from_file(ROOT / "schemas" / SCHEMAS[name])
    make = {"segment": segment, "mparticle": mparticle, "commandersact": commandersact}[name]
    rng = random.Random(1)
    blobs = [schema.encode(make(i, rng, customers)) for i in range(records)]
    decode, transform = schema.decode_body, get_dialect(name).transform
    dest = DestinationSettings(name="main", default_event_sets=("111",))
    dumps, kafka_ms = orjson.dumps, NOW * 1000

    def run() -> tuple[int, int, int]:
        out = rejected = 0
        for blob in blobs:
            payload = decode(blob)
            try:
                outputs = transform(payload, RecordContext(kafka_ms, payload), dest, NOW)
            except RecordOutcome:
                rejected += 1
                continue
            for output in outputs:
                dumps(output.event)
            out += len(outputs)
        return len(blobs), out, rejected

    return run


def amperity_workload(records: int, customers: int) -> Workload:
    """Rows are checked one by one, then each order's rows become its event (as the grouper
    hands them over; the window itself is not timed)."""
    schema = AvroSchema.from_file(ROOT / "schemas" / SCHEMAS["amperity"])
    rng = random.Random(1)
    orders: list[list[bytes]] = []
    count = 0
    while count < records:
        rows = [schema.encode(row) for row in amperity_order(len(orders), rng, customers)]
        orders.append(rows)
        count += len(rows)
    dialect = get_dialect("amperity")
    assert dialect.grouping is not None
    check, emit = dialect.grouping.check, dialect.grouping.emit
    decode = schema.decode_body
    dest = DestinationSettings(name="main", default_event_sets=("111",))
    dumps, kafka_ms = orjson.dumps, NOW * 1000

    def run() -> tuple[int, int, int]:
        out = rejected = 0
        for blobs in orders:
            rows = []
            for blob in blobs:
                payload = decode(blob)
                try:
                    rows.append(check(payload, RecordContext(kafka_ms, payload), dest, NOW))
                except RecordOutcome:
                    rejected += 1
            try:
                outputs = emit(rows, dest, NOW, False) if rows else []
            except RecordOutcome:
                rejected += len(rows)
                continue
            for output in outputs:
                dumps(output.event)
            out += len(outputs)
        return count, out, rejected

    return run


def workload(name: str, records: int, customers: int) -> Workload:
    if name == "amperity":
        return amperity_workload(records, customers)
    return record_workload(name, records, customers)


def measure(run: Workload, rounds: int) -> Iterator[tuple[float, float, int, int, int]]:
    """(CPU seconds, wall seconds, records, output events, rejected) per round, after one untimed
    warm-up pass. Rates use the process's CPU time: on a shared machine, time spent waiting for
    the core is not the code's cost (on an idle machine both agree)."""
    run()
    for _ in range(rounds):
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        records, out, rejected = run()
        yield time.process_time() - cpu, time.perf_counter() - wall, records, out, rejected


def pin_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = 0 if 0 in os.sched_getaffinity(0) else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"cpu {cpu}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dialect", action="append", choices=DIALECTS,
                   help="measure only this dialect (repeatable; default: all)")
    p.add_argument("--records", type=int, help="records per round (default 20,000)")
    p.add_argument("--rounds", type=int, help="timed rounds per dialect (default 5)")
    p.add_argument("--customers", type=int, default=5000, help="size of the customer population")
    p.add_argument("--quick", action="store_true", help="3,000 records x 3 rounds")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = p.parse_args(argv)
    records = args.records or (3000 if args.quick else 20_000)
    rounds = args.rounds or (3 if args.quick else 5)
    pinned = pin_one_core()

    results: dict[str, dict[str, float]] = {}
    for name in args.dialect or DIALECTS:
        rates, wall_rates, outputs_per_record, rejected = [], [], 0.0, 0
        for cpu, wall, done, out, failed in measure(workload(name, records, args.customers),
                                                    rounds):
            rates.append(done / cpu)
            wall_rates.append(done / wall)
            outputs_per_record, rejected = out / done, failed
        median = statistics.median(rates)
        results[name] = {"events_per_s_median": round(median), "min": round(min(rates)),
                         "max": round(max(rates)), "us_per_event": round(1e6 / median, 1),
                         "wall_events_per_s_median": round(statistics.median(wall_rates)),
                         "outputs_per_event": round(outputs_per_record, 3),
                         "rejected_per_round": rejected}

    if args.json:
        print(orjson.dumps({"benchmark": "transform", "records": records, "rounds": rounds,
                            "customers": args.customers, "pinned": pinned,
                            "clock": "process_time", "load_average": os.getloadavg()[0],
                            "python": platform.python_version(), "dialects": results}).decode())
        return 0
    print(f"{records:,} records x {rounds} rounds per dialect, {args.customers:,} customers, "
          f"{pinned}, Python {platform.python_version()}; rates from CPU time, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| dialect | events/s median | min | max | µs/event | wall events/s median |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['events_per_s_median']:,.0f} | {r['min']:,.0f} | {r['max']:,.0f} | "
              f"{r['us_per_event']:.1f} | {r['wall_events_per_s_median']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
