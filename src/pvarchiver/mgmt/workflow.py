"""The archive-request state machine, sans I/O: requests, policy input, typeinfo building.

A request lives in the registry's ``ArchivePVRequests`` table from ``archivePV`` until its
typeinfo is written (in the same transaction that deletes the request), so a crash at any
point either resumes the request at the next start or finds the PV archived. The states
are the AA's (``ArchivePVState``) so reports show the names AA users know.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..ca import dbr
from ..pb import PayloadType
from .metaget import Measurement
from .policies import PolicyResult
from .typeinfo import PVTypeInfo, aa_time

#: The AA's floor for a user-given sampling period (archappl.properties minimumSamplingPeriod).
MINIMUM_SAMPLING_PERIOD = 0.1


class State(StrEnum):
    START = "START"
    METAINFO_REQUESTED = "METAINFO_REQUESTED"
    METAINFO_GATHERING = "METAINFO_GATHERING"
    METAINFO_OBTAINED = "METAINFO_OBTAINED"
    POLICY_COMPUTED = "POLICY_COMPUTED"
    TYPEINFO_STABLE = "TYPEINFO_STABLE"
    ARCHIVE_REQUEST_SUBMITTED = "ARCHIVE_REQUEST_SUBMITTED"
    ARCHIVING = "ARCHIVING"
    ABORTED = "ABORTED"
    FINISHED = "FINISHED"


@dataclass
class ArchiveRequest:
    """One pending archivePV request (persisted as the ``userParams`` JSON)."""

    pvName: str
    samplingMethod: str | None = None  # user's choice; None = the policy's
    samplingPeriod: float | None = None
    policyName: str | None = None
    controllingPV: str | None = None
    appliance: str | None = None
    archiveFields: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    usePVAccess: bool = False
    #: skipAliasCheck: archive the requested name even if its .NAME says it is an alias
    #: (pCAS servers that use .NAME for something else)
    skipAliasCheck: bool = False
    requestTime: str = field(default_factory=lambda: aa_time(time.time()))
    currentState: str = State.START.value
    lastError: str = ""

    def to_params(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", [], False)}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ArchiveRequest:
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params}
        req = cls(**known)
        if req.samplingPeriod is not None:
            req.samplingPeriod = float(req.samplingPeriod)
        return req

    @property
    def failed(self) -> bool:
        return self.currentState == State.ABORTED.value


def dbr_type_name(native: int, count: int) -> str:
    return dbr.payload_type(native, count).arch_dbr_name


def _dbr_name(m: Measurement) -> str:
    ptype = m.payload_type
    return ptype.arch_dbr_name if ptype is not None else dbr_type_name(m.native_type, m.count)


def _as_float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def archived_name(req: ArchiveRequest, m: Measurement) -> str:
    """The name to archive: the record's own name (its .NAME) when the request named an
    alias, unless the client asked to skip that check."""
    if req.skipAliasCheck:
        return req.pvName
    return m.fields.get("NAME") or req.pvName


def policy_input(req: ArchiveRequest, m: Measurement) -> dict[str, Any]:
    """determinePolicy's pvInfo dict, with the AA's keys."""
    info: dict[str, Any] = {
        "pvName": req.pvName,
        "dbrtype": _dbr_name(m),
        "elementCount": m.count,
        "eventRate": m.event_rate,
        "eventCount": m.events,
        "storageRate": m.storage_rate,
        "aliasName": "",
    }
    real = archived_name(req, m)
    if real != req.pvName:
        info["aliasName"] = real
    if req.policyName:
        info["policyName"] = req.policyName
    if req.controllingPV:
        info["controlPV"] = req.controllingPV
    for key in ("MDEL", "ADEL"):
        v = _as_float(m.fields.get(key))
        if v is not None:
            info[key] = v
    for key in ("SCAN", "RTYP"):
        if m.fields.get(key):
            info[key] = m.fields[key]
    return info


def _limit(v: float | None) -> float:
    return math.nan if v is None else float(v)


def build_typeinfo(
    req: ArchiveRequest,
    m: Measurement,
    policy: PolicyResult,
    *,
    identity: str,
    default_stores: list[str],
    real_name: str | None = None,
) -> PVTypeInfo:
    """The PVTypeInfo for a measured PV: type and limits from CA, sampling from the policy
    unless the user chose, stores from the policy (or the defaults)."""
    now = datetime.now(UTC)
    info = PVTypeInfo(pvName=real_name or req.pvName, creationTime=now, modificationTime=now)
    ptype = m.payload_type
    if ptype is None:  # (SCALAR_STRING is 0: no `or` here)
        ptype = dbr.payload_type(m.native_type, m.count)
    info.DBRType = ptype.arch_dbr_name
    info.scalar = not PayloadType(ptype).is_vector
    info.elementCount = m.count
    info.applianceIdentity = identity
    info.hostName = m.host or None
    c = m.ctrl
    if c is not None:
        info.lowerAlarmLimit = _limit(c.lower_alarm_limit)
        info.lowerCtrlLimit = _limit(c.lower_ctrl_limit)
        info.lowerDisplayLimit = _limit(c.lower_disp_limit)
        info.lowerWarningLimit = _limit(c.lower_warning_limit)
        info.upperAlarmLimit = _limit(c.upper_alarm_limit)
        info.upperCtrlLimit = _limit(c.upper_ctrl_limit)
        info.upperDisplayLimit = _limit(c.upper_disp_limit)
        info.upperWarningLimit = _limit(c.upper_warning_limit)
        info.precision = float(c.precision or 0)
        info.units = c.units or ""
    info.computedEventRate = m.event_rate
    info.computedStorageRate = m.storage_rate
    info.computedBytesPerEvent = m.bytes // m.events if m.events else 0
    info.policyName = policy.policyName
    if req.samplingPeriod is not None or req.samplingMethod is not None:
        info.samplingMethod = req.samplingMethod or "MONITOR"
        info.samplingPeriod = max(req.samplingPeriod or 1.0, MINIMUM_SAMPLING_PERIOD)
        info.userSpecifiedEventRate = 1.0 / info.samplingPeriod
    else:
        info.samplingMethod = policy.samplingMethod
        info.samplingPeriod = policy.samplingPeriod
    info.controllingPV = req.controllingPV or policy.controlPV
    info.usePVAccess = req.usePVAccess
    info.dataStores = list(policy.dataStores or default_stores)
    fields = list(policy.archiveFields)
    for f in req.archiveFields:
        if f not in fields:
            fields.append(f)
    info.archiveFields = fields
    extra = {k: v for k, v in m.fields.items() if k in ("NAME", "RTYP", "ADEL", "MDEL", "SCAN")}
    info.extraFields = extra
    return info
