"""Transform throughput per dialect on one core (a benchmark, not a test).

    .venv/bin/python bench/transform.py                 # 20,000 records x 5 rounds per dialect
    .venv/bin/python bench/transform.py --quick         # 3,000 records x 3 rounds
    .venv/bin/python bench/transform.py --json          # one JSON line instead of the table
    .venv/bin/python bench/transform.py --dialect segment --records 50000
    .venv/bin/python bench/transform.py --dialect segment --customers distinct --baseline sdk \
        --no-decode --rounds 15           # every customer new, against the official SDK

Per record it does what the service does between poll and batch: Avro-decode the value with the
dialect's schema from `schemas/` (unless --no-decode), transform it (normalise + SHA-256 the
customer fields, build the events, fan out to event sets: Purchase goes to two) and JSON-encode
every output event with orjson. No Kafka, no HTTP. Payloads are realistic, with every customer
field filled, and come from a recurring population of customers (default 5,000), so the
normalisation caches work as in production; `--customers distinct` makes every record's
customer new (its caches are cleared before each round). A warm-up pass runs first, then each
round is timed and the median of the rounds is reported. `--baseline sdk` times the same
records through Meta's facebook_business SDK (UserData / CustomData / Event, normalize(),
json.dumps per event set) in rounds interleaved with fboc's (segment only). An "event" in the
table is one input record (a track call, an mParticle batch, a Commanders Act event, an Amperity
row); the JSON line also gives output events per record.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import orjson  # noqa: E402
import sample_events  # noqa: E402

from consumer.adapters.codec import AvroSchema  # noqa: E402
from consumer.config.settings import DestinationSettings  # noqa: E402
from consumer.core.capi import custom  # noqa: E402
from consumer.core.capi.event import RecordContext  # noqa: E402
from consumer.core.dialects import get_dialect  # noqa: E402
from consumer.core.dialects.segment import BUILTIN_EVENTS  # noqa: E402
from consumer.errors import RecordOutcome  # noqa: E402

NOW = 1_772_452_800  # 2026-03-02T12:00:00Z: payloads and the age checks use this "now"
DIALECTS = ("segment", "mparticle", "commandersact", "amperity")
SCHEMAS = {
    "segment": "segment_track.avsc",
    "mparticle": "mparticle_batch.avsc",
    "commandersact": "commandersact_event.avsc",
    "amperity": "amperity_row.avsc",
}
PLACES = [
    ("New Orleans", "Louisiana", "70112"),
    ("Menlo Park", "CA", "94025-1234"),
    ("Austin", "TX", "78701"),
    ("Seattle", "Washington", "98101"),
]
FIRST = ["Zoë", "Jean-Luc", "Mary Ann", "José", "Alex", "Priya"]
LAST = ["O'Brien", "Nguyen", "Smith-Jones", "García", "Keener"]
SYLLABLES = [
    "ma",
    "ré",
    "lo",
    "an",
    "ki",
    "zé",
    "no",
    "ra",
    "li",
    "to",
    "sa",
    "vé",
    "du",
    "mi",
    "el",
    "ka",
    "ro",
    "bé",
    "ti",
    "na",
]
AREA_CODES = (202, 212, 305, 312, 415, 512, 617, 713)
STATES = ("Louisiana", "CA", "TX", "Washington", "New York", "FL", "Illinois", "ma")
DISTINCT = 0  # --customers distinct: every record's customer is new


# ---- realistic payloads (customer c of a recurring population) ---------------------------


def syllables(n: int) -> str:
    """A made-up word from n, the same n giving the same word (three or four syllables)."""
    word = ""
    for _ in range(3 if n < 8000 else 4):
        word += SYLLABLES[n % len(SYLLABLES)]
        n //= len(SYLLABLES)
    return word


class Customer:
    """Customer c: every field but gender, state and country is its own (names, city, zip,
    phone...), so a population of new customers is new to every value cache too."""

    def __init__(self, c: int) -> None:
        self.id = f"customer-{c}"
        self.email = f"Customer.{c}@Example.com"
        line, exchange = (c // 6400) % 10000, 200 + (c // 8) % 800
        self.phone = f"({AREA_CODES[c % 8]}) {exchange}-{line:04d}"
        self.first = f"{FIRST[c % len(FIRST)]} {syllables(c).capitalize()}"
        self.last = f"{LAST[c % len(LAST)]}-{syllables(c // 7 + 11).capitalize()}"
        self.gender = "female" if c % 2 else "Male"
        self.birthdate = f"19{50 + c % 50}-{1 + c % 12:02d}-{1 + c % 28:02d}"
        city, _, zipcode = PLACES[c % len(PLACES)]
        self.city = f"{city} {syllables(c // 3).capitalize()}"
        self.state = STATES[c % len(STATES)]
        self.zip = f"{(int(zipcode[:5]) + c * 7) % 100000:05d}"
        self.country = "United States"
        self.price = round(5 + (c % 50) * 1.25, 2)


def customer_of(i: int, rng: random.Random, customers: int) -> int:
    return i if customers == DISTINCT else rng.randrange(customers)


def products(c: int, count: int) -> list[tuple[str, float, int, str]]:
    """(sku, price, quantity, category) of `count` products."""
    return [
        (
            f"sku-{(c + k) % 300}",
            round(5 + ((c + k) % 50) * 1.25, 2),
            1 + k % 3,
            "Games" if k % 2 else "Books",
        )
        for k in range(count)
    ]


def segment(i: int, rng: random.Random, customers: int) -> dict[str, Any]:
    """A track call from scripts/sample_events.py with all of customer c's traits."""
    record = sample_events.track(i, rng, NOW, 5000)
    u = Customer(customer_of(i, rng, customers))
    record["userId"] = u.id
    record["context"]["traits"] = {
        "email": u.email,
        "phone": u.phone,
        "firstName": u.first,
        "lastName": u.last,
        "gender": u.gender,
        "birthday": u.birthdate,
        "address": {"city": u.city, "state": u.state, "postalCode": u.zip, "country": u.country},
    }
    return record


