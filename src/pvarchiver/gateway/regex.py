"""pvlist pattern flavours: GNU regex (ca-gateway's default build) and PCRE, on Python ``re``.

ca-gateway compiles patterns with glibc's ``re_compile_pattern`` and never sets
``re_syntax_options``, so the syntax is ``RE_SYNTAX_EMACS`` (verified against glibc):

* ``\\(..\\)`` groups, ``\\|`` alternation, ``\\1``..``\\9`` back-references;
* ``*``, ``+``, ``?`` are operators *unescaped*; ``(``, ``)``, ``|``, ``{``, ``}`` are literal
  and ``\\{`` is a literal ``{`` (no intervals); ``[[:digit:]]`` is not a class;
* ``*``/``+``/``?`` at the start of the pattern (or of a group/alternative) are literal;
  ``^`` anchors only at such a start, ``$`` only at an end; elsewhere both are literal;
* backslash is literal inside ``[...]``; GNU operators ``\\w \\W \\s \\S \\b \\B \\< \\> \\` \\'``;
  any other ``\\c`` is the literal ``c``.

``FLAVOUR_BRE`` is POSIX basic syntax (GNU flavour of it: ``\\{m,n\\}`` intervals, ``\\+``/``\\?``
operators, literal ``+``/``?``, POSIX classes), offered for sites whose files were written for
it. ``FLAVOUR_PCRE`` hands the pattern to Python ``re`` unchanged (PCRE and Python agree on the
constructs pvlists use).

Matching rules differ per flavour and are exposed by :class:`Pattern`: GNU needs the POSIX
(longest) match anchored at 0 to cover the whole name, which is ``fullmatch``; PCRE takes the
*first* backtracking match anchored at 0 and accepts only if it ends at the end of the name
(``a|ab`` does not match ``ab``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FLAVOURS", "FLAVOUR_BRE", "FLAVOUR_GNU", "FLAVOUR_PCRE", "Pattern", "translate"]

FLAVOUR_GNU = "gnu"
FLAVOUR_BRE = "bre"
FLAVOUR_PCRE = "pcre"
FLAVOURS = (FLAVOUR_GNU, FLAVOUR_BRE, FLAVOUR_PCRE)

_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "0-9a-zA-Z", "upper": "A-Z", "lower": "a-z",
    "space": r" \t\n\r\f\v", "blank": r" \t",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "xdigit": "0-9A-Fa-f", "cntrl": r"\x00-\x1f\x7f", "print": r"\x20-\x7e", "graph": r"\x21-\x7e",
}  # fmt: skip
_GNU_OPS = {"w": r"\w", "W": r"\W", "s": r"\s", "S": r"\S", "b": r"\b", "B": r"\B",
            "<": r"\b(?=\w)", ">": r"\b(?<=\w)", "`": r"\A", "'": r"\Z"}  # fmt: skip


class PatternError(ValueError):
    """A pattern the regex library would refuse to compile."""


def _bracket(pat: str, i: int, classes: bool) -> tuple[str, int]:
    """Translate ``[...]`` starting at ``pat[i] == '['``; backslash is an ordinary member."""
    j = i + 1
    negate = j < len(pat) and pat[j] == "^"
    if negate:
        j += 1
    items: list[str] = []
    first = True
    while True:
        if j >= len(pat):
            raise PatternError("Unmatched [ or [^")
        c = pat[j]
        if c == "]" and not first:
            j += 1
            break
        first = False
        if classes and pat.startswith("[:", j):
            end = pat.find(":]", j + 2)
            name = pat[j + 2 : end] if end >= 0 else ""
            if name not in _POSIX_CLASSES:
                raise PatternError("Invalid character class name")
            items.append(_POSIX_CLASSES[name])
            j = end + 2
            continue
        if j + 2 < len(pat) and pat[j + 1] == "-" and pat[j + 2] != "]":
            lo, hi = c, pat[j + 2]
            if ord(lo) <= ord(hi):
                items.append(f"{re.escape(lo)}-{re.escape(hi)}")
            elif classes:  # POSIX syntax sets RE_NO_EMPTY_RANGES; EMACS syntax allows them
                raise PatternError("Invalid range end")
            j += 3
            continue
        items.append(re.escape(c) if c not in "abcdefghijklmnopqrstuvwxyz0123456789" else c)
        j += 1
    if not items:  # only empty ranges: matches nothing (or anything, negated)
        return (r"[\s\S]" if negate else "(?!)"), j
    return "[" + ("^" if negate else "") + "".join(items) + "]", j


def translate(pattern: str, flavour: str = FLAVOUR_GNU) -> str:
    """Return a Python ``re`` pattern equivalent to a GNU (EMACS syntax) or POSIX-basic one."""
    if flavour == FLAVOUR_PCRE:
        return pattern
    posix = flavour == FLAVOUR_BRE
    out: list[str] = []
    atom_start: list[int | None] = [None]  # output index where the last repeatable atom begins
    last_was_repeat = [False]
    group_starts: list[int] = []
    i = 0
    n = len(pattern)
    at_start = True  # start of pattern, of a group, or of an alternative

    def atom(text: str) -> None:
        atom_start[0] = len(out)
        out.append(text)
        last_was_repeat[0] = False

    def repeat(op: str) -> None:
        start = atom_start[0]
        if start is None:
            atom(re.escape(op[0]))
            return
        if last_was_repeat[0]:
            # GNU stacks repetitions ("a**", "a+?"); Python would read "+?" as lazy: group it
            inner = "".join(out[start:])
            del out[start:]
            out.append(f"(?:{inner})")
        out.append(op)
        last_was_repeat[0] = True

    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise PatternError("Trailing backslash")
            d = pattern[i + 1]
            i += 2
            if d == "(":
                group_starts.append(len(out))
                out.append("(")
                atom_start[0] = None
                at_start = True
                continue
            if d == ")":
                if not group_starts:
                    raise PatternError("Unmatched ) or \\)")
                start = group_starts.pop()
                out.append(")")
                atom_start[0] = start
                last_was_repeat[0] = False
                at_start = False
                continue
            if d == "|":
                out.append("|")
                atom_start[0] = None
                at_start = True
                continue
            if d.isdigit() and d != "0":
                atom(f"(?:\\{d})")
            elif posix and d == "{":
                close = pattern.find("\\}", i)
                body = pattern[i:close] if close >= 0 else ""
                if close < 0 or not re.fullmatch(r"\d*(,\d*)?", body) or body in ("", ","):
                    raise PatternError("Invalid preceding regular expression / interval")
                i = close + 2
                if atom_start[0] is None:
                    raise PatternError("Invalid preceding regular expression")
                repeat("{" + body + "}")
            elif posix and d in "+?":
                if atom_start[0] is None:
                    atom(re.escape(d))
                else:
                    repeat(d)
            elif d in _GNU_OPS:
                if d in "wWsS":
                    atom(_GNU_OPS[d])
                else:
                    out.append(_GNU_OPS[d])
                    atom_start[0] = None
            else:
                atom(re.escape(d))
            at_start = False
            continue
        i += 1
        if c == "[":
            text, i = _bracket(pattern, i - 1, classes=posix)
            atom(text)
        elif c == "*" or (c in "+?" and not posix):
            if at_start or atom_start[0] is None:
                atom(re.escape(c))
            else:
                repeat(c)
        elif c == "^":
            if at_start and (not out or out[-1] != "^"):
                out.append("^")
                atom_start[0] = None
                at_start = True  # "^*" keeps the star literal
                continue
            atom(r"\^")
        elif c == "$":
            rest = pattern[i:]
            if not rest or rest.startswith("\\)") or rest.startswith("\\|"):
                out.append("$")
                atom_start[0] = None
            else:
                atom(r"\$")
        elif c == ".":
            atom(".")
        else:
            atom(re.escape(c))
        at_start = False
    if group_starts:
        raise PatternError("Unmatched ( or \\(")
    return "".join(out)


@dataclass(frozen=True)
class Pattern:
    """A compiled pvlist pattern with its flavour's match rule and optional ``!`` negation."""

    text: str
    flavour: str
    negated: bool
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, text: str, flavour: str = FLAVOUR_GNU, negation: bool = True) -> Pattern:
        """Compile ``text``; a leading ``!`` negates when ``negation`` (ISIS build) is on."""
        if flavour not in FLAVOURS:
            raise PatternError(f"unknown regex flavour {flavour!r} (use one of {FLAVOURS})")
        negated = negation and text.startswith("!")
        body = text[1:] if negated else text
        try:
            rx = re.compile(translate(body, flavour), re.ASCII if flavour != FLAVOUR_PCRE else 0)
        except re.error as e:
            raise PatternError(str(e)) from None
        return cls(text, flavour, negated, rx)

    def match(self, name: str) -> re.Match[str] | bool | None:
        """The match object when the name matches (``True`` for a negated match), else None."""
        if self.flavour == FLAVOUR_PCRE:
            m = self.regex.match(name)
            hit: re.Match[str] | None = m if m is not None and m.end() == len(name) else None
        else:
            hit = self.regex.fullmatch(name)
        if self.negated:
            return True if hit is None else None
        return hit
