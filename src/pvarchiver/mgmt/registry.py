"""The PV registry: SQLite in the AA's table layout, with an in-memory cache for reads.

Tables and columns are the AA's (``archappl_sqlite.sql``): ``PVTypeInfo(pvName,
typeInfoJSON, last_modified)``, ``PVAliases(pvName, realName, ...)``, ``ArchivePVRequests(pvName,
userParams, ...)``, ``ExternalDataServers(serverid, serverinfo, ...)``; values are JSON text.
So a registry can be inspected with the ``sqlite3`` shell and rows exchanged with a Java AA.
One table is ours: ``NamedFlags(flagName, flagValue)`` keeps the named flags across restarts
(the AA keeps them in memory only); ``CREATE TABLE IF NOT EXISTS`` adds it to an older file.

Why a cache: getPVStatus for 10,000 PVs must answer in well under a second, and the workflow
reads typeinfo on every status call. SQLite is only written, in batched transactions (one
commit per batch of PVs, never one per PV), and read once at start. WAL mode keeps readers
(the ``sqlite3`` shell, a backup) from blocking us and survives kill -9: a transaction is
either in the file or not. All access goes through one lock, so the registry is safe from
the event loop and worker threads alike.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .typeinfo import PVTypeInfo

log = logging.getLogger(__name__)

REGISTRY_FILENAME = "registry.sqlite"

_TABLES = {
    "PVTypeInfo": ("pvName", "typeInfoJSON"),
    "PVAliases": ("pvName", "realName"),
    "ArchivePVRequests": ("pvName", "userParams"),
    "ExternalDataServers": ("serverid", "serverinfo"),
    # ours, not the AA's (its named flags live in memory only): flag name -> "true"/"false"
    "NamedFlags": ("flagName", "flagValue"),
}


def _schema() -> str:
    parts = []
    for table, (key, value) in _TABLES.items():
        parts.append(
            f"CREATE TABLE IF NOT EXISTS {table} ({key} TEXT NOT NULL PRIMARY KEY, "
            f"{value} TEXT NOT NULL, last_modified TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);\n"
            f"CREATE TRIGGER IF NOT EXISTS {table}_modified AFTER UPDATE OF {value} ON {table} "
            f"BEGIN UPDATE {table} SET last_modified = CURRENT_TIMESTAMP "
            f"WHERE {key} = NEW.{key}; END;\n"
        )
    return "".join(parts)


class RegistryError(Exception):
    """The registry file cannot be used (corrupt, not a registry, unwritable)."""


class Batch:
    """Changes collected by :meth:`Registry.batch`, applied in one transaction."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, str, str | None]] = []  # (table, key, json or None=delete)
        self.infos: dict[str, PVTypeInfo] = {}

    def put_typeinfo(self, info: PVTypeInfo) -> None:
        """Store ``info``; the registry keeps this object as its cached copy, so do not
        change it after the batch is applied (take :meth:`Registry.typeinfo` copies)."""
        self.ops.append(("PVTypeInfo", info.pvName, json.dumps(info.to_json())))
        self.infos[info.pvName] = info

    def delete_typeinfo(self, name: str) -> None:
        self.ops.append(("PVTypeInfo", name, None))

    def put_request(self, name: str, params: dict[str, Any]) -> None:
        self.ops.append(("ArchivePVRequests", name, json.dumps(params)))

    def delete_request(self, name: str) -> None:
        self.ops.append(("ArchivePVRequests", name, None))

    def add_alias(self, alias: str, real: str) -> None:
        self.ops.append(("PVAliases", alias, real))

    def remove_alias(self, alias: str) -> None:
        self.ops.append(("PVAliases", alias, None))

    def put_external_server(self, server_id: str, info: str) -> None:
        self.ops.append(("ExternalDataServers", server_id, info))

    def remove_external_server(self, server_id: str) -> None:
        self.ops.append(("ExternalDataServers", server_id, None))

    def put_named_flag(self, name: str, value: bool) -> None:
        self.ops.append(("NamedFlags", name, "true" if value else "false"))


