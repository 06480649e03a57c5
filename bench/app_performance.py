"""App performance: cold start, page switches, the cortical-map payload and the time to show the
map of a cached comparison in a real headless Chromium (Selenium), the static montage of a
cached comparison in a new Python process, and the server's memory after a comparison.

Usage::

    python bench/app_performance.py [--switches 3] [--json out.json]

Targets (issue): cold start to the first rendered page <= 5 s once the default dataset exists;
page switch <= 1 s; cortical-map figure payload <= 2 MB; map of a cached comparison <= 1 s.

Setup (not timed): the simulated default dataset is built in ``$BRAINVIZ_CACHE`` (default
``./data_cache``) when missing, the fsaverage5 mesh cache is written, and a small simulated
dataset + two demo prediction checkpoints (:mod:`brainviz.app_support.demo`) are made in
``<cache>/bench-app/`` for the comparison. The server runs with ``BRAINVIZ_MODELS`` pointing at
those checkpoints and ``BRAINVIZ_DATASETS`` adding the small dataset.

Definitions
-----------
cold start   ``streamlit run`` launched -> the Home page's last element drawn in a new browser
             (reported with its two parts: server ready, first page drawn)
page switch  click on a sidebar link -> the page's run finished and nothing left loading
             (each page once first, then ``--switches`` rounds; median and max reported)
payload      ``len(fig.to_json())`` of the Compare page's cortical map (each mesh x hemisphere)
cached map   in ``--sessions`` *new* browser sessions of a *new* server, one after the other,
             Compare opened with ``run=1`` in the URL (the comparison was computed by an earlier
             server: the first session reads it from the disk cache, the later ones from the
             server's memory) -> the static montage (an image) is drawn: measured from Python (navigation
             called -> Selenium sees the page's last element and the image) and by the page itself
             (``performance.now()`` from navigation start: websocket open, montage element in the
             page, montage image loaded, run's last element; the server's run start and end from
             the run marker, on the same clock);
             and, in a session that already has the comparison, the switch back to Compare ->
             montage drawn; then the interactive 3-D view switched on -> WebGL canvas drawn
montage      in a *new Python process* (mesh and raster caches warm on disk, as after a first
             launch): time from the first import to the JPEG bytes (what the page sends; the
             PNG's size is reported beside it) of the four-view montage of a
             cached comparison (the merged result the Compare page stored on disk when a first
             server computed it), split into imports / comparison read / first render, and a
             second render
server RSS   resident memory of the streamlit server process after the comparisons above
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from brainviz.app_support import browser as B  # noqa: E402

PAGES = ["Home", "Data", "Models", "Compare", "Attention", "AN–BN"]


def setup(cache: Path) -> dict[str, str]:
    from brainviz.app_support.demo import make_demo_checkpoints
    from brainviz.data.simulate import SimulationConfig, ensure_default_dataset, simulate
    from brainviz.viz import _mesh

    t = time.perf_counter()
    ensure_default_dataset()
    print(f"[setup] default dataset ready ({time.perf_counter() - t:.1f} s)", flush=True)
    _mesh.prewarm()
    bench = cache / "bench-app"
    small = bench / "datasets" / "small"
    if not (small / "reading" / "dataset.json").is_file():
        simulate(small, SimulationConfig(preset="small", seed=0), overwrite=True)
    models = bench / "models"
    if not (models / "demo-vanilla" / "card.json").is_file():
        make_demo_checkpoints(small / "reading", models, participants=["sub-01", "sub-02"], seeds=(0, 1, 2))
    print(f"[setup] done ({time.perf_counter() - t:.1f} s)", flush=True)
    return {"BRAINVIZ_CACHE": str(cache), "BRAINVIZ_MODELS": str(models),
            "BRAINVIZ_DATASETS": str(bench / "datasets")}


def payloads(env: dict[str, str]) -> dict[str, int]:
    """Payload of the Compare page's cortical map for every mesh x hemisphere."""
    os.environ.update(env)
    import numpy as np

    from brainviz.app_support import compute
    from brainviz.data.atlases import simulated_atlas
    from brainviz.evaluation import CompareConfig
    from brainviz.viz import cortex

    models = Path(env["BRAINVIZ_MODELS"])
    res = compute.compare_with_progress(str(models / "demo-tuned"), str(models / "demo-vanilla"), ["sub-01", "sub-02"],
                                        CompareConfig(alpha=0.05))
    maps = compute.comparison_maps(res, ("demo-tuned", "demo-vanilla"))
    values, mask = maps.map("diff", None, 0.05)
    atlas = simulated_atlas(Path(env["BRAINVIZ_DATASETS"]) / "small" / "reading")
    out = {}
    for mesh in cortex.MESHES:
        for hemi in cortex.HEMI_CHOICES:
            fig = cortex.cortical_map(values, mask=mask, mesh=mesh, hemi=hemi, outline=atlas.labels, simulated=True)
            out[f"{mesh}/{hemi}"] = len(fig.to_json())
    assert np.isfinite(values).any()
    return out


