"""Copying a PV registry into another (``pvarchiver registry migrate``): typically an
appliance's ``registry.sqlite`` into the PostgreSQL registry a cluster shares.

Rows are copied as stored (the JSON text byte for byte), table by table in transactions of
:data:`BATCH` rows. A row already in the destination with the same value is left alone, so a
second run copies nothing; a row there with a *different* value is a conflict and is kept
unless ``overwrite`` (the destination may be newer: another appliance changed it). Afterwards
every table is read back from the destination and compared with the source, row by row.
Running appliances on a PostgreSQL destination are told of the copied rows by the usual
notifications.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .registry_backend import TABLES, Backend

#: rows per transaction
BATCH = 1000


@dataclass
class TableResult:
    table: str
    source_rows: int = 0
    copied: int = 0
    already: int = 0
    #: keys whose destination value differs and was kept (not overwritten)
    conflicts: list[str] = field(default_factory=list)
    overwritten: int = 0
    dest_rows: int = 0
    #: keys the check after copying found missing or different in the destination
    mismatched: list[str] = field(default_factory=list)


@dataclass
class MigrateResult:
    tables: list[TableResult]

    @property
    def verified(self) -> bool:
        """Every source row is in the destination with the same value (conflicts aside)."""
        return all(not t.mismatched for t in self.tables)

    @property
    def ok(self) -> bool:
        return self.verified and all(not t.conflicts for t in self.tables)


def migrate(
    src: Backend,
    dest: Backend,
    overwrite: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> MigrateResult:
    """Copy ``src`` into ``dest`` and verify; ``on_progress(table, done, total)`` after each
    transaction. Raises what the backends raise (RegistryUnavailable, RegistryError)."""
    have = src.load()
    there = dest.load()
    results = []
    for table in TABLES:
        rows = have.get(table, {})
        old = there.get(table, {})
        res = TableResult(table, source_rows=len(rows))
        todo: list[tuple[str, str]] = []
        for key, value in rows.items():
            if key not in old:
                todo.append((key, value))
            elif old[key] == value:
                res.already += 1
            elif overwrite:
                todo.append((key, value))
                res.overwritten += 1
            else:
                res.conflicts.append(key)
        if on_progress is not None:
            on_progress(table, 0, len(todo))
        for i in range(0, len(todo), BATCH):
            part = todo[i : i + BATCH]
            dest.apply([(table, k, v) for k, v in part])
            res.copied += len(part)
            if on_progress is not None:
                on_progress(table, res.copied, len(todo))
        results.append(res)
    check = dest.load()
    for res in results:
        got = check.get(res.table, {})
        res.dest_rows = len(got)
        conflicts = set(res.conflicts)
        for key, value in have.get(res.table, {}).items():
            if key in conflicts:
                continue
            if got.get(key) != value:
                res.mismatched.append(key)
    return MigrateResult(results)
