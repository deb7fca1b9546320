"""Which of a client's PV names are archived: archivedPVs, unarchivedPVs, archivedPVsNotInList.

Facility scripts compare the PVs their IOCs serve with what the archiver holds, and act on
the difference (archive the missing ones, delete the extra ones). A wrong answer therefore
costs data, so a name counts as archived here when the archiver really holds its data:

* the PV itself (``ca://``/``pva://`` prefix and a ``.VAL`` suffix ignored);
* an alias of an archived PV (the AA looks aliases up by the requested name and calls
  them unarchived, so a script would archive them a second time);
* ``PV.FIELD`` when FIELD is archived with PV (one of its ``archiveFields``), or when
  ``PV.FIELD`` is archived as a PV of its own.

A PV still in the archive workflow (Initial sampling) has no typeinfo yet and is not
archived, as in the AA. Only the registry is read (no engine, no disk), so 10,000 names
cost a few milliseconds.
"""

from __future__ import annotations

from .pvinput import lookup_name
from .service import Mgmt


def is_archived(mgmt: Mgmt, requested: str) -> bool:
    """True when ``requested`` names data this appliance archives (see the module doc)."""
    return mgmt.registry.has_typeinfo(mgmt.resolve(requested))


def archived(mgmt: Mgmt, names: list[str]) -> list[str]:
    """archivedPVs: the archived names among ``names``, as given and in their order."""
    return [n for n in names if is_archived(mgmt, n)]


def unarchived(mgmt: Mgmt, names: list[str]) -> list[str]:
    """unarchivedPVs: the other names, each once, in their order (the AA: a set, any order)."""
    out: dict[str, None] = {}
    for n in names:
        if n not in out and not is_archived(mgmt, n):
            out[n] = None
    return list(out)


def archived_not_in(mgmt: Mgmt, names: list[str]) -> list[str]:
    """archivedPVsNotInList: archived PVs (sorted) that ``names`` does not mention.

    A name mentions a PV when it is the PV's name (prefix and ``.VAL`` ignored) or an alias
    of it: a list generated from IOC files that spells a PV by its alias must not make a
    script delete that PV. ``PV.FIELD`` does not mention PV.
    """
    reg = mgmt.registry
    mentioned = {reg.real_name(lookup_name(n)) for n in names}
    return [n for n in reg.names() if n not in mentioned]


def paused_names(mgmt: Mgmt) -> list[str]:
    """getPausedPVsForThisAppliance: the paused PVs, sorted."""
    return sorted(i.pvName for i in mgmt.registry.typeinfos() if i.paused)
