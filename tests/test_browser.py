"""The app in a real browser: headless Chromium driven by Selenium against ``streamlit run``.

Opens every page, runs a comparison on Compare and waits for the cortical map, fails on any
Streamlit exception element, saves screenshots to ``test-artifacts/screenshots/``, and runs 8
concurrent sessions (browser tabs, one Streamlit session each) that each compute a comparison.

Chromium + chromedriver are installed with apt-get when missing and possible (root); the test
is skipped, saying why, only when no browser can be had. The fixture is small: the ``small``
simulated preset and two demo prediction checkpoints (one participant, two seeds).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from brainviz.app_support import browser as B
from _app_fixtures import demo_app_folders, environment, no_streamlit_exception, require_chromium  # noqa: E402

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "test-artifacts" / "screenshots"
PAGES = ["Home", "Data", "Models", "Compare", "Attention", "AN–BN"]
MAP_CSS = '[data-testid="stPlotlyChart"] .js-plotly-plot'
MONTAGE_CSS = 'img.bv-montage'  # Compare shows the static four-view montage first (inline PNG)
SERVER_LOG = SHOTS.parent / "browser-test-server.log"
SERVER_ENV: dict[str, str] = {}


@pytest.fixture(scope="module")
def chromium():
    return require_chromium()


@pytest.fixture(scope="module")
def app_url(chromium, small_sim, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-app")
    env = demo_app_folders(small_sim, root, participants=["sub-01"])
    # the mesh cache file, as a first launch would leave it
    with environment(env):
        from brainviz.viz import _mesh

        _mesh.clear_memory_cache()
        _mesh.prewarm()
    SHOTS.mkdir(parents=True, exist_ok=True)
    SERVER_ENV.update(env)
    print(f"screenshots: {SHOTS}", flush=True)
    with B.server(env, log_path=SERVER_LOG) as url:
        yield url


@pytest.fixture
def driver(chromium):
    d = B.driver(1400, 1300, network_log=True)
    yield d
    d.quit()


_no_exception = no_streamlit_exception


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
    B.wait_for(d, MONTAGE_CSS, 120)
    time.sleep(0.5)
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
    d.get(url.replace("tab=ROIs", "tab=Cortex"))
    B.wait_run(d, 0, timeout=120)
    _no_exception(d, "Compare from a shared URL")
    B.wait_for(d, MONTAGE_CSS, 120)
    outside = B.external(B.requested_urls(d))  # every page, a comparison, its tabs: nothing left 127.0.0.1
    assert not outside, outside[:10]


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
        B.wait_for(d, MONTAGE_CSS, 120)
        if i == 7:
            _shot(d, "11-concurrent-session-8")


def _active_tab(d) -> str:
    tabs = d.find_elements("css selector", '[data-testid="stTab"][aria-selected="true"]')
    return tabs[0].text.strip() if tabs else ""


def _click_tab(d, label: str) -> None:
    tab = next(t for t in d.find_elements("css selector", '[data-testid="stTab"]') if t.text.strip() == label)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", tab)
    tab.click()


def _wait_text(d, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in d.page_source:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} did not appear within {timeout:.0f} s ({d.current_url})")
        time.sleep(0.1)


def test_guided_workflow_attention_and_offline(app_url, chromium):
    """A ≠ B defaults, a Data tab in the URL, Attention (axis titles, 1-based layers, per-panel
    scales, offline bertviz head views) restored from a shared link without pressing Compute,
    inline job progress with a link that opens Models → Jobs, quiet server log, and no request
    leaving 127.0.0.1 (favicon included)."""

    from brainviz import jobs

    log_start = SERVER_LOG.stat().st_size if SERVER_LOG.is_file() else 0
    d = B.driver(1400, 1300, network_log=True)
    job_id = None
    try:
        # Home: distinct default models; the favicon is inline (not fetched from the internet)
        d.get(app_url + "/")
        B.wait_run(d, 0, timeout=120)
        _no_exception(d, "Home")
        assert "a=demo-tuned" in d.current_url and "b=demo-vanilla" in d.current_url
        icon = d.execute_script("const l = document.querySelector(\"link[rel~='icon']\"); return l ? l.href : '';")
        assert icon.startswith(("data:", app_url)) or not icon, icon

        # Data: every tab updates the URL
        d.get(app_url + "/data")
        n = B.wait_run(d, 0, timeout=120)
        _click_tab(d, "Vertex time course")
        n = B.wait_run(d, n, timeout=120)
        _no_exception(d, "Data / Vertex time course")
        assert "tab=Vertex" in d.current_url and "v=" in d.current_url, d.current_url

        # Attention: compute once ...
        d.get(app_url + "/attention?nw=2&layer=2&head=3&se=seeds")
        n = B.wait_run(d, 0, timeout=120)
        _no_exception(d, "Attention")
        B.click_button(d, "Compute attention")
        n = B.wait_run(d, n, timeout=240)
        _no_exception(d, "Attention after Compute")
        B.wait_for(d, "iframe", 120)
        _wait_text(d, "key token (attended to)")
        assert "query token (attends from)" in d.page_source
        ticks = {e.text for e in d.find_elements("css selector", ".xtick text")}
        assert {"L1", "L6"} <= ticks, ticks
        _shot(d, "20-attention-fig4", scroll_to='[data-testid="stPlotlyChart"]')
        # ... the head view draws offline (d3 and jQuery inlined): lines for every head
        frames = d.find_elements("css selector", "iframe")
        assert len(frames) >= 2
        d.execute_script("arguments[0].scrollIntoView({block: 'start'});", frames[0])
        d.switch_to.frame(frames[0])
        deadline = time.monotonic() + 30
        while not d.find_elements("css selector", "#attention line") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert d.find_elements("css selector", "#attention line"), "bertviz head view did not draw"
        layer_names = [o.text for o in d.find_elements("css selector", "select#layer option")]
        d.switch_to.default_content()
        assert layer_names == ["L2"], layer_names
        time.sleep(0.5)
        _shot(d, "21-attention-head-views")
        url = d.current_url
        assert "run=1" in url and "se=seeds" in url and "layer=2" in url and "head=3" in url, url

        # ... and a shared link reopens the computed view in a new session, without pressing Compute
        d.get("about:blank")
        d.get(url)
        B.wait_run(d, 0, timeout=180)
        B.wait_for(d, "iframe", 120)
        _no_exception(d, "Attention from a shared link")
        assert "Press <strong>Compute" not in d.page_source and "Press Compute" not in d.page_source
        assert "se=seeds" in d.current_url
        _shot(d, "22-attention-from-link", scroll_to='[data-testid="stPlotlyChart"]')

        # Models: a readable checkpoint card (held-out r in the planted regions, JSON collapsed)
        d.get(app_url + "/models")
        B.wait_run(d, 0, timeout=120)
        _wait_text(d, "mean r in planted regions")
        _no_exception(d, "Models / Checkpoints")
        _shot(d, "25-checkpoint-card", scroll_to='[data-testid="stSelectbox"]')

        # Brain-tune: inline progress where the job was started, with a link to Models → Jobs
        d.get(app_url + "/models?tab=Brain-tune&tv=vanilla&tpp=sub-01")
        n = B.wait_run(d, 0, timeout=120)
        assert _active_tab(d) == "Brain-tune"
        B.click_button(d, "Start brain-tuning")
        n = B.wait_run(d, n, timeout=120)
        panel = B.wait_for(d, '[class*="st-key-bv-job-"]', 60)[0]
        job_id = panel.get_attribute("class").split("st-key-bv-job-")[1].split()[0]
        assert "elapsed" in panel.text and "ETA" in panel.text
        d.execute_script("arguments[0].scrollIntoView({block: 'center'});", panel)
        _shot(d, "23-inline-job-progress")
        link = panel.find_element("css selector", "a[href*='tab=Jobs']")
        assert f"job={job_id}" in link.get_attribute("href")
        link.click()
        deadline = time.monotonic() + 60
        while (_active_tab(d) != "Jobs" or "tab=Jobs" not in d.current_url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _active_tab(d) == "Jobs" and "tab=Jobs" in d.current_url
        _wait_text(d, job_id)
        _no_exception(d, "Models / Jobs")
        _shot(d, "24-models-jobs-tab")

        # nothing left 127.0.0.1
        outside = B.external(B.requested_urls(d))
        assert not outside, outside[:10]
    finally:
        d.quit()
        if job_id:
            with environment(SERVER_ENV):
                jobs.cancel(job_id)
    with open(SERVER_LOG, "rb") as fh:  # this test's part of the server log
        fh.seek(log_start)
        log = fh.read().decode(errors="replace")
    assert "Loading weights" not in log and "missing ScriptRunContext" not in log
