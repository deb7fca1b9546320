"""Which stores hold each PV's data: the PV's ``dataStores``, as store objects.

The AA decides a PV's stores once, in ``policies.py``, and copies the URLs verbatim (macros
unexpanded) into its typeinfo; the engine writes to the first, ETL moves data along the
list, retrieval reads it. :class:`StoreChains` is that decision made usable by storage's
clients without them knowing where it is kept: it asks a lookup (the PV registry, wired in
by the appliance) for a PV's URLs each time, so a changed typeinfo takes effect on the next
write cycle, ETL pass or request, without a pause/resume or restart.

Stores are opened once per distinct URL (after macro expansion) and shared by every PV whose
chain names that URL; stores of different URLs on one folder (the AA's default policies have
``MTS`` with ``hold=2`` and with ``hold=3``) share their per-PV locks, so that two ways to
reach one file never write it at once.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ..pb import Sample
from .naming import NamingSettings
from .partitions import Granularity
from .probe import StoreFolderError
from .store import PartitionFile, PlainPBStore, StoreError, open_store
from .url import StoreConfig, StoreURLError, parse_store_url

if TYPE_CHECKING:  # pyarrow is imported only when a parquet:// store is opened
    from .parquet_store import ParquetStore

log = logging.getLogger(__name__)


class ChainError(StoreError):
    """A list of store URLs that cannot be a PV's chain (the message says why)."""


class BlackholeStore:
    """``blackhole://``: the AA's store that keeps nothing.

    As the last store of a chain it is the retention rule: ETL into it deletes the data the
    store before it no longer holds. As a first store (allowed, as in the AA) the engine's
    samples are discarded. It has no files, so readers find nothing in it.
    """

    is_blackhole = True

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.name = config.name
        self.granularity = Granularity.PARTITION_YEAR
        self.root: Path | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"BlackholeStore({self.name})"

    def lock(self, pvname: str) -> threading.RLock:
        return self._lock

    def files_for_pv(self, pvname: str) -> list[PartitionFile]:
        return []

    def files_for_pvs(self, pvnames: Iterable[str]) -> dict[str, list[PartitionFile]]:
        return {pv: [] for pv in pvnames}

    def pv_names(self) -> list[str]:
        return []

    def last_known_timestamp(self, pvname: str) -> None:
        return None

    def prime_last_known(self, pvnames: Iterable[str]) -> None:
        return None

    def forget(self, pvname: str) -> None:
        return None

    def read(self, pvname: str, start: object, end: object) -> Iterator[Sample]:
        return iter(())


if TYPE_CHECKING:
    #: a store that keeps data (an ETL source, a retrieval source)
    DataStore: TypeAlias = PlainPBStore | ParquetStore
    Store: TypeAlias = PlainPBStore | ParquetStore | BlackholeStore
else:  # at run time only annotations use these; ParquetStore's module loads pyarrow
    DataStore = PlainPBStore
    Store = PlainPBStore | BlackholeStore


def open_data_store(
    config: StoreConfig, naming: NamingSettings | None = None
) -> PlainPBStore | ParquetStore:
    """A ``pb://`` or ``parquet://`` store, its folder probed (see :func:`.store.open_store`)."""
    if config.scheme == "parquet":
        try:
            from .parquet_store import open_parquet_store
        except ImportError as e:  # the optional extra is not installed
            raise ChainError(
                f"store {config.name}: parquet:// stores need pyarrow ({e}); install it with "
                "pip install 'pvarchiver[parquet]'"
            ) from None
        return open_parquet_store(config, naming)
    return open_store(config, naming)


def keeps_data(store: object) -> bool:
    """Whether ``store`` keeps what it is given (``pb://``, ``parquet://``), as opposed to a
    blackhole: what code that reads, moves, copies or deletes a PV's files must ask, instead
    of testing for one store class (a ``parquet://`` store holds data as much as a
    ``pb://`` one)."""
    return not getattr(store, "is_blackhole", True)


#: why the engine never writes Parquet (docs/parquet.md has the measurements)
PARQUET_FIRST_REASON = (
    "cannot be a PV's first store: a Parquet file is rewritten whole on every append, and "
    "the engine appends every few seconds; use a pb:// first store and parquet:// after it"
)


#: why a Parquet store takes no ``pp=`` (docs/parquet.md)
PARQUET_PP_REASON = (
    "cannot keep pp= caches: they are PlainPB files beside the data files, and a parquet:// "
    "store is read by row-group statistics instead; remove pp= from its URL (requests with "
    "a post-processor compute it from the raw data)"
)


