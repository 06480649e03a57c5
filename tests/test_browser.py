"""The app in a real browser: headless Chromium driven by Selenium against ``streamlit run``.

Opens every page, runs a comparison on Compare and waits for the cortical map, fails on any
Streamlit exception element, saves screenshots to ``test-artifacts/screenshots/``, and runs 8
concurrent sessions (browser tabs, one Streamlit session each) that each compute a comparison.

Chromium + chromedriver are installed with apt-get when missing and possible (root); the test
is skipped, saying why, only when no browser can be had. The fixture is small: the ``small``
simulated preset and two demo prediction checkpoints (one participant, two seeds).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from brainviz.app_support import browser as B

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "test-artifacts" / "screenshots"
PAGES = ["Home", "Data", "Models", "Compare", "Attention", "AN–BN"]
MAP_CSS = '[data-testid="stPlotlyChart"] .js-plotly-plot'


@pytest.fixture(scope="module")
def chromium():
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    if not B.install_browser(log=lambda m: print(m, flush=True)):
        pytest.skip("no Chromium/chromedriver on PATH and they cannot be installed here "
                    "(needs root and apt-get: apt-get install chromium chromium-driver)")
    return B.find_browser()


@pytest.fixture(scope="module")
def app_url(chromium, small_sim, tmp_path_factory):
    from brainviz.app_support.demo import make_demo_checkpoints

    root = tmp_path_factory.mktemp("browser-app")
    cache, models = root / "data_cache", root / "models"
    target = cache / "datasets" / "simulated-small"
    target.mkdir(parents=True)
    for exp, path in small_sim.items():
        shutil.copytree(path, target / exp)
    make_demo_checkpoints(target / "reading", models, participants=["sub-01"], seeds=(0, 1))
    env = {"BRAINVIZ_CACHE": str(cache), "BRAINVIZ_MODELS": str(models)}
    # the mesh cache file, as a first launch would leave it
    import os

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from brainviz.viz import _mesh

        _mesh.clear_memory_cache()
        _mesh.prewarm()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    SHOTS.mkdir(parents=True, exist_ok=True)
    with B.server(env, log_path=SHOTS.parent / "browser-test-server.log") as url:
        yield url


@pytest.fixture
def driver(chromium):
    d = B.driver(1400, 1300)
    yield d
    d.quit()


def _no_exception(d, where: str) -> None:
    exc = B.exceptions(d)
    assert not exc, f"Streamlit exception on {where}: {exc[0][:2000]}"


def _shot(d, name: str, scroll_to: str | None = None) -> None:
    if scroll_to:
        found = d.find_elements("css selector", scroll_to)
        if found:
            d.execute_script("arguments[0].scrollIntoView({block: 'start'});", found[0])
            time.sleep(0.5)
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def test_every_page_and_a_comparison(app_url, driver):
    d = driver
    d.get(app_url + "/?n=100")
    n = B.wait_run(d, 0, timeout=120)
    _no_exception(d, "Home")
    _shot(d, "01-home")
    for i, page in enumerate(PAGES[1:], start=2):
        B.click_nav(d, page)
        n = B.wait_run(d, n, timeout=120)
        _no_exception(d, page)
        _shot(d, f"{i:02d}-{page.lower().replace('–', '')}")
    # Compare: run one comparison and wait for the cortical map
    B.click_nav(d, "Compare")
    n = B.wait_run(d, n)
    B.click_button(d, "Run comparison")
    n = B.wait_run(d, n, timeout=240)
    _no_exception(d, "Compare after Run")
    B.wait_for(d, MAP_CSS + " canvas", 60)
    time.sleep(1.0)  # let WebGL draw before the screenshot
    _shot(d, "07-compare-cortex", scroll_to='[data-testid="stTabs"]')
    assert "run=1" in d.current_url and "a=demo-tuned" in d.current_url   # shareable URL
    for label, name in (("Flat map + selection", "08-compare-flatmap"), ("Fig. 2 curves", "09-compare-fig2"),
                        ("ROIs", "10-compare-rois")):
        tab = next(t for t in d.find_elements("css selector", '[data-testid="stTab"]') if t.text.strip() == label)
        tab.click()
        n = B.wait_run(d, n, timeout=120)
        _no_exception(d, f"Compare / {label}")
        B.wait_for(d, MAP_CSS, 60)
        time.sleep(0.5)
        _shot(d, name, scroll_to='[data-testid="stTabs"]')
    # a shared URL restores the view in a new session (comparison read from the cache)
    url = d.current_url
    d.get("about:blank")
    d.get(url.replace("tab=ROIs", "tab=Cortex+3-D"))
    B.wait_run(d, 0, timeout=120)
    _no_exception(d, "Compare from a shared URL")
    B.wait_for(d, MAP_CSS + " canvas", 60)


def test_eight_concurrent_sessions_each_compare(app_url, driver):
    d = driver
    query = "compare?a=demo-tuned&b=demo-vanilla&p=sub-01&n=60&run=1&seed={seed}"
    handles = []
    for i in range(8):
        if i:
            d.switch_to.new_window("tab")
        d.get(app_url + "/" + query.format(seed=i + 1))   # each session computes its own draws
        handles.append(d.current_window_handle)
    for i, h in enumerate(handles):
        d.switch_to.window(h)
        B.wait_run(d, 0, timeout=300)
        deadline = time.monotonic() + 300
        while "Comparison ready" not in d.page_source and time.monotonic() < deadline:
            _no_exception(d, f"session {i}")
            B.wait_run(d, B.last_run(d), timeout=300)
        _no_exception(d, f"session {i}")
        assert "Comparison ready" in d.page_source, f"session {i} did not finish its comparison"
        B.wait_for(d, MAP_CSS, 60)
        if i == 7:
            _shot(d, "11-concurrent-session-8")