MPARTICLE_ACTIONS = ("purchase", "add_to_cart", "view_detail", "checkout", "add_to_wishlist")


def mparticle(i: int, rng: random.Random, customers: int) -> dict[str, Any]:
    """One batch: the user, one qualifying commerce event, every third batch a custom event."""
    c = customer_of(i, rng, customers)
    u = Customer(c)
    ms = (NOW - 3600 - i % 600) * 1000
    action = MPARTICLE_ACTIONS[i % len(MPARTICLE_ACTIONS)]
    items = products(c, 1 + c % 3)
    events: list[dict[str, Any]] = [
        {
            "event_type": "commerce_event",
            "data": {
                "timestamp_unixtime_ms": ms,
                "source_message_id": f"mp-{i}",
                "currency_code": "usd",
                "custom_attributes": {"store_id": f"store-{c % 12}", "register": c % 7},
                "product_action": {
                    "action": action,
                    "transaction_id": f"order-{i}",
                    "total_amount": round(sum(p * q for _, p, q, _ in items), 2),
                    "products": [
                        {"id": s, "price": p, "quantity": q, "category": cat, "brand": "Acme"}
                        for s, p, q, cat in items
                    ],
                },
            },
        }
    ]
    if i % 3 == 0:
        events.append(
            {
                "event_type": "custom_event",
                "data": {
                    "event_name": "Store Visit",
                    "custom_event_type": "other",
                    "timestamp_unixtime_ms": ms - 60_000,
                    "source_message_id": f"mp-{i}-visit",
                },
            }
        )
    return {
        "schema_version": 2,
        "environment": "production",
        "mpid": 1_000_000 + c,
        "timestamp_unixtime_ms": ms,
        "user_identities": {"email": u.email, "customer_id": u.id},
        "user_attributes": {
            "$FirstName": u.first,
            "$LastName": u.last,
            "$Gender": u.gender,
            "$City": u.city,
            "$State": u.state,
            "$Zip": u.zip,
            "$Country": u.country,
            "$Mobile": u.phone,
            "loyalty_tier": "gold",
        },
        "device_info": {"ios_advertising_id": f"607258d9-c28b-43ad-95ed-{c:012d}"},
        "events": events,
    }


COMMANDERSACT_EVENTS = ("purchase", "add_to_cart", "view_item", "begin_checkout", "search")