def check_chain(configs: Sequence[StoreConfig]) -> None:
    """Raise :class:`ChainError` unless ``configs`` can be one PV's chain: at least one store,
    a blackhole only at the end, no two stores of one name (names are how ``changeStore``,
    ``consolidateDataForPV`` and the named flags address a PV's stores)."""
    if not configs:
        raise ChainError("a PV needs at least one data store")
    if configs[0].scheme == "parquet":
        raise ChainError(f"parquet store {configs[0].name} {PARQUET_FIRST_REASON}")
    for c in configs:
        if c.scheme == "parquet" and c.post_processors:
            raise ChainError(f"parquet store {c.name} {PARQUET_PP_REASON}")
    for c in configs[:-1]:
        if c.is_blackhole:
            raise ChainError(
                f"blackhole store {c.name} must be the last of a PV's data stores "
                "(it keeps nothing, so it cannot be an ETL source)"
            )
    seen: set[str] = set()
    for c in configs:
        if c.name in seen:
            raise ChainError(f"two data stores are named {c.name}")
        seen.add(c.name)


@dataclass(frozen=True)
class StageSpec:
    """One ETL stage: ``source`` -> ``dest`` for ``pvs`` (None: every PV with files in the
    source's folder, except ``exclude``, the PVs whose own chains go elsewhere)."""

    source: PlainPBStore | ParquetStore
    dest: PlainPBStore | ParquetStore | BlackholeStore
    pvs: tuple[str, ...] | None
    exclude: frozenset[str] = field(default_factory=frozenset)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source.config.to_url(), self.dest.config.to_url())


UrlLookup = Callable[[str], Sequence[str] | None]
ChainListing = Callable[[], Iterable[tuple[str, Sequence[str]]]]


