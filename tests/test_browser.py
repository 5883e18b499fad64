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
HTML = ROOT / "_build" / "html" / "notebooks"
# Each chapter page and the CSS class of the frame-slider widget to move on it.
WIDGET_PAGES = {
    "01_vae.html": "oc-traversal",
    "02_beta_vae.html": "oc-beta-explorer",
    "03_discrete_gradients.html": "oc-choice",
    "04_spatial_transformer.html": "oc-spatial-explorer",
    "05_dvae_st.html": "oc-prototype-explorer",
    "06_air.html": "oc-explorer",
}
# Widgets whose sliders and frames share one box (chapter 3's choice_widget: estimator buttons and
# two sliders over nested Stacks) rather than one `.oc-frame-slider` row per slider. The test moves
# the *last* slider of the row: the only one of a frame_slider row, the number of samples here.
SINGLE_BOX_WIDGETS = {"oc-choice", "oc-explorer"}  # oc-explorer: frame_table (chapter 6), canvas x step
# Every Jupyter Book 1 page declares THEBE_JS_URL twice; harmless and not ours.
KNOWN_PAGE_ERRORS = ("THEBE_JS_URL",)
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


@pytest.mark.parametrize("page_name", sorted(WIDGET_PAGES))
def test_slider_changes_frame_offline(browser, page_name):
    path = HTML / page_name
    if not path.exists():
        pytest.skip(f"built page {path.relative_to(ROOT)} is missing: run `make book` first")
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())

    widget = page.locator("." + WIDGET_PAGES[page_name]).first
    row = widget if WIDGET_PAGES[page_name] in SINGLE_BOX_WIDGETS else widget.locator(".oc-frame-slider").first
    frame = row.locator(".oc-frames img")  # a Stack puts only its selected child in the page
    readout = row.locator(".widget-readout").last
    try:
        frame.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                               arg=frame.element_handle(), timeout=TIMEOUT_MS)
    except Exception:  # playwright's TimeoutError
        pytest.fail(f"no rendered frame slider (.{WIDGET_PAGES[page_name]} .oc-frame-slider img) "
                    "on the page: widget JavaScript missing, or the chapter lacks the widget? "
                    f"Requests to other hosts: {_remote(requests)}")
    src_before, text_before = frame.get_attribute("src"), readout.inner_text()
    pixels_before = frame.screenshot()

    handle = row.locator(".noUi-handle").last
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
    unexpected = [e for e in errors if not any(known in e for known in KNOWN_PAGE_ERRORS)]
    assert not unexpected, f"JavaScript errors on the page: {unexpected}"
    page.close()
