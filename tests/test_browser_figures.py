"""Brain figures in a real browser (headless Chromium + Selenium against ``streamlit run``).

Opens Compare from a shared link on a small simulated dataset with two demo models and two
participants, and checks that the static four-view montage (an image) is the first figure and
that no WebGL mesh is drawn until the interactive 3-D view is switched on; then the flat map
(shaded mesh image, L/R labels), the single-model map, the ROI bars with error bars and the
linked time-course view. Screenshots go to ``test-artifacts/screenshots/figures/`` (or
``$BRAINVIZ_SHOTS``). Skipped, saying why, when no Chromium/chromedriver can be had.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from brainviz.app_support import browser as B
from _app_fixtures import demo_app_folders, environment, no_streamlit_exception, require_chromium  # noqa: E402

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("BRAINVIZ_SHOTS") or REPO / "test-artifacts" / "screenshots" / "figures")
CHART = '[data-testid="stPlotlyChart"]'
IMAGE = 'img.bv-montage'  # the static montage (state.inline_image)


@pytest.fixture(scope="module")
def chromium():
    return require_chromium()


@pytest.fixture(scope="module")
def app_url(chromium, small_sim, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-figures")
    env = demo_app_folders(small_sim, root, participants=["sub-01", "sub-02"])
    with environment(env):  # the mesh and montage caches, as a first launch leaves them
        from brainviz import surface
        from brainviz.viz import montage

        surface.clear_memory_cache()
        surface.prewarm()
        montage.prewarm()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with B.server(env, log_path=SHOTS / "server.log") as url:
        yield url


@pytest.fixture
def driver(chromium):
    d = B.driver(1400, 1400)
    yield d
    d.quit()


_no_exception = no_streamlit_exception


def _shot(d, name: str, css: str | None = None) -> None:
    if css:
        found = d.find_elements("css selector", css)
        if found:
            d.execute_script("arguments[0].scrollIntoView({block: 'start'});", found[0])
            time.sleep(0.4)
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def _click_label(d, text: str) -> None:
    for el in d.find_elements("css selector", "label"):
        if text in el.text:
            d.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
            el.click()
            return
    raise LookupError(f"no control labelled {text!r}")


def _tab(d, label: str, n: int) -> int:
    tab = next(t for t in d.find_elements("css selector", '[data-testid="stTab"]') if t.text.strip() == label)
    tab.click()
    return B.wait_run(d, n, timeout=120)


def _image_loaded(d) -> bool:
    return bool(d.execute_script(
        "const i = document.querySelector(arguments[0]); return i && i.complete && i.naturalWidth > 400;", IMAGE))


def test_compare_static_montage_first_then_linked_views(app_url, driver):
    d = driver
    d.get(app_url + "/compare?a=demo-tuned&b=demo-vanilla&p=sub-01,sub-02&n=60&nperm=1000&run=1&tab=Cortex"
          "&atlas=planted+regions")
    n = B.wait_run(d, 0, timeout=240)
    _no_exception(d, "Compare (shared link)")
    B.wait_for(d, IMAGE, 60)
    assert _image_loaded(d), "the montage image did not load"
    panel = d.find_element("css selector", '[data-testid="stTabs"]')
    assert not panel.find_elements("css selector", CHART + " canvas"), "a WebGL mesh was drawn before it was asked for"
    _shot(d, "01-compare-montage", '[data-testid="stTabs"]')

    # the interactive 3-D view on demand
    _click_label(d, "Interactive 3-D view")
    n = B.wait_run(d, n, timeout=120)
    B.wait_for(d, CHART + " canvas", 60)
    _no_exception(d, "Compare / 3-D")
    time.sleep(1.0)
    _shot(d, "02-compare-3d-on-demand", CHART)
    _click_label(d, "Interactive 3-D view")
    n = B.wait_run(d, n, timeout=120)

    # a vertex's held-out time courses
    _click_label(d, "Inspect a vertex or an ROI")
    n = B.wait_run(d, n, timeout=180)
    B.wait_for(d, CHART + " .js-plotly-plot", 60)
    _no_exception(d, "Compare / inspect vertex")
    text = d.find_element("css selector", CHART).text
    assert "measured" in text and "A: demo-tuned" in text
    _shot(d, "03-compare-vertex-timecourse", CHART)

    # flat map: shaded mesh image with L/R labels
    n = _tab(d, "Flat map + selection", n)
    B.wait_for(d, CHART + " .js-plotly-plot", 60)
    _no_exception(d, "Compare / flat map")
    assert d.find_elements("css selector", CHART + " .layer-below image, " + CHART + " image"), "no flat-map image"
    labels = d.find_element("css selector", CHART).text
    assert "L (left hemisphere)" in labels and "R (right hemisphere)" in labels
    time.sleep(0.5)
    _shot(d, "04-compare-flatmap", CHART)
    # click a vertex on the flat map -> selection table, statistics and its time courses
    plot = d.find_element("css selector", CHART + " .js-plotly-plot .nsewdrag")
    from selenium.webdriver.common.action_chains import ActionChains

    w = plot.size["width"]
    ActionChains(d).move_to_element_with_offset(plot, int(-w * 0.22), 0).pause(0.5).click().perform()
    n = B.wait_run(d, n, timeout=120)
    _no_exception(d, "Compare / flat map click")
    metrics = d.find_element("css selector", '[data-testid="stTabs"]').text
    assert "selected vertices" in metrics, "clicking the flat map selected no vertex"
    charts = d.find_elements("css selector", CHART)
    assert len(charts) >= 2 and "measured" in charts[-1].text        # the vertex's time courses
    _shot(d, "04b-compare-flatmap-click", '[data-testid="stMetric"]')

    # single model: centred on chance, a montage again
    n = _tab(d, "Single model", n)
    B.wait_for(d, IMAGE, 60)
    _no_exception(d, "Compare / single model")
    _shot(d, "05-compare-single-model", IMAGE)

    # ROIs: bars with units and error bars
    n = _tab(d, "ROIs", n)
    B.wait_for(d, CHART + " .js-plotly-plot", 60)
    _no_exception(d, "Compare / ROIs")
    roi_text = d.find_element("css selector", CHART).text
    assert "Δ 20-vs-20 accuracy" in roi_text and "error bars: SE across participants" in roi_text
    assert d.find_elements("css selector", CHART + " .errorbar"), "no error bars"
    time.sleep(0.5)
    _shot(d, "06-compare-rois", CHART)

    # exports name the formats they download
    n = _tab(d, "Export", n)
    _no_exception(d, "Compare / Export")
    buttons = [b.text for b in d.find_elements("css selector", '[data-testid="stDownloadButton"] button')]
    assert "A − B montage (PNG)" in buttons and "A − B montage (PDF)" in buttons
    assert not any("PNG" in b and "SVG" in b for b in buttons)
    _shot(d, "07-compare-export", '[data-testid="stTabs"]')
