"""Stores for tests: one way to open a ``pb://`` store under a test's folder.

Why here and not in conftest.py: test modules import it, and a test module importing
conftest.py is importing another test module.
"""

from __future__ import annotations

from pathlib import Path

from pvarchiver.storage import PlainPBStore, open_store, parse_store_url

__all__ = ["make_store"]


def make_store(root: Path, name: str, granularity: str, extra: str = "") -> PlainPBStore:
    """Store ``name`` in ``root/<name in lower case>``, probed as serve opens its stores."""
    url = (
        f"pb://localhost?name={name}&rootFolder={root / name.lower()}"
        f"&partitionGranularity={granularity}{extra}"
    )
    return open_store(parse_store_url(url))
