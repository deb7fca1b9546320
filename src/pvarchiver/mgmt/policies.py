"""Running a site's ``policies.py`` (the AA's contract) with CPython.

The file named by ``ARCHAPPL_POLICIES`` (or the built-in :mod:`default_policies`, which behaves
as the AA's default) is executed in a fresh namespace; its ``determinePolicy`` decides how each
new PV is archived. Its answer is checked here, so that a broken or surprising policy gives a
clear error for the PV concerned instead of a PV stuck in the workflow or a bad typeinfo.
The file is re-read when it changes on disk (new requests use the new policy; like the AA,
PVs already archived keep theirs).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_POLICIES = Path(__file__).with_name("default_policies.py")
SAMPLING_METHODS = ("MONITOR", "SCAN", "DONT_ARCHIVE")
DEFAULT_FIELDS = ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR", "DRVH", "DRVL"]


class PolicyError(Exception):
    """The policies file failed or answered something unusable."""


@dataclass
class PolicyResult:
    """determinePolicy's answer, checked and typed."""

    policyName: str
    samplingMethod: str
    samplingPeriod: float
    dataStores: list[str] = field(default_factory=list)
    archiveFields: list[str] = field(default_factory=list)
    controlPV: str | None = None
    appliance: str | None = None


class Policies:
    """A loaded policies file."""

    def __init__(self, path: Path | str | None = None) -> None:
        """``path``: a site's policies.py (the ARCHAPPL_POLICIES setting); None: built-in."""
        self.path = Path(path) if path else DEFAULT_POLICIES
        self._lock = threading.RLock()
        self._ns: dict[str, Any] | None = None
        self._mtime: float | None = None
        self.load_error: str | None = None
        self.text = ""
        self._reload_if_changed()

    @property
    def is_builtin(self) -> bool:
        return self.path == DEFAULT_POLICIES

    def _reload_if_changed(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError as e:
            self._ns, self._mtime = None, None
            self.load_error = f"cannot read policies file {self.path}: {e}"
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self.text = self.path.read_text(encoding="utf-8")
            code = compile(self.text, str(self.path), "exec")
            ns: dict[str, Any] = {"__name__": "policies", "__file__": str(self.path)}
            exec(code, ns)
        except Exception as e:
            self._ns = None
            self.load_error = f"policies file {self.path} failed to load: {type(e).__name__}: {e}"
            return
        missing = [f for f in ("getPolicyList", "determinePolicy") if not callable(ns.get(f))]
        if missing:
            self._ns = None
            self.load_error = f"policies file {self.path} lacks {', '.join(missing)}()"
            return
        self._ns, self.load_error = ns, None

    def _namespace(self) -> dict[str, Any]:
        with self._lock:
            self._reload_if_changed()
            if self._ns is None:
                raise PolicyError(self.load_error or "no policies loaded")
            return self._ns

    def policy_list(self) -> dict[str, str]:
        ns = self._namespace()
        with self._lock:
            try:
                got = ns["getPolicyList"]()
            except Exception as e:
                raise PolicyError(f"getPolicyList() failed: {type(e).__name__}: {e}") from e
        if not isinstance(got, dict):
            raise PolicyError("getPolicyList() must return a dict of name -> description")
        return {str(k): str(v) for k, v in got.items()}

    def fields_archived_as_part_of_stream(self) -> list[str]:
        try:
            ns = self._namespace()
        except PolicyError:
            return list(DEFAULT_FIELDS)
        fn = ns.get("getFieldsArchivedAsPartOfStream")
        if not callable(fn):
            return list(DEFAULT_FIELDS)
        with self._lock:
            try:
                got = fn()
            except Exception:
                return list(DEFAULT_FIELDS)
        return [str(f) for f in got] if isinstance(got, list | tuple) else list(DEFAULT_FIELDS)

    def determine(self, pv_info: dict[str, Any]) -> PolicyResult:
        """Run ``determinePolicy`` for one PV; PolicyError says what went wrong."""
        ns = self._namespace()
        with self._lock:
            try:
                got = ns["determinePolicy"](dict(pv_info))
            except Exception as e:
                raise PolicyError(f"determinePolicy failed: {type(e).__name__}: {e}") from e
        return check_result(got)


def check_result(got: object) -> PolicyResult:
    """Validate a determinePolicy answer (pure: unit-testable without a file)."""
    if not isinstance(got, dict):
        raise PolicyError(f"determinePolicy must return a dict, not {type(got).__name__}")
    try:
        period = float(got["samplingPeriod"])
    except KeyError:
        raise PolicyError("determinePolicy returned no samplingPeriod") from None
    except (TypeError, ValueError):
        raise PolicyError(f"samplingPeriod {got['samplingPeriod']!r} is not a number") from None
    if not math.isfinite(period) or period <= 0:
        raise PolicyError(f"samplingPeriod must be a positive number, not {period}")
    method = str(got.get("samplingMethod", "MONITOR")).upper()
    if method not in SAMPLING_METHODS:
        raise PolicyError(f"samplingMethod {method!r} is not one of {', '.join(SAMPLING_METHODS)}")
    stores = got.get("dataStores") or []
    if not isinstance(stores, list | tuple) or not all(isinstance(s, str) for s in stores):
        raise PolicyError("dataStores must be a list of store URLs")
    fields = got.get("archiveFields") or []
    if not isinstance(fields, list | tuple) or not all(isinstance(s, str) for s in fields):
        raise PolicyError("archiveFields must be a list of field names")
    control = got.get("controlPV") or None
    appliance = got.get("appliance") or None
    return PolicyResult(
        policyName=str(got.get("policyName") or "Default"),
        samplingMethod=method,
        samplingPeriod=period,
        dataStores=list(stores),
        archiveFields=[f.strip().upper() for f in fields if f.strip()],
        controlPV=str(control) if control else None,
        appliance=str(appliance) if appliance else None,
    )
