"""A destination Meta refuses for a reason that is not an event (credentials, session, a request
that cannot be sent) is halted: its records are held, never dead-lettered or committed, and the
halt is visible (metric, /readyz, an error log); time halted never spends the retry budget."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kafka_local  # scripts/: tests/kafka_broker.py (which conftest.py loads) puts it on sys.path
import pytest

from consumer.adapters.kafka.admin import end_offsets
from consumer.runtime.service import serve
from consumer.sandbox import SandboxThread
from tests.fboc_process import FbocProcess
from tests.helpers import (
    avro,
    committed,
    config_for,
    create_topic,
    produce,
    read_all,
    sandbox_events,
    sandbox_post,
    sandbox_requests,
    settings_for,
    track,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = [pytest.mark.kafka, pytest.mark.faults]
RECORDS = 60


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def halted_gauge(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith('fboc_destination_halted{destination="main"}'):
                return float(line.split()[1])
    return -1.0


async def run_halted(
    kafka: Broker, topic: str, group_id: str, url: str, tmp_path: Path, **destination: Any
) -> tuple[FbocProcess, int]:
    """fboc against a destination that cannot deliver: held, visible, stopped by SIGTERM.
    Returns the process (stopped, exit code checked) and the number of dead letters."""
    port = kafka_local.free_port()
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        url,
        facebook={
            "graph_url": url,
            "timeout_seconds": 5,
            "auth_retry_seconds": 0.5,
            "max_attempts": 2,
            "max_retry_seconds": 1,
        },
        service={"port": port, "shutdown_deadline_seconds": 5, "commit_interval_ms": 100},
    )
    config["destinations"][0].update(destination)
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    produce(kafka.bootstrap, topic, [(f"k-{i}".encode(), avro(track(i)), 0) for i in range(RECORDS)])
    fboc = FbocProcess(tmp_path, config).start()
    try:
        await wait_until(
            lambda: any(line.get("event") == "destination_halted" for line in fboc.log_lines()),
            60,
            "the halt",
        )
        await asyncio.sleep(3)  # a few re-probes (every 0.5 s) past both retry budgets
        assert fboc.running()
        assert await asyncio.to_thread(halted_gauge, port) == 1
        assert await asyncio.to_thread(readyz, port) == 503
        code = fboc.terminate(timeout=30)
    finally:
        fboc.stop_quietly()
    assert code == 0
    assert committed(kafka.bootstrap, group_id, topic, 1)[0] <= 0  # nothing committed
    dead = read_all(kafka.bootstrap, f"{topic}.dlq", 1, timeout=5)
    return fboc, len(dead)


async def test_missing_appsecret_proof_holds_every_record_and_says_why(
    kafka: Broker, new_topic: Any, group_id: str, tmp_path: Path
) -> None:
    """The app requires a proof; the destination has no app_secret. Meta answers code 100
    without a subcode: not an invalid event, so nothing is split or dead-lettered."""
    topic = new_topic(1)
    with SandboxThread(app_secret="the-app-secret") as box:
        fboc, dead = await run_halted(kafka, topic, group_id, box.url, tmp_path)
        requests = sandbox_requests(box.url)
        assert sandbox_events(box.url) == []
    assert dead == 0
    assert len(requests) >= 4  # re-probed
    assert {(r["error_code"], r["error_subcode"]) for r in requests} == {(100, None)}
    # never split: every probe carried a whole batch
    assert min(r["events"] for r in requests) == RECORDS
    (halt, *_more) = [line for line in fboc.log_lines() if line.get("event") == "destination_halted"]
    assert halt["level"] == "error"
    assert (halt["code"], halt["subcode"]) == (100, None)
    assert "app_secret" in halt["cause"]
    assert "the-app-secret" not in fboc.log_path.read_text()
    print(f"halt test (c): {len(requests)} probes, 0 dead letters, 0 committed, exit 0")


def test_a_token_holding_a_newline_stops_start_up_naming_the_key(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    """A token file with two lines. Before, every delivery task died silently: nothing delivered,
    dead-lettered or committed, /healthz ok and fboc_destination_halted 0. Now `fboc run` refuses
    to start (exit 2, the key named, the value never printed). Should such a token reach the
    client anyway, the destination halts visibly: tests/adapters/test_delivery.py
    test_a_request_that_cannot_be_sent_halts_the_destination_visibly."""
    topic = new_topic(1)
    token_file = tmp_path / "token"
    token_file.write_text("sandbox-token\nsecond-line-of-the-token\n")
    config = config_for(kafka.bootstrap, topic, group_id, sandbox.url)
    config["destinations"][0]["access_token"] = f"${{file:{token_file}}}"
    fboc = FbocProcess(tmp_path, config).start()
    try:
        assert fboc.proc is not None
        code = fboc.proc.wait(60)
    finally:
        fboc.stop_quietly()
    assert code == 2
    output = fboc.log_path.read_text()
    assert "config error: destinations[0].access_token: holds a line break" in output
    assert "second-line-of-the-token" not in output
    assert sandbox_requests(sandbox.url) == []


@pytest.mark.parametrize("code", [190, 102])
async def test_halted_longer_than_the_retry_budget_then_a_500_then_all_delivered(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, code: int
) -> None:
    topic = new_topic(1)
    settings = settings_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        facebook={
            "graph_url": sandbox.url,
            "timeout_seconds": 5,
            "auth_retry_seconds": 0.3,
            "max_attempts": 2,
            "max_retry_seconds": 1,
        },
    )
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    # 10 probes x 0.3 s: past both max_attempts (2) and max_retry_seconds (1)
    sandbox_post(sandbox.url, "/_sandbox/faults", {"times": 10, "action": {"error": {"code": code}}})
    sandbox_post(sandbox.url, "/_sandbox/faults", {"times": 1, "action": {"http_status": 500}})
    produce(kafka.bootstrap, topic, [(f"k-{i}".encode(), avro(track(i)), 0) for i in range(RECORDS)])
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(
            lambda: committed(kafka.bootstrap, group_id, topic, 1) == end_offsets(kafka.bootstrap, topic, 1),
            60,
            "all committed",
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    statuses = [r["status"] for r in sandbox_requests(sandbox.url)]
    assert statuses[:11] == [400] * 10 + [500]
    delivered = {e["event"]["event_id"] for e in sandbox_events(sandbox.url)}
    assert delivered == {f"m-{i}" for i in range(RECORDS)}
    assert read_all(kafka.bootstrap, f"{topic}.dlq", 1, timeout=5) == []
    print(f"halt test (d) code {code}: {len(delivered)} of {RECORDS} delivered, 0 dead letters")
