"""fboc as a real child process (`python -m consumer.ops.cli run`), for kill -9 and signal tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.helpers import ROOT, write_config


class FbocProcess:
    def __init__(self, workdir: Path, config: dict[str, Any], name: str = "fboc") -> None:
        self.config_path = write_config(workdir / f"{name}.yaml", config)
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> FbocProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consumer.ops.cli", "run", "--config", str(self.config_path)],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # librdkafka's own lines
        return out

    def stop_quietly(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