MONTAGE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from brainviz.app_support import compute
from brainviz.evaluation import CompareConfig
from brainviz.evaluation.compare import ComparisonResult
from brainviz.viz import montage
t1 = time.perf_counter()
with np.load(sys.argv[1], allow_pickle=False) as npz:
    res = ComparisonResult.from_arrays({k: npz[k] for k in npz.files}, CompareConfig(alpha=0.05))
maps = compute.comparison_maps(res, ("demo-tuned", "demo-vanilla"))
values, mask = maps.map("diff", None, 0.05)
t2 = time.perf_counter()
img = montage.montage_jpeg(values, mask=mask, title="demo-tuned - demo-vanilla", subtitle=maps.describe(),
                           colorbar_title=montage.difference_title(maps.names), simulated=True)
t3 = time.perf_counter()
img2 = montage.montage_jpeg(values, mask=mask, threshold=0.01, colorbar_title="x", simulated=True)
t4 = time.perf_counter()
png = montage.montage_png(values, mask=mask, title="demo-tuned - demo-vanilla", subtitle=maps.describe(),
                          colorbar_title=montage.difference_title(maps.names), simulated=True)
assert img[:2] == img2[:2] == b"\xff\xd8" and png[:8] == b"\x89PNG\r\n\x1a\n"
print(json.dumps({"imports_s": t1 - t0, "comparison_read_s": t2 - t1, "first_render_s": t3 - t2,
                  "import_to_image_s": t3 - t0, "second_render_s": t4 - t3, "jpeg_bytes": len(img),
                  "png_bytes": len(png)}))
