"""Where the PV registry keeps its rows: the backend interface, registry URLs, and the
embedded SQLite backend.

:class:`~pvarchiver.mgmt.registry.Registry` is the one object the rest of the code uses (an
in-memory cache with the public API); a backend only loads, writes and, when several
processes share it, tells about changes made elsewhere. Two backends exist:

* ``sqlite:///path/registry.sqlite`` (the default, a file in the storage root): embedded,
  one appliance; nobody else writes it while we run, so it never notifies.
* ``postgresql://user@host:port/db`` (:mod:`.registry_pg`, psycopg 3 from the ``postgres``
  extra): shared by several appliances, with ``LISTEN/NOTIFY`` so that each sees the others'
  changes within a second.

Tables and columns are the AA's (``archappl_sqlite.sql`` / ``archappl_mysql.sql``) in both,
so rows can be exchanged with a Java AA and ``pvarchiver registry migrate`` copies them
one-to-one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

REGISTRY_FILENAME = "registry.sqlite"

#: table -> (key column, value column); the AA's four and our NamedFlags
TABLES: dict[str, tuple[str, str]] = {
    "PVTypeInfo": ("pvName", "typeInfoJSON"),
    "PVAliases": ("pvName", "realName"),
    "ArchivePVRequests": ("pvName", "userParams"),
    "ExternalDataServers": ("serverid", "serverinfo"),
    # ours, not the AA's (its named flags live in memory only): flag name -> "true"/"false"
    "NamedFlags": ("flagName", "flagValue"),
}

#: one change: (table, key, value text or None to delete)
Op = tuple[str, str, str | None]
#: rows as they are now, by table then key (None: the row is gone)
Rows = dict[str, dict[str, str | None]]
#: merges rows into a cache (``full``: tables given whole); returns what to call after
OnRows = Callable[[Rows, frozenset[str]], Callable[[], None]]


class RegistryError(Exception):
    """The registry cannot be used (corrupt, not a registry, unwritable, unreachable)."""


class RegistryUnavailable(RegistryError):
    """The registry's database cannot be reached now: a change is refused (nothing of it is
    stored), reads answer from the cache. The message says why, for an HTTP 503."""


@dataclass(frozen=True)
class RegistryState:
    """What getApplianceHealth and ``/metrics`` report about the registry."""

    backend: str
    #: the URL without a password
    location: str
    connected: bool = True
    #: since when it is unreachable (epoch seconds; 0 while connected)
    since: float = 0.0
    #: why it is unreachable ("" while connected)
    error: str = ""
    #: changes refused since start because the database was unreachable
    refused: int = 0
    #: rows read after other processes' change notifications since start
    remote_changes: int = 0
    #: reconnections since start
    reconnects: int = 0


class Backend(Protocol):
    """Storage of the registry's rows (see the module docstring)."""

    kind: str
    location: str

    def load(self) -> dict[str, dict[str, str]]:
        """Every row of every table in :data:`TABLES`."""
        ...

    def apply(self, ops: list[Op]) -> None:
        """All ``ops`` in one transaction, or none; raises :class:`RegistryUnavailable`
        (database unreachable) or another exception (nothing stored either way)."""
        ...

    def listen(self, on_rows: OnRows, lock: AbstractContextManager[object]) -> None:
        """Call ``on_rows(rows, full)`` from a background thread with rows changed by other
        processes; ``full`` names the tables given whole (after a reconnection that may have
        missed changes: a cached row not among them is gone). The rows are read and
        ``on_rows`` called while holding ``lock`` (the registry's: no change of ours can
        commit between the read and the merge, which would otherwise undo it); what
        ``on_rows`` returns is called after ``lock`` is released (the subscribers). A
        backend nobody else writes never calls it."""
        ...

    def state(self) -> RegistryState: ...

    def close(self) -> None: ...


def one_line(e: BaseException | str) -> str:
    """An error message on one line (a driver's message may span several)."""
    return " ".join(str(e).split())


