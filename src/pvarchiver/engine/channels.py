"""The engine's sources as this process runs them: Channel Access today.

:class:`CAArchiver` is an :class:`~.source.Archiver` with the CA source
(:class:`~.ca_source.CASource`) registered for ``ca``; a PVA source, once there is one, is
registered beside it for ``pva`` (:meth:`~.source.Archiver.add_source`) and nothing else in
the engine changes. Until then a PVA request is archived over CA, as it always was here.
"""

from __future__ import annotations

from ..ca import CAClient
from ..ca.client import Channel
from .ca_source import CASource
from .conditional import ControllingPVs
from .source import CA, DEFAULT_ARCHIVE_FIELDS, Archiver
from .writer import Engine

__all__ = ["DEFAULT_ARCHIVE_FIELDS", "CAArchiver"]


class CAArchiver(Archiver):
    """Archives PVs of an :class:`Engine` from a :class:`CAClient` (conditional archiving's
    controlling PVs are watched over CA too, as the AA does)."""

    def __init__(self, engine: Engine, client: CAClient) -> None:
        super().__init__(engine, ControllingPVs(engine, client))
        self.client = client
        self.ca = CASource(client)
        self.add_source(CA, self.ca)

    @property
    def field_channels(self) -> dict[str, list[Channel]]:
        """The archive-field channels of each PV (``PV.HIHI`` ...)."""
        return self.ca.field_channels
