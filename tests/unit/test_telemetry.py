from __future__ import annotations

import io
import sys

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


def test_unnormalisable_fields_are_counted_by_key_not_value() -> None:
    from consumer.config import DestinationSettings
    from consumer.dialects.common import user_data_for
    from consumer.telemetry import METRICS

    before = METRICS.normalization_dropped.labels("em")._value.get()
    user = user_data_for({"em": ["not-an-email"], "external_id": ["u1"]},
                         DestinationSettings(name="d"), 1_700_000_000, 1_700_000_000,
                         "physical_store", "meta_baseline")
    assert "em" not in user
    assert METRICS.normalization_dropped.labels("em")._value.get() == before + 1


def test_logging_follows_stderr_swapped_after_configuring(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream that was stderr when logging was configured, and is closed since, must not make
    every later log line fail (seen as "I/O operation on closed file" in the next test)."""
    old = io.StringIO()
    monkeypatch.setattr(sys, "stderr", old)
    configure_logging("json")
    old.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    structlog.get_logger("t").info("after_swap")
    assert '"event": "after_swap"' in now.getvalue()
