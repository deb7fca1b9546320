"""ca-gateway ``-pvlist`` files: parser and the allow/deny/alias decision (``gateAs.cc``).

Line forms (commands case-insensitive, patterns case-sensitive)::

    EVALUATION ORDER ALLOW, DENY          # or DENY, ALLOW; the first word is ignored
    <pattern> DENY [FROM] [host ...]      # hosts resolved to IPs when the file is read
    <pattern> ALLOW [asg [asl]]           # also PATTERN / PV (undocumented synonyms)
    <pattern> ALIAS <real-name> [asg [asl]]   # \\0..\\9 in <real-name> = matched groups

Behaviour kept from ca-gateway because configurations rely on it: rules are searched
last-line-first and the first hit wins; ``DENY, ALLOW`` makes plain DENY lines no-ops; DENY FROM
is checked only on search (a client host is known), not on channel create; a leading ``!``
negates a pattern; non-numeric ASL reads as 1; bad lines and patterns are reported and skipped.

Where the C tokenizer has outright bugs we do the intended thing and add a warning naming the
line (see ``docs/gateway-config.md``): trailing ``#`` comments are comments everywhere (C turns
``X DENY # note`` into DENY FROM hosts ``#``, ``note``), CRLF line ends are accepted, the last
line keeps its last character without a newline, and a missing ASL is 1 (C reuses the previous
line's value).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .regex import FLAVOUR_GNU, Pattern, PatternError

__all__ = [
    "ALLOW_DENY",
    "DENY_ALLOW",
    "PvList",
    "PvListError",
    "PvListRule",
    "PvMatch",
    "default_resolver",
]

ALLOW_DENY = "allow, deny"
DENY_ALLOW = "deny, allow"
#: ca-gateway's ``GATE_MAX_PVNAME_LENGTH``: real names are truncated to 255 characters
MAX_REAL_NAME = 255
_C_LINE_MAX = 1023  # fgets buffer of 1024 bytes
_ALLOW_CMDS = ("ALLOW", "ALIAS", "PATTERN", "PV")
_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")

Resolver = Callable[[str], "str | None"]
Hit = tuple["PvListRule", "re.Match[str] | bool"]


class PvListError(OSError):
    """The pvlist file could not be read at all."""


def default_resolver(host: str) -> str | None:
    """``aToIPAddr``: dotted IP or host name (an optional ``:port`` is ignored) to dotted IP."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        return socket.gethostbyname(name)
    except (OSError, UnicodeError):
        return None


@dataclass(frozen=True)
class PvListRule:
    """One rule as read from the file (``hosts`` only for DENY FROM)."""

    source: str
    line: int
    kind: str  # "allow", "alias", "deny" or "deny_from"
    pattern: Pattern
    alias: str | None = None
    asg: str = "DEFAULT"
    asl: int = 1
    hosts: tuple[str, ...] = ()

    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class PvMatch:
    """The decision for one requested name: serve it as ``real_name`` with ``asg``/``asl``."""

    name: str
    real_name: str
    asg: str
    asl: int
    rule: PvListRule


def _sscanf_int(token: str) -> int | None:
    m = _INT_PREFIX.match(token)
    return int(m.group(1)) if m else None


def substitute(template: str, hit: re.Match[str] | bool, name: str) -> str:
    """``gateAsEntry::getRealName``: ``\\N`` is group N (empty if unset), ``\\c`` is ``c``."""
    out: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        if c == "\\":
            i += 1
            if i >= len(template):
                break  # C copies the terminating NUL: a trailing backslash ends the name
            c = template[i]
            if c.isdigit():
                n = int(c)
                if isinstance(hit, re.Match) and n <= (hit.re.groups or 0):
                    out.append(hit.group(n) or "")
                i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out)[:MAX_REAL_NAME]


