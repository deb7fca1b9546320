"""The PV registry: typeinfos, aliases, pending requests, external servers and named flags,
kept in a database (:mod:`.registry_backend`: SQLite by default, PostgreSQL shared by several
appliances) and cached in memory for reads.

Tables and columns are the AA's (``archappl_sqlite.sql``): ``PVTypeInfo(pvName,
typeInfoJSON, last_modified)``, ``PVAliases(pvName, realName, ...)``, ``ArchivePVRequests(pvName,
userParams, ...)``, ``ExternalDataServers(serverid, serverinfo, ...)``; values are JSON text.
So a registry can be inspected with the ``sqlite3`` shell (or ``psql``) and rows exchanged
with a Java AA. One table is ours: ``NamedFlags(flagName, flagValue)`` keeps the named flags
across restarts (the AA keeps them in memory only).

Why a cache: getPVStatus for 10,000 PVs must answer in well under a second, and the workflow
reads typeinfo on every status call. The database is only written, in batched transactions
(one commit per batch of PVs, never one per PV), and read once at start; the cache changes
only once a transaction is committed. All writes go through one lock, so the registry is
safe from the event loop and worker threads alike.

A shared (PostgreSQL) registry also changes under us: other appliances' changes arrive from
the backend's listener thread and are merged into the cache the same way, and every change,
ours or theirs, is announced to the callbacks of :meth:`Registry.subscribe` (for cluster
code: an appliance learns that a PV was assigned to it, a flag was set elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry_backend import (
    REGISTRY_FILENAME,
    TABLES,
    Backend,
    RegistryError,
    RegistryState,
    RegistryUnavailable,
    Rows,
    SQLiteBackend,
    open_backend,
)
from .typeinfo import PVTypeInfo

log = logging.getLogger(__name__)

__all__ = [
    "REGISTRY_FILENAME",
    "Batch",
    "Registry",
    "RegistryChange",
    "RegistryError",
    "RegistryState",
    "RegistryUnavailable",
    "open_registry",
]

_TABLES = TABLES


@dataclass(frozen=True)
class RegistryChange:
    """Rows of one table that changed (added, updated or deleted: read the registry for
    their values now); ``local``: made by this process, else seen from another one."""

    table: str
    keys: frozenset[str]
    local: bool


def open_registry(url: str) -> Registry:
    """The registry of a registry URL (``sqlite:///...`` or ``postgresql://...``): raises
    ValueError for a bad URL, :class:`RegistryError` (:class:`RegistryUnavailable` for a
    database that does not answer) when it cannot be opened."""
    return Registry(open_backend(url))


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
    """PV typeinfos, aliases, pending archive requests, external servers and named flags.

    ``where``: a SQLite file (the embedded default) or an opened backend
    (:func:`open_registry` makes one from a URL).
    """

    def __init__(self, where: Path | Backend) -> None:
        self.backend: Backend = SQLiteBackend(where) if isinstance(where, Path | str) else where
        #: the SQLite file (None for another backend)
        self.path: Path | None = getattr(self.backend, "path", None)
        self._lock = threading.RLock()
        self._typeinfo: dict[str, PVTypeInfo] = {}
        self._raw: dict[str, dict[str, str]] = {t: {} for t in _TABLES}
        self._sorted: list[str] | None = None
        self._subscribers: list[Callable[[RegistryChange], None]] = []
        try:
            self._load(self.backend.load())
        except BaseException:
            self.backend.close()
            raise
        self.backend.listen(self._merge, self._lock)

    def _load(self, rows: dict[str, dict[str, str]]) -> None:
        for table in _TABLES:
            self._raw[table] = dict(rows.get(table, {}))
        for name, text in self._raw["PVTypeInfo"].items():
            info = self._parse(name, text)
            if info is not None:
                self._typeinfo[name] = info

    @staticmethod
    def _parse(name: str, text: str) -> PVTypeInfo | None:
        try:
            return PVTypeInfo.from_json(json.loads(text))
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            # keep the row (never lose data); the PV is just not archived until fixed
            log.error("registry: typeinfo of %s cannot be read, skipped: %s", name, e)
            return None

    def close(self) -> None:
        # not under our lock: a backend's listener thread may be waiting for it to merge
        # rows, and closing joins that thread
        self.backend.close()

    # ------------------------------------------------------------------ changes
    def subscribe(self, callback: Callable[[RegistryChange], None]) -> Callable[[], None]:
        """Call ``callback`` with a :class:`RegistryChange` after each committed change, ours
        or another process's; returns the function that unsubscribes. Callbacks run on the
        thread that applied the change (a worker thread, the event loop, or the backend's
        listener thread), after the cache has the new rows: keep them short and thread-safe
        (hand work to your own loop with ``call_soon_threadsafe``)."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def _announce(self, changed: dict[str, set[str]], local: bool) -> None:
        for table, keys in changed.items():
            if not keys:
                continue
            change = RegistryChange(table, frozenset(keys), local)
            for cb in list(self._subscribers):
                try:
                    cb(change)
                except Exception:
                    log.exception("registry: a change subscriber failed on %s", table)

    def _merge(self, rows: Rows, full: frozenset[str]) -> Callable[[], None]:
        """Rows read from the database after another process changed them (the backend's
        listener thread, holding our lock): the cache takes them; the function returned
        tells the subscribers, once the lock is released."""
        changed: dict[str, set[str]] = {}
        with self._lock:
            for table, new in rows.items():
                if table not in self._raw:
                    continue
                cache = self._raw[table]
                keys = set(new)
                if table in full:
                    keys |= set(cache)  # a cached row missing from a whole table is gone
                for key in keys:
                    value = new.get(key)
                    if cache.get(key) == value:
                        continue
                    self._set(table, key, value, None)
                    changed.setdefault(table, set()).add(key)
        return lambda: self._announce(changed, local=False)

    def _set(self, table: str, key: str, value: str | None, info: PVTypeInfo | None) -> None:
        """One row into the cache (lock held). A typeinfo dict entry is replaced, never
        changed in place: hot-path readers take it without the lock."""
        rows = self._raw[table]
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value
        if table != "PVTypeInfo":
            return
        self._sorted = None
        parsed = info if info is not None else self._parse(key, value) if value else None
        if parsed is None:
            self._typeinfo.pop(key, None)
        else:
            self._typeinfo[key] = parsed

    def state(self) -> RegistryState:
        """Backend, location, and whether its database is reachable now."""
        return self.backend.state()

    def writable(self) -> None:
        """Raise :class:`RegistryUnavailable` now if a change would be refused (the database
        is known to be unreachable), before a caller changes anything of its own."""
        st = self.backend.state()
        if not st.connected:
            self.backend.apply([])  # the backend words the refusal (and counts it)
            raise RegistryUnavailable(f"The PV registry ({st.location}) is unreachable: {st.error}")

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
        is written if the block raises). Refused before the block runs when the database is
        known to be unreachable (:class:`RegistryUnavailable`)."""
        self.writable()
        b = Batch()
        yield b
        self.apply(b)

    def apply(self, b: Batch) -> None:
        if not b.ops:
            return
        changed: dict[str, set[str]] = {}
        with self._lock:
            self.backend.apply(b.ops)
            # the cache changes only once the transaction is committed
            for table, key, value in b.ops:
                self._set(table, key, value, b.infos.get(key) if value is not None else None)
                changed.setdefault(table, set()).add(key)
        self._announce(changed, local=True)

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
