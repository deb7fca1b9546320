"""The gateway's combined access decision: pvlist (which names, which real PV, which ASG/ASL)
plus ACF (which rights for this user and host), with live CALC re-evaluation.

The CA server calls :meth:`GatewayAccess.search` on every search, :meth:`GatewayAccess.attach`
on channel creation, and keeps one :class:`AccessClient` per downstream channel; when an ACF
input PV changes (:meth:`GatewayAccess.update_input`) or the configuration is reloaded, every
client whose rights changed gets its ``on_change`` callback so the server can send
CA_PROTO_ACCESS_RIGHTS. Pure code: the server owns sockets, timers and the INP subscriptions.

ca-gateway's rules, kept exactly: no access file means asLib is inactive, so reads are allowed
and writes refused; an access file that cannot be opened installs ``ASG(DEFAULT){RULE(1,READ)}``;
an access file that fails to parse at start leaves asLib inactive (read-only). ``-ro`` refuses
every write. On reload, a file that cannot be read or parsed keeps the previous configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .acf import DEFAULT_RULES, Acf, AcfError, AsgState, parse_acf
from .pvlist import PvList, PvListError, PvMatch, Resolver, default_resolver
from .regex import FLAVOUR_GNU

__all__ = ["AccessClient", "GatewayAccess", "Rights", "load_acf"]


@dataclass(frozen=True)
class Rights:
    """What the gateway grants one downstream channel (``trapwrite``: put-log its writes)."""

    read: bool
    write: bool
    trapwrite: bool = False


READ_ONLY = Rights(True, False, False)
NO_ACCESS = Rights(False, False, False)


def load_acf(path: str | Path | None, warnings: list[str]) -> Acf | None:
    """ca-gateway's start-up: None (asLib inactive, read-only) without a file or on a parse
    error; built-in READ rules when the file cannot be opened."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        warnings.append(f"{path}: cannot open access security file ({e.strerror or e}); "
                        "using ASG(DEFAULT){RULE(1,READ)}")  # fmt: skip
        return parse_acf(DEFAULT_RULES, source="<default rules>")
    try:
        acf = parse_acf(text, source=str(path))
    except AcfError as e:
        warnings.append(f"{e}; access security not installed: read-only for everybody")
        return None
    warnings.extend(acf.warnings)
    return acf


class AccessClient:
    """Access state of one downstream channel; ``rights`` is kept current by the owner."""

    def __init__(
        self,
        owner: GatewayAccess,
        match: PvMatch,
        user: str,
        host: str,
        on_change: Callable[[AccessClient], None] | None,
    ) -> None:
        self._owner = owner
        self.name = match.name  # the requested name, re-matched on reload
        self.match: PvMatch | None = match
        self.user = user
        self.host = host
        self.on_change = on_change
        self.rights = owner._compute(self)

    def close(self) -> None:
        """Forget this client (the downstream channel is gone)."""
        self._owner._clients.discard(self)

    def _refresh(self) -> None:
        new = self._owner._compute(self)
        if new != self.rights:
            self.rights = new
            if self.on_change is not None:
                self.on_change(self)


