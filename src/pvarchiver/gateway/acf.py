"""EPICS Access Security Configuration Files (asLib grammar) and their evaluation.

Parsing follows ``asLib_lex.l``/``asLib.y`` (classic grammar plus the newer keywords, which are
tolerated): ``UAG``/``HAG``/``ASG`` blocks, ``INPA``..``INPU``, ``RULE(level, NONE|READ|WRITE
[, TRAPWRITE|NOTRAPWRITE]) { UAG(..) HAG(..) CALC("..") }``. Errors carry the line number.

Newer constructs: top-level blocks with unknown names and ``AUTHORITY(...)`` trees are ignored
with a warning; a RULE containing ``METHOD``/``AUTHORITY``/``PROTOCOL`` or an unknown item is
kept but never matches a CA client (fail-secure); a RULE with an unknown access word (``RPC``
included: it is a PVA right) is ignored. Upstream attaches such an ignored RULE's options and
body to the *previous* rule by accident; we drop them and warn.

Evaluation follows ``asComputePvt``/``asComputeAsg``: rules are scanned in file order, a rule
applies if ``client level <= rule level``, the user is in one of its UAGs (exact), the
lower-cased host is in one of its HAGs (entries lower-cased), and its CALC (if any) has good
inputs and a last result of 1 (``0.99 < r < 1.01``); the result is the highest access granted,
TRAPWRITE from the rule that granted it. CALC results are recomputed only when an input the
CALC uses changes, so a CALC with no inputs is never true.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum

from .calc import NARGS, CalcError, CalcExpr, compile_calc

__all__ = ["Access", "Acf", "AcfError", "AcfRule", "Asg", "parse_acf"]

INVALID_ALARM = 3


class Access(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


class AcfError(ValueError):
    """An ACF that asLib would refuse; ``line`` is 1-based."""

    def __init__(self, message: str, line: int, source: str = "<string>") -> None:
        self.line = line
        self.source = source
        super().__init__(f"{source}:{line}: {message}")


@dataclass
class AcfRule:
    line: int
    level: int
    access: Access
    trapwrite: bool = False
    uags: list[str] = field(default_factory=list)
    hags: list[str] = field(default_factory=list)
    calc: CalcExpr | None = None
    disabled: str | None = None  # reason this rule can never match a CA client


@dataclass
class Asg:
    name: str
    inputs: dict[int, str] = field(default_factory=dict)  # index (A=0) -> PV name
    rules: list[AcfRule] = field(default_factory=list)


@dataclass
class Acf:
    """A parsed file: groups by name (``DEFAULT`` always exists) plus parse warnings."""

    source: str = "<string>"
    uags: dict[str, set[str]] = field(default_factory=dict)
    hags: dict[str, set[str]] = field(default_factory=dict)
    asgs: dict[str, Asg] = field(default_factory=lambda: {"DEFAULT": Asg("DEFAULT")})
    warnings: list[str] = field(default_factory=list)

    def asg(self, name: str) -> Asg:
        """The group a member named ``name`` belongs to: undefined names go to DEFAULT."""
        return self.asgs.get(name) or self.asgs["DEFAULT"]

    def input_pvs(self) -> set[str]:
        return {pv for g in self.asgs.values() for pv in g.inputs.values()}

    def dump(self) -> str:
        """``asDumpFP``-like text for reports."""
        out: list[str] = []
        for name, users in sorted(self.uags.items()):
            out.append(f"UAG({name})" + (" {" + ",".join(sorted(users)) + "}" if users else ""))
        for name, hosts in sorted(self.hags.items()):
            out.append(f"HAG({name})" + (" {" + ",".join(sorted(hosts)) + "}" if hosts else ""))
        for name, g in sorted(self.asgs.items()):
            out.append(f"ASG({name})" + (" {" if g.inputs or g.rules else ""))
            for i, pv in sorted(g.inputs.items()):
                out.append(f"\tINP{chr(65 + i)}({pv})")
            for r in g.rules:
                trap = "TRAPWRITE" if r.trapwrite else "NOTRAPWRITE"
                out.append(f"\tRULE({r.level},{r.access.name},{trap})")
                if r.uags:
                    out.append(f"\t\tUAG({','.join(r.uags)})")
                if r.hags:
                    out.append(f"\t\tHAG({','.join(r.hags)})")
                if r.calc:
                    out.append(f'\t\tCALC("{r.calc.expr}")')
            if g.inputs or g.rules:
                out.append("}")
        return "\n".join(out) + "\n"


# ---- lexer --------------------------------------------------------------------------------

_KEYWORDS = {"UAG", "HAG", "ASG", "RULE", "CALC", "METHOD", "AUTHORITY", "PROTOCOL"}
_NAME = re.compile(r"[a-zA-Z0-9_\-+:.\[\]<>;]+")
_FLOAT = re.compile(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?")
_INT = re.compile(r"[-+]?\d+")
_QUOTED = re.compile(r'"(?:[^"\n\\]|\\.)*"')
_INP = re.compile(r"INP[A-U]")


@dataclass(frozen=True)
class _Tok:
    kind: str  # "kw", "inp", "str", "int", "float", "punct", "eof"
    value: str
    line: int


def _lex(text: str, source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    line = 1
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "(){},":
            toks.append(_Tok("punct", c, line))
            i += 1
        elif c == '"':
            m = _QUOTED.match(text, i)
            if not m:
                if "\n" in text[i:] and '"' not in text[i + 1 : text.find("\n", i)]:
                    raise AcfError("Newline in quoted string, closing quote missing", line, source)
                raise AcfError("Invalid character '\"'", line, source)
            toks.append(_Tok("str", m.group(0)[1:-1], line))  # escapes are kept, as in asLib
            i = m.end()
        else:
            # flex: longest match wins, ties go to the earlier rule (keywords, float, int, name)
            cands = []
            for kind, rx in (("float", _FLOAT), ("int", _INT), ("str", _NAME)):
                m = rx.match(text, i)
                if m:
                    cands.append((len(m.group(0)), kind, m.group(0)))
            if not cands:
                shown = c if c.isprintable() else f"0x{ord(c):02x}"
                raise AcfError(f"Invalid character '{shown}'", line, source)
            best = max(length for length, _, _ in cands)
            kind, value = next((k, v) for length, k, v in cands if length == best)
            if kind == "str" and value in _KEYWORDS:
                kind = "kw"
            elif kind == "str" and _INP.fullmatch(value):
                kind = "inp"
            toks.append(_Tok(kind, value, line))
            i += best
    toks.append(_Tok("eof", "", line))
    return toks


# ---- parser -------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.toks = _lex(text, source)
        self.pos = 0
        self.acf = Acf(source=source)
        self.defined_asgs: set[str] = set()

    # token helpers
    def peek(self, offset: int = 0) -> _Tok:
        return self.toks[min(self.pos + offset, len(self.toks) - 1)]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos = min(self.pos + 1, len(self.toks) - 1)
        return tok

    def error(self, message: str, tok: _Tok | None = None) -> AcfError:
        return AcfError(message, (tok or self.peek()).line, self.source)

    def expect(self, kind: str, value: str | None = None) -> _Tok:
        tok = self.take()
        if tok.kind != kind or (value is not None and tok.value != value):
            got = "end of file" if tok.kind == "eof" else repr(tok.value)
            want = repr(value) if value else {"str": "a name", "int": "an integer"}.get(kind, kind)
            raise self.error(f"syntax error: expected {want}, got {got}", tok)
        return tok

    def warn(self, tok: _Tok, message: str) -> None:
        self.acf.warnings.append(f"{self.source}:{tok.line}: {message}")

    def is_punct(self, value: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok.kind == "punct" and tok.value == value

    # grammar
    def parse(self) -> Acf:
        if self.peek().kind == "eof":
            raise self.error("syntax error: empty access security file")
        while self.peek().kind != "eof":
            self.item()
        return self.acf

    def head(self) -> _Tok:
        self.expect("punct", "(")
        name = self.expect("str")
        self.expect("punct", ")")
        return name

    def name_list(self, close: str) -> list[str]:
        names = [self.expect("str").value]
        while self.is_punct(","):
            self.take()
            names.append(self.expect("str").value)
        self.expect("punct", close)
        return names

    def item(self) -> None:
        tok = self.take()
        if tok.kind == "kw" and tok.value in ("UAG", "HAG"):
            name = self.head()
            table = self.acf.uags if tok.value == "UAG" else self.acf.hags
            if name.value in table:
                kind = "User" if tok.value == "UAG" else "Host"
                raise self.error(f"Duplicate {kind} Access Group named '{name.value}'", name)
            members: set[str] = set()
            if self.is_punct("{"):
                self.take()
                for member in self.name_list("}"):
                    member = member.lower() if tok.value == "HAG" else member
                    if member in members:
                        self.warn(name, f"duplicated entry '{member}' in {tok.value}({name.value})")
                    members.add(member)
            table[name.value] = members
        elif tok.kind == "kw" and tok.value == "ASG":
            self.asg()
        elif tok.kind == "kw" and tok.value == "AUTHORITY":
            self.warn(tok, "ignoring AUTHORITY block (secure PVA only)")
            self.generic_head()
            if self.is_punct("{"):
                self.generic_block()
        elif tok.kind == "str":
            self.warn(tok, f"ignoring unsupported top level block '{tok.value}'")
            self.generic_head()
            if self.is_punct("{"):
                self.generic_block()
                if self.is_punct("{"):
                    self.generic_block()
        else:
            raise self.error(f"syntax error at {tok.value or 'end of file'!r}", tok)

    def generic_head(self) -> None:
        self.expect("punct", "(")
        if self.is_punct(")"):
            self.take()
            return
        while True:
            tok = self.take()
            if tok.kind not in ("kw", "inp", "str", "int", "float"):
                raise self.error(f"syntax error at {tok.value!r}", tok)
            if self.is_punct(","):
                self.take()
                continue
            self.expect("punct", ")")
            return

    def generic_block(self) -> None:
        self.expect("punct", "{")
        depth = 1
        while depth:
            tok = self.take()
            if tok.kind == "eof":
                raise self.error("syntax error: unterminated block", tok)
            if tok.kind == "punct" and tok.value == "{":
                depth += 1
            elif tok.kind == "punct" and tok.value == "}":
                depth -= 1

    def asg(self) -> None:
        name = self.head()
        if name.value in self.defined_asgs:
            raise self.error(f"Duplicate Access Security Group named '{name.value}'", name)
        self.defined_asgs.add(name.value)
        group = Asg(name.value)
        self.acf.asgs[name.value] = group
        if not self.is_punct("{"):
            return
        self.take()
        if self.is_punct("}"):
            raise self.error("syntax error: empty ASG body (omit the braces)")
        while not self.is_punct("}"):
            tok = self.take()
            if tok.kind == "inp":
                pv = self.head()
                index = ord(tok.value[3]) - 65
                if index >= NARGS:
                    raise self.error(f"{tok.value} is beyond the CALC inputs A..U", tok)
                if index in group.inputs:
                    self.warn(tok, f"{tok.value} given twice in ASG({group.name}); last one used")
                group.inputs[index] = pv.value
            elif tok.kind == "kw" and tok.value == "RULE":
                self.rule(group, tok)
            else:
                raise self.error(f"syntax error at {tok.value or 'end of file'!r}", tok)
        self.take()

    def rule(self, group: Asg, at: _Tok) -> None:
        self.expect("punct", "(")
        level_tok = self.take()
        if level_tok.kind != "int":
            raise self.error(f"syntax error: RULE level must be an integer, got "
                             f"{level_tok.value!r}", level_tok)  # fmt: skip
        level = int(level_tok.value)
        if level < 0:
            raise self.error(f"RULE: LEVEL must be positive: {level}", level_tok)
        self.expect("punct", ",")
        access_tok = self.expect("str")
        rule: AcfRule | None = None
        if access_tok.value in Access.__members__:
            rule = AcfRule(at.line, level, Access[access_tok.value])
        else:
            self.warn(access_tok, f"ignoring RULE with unsupported access '{access_tok.value}'")
        if self.is_punct(","):
            self.take()
            trap = self.expect("str")
            if trap.value not in ("TRAPWRITE", "NOTRAPWRITE"):
                raise self.error("Log options must be TRAPWRITE or NOTRAPWRITE", trap)
            if rule is not None:
                rule.trapwrite = trap.value == "TRAPWRITE"
        self.expect("punct", ")")
        if self.is_punct("{"):
            self.take()
            if self.is_punct("}"):
                raise self.error("syntax error: empty RULE body (omit the braces)")
            while not self.is_punct("}"):
                self.rule_item(rule)
            self.take()
        if rule is not None:
            group.rules.append(rule)

    def rule_item(self, rule: AcfRule | None) -> None:
        tok = self.take()
        if tok.kind == "kw" and tok.value in ("UAG", "HAG"):
            self.expect("punct", "(")
            names = self.name_list(")")
            table = self.acf.uags if tok.value == "UAG" else self.acf.hags
            for name in names if rule is not None else ():  # an ignored RULE is not checked
                if name not in table:
                    kind = "User" if tok.value == "UAG" else "Host"
                    raise self.error(f"No {kind} Access Group named '{name}' defined", tok)
            if rule is not None:
                (rule.uags if tok.value == "UAG" else rule.hags).extend(names)
        elif tok.kind == "kw" and tok.value == "CALC":
            expr = self.head()
            try:
                calc = compile_calc(expr.value)
            except CalcError as e:
                raise self.error(str(e), expr) from None
            if calc.stores:
                raise self.error(f"Assignment operator used in CALC expression "
                                 f"'{expr.value}'", expr)  # fmt: skip
            if rule is not None:
                rule.calc = calc
        elif tok.kind in ("kw", "inp", "str"):
            self.generic_head()
            if self.is_punct("{"):
                self.generic_block()
            self.warn(tok, f"RULE containing '{tok.value}' never matches a CA client")
            if rule is not None and rule.disabled is None:
                rule.disabled = tok.value
        else:
            raise self.error(f"syntax error at {tok.value or 'end of file'!r}", tok)


def parse_acf(text: str, source: str = "<string>") -> Acf:
    """Parse an ACF; raises :class:`AcfError` (with the line) where asLib would fail."""
    return _Parser(text, source).parse()


#: what ca-gateway installs when the named access file cannot be opened
DEFAULT_RULES = "ASG(DEFAULT) { RULE(1,READ) }\n"


@dataclass(frozen=True)
class Rights:
    """Computed rights of one client on one member."""

    access: Access
    trapwrite: bool

    @property
    def read(self) -> bool:
        return self.access >= Access.READ

    @property
    def write(self) -> bool:
        return self.access >= Access.WRITE


class AsgState:
    """Runtime state of one ASG: input values, bad inputs and the last CALC results."""

    def __init__(self, asg: Asg) -> None:
        self.asg = asg
        self.values = [0.0] * NARGS
        self.bad = 0
        for index in asg.inputs:
            self.bad |= 1 << index  # inputs start bad until their first good update
        self.results = [0] * len(asg.rules)

    def update(self, index: int, value: float | None, severity: int = 0) -> None:
        """An INP event (``value`` None: disconnected), then recompute the affected CALCs."""
        bit = 1 << index
        if value is None:
            self.bad |= bit
            return
        if severity >= INVALID_ALARM:
            self.bad |= bit
        else:
            self.bad &= ~bit
            self.values[index] = float(value)
        for i, rule in enumerate(self.asg.rules):
            if rule.calc is not None and rule.calc.inputs_used & bit:
                try:
                    r = rule.calc.evaluate(self.values, float(self.results[i]))
                except CalcError:
                    r = 0.0
                self.results[i] = 1 if 0.99 < r < 1.01 else 0

    def rights(self, level: int, user: str, host: str, acf: Acf) -> Rights:
        """``asComputePvt`` for one client."""
        host = host.lower()
        access = Access.NONE
        trap = False
        for i, rule in enumerate(self.asg.rules):
            if access == Access.WRITE:
                break
            if access >= rule.access or level > rule.level or rule.disabled:
                continue
            if rule.uags and not any(user in acf.uags[u] for u in rule.uags):
                continue
            if rule.hags and not any(host in acf.hags[h] for h in rule.hags):
                continue
            if rule.calc is not None and (self.bad & rule.calc.inputs_used or self.results[i] != 1):
                continue
            access, trap = rule.access, rule.trapwrite
        return Rights(access, trap)
