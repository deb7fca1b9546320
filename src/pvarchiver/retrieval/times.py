"""Request times: ISO 8601 as every AA client sends it, and the AA's defaults.

Phoebus sends ``Instant.toString()`` (``Z``, 0-9 fraction digits), Grafana numeric offsets
(``-07:00``), aapy ``%Y-%m-%dT%H:%M:%SZ``. Anything else is a 400 with the offending text.
"""

from __future__ import annotations

import calendar
import re
import time

Instant = tuple[int, int]

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)


class TimeParseError(ValueError):
    pass


def parse_time(text: str) -> Instant:
    """``2024-05-01T10:00:00.123456789Z`` -> (epoch seconds, nanoseconds).

    A time without zone is taken as UTC (the AA's Java parser rejects it; accepting it is
    friendlier and unambiguous for an archiver that works in UTC).
    """
    m = _ISO.match(text.strip())
    if not m:
        raise TimeParseError(
            f"Cannot parse time {text!r}; use ISO 8601, e.g. 2024-05-01T10:00:00.000Z"
        )
    y, mo, d, h, mi = (int(m.group(i)) for i in range(1, 6))
    s = int(m.group(6) or 0)
    frac = m.group(7) or ""
    nanos = int(frac.ljust(9, "0")) if frac else 0
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60):
        raise TimeParseError(f"Time {text!r} is out of range")
    try:
        calendar.weekday(y, mo, d)
        if d > calendar.monthrange(y, mo)[1]:
            raise ValueError
    except ValueError:
        raise TimeParseError(f"Time {text!r} is not a valid date") from None
    secs = calendar.timegm((y, mo, d, h, mi, min(s, 59), 0, 0, 0)) + (1 if s == 60 else 0)
    zone = m.group(8)
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        off = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0)
        secs -= sign * off
    return secs, nanos


def format_time(ts: Instant) -> str:
    """ISO 8601 UTC with milliseconds, as the AA prints times."""
    t = time.gmtime(ts[0])
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ts[1] // 1_000_000:03d}Z"


def resolve_range(
    from_text: str | None, to_text: str | None, now: float | None = None
) -> tuple[Instant, Instant]:
    """The AA's defaults: ``to`` = now + 1 h, ``from`` = ``to`` - 1 day; ``to < from`` is an
    error."""
    now = time.time() if now is None else now
    end = parse_time(to_text) if to_text else (int(now) + 3600, 0)
    start = parse_time(from_text) if from_text else (end[0] - 86400, end[1])
    if end < start:
        raise TimeParseError(
            f"The end time {format_time(end)} is before the start time {format_time(start)}"
        )
    return start, end


def parse_period(text: str) -> int:
    """A ``java.time.Period``/``Duration``-style ``P1D``, ``P1M``, ``PT1H`` -> seconds
    (months as 31 days, years as 366 days: a search window may be generous)."""
    m = re.fullmatch(
        r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?",
        text.strip().upper(),
    )
    if not m or text.strip().upper() in ("P", "PT"):
        raise TimeParseError(f"Cannot parse period {text!r}; use e.g. P1D, P1M or PT1H")
    y, mo, w, d, h, mi, s = (int(g or 0) for g in m.groups())
    return (((y * 366 + mo * 31 + w * 7 + d) * 24 + h) * 60 + mi) * 60 + s
