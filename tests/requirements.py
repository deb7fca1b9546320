"""Skipping a test for a missing system tool, without letting CI pass it silently.

On a developer's machine a test that needs Chromium, docker or network namespaces skips
with the reason when the tool is missing. Under CI (``CI=true``, set by the CI runner)
``.ci/system-packages`` has installed those tools, so a missing one is a broken set-up and
the test fails instead of turning into an unnoticed skip. Hosted runners that set ``CI``
but do not run ``.ci/system-packages`` (the GitHub workflow for Windows and macOS) set
``PVARCHIVER_TOOLS_OPTIONAL=1`` to get the skips back.
"""

from __future__ import annotations

import os

import pytest


def strict() -> bool:
    if os.environ.get("PVARCHIVER_TOOLS_OPTIONAL", "") == "1":
        return False
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, reason: str) -> None:
    """Skip (or under CI fail) the calling test when ``ok`` is false."""
    if ok:
        return
    if strict():
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)
