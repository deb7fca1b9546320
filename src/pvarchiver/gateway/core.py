"""The running gateway: CA server downstream, CA client upstream, pvlist/ACF in between.

:class:`Gateway` is the server's provider (``search``/``attach``/``rights``/
``detach``).  A search is decided by the access policy (pvlist: DENY FROM,
DENY, ALLOW/ALIAS; gateway.md §1.5); an allowed name creates (or finds) the
:class:`~.upstream.UpstreamPV` of its *real* name and the reply is deferred
until that PV is connected with value and metadata, or dropped after
``connect_timeout``.  Rights are computed per (requested name, host, user)
from the ACF and ANDed with the upstream rights and ``-ro``; when ACF inputs
change or the configuration is reloaded, rights are pushed to clients.

The access policy is ``gateway.access.GatewayAccess`` (gw-config); any object
with the same methods works, e.g. :class:`OpenAccess` for an unrestricted
gateway in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ca import dbr
from ..ca import protocol as P
from ..ca.client import CAClient, CAConfig, Channel
from ..ca.dbr_encode import PVState
from ..ca.server import CAServer, ServerChannel, ServerConfig
from ..ca.server_config import RIGHT_READ, RIGHT_WRITE
from ..ca.server_pv import ServedPV
from .caputlog import CaPutLog
from .event_runs import BulkFramer
from .fanout import BATCH_FLUSH, RUN_FLUSH, FanOutTable, make_fan_out
from .stats import GatewayStats
from .upstream import CONNECTING, DEAD, DISCONNECTED, PUT_ACKS, PUT_ACKT, STATES, UpstreamPV

__all__ = ["Gateway", "GatewaySettings", "OpenAccess"]

WALK_SLICE = 256  # PVs per step of the housekeeping walk (the event loop runs in between)

log = logging.getLogger(__name__)


@dataclass
class GatewaySettings:
    """Behaviour switches of ca-gateway's command line (gateway.md §3.1), in seconds."""

    connect_timeout: float = 1.0
    inactive_timeout: float = 7200.0
    dead_timeout: float = 120.0
    disconnect_timeout: float = 7200.0
    reconnect_inhibit: float = 300.0
    read_only: bool = False
    cache: bool = True
    archive: bool = False
    mask: int = P.DBE_VALUE | P.DBE_ALARM
    prefix: str = "gateway"
    putlog: str | None = None
    caputlog: str | None = None  # file path, or host:port of an iocLogServer (caputlog.py)
    report: str | None = "gateway.report"
    command: str | None = None
    pvlist: str | None = None
    access: str | None = None
    stats_interval: float = 10.0
    # batching of the fan-out (fanout.py): upstream updates of a read posted per piece, and
    # updates of a run sent per piece; the defaults come from PVARCHIVER_GW_BATCH and
    # PVARCHIVER_GW_RUN_BATCH
    upstream_batch: int = BATCH_FLUSH
    run_batch: int = RUN_FLUSH


@dataclass
class _Match:
    real_name: str
    asg: str = "DEFAULT"
    asl: int = 1


@dataclass
class _Rights:
    read: bool
    write: bool
    trapwrite: bool = True


class _OpenClient:
    def __init__(self, write: bool) -> None:
        self.rights = _Rights(True, write)

    def close(self) -> None:
        return None


class OpenAccess:
    """Serve every name under its own name, read/write (unless ``read_only``), log all puts."""

    def __init__(self, read_only: bool = False) -> None:
        self.read_only = read_only
        self.warnings: list[str] = []

    def search(self, name: str, client_ip: str) -> _Match:
        return _Match(name)

    def attach(self, name: str) -> _Match:
        return _Match(name)

    def client(self, match: Any, user: str, host: str, on_change: Any) -> _OpenClient:
        return _OpenClient(not self.read_only)

    def input_pvs(self) -> set[str]:
        return set()

    def update_input(self, pv: str, value: float | None, severity: int) -> None:
        return None

    def reload(self, pvlist_path: str | None, access_path: str | None) -> list[str]:
        return []

    def report(self) -> str:
        return "open access: every PV allowed\n"


