"""ca-gateway's command line (``gateway.cc`` ``ptable``), parsed into :class:`GatewayOptions`.

Matching is ca-gateway's: an argument selects the first table entry whose text it *starts
with* (``-debugX`` is ``-debug``, ``-roFOO`` is ``-ro``; ``-server`` must be exact), values may
not begin with ``-``, numbers are read like ``sscanf("%d")`` (``12abc`` is 12), negative
timeouts keep the default, unknown ``-mask`` letters are ignored. Anything else is an error
whose message lists the valid options. Extensions, clearly marked: ``-hide`` (ISIS fork, no-op
here) and ``-regex gnu|bre|pcre`` (ca-gateway fixes the flavour at build time; default gnu).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .regex import FLAVOUR_GNU, FLAVOURS

__all__ = ["HELP_TEXT", "GatewayOptions", "OptionsError", "parse_args", "usage"]

DBE_VALUE, DBE_LOG, DBE_ALARM, DBE_PROPERTY = 1, 2, 4, 8

# (text, compared length, key, argument description) in ca-gateway's order
_TABLE: tuple[tuple[str, int, str, str | None], ...] = (
    ("-debug", 6, "debug", "value"),
    ("-log", 4, "log", "file_name"),
    ("-pvlist", 7, "pvlist", "file_name"),
    ("-access", 7, "access", "file_name"),
    ("-command", 8, "command", "file_name"),
    ("-putlog", 7, "putlog", "file_name"),
    ("-caputlog", 9, "caputlog", "address (ip:port) or file"),
    ("-report", 7, "report", "file_name"),
    ("-home", 5, "home", "directory"),
    ("-sip", 4, "sip", "IP_address"),
    ("-cip", 4, "cip", "IP_address_list"),
    ("-signore", 8, "signore", "IP_address_list"),
    ("-sport", 6, "sport", "CA_server_port"),
    ("-cport", 6, "cport", "CA_client_port"),
    ("-connect_timeout", 16, "connect_timeout", "seconds"),
    ("-inactive_timeout", 17, "inactive_timeout", "seconds"),
    ("-dead_timeout", 13, "dead_timeout", "seconds"),
    ("-disconnect_timeout", 19, "disconnect_timeout", "seconds"),
    ("-reconnect_inhibit", 18, "reconnect_inhibit", "seconds"),
    ("-server", 9, "server", None),  # length 9 > len("-server"): must match exactly
    ("-uid", 4, "uid", "user_id_number"),
    ("-gid", 4, "gid", "group_id_number"),
    ("-ro", 3, "read_only", None),
    ("-prefix", 7, "prefix", "statistics_prefix"),
    ("-mask", 5, "mask", "event_mask"),
    ("-no_cache", 9, "no_cache", None),
    ("-archive", 8, "archive", None),
    ("-help", 5, "help", None),
    ("-hide", 5, "hide", None),  # ISIS fork: hide the console window; accepted, no effect
    ("-regex", 6, "regex", "gnu|bre|pcre"),  # pvarchiver extension
)
_INT_OPTS = {"debug", "sport", "cport", "uid", "gid", "connect_timeout", "inactive_timeout",
             "dead_timeout", "disconnect_timeout", "reconnect_inhibit"}  # fmt: skip
_TIMEOUTS = {"connect_timeout", "inactive_timeout", "dead_timeout", "disconnect_timeout",
             "reconnect_inhibit"}  # fmt: skip
_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")


class OptionsError(ValueError):
    """A bad command line; the message ends with the usage list of valid options."""


def usage(prog: str = "pvarchiver gateway") -> str:
    lines = [f"Usage: {prog} followed by these options:"]
    for text, _, _, desc in _TABLE:
        lines.append(f"\t[{text} {desc} ]" if desc else f"\t[{text}]")
    return "\n".join(lines)


@dataclass
class GatewayOptions:
    """Parsed options with ca-gateway's defaults (timeouts in seconds)."""

    debug: int = 0
    log: str | None = None
    pvlist: str | None = None
    access: str | None = None
    command: str | None = None
    putlog: str | None = None
    caputlog: str | None = None
    report: str = "gateway.report"
    home: str | None = None
    sip: str | None = None
    cip: str | None = None
    signore: str | None = None
    sport: int | None = None
    cport: int | None = None
    connect_timeout: int = 1
    inactive_timeout: int = 7200
    dead_timeout: int = 120
    disconnect_timeout: int = 7200
    reconnect_inhibit: int = 300
    server: bool = False
    uid: int | None = None
    gid: int | None = None
    read_only: bool = False
    prefix: str | None = None
    mask: int = DBE_VALUE | DBE_ALARM
    cache: bool = True
    archive: bool = False
    help: bool = False
    hide: bool = False
    regex_flavour: str = FLAVOUR_GNU
    given: set[str] = field(default_factory=set)

    def stats_prefix(self) -> str:
        """``-prefix``, else the host name, else ``gateway`` (as ``gateServer``)."""
        return self.prefix or socket.gethostname() or "gateway"

    def resolve_files(self, home: str | Path) -> GatewayOptions:
        """Fill unset pvlist/access/command with ``gateway.*`` files that exist in ``home``."""
        base = Path(home)
        for key, name in (("pvlist", "gateway.pvlist"), ("access", "gateway.access"),
                          ("command", "gateway.command")):  # fmt: skip
            if getattr(self, key) is None and (base / name).exists():
                setattr(self, key, str(base / name))
        return self

    def environment(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """The EPICS_* variables ca-gateway sets from the command line (``startEverything``)."""
        env: dict[str, str] = {}
        current = environ or {}
        if self.cip is not None:
            env["EPICS_CA_ADDR_LIST"] = self.cip
            env["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
            auto_beacon = current.get("EPICS_CAS_AUTO_BEACON_ADDR_LIST")
            if auto_beacon is not None and auto_beacon.upper() != "NO":
                env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] = "YES"
        if self.sip is not None:
            env["EPICS_CAS_INTF_ADDR_LIST"] = self.sip
        if self.signore is not None:
            env["EPICS_CAS_IGNORE_ADDR_LIST"] = self.signore
        if self.cport:
            env["EPICS_CA_SERVER_PORT"] = str(self.cport)
        if self.sport:
            env["EPICS_CAS_SERVER_PORT"] = str(self.sport)
        return env


def _lookup(arg: str) -> tuple[str, int, str, str | None] | None:
    for entry in _TABLE:
        text, length = entry[0], entry[1]
        if length > len(text):
            if arg == text:
                return entry
        elif arg[:length] == text:
            return entry
    return None


def _bad(message: str, argv: list[str]) -> OptionsError:
    return OptionsError(f"{message}\nBad command line: {' '.join(argv)}\n\n{usage()}")


def parse_args(argv: list[str]) -> GatewayOptions:
    """Parse ``argv`` (without the program name) the way ca-gateway's ``main`` does."""
    opts = GatewayOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        entry = _lookup(arg)
        if entry is None:
            raise _bad(f"Bad option: {arg}", argv)
        text, _, key, desc = entry
        opts.given.add(key)
        if desc is None:
            if key == "read_only":
                opts.read_only = True
            elif key == "no_cache":
                opts.cache = False
            else:
                setattr(opts, key, True)
            i += 1
            continue
        if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
            raise _bad(f"Missing value for {text}", argv)
        value = argv[i + 1]
        i += 2
        if key in _INT_OPTS:
            m = _INT_PREFIX.match(value)
            if not m:
                raise _bad(f"Bad value {value} for {text}", argv)
            number = int(m.group(1))
            if key in _TIMEOUTS and number < 0:
                continue  # ca-gateway keeps the default for negative timeouts
            setattr(opts, key, number)
        elif key == "mask":
            mask = 0
            for ch in value.lower():
                mask |= {"v": DBE_VALUE, "a": DBE_ALARM, "l": DBE_LOG, "p": DBE_PROPERTY}.get(ch, 0)
            if mask:
                opts.mask = mask
        elif key == "regex":
            if value not in FLAVOURS:
                raise _bad(f"Bad value {value} for {text} (use one of {', '.join(FLAVOURS)})", argv)
            opts.regex_flavour = value
        else:
            setattr(opts, key, value)
    return opts


HELP_TEXT = """\
-debug value: Enter value between 0-100.  50 gives lots of info, 1 gives small amount.
-pvlist file_name: Name of file with all the allowed PVs in it (ca-gateway pvlist syntax:
 EVALUATION ORDER, ALLOW, DENY [FROM host...], ALIAS; see docs/gateway-config.md).
-access file_name: Name of file with all the EPICS access security rules in it.  PVs in the
 pvlist file use groups and rules defined in this file.  Without it the gateway is read-only.
-log file_name: Name of file where all messages from the gateway go (stdout and stderr).
-command file_name: Name of file where gateway command(s) go (R1, R2, R3, AS); executed on
 SIGUSR1 or a write to <prefix>:commandFlag.
-putlog file_name: Name of file where gateway put logging goes.  Put logging is specified
 with TRAPWRITE in the access file.
-caputlog ip:port|file: TRAPWRITE puts in caPutLog's line layout (date time host user PV
 new=... old=...), sent to an iocLogServer at ip:port (default port 7011) or appended
 to a file.
-report file_name: Name of file where gateway reports go (appended).
-home directory: Home directory where all your gateway configuration files are kept, where
 log and command files go.  Also GATEWAY_HOME.
-sip IP_address_list: IP address(es) the gateway's CA server listens on
 (EPICS_CAS_INTF_ADDR_LIST).
-signore IP_address_list: IP addresses the gateway's CA server ignores
 (EPICS_CAS_IGNORE_ADDR_LIST).
-cip IP_address_list: IP address list the gateway's CA client uses to find the real PVs
 (sets EPICS_CA_ADDR_LIST and EPICS_CA_AUTO_ADDR_LIST=NO).
-sport CA_server_port: port of the gateway's CA server (EPICS_CAS_SERVER_PORT).
-cport CA_client_port: port the gateway's CA client searches (EPICS_CA_SERVER_PORT).
-connect_timeout seconds: how long a PV search may take before the PV is marked not found (1).
-inactive_timeout seconds: how long an unused connected PV is kept (7200).
-dead_timeout seconds: how long a never-connected PV is remembered (120).
-disconnect_timeout seconds: how long a disconnected PV is kept (7200).
-reconnect_inhibit seconds: minimum time between beacon anomalies on reconnects (300).
-server: Start as server: a watchdog restarts the gateway if it dies (not on Windows).
-mask event_mask: upstream event mask: any of v (value), a (alarm), l (log), p (property).
 Default is va.
-prefix string: prefix for the gateway statistics PVs (default: the host name).
-uid number / -gid number: setuid / setgid to this id (not on Windows).
-ro: read-only gateway: all writes refused.
-no_cache: disables caching: every get is forwarded to the IOC.
-archive: enables the archive monitor: an additional DBE_LOG monitor is created.
-hide: accepted for the ISIS fork's command lines; no effect.
-regex gnu|bre|pcre: pvlist pattern syntax (pvarchiver extension; default gnu, as ca-gateway's
 default build; pcre as a USE_PCRE build; bre = POSIX basic with \\{m,n\\}).
-help: this text.
"""