def commandersact(i: int, rng: random.Random, customers: int) -> dict[str, Any]:
    c = customer_of(i, rng, customers)
    u = Customer(c)
    items = products(c, 1 + c % 3)
    return {
        "event_name": COMMANDERSACT_EVENTS[i % len(COMMANDERSACT_EVENTS)],
        "type": "offline",
        "id": f"order-{i}",
        "currency": "EUR",
        "amount": round(sum(p * q for _, p, q, _ in items), 2),
        "items": [
            {
                "id": s,
                "quantity": q,
                "price": p,
                "product": {"id": s, "name": f"Product {s}", "category_1": cat},
            }
            for s, p, q, cat in items
        ],
        "user": {
            "id": u.id,
            "email": u.email,
            "phone": u.phone,
            "gender": u.gender,
            "birthdate": u.birthdate,
            "firstname": u.first,
            "lastname": u.last,
            "city": u.city,
            "state": u.state,
            "zipcode": u.zip,
            "country": u.country,
        },
        "browser": {"ip": f"10.0.{c % 250}.{i % 250}", "user_agent": "Mozilla/5.0 (X11; Linux)"},
        "context": {"event_timestamp": (NOW - 3600 - i % 600) * 1000},
        "integrations": {"facebook": {"event_id": f"tc-{i}"}},
    }


def amperity_order(i: int, rng: random.Random, customers: int) -> list[dict[str, Any]]:
    """The rows of one order (one per item, 1 to 3)."""
    c = customer_of(i, rng, customers)
    u = Customer(c)
    return [
        {
            "external_id": u.id,
            "email": u.email,
            "phone": u.phone,
            "given_name": u.first,
            "surname": u.last,
            "birthdate": u.birthdate,
            "gender": u.gender,
            "city": u.city,
            "state": u.state,
            "postal": u.zip,
            "country": u.country,
            "order_id": f"order-{i}",
            "quantity": q,
            "product_id": s,
            "timestamp": NOW - 3600 - i % 600,
            "price": p,
            "currency": "USD",
            "action_source": "physical_store",
        }
        for s, p, q, _ in products(c, 1 + c % 3)
    ]


# ---- the official SDK, as a baseline -------------------------------------------------------


def sdk_workload(records: list[dict[str, Any]]) -> Workload:
    """The same decoded track calls through facebook_business, as a consumer built on the SDK
    would send them: UserData / CustomData / Event per call, then per event set the request's
    data (normalize(): the SDK's own normalisation and SHA-256) encoded with json.dumps. The SDK
    takes country codes and Gender values, not names: a small table maps them. It does not
    check event times or match keys."""
    from facebook_business.adobjects.serverside.action_source import ActionSource
    from facebook_business.adobjects.serverside.content import Content
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.gender import Gender
    from facebook_business.adobjects.serverside.user_data import UserData

    genders = {"female": Gender.FEMALE, "male": Gender.MALE}
    countries = {"United States": "us"}
    sets = event_sets(destination())

    def event(payload: dict[str, Any]) -> tuple[Any, int]:
        traits = payload["context"]["traits"]
        address = traits["address"]
        props = payload["properties"]
        products = props["products"]
        name = BUILTIN_EVENTS.get(payload["event"], "Other")
        user = UserData(
            emails=[traits["email"]],
            phones=[traits["phone"]],
            first_names=[traits["firstName"]],
            last_names=[traits["lastName"]],
            genders=[genders[traits["gender"].lower()]],
            dates_of_birth=[traits["birthday"].replace("-", "")],
            cities=[address["city"]],
            states=[address["state"]],
            zip_codes=[address["postalCode"]],
            country_codes=[countries[address["country"]]],
            external_ids=[payload["userId"]],
            client_ip_address=payload["context"]["ip"],
        )
        custom = CustomData(
            value=round(sum(p["price"] * p["quantity"] for p in products), 2),
            currency=props["currency"],
            contents=[
                Content(
                    product_id=p["product_id"],
                    quantity=p["quantity"],
                    item_price=p["price"],
                    brand=p["brand"],
                    category=p["category"],
                )
                for p in products
            ],
            content_ids=[p["product_id"] for p in products],
            content_type="product",
            order_id=props["order_id"],
            custom_properties={k: props[k] for k in ("store_id", "coupon") if props.get(k)},
        )
        time_s = int(datetime.fromisoformat(payload["timestamp"]).timestamp())
        built = Event(
            event_name=name,
            event_time=time_s,
            event_id=payload["messageId"],
            action_source=ActionSource.PHYSICAL_STORE,
            user_data=user,
            custom_data=custom,
        )
        return built, len(sets.get(name, sets[""]))

    def run() -> tuple[int, int, int]:
        out = 0
        for payload in records:
            built, copies = event(payload)
            for _ in range(copies):
                json.dumps([built.normalize()])
            out += copies
        return len(records), out, 0

    return run


# ---- measurement ----------------------------------------------------------------------------


Workload = Callable[[], tuple[int, int, int]]  # one pass → (records, output events, rejected)


