"""PlainPB line escaping.

A PlainPB file is newline-framed, so every serialized message has its 0x1B, 0x0A and 0x0D
bytes replaced by two-byte escape sequences before it is written. The escape byte must be
replaced first, otherwise the escape sequences introduced for LF/CR would be escaped again.
"""

from __future__ import annotations

ESC = 0x1B
LF = 0x0A
CR = 0x0D

# escape code -> original byte; any other code maps to itself (the AA is lenient there)
_UNESCAPE_CODE = {1: ESC, 2: LF, 3: CR}


class EscapeError(ValueError):
    """Raised for a line that cannot be unescaped (a lone ESC at its very end)."""


def escape(raw: bytes) -> bytes:
    """Escape one serialized message so it contains no LF, CR or bare ESC."""
    if ESC in raw:
        raw = raw.replace(b"\x1b", b"\x1b\x01")
    if LF in raw:
        raw = raw.replace(b"\n", b"\x1b\x02")
    if CR in raw:
        raw = raw.replace(b"\r", b"\x1b\x03")
    return raw


def unescape(line: bytes) -> bytes:
    """Undo :func:`escape` for one line (without its terminating LF).

    Unknown escape codes yield the code byte itself, as the AA's LineEscaper does; a trailing
    lone ESC cannot be decoded and raises :class:`EscapeError`.
    """
    i = line.find(ESC)
    if i < 0:
        return bytes(line)
    out = bytearray()
    start = 0
    n = len(line)
    while i >= 0:
        if i + 1 >= n:
            raise EscapeError("line ends with a lone escape byte (0x1B)")
        out += line[start:i]
        code = line[i + 1]
        out.append(_UNESCAPE_CODE.get(code, code))
        start = i + 2
        i = line.find(ESC, start)
    out += line[start:]
    return bytes(out)