class StoreChains:
    """Every PV's chain of stores; the default chain for PVs the lookup does not know."""

    def __init__(
        self,
        default: Sequence[Store],
        macros: Mapping[str, str] | None = None,
        naming: NamingSettings | None = None,
    ) -> None:
        if not default:
            raise ChainError("the default chain needs at least one store")
        if default[0].config.scheme == "parquet":
            raise ChainError(f"parquet store {default[0].name} {PARQUET_FIRST_REASON}")
        self.default: tuple[Store, ...] = tuple(default)
        self.macros = dict(macros or {})
        self.naming = naming
        self._by_url: dict[str, Store] = {}
        self._by_folder: dict[str, PlainPBStore] = {}
        self._pq_by_folder: dict[str, ParquetStore] = {}
        self._chains: dict[tuple[str, ...], tuple[Store, ...]] = {}
        self._guard = threading.Lock()
        self._urls_of: UrlLookup = lambda _pv: None
        self._listing: ChainListing = lambda: ()
        self._bad: set[tuple[str, ...]] = set()
        for st in self.default:
            self._remember(st)

    @classmethod
    def fixed(cls, stores: Sequence[Store]) -> StoreChains:
        """One chain for every PV (tools, tests, benchmarks)."""
        return cls(stores)

    def bind(self, urls_of: UrlLookup, listing: ChainListing) -> None:
        """Where PVs' URLs come from: ``urls_of(pv)`` (None or empty: the default chain) and
        ``listing()``, every PV with its URLs (for ETL's stages)."""
        self._urls_of = urls_of
        self._listing = listing

    # ------------------------------------------------------------------ opening
    def parse(self, url: str) -> StoreConfig:
        """One URL as this appliance reads it (macros from :attr:`macros`)."""
        try:
            return parse_store_url(url, self.macros)
        except StoreURLError as e:
            raise ChainError(str(e)) from None

    def _remember(self, st: Store) -> None:
        self._by_url[st.config.to_url()] = st
        if isinstance(st, PlainPBStore):
            self._by_folder.setdefault(str(st.root), st)
        elif not st.is_blackhole:
            self._pq_by_folder.setdefault(str(st.root), st)  # type: ignore[arg-type]

    def open(self, url: str) -> Store:
        """The store of ``url``, opened (and its folder probed) the first time it is named."""
        cfg = self.parse(url)
        key = cfg.to_url()
        st = self._by_url.get(key)
        if st is not None:
            return st
        with self._guard:
            st = self._by_url.get(key)
            if st is not None:
                return st
            if cfg.is_blackhole:
                st = BlackholeStore(cfg)
            else:
                try:
                    st = open_data_store(cfg, self.naming)
                except (StoreFolderError, OSError) as e:
                    raise ChainError(f"store {cfg.name}: {e}") from None
                folders = self._by_folder if isinstance(st, PlainPBStore) else self._pq_by_folder
                twin = folders.get(str(st.root))
                if twin is not None:
                    st.locks = twin.locks  # one folder, one lock per PV
            self._remember(st)
            return st

    def resolve(self, urls: Sequence[str]) -> tuple[Store, ...]:
        """The stores of a list of URLs, checked as a chain (:func:`check_chain`)."""
        key = tuple(urls)
        got = self._chains.get(key)
        if got is not None:
            return got
        configs = [self.parse(u) for u in key]
        check_chain(configs)
        got = tuple(self.open(u) for u in key)
        self._chains[key] = got
        return got

    def validate(self, urls: Sequence[str]) -> None:
        """Raise :class:`ChainError` (with the reason) unless ``urls`` can be a chain; opens
        the stores, so a folder that cannot be used is found here, before anything moves."""
        self.resolve(urls)

    # ------------------------------------------------------------------ lookups
    def chain(self, pv: str) -> tuple[Store, ...]:
        """``pv``'s stores, first (the engine's) to last; :class:`ChainError` if its
        typeinfo names stores that cannot be used."""
        urls = self._urls_of(pv)
        if not urls:
            return self.default
        return self.resolve(urls)

    def readable(self, pv: str) -> tuple[Store, ...]:
        """The chain to read ``pv`` from. A broken chain (a store URL this appliance cannot
        open) falls back to the default stores and is logged once: reading what is there
        beats refusing to read at all."""
        try:
            return self.chain(pv)
        except ChainError as e:
            key = tuple(self._urls_of(pv) or ())
            if key not in self._bad:
                self._bad.add(key)
                log.error("%s: %s; reading the default stores", pv, e)
            return self.default

    def first(self, pv: str) -> Store:
        return self.chain(pv)[0]

    def stores(self) -> list[DataStore]:
        """One store per folder and format in use (the first opened of each): what
        folder-wide work (space reports, health, a PV's files everywhere) walks, each folder
        once; ``pb://`` folders first, then ``parquet://`` ones."""
        return [*self._by_folder.values(), *self._pq_by_folder.values()]

    def named(self, pv: str, name: str) -> Store | None:
        """The store of ``pv``'s chain called ``name``."""
        for st in self.chain(pv):
            if st.name == name:
                return st
        return None

    # ------------------------------------------------------------------ ETL
    def stages(self) -> list[StageSpec]:
        """The ETL stages all PVs' chains need now.

        Each adjacent pair of a chain is a stage. The default chain's stages walk their
        source folders (so data of PVs no typeinfo names, such as files copied from another
        appliance, moves on as before) minus the PVs whose chains do not have that stage;
        other stages name their PVs.
        """
        default_pairs = list(itertools.pairwise(self.default))
        excluded: dict[int, set[str]] = {i: set() for i in range(len(default_pairs))}
        named: dict[tuple[int, int], tuple[DataStore, Store, list[str]]] = {}
        for pv, urls in self._listing():
            if not urls:
                continue
            try:
                chain = self.resolve(urls)
            except ChainError as e:
                log.error("ETL: %s is not moved: %s", pv, e)
                chain = ()
            if chain == self.default:
                continue
            pairs = list(itertools.pairwise(chain))
            for i, dp in enumerate(default_pairs):
                if not any(a is dp[0] and b is dp[1] for a, b in pairs):
                    excluded[i].add(pv)
            for a, b in pairs:
                if any(a is x and b is y for x, y in default_pairs):
                    continue
                if a.is_blackhole:
                    continue
                named.setdefault((id(a), id(b)), (a, b, []))[2].append(pv)
        out = [
            StageSpec(a, b, None, frozenset(excluded[i]))
            for i, (a, b) in enumerate(default_pairs)
            if not a.is_blackhole
        ]
        out += [StageSpec(a, b, tuple(sorted(pvs))) for a, b, pvs in named.values()]
        return out


@contextlib.contextmanager
def locked_chain(chain: Sequence[Store], pv: str) -> Iterator[None]:
    """Hold ``pv``'s lock in every store of ``chain``, in chain order (the order ETL takes
    them), so that no ETL step or write of the PV runs meanwhile."""
    with contextlib.ExitStack() as stack:
        for st in chain:
            stack.enter_context(st.lock(pv))
        yield
