"""The AA's ``archappl.properties``: a Java properties file, read as Java reads it.

Sites keep their AA settings in this file (the key mapping of store file names among them),
chosen by ``ARCHAPPL_PROPERTIES_FILENAME``. pvarchiver reads the same file so that a site's
settings carry over unchanged. The parser follows ``java.util.Properties.load``: ``#`` and
``!`` comments, ``=``, ``:`` or white space between key and value, backslash line
continuations and escapes (``\\t``, ``\\n``, ``\\uXXXX``, ``\\\\``; any other escaped
character stands for itself, which is how ``[\\\\:\\\\-]`` becomes the regex ``[\\:\\-]``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_PROPERTIES_FILE = "ARCHAPPL_PROPERTIES_FILENAME"

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


class PropertiesError(ValueError):
    """An archappl.properties file that cannot be read."""


def _logical_lines(text: str) -> list[str]:
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f")
        if not pending and (not line or line[0] in "#!"):
            continue
        # an odd number of trailing backslashes continues the line
        n = len(line) - len(line.rstrip("\\"))
        if n % 2 == 1:
            pending += line[:-1]
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            code = text[i + 2 : i + 6]
            try:
                out.append(chr(int(code, 16)))
            except ValueError:
                raise PropertiesError(f"malformed \\u escape: \\u{code}") from None
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _split(line: str) -> tuple[str, str]:
    """Key and value: the key ends at the first unescaped ``=``, ``:`` or white space; one
    ``=`` or ``:`` (with white space around it) separates it from the value."""
    i = 0
    while i < len(line) and line[i] not in "=: \t\f":
        i += 2 if line[i] == "\\" else 1
    i = min(i, len(line))
    j = i
    while j < len(line) and line[j] in " \t\f":
        j += 1
    if j < len(line) and line[j] in "=:":
        j += 1
    while j < len(line) and line[j] in " \t\f":
        j += 1
    return _unescape(line[:i]), _unescape(line[j:])


def parse_properties(text: str) -> dict[str, str]:
    """Key/value pairs of a properties file's text (later keys win, as in Java)."""
    props: dict[str, str] = {}
    for line in _logical_lines(text):
        key, value = _split(line)
        props[key] = value
    return props


def load_properties(path: Path) -> dict[str, str]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PropertiesError(f"cannot read {path}: {e.strerror or e}") from None
    # Java 9+ reads properties files as UTF-8, falling back to ISO-8859-1
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_properties(text)


def archappl_properties(env: Mapping[str, str] | None = None) -> tuple[dict[str, str], str]:
    """The site's properties and where they came from (``""``: none, the AA's defaults).

    The file named by ``ARCHAPPL_PROPERTIES_FILENAME``; a name that does not exist is an
    error (a typo must not silently give the defaults). Without the variable, no file.
    """
    env = os.environ if env is None else env
    name = env.get(ENV_PROPERTIES_FILE, "").strip()
    if not name:
        return {}, ""
    path = Path(name)
    if not path.is_file():
        raise PropertiesError(f"{ENV_PROPERTIES_FILE}={name}: no such file")
    return load_properties(path), str(path)
