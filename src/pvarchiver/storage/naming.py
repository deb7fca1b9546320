"""PV name -> file key, as the AA's ``ConvertPVNameToKey`` does it, and its portable form.

The AA replaces each ``siteNameSpaceSeparators`` match (default ``[\\:\\-]``) by ``/`` and
appends ``siteNameSpaceTerminator`` (default ``:``): ``EIOC:LI30:MP01:HEARTBEAT`` becomes
``EIOC/LI30/MP01/HEARTBEAT:`` and its hourly file ``EIOC/LI30/MP01/HEARTBEAT:2012_08_24_16.pb``.
The terminator is there so that ``X:CTRD_V`` never matches the files of ``X:CTRD_V_BOOK``:
it is a separator, so it cannot occur inside a name component.

Windows (NTFS, and FAT/exFAT) refuses ``:`` in file names, so AA file names cannot exist
there. The *portable* form maps every character Windows refuses to the Unicode private-use
code point U+F000 + c:

* ``"*:<>?|\\`` and the control characters, anywhere in a component;
* a trailing dot or space of a folder component (Windows strips them silently);
* the last letter of a reserved device name (``CON``, ``PRN``, ``AUX``, ``NUL``,
  ``COM0``-``COM9``, ``LPT0``-``LPT9``, with or without an extension) used as a component.

Why U+F000 + c: it is the mapping WSL and Cygwin apply to the same characters, so a Linux AA
store copied through either appears on NTFS with exactly our names, and the terminator ``:``
becomes U+F03A, a character no EPICS PV name contains (PV names are ASCII), which keeps the
terminator's guarantee. The mapping is reversible (:func:`unportable`): ``pvarchiver pb rekey``
moves stores between the two forms.

Everything here is pure: no file system access. Which form a store folder needs is found by
:mod:`pvarchiver.storage.probe`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

#: archappl.properties keys, as the AA spells them
PROP_SEPARATORS = "org.epics.archiverappliance.config.ConvertPVNameToKey.siteNameSpaceSeparators"
PROP_TERMINATOR = "org.epics.archiverappliance.config.ConvertPVNameToKey.siteNameSpaceTerminator"

AA_SEPARATORS = r"[\:\-]"
AA_TERMINATOR = ":"
#: the terminator as portable file names spell it (``:`` mapped)
PORTABLE_TERMINATOR = "\uf03a"

_PRIVATE_BASE = 0xF000
#: characters Windows refuses anywhere in a file name (``/`` never reaches a component)
WINDOWS_FORBIDDEN = frozenset('"*:<>?|\\') | frozenset(chr(c) for c in range(32))
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in range(10)]
    + [f"LPT{i}" for i in range(10)]
)
#: room kept in the last component for terminator, partition name and the longest extension
#: we write (``.pbappend``, post-processor caches such as ``.firstSample_86400``)
_FILE_NAME_RESERVE = 48
#: longest file-name component on NTFS (UTF-16 units) and ext4/xfs (bytes)
MAX_COMPONENT = 255


class UnmappableName(ValueError):
    """A PV name that cannot become a file key under this store's naming."""


def _mapped(c: str) -> str:
    return chr(_PRIVATE_BASE + ord(c))


def _portable_component(comp: str, last: bool) -> str:
    out = "".join(_mapped(c) if c in WINDOWS_FORBIDDEN else c for c in comp)
    if not last:
        # Windows drops trailing dots and spaces: ``A.`` and ``A`` would be one folder
        stripped = out.rstrip(". ")
        out = stripped + "".join(_mapped(c) for c in out[len(stripped) :])
    stem = out.split(".", 1)[0].rstrip(" ")
    if stem.upper() in _RESERVED:
        i = len(stem) - 1
        out = out[:i] + _mapped(out[i]) + out[i + 1 :]
    return out


def portable(key: str) -> str:
    """The portable spelling of a key or relative path (``/``-separated).

    The last component is taken to be a file name (its trailing characters are followed by a
    partition name and an extension), the others are folders.
    """
    parts = key.split("/")
    return "/".join(_portable_component(p, i == len(parts) - 1) for i, p in enumerate(parts))


def unportable(text: str) -> str:
    """Undo :func:`portable`: U+F000..U+F07F back to ASCII (PV names are ASCII)."""
    if not any("\uf000" <= c <= "\uf07f" for c in text):
        return text
    return "".join(chr(ord(c) - _PRIVATE_BASE) if "\uf000" <= c <= "\uf07f" else c for c in text)


