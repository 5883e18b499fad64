"""The rendered VAE chapter works in a browser with no kernel and no network.

Opens the built page in headless Chromium, moves the first latent-traversal
slider and checks that the frame shown changes: that only happens when the
slider is linked to its frames in the browser (``jslink``), which is what makes
the widget work in the static book. Also checks that the page loads nothing
from another host (the widget JavaScript is vendored, see book/_vendor/).
"""

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "_build" / "html" / "notebooks" / "01_vae.html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Any host name fails to resolve: the page must work offline.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
# Schemes that stay on this machine; blob: URLs are the widget images made in the page.
LOCAL_SCHEMES = {"file", "data", "blob"}
TIMEOUT_MS = 20_000


def _remote(urls):
    return sorted({u for u in urls if urlparse(u).scheme not in LOCAL_SCHEMES})


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_traversal_slider_changes_frame_offline(browser):
    if not PAGE.exists():
        pytest.skip(f"built page {PAGE.relative_to(ROOT)} is missing: run `make book` first")
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(PAGE.as_uri())

    traversal = page.locator(".oc-traversal").first
    row = traversal.locator(".oc-frame-slider").first
    frame = row.locator(".oc-frames img")  # a Stack puts only its selected child in the page
    readout = row.locator(".widget-readout")
    try:
        frame.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                               arg=frame.element_handle(), timeout=TIMEOUT_MS)
    except Exception:  # playwright's TimeoutError
        pytest.fail("no rendered latent traversal (.oc-traversal .oc-frame-slider img) on the "
                    "page: widget JavaScript missing, or the chapter lacks latent_traversal? "
                    f"Requests to other hosts: {_remote(requests)}")
    src_before, text_before = frame.get_attribute("src"), readout.inner_text()
    pixels_before = frame.screenshot()

    handle = row.locator(".noUi-handle").first
    at_end = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    handle.press("Home" if at_end else "End")  # ipywidgets 8 sliders react to these keys
    assert readout.inner_text() != text_before, "the slider did not move"
    try:
        page.wait_for_function(
            "([row, src]) => { const img = row.querySelector('.oc-frames img');"
            " return img && img.getAttribute('src') !== src && img.complete; }",
            arg=[row.element_handle(), src_before], timeout=5_000)
    except Exception:  # playwright's TimeoutError
        pytest.fail("moving the traversal slider did not change the frame shown: "
                    "is the slider jslink-ed to its Stack of frames?")
    assert frame.screenshot() != pixels_before, "the new frame looks the same as the old one"

    assert not _remote(requests), f"the page requested URLs from other hosts: {_remote(requests)}"
    page.close()
