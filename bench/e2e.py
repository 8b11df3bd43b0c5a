"""End-to-end benchmark on a real local broker and the sandbox (a benchmark, not a test).

    .venv/bin/python bench/e2e.py --quick --json         # 20,000 records, one JSON line
    .venv/bin/python bench/e2e.py                         # 200,000 records, a table
    .venv/bin/python bench/e2e.py --records 1000000       # memory flat as the backlog grows?
    .venv/bin/python bench/e2e.py --latency-ms 500        # a slow Graph API
    .venv/bin/python bench/e2e.py --consumers 2           # scaling on this machine
    .venv/bin/python bench/e2e.py --bare                  # then bench/bare.py, twice (below)

It starts its own broker and `fboc sandbox`, produces N realistic Segment track calls (1 in 500
bad), then measures in one run:
- floor: a minimal loop on one core that only decodes each record's Avro, hashes its customer
  fields (all nine a sample carries, trimmed and lower-cased) and JSON-encodes one event (what
  any implementation must at least do);
- fboc: `fboc run` in its own process(es), events/s from the first partition assignment to the
  commit that reaches the log end, p50/p99 poll-to-outcome latency (from fboc's histogram), peak
  RSS (VmHWM), records lost (neither delivered nor dead-lettered: must be 0), events per
  request (how full the batches went out), the mean request time as fboc saw it and the share
  of the time its request slots were taken, and the share of a core fboc used (and the broker
  and the sandbox, which share the machine);
- with --consumers 2 or more: how long the group took to give every process partitions
  (rebalance_s) and the records/s from then on (steady_records_per_s), since a process that
  joins a moment late waits out two cooperative rebalance rounds (~6 s here) while the first
  one reads alone.
With --bare it then runs bench/bare.py on the same records, once with the floor's work and once
with fboc's own decoding and transform (each in its own consumer group): the least a consumer
does, and the same plus fboc's transform, so that what fboc's pipeline adds (offset tracking,
outcomes, dead letters, metrics, retries) shows as `fboc_to_bare_transform`.
The sandbox keeps only the latest 1,000 events (its stats count them all). fboc runs the
checkout's plain Python; FBOC_BENCH_WRAP="env PYTHONPATH=<scripts/compiled-tree DIR>" runs the
compiled build instead (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import kafka_local  # noqa: E402
import orjson  # noqa: E402
import sample_events  # noqa: E402
import yaml  # noqa: E402
from bare import DESTINATION_CONFIG, floor_event  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from consumer.adapters.codec import AvroSchema  # noqa: E402
from consumer.adapters.kafka.admin import committed_offsets, end_offsets  # noqa: E402

PARTITIONS = 4
# fboc's and bare.py's commit interval. A run ends at the commit that reaches the log end, so
# this is the resolution of every rate here: at 500 ms a 100k-record run (~10 s) moved by ~5%.
COMMIT_INTERVAL_MS = 100
TOPIC, DLQ, GROUP = "bench.track", "bench.dead-letter", "fboc-bench"
FBOC = str(ROOT / ".venv" / "bin" / "fboc")
# prefixes the fboc (and bench/bare.py) command: "env PYTHONPATH=/other/checkout" runs another
# version. To profile, attach instead: py-spy record --pid <fboc> --duration 15 (a wrapping
# py-spy dies on the SIGTERM that ends a run without writing its profile)
WRAP = os.environ.get("FBOC_BENCH_WRAP", "").split()


def floor(values: list[bytes], schema: AvroSchema) -> float:
    """Events/s of `floor_event` on one core."""
    started = time.perf_counter()
    for value in values:
        floor_event(value, schema, 0)
    return len(values) / (time.perf_counter() - started)


def produce(bootstrap: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000, "compression.type": "lz4"}
    )
    for i, (key, value) in enumerate(values):
        while True:
            try:
                producer.produce(TOPIC, key=key, value=value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_shares(
    first: tuple[float, list[float]] | None, last: tuple[float, list[float]]
) -> list[float] | None:
    """Per process, CPU seconds per wall second between two samples."""
    if first is None or last[0] <= first[0]:
        return None
    return [round((b - a) / (last[0] - first[0]), 2) for a, b in zip(first[1], last[1], strict=True)]


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    return orjson.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def quantiles(metrics: list[str]) -> tuple[float, float]:
    """p50 and p99 of fboc_record_ack_seconds, summed over processes, from bucket counts."""
    buckets: dict[float, float] = {}
    for text in metrics:
        for line in text.splitlines():
            if line.startswith("fboc_record_ack_seconds_bucket"):
                le = line.split('le="')[1].split('"')[0]
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + float(line.split()[-1])
    total = buckets.get(float("inf"), 0.0)

    def at(q: float) -> float:
        return next((b for b, c in sorted(buckets.items()) if c >= q * total), float("nan"))

    return at(0.5), at(0.99)


def steady_rate(
    logs: list[list[dict[str, Any]]], progress: list[tuple[float, int]], total: int, end: float
) -> tuple[int | None, float]:
    """Records/s from the moment every process holds partitions (its last non-empty
    `partitions_assigned`) to the last commit, from the committed offsets sampled every ~0.5 s,
    and that moment. None when the run ended too soon after it to measure."""
    settled = max(
        max(
            (parse_ts(x) for x in own if x["event"] == "partitions_assigned" and x["partitions"]), default=end
        )
        for own in logs
    )
    after = [(t, done) for t, done in progress if t >= settled]
    if not after or end - after[0][0] < 1:
        return None, settled
    t0, done0 = after[0]
    return round((total - done0) / (end - t0)), settled


def metric_total(metrics: list[str], name: str) -> float:
    """A metric's value summed over its label sets and the processes."""
    return sum(
        float(line.split()[-1])
        for text in metrics
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def parse_ts(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def follow(
    bootstrap: str,
    group: str,
    ends: dict[int, int],
    consumers: list[tuple[subprocess.Popen[bytes], Path]],
    others: list[int],
    timeout_s: float,
) -> tuple[list[tuple[float, int]], list[float] | None]:
    """Wait until the group's commits reach the log end; on the way, (wall time, records
    committed so far) every ~0.5 s, and the CPU shares of the consumers then `others` from the
    group's first commit (start-up is over) to the end. A consumer that exits first ends it."""
    deadline = time.monotonic() + timeout_s
    first_cpu: tuple[float, list[float]] | None = None
    progress: list[tuple[float, int]] = []
    watched = [proc.pid for proc, _log in consumers] + others
    while time.monotonic() < deadline:
        for proc, log_path in consumers:
            if proc.poll() is not None:  # it crashed: say why rather than wait for the deadline
                tail = log_path.read_bytes().decode(errors="replace").splitlines()[-15:]
                print("\n".join(tail), file=sys.stderr)
                sys.exit(f"{log_path.name}: exited with {proc.returncode} before the end")
        committed = committed_offsets(bootstrap, group, TOPIC, PARTITIONS)
        progress.append((time.time(), sum(max(0, o) for o in committed.values())))
        if first_cpu is None and any(o > 0 for o in committed.values()):
            first_cpu = (time.monotonic(), [cpu_seconds(pid) for pid in watched])
        if committed == ends:
            break
        time.sleep(0.5)
    return progress, cpu_shares(first_cpu, (time.monotonic(), [cpu_seconds(pid) for pid in watched]))


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines() if raw.startswith(b"{")]


def timed_span(lines: list[dict[str, Any]]) -> tuple[float, float]:
    """From the first partition assignment to the last commit, as a consumer logged them."""
    return (
        min(parse_ts(x) for x in lines if x["event"] == "partitions_assigned"),
        max(parse_ts(x) for x in lines if x["event"] == "committed"),
    )


def bare_run(
    bootstrap: str,
    sandbox: str,
    work: Path,
    ends: dict[int, int],
    others: list[int],
    args: argparse.Namespace,
    kind: str,
) -> dict[str, Any]:
    """bench/bare.py doing `kind` of work on the same records (its own group), after fboc:
    its events/s and share of a core, and the sandbox's meanwhile."""
    before = get(sandbox + "/_sandbox/stats")["accepted_events"]
    group, log_path = f"{GROUP}-bare-{kind}", work / f"bare-{kind}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                *WRAP,
                sys.executable,
                str(ROOT / "bench" / "bare.py"),
                "--work",
                kind,
                "--bootstrap",
                bootstrap,
                "--topic",
                TOPIC,
                "--group",
                group,
                "--graph-url",
                sandbox,
                "--schema",
                str(ROOT / "schemas" / "segment_track.avsc"),
                "--max-in-flight",
                str(args.max_in_flight),
                "--linger-ms",
                str(args.linger_ms),
                "--commit-interval-ms",
                str(COMMIT_INTERVAL_MS),
            ],
            stdout=log,
            stderr=log,
        )
        try:
            _progress, shares = follow(bootstrap, group, ends, [(proc, log_path)], others, timeout_s=600)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    start, end = timed_span(log_lines(log_path))
    delivered = get(sandbox + "/_sandbox/stats")["accepted_events"] - before
    return {
        f"bare_{kind}_events_per_s": round(delivered / (end - start)),
        f"bare_{kind}_exit_code": code,
        f"bare_{kind}_cpu_share": shares[0] if shares else None,
        f"bare_{kind}_sandbox_cpu_share": shares[-1] if shares else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="20,000 records")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("--latency-ms", type=int, default=0, help="sandbox latency per request")
    ap.add_argument("--consumers", type=int, default=1)
    ap.add_argument("--max-in-flight", type=int, default=8)
    ap.add_argument("--linger-ms", type=int, default=200, help="batching.linger_ms")
    ap.add_argument("--max-buffered", type=int, default=50_000, help="batching.max_buffered_records")
    ap.add_argument(
        "--bare",
        action="store_true",
        help="then bench/bare.py on the same records, with the floor's work and\n"
        "with fboc's transform: what fboc's pipeline costs beside them",
    )
    args = ap.parse_args()
    n = 20_000 if args.quick else args.records
    # killed with SIGTERM: still run the `finally` below, or the broker, the sandbox and fboc
    # outlive the benchmark and skew every later measurement
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="fboc-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        kport = kafka_local.free_port()
        bootstrap = f"127.0.0.1:{kport}"
        procs.append(kafka_local.start(work / "kafka", kport, kafka_local.free_port()))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1), NewTopic(DLQ, 1, 1)]).values():
            f.result(30)
        sport = kafka_local.free_port()
        sandbox = f"http://127.0.0.1:{sport}"
        # the sandbox keeps few events (its stats count them all): storing all of a million
        # slowed its answers enough to show as fboc's latency (p99 5 s instead of 0.5 s)
        procs.append(
            subprocess.Popen(
                [FBOC, "sandbox", "--port", str(sport), "--max-stored-events", "1000"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

        schema = AvroSchema.from_file(ROOT / "schemas" / "segment_track.avsc")
        samples = sample_events.generate(n, bad_every=500)
        values = [(k, p if isinstance(p, bytes) else schema.encode(p)) for k, p, _ in samples]
        bad = sum(1 for _k, _p, r in samples if r)
        produce(bootstrap, values)
        good = [v for (_k, v), (_k2, _p, reason) in zip(values, samples, strict=True) if reason is None][
            :20_000
        ]
        floors = [floor(good, schema) for _ in range(3)]
        floor_eps = statistics.median(floors)

        for _ in range(50):
            try:
                get(sandbox + "/_sandbox/stats")
                break
            except OSError:
                time.sleep(0.2)
        if args.latency_ms:
            req = urllib.request.Request(
                sandbox + "/_sandbox/faults",
                method="POST",
                data=orjson.dumps({"action": {"latency_ms": args.latency_ms}}),
            )
            urllib.request.urlopen(req, timeout=10).close()

        fbocs = []
        for i in range(args.consumers):
            port = kafka_local.free_port()
            config = {
                "kafka": {"bootstrap_servers": bootstrap, "group_id": GROUP, "dead_letter_topic": DLQ},
                "facebook": {"graph_url": sandbox, "timeout_seconds": 5 + args.latency_ms / 1000},
                "batching": {
                    "linger_ms": args.linger_ms,
                    "max_in_flight": args.max_in_flight,
                    "max_buffered_records": args.max_buffered,
                },
                "service": {"port": port, "log_format": "json", "commit_interval_ms": COMMIT_INTERVAL_MS},
                "sources": [
                    {
                        "name": "web",
                        "topic": TOPIC,
                        "dialect": "segment",
                        "destination": "main",
                        "schema": str(ROOT / "schemas" / "segment_track.avsc"),
                    }
                ],
                "destinations": [DESTINATION_CONFIG],
            }
            path = work / f"fboc-{i}.yaml"
            path.write_text(yaml.safe_dump(config))
            log = open(work / f"fboc-{i}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [*WRAP, FBOC, "run", "--config", str(path)], stdout=log, stderr=log, cwd=ROOT
            )
            procs.append(proc)
            fbocs.append((proc, port, work / f"fboc-{i}.log"))

        ends = end_offsets(bootstrap, TOPIC, PARTITIONS)
        # CPU of each fboc, then of the broker and the sandbox, which share the machine's cores
        progress, shares = follow(
            bootstrap,
            GROUP,
            ends,
            [(p, log) for p, _port, log in fbocs],
            [procs[0].pid, procs[1].pid],
            timeout_s=max(600, n / 200),
        )
        metrics = [get(f"http://127.0.0.1:{port}/metrics") for _p, port, _l in fbocs]
        peak_rss = [
            int(
                next(
                    line.split()[1]
                    for line in Path(f"/proc/{p.pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM")
                )
            )
            / 1024
            for p, _port, _l in fbocs
        ]
        for proc, _port, _log in fbocs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc, _port, _log in fbocs]

        logs = [log_lines(log_path) for _p, _port, log_path in fbocs]
        start, end = timed_span([x for own in logs for x in own])
        steady, settled = steady_rate(logs, progress, sum(ends.values()), end)
        stats = get(sandbox + "/_sandbox/stats")
        # every good record gives exactly one event (one name, one event set) in this config;
        # an accepted event that Meta's offline dedup dropped although it was another conversion
        # (deduplicated_distinct) is lost all the same
        distinct_dropped = stats["deduplicated_distinct"]
        delivered = stats["accepted_events"] - distinct_dropped
        dead = metric_total(metrics, "fboc_dead_letter_writes_total")
        lost = max(0, (n - bad) - delivered) + max(0, bad - int(dead))
        p50, p99 = quantiles(metrics)
        requests = metric_total(metrics, "fboc_graph_request_seconds_count")
        request_s = metric_total(metrics, "fboc_graph_request_seconds_sum")
        result = {
            "records": n,
            "consumers": args.consumers,
            "sandbox_latency_ms": args.latency_ms,
            "e2e_events_per_s": round(delivered / (end - start)),
            "floor_events_per_s": round(floor_eps),
            # with two or more processes the first one reads alone until the group's rebalance
            # hands the others their partitions: the steady rate is the scaling measure
            "rebalance_s": round(settled - start, 1),
            "steady_records_per_s": steady,
            "ratio_to_floor": round(delivered / (end - start) / floor_eps, 3),
            "p50_latency_s": p50,
            "p99_latency_s": p99,
            "peak_rss_mb": round(max(peak_rss), 1),
            "lost": lost,
            "exit_codes": codes,
            "deduplicated_distinct": distinct_dropped,
            # how full the requests were: 1,000 is a full batch (Meta's limit, docs/meta-api.md#limits)
            "events_per_request": round(delivered / max(1, stats["accepted_requests"])),
            # a request as fboc timed it: encode, send, the API's latency and validation, read
            "request_mean_s": round(request_s / max(1, requests), 3),
            # the share of the time fboc's request slots were taken: near 1.0 the API's time,
            # not fboc, sets the pace
            "slots_busy_share": round(request_s / ((end - start) * args.max_in_flight * args.consumers), 2),
            # share of one core each fboc process used between its first and its last commit:
            # near 1.0 the CPU is the limit, well below it something else is (the API, Kafka)
            "fboc_cpu_share": round(statistics.mean(shares[:-2]), 2) if shares else None,
            # the same for the broker and the sandbox: what else the cores did meanwhile
            "broker_cpu_share": shares[-2] if shares else None,
            "sandbox_cpu_share": shares[-1] if shares else None,
            "load_average": round(os.getloadavg()[0], 2),  # the machine's, as fboc's run ended
        }
        if args.bare:
            for kind in ("floor", "transform"):
                result.update(
                    bare_run(bootstrap, sandbox, work, ends, [procs[0].pid, procs[1].pid], args, kind)
                )
                rate = result[f"bare_{kind}_events_per_s"]
                result[f"bare_{kind}_ratio_to_floor"] = round(rate / floor_eps, 3)
                result[f"fboc_to_bare_{kind}"] = round(result["e2e_events_per_s"] / rate, 3)
        if args.json:
            print(json.dumps(result))
        else:
            for key, value in result.items():
                print(f"{key:<22} {value}")
        bare_codes = [v for k, v in result.items() if k.startswith("bare_") and k.endswith("_code")]
        return 0 if lost == 0 and not any(codes) and not any(bare_codes) else 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if os.environ.get("FBOC_BENCH_KEEP") is None:
            subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