def redact(url: str) -> str:
    """``url`` without its password, for logs, health reports and ``/metrics``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def default_url(storage_root: Path) -> str:
    """The embedded default: ``registry.sqlite`` in the storage root, as before."""
    return sqlite_url(Path(storage_root) / REGISTRY_FILENAME)


def sqlite_url(path: Path) -> str:
    """``sqlite:///`` and the absolute path (``sqlite:///C:/x/registry.sqlite`` on Windows)."""
    return "sqlite:///" + Path(path).resolve().as_posix().lstrip("/")


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///abs/path`` URL: the path after ``sqlite://``, as in a
    ``file://`` URL (``sqlite:////abs`` is the same file; ``sqlite:///C:/x`` on Windows)."""
    rest = url[len("sqlite:") :]
    if not rest.startswith("///"):
        raise ValueError(f"registry URL {url!r}: write sqlite:///absolute/path/registry.sqlite")
    path = "/" + rest.lstrip("/")
    if len(path) > 2 and path[2] == ":":  # /C:/x
        path = path[1:]
    if path.rstrip("/") == "":
        raise ValueError(f"registry URL {url!r} names no file")
    return Path(path)


def check_url(url: str) -> str:
    """``url`` if it is a registry URL this build knows, else ValueError with the reason."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        sqlite_path(url)
        return url
    if scheme in ("postgresql", "postgres"):
        if not urlsplit(url).hostname and "host=" not in url:
            raise ValueError(f"registry URL {redact(url)!r} names no host")
        return url
    raise ValueError(
        f"registry URL {redact(url)!r}: use sqlite:///path/registry.sqlite or "
        "postgresql://user@host:port/database"
    )


def open_backend(url: str) -> Backend:
    """The backend of a registry URL (PostgreSQL's driver is imported only here, when
    used). Raises ValueError for a bad URL, :class:`RegistryError` when it cannot open."""
    check_url(url)
    if url.lower().startswith("sqlite:"):
        return SQLiteBackend(sqlite_path(url))
    from .registry_pg import PostgresBackend

    return PostgresBackend(url)


# ---------------------------------------------------------------------- SQLite
def sqlite_schema() -> str:
    parts = []
    for table, (key, value) in TABLES.items():
        parts.append(
            f"CREATE TABLE IF NOT EXISTS {table} ({key} TEXT NOT NULL PRIMARY KEY, "
            f"{value} TEXT NOT NULL, last_modified TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);\n"
            f"CREATE TRIGGER IF NOT EXISTS {table}_modified AFTER UPDATE OF {value} ON {table} "
            f"BEGIN UPDATE {table} SET last_modified = CURRENT_TIMESTAMP "
            f"WHERE {key} = NEW.{key}; END;\n"
        )
    return "".join(parts)


class SQLiteBackend:
    """The embedded registry: WAL mode keeps readers (the ``sqlite3`` shell, a backup) from
    blocking us and survives kill -9 (a transaction is in the file or not). The caller
    (:class:`~pvarchiver.mgmt.registry.Registry`) serialises access with its lock."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(sqlite_schema())
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"cannot open the PV registry {self.path}: {e}") from e
        self._opened = time.time()

    def load(self) -> dict[str, dict[str, str]]:
        try:
            return {
                table: dict(self._db.execute(f"SELECT {key}, {value} FROM {table}"))
                for table, (key, value) in TABLES.items()
            }
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"cannot open the PV registry {self.path}: {e}") from e

    def apply(self, ops: list[Op]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for table, key, value in ops:
                kcol, vcol = TABLES[table]
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

    def listen(self, on_rows: OnRows, lock: AbstractContextManager[object]) -> None:
        """Nothing to listen to: the file is this process's alone."""

    def state(self) -> RegistryState:
        return RegistryState(self.kind, self.location)

    def close(self) -> None:
        self._db.close()
