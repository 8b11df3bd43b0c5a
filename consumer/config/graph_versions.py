"""Graph API versions fboc knows, and when each stops working (see docs/meta-api.md).

A version lives about two years after its successor ships, so a version's end of life follows
from the next version's release date. Pure: the caller passes today's date.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

# Release dates of the versions fboc knows. v25.0's exact date is not published in what fboc
# relies on ("early 2026"); 2026-02-18 is the estimate used until it is confirmed.
RELEASES: dict[int, date] = {
    24: date(2025, 10, 8),
    25: date(2026, 2, 18),
    26: date(2026, 7, 29),
    27: date(2026, 11, 4),
}
LATEST = max(RELEASES)
OLDEST = min(RELEASES)
# Meta ships about three versions a year: a major this far beyond the table is a typo, not a
# release fboc has not heard of yet.
MAX_MAJOR = LATEST + 12
LIFE_AFTER_SUCCESSOR = timedelta(days=2 * 365)
WARN_BEFORE = timedelta(days=90)

_SHAPE = re.compile(r"v([1-9][0-9]?)\.0", re.ASCII)


def major_of(api_version: str) -> int | None:
    """The major of a `vNN.0` version within the sane range, else None."""
    match = _SHAPE.fullmatch(api_version)
    if match is None:
        return None
    major = int(match.group(1))
    return major if major <= MAX_MAJOR else None


def end_of_life(major: int) -> date | None:
    """About two years after the successor's release; None while there is no known successor."""
    successor = RELEASES.get(major + 1)
    if successor is None:
        return None
    return successor + LIFE_AFTER_SUCCESSOR


def version_warning(api_version: str, today: date) -> str | None:
    """Why `api_version` deserves a start-up warning, or None."""
    major = major_of(api_version)
    if major is None:
        return "not a known Graph API version"
    if major > LATEST:
        return f"newer than the versions fboc knows (latest v{LATEST}.0): check it exists"
    if major < OLDEST - 1:
        return f"older than every version fboc knows (oldest v{OLDEST}.0): likely past its end of life"
    eol = end_of_life(major)
    if eol is None:
        return None
    if today >= eol:
        return f"past its end of life ({eol.isoformat()}); the latest is v{LATEST}.0"
    if eol - today < WARN_BEFORE:
        return f"reaches its end of life on {eol.isoformat()}; the latest is v{LATEST}.0"
    return None