class GatewayAccess:
    """pvlist + ACF + ``-ro``, the single object the gateway server consults."""

    def __init__(
        self,
        pvlist: PvList,
        acf: Acf | None,
        read_only: bool = False,
        warnings: list[str] | None = None,
        flavour: str = FLAVOUR_GNU,
        resolve: Resolver = default_resolver,
    ) -> None:
        self.pvlist = pvlist
        self._flavour = flavour
        self._resolve = resolve
        self.acf = acf
        self.read_only = read_only
        self.warnings: list[str] = list(warnings or [])
        self._clients: set[AccessClient] = set()
        self._inputs: dict[str, tuple[float | None, int]] = {}
        self._states: dict[str, AsgState] = {}
        self._install_states()

    @classmethod
    def load(
        cls,
        pvlist_path: str | Path | None,
        access_path: str | Path | None,
        flavour: str = FLAVOUR_GNU,
        read_only: bool = False,
        resolve: Resolver = default_resolver,
    ) -> GatewayAccess:
        """Read both files as ca-gateway does at start. An unreadable pvlist raises
        :class:`PvListError` (ca-gateway would run denying everything)."""
        warnings: list[str] = []
        pvlist = cls._read_pvlist(pvlist_path, flavour, resolve)
        warnings.extend(pvlist.warnings)
        acf = load_acf(access_path, warnings)
        return cls(pvlist, acf, read_only, warnings, flavour, resolve)

    @staticmethod
    def _read_pvlist(path: str | Path | None, flavour: str, resolve: Resolver) -> PvList:
        if path is None:
            return PvList.default()
        return PvList.from_file(path, flavour=flavour, resolve=resolve)

    def _install_states(self) -> None:
        self._states = {}
        if self.acf is None:
            return
        for name, asg in self.acf.asgs.items():
            state = AsgState(asg)
            for index, pv in asg.inputs.items():
                if pv in self._inputs:
                    value, severity = self._inputs[pv]
                    state.update(index, value, severity)
            self._states[name] = state

    # ---- decisions ----------------------------------------------------------------------

    def search(self, name: str, client_ip: str | None) -> PvMatch | None:
        """Search request from ``client_ip``: DENY FROM, DENY and ALLOW/ALIAS rules."""
        return self.pvlist.decide(name, client_ip)

    def attach(self, name: str) -> PvMatch | None:
        """Channel create: like ca-gateway, DENY FROM is not re-checked here."""
        return self.pvlist.decide(name, None)

    def client(
        self,
        match: PvMatch,
        user: str,
        host: str,
        on_change: Callable[[AccessClient], None] | None = None,
    ) -> AccessClient:
        """Register a downstream channel; read ``.rights`` now and after each ``on_change``."""
        c = AccessClient(self, match, user, host, on_change)
        self._clients.add(c)
        return c

    def rights(self, match: PvMatch, user: str, host: str) -> Rights:
        """One-off rights check (no client registered)."""
        return AccessClient(self, match, user, host, None).rights

    def _compute(self, c: AccessClient) -> Rights:
        if c.match is None:
            return NO_ACCESS
        if self.acf is None:
            return READ_ONLY
        group = self.acf.asg(c.match.asg)
        r = self._states[group.name].rights(c.match.asl, c.user, c.host, self.acf)
        return Rights(r.read, r.write and not self.read_only, r.trapwrite)

    # ---- ACF inputs ---------------------------------------------------------------------

    def input_pvs(self) -> set[str]:
        """PV names of all INPx lines: monitor them (DBR_STS_DOUBLE, DBE_VALUE|DBE_ALARM)."""
        return self.acf.input_pvs() if self.acf is not None else set()

    def update_input(self, pv: str, value: float | None, severity: int = 0) -> None:
        """An INP PV changed (``value`` None: disconnected; severity 3: INVALID, i.e. bad);
        CALCs using it are recomputed and clients whose rights change are notified."""
        self._inputs[pv] = (value, severity)
        touched: set[str] = set()
        if self.acf is not None:
            for name, asg in self.acf.asgs.items():
                for index, inp in asg.inputs.items():
                    if inp == pv:
                        self._states[name].update(index, value, severity)
                        touched.add(name)
        if touched:
            assert self.acf is not None
            for c in list(self._clients):
                if c.match is not None and self.acf.asg(c.match.asg).name in touched:
                    c._refresh()

    # ---- reload (newAsFlag) -------------------------------------------------------------

    def reload(self, pvlist_path: str | Path | None, access_path: str | Path | None) -> list[str]:
        """Re-read both files; on any error keep the running configuration and return the
        messages. Existing clients are re-matched and notified of changed rights."""
        errors: list[str] = []
        try:
            pvlist = self._read_pvlist(pvlist_path, self._flavour, self._resolve)
        except PvListError as e:
            return [f"{e}; keeping the previous configuration"]
        acf: Acf | None = None
        if access_path is not None:
            try:
                text = Path(access_path).read_text(encoding="utf-8", errors="replace")
                acf = parse_acf(text, source=str(access_path))
            except (OSError, AcfError) as e:
                return [f"{e}; keeping the previous configuration"]
        self.pvlist, self.acf = pvlist, acf
        self.warnings = list(pvlist.warnings) + (list(acf.warnings) if acf else [])
        errors.extend(self.warnings)
        self._install_states()
        for c in list(self._clients):
            c.match = self.pvlist.decide(c.name, None)
            c._refresh()
        return errors

    def report(self) -> str:
        """ca-gateway's R3 access report: pvlist rules, evaluation order and the ACF dump."""
        text = self.pvlist.report()
        if self.acf is None:
            text += "Access security is not active (reads allowed, writes refused).\n"
        else:
            text += "Access Rules are installed.\n"
            text += "\n" + "=" * 28 + " Access Security Dump " + "=" * 25 + "\n"
            text += self.acf.dump()
        return text
