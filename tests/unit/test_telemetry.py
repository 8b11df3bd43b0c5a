from __future__ import annotations

import pytest
import structlog

from consumer.telemetry import configure_logging, register_secret


def test_secrets_are_redacted_by_key_and_by_value(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    register_secret("EAAB-planted-token-123")
    log = structlog.get_logger("t")
    log.info("x", access_token="abc", authorization="Bearer zzz",
             detail="failed with EAAB-planted-token-123 in it", nested={"app_secret": "s3"})
    out = capsys.readouterr().err
    for leaked in ("abc", "zzz", "EAAB-planted-token-123", "s3"):
        assert f'"{leaked}"' not in out
        assert leaked not in out.replace("[redacted]", "")
    assert out.count("[redacted]") == 4
