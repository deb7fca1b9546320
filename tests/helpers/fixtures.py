"""Fixture factories: one definition of a fixture that several test modules need, each
module keeping its own records and options.

Why a factory rather than one fixture in conftest.py: every module serves a different
database (and some an ACF or a larger ``EPICS_CA_MAX_ARRAY_BYTES``), and some share one IOC
across the module while others need a fresh one per test. A module binds the factory's
result to a name, ``ioc = ioc_fixture(DB, scope="module")``, and pytest finds the fixture
through that module attribute as if it had been written there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from ..ioc import IOC, running_ioc

__all__ = ["ioc_fixture"]


def ioc_fixture(
    db: str,
    *,
    scope: Literal["function", "module"] = "module",
    dirname: str = "ioc",
    started: bool = True,
    **options: Any,
) -> Callable[..., Iterator[IOC]]:
    """A fixture named ``ioc``: a real IOC (tests/ioc.py) serving ``db``, started when the
    first test of ``scope`` asks for it and killed after the last one.

    ``options`` go to :class:`tests.ioc.IOC` (``acf``, ``max_array_bytes``, ``beacons``, ...);
    ``dirname`` names its working folder under pytest's base temporary folder.
    ``started=False`` creates it (its ports chosen) without starting it, for tests that
    point a server at it first and start it when they want its PVs to connect.
    """

    @pytest.fixture(scope=scope, name="ioc")
    def ioc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IOC]:
        workdir = tmp_path_factory.mktemp(dirname)
        if not started:
            server = IOC(db, workdir, **options)
            try:
                yield server
            finally:
                server.kill()
            return
        with running_ioc(db, workdir, **options) as server:
            yield server

    return ioc
