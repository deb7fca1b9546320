"""Container HEALTHCHECK: exit 0 when the archiver answers over HTTP, 1 otherwise.

Python rather than curl because the slim base images carry no curl and this costs nothing:
the interpreter is already there. The URL is the retrieval app's getVersion, which answers as
soon as the HTTP server is up and touches no storage (a slow disk must not mark the
container unhealthy and get it restarted in the middle of writing).
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("PVARCHIVER_PORT", "17665")
    url = os.environ.get(
        "PVARCHIVER_HEALTH_URL", f"http://127.0.0.1:{port}/retrieval/bpl/getVersion"
    )
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            ok = response.status == 200
    except OSError as e:
        print(f"unhealthy: {url}: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
