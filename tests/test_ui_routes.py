"""The static UI routes (``/mgmt/ui/``) over a real HTTP server, and the UI's packaging.

Only ``make_ui_routes()`` is served here (uvicorn in a thread), so these tests check this
module alone; the browser tests in ``test_ui_browser.py`` run the whole archiver.
"""

from __future__ import annotations

import re
import threading
import time
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from pvarchiver.web.ui_routes import UI_DIR, make_ui_routes

from .helpers.net import free_port

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "index.html",
    "reports.html",
    "metrics.html",
    "storage.html",
    "pvdetails.html",
    "chart.html",
    "namedflags.html",
]


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=make_ui_routes()),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("UI test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_served_with_revalidation_and_csp(base: str, page: str) -> None:
    r = httpx.get(f"{base}/mgmt/ui/{page}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/mgmt/ui", "/mgmt/ui/"])
def test_directory_redirects_to_index(base: str, path: str) -> None:
    r = httpx.get(base + path)
    assert r.status_code == 302
    assert r.headers["location"].endswith("/mgmt/ui/index.html")


def test_vendor_files_cacheable_and_etag_revalidates(base: str) -> None:
    r = httpx.get(f"{base}/mgmt/ui/vendor/uPlot.iife.min.js")
    assert r.status_code == 200
    assert "max-age=" in r.headers["cache-control"]
    assert "javascript" in r.headers["content-type"]
    again = httpx.get(
        f"{base}/mgmt/ui/vendor/uPlot.iife.min.js", headers={"If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304


def test_missing_file_and_traversal_are_404(base: str) -> None:
    assert httpx.get(f"{base}/mgmt/ui/nope.html").status_code == 404
    # the raw path, not normalised by the client: StaticFiles must refuse to leave UI_DIR
    with httpx.Client() as c:
        req = c.build_request("GET", f"{base}/mgmt/ui/..%2f..%2fui_routes.py")
        assert c.send(req).status_code == 404
    assert httpx.post(f"{base}/mgmt/ui/index.html").status_code == 405


def test_home_page_has_the_aa_texts_and_buttons() -> None:
    html = (UI_DIR / "index.html").read_text()
    assert "please type in some PV names here" in html
    assert 'id="archstatpVNames"' in html
    for label in (
        "Check Status",
        ">Archive<",
        "Archive (specify sampling period",
        "Lookup",
        "Pause",
        "Resume",
        "Delete",
    ):
        assert label in html, label
    assert "Are you certain you want to stop archiving the PV?" in html
    assert "Do you want to delete any data stored for this PV?" in html


def _local_refs(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#?]+)', html)


@pytest.mark.parametrize("page", PAGES)
def test_pages_reference_only_local_files_that_exist(base: str, page: str) -> None:
    html = (UI_DIR / page).read_text()
    refs = _local_refs(html)
    assert refs, page
    for ref in refs:
        assert "//" not in ref, f"{page} refers to another host: {ref}"
        assert (UI_DIR / ref).is_file(), f"{page} refers to missing {ref}"
        assert httpx.get(f"{base}/mgmt/ui/{ref}").status_code == 200, ref


def test_no_script_reaches_another_host() -> None:
    for js in (UI_DIR / "js").glob("*.js"):
        assert not re.search(r"https?://", js.read_text()), js.name


def test_vendored_uplot_is_complete() -> None:
    vendor = UI_DIR / "vendor"
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 30_000
    assert (vendor / "uPlot.min.css").is_file()


def test_every_ui_file_is_packaged() -> None:
    """pyproject's package-data must cover each file, or a wheel ships a UI with holes."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["pvarchiver.web"]
    web = UI_DIR.parent
    files = [p.relative_to(web).as_posix() for p in UI_DIR.rglob("*") if p.is_file()]
    assert len(files) >= 15
    for f in files:
        assert any(fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns), f
