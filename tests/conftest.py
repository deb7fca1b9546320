"""Shared fixtures: stores under a temporary storage root, with the AA's default layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvarchiver.storage import PlainPBStore, parse_store_url


def make_store(root: Path, name: str, granularity: str, extra: str = "") -> PlainPBStore:
    url = (
        f"pb://localhost?name={name}&rootFolder={root / name.lower()}"
        f"&partitionGranularity={granularity}{extra}"
    )
    return PlainPBStore(parse_store_url(url))


@pytest.fixture
def sts(tmp_path: Path) -> PlainPBStore:
    return make_store(tmp_path, "STS", "PARTITION_HOUR")


@pytest.fixture
def stores(tmp_path: Path) -> list[PlainPBStore]:
    return [
        make_store(tmp_path, "STS", "PARTITION_HOUR", "&consolidateOnShutdown=true"),
        make_store(tmp_path, "MTS", "PARTITION_DAY", "&hold=2&gather=1"),
        make_store(tmp_path, "LTS", "PARTITION_YEAR"),
    ]