def destination() -> DestinationSettings:
    """One default event set, and two for Purchase."""
    return DestinationSettings(
        name="main", default_event_sets=("111",), event_sets={"Purchase": ("111", "222")}
    )


def event_sets(dest: DestinationSettings) -> dict[str, tuple[str, ...]]:
    return {**dest.event_sets, "": dest.default_event_sets}


def payloads(name: str, records: int, customers: int) -> tuple[AvroSchema, list[bytes]]:
    """The encoded records of a dialect (segment, mparticle, commandersact)."""
    schema = AvroSchema.from_file(ROOT / "schemas" / SCHEMAS[name])
    make = {"segment": segment, "mparticle": mparticle, "commandersact": commandersact}[name]
    rng = random.Random(1)
    return schema, [schema.encode(make(i, rng, customers)) for i in range(records)]


def record_workload(name: str, records: int, customers: int, decode_it: bool) -> Workload:
    """Decode + transform + encode each record on its own (segment, mparticle, commandersact).
    Without decode_it, the records are decoded once beforehand and only transform + encode run."""
    schema, blobs = payloads(name, records, customers)
    decode, transform = schema.decode_body, get_dialect(name).transform
    decoded = [decode(blob) for blob in blobs]
    dest = destination()
    dumps, kafka_ms = orjson.dumps, NOW * 1000

    def run() -> tuple[int, int, int]:
        out = rejected = 0
        for index, blob in enumerate(blobs):
            payload = decode(blob) if decode_it else decoded[index]
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


def amperity_workload(records: int, customers: int, decode_it: bool) -> Workload:
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
    decoded = [[decode(blob) for blob in blobs] for blobs in orders]
    dest = destination()
    dumps, kafka_ms = orjson.dumps, NOW * 1000

    def run() -> tuple[int, int, int]:
        out = rejected = 0
        for index, blobs in enumerate(orders):
            rows = []
            for payload in [decode(blob) for blob in blobs] if decode_it else decoded[index]:
                try:
                    rows.append(check(payload, RecordContext(kafka_ms, payload), dest, NOW))
                except RecordOutcome:
                    rejected += 1
            try:
                outputs = emit(rows, dest, NOW) if rows else []
            except RecordOutcome:
                rejected += len(rows)
                continue
            for output in outputs:
                dumps(output.event)
            out += len(outputs)
        return count, out, rejected

    return run


def workload(name: str, records: int, customers: int, decode_it: bool) -> Workload:
    if name == "amperity":
        return amperity_workload(records, customers, decode_it)
    return record_workload(name, records, customers, decode_it)


def baseline(name: str, records: int, customers: int, decode_it: bool) -> Workload | None:
    """The SDK's workload on the same records, where one exists (segment)."""
    if name != "segment":
        return None
    schema, blobs = payloads(name, records, customers)
    decoded = [schema.decode_body(blob) for blob in blobs]
    run_sdk = sdk_workload(decoded)
    if not decode_it:
        return run_sdk

    def run() -> tuple[int, int, int]:
        for index, blob in enumerate(blobs):
            decoded[index] = schema.decode_body(blob)
        return run_sdk()

    return run


def clear_caches() -> None:
    """Forget every customer: every per-value cache (normalize.py's and the screen's)."""
    custom.clear_caches()


Round = tuple[float, float, int, int, int]  # CPU seconds, wall seconds, records, outputs, rejected


def timed(run: Workload, fresh: bool) -> Round:
    gc.collect()
    if fresh:
        clear_caches()
    cpu, wall = time.process_time(), time.perf_counter()
    records, out, rejected = run()
    return time.process_time() - cpu, time.perf_counter() - wall, records, out, rejected


