"""The PV registry on PostgreSQL (psycopg 3, the ``postgres`` extra): one database shared by
several appliances, changes announced with ``LISTEN/NOTIFY``.

Tables are the AA's (``archappl_mysql.sql``: ``PVTypeInfo(pvName, typeInfoJSON,
last_modified)`` ...) plus our ``NamedFlags``; unquoted names, so PostgreSQL folds them to
lower case (``pvtypeinfo``), as a hand-written AA schema there would.

Why two connections: the writer runs the transactions of
:meth:`PostgresBackend.apply` (each ends with one ``pg_notify`` naming the changed keys, sent
by PostgreSQL only if the transaction commits); the listener thread keeps its own connection
in ``LISTEN`` and wakes as soon as a notification arrives, then reads those rows and hands
them to the registry's cache. It also runs ``SELECT 1`` every second, which is how a lost
database is noticed within about a second. While it is lost, writes are refused at once with
the reason (:class:`~.registry_backend.RegistryUnavailable`, HTTP 503 in the mgmt BPL) and
the listener reconnects every second; once back it reloads every row, because notifications
sent meanwhile are lost, and the cache is brought up to date from that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import threading
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any

from .registry_backend import (
    TABLES,
    OnRows,
    Op,
    RegistryError,
    RegistryState,
    RegistryUnavailable,
    Rows,
    one_line,
    redact,
)

log = logging.getLogger(__name__)

#: the NOTIFY channel every appliance of a registry listens on
CHANNEL = "pvarchiver_registry"
#: PostgreSQL refuses payloads of 8000 bytes or more; past this a table is reloaded whole
PAYLOAD_LIMIT = 7000
#: seconds between liveness checks and between reconnection attempts
POLL_SECONDS = 1.0
#: any positive number of our own: serialises the CREATE TABLEs of appliances starting at once
SCHEMA_LOCK = 0x70766172

#: libpq settings: fail fast when the server does not answer, notice a dead peer
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 3,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "application_name": "pvarchiver",
}


def schema() -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {table} ({key} TEXT NOT NULL PRIMARY KEY, "
        f"{value} TEXT NOT NULL, last_modified TIMESTAMPTZ NOT NULL DEFAULT now())"
        for table, (key, value) in TABLES.items()
    ]


def payload(origin: str, ops: list[Op]) -> str:
    """The notification of a transaction: who made it and which keys of which tables (a
    table with too many keys for one notification says ``null``: reload it)."""
    keys: dict[str, list[str] | None] = {}
    for table, key, _ in ops:
        listed = keys.setdefault(table, [])
        if listed is not None and key not in listed:
            listed.append(key)
    text = json.dumps({"o": origin, "t": keys}, separators=(",", ":"))
    if len(text.encode()) > PAYLOAD_LIMIT:
        text = json.dumps({"o": origin, "t": dict.fromkeys(keys)}, separators=(",", ":"))
    return text


class PostgresBackend:
    """See the module docstring; thread-safe."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise RegistryError(
                "a postgresql:// registry needs psycopg 3: pip install 'pvarchiver[postgres]'"
            ) from None
        self._pg = psycopg
        self.url = url
        self.location = redact(url)
        #: ours: our own notifications are skipped (the cache has those changes already)
        self.origin = uuid.uuid4().hex
        self._wlock = threading.Lock()
        self._slock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = True
        self._since = 0.0
        self._error = ""
        self._refused = 0
        self._remote = 0
        self._reconnects = 0
        self._writer_stale = False
        self._pending: list[str] = []
        self._writer = self._connect(autocommit=False)
        try:
            with self._writer.transaction(), self._writer.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                for stmt in schema():
                    cur.execute(stmt)
        except self._pg.Error as e:
            self._writer.close()
            raise RegistryError(
                f"cannot create the PV registry's tables in {self.location}: {one_line(e)}"
            ) from None

    # ------------------------------------------------------------------ connections
    def _connect(self, autocommit: bool) -> Any:
        try:
            return self._pg.connect(self.url, autocommit=autocommit, **CONNECT_OPTIONS)
        except self._pg.Error as e:
            raise RegistryUnavailable(
                f"the PV registry's PostgreSQL ({self.location}) is unreachable: {one_line(e)}"
            ) from None

    def _lost(self, e: BaseException) -> None:
        with self._slock:
            if self._connected:
                self._connected = False
                self._since = time.time()
                log.error(
                    "registry: PostgreSQL %s lost (%s); archiving goes on, registry changes "
                    "are refused until it is back",
                    self.location,
                    one_line(e),
                )
            self._error = one_line(e)

    def _found(self) -> None:
        with self._slock:
            if not self._connected:
                log.info(
                    "registry: PostgreSQL %s back after %.1f s",
                    self.location,
                    time.time() - self._since,
                )
                self._reconnects += 1
            self._connected = True
            self._since = 0.0
            self._error = ""
            self._writer_stale = True

    def _refusal(self) -> RegistryUnavailable:
        with self._slock:
            self._refused += 1
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._since))
            return RegistryUnavailable(
                f"The PV registry (PostgreSQL {self.location}) is unreachable since {since}: "
                f"{self._error}; registry changes are refused until it is back "
                "(archiving goes on)"
            )

    # ------------------------------------------------------------------ reads / writes
    def _rows(self, conn: Any, tables: dict[str, list[str] | None]) -> Rows:
        out: Rows = {}
        with conn.cursor() as cur:
            for table, keys in tables.items():
                if table not in TABLES:
                    continue
                kcol, vcol = TABLES[table]
                if keys is None:
                    cur.execute(f"SELECT {kcol}, {vcol} FROM {table}")
                    out[table] = dict(cur.fetchall())
                else:
                    cur.execute(
                        f"SELECT {kcol}, {vcol} FROM {table} WHERE {kcol} = ANY(%s)", (keys,)
                    )
                    found: dict[str, str | None] = dict.fromkeys(keys)
                    found.update(cur.fetchall())
                    out[table] = found
        return out

    def load(self) -> dict[str, dict[str, str]]:
        with self._wlock:
            try:
                with self._writer.transaction():
                    rows = self._rows(self._writer, dict.fromkeys(TABLES))
            except (self._pg.OperationalError, self._pg.InterfaceError) as e:
                self._lost(e)
                raise self._refusal() from None
        return {t: {k: v for k, v in r.items() if v is not None} for t, r in rows.items()}

    def apply(self, ops: list[Op]) -> None:
        with self._wlock:
            if not self._connected:
                raise self._refusal()
            if not ops:
                return
            for attempt in (1, 2):  # a stale connection (server restarted) gets one retry
                try:
                    if self._writer_stale or self._writer.closed or self._writer.broken:
                        with contextlib.suppress(Exception):
                            self._writer.close()
                        self._writer = self._connect(autocommit=False)
                        self._writer_stale = False
                    self._transaction(ops)
                    return
                except RegistryUnavailable as e:
                    self._lost(e)
                    raise self._refusal() from None
                except (self._pg.OperationalError, self._pg.InterfaceError) as e:
                    self._writer_stale = True
                    if attempt == 2:
                        self._lost(e)
                        raise self._refusal() from None
                except self._pg.Error as e:
                    raise RegistryError(f"PV registry {self.location}: {one_line(e)}") from None

    def _transaction(self, ops: list[Op]) -> None:
        """One transaction; runs of the same table and kind (put or delete) as one pipelined
        executemany, in order, so a put then a delete of one key ends deleted."""
        groups: list[tuple[str, bool, list[tuple[str, ...]]]] = []
        for table, key, value in ops:
            put = value is not None
            if not groups or groups[-1][0] != table or groups[-1][1] != put:
                groups.append((table, put, []))
            groups[-1][2].append((key, value) if put else (key,))  # type: ignore[arg-type]
        with self._writer.transaction(), self._writer.cursor() as cur:
            for table, put, args in groups:
                kcol, vcol = TABLES[table]
                if put:
                    sql = (
                        f"INSERT INTO {table} ({kcol}, {vcol}) VALUES (%s, %s) "
                        f"ON CONFLICT ({kcol}) DO UPDATE SET {vcol} = EXCLUDED.{vcol}, "
                        "last_modified = now()"
                    )
                else:
                    sql = f"DELETE FROM {table} WHERE {kcol} = %s"
                cur.executemany(sql, args)
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload(self.origin, ops)))

    # ------------------------------------------------------------------ notifications
    def listen(self, on_rows: OnRows, lock: AbstractContextManager[object]) -> None:
        if self._thread is not None:
            return
        self._on_rows, self._merge_lock = on_rows, lock
        self._thread = threading.Thread(
            target=self._listen_loop, name="registry-listen", daemon=True
        )
        self._thread.start()

    def _on_notify(self, n: Any) -> None:
        self._pending.append(n.payload)

    def _merge(self, conn: Any, tables: dict[str, list[str] | None]) -> int:
        """Read ``tables`` (None: whole) and merge them, under the registry's lock; returns
        the number of rows read."""
        full = frozenset(t for t, keys in tables.items() if keys is None)
        with self._merge_lock:
            rows = self._rows(conn, tables)
            after = self._on_rows(rows, full)
        after()
        return sum(len(r) for r in rows.values())

    def _listen_loop(self) -> None:
        conn: Any = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect(autocommit=True)
                    conn.add_notify_handler(self._on_notify)
                    conn.execute(f"LISTEN {CHANNEL}")
                    # changes made while we were not listening are known only by a reload
                    self._merge(conn, dict.fromkeys(TABLES))
                    self._found()
                if not self._pending:  # (notifications read by our last query wait here)
                    select.select([conn.fileno()], [], [], POLL_SECONDS)
                conn.execute("SELECT 1")  # delivers what arrived; fails if the server is gone
                self._deliver(conn)
            except (self._pg.Error, RegistryUnavailable, OSError, ValueError) as e:
                self._lost(e)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                self._stop.wait(POLL_SECONDS)
            except Exception:
                log.exception("registry: applying a notified change failed")
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _deliver(self, conn: Any) -> None:
        if not self._pending:
            return
        texts, self._pending = self._pending, []
        wanted: dict[str, list[str] | None] = {}
        for text in texts:
            try:
                note = json.loads(text)
                if note.get("o") == self.origin:
                    continue
                changed = note["t"].items()
            except (ValueError, KeyError, AttributeError):
                log.warning("registry: notification not understood, reloading: %.200s", text)
                changed = dict.fromkeys(TABLES).items()
            for table, keys in changed:
                have = wanted.setdefault(table, [])
                if keys is None or have is None:
                    wanted[table] = None
                else:
                    have.extend(k for k in keys if k not in have)
        if not wanted:
            return
        n = self._merge(conn, wanted)
        with self._slock:
            self._remote += n

    # ------------------------------------------------------------------ state
    def state(self) -> RegistryState:
        with self._slock:
            return RegistryState(
                self.kind,
                self.location,
                connected=self._connected,
                since=self._since,
                error=self._error,
                refused=self._refused,
                remote_changes=self._remote,
                reconnects=self._reconnects,
            )

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._wlock, contextlib.suppress(Exception):
            self._writer.close()
