"""A real Apache Kafka broker for the test session, started by scripts/kafka_local.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import kafka_local  # noqa: E402


class Broker:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fboc-kafka-"))
        self.port = kafka_local.free_port()
        self.cport = kafka_local.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = kafka_local.start(self.dir, self.port, self.cport)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_broker_or_fail() -> Broker:
    """Under CI=true a broker that cannot start fails the tests; elsewhere they skip."""
    broker = Broker()
    try:
        broker.start()
    except Exception as exc:
        broker.remove()
        message = f"cannot start the local Kafka broker: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return broker
