"""bench/bookkeeping.py runs, and times the paths it says it times (not a timing test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bookkeeping.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_both_sides_are_measured_and_no_record_is_dead_lettered() -> None:
    done = run("--records", "40", "--rounds", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert result["records"] == 40
    assert result["rounds"] == 2
    assert result["fboc_us_per_record"] > 0
    assert result["bare_us_per_record"] > 0
    assert result["bookkeeping_us_per_record"] == round(
        result["fboc_us_per_record"] - result["bare_us_per_record"], 1
    )


def test_one_side_only_for_callgrind() -> None:
    done = run("--records", "20", "--rounds", "1", "--only", "fboc")
    assert done.returncode == 0, done.stderr[-2000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert "fboc_us_per_record" in result
    assert "bare_us_per_record" not in result


def test_a_bad_count_is_refused() -> None:
    done = run("--records", "0")
    assert done.returncode == 2
    assert "--records and --rounds must be at least 1" in done.stderr