def strip_protocol(pvname: str) -> str:
    """Drop a ``ca://`` or ``pva://`` prefix, which the AA ignores for storage."""
    for prefix in ("ca://", "pva://"):
        if pvname.startswith(prefix):
            return pvname[len(prefix) :]
    return pvname


@dataclass(frozen=True)
class KeyNaming:
    """How one store turns PV names into file keys.

    ``portable`` selects the Windows-safe spelling; ``case_insensitive`` records that the
    store's folder does not tell ``A`` from ``a`` (NTFS, APFS by default), so two PVs whose
    keys differ only in case would share files there.
    """

    separators: str = AA_SEPARATORS
    terminator: str = AA_TERMINATOR
    portable: bool = False
    case_insensitive: bool = False
    _sep: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.terminator) != 1 or self.terminator in "/\\\x00.":
            raise ValueError(
                f"the key terminator must be one character, not / \\ or '.': {self.terminator!r}"
            )
        try:
            sep = re.compile(self.separators) if self.separators else re.compile(r"(?!)")
        except re.error as e:
            raise ValueError(
                f"siteNameSpaceSeparators {self.separators!r} is not a regex: {e}"
            ) from None
        object.__setattr__(self, "_sep", sep)

    # ------------------------------------------------------------------ keys
    @property
    def file_terminator(self) -> str:
        """The terminator as it appears in this store's file names."""
        return (
            _mapped(self.terminator)
            if self.portable and self.terminator in WINDOWS_FORBIDDEN
            else self.terminator
        )

    def aa_key(self, pvname: str) -> str:
        """The key the AA computes (``/``-separated, terminator appended), checked to stay
        inside the store's folder."""
        name = strip_protocol(pvname)
        if not name:
            raise UnmappableName("empty PV name")
        bad = next((c for c in name if c in "/\\\x00" or ord(c) < 32), None)
        if bad is not None:
            raise UnmappableName(
                f"PV name {pvname!r} contains {bad!r}, which cannot be in a file name"
            )
        parts = self._sep.sub("/", name).split("/")
        # Empty components (``A::B``, a leading ``:``) are dropped, as the AA's path join
        # does; a key must never become an absolute path or climb out of the folder.
        folders = [p for p in parts[:-1] if p]
        if any(p in (".", "..") for p in folders) or parts[-1] in (".", ".."):
            raise UnmappableName(f"PV name {pvname!r} would map outside the store's folder")
        return "/".join([*folders, parts[-1] + self.terminator])

    def key(self, pvname: str) -> str:
        """The file key of a PV in this store: ``EIOC/LI30/MP01/HEARTBEAT:``."""
        key = self.aa_key(pvname)
        if self.portable:
            key = portable(key)
        parts = key.split("/")
        for i, p in enumerate(parts):
            room = MAX_COMPONENT - (_FILE_NAME_RESERVE if i == len(parts) - 1 else 0)
            if len(p.encode("utf-8")) > room:
                raise UnmappableName(
                    f"PV name {pvname!r}: the name component {p[:40]!r}... is too long for a "
                    f"file name ({len(p)} characters, at most {room})"
                )
        return key

    def match_key(self, key: str) -> str:
        """What two keys must differ in to be different files here (case folded where the
        folder ignores case)."""
        return key.casefold() if self.case_insensitive else key

    def describe(self) -> str:
        form = "portable (Windows) names" if self.portable else "AA names"
        case = ", case-insensitive folder" if self.case_insensitive else ""
        return f"{form}, terminator {self.file_terminator!r}{case}"


@dataclass(frozen=True)
class NamingSettings:
    """The site's key mapping settings and where each came from (for messages)."""

    separators: str = AA_SEPARATORS
    terminator: str | None = None  # None: the platform's default
    terminator_source: str = "default"

    @classmethod
    def from_properties(
        cls, props: Mapping[str, str], source: str = "archappl.properties"
    ) -> NamingSettings:
        sep = props.get(PROP_SEPARATORS, AA_SEPARATORS)
        term = props.get(PROP_TERMINATOR)
        if term is not None and len(term) != 1:
            raise ValueError(f"{PROP_TERMINATOR} in {source} must be one character, not {term!r}")
        return cls(
            sep, term, f"{source} siteNameSpaceTerminator" if term is not None else "default"
        )
