"""Named flags: site-wide booleans that ETL and retrieval consult (the AA's ``namedflags``).

A store URL can say ``etlIntoStoreIf=<flag>`` / ``etlOutofStoreIf=<flag>``, and the built-in
flags ``SKIP_<store>_FOR_ETL`` / ``SKIP_<store>_FOR_RETRIEVAL`` switch a store off for ETL or
retrieval. The AA keeps them in a Hazelcast map that a restart forgets; here the flags set
through ``setNamedFlag`` are stored in the PV registry, so they survive a restart (and, with
a PostgreSQL registry, a flag set on one appliance is seen by the others within a second).
The AA's optional properties file (``NamedFlags.readFromFile`` in ``archappl.properties``,
:data:`pvarchiver.settings.PROP_NAMED_FLAGS_FILE`) is read at every start, as the AA reads
it, and its values win over the stored ones for that run (they are not written to the
registry: the file stays the place where they are kept).

:meth:`NamedFlags.get` runs on the ETL worker thread for every stage of every PV, so it reads
a dict that is replaced, never changed in place: no lock on the read path, and a reader sees
either the old or the new set of flags.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from ..properties import PropertiesError, load_properties
from .registry import Registry, RegistryChange

log = logging.getLogger(__name__)


def parse_boolean(text: str | None) -> bool:
    """Java's ``Boolean.parseBoolean``: true only for "true" in any case; anything else
    (``yes``, ``1``, ``on``) is false, as the AA reads ``value=`` and the flags file."""
    return text is not None and text.lower() == "true"


def literal(name: str) -> bool | None:
    """The value of the literal flag names ``true`` / ``false`` (any case), else None: a
    store URL may say ``etlIntoStoreIf=false`` to switch ETL off without a flag."""
    low = name.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return None


def load_flags_file(path: Path) -> dict[str, bool]:
    """The flags of a Java properties file (``name=true``); a missing or unreadable file is
    logged and gives no flags, as in the AA (a bad file must not stop the archiver)."""
    if not path.is_file():
        log.error("named flags: %s is given but does not exist; no flags loaded from it", path)
        return {}
    try:
        props = load_properties(path)
    except PropertiesError as e:
        log.error("named flags: %s cannot be read (%s); no flags loaded from it", path, e)
        return {}
    flags = {k: parse_boolean(v.strip()) for k, v in props.items()}
    log.info("named flags: %d loaded from %s", len(flags), path)
    return flags


class NamedFlags:
    """The appliance's named flags; thread-safe (see the module docstring).

    ``registry`` None keeps them in memory only (tests, tools); ``loaded`` are the flags of
    the AA's flags file, applied over the stored ones.
    """

    def __init__(self, registry: Registry | None = None, loaded: Mapping[str, bool] = ()) -> None:
        self._registry = registry
        self._write_lock = threading.Lock()
        self._loaded = dict(loaded)
        stored = registry.named_flags() if registry is not None else {}
        self._values: dict[str, bool] = {**stored, **self._loaded}
        if registry is not None:
            # a shared registry: a flag set on another appliance applies here too
            registry.subscribe(self._registry_changed)

    def _registry_changed(self, change: RegistryChange) -> None:
        if change.table != "NamedFlags" or change.local or self._registry is None:
            return
        with self._write_lock:
            self._values = {**self._registry.named_flags(), **self._loaded}

    @classmethod
    def open(cls, registry: Registry, flags_file: Path | None) -> NamedFlags:
        """The registry's flags with those of ``flags_file`` (if any) over them."""
        loaded = load_flags_file(flags_file) if flags_file is not None else {}
        return cls(registry, loaded)

    def get(self, name: str) -> bool:
        """The AA's ``getNamedFlag``: ``true``/``false`` are literal values, an unknown
        flag is false."""
        lit = literal(name)
        if lit is not None:
            return lit
        return self._values.get(name, False)

    def set(self, name: str, value: bool) -> None:
        """Store the flag (in the registry first: a flag reported as set is on disk).
        Raises ValueError for an empty name or for ``true``/``false``, whose value cannot
        change; RegistryError (RegistryUnavailable: its database is unreachable), sqlite3 or
        OSError if the registry cannot be written (nothing changes then)."""
        if not name:
            raise ValueError("a named flag needs a name")
        if literal(name) is not None:
            raise ValueError(
                f"{name!r} is a literal flag name (always {literal(name)}) and cannot be set"
            )
        with self._write_lock:
            if self._registry is not None:
                self._registry.put_named_flag(name, value)
            self._values = {**self._values, name: bool(value)}

    def all(self) -> dict[str, bool]:
        """Every flag set or loaded, by name (getAllNamedFlags)."""
        return dict(self._values)
