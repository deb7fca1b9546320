"""What the store-health tests read back from a running server and its STS (test_store_health_serve,
test_disk_full)."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx

from pvarchiver.settings import load_settings
from pvarchiver.storage.store import open_store
from pvarchiver.storage.url import parse_store_url


def metric(base: str, line_start: str) -> str | None:
    """The value of the first ``/metrics`` line starting with ``line_start``."""
    text = httpx.get(base + "/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return line.split()[-1]
    return None


def stored_values(root: Path, pv: str) -> list[tuple[int, float]]:
    """(seconds, value) of every sample in the STS's ``.pb`` files (not the engine's buffer)."""
    url = load_settings({}, storage=str(root)).storage.store_urls[0]
    sts = open_store(parse_store_url(url))
    return [(s.secs, float(s.val)) for s in sts.read_all(pv)]


def assert_contiguous(values: list[tuple[int, float]]) -> None:
    """A counter that adds 1 every scan: any missing sample is a gap."""
    vals = [v for _t, v in values]
    gaps = [(a, b) for a, b in itertools.pairwise(vals) if b != a + 1]
    assert not gaps, f"{len(gaps)} gaps, first {gaps[:5]}"
