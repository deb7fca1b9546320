"""Container HEALTHCHECK: exit 0 when the archiver is healthy, 1 otherwise.

Healthy means the HTTP server answers ``/mgmt/bpl/getApplianceHealth`` with 200: the
archiver is up and no store's writes have failed for longer than
``PVARCHIVER_UNHEALTHY_AFTER_SECONDS`` (60 s). A 503 (a store failing for too long) or no
answer is unhealthy, and the reasons are printed, which ``docker inspect`` shows. Low disk
space is only a warning there and keeps the container healthy: restarting would not free
anything. The answer comes from the archiver's memory, never from the disk, so a slow disk
cannot make the check time out.

Python rather than curl because the slim base images carry no curl and this costs nothing:
the interpreter is already there.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def reasons(body: bytes) -> str:
    """The problems listed in a getApplianceHealth answer, or the start of the body."""
    try:
        data = json.loads(body)
        return "; ".join(str(p) for p in data.get("problems", [])) or str(data.get("status"))
    except (ValueError, AttributeError):
        return body[:300].decode("utf-8", "replace")


def main() -> int:
    port = os.environ.get("PVARCHIVER_PORT", "17665")
    url = os.environ.get(
        "PVARCHIVER_HEALTH_URL", f"http://127.0.0.1:{port}/mgmt/bpl/getApplianceHealth"
    )
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            ok = response.status == 200
    except urllib.error.HTTPError as e:
        print(f"unhealthy: {url}: HTTP {e.code}: {reasons(e.read())}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"unhealthy: {url}: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
