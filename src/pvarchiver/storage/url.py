"""Store URLs: ``pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}&...``.

Parsed into a :class:`StoreConfig`; ``${VAR}`` macros are expanded from the variables the
caller passes (the CLI passes the process environment) and left as they are (with a warning)
when undefined, like the AA's StoragePluginURLParser. Nothing here reads ``os.environ``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

from .partitions import Granularity

log = logging.getLogger(__name__)

_MACRO = re.compile(r"\$\{([^}]*)\}")

#: The AA's default stores (policies.py), in ETL order.
DEFAULT_STORE_URLS = (
    "pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_HOUR&consolidateOnShutdown=true",
    "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_DAY&hold=2&gather=1",
    "pb://localhost?name=LTS&rootFolder=${ARCHAPPL_LONG_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_YEAR",
)

#: the variables naming the default stores' folders, and each one's folder under the root
FOLDER_VARIABLES = {
    "ARCHAPPL_SHORT_TERM_FOLDER": "sts",
    "ARCHAPPL_MEDIUM_TERM_FOLDER": "mts",
    "ARCHAPPL_LONG_TERM_FOLDER": "lts",
}


class StoreURLError(ValueError):
    """A store URL that cannot be used."""


def expand_macros(text: str, env: Mapping[str, str] | None = None) -> str:
    """``${VAR}`` replaced from ``env`` (None: no variables)."""
    env = {} if env is None else env

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in env:
            return env[name]
        log.error("store URL macro ${%s} is not defined; left as is", name)
        return m.group(0)

    return _MACRO.sub(repl, text)


def _bool(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes")


@dataclass
class StoreConfig:
    """One store of a PV's data stores list."""

    name: str
    root_folder: Path
    granularity: Granularity
    hold: int = 0
    gather: int = 0
    consolidate_on_shutdown: bool = False
    scheme: str = "pb"
    post_processors: list[str] = field(default_factory=list)
    reduce_data: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    url: str = ""

    @property
    def is_blackhole(self) -> bool:
        return self.scheme == "blackhole"

    def to_url(self) -> str:
        """The store URL with the (expanded) root folder, in the AA's key spelling."""
        if self.is_blackhole:
            return f"blackhole://localhost?name={quote(self.name, safe='/:${}_.-')}"
        q = [
            ("name", self.name),
            ("rootFolder", str(self.root_folder)),
            ("partitionGranularity", self.granularity.name),
        ]
        if self.hold:
            q.append(("hold", str(self.hold)))
        if self.gather:
            q.append(("gather", str(self.gather)))
        if self.consolidate_on_shutdown:
            q.append(("consolidateOnShutdown", "true"))
        q += [("pp", p) for p in self.post_processors]
        if self.reduce_data:
            q.append(("reducedata", self.reduce_data))
        q += list(self.extra.items())
        return f"{self.scheme}://localhost?" + "&".join(
            f"{k}={quote(v, safe='/:${}_.-')}" for k, v in q
        )


#: the store schemes this appliance can use
SCHEMES = ("pb", "blackhole", "parquet")

#: ``compress=`` of ``parquet://`` (parquet-java's codec names, case-sensitive as in the AA)
PARQUET_COMPRESS = ("UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "LZ4_RAW", "BROTLI")


def _check_parquet_keys(name: str, extra: Mapping[str, str]) -> None:
    """``compress`` and ``zstdLevel`` of a ``parquet://`` store, refused when unusable (the
    AA fails the store's initialisation on an unknown codec)."""
    codec = extra.get("compress", "UNCOMPRESSED")
    if codec not in PARQUET_COMPRESS:
        raise StoreURLError(
            f"store {name}: compress={codec!r} is not one of {', '.join(PARQUET_COMPRESS)}"
        )
    level = extra.get("zstdLevel")
    if level is not None:
        try:
            n = int(level)
        except ValueError:
            raise StoreURLError(f"store {name}: zstdLevel={level!r} is not an integer") from None
        if not 1 <= n <= 22:
            raise StoreURLError(f"store {name}: zstdLevel={n} is not in 1..22")


def parse_store_url(url: str, env: Mapping[str, str] | None = None) -> StoreConfig:
    """Parse a ``pb://``, ``parquet://`` or ``blackhole://`` store URL; other schemes are
    refused with :class:`StoreURLError`. ``env`` holds the variables of ``${VAR}`` macros
    (None: none)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise StoreURLError(
            f"unsupported store scheme {parts.scheme!r} in {url!r} "
            "(supported: pb://, parquet://, blackhole://)"
        )
    params: dict[str, list[str]] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        params.setdefault(k, []).append(v)
    if parts.scheme == "blackhole":
        # the AA's BlackholeStoragePlugin reads only name= (default "blackhole")
        names = params.get("name") or ["blackhole"]
        return StoreConfig(
            name=names[-1] or "blackhole",
            root_folder=Path(),
            granularity=Granularity.PARTITION_YEAR,
            scheme="blackhole",
            url=url,
        )

    def one(key: str, default: str | None = None) -> str | None:
        vals = params.pop(key, None)
        return vals[-1] if vals else default

    name = one("name")
    root = one("rootFolder")
    if not name:
        raise StoreURLError(f"store URL {url!r} has no name")
    if not root:
        raise StoreURLError(f"store URL {url!r} has no rootFolder")
    root = expand_macros(root, env)
    if "${" in root:
        raise StoreURLError(f"rootFolder of store {name} has an undefined macro: {root}")
    try:
        gran = Granularity.parse(one("partitionGranularity", "PARTITION_YEAR") or "")
        hold = int(one("hold", "0") or 0)
        gather = int(one("gather", "0") or 0)
    except ValueError as e:
        raise StoreURLError(f"store {name}: {e}") from None
    if hold < 0 or gather < 0:
        raise StoreURLError(f"store {name}: hold and gather must not be negative")
    consolidate = _bool(one("consolidateOnShutdown", "false") or "false")
    pps = params.pop("pp", [])
    reduce_data = one("reducedata")
    extra = {k: v[-1] for k, v in params.items()}
    if parts.scheme == "parquet":
        _check_parquet_keys(name, extra)
    return StoreConfig(
        name=name,
        root_folder=Path(root),
        granularity=gran,
        hold=hold,
        gather=gather,
        consolidate_on_shutdown=consolidate,
        post_processors=pps,
        reduce_data=reduce_data,
        extra=extra,
        scheme=parts.scheme,
        url=url,
    )


def default_store_urls(storage_root: Path, folders: Mapping[str, str] | None = None) -> list[str]:
    """The AA's default STS/MTS/LTS under one storage root, macros already resolved;
    ``folders`` may name another folder for any of them (``ARCHAPPL_SHORT_TERM_FOLDER``...)."""
    env = {k: str(storage_root / sub) for k, sub in FOLDER_VARIABLES.items()}
    env.update({k: v for k, v in (folders or {}).items() if k in FOLDER_VARIABLES})
    return [expand_macros(u, env) for u in DEFAULT_STORE_URLS]
