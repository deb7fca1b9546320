"""Retrieval as a service object: everything the HTTP layer needs, with no HTTP in it.

Errors are :class:`RetrievalError` with the HTTP status the AA uses, raised *before* a response
starts streaming, so a client never receives a 200 followed by a broken body for bad input.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import groupby

import numpy as np

from .. import __version__
from ..pb import PayloadInfo, PayloadType, year_of
from ..storage.chains import DataStore, StoreChains
from ..storage.columns import block_from_samples
from ..storage.pbfile import PBFile, PBFileError
from ..storage.store import PlainPBStore, StoreError
from .model import Chunk, PVStream, SampleBlock
from .names import normalize_pv_name
from .sources import LiveSource, merged_chunks
from .times import Instant

PING_PV = "ArchApplPingPV"

MetadataProvider = Callable[[str], dict[str, str]]


class RetrievalError(Exception):
    """A request that cannot be answered; ``status`` is the HTTP status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def glob_to_regex(glob: str) -> str:
    """The AA's PV glob (``*`` and ``?``) as a regex."""
    return fnmatch.translate(glob)


class Retrieval:
    """Reads each PV from its chain of stores (newest first: STS, MTS, LTS, as its typeinfo
    lists them) and the engine buffer."""

    def __init__(
        self,
        stores: Sequence[PlainPBStore],
        live: LiveSource | None = None,
        metadata: MetadataProvider | None = None,
        resolve_alias: Callable[[str], str] | None = None,
        chains: StoreChains | None = None,
        flags: Callable[[str], bool] | None = None,
    ) -> None:
        self.stores = list(stores)
        self.chains = chains or StoreChains.fixed(self.stores)
        #: named flags: ``SKIP_<store>_FOR_RETRIEVAL`` leaves that store out of every read
        self.flags = flags or (lambda _name: False)
        self.live = live
        self.metadata = metadata or (lambda pv: {})
        self.resolve_alias = resolve_alias or (lambda pv: pv)
        self._names_cache: tuple[float, list[str]] | None = None
        self._names_lock = threading.Lock()

    # ------------------------------------------------------------------ names
    def resolve(self, requested: str) -> str:
        if not requested or not requested.strip():
            raise RetrievalError(400, "PV name is null.")
        return self.resolve_alias(normalize_pv_name(requested))

    def stores_of(self, pv: str) -> list[DataStore]:
        """The stores to read ``pv`` from: its chain, then any other folder in use that holds
        files of it (left by a changeStore that a crash interrupted, or by a chain changed
        since: the data stays visible), without blackholes and the stores a
        ``SKIP_<name>_FOR_RETRIEVAL`` flag leaves out."""
        chain = [st for st in self.chains.readable(pv) if not st.is_blackhole]
        # a folder is one store per format (pb:// and parquet:// files may share one)
        folders = {(type(st).__name__, str(st.root)) for st in chain}
        extra = [
            st
            for st in self.chains.stores()
            if (type(st).__name__, str(st.root)) not in folders and st.files_for_pv(pv)
        ]
        return [st for st in chain + extra if not self.flags(f"SKIP_{st.name}_FOR_RETRIEVAL")]

    def stored_type(self, pv: str) -> PayloadType | None:
        """Type of the newest file of the PV in any store, None if the PV has no data."""
        for store in self.stores_of(pv):
            # (a name that cannot be a file name simply has no files)
            for pf in reversed(store.files_for_pv(pv)):
                if not isinstance(store, PlainPBStore):  # parquet://: the footer says
                    with contextlib.suppress(StoreError):
                        info = store.file_info(pf.path)
                        if info.pvname == pv:
                            return info.type
                    continue
                try:
                    with PBFile.open(pf.path) as f:
                        if f.header.pvname == pv:
                            return f.header.type
                except (PBFileError, OSError):
                    continue
        return None

    def pv_type(self, pv: str) -> PayloadType | None:
        """Type from the stores, or from the engine for a PV with nothing written yet."""
        ptype = self.stored_type(pv)
        if ptype is None and self.live is not None:
            ptype = self.live.type_of(pv)
        return ptype

    def all_pv_names(self, max_age: float = 10.0) -> list[str]:
        """Every PV with data in some store (cached briefly: it walks the folders)."""
        now = time.monotonic()
        if self._names_cache and now - self._names_cache[0] < max_age:
            return self._names_cache[1]
        with self._names_lock:  # one walk of the folders at a time, others wait for it
            if self._names_cache and time.monotonic() - self._names_cache[0] < max_age:
                return self._names_cache[1]
            return self._walk_names()

    def _walk_names(self) -> list[str]:
        now = time.monotonic()
        names: set[str] = set()
        for store in self.chains.stores():
            names.update(store.pv_names())
        if self.live is not None:
            names.update(self.live.names())
        result = sorted(names)
        self._names_cache = (now, result)
        return result

    def matching_pvs(
        self, glob: str | None = None, regex: str | None = None, limit: int = 500
    ) -> list[str]:
        if regex:
            try:
                rx = re.compile(regex)
            except re.error as e:
                raise RetrievalError(400, f"Invalid regex {regex!r}: {e}") from None
        else:
            rx = re.compile(glob_to_regex(glob or "*"))
        out = [n for n in self.all_pv_names() if rx.fullmatch(n)]
        return out if limit < 0 else out[:limit]

    # ------------------------------------------------------------------ data
    def meta_for(self, requested: str, pv: str) -> dict[str, str]:
        meta = {"name": requested}
        meta.update({k: str(v) for k, v in self.metadata(pv).items() if v not in (None, "")})
        meta.setdefault("PREC", "0")  # the AA always sends PREC (from the PV's typeinfo)
        return meta

    def stream(
        self,
        requested: str,
        start: Instant,
        end: Instant,
        post_processor: str | None = None,
    ) -> PVStream:
        """One PV's response stream; raises RetrievalError (404/400) before anything is read."""
        from .postprocessors import (
            PostProcessorError,
            parse_post_processor,
            split_function_syntax,
        )

        name, pp_from_name = split_function_syntax(requested.strip())
        pp_spec = pp_from_name or post_processor
        if name == PING_PV:
            return PVStream(
                requested,
                {"name": requested, "PREC": "0"},
                ping_chunks(),
                PayloadType.SCALAR_DOUBLE,
            )
        pv = self.resolve(name)
        ptype = self.pv_type(pv)
        if ptype is None:
            raise RetrievalError(404, f"Unable to find typeinfo for pv {pv}")
        chunks: Iterator[Chunk] = merged_chunks(self.stores_of(pv), pv, start, end, self.live)
        out_type = ptype
        if pp_spec:
            try:
                pp = parse_post_processor(pp_spec)
                out_type = pp.output_type(ptype)
            except PostProcessorError as e:
                raise RetrievalError(400, str(e)) from None
            cached = self.from_caches(pv, pp_spec, out_type, start, end)
            chunks = cached if cached is not None else pp.process(chunks, start, end)
        # named after the PV, not the function (``mean_3(X)`` answers as ``X``), as the AA
        return PVStream(name, self.meta_for(normalize_pv_name(name), pv), chunks, out_type)

    def from_caches(
        self, pv: str, pp_spec: str, out_type: PayloadType, start: Instant, end: Instant
    ) -> Iterator[Chunk] | None:
        """``pp_spec``'s answer from a store's ``pp=`` caches, or None to compute it.

        Only when one store of the PV's chain keeps that post-processor's caches, they are
        fresh for every file of the range, and no other store and not the engine hold data
        in the range: then the caches are the answer the raw data would give (bins never
        span two partitions when the bin size divides the partition).
        """
        from ..storage.pp_cache import cached_op, read_caches
        from .reduce import REDUCER

        try:
            ext = REDUCER.extension(pp_spec)
        except Exception:
            return None
        stores = self.stores_of(pv)
        keeping = [st for st in stores if cached_op(st, ext, REDUCER)]
        if not keeping:
            return None
        store = keeping[0]
        for other in stores:
            if other is not store and any(
                pf.end > start[0] and pf.start <= end[0] for pf in other.files_for_pv(pv)
            ):
                return None
        if self.live is not None and any(len(c) for c in self.live.read(pv, start, end)):
            return None
        rows = read_caches(store, pv, ext, start[0], end[0])
        if rows is None:
            return None
        return (
            Chunk(PayloadInfo(out_type, pv, year), block_from_samples(list(group), out_type))
            for year, group in groupby(rows, key=lambda smp: year_of(smp.secs))
        )

    def data_at_time(
        self, names: Sequence[str], at: Instant, search_period: int
    ) -> dict[str, dict[str, object]]:
        """The last sample at or before ``at`` (and not older than ``search_period`` seconds)
        of each PV, keyed by the requested name; PVs without such a sample are left out."""
        out: dict[str, dict[str, object]] = {}
        for requested in names:
            if not isinstance(requested, str) or not requested.strip():
                continue
            try:
                pv = self.resolve(requested)
            except RetrievalError:
                continue
            last = None
            for chunk in merged_chunks(self.stores_of(pv), pv, at, at, self.live):
                last = chunk
            if last is None or len(last) == 0:
                continue
            b = last.block
            i = len(b) - 1
            if int(b.secs[i]) < at[0] - search_period:
                continue
            s = b.sample(i)
            out[requested] = {
                "secs": s.secs,
                "nanos": s.nanos,
                "val": s.val,
                "severity": s.severity,
                "status": s.status,
            }
        return out

    def version(self) -> dict[str, str]:
        return {
            "version": f"pvarchiver {__version__}",
            "mgmt_version": __version__,
            "retrieval_version": __version__,
        }


def ping_chunks(now: float | None = None) -> Iterator[Chunk]:
    """``ArchApplPingPV``: ten synthetic ScalarDouble samples, a connection test for clients."""
    now = int(time.time() if now is None else now)
    secs = np.arange(now - 9, now + 1, dtype=np.int64)
    year = time.gmtime(int(secs[0])).tm_year
    if time.gmtime(int(secs[-1])).tm_year != year:  # keep one chunk inside one year
        secs = np.arange(now, now + 10, dtype=np.int64)
        year = time.gmtime(now).tm_year
    block = SampleBlock(
        secs,
        np.zeros(10, dtype=np.int64),
        np.arange(10, dtype=np.float64),
        np.zeros(10, dtype=np.int32),
        np.zeros(10, dtype=np.int32),
    )
    yield Chunk(PayloadInfo(PayloadType.SCALAR_DOUBLE, PING_PV, year), block)