class Gateway:
    """``async with Gateway(settings, client_config, server_config, access):``."""

    def __init__(
        self,
        settings: GatewaySettings,
        client_config: CAConfig,
        server_config: ServerConfig,
        access: Any = None,
    ) -> None:
        self.settings = settings
        self.access = access if access is not None else OpenAccess(settings.read_only)
        self.server = CAServer(self, server_config)
        self.fan_out = make_fan_out(self, settings.upstream_batch)  # upstream reads (fanout.py)
        self.fanout = FanOutTable(self, self.fan_out, settings.run_batch)  # and runs of them
        self.client = CAClient(client_config, framer=self._framer)
        self.pvs: dict[str, UpstreamPV] = {}
        self.stats = GatewayStats(
            settings.prefix,
            {
                "newAsFlag": lambda: self._flag("newAsFlag", self.reload_access),
                "quitFlag": lambda: self._flag("quitFlag", self.quit),
                "quitServerFlag": lambda: self._flag("quitServerFlag", self.quit),
                "report1Flag": lambda: self._flag("report1Flag", lambda: self.write_report(1)),
                "report2Flag": lambda: self._flag("report2Flag", lambda: self.write_report(2)),
                "report3Flag": lambda: self._flag("report3Flag", lambda: self.write_report(3)),
                "commandFlag": lambda: self._flag("commandFlag", self.run_command_file),
            },
        )
        self.client_events = 0
        self.client_posts = 0
        self.exist_tests = 0
        self.loops = 0
        self.puts = 0
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._inputs: dict[str, Channel] = {}
        self._last_anomaly = -1e9
        self._quit = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._own_search: tuple[str, int] | None = None
        self.caputlog = CaPutLog(settings.caputlog) if settings.caputlog else None

    def _framer(self) -> BulkFramer:
        """The framer of each upstream circuit: hands reads and runs to the fan-out."""
        return BulkFramer(self.fan_out, self.fanout.consume_run)

    # convenience views used by UpstreamPV
    @property
    def read_only(self) -> bool:
        return self.settings.read_only

    @property
    def cache(self) -> bool:
        return self.settings.cache

    @property
    def archive(self) -> bool:
        return self.settings.archive

    @property
    def mask(self) -> int:
        return self.settings.mask

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self.client.start()
        self._own_search = self.client.search_address
        await self.server.start()
        self._watch_inputs()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._housekeeping()))
        self._tasks.append(loop.create_task(self._ticker()))
        log.info(
            "gateway: server port %d, prefix %s, %s",
            self.server.port,
            self.settings.prefix,
            "read-only" if self.read_only else "read/write per ACF",
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.server.close()
        if self.caputlog is not None:
            await self.caputlog.close()
        await self.client.close()

    def quit(self) -> None:
        """``quitFlag``: make :meth:`wait_quit` return (the CLI then shuts down)."""
        self._quit.set()

    async def wait_quit(self) -> None:
        await self._quit.wait()

    # ------------------------------------------------------------ provider
    def _own(self, addr: tuple[str, int]) -> bool:
        """A search from our own client side (same UDP port, local address): never answer it."""
        own = self._own_search
        return (
            own is not None
            and addr[1] == own[1]
            and (addr[0].startswith("127.") or addr[0] in self.server.config.interfaces)
        )

    def search(self, name: str, addr: tuple[str, int]) -> Any:
        if self._own(addr):
            return False
        self.exist_tests += 1
        match = self.access.search(name, addr[0])
        if match is None:
            return False
        real = match.real_name
        if self.stats.get(real) is not None:
            return True
        pv = self.pvs.get(real) or self._create(real)
        if pv.ready:
            return True
        if pv.conn_state in (DEAD, DISCONNECTED):
            return False
        return pv.wait_ready(self.settings.connect_timeout)

    def attach(self, name: str, host: str, user: str) -> Any:
        match = self.access.attach(name)
        if match is None:
            return None
        real = match.real_name
        stat = self.stats.get(real)
        if stat is not None:
            return stat
        pv = self.pvs.get(real) or self._create(real)
        if pv.ready:
            pv.downstream += 1
            return pv
        return self._attach_wait(pv)

    async def _attach_wait(self, pv: UpstreamPV) -> UpstreamPV | None:
        if not await pv.wait_ready(self.settings.connect_timeout):
            return None
        pv.downstream += 1
        return pv

    def detach(self, name: str, pv: ServedPV) -> None:
        if isinstance(pv, UpstreamPV):
            pv.downstream = max(0, pv.downstream - 1)
            if pv.downstream == 0:
                pv.since = time.monotonic()

    def rights(self, name: str, pv: ServedPV, host: str, user: str) -> int:
        client = self._access_client(name, host, user)
        if client is None:
            return 0
        r = client.rights
        bits = (RIGHT_READ if r.read else 0) | (RIGHT_WRITE if r.write else 0)
        if isinstance(pv, UpstreamPV):
            if pv.channel.connected:
                bits &= pv.channel.access
            if not pv.valid:  # no value read with read access yet: nothing to show
                bits &= ~RIGHT_READ
        else:
            bits &= pv.rights(host, user)
        if self.read_only:
            bits &= RIGHT_READ
        return bits

    def _access_client(self, name: str, host: str, user: str) -> Any:
        key = (name, host, user)
        client = self._clients.get(key)
        if client is None:
            match = self.access.attach(name)
            if match is None:
                return None
            client = self.access.client(match, user, host, self._rights_changed)
            self._clients[key] = client
        return client

    def upstream_rights_changed(self, pv: UpstreamPV) -> None:
        """The IOC's ACCESS_RIGHTS for ``pv`` changed: push the combined rights downstream."""
        self.server.refresh_access(pv)

    def _rights_changed(self, *_args: Any) -> None:
        asyncio.get_running_loop().call_soon(self.server.refresh_access)

    def _create(self, real: str) -> UpstreamPV:
        pv = UpstreamPV(self, real)
        self.pvs[real] = pv
        return pv

    # ------------------------------------------------------------ events from UpstreamPV
    def reconnected(self, pv: UpstreamPV) -> None:
        """An upstream PV came back: beacon anomaly (rate-limited by -reconnect_inhibit)."""
        now = time.monotonic()
        if now - self._last_anomaly >= self.settings.reconnect_inhibit:
            self._last_anomaly = now
            self.server.beacon_anomaly()

    def put_done(
        self,
        pv: UpstreamPV,
        channel: ServerChannel,
        dbr_type: int,
        count: int,
        payload: bytes,
        old: PVState | None = None,
    ) -> None:
        """A put went through: log it (``-putlog``, ``-caputlog``) if TRAPWRITE allowed it."""
        self.puts += 1
        if not self.settings.putlog and self.caputlog is None:
            return
        client = self._clients.get((channel.name, channel.host, channel.user))
        if client is not None and not getattr(client.rights, "trapwrite", True):
            return
        value = _put_value(dbr_type, count, payload)
        if self.settings.putlog:
            shown = value
            if dbr_type in (PUT_ACKT, PUT_ACKS):
                shown = f"{'ACKT' if dbr_type == PUT_ACKT else 'ACKS'}={value}"
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            line = f"{stamp} {channel.user}@{channel.host} {pv.name} {shown}\n"
            try:
                with open(self.settings.putlog, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:
                log.warning("cannot write put log %s: %s", self.settings.putlog, exc)
        if self.caputlog is not None and dbr_type <= 6:
            self.caputlog.log(channel.host, channel.user, pv.name, value, _state_value(old))

    # ------------------------------------------------------------ ACF inputs
    def _watch_inputs(self) -> None:
        """Monitor every ACF INPx PV upstream; value/alarm changes re-evaluate rights."""
        wanted = set(self.access.input_pvs())
        for name in list(self._inputs):
            if name not in wanted:
                self.client.clear_channel(self._inputs.pop(name))
        for name in wanted - set(self._inputs):

            def on_conn(ch: Channel, up: bool, name: str = name) -> None:
                if up:
                    self.client.subscribe(
                        ch,
                        lambda rd, n=name: self.access.update_input(n, rd.value, rd.severity),
                        dbr.sts_type(dbr.DOUBLE),
                        1,
                    )
                else:
                    for sub in ch.subscriptions:
                        sub.cancel()
                    self.access.update_input(name, None, 3)

            self._inputs[name] = self.client.create_channel(name, on_conn)

    # ------------------------------------------------------------ flags and reports
    def _flag(self, key: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception:
            log.exception("%s action failed", key)
        asyncio.get_running_loop().call_soon(self.stats.reset_flag, key)

    def reload_access(self) -> list[str]:
        """``newAsFlag``: re-read pvlist and ACF, re-evaluate every channel's rights."""
        errors = self.access.reload(self.settings.pvlist, self.settings.access)
        for err in errors:
            log.error("access reload: %s", err)
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        self._watch_inputs()
        self.server.refresh_access()
        return list(errors)

    def report_text(self, which: int) -> str:
        if which == 1:
            lines = [
                f"{c.host}@{c.peer[0]}:{c.peer[1]} user={c.user} channels={len(c.channels)}"
                f" dropped={c.dropped}"
                for c in self.server.circuits
            ]
            return "VC report\n" + "\n".join(lines) + "\n"
        if which == 2:
            lines = [
                f"{pv.name} {pv.state_name} downstream={pv.downstream} events={pv.events}"
                for pv in self.pvs.values()
            ]
            return "PV report\n" + "\n".join(sorted(lines)) + "\n"
        return str(self.access.report())

    def write_report(self, which: int) -> None:
        path = self.settings.report
        if not path:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"---- {stamp} report {which}\n{self.report_text(which)}")

    def run_command_file(self) -> None:
        """``commandFlag``: run lines R1/R2/R3/AS of the ``-command`` file."""
        path = self.settings.command
        if not path or not Path(path).exists():
            return
        for word in Path(path).read_text().split():
            word = word.upper()
            if word in ("R1", "R2", "R3"):
                self.write_report(int(word[1]))
            elif word == "AS":
                self.reload_access()

    # ------------------------------------------------------------ periodic work
    def counts(self, by: dict[str, int]) -> dict[str, int]:
        """The statistics PVs' counts from ``by``, the PVs per state."""
        return {
            "vctotal": self.server.channel_count,
            "pvtotal": len(self.pvs),
            "connected": by["active"] + by["inactive"],
            "unconnected": by["connecting"] + by["dead"] + by["disconnected"],
            **by,
        }

    def refresh_stats(self, by: dict[str, int], posted: int) -> None:
        """Statistics PVs: ``by`` PVs per state, ``posted`` updates handed to clients."""
        self.stats.set_counts(self.counts(by))
        self.stats.update_rates(
            {
                "clientEventRate": self.client_events,
                "clientPostRate": self.client_posts,
                "existTestRate": self.exist_tests,
                "loopRate": self.loops,
                "serverEventRate": self.server.requests,
                "serverPostRate": posted,
            }
        )

    async def _ticker(self) -> None:
        """Counts event-loop turns at 50 Hz at most: loopRate shows a stalled loop."""
        while True:
            await asyncio.sleep(0.02)
            self.loops += 1

    async def _housekeeping(self) -> None:
        """Timeouts and statistics.

        Why the walk over all PVs runs at most every 5 s (and at a quarter of the
        shortest purge timeout): at 4 Hz it cost 1.35 % of a core for 1,000 idle
        PVs.  Searches time out by themselves (``UpstreamPV.wait_ready``), so the
        connecting -> dead transition here is only a backstop.
        """
        s = self.settings
        shortest = min(s.dead_timeout, s.inactive_timeout, s.disconnect_timeout)
        tick = max(0.05, min(5.0, shortest / 4))
        next_stats = time.monotonic()
        while True:
            await asyncio.sleep(min(tick, s.stats_interval))
            now = time.monotonic()
            stats_due = now >= next_stats
            by = dict.fromkeys(STATES, 0)
            posted = 0
            for i, (real, pv) in enumerate(list(self.pvs.items())):
                if i and not i % WALK_SLICE:
                    # let upstream reads in: a 1,000-record burst waiting for this walk
                    # was the gateway's worst added latency (bench_gateway.py, p99)
                    await asyncio.sleep(0)
                    now = time.monotonic()
                if self.pvs.get(real) is not pv:
                    continue  # purged or replaced meanwhile
                age = now - pv.since
                name = pv.state_name
                if name == CONNECTING and age > s.connect_timeout:
                    pv.mark_dead()
                elif (
                    (name == DEAD and age > s.dead_timeout)
                    or (name == "inactive" and age > s.inactive_timeout)
                    or (name == DISCONNECTED and age > s.disconnect_timeout and not pv.downstream)
                ):
                    log.debug("purging %s (%s for %.0f s)", real, name, age)
                    pv.close()
                    del self.pvs[real]
                    continue
                if stats_due:
                    by[pv.state_name] += 1
                    posted += pv.posted_off_table
            if stats_due:
                self.refresh_stats(by, posted + int(self.fanout.posted.sum()))
                next_stats = now + s.stats_interval


def _put_value(dbr_type: int, count: int, payload: bytes) -> Any:
    """The value a client put, for the logs (hex if it cannot be decoded)."""
    if dbr_type in (PUT_ACKT, PUT_ACKS):
        return int.from_bytes(payload[:2], "big")
    try:
        value = dbr.decode(dbr_type, payload, count).value
    except Exception:
        return payload.hex()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        value = list(value)
    return value


def _state_value(state: PVState | None) -> Any:
    """The cached value before a put (caPutLog's ``old=``), None if there was none."""
    if state is None:
        return None
    try:
        return dbr.decode(dbr.time_type(state.native), state.time_payload, state.count).value
    except Exception:
        return None