@dataclass
class PvList:
    """A parsed pvlist: call :meth:`decide` for every search / channel create."""

    source: str = "<string>"
    order: str = ALLOW_DENY
    allow: list[PvListRule] = field(default_factory=list)  # reverse file order
    deny: list[PvListRule] = field(default_factory=list)  # reverse file order
    deny_from: dict[str, list[PvListRule]] = field(default_factory=dict)  # ip -> rules, reversed
    warnings: list[str] = field(default_factory=list)
    _cache: dict[str, PvMatch | None] = field(default_factory=dict, repr=False)
    cache_size: int = 65536

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def default(cls) -> PvList:
        """No ``-pvlist`` and no ``gateway.pvlist``: an implicit ``.* ALLOW DEFAULT 1``."""
        rule = PvListRule("<default>", 0, "allow", Pattern.compile(".*"))
        return cls(source="<default>", allow=[rule])

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        flavour: str = FLAVOUR_GNU,
        resolve: Resolver = default_resolver,
        negation: bool = True,
    ) -> PvList:
        """Read a pvlist file; :class:`PvListError` if it cannot be read (ca-gateway would
        then run with no rules, denying everything)."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise PvListError(f"cannot read PV list file {path}: {e.strerror or e}") from None
        text = data.decode("utf-8", errors="replace")
        return cls.from_text(text, source=str(path), flavour=flavour, resolve=resolve,
                             negation=negation)  # fmt: skip

    @classmethod
    def from_text(
        cls,
        text: str,
        source: str = "<string>",
        flavour: str = FLAVOUR_GNU,
        resolve: Resolver = default_resolver,
        negation: bool = True,
    ) -> PvList:
        """Parse pvlist text (see the module docstring for the rules and the deviations)."""
        pv = cls(source=source)
        if "\r\n" in text:
            pv._warn(0, "CRLF line ends: accepted (ca-gateway on Linux keeps '\\r' in the last "
                        "token of each line and rejects most such lines)")  # fmt: skip
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        elif lines and lines[-1].strip() and not lines[-1].lstrip().startswith("#"):
            pv._warn(len(lines), "no newline at end of file: ca-gateway would drop the last "
                                 f"character {lines[-1][-1]!r} of this line")  # fmt: skip
        prev_asl = 1
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r")
            if len(line) > _C_LINE_MAX:
                pv._warn(number, "line longer than 1023 characters (ca-gateway splits it)")
            prev_asl = pv._parse_line(number, line, flavour, resolve, negation, prev_asl)
        return pv

    def _warn(self, line: int, message: str) -> None:
        self.warnings.append(f"{self.source}:{line}: {message}")

    def _compile(self, text: str, line: int, flavour: str, negation: bool) -> Pattern | None:
        try:
            return Pattern.compile(text, flavour, negation)
        except PatternError as e:
            self._warn(line, f"bad pattern {text!r} ({e}); line ignored")
            return None

    def _parse_line(
        self, line: int, text: str, flavour: str, resolve: Resolver, negation: bool, prev_asl: int
    ) -> int:
        """Parse one line; returns the ASL the C code would carry into the next line."""
        body, hash_, _comment = text.partition("#")
        tokens = body.split()
        if not tokens:
            return prev_asl
        if len(tokens) < 2:
            self._warn(line, "missing command; line ignored")
            return prev_asl
        pattern_text, cmd = tokens[0], tokens[1]
        ucmd = cmd.upper()
        if hash_ and not body[-1].isspace():
            # "X ALLOW#c": C keeps "ALLOW#c" as one token (an invalid command, or an unknown ASG)
            self._warn(line, f"'#' directly after '{tokens[-1]}': ca-gateway would read the "
                             "comment as part of that token")  # fmt: skip
        if ucmd == "DENY":
            self._parse_deny(line, tokens, body, hash_, flavour, resolve, negation)
            return prev_asl
        if ucmd == "ORDER":
            args = [a for a in re.split(r"[,\s]+", " ".join(tokens[2:])) if a]
            if len(args) < 2:
                self._warn(line, f"missing argument to '{cmd}' command")
                return prev_asl
            if pattern_text.upper() != "EVALUATION":
                self._warn(line, f"'{pattern_text}' ignored (ca-gateway ignores the first word)")
            pair = (args[0].upper(), args[1].upper())
            if pair == ("ALLOW", "DENY"):
                self.order = ALLOW_DENY
            elif pair == ("DENY", "ALLOW"):
                self.order = DENY_ALLOW
            else:
                self._warn(line, f"invalid argument to '{cmd}' command")
            return prev_asl
        rest = tokens[2:]
        alias = None
        if ucmd == "ALIAS":
            if not rest:
                self._warn(line, "missing real name in ALIAS command")
                return prev_asl
            alias, rest = rest[0], rest[1:]
        asg, asl = "DEFAULT", 1
        if rest:
            asg = rest[0]
            if len(rest) > 1:
                value = _sscanf_int(rest[1])
                if value is None:
                    self._warn(line, f"ASL {rest[1]!r} is not a number: using 1")
                asl = 1 if value is None else value
            elif prev_asl != 1:
                self._warn(line, f"no ASL: using 1 (ca-gateway would reuse {prev_asl} from an "
                                 "earlier line)")  # fmt: skip
        if ucmd not in _ALLOW_CMDS:
            self._warn(line, f"invalid command '{cmd}'; line ignored")
            return prev_asl
        pattern = self._compile(pattern_text, line, flavour, negation)
        if pattern is None:
            return asl if rest else prev_asl
        if alias is not None and pattern.negated and "\\" in alias:
            self._warn(line, "ALIAS with a negated pattern: \\N references are empty")
        kind = "alias" if alias is not None else "allow"
        self.allow.insert(0, PvListRule(self.source, line, kind, pattern, alias, asg, asl))
        return asl if rest else prev_asl

    def _parse_deny(
        self,
        line: int,
        tokens: list[str],
        body: str,
        hash_: str,
        flavour: str,
        resolve: Resolver,
        negation: bool,
    ) -> None:
        args = [a for a in re.split(r"[,\s]+", " ".join(tokens[2:])) if a]
        if args and args[0].upper() == "FROM":
            args = args[1:]
        if not args and hash_:
            self._warn(line, "comment after DENY: treated as a comment (ca-gateway would read "
                             "its words as DENY FROM host names, denying nobody)")  # fmt: skip
        pattern = self._compile(tokens[0], line, flavour, negation)
        if pattern is None:
            return
        if not args:
            self.deny.insert(0, PvListRule(self.source, line, "deny", pattern))
            return
        ips: list[str] = []
        for host in args:
            ip = resolve(host)
            if ip is None:
                self._warn(line, f"cannot resolve host name >{host}<")
            else:
                ips.append(ip)
        if not ips:
            # C then re-reads the line without hosts: a plain DENY for everybody (fail-closed)
            self._warn(line, "no DENY FROM host could be resolved: denying from all hosts")
            self.deny.insert(0, PvListRule(self.source, line, "deny", pattern))
            return
        rule = PvListRule(self.source, line, "deny_from", pattern, hosts=tuple(ips))
        for ip in ips:
            self.deny_from.setdefault(ip, []).insert(0, rule)

    # ---- decisions ----------------------------------------------------------------------

    @staticmethod
    def _first(name: str, rules: list[PvListRule]) -> Hit | None:
        for rule in rules:
            hit = rule.pattern.match(name)
            if hit is not None:
                return rule, hit
        return None

    def decide(self, name: str, client_ip: str | None = None) -> PvMatch | None:
        """``gateAs::findEntry``: None when the name is not served (to this client).

        ``client_ip`` (dotted) enables the DENY FROM check, as on a search; channel creation
        passes None, as ca-gateway does.
        """
        if client_ip is not None and self.deny_from:
            rules = self.deny_from.get(client_ip)
            if rules and self._first(name, rules) is not None:
                return None
        try:
            return self._cache[name]
        except KeyError:
            pass
        result = self._decide_uncached(name)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[name] = result
        return result

    def _decide_uncached(self, name: str) -> PvMatch | None:
        if self.order == ALLOW_DENY and self._first(name, self.deny) is not None:
            return None
        found = self._first(name, self.allow)
        if found is None:
            return None
        rule, hit = found
        real = name if rule.alias is None else substitute(rule.alias, hit, name)
        return PvMatch(name, real, rule.asg, rule.asl, rule)

    @property
    def deny_from_used(self) -> bool:
        return bool(self.deny_from)

    def report(self) -> str:
        """The pvlist half of ca-gateway's access report (R3)."""
        lines = ["============================ Allowed PV Report ============================",
                 " Pattern                        ASG             ASL Alias"]  # fmt: skip
        for r in self.allow:
            alias = f" {r.alias}" if r.alias else ""
            lines.append(f" {r.pattern.text:<30} {r.asg:<16} {r.asl} {alias}".rstrip())
        lines.append("")
        lines.append("============================ Denied PV Report  ============================")
        if self.deny:
            lines.append("\n==== Denied from ALL Hosts:")
            lines.extend(f" {r.pattern.text}" for r in self.deny)
        for ip, rules in self.deny_from.items():
            lines.append(f"\n==== Denied from Host {ip}:")
            lines.extend(f" {r.pattern.text}" for r in rules)
        lines.append(f"\nEvaluation order: {self.order}")
        return "\n".join(lines) + "\n"