def measure(runs: list[Workload], rounds: int, fresh: bool) -> list[list[Round]]:
    """Per workload, its rounds: each workload runs one untimed warm-up pass, then their timed
    rounds alternate (so both see the same machine). `fresh` clears the caches before each pass.
    Rates use the process's CPU time: on a shared machine, time spent waiting for the core is
    not the code's cost (on an idle machine both agree)."""
    for run in runs:
        timed(run, fresh)
    results: list[list[Round]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, rounds_of_run in zip(runs, results, strict=True):
            rounds_of_run.append(timed(run, fresh))
    return results


def summary(rounds: list[Round]) -> dict[str, float]:
    rates = [done / cpu for cpu, _, done, _, _ in rounds]
    median = statistics.median(rates)
    _, _, done, out, rejected = rounds[-1]
    return {
        "events_per_s_median": round(median),
        "min": round(min(rates)),
        "max": round(max(rates)),
        "us_per_event": round(1e6 / median, 1),
        "wall_events_per_s_median": round(statistics.median([done / wall for _, wall, done, _, _ in rounds])),
        "outputs_per_event": round(out / done, 3),
        "rejected_per_round": rejected,
    }


def pin_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = 0 if 0 in os.sched_getaffinity(0) else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"cpu {cpu}"


def population(value: str) -> int:
    if value == "distinct":
        return DISTINCT
    count = int(value)
    if count < 1:
        raise argparse.ArgumentTypeError("needs a positive number or 'distinct'")
    return count


def populations(value: str) -> list[int]:
    """`--customers`: one population, or several separated by commas (`distinct,5000`)."""
    return [population(part.strip()) for part in value.split(",")]


def label(customers: int) -> str:
    return "distinct" if customers == DISTINCT else str(customers)


def run_population(
    names: list[str], records: int, rounds: int, customers: int, decode_it: bool, sdk_too: bool
) -> dict[str, dict[str, float]]:
    """Each dialect's summary for one population (with the SDK's rate and the ratio to it)."""
    fresh = customers == DISTINCT
    results: dict[str, dict[str, float]] = {}
    for name in names:
        runs = [workload(name, records, customers, decode_it)]
        sdk = baseline(name, records, customers, decode_it) if sdk_too else None
        if sdk is not None:
            runs.append(sdk)
        measured = measure(runs, rounds, fresh)
        results[name] = summary(measured[0])
        if sdk is not None:
            sdk_rate = summary(measured[1])["events_per_s_median"]
            results[name]["sdk_records_per_s"] = sdk_rate
            results[name]["ratio_to_sdk"] = round(results[name]["events_per_s_median"] / sdk_rate, 2)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--dialect",
        action="append",
        choices=DIALECTS,
        help="measure only this dialect (repeatable; default: all)",
    )
    p.add_argument("--records", type=int, help="records per round (default 20,000)")
    p.add_argument("--rounds", type=int, help="timed rounds per dialect (default 5)")
    p.add_argument(
        "--customers",
        type=populations,
        default=[5000],
        help="size of the customer population, or 'distinct': every record's "
        "customer is new (caches cleared before each round); several separated by commas "
        "(distinct,5000) are measured one after the other",
    )
    p.add_argument(
        "--baseline", choices=("sdk",), help="also time the same records through facebook_business (segment)"
    )
    p.add_argument(
        "--no-decode",
        dest="decode",
        action="store_false",
        help="decode the records once beforehand: time transform + encode only",
    )
    p.add_argument("--quick", action="store_true", help="3,000 records x 3 rounds")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = p.parse_args(argv)
    records = args.records or (3000 if args.quick else 20_000)
    rounds = args.rounds or (3 if args.quick else 5)
    pinned = pin_one_core()
    names = args.dialect or list(DIALECTS)
    by_customers = {
        label(c): run_population(names, records, rounds, c, args.decode, bool(args.baseline))
        for c in args.customers
    }
    first = label(args.customers[0])
    customers: str | int = first if first == "distinct" else int(first)
    results = by_customers[first]

    if args.json:
        print(
            orjson.dumps(
                {
                    "benchmark": "transform",
                    "records": records,
                    "rounds": rounds,
                    "customers": customers,
                    "decode": args.decode,
                    "pinned": pinned,
                    "clock": "process_time",
                    "load_average": os.getloadavg()[0],
                    "python": platform.python_version(),
                    "dialects": results,  # the first population's (--customers)
                    "by_customers": by_customers,  # every population's, by its name
                }
            ).decode()
        )
        return 0
    print(
        f"{records:,} records x {rounds} rounds per dialect, customers: "
        f"{', '.join(by_customers)}, {'with' if args.decode else 'without'} Avro decode, {pinned}, "
        f"Python {platform.python_version()}; rates from CPU time, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| customers | dialect | events/s median | min | max | µs/event | wall events/s median "
        "| SDK | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for population_name, population_results in by_customers.items():
        for name, r in population_results.items():
            sdk_cells = (
                f"{r['sdk_records_per_s']:,.0f} | {r['ratio_to_sdk']:.2f}"
                if "sdk_records_per_s" in r
                else "- | -"
            )
            print(
                f"| {population_name} | {name} | {r['events_per_s_median']:,.0f} | {r['min']:,.0f} | "
                f"{r['max']:,.0f} | {r['us_per_event']:.1f} | {r['wall_events_per_s_median']:,.0f} | "
                f"{sdk_cells} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
