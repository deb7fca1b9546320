"""Partition granularities and names, all in UTC, exactly as the AA names its files.

Every granularity nests inside a UTC year, which is why a PlainPB file (whose header carries
only the year) never spans two years.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime
from enum import Enum


class Granularity(Enum):
    """``partitionGranularity`` values; ``value`` is the AA's approxSecondsPerChunk."""

    PARTITION_5MIN = 300
    PARTITION_15MIN = 900
    PARTITION_30MIN = 1800
    PARTITION_HOUR = 3600
    PARTITION_DAY = 86400
    PARTITION_MONTH = 31 * 86400
    PARTITION_YEAR = 366 * 86400

    @property
    def approx_seconds(self) -> int:
        return self.value

    @property
    def name_components(self) -> int:
        """How many ``_``-separated numbers a partition name of this granularity has."""
        return _COMPONENTS[self]

    @classmethod
    def parse(cls, text: str) -> Granularity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            valid = ", ".join(g.name for g in cls)
            raise ValueError(f"unknown partition granularity {text!r}; valid: {valid}") from None


_COMPONENTS = {
    Granularity.PARTITION_5MIN: 5,
    Granularity.PARTITION_15MIN: 5,
    Granularity.PARTITION_30MIN: 5,
    Granularity.PARTITION_HOUR: 4,
    Granularity.PARTITION_DAY: 3,
    Granularity.PARTITION_MONTH: 2,
    Granularity.PARTITION_YEAR: 1,
}
_MINUTE_STEP = {
    Granularity.PARTITION_5MIN: 5,
    Granularity.PARTITION_15MIN: 15,
    Granularity.PARTITION_30MIN: 30,
}
_FIXED_SECONDS = {
    Granularity.PARTITION_5MIN: 300,
    Granularity.PARTITION_15MIN: 900,
    Granularity.PARTITION_30MIN: 1800,
    Granularity.PARTITION_HOUR: 3600,
    Granularity.PARTITION_DAY: 86400,
}


def partition_start(epoch_secs: int, granularity: Granularity) -> int:
    """Epoch seconds at which the partition holding ``epoch_secs`` begins."""
    fixed = _FIXED_SECONDS.get(granularity)
    if fixed is not None:
        # Fixed-size partitions are aligned on the Unix epoch, and every such size divides a day,
        # so this is also aligned on UTC days and years.
        return epoch_secs - epoch_secs % fixed
    t = datetime.fromtimestamp(epoch_secs, tz=UTC)
    if granularity is Granularity.PARTITION_MONTH:
        return calendar.timegm((t.year, t.month, 1, 0, 0, 0))
    return calendar.timegm((t.year, 1, 1, 0, 0, 0))


def shift_partition(start: int, granularity: Granularity, count: int) -> int:
    """Start of the partition ``count`` partitions after (or before, if negative) ``start``."""
    fixed = _FIXED_SECONDS.get(granularity)
    if fixed is not None:
        return start + count * fixed
    t = datetime.fromtimestamp(start, tz=UTC)
    if granularity is Granularity.PARTITION_MONTH:
        months = t.year * 12 + (t.month - 1) + count
        return calendar.timegm((months // 12, months % 12 + 1, 1, 0, 0, 0))
    return calendar.timegm((t.year + count, 1, 1, 0, 0, 0))


def partition_bounds(epoch_secs: int, granularity: Granularity) -> tuple[int, int]:
    """[start, end) epoch seconds of the partition holding ``epoch_secs``."""
    start = partition_start(epoch_secs, granularity)
    return start, shift_partition(start, granularity, 1)


def partition_for(epoch_secs: int, granularity: Granularity) -> str:
    """The AA's partition name, e.g. ``2012_08_24_16`` for an hourly partition."""
    t = datetime.fromtimestamp(partition_start(epoch_secs, granularity), tz=UTC)
    parts = [f"{t.year:04d}", f"{t.month:02d}", f"{t.day:02d}", f"{t.hour:02d}", f"{t.minute:02d}"]
    return "_".join(parts[: granularity.name_components])


_NAME_RE = re.compile(r"^\d{4}(_\d{2}){0,4}$")


def parse_partition_name(name: str, granularity: Granularity) -> int | None:
    """Start epoch seconds of a partition name, or None if it does not fit ``granularity``.

    The AA skips files whose names have a different number of components than the store's
    granularity ("we cannot mix and match partitions in a folder"); so do we, and also names
    whose minutes are not aligned on the granularity.
    """
    if not _NAME_RE.match(name):
        return None
    nums = [int(x) for x in name.split("_")]
    if len(nums) != granularity.name_components:
        return None
    year, month, day, hour, minute = [*nums, *(1, 1, 0, 0)[len(nums) - 1 :]]
    step = _MINUTE_STEP.get(granularity)
    if step is not None and minute % step:
        return None
    try:
        t = datetime(year, month, day, hour, minute, tzinfo=UTC)
    except ValueError:
        return None
    return calendar.timegm(t.timetuple())


def etl_period(granularity: Granularity) -> int:
    """Seconds between ETL runs out of a store: the partition size, at most 8 hours."""
    return min(granularity.approx_seconds, 8 * 3600)


def next_etl_time(now: float, granularity: Granularity) -> int:
    """Next ETL run after ``now``: aligned on multiples of the period plus 5 minutes, as the AA."""
    period = etl_period(granularity)
    base = int(now) - int(now) % period + 300
    while base <= now:
        base += period
    return base


#: a data file name's end: the key's terminator (``:`` in AA names, U+F03A in portable ones,
#: or a site's own; never a digit or ``_``, which partition names are made of), the partition
#: name and the extension
_SUFFIX = re.compile(r"([^\d_])(\d{4}(?:_\d{2}){0,4})(\.[A-Za-z][A-Za-z0-9_]*)$")


def split_partition_suffix(name: str, ext: str = ".pb") -> tuple[str, str] | None:
    """(terminator, partition name) of a data file's name ending in ``ext``, or None.

    Shared by the folder probe (which terminator do the files there use), ``pb validate``
    (which partition does a file claim) and anything else reading names it did not write.
    """
    m = _SUFFIX.search(name)
    if m is None or m.group(3) != ext:
        return None
    return m.group(1), m.group(2)
