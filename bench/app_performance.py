"""App performance in a real headless Chromium (Selenium): cold start, page switches, the
cortical-map payload and the time to show the map of a cached comparison.

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
cached map   in a *new* browser session, Compare opened with ``run=1`` in the URL (the
             comparison is read from the disk cache) -> the 3-D map is drawn; and, in a
             session that already has the comparison, the switch back to Compare -> map drawn
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=3, help="rounds over all pages")
    ap.add_argument("--json", default=None, help="write the numbers here")
    ap.add_argument("--log", default=str(REPO / "test-artifacts" / "bench-app-server.log"))
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

            # cached comparison: a fresh session opens the shared URL with run=1
            query = "compare?a=demo-tuned&b=demo-vanilla&p=sub-01,sub-02&run=1&q=0.05&tab=Cortex+3-D"
            d2 = B.driver()
            try:
                d2.get(url + "/")
                B.wait_run(d2, 0, timeout=120)
                t = time.perf_counter()
                d2.get(url + "/" + query)
                B.wait_run(d2, 0, timeout=120)
                B.wait_for(d2, '[data-testid="stPlotlyChart"] .js-plotly-plot .gl-container, '
                               '[data-testid="stPlotlyChart"] .js-plotly-plot canvas', 60)
                results["cached_map_new_session_s"] = round(time.perf_counter() - t, 3)
                # in-session: leave and come back
                m = B.last_run(d2)
                B.click_nav(d2, "Home")
                m = B.wait_run(d2, m)
                t = time.perf_counter()
                B.click_nav(d2, "Compare")
                B.wait_run(d2, m)
                B.wait_for(d2, '[data-testid="stPlotlyChart"] .js-plotly-plot canvas', 60)
                results["cached_map_switch_back_s"] = round(time.perf_counter() - t, 3)
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