class Registry:
    """PV typeinfos, aliases, pending archive requests and external servers of this appliance."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_schema())
            self._typeinfo: dict[str, PVTypeInfo] = {}
            self._raw: dict[str, dict[str, str]] = {t: {} for t in _TABLES}
            self._load()
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"cannot open the PV registry {self.path}: {e}") from e
        self._sorted: list[str] | None = None

    def _load(self) -> None:
        for table, (key, value) in _TABLES.items():
            for k, v in self._db.execute(f"SELECT {key}, {value} FROM {table}"):
                self._raw[table][k] = v
        for name, text in self._raw["PVTypeInfo"].items():
            try:
                self._typeinfo[name] = PVTypeInfo.from_json(json.loads(text))
            except (ValueError, json.JSONDecodeError) as e:
                # keep the row (never lose data); the PV is just not archived until fixed
                log.error("registry: typeinfo of %s cannot be read, skipped: %s", name, e)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ reads
    def typeinfo(self, name: str) -> PVTypeInfo | None:
        """The PV's typeinfo (a copy: change it and put it back to persist)."""
        with self._lock:
            info = self._typeinfo.get(name)
            return info.copy() if info is not None else None

    def has_typeinfo(self, name: str) -> bool:
        return name in self._typeinfo

    def typeinfo_view(self, name: str) -> PVTypeInfo | None:
        """The cached typeinfo itself, for read-only use on hot paths (status of many PVs)."""
        return self._typeinfo.get(name)

    def typeinfos(self) -> list[PVTypeInfo]:
        """All typeinfos (the cached objects: read them, do not change them)."""
        with self._lock:
            return list(self._typeinfo.values())

    def names(self) -> list[str]:
        """Names of all PVs with a typeinfo, sorted."""
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._typeinfo)
            return self._sorted

    def aliases(self) -> dict[str, str]:
        with self._lock:
            return dict(self._raw["PVAliases"])

    def real_name(self, name: str) -> str:
        """The real PV of an alias; any other name unchanged."""
        return self._raw["PVAliases"].get(name, name)

    def requests(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: json.loads(v) for k, v in self._raw["ArchivePVRequests"].items()}

    def has_request(self, name: str) -> bool:
        return name in self._raw["ArchivePVRequests"]

    def external_servers(self) -> dict[str, str]:
        with self._lock:
            return dict(self._raw["ExternalDataServers"])

    def named_flags(self) -> dict[str, bool]:
        """The named flags set through setNamedFlag (see :mod:`.named_flags`)."""
        with self._lock:
            return {k: v == "true" for k, v in self._raw["NamedFlags"].items()}

    def raw_rows(self, table: str) -> dict[str, str]:
        """A table as {key: value text}, for exportConfig."""
        if table not in _TABLES:
            raise KeyError(table)
        with self._lock:
            return dict(self._raw[table])

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {t: len(rows) for t, rows in self._raw.items()}

    # ------------------------------------------------------------------ writes
    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """Collect changes and commit them in one transaction when the block ends (nothing
        is written if the block raises)."""
        b = Batch()
        yield b
        self.apply(b)

    def apply(self, b: Batch) -> None:
        if not b.ops:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for table, key, value in b.ops:
                    kcol, vcol = _TABLES[table]
                    if value is None:
                        self._db.execute(f"DELETE FROM {table} WHERE {kcol} = ?", (key,))
                    else:
                        self._db.execute(
                            f"INSERT INTO {table} ({kcol}, {vcol}) VALUES (?, ?) "
                            f"ON CONFLICT({kcol}) DO UPDATE SET {vcol} = excluded.{vcol}",
                            (key, value),
                        )
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            # the cache changes only once the transaction is in the file
            for table, key, value in b.ops:
                rows = self._raw[table]
                if value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = value
                if table == "PVTypeInfo":
                    self._sorted = None
                    if value is None:
                        self._typeinfo.pop(key, None)
                    else:
                        info = b.infos.get(key)
                        self._typeinfo[key] = (
                            info if info is not None else PVTypeInfo.from_json(json.loads(value))
                        )

    def put_typeinfos(self, infos: Iterable[PVTypeInfo]) -> None:
        with self.batch() as b:
            for info in infos:
                b.put_typeinfo(info)

    def put_typeinfo(self, info: PVTypeInfo) -> None:
        self.put_typeinfos([info])

    def delete_typeinfo(self, name: str) -> None:
        with self.batch() as b:
            b.delete_typeinfo(name)

    def add_alias(self, alias: str, real: str) -> None:
        with self.batch() as b:
            b.add_alias(alias, real)

    def remove_alias(self, alias: str) -> None:
        with self.batch() as b:
            b.remove_alias(alias)

    def put_requests(self, reqs: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self.batch() as b:
            for name, params in reqs:
                b.put_request(name, params)

    def delete_requests(self, names: Iterable[str]) -> None:
        with self.batch() as b:
            for n in names:
                b.delete_request(n)

    def put_external_server(self, server_id: str, info: str) -> None:
        with self.batch() as b:
            b.put_external_server(server_id, info)

    def remove_external_server(self, server_id: str) -> None:
        with self.batch() as b:
            b.remove_external_server(server_id)

    def put_named_flag(self, name: str, value: bool) -> None:
        with self.batch() as b:
            b.put_named_flag(name, value)
