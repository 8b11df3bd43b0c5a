"""The main job end to end on a local default: broker, sandbox, sample events, fboc, results.

Run through `scripts/demo` (which installs everything first).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import kafka_local  # noqa: E402
import sample_events  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from consumer.adapters.codec import AvroSchema  # noqa: E402
from consumer.adapters.kafka.admin import committed_offsets, end_offsets  # noqa: E402
from consumer.adapters.kafka.deadletter import header, headers_of  # noqa: E402

TOPIC, DLQ, GROUP, N = "events.track", "fboc.dead-letter", "fboc-demo", 2000
FBOC = str(ROOT / ".venv" / "bin" / "fboc")


# The demo's own clients print only errors: their notices (a coordinator still loading at
# start, a purge at close) would read like fboc's trouble in the demo's output.
QUIET = {"log_level": 3}


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"demo: {url} did not answer")


def offsets(bootstrap: str) -> tuple[list[int], list[int]]:
    committed = committed_offsets(bootstrap, GROUP, TOPIC, 4)
    ends = end_offsets(bootstrap, TOPIC, 4)
    return [committed[p] for p in range(4)], [ends[p] for p in range(4)]


def main() -> int:
    run = ROOT / ".run"
    kport, sport, hport = kafka_local.free_port(), kafka_local.free_port(), kafka_local.free_port()
    bootstrap = f"127.0.0.1:{kport}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(f"1. starting Apache Kafka {kafka_local.KAFKA_VERSION} on {bootstrap}")
        kafka_dir = run / f"kafka-{kport}"
        procs.append(kafka_local.start(kafka_dir, kport, kafka_local.free_port()))
        admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
        for f in admin.create_topics([NewTopic(TOPIC, 4, 1), NewTopic(DLQ, 1, 1)]).values():
            f.result(30)
        del admin  # closed now: alive when the broker stops, librdkafka prints its disconnects

        sandbox = f"http://127.0.0.1:{sport}"
        print(f"2. starting the Graph API sandbox on {sandbox}")
        procs.append(
            subprocess.Popen(
                [FBOC, "sandbox", "--port", str(sport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        wait_http(sandbox + "/")

        schema = AvroSchema.from_file(ROOT / "schemas" / "segment_track.avsc")
        samples = sample_events.generate(N, bad_every=100)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **QUIET})
        for key, payload, _reason in samples:
            value = payload if isinstance(payload, bytes) else schema.encode(payload)
            producer.produce(TOPIC, key=key, value=value)
            producer.poll(0)
        producer.flush(30)
        del producer
        expected_bad = Counter(r for _k, _p, r in samples if r)
        print(f"3. produced {N} Avro records to {TOPIC}, {sum(expected_bad.values())} of them bad")

        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": bootstrap,
            "GRAPH_URL": sandbox,
            "FB_ACCESS_TOKEN": "sandbox-token",
            "FBOC_SERVICE__PORT": str(hport),
        }
        print(f"4. running fboc (health and metrics on http://127.0.0.1:{hport})")
        log = open(run / "fboc.log", "wb")  # noqa: SIM115
        fboc = subprocess.Popen(
            [FBOC, "run", "--config", str(ROOT / "config" / "local.yaml")],
            env=env,
            stdout=log,
            stderr=log,
            cwd=ROOT,
        )
        procs.append(fboc)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and fboc.poll() is None:
            committed, ends = offsets(bootstrap)
            if committed == ends:
                break
            time.sleep(0.5)
        fboc.send_signal(signal.SIGTERM)
        code = fboc.wait(30)
        print(f"   fboc stopped with exit code {code}; committed offsets {committed} = log end {ends}")

        stats = get_json(sandbox + "/_sandbox/stats")
        events = get_json(sandbox + "/_sandbox/events")["events"]
        by_set = Counter((e["event_set_id"], e["event"]["event_name"]) for e in events)
        print(
            f"5. the sandbox accepted {stats['accepted_events']} events in "
            f"{stats['accepted_requests']} requests:"
        )
        for (set_id, name), count in sorted(by_set.items()):
            print(f"     event set {set_id}  {name:<22} {count}")
        print("   one of them:")
        print("     " + json.dumps(events[0]["event"])[:400] + " ...")

        reader = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "demo-reader",
                "auto.offset.reset": "earliest",
                **QUIET,
            }
        )
        reader.subscribe([DLQ])
        dead: Counter[str] = Counter()
        for msg in reader.consume(1000, 5):
            if msg.error() is None:
                h = headers_of(msg)
                dead[f"{header(h, 'fboc.error.stage')}/{header(h, 'fboc.error.reason')}"] += 1
        reader.close()
        print(f"6. the dead-letter topic {DLQ} holds {sum(dead.values())} records:")
        for reason, count in sorted(dead.items()):
            print(f"     {reason:<30} {count}")
        ok = code == 0 and committed == ends and sum(dead.values()) == sum(expected_bad.values())
        print("demo: OK, every record delivered or dead-lettered" if ok else "demo: FAILED")
        return 0 if ok else 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
