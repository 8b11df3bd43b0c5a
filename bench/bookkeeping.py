"""What fboc's per-record path costs beyond the transform, in one process (a benchmark, not a test).

    .venv/bin/python bench/bookkeeping.py                  # µs a record, median of --rounds
    valgrind --tool=callgrind .venv/bin/python bench/bookkeeping.py --only fboc --rounds 1 --records 3000
                                  # instructions: less the same with --records 1000, over 2000

The same e2e records (scripts/sample_events.py, none bad) go through
- fboc: `Pipeline.accept` on the in-memory ports of tests/runtime/memory.py (no broker, no
  requests sent: the batches wait in their tasks), i.e. track, decode, transform, screen, route,
  encode, batch, the match-quality count, as `fboc run` does for each record;
- bare: bench/bare.py's `transform_events` (decode, the same screened transform, `orjson.dumps`
  of each event), with e2e's destination.
The difference is fboc's bookkeeping on the event loop's thread; polling, delivery and commits
are not in it (bench/e2e.py --bare measures those with the rest). 500 records warm the caches
first, and the collector is set up as `fboc run` sets it (start-up heap frozen, thresholds).
Run it on the compiled tree (`scripts/compiled-tree DIR`, then `cd DIR`) to measure the
image's build.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "scripts")]

import orjson  # noqa: E402
import sample_events  # noqa: E402
from bare import DESTINATION_CONFIG, transform_events  # noqa: E402

from consumer.adapters.codec import AvroSchema  # noqa: E402
from consumer.adapters.kafka.source import SourceRecord  # noqa: E402
from consumer.config.settings import parse_settings  # noqa: E402
from consumer.core.dialects import get_dialect  # noqa: E402
from consumer.ops.cli import prepare_collector  # noqa: E402
from consumer.runtime.pipeline import Pipeline  # noqa: E402
from consumer.runtime.stages import Route  # noqa: E402
from tests.helpers import config_for  # noqa: E402
from tests.runtime.memory import MemoryDestination, MemorySink, MemorySource  # noqa: E402

WARM = 500
POOL = 5000
TOPIC = "bench.track"


def pipeline(schema: AvroSchema) -> tuple[Pipeline, MemorySink]:
    data = config_for("memory:9092", TOPIC, "bench", "http://127.0.0.1:9")
    dest = {k: v for k, v in DESTINATION_CONFIG.items() if k not in ("name", "access_token")}
    data["destinations"][0].update(dest)
    # nothing lingers out or pauses: every record stays in its batch, as in a busy service
    data["batching"] = {"max_buffered_records": 1_000_000, "linger_ms": 3_600_000}
    settings = parse_settings(data, {})
    route = Route(
        settings.sources[0], get_dialect("segment"), schema.decode_body, settings.destination("main")
    )
    sink = MemorySink()
    return Pipeline(settings, {TOPIC: route}, {"main": MemoryDestination()}, sink, MemorySource([])), sink


async def measure(args: argparse.Namespace) -> dict[str, float]:
    schema = AvroSchema.from_file(ROOT / "schemas" / "segment_track.avsc")
    # the same records made whatever --records is, so that two runs differ only in what is timed
    samples = sample_events.generate(WARM + max(args.records, POOL), bad_every=10**9)
    now_ms = int(time.time() * 1000)
    values = [schema.encode(p) for _k, p, _r in samples if isinstance(p, dict)]  # none is bad
    srcs = [SourceRecord(TOPIC, i % 4, i, now_ms, None, v, []) for i, v in enumerate(values)]
    prepare_collector()  # as `fboc run` does before serving
    fboc_us: list[float] = []
    bare_us: list[float] = []
    for _ in range(args.rounds):
        pipe, dead_letters = pipeline(schema)
        for src, value in zip(srcs[:WARM], values, strict=False):
            pipe.accept(src, 0.0)
            transform_events(schema, value, now_ms)
        timed, timed_values = srcs[WARM : WARM + args.records], values[WARM : WARM + args.records]
        if args.only in (None, "fboc"):
            started = time.process_time()
            for src in timed:
                pipe.accept(src, 0.0)
            fboc_us.append((time.process_time() - started) / len(timed) * 1e6)
        if args.only in (None, "bare"):
            started = time.process_time()
            for value in timed_values:
                transform_events(schema, value, now_ms)
            bare_us.append((time.process_time() - started) / len(timed) * 1e6)
        if dead_letters.writes:  # then it would time the dead-letter path, not a delivery's
            reasons = sorted({w.dl.reason for w in dead_letters.writes})
            raise SystemExit(f"bookkeeping: {len(dead_letters.writes)} records dead-lettered ({reasons})")
        for task in asyncio.all_tasks() - {asyncio.current_task()}:  # the batches' sends
            task.cancel()
    result = {"records": float(args.records), "rounds": float(args.rounds)}
    if fboc_us:
        result["fboc_us_per_record"] = round(statistics.median(fboc_us), 1)
    if bare_us:
        result["bare_us_per_record"] = round(statistics.median(bare_us), 1)
    if fboc_us and bare_us:
        result["bookkeeping_us_per_record"] = round(
            result["fboc_us_per_record"] - result["bare_us_per_record"], 1
        )
        result["bare_to_fboc"] = round(result["bare_us_per_record"] / result["fboc_us_per_record"], 3)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=5000, help="timed records a round (after 500 warm)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", choices=["fboc", "bare"], help="one side only (for callgrind)")
    args = ap.parse_args()
    if args.records < 1 or args.rounds < 1:
        ap.error("--records and --rounds must be at least 1")
    print(orjson.dumps(asyncio.run(measure(args))).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