"""
# Times measured by the page itself, from navigation start (performance.now()): Selenium's polling
# of the page (execute_script every 50 ms, while the page is busy rendering) adds its own delay
IN_PAGE_CLOCK = r'''
window.__bv_clock = {};
const mark = (k) => { if (!(k in window.__bv_clock)) window.__bv_clock[k] = performance.now(); };
document.addEventListener('DOMContentLoaded', () => mark('dom_ready'));
const OrigWS = window.WebSocket;
window.WebSocket = function(...a) { const w = new OrigWS(...a); w.addEventListener('open', () => mark('websocket_open')); return w; };
window.WebSocket.prototype = OrigWS.prototype; Object.assign(window.WebSocket, OrigWS);
new MutationObserver(() => {
  const img = document.querySelector('img.bv-montage');
  if (img && !('montage_in_page' in window.__bv_clock)) {
    mark('montage_in_page');
    if (img.complete) mark('montage_drawn'); else img.addEventListener('load', () => mark('montage_drawn'));
  }
  if (document.querySelector('.bv-run-done')) mark('run_done');
}).observe(document, {subtree: true, childList: true});
'''
QUERY = "compare?a=demo-tuned&b=demo-vanilla&p=sub-01,sub-02&run=1&q=0.05&tab=Cortex"
IMAGE = 'img.bv-montage'  # the montage, inline in the page (state.inline_image)


def warm_comparison(env: dict[str, str], log: Path) -> Path:
    """Run the comparison once in a first server (as a user pressing Run would); the Compare page
    stores the merged result in ``<cache>/compare-merged/``. Returns that file."""
    root = Path(env["BRAINVIZ_CACHE"]) / "compare-merged"
    before = set(root.glob("*.npz")) if root.is_dir() else set()
    d = B.driver()
    try:
        with B.server(env, log_path=log) as url:
            d.get(url + "/" + QUERY)
            B.wait_run(d, 0, timeout=600)
            B.wait_for(d, IMAGE, 600)
    finally:
        d.quit()
    files = sorted(root.glob("*.npz"), key=lambda p: p.stat().st_mtime)
    new = [f for f in files if f not in before]
    return (new or files)[-1]


def montage_new_process(env: dict[str, str], stored: Path, repeats: int = 3) -> dict[str, float]:
    """Static montage of a cached comparison in fresh Python processes (median of ``repeats``)."""
    import subprocess

    from brainviz.viz import montage

    os.environ.update(env)
    montage.prewarm()  # the raster look-ups, as the app's first launch leaves them on disk
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", MONTAGE_SCRIPT, str(stored)], cwd=str(REPO),
                             env={**os.environ, **env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = [k for k in runs[0] if k.endswith("_s")]
    res = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    res["jpeg_bytes"], res["png_bytes"] = runs[0]["jpeg_bytes"], runs[0]["png_bytes"]
    res["repeats"] = repeats
    print("montage in a new process", res, flush=True)
    return res


def new_session(d, url: str, settle: float = 1.0) -> dict:
    """A new browser session opens Home, then the shared Compare link: Selenium's time and the
    page's own clock (see :data:`IN_PAGE_CLOCK`), with the server's run on the same clock."""
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": IN_PAGE_CLOCK})
    d.get(url + "/")
    B.wait_run(d, 0, timeout=120)
    time.sleep(settle)  # a browser that just started (and the previous one's exit) still works in the background
    t = time.perf_counter()
    d.get(url + "/" + QUERY)
    B.wait_run(d, 0, timeout=120)
    B.wait_for(d, IMAGE, 60)
    selenium_s = time.perf_counter() - t
    clock = d.execute_script("return window.__bv_clock || {};")
    origin = d.execute_script("return performance.timeOrigin;")   # both clocks: this machine's wall clock
    marker = d.find_element("css selector", ".bv-run-done")
    t0, ms = float(marker.get_attribute("data-server-t0")), float(marker.get_attribute("data-server-ms"))
    clock["server_run_start"], clock["server_run_end"] = t0 - origin, t0 - origin + ms
    return {"selenium_s": round(selenium_s, 3),
            "in_page_s": {k: round(v / 1000, 3) for k, v in sorted(clock.items(), key=lambda kv: kv[1])}}


def server_rss_mb(url: str) -> float | None:
    """Resident memory (MB) of the streamlit process serving ``url`` (Linux /proc), or None."""
    port = url.rsplit(":", 1)[-1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"streamlit" in b" ".join(cmd) and port.encode() in cmd:
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=3, help="rounds over all pages")
    ap.add_argument("--sessions", type=int, default=5, help="new browser sessions opening the shared Compare link")
    ap.add_argument("--json", default=None, help="write the numbers here")
    ap.add_argument("--log", default=str(REPO / "test-artifacts" / "bench-app-server.log"))
    ap.add_argument("--montage-only", action="store_true", help="only the payloads and the new-process montage")
    args = ap.parse_args(argv)
    if not B.install_browser():
        print("no chromium/chromedriver and none can be installed: cannot measure", file=sys.stderr)
        return 2
    cache = Path(os.environ.get("BRAINVIZ_CACHE") or REPO / "data_cache").resolve()
    env = setup(cache)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}

    # warm the on-disk comparison cache (as after a first Run) and measure payloads
    results["payload_bytes"] = payloads(env)
    stored = warm_comparison(env, Path(args.log))
    results["montage_new_process"] = montage_new_process(env, stored)
    if args.montage_only:
        results["load_average"] = os.getloadavg()
        print(json.dumps(results, indent=2))
        return 0

    d = B.driver()
    try:
        d.get("about:blank")
        t0 = time.perf_counter()
        with B.server(env, log_path=Path(args.log)) as url:
            t_ready = time.perf_counter() - t0
            d.get(url + "/")
            n = B.wait_run(d, 0, timeout=120)
            t_first = time.perf_counter() - t0
            results["cold_start_s"] = round(t_first, 3)
            results["cold_start_server_ready_s"] = round(t_ready, 3)
            results["cold_start_first_page_s"] = round(t_first - t_ready, 3)
            print(f"cold start {t_first:.2f} s (server {t_ready:.2f} s + page {t_first - t_ready:.2f} s)", flush=True)

            first_visit, switches = {}, {p: [] for p in PAGES}
            for page in PAGES[1:] + ["Home"]:
                t = time.perf_counter()
                B.click_nav(d, page)
                n = B.wait_run(d, n, timeout=180)
                first_visit[page] = round(time.perf_counter() - t, 3)
            for _ in range(args.switches):
                for page in PAGES[1:] + ["Home"]:
                    t = time.perf_counter()
                    B.click_nav(d, page)
                    n = B.wait_run(d, n, timeout=180)
                    switches[page].append(time.perf_counter() - t)
            allsw = [x for v in switches.values() for x in v]
            results["page_switch_first_visit_s"] = first_visit
            results["page_switch_median_s"] = {p: round(statistics.median(v), 3) for p, v in switches.items() if v}
            results["page_switch_max_s"] = {p: round(max(v), 3) for p, v in switches.items() if v}
            results["page_switch_overall_median_s"] = round(statistics.median(allsw), 3)
            results["page_switch_overall_max_s"] = round(max(allsw), 3)
            print("page switch median/max", results["page_switch_median_s"], results["page_switch_max_s"], flush=True)

            # cached comparison: fresh sessions (new browsers) open the shared URL with run=1; the
            # first one reads the comparison from the disk cache, the others from the server's memory
            sessions = []
            for i in range(args.sessions):
                d2 = B.driver()
                try:
                    sessions.append(new_session(d2, url))
                except BaseException:
                    d2.quit()
                    raise
                print(f"new session {i + 1}, in-page clock (s from navigation start):", sessions[-1]["in_page_s"],
                      flush=True)
                if i < args.sessions - 1:
                    d2.quit()
            first, rest = sessions[0], sessions[1:] or sessions
            drawn = [x["in_page_s"].get("montage_drawn", float("nan")) for x in rest]
            results["cached_map_new_session_s"] = first["selenium_s"]
            results["cached_map_new_session_in_page_s"] = first["in_page_s"]
            results["cached_map_new_sessions_montage_drawn_s"] = {
                "first (comparison read from disk)": first["in_page_s"].get("montage_drawn"),
                "later sessions": [round(x, 3) for x in drawn], "median of later": round(statistics.median(drawn), 3),
                "selenium median of later": round(statistics.median(x["selenium_s"] for x in rest), 3)}
            print("new sessions, montage drawn:", results["cached_map_new_sessions_montage_drawn_s"], flush=True)
            try:
                # in-session: leave and come back
                m = B.last_run(d2)
                B.click_nav(d2, "Home")
                m = B.wait_run(d2, m)
                t = time.perf_counter()
                B.click_nav(d2, "Compare")
                m = B.wait_run(d2, m)
                B.wait_for(d2, IMAGE, 60)
                results["cached_map_switch_back_s"] = round(time.perf_counter() - t, 3)
                # the interactive 3-D view, on demand
                t = time.perf_counter()
                toggle = next(e for e in d2.find_elements("css selector", '[data-testid="stCheckbox"], '
                                                                         '[data-testid="stToggle"]')
                              if "Interactive 3-D" in e.text)
                toggle.click()
                B.wait_run(d2, m, timeout=120)
                B.wait_for(d2, '[data-testid="stPlotlyChart"] .js-plotly-plot canvas', 60)
                results["interactive_3d_on_demand_s"] = round(time.perf_counter() - t, 3)
                results["server_rss_mb"] = server_rss_mb(url)
                results["exceptions"] = B.exceptions(d) + B.exceptions(d2)
            finally:
                d2.quit()
    finally:
        d.quit()
    results["targets"] = {"cold_start_s": 5.0, "page_switch_s": 1.0, "payload_bytes": 2_000_000, "cached_map_s": 1.0}
    results["load_average"] = os.getloadavg()
    results["cpus"] = os.cpu_count()
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
