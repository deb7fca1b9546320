"""AA timestamps: (year, secondsintoyear, nano) <-> epoch seconds and nanoseconds, all UTC.

The AA stores only the year in the file header and seconds since the start of that UTC year
per sample, which is why a file can never span two years.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from functools import lru_cache

#: Seconds between the EPICS epoch (1990-01-01) and the Unix epoch (1970-01-01).
EPICS_EPOCH_OFFSET = 631152000


@lru_cache(maxsize=4096)
def year_start(year: int) -> int:
    """Epoch seconds of ``year``-01-01T00:00:00Z."""
    return calendar.timegm((year, 1, 1, 0, 0, 0, 0, 0, 0))


def year_of(epoch_secs: int) -> int:
    """UTC year that contains ``epoch_secs``."""
    return datetime.fromtimestamp(epoch_secs, tz=UTC).year


def to_year_seconds(epoch_secs: int) -> tuple[int, int]:
    """Split epoch seconds into (year, secondsintoyear)."""
    year = year_of(epoch_secs)
    return year, epoch_secs - year_start(year)


def from_year_seconds(year: int, secondsintoyear: int) -> int:
    """Epoch seconds from the header year and a sample's secondsintoyear."""
    return year_start(year) + secondsintoyear


def epics_to_epoch(sec_past_epics_epoch: int) -> int:
    """EPICS timestamp seconds (since 1990) to Unix epoch seconds."""
    return sec_past_epics_epoch + EPICS_EPOCH_OFFSET


def epoch_to_epics(epoch_secs: int) -> int:
    """Unix epoch seconds to EPICS timestamp seconds (since 1990)."""
    return epoch_secs - EPICS_EPOCH_OFFSET
