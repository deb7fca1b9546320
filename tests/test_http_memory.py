"""A long query streams: the server's memory does not grow with the size of the answer."""

from __future__ import annotations

import calendar
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from pvarchiver.pb import PayloadType
from pvarchiver.storage import default_store_urls, open_store, parse_store_url
from pvarchiver.storage.batch import Batch

from .http_server import running_server

T0 = calendar.timegm((2025, 1, 1, 0, 0, 0))
N = 3_000_000  # 35 days at 1 Hz: ~60 MB of .pb, ~290 MB of JSON


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_server_memory_stays_flat_for_a_long_json_query(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    sts = open_store(parse_store_url(default_store_urls(root)[2]))  # all of it in LTS
    secs = T0 + np.arange(N, dtype=np.int64)
    sts.append(
        Batch.of_columns(
            "MEM:PV",
            PayloadType.SCALAR_DOUBLE,
            secs,
            np.zeros(N, dtype=np.int64),
            np.random.default_rng(0).normal(size=N),
        )
    ).one()
    with running_server(root) as base:
        # warm up code paths, then measure the growth during one big answer
        httpx.get(
            base + "/retrieval/data/getData.json",
            params={"pv": "MEM:PV", "from": "2025-01-01T00:00:00Z", "to": "2025-01-01T01:00:00Z"},
            timeout=60,
        )
        before = rss_kib(base.pid)
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kib(base.pid))
                time.sleep(0.02)

        t = threading.Thread(target=sample)
        t.start()
        received = 0
        try:
            with httpx.stream(
                "GET",
                base + "/retrieval/data/getData.json",
                params={
                    "pv": "MEM:PV",
                    "from": "2024-12-31T00:00:00Z",
                    "to": "2025-03-01T00:00:00Z",
                },
                timeout=300,
            ) as r:
                assert r.status_code == 200
                for piece in r.iter_raw():
                    received += len(piece)
        finally:
            done.set()
            t.join()
    assert received > 200_000_000
    growth_mb = (peak - before) / 1024
    print(f"server RSS growth {growth_mb:.1f} MB for {received >> 20} MB")
    assert growth_mb < 120, f"server grew by {growth_mb:.0f} MB for a {received >> 20} MB answer"
