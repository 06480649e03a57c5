"""Compare: models A vs B, 20-vs-20 on paired draws, seeds averaged, group or participant-level test, FDR; cortical
maps, flat map with selection, single-model maps, Fig. 2 curves, ROI bars and exports."""

from brainviz.app_support import router

router.ensure()

import numpy as np
import streamlit as st

from brainviz.app_support import compute, resources, state, sidebar
from brainviz.viz import cortex, curves, export, flatmap

ctx = sidebar.context()
summ = ctx["summary"]
sim = bool(summ and summ.get("simulated"))
state.page_title("Compare models", simulated=sim)

models = ctx["models"]
state.require_dataset(summ)
if len(models) < 1:
    from brainviz.app_support.first_run import offer_default_pair

    offer_default_pair(ctx)  # the default pair, all participants; inline progress; sets A and B when done
    state.stop()

model_a, model_b = ctx["model_a"], ctx["model_b"]
path_a, path_b = models[model_a], models[model_b]
try:
    both = compute.comparison_participants(path_a, path_b)
except Exception as exc:
    st.error(f"Cannot read held-out predictions: {exc}")
    state.stop()
pids = [p for p in ctx["participants"] if p in both] or both
st.markdown(f"**A** = `{model_a}` · **B** = `{model_b}` · participants: {', '.join(pids)}"
            + ("" if set(ctx["participants"]) <= set(both) else
               f"  \n_(only participants predicted by both models are used; both have {', '.join(both)})_"))

with st.expander("Comparison settings", expanded=False):
    c = st.columns(5)
    state.widget_value("cmp_n", 1000, qp="n", min_value=10, max_value=10000)
    n_samples = c[0].number_input("20-vs-20 draws per run", min_value=10, max_value=10000, step=50, key="cmp_n")
    state.widget_value("cmp_k", 20, qp="k", min_value=2, max_value=100)
    k = c[1].number_input("k (rows per draw)", min_value=2, max_value=100, key="cmp_k")
    state.widget_value("cmp_fdr", "bh", qp="fdr", options=["bh", "by", "none"])
    fdr = c[2].selectbox("FDR", ["bh", "by", "none"], key="cmp_fdr")
    state.widget_value("cmp_seed", 0, qp="seed", min_value=0)
    seed = c[3].number_input("draw seed", min_value=0, step=1, key="cmp_seed")
    alpha_opts = [0.001, 0.01, 0.05, 0.1]
    state.widget_value("cmp_alpha", 0.05, qp="alpha", options=alpha_opts)
    test_alpha = c[4].selectbox("significance level (q ≤)", alpha_opts, key="cmp_alpha")
    c = st.columns(4)
    level_opts = ["group", "participant"] if len(pids) >= 2 else ["participant"]
    state.widget_value("cmp_level", level_opts[0], qp="level", options=level_opts)
    level = c[0].selectbox("Test level", level_opts, key="cmp_level",
                           help="group: random effects across participants (does A predict brains better than B?); "
                                "participant: within each participant, across blocks of held-out TRs or runs. "
                                "Seeds are averaged, never used as samples.")
    test_opts = {"group": ["ttest", "sign-flip"],
                 "participant": ["block-sign-flip", "runs-ttest", "paper-initializations"]}[level]
    state.widget_value("cmp_test", test_opts[0], qp="test", options=test_opts)
    test = c[1].selectbox("Test", test_opts, key="cmp_test",
                          help="paper-initializations = the 2019 paper's t-test across seeds on one test set: it "
                               "measures training stability and fails our calibration as a test of A vs B.")
    state.widget_value("cmp_nperm", 10000, qp="nperm", min_value=100, max_value=100000)
    n_perm = c[2].number_input("sign flips (permutation tests)", min_value=100, max_value=100000, step=1000,
                               key="cmp_nperm")
    state.widget_value("cmp_block", 20.0, qp="block", min_value=4.0, max_value=120.0)
    block_s = c[3].number_input("block length (s, block-sign-flip)", min_value=4.0, max_value=120.0, step=2.0,
                                key="cmp_block")

from brainviz.evaluation import CompareConfig  # noqa: E402

config = CompareConfig(k=int(k), n_samples=int(n_samples), seed=int(seed), level=level, test=test, fdr=fdr,
                       alpha=float(test_alpha), n_permutations=int(n_perm), block_seconds=float(block_s))
run_key = (path_a, path_b, tuple(pids), config.key())
state.widget_value("cmp_done", 0, qp="run")
have = st.session_state.get("compare", {}).get("key") == run_key
clicked = st.button("Run comparison", type="primary", key="cmp_run")
auto = st.session_state.get("cmp_done") == 1 and not have and not st.session_state.get("_cmp_auto_tried")
if clicked or auto:
    st.session_state["_cmp_auto_tried"] = True
    with st.status("Comparing A and B…", expanded=True) as status:
        bar = st.progress(0.0, text="loading held-out predictions")
        try:
            result = compute.compare_with_progress(
                path_a, path_b, pids, config, names=(model_a, model_b),
                progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
        except Exception as exc:
            status.update(label=f"Comparison failed: {exc}", state="error")
            state.stop()
        maps = compute.comparison_maps(result, (model_a, model_b))
        st.session_state["compare"] = {"key": run_key, "maps": maps, "result": result,
                                       "from_cache": result.meta.get("from_cache")}
        st.session_state["cmp_done"] = 1
        status.update(label="Comparison ready" + (" (from cache)" if result.meta.get("from_cache") else ""),
                      state="complete", expanded=False)

res = st.session_state.get("compare")
if not res or res["key"] != run_key:
    st.info("Press **Run comparison** (results are cached: a repeated comparison is instant).")
    state.stop()
maps: compute.CompareMaps = res["maps"]
names = maps.names

# ---- display controls ---------------------------------------------------------------
c = st.columns(3)
q_opts = [0.001, 0.005, 0.01, 0.05, 0.1, 1.0]
state.widget_value("cmp_q", maps.alpha if maps.alpha in q_opts else 0.05, qp="q", options=q_opts)
alpha = c[0].select_slider("Display threshold: show q <", q_opts, key="cmp_q",
                           help="Only changes what the maps show. 'Significant' is fixed by the test and its level "
                                "in Comparison settings.")
group_ok = maps.group is not None
view_opts = (["group (all participants)"] if group_ok else []) + list(maps.participants)
state.widget_value("cmp_vp", view_opts[0], qp="vp", options=view_opts)
who = c[1].selectbox("Participant", view_opts, key="cmp_vp")
participant = None if (group_ok and who == view_opts[0]) else who
atlas_opts = resources.atlas_options(ctx["dataset_path"])
state.widget_value("cmp_atlas", "planted regions" if "planted regions" in atlas_opts else "none", qp="atlas",
                   options=atlas_opts)
atlas_name = c[2].selectbox("Outline / ROIs", atlas_opts, key="cmp_atlas")
atlas = resources.atlas(atlas_name, ctx["dataset_path"])

values, mask = maps.map("diff", participant, alpha)
sig = maps.significant(participant)
tested_by = maps.summary.get("test") if participant is None else maps.summary.get("participant_test")
m = st.columns(5)
m[0].metric("units", maps.n_units)
m[1].metric(f"significant (q ≤ {maps.alpha:g})", int(sig.sum()))
m[2].metric(f"{names[0]} better (significant)", int((sig & (values > 0)).sum()))
m[3].metric(f"{names[1]} better (significant)", int((sig & (values < 0)).sum()))
m[4].metric(f"shown (q < {alpha:g})", int(mask.sum()))
st.caption(f"Test: **{tested_by}** ({'group' if participant is None else 'participant'} level) · "
           + maps.describe())
if participant is None and maps.summary.get("explanation"):
    st.info(maps.summary["explanation"])
elif participant is not None and not sig.any():
    from brainviz.evaluation.compare import explain_empty  # noqa: E402

    st.info(explain_empty({participant: res["result"].tests[participant]}, "participant",
                          maps.summary.get("sample_sizes", {})))

surface = maps.n_units == 20484
tabs = state.lazy_tabs(["Cortex 3-D", "Flat map + selection", "Single model", "Fig. 2 curves", "ROIs", "Export"],
                       key="cmp_tab", qp="tab")
title = f"{names[0]} − {names[1]} (20-vs-20 accuracy), {tested_by}, shown q < {alpha:g}, {who}"

with tabs[0]:
    if state.tab_open(tabs[0]):
        if not surface:
            st.info(f"The units are not fsaverage5 vertices ({maps.n_units} units): see the ROIs and Export tabs.")
        else:
            cc = st.columns(3)
            state.widget_value("cmp_mesh", "inflated", qp="mesh", options=list(cortex.MESHES))
            mesh = cc[0].radio("Mesh", cortex.MESHES, key="cmp_mesh", horizontal=True)
            state.widget_value("cmp_hemi", "left", qp="hemi", options=list(cortex.HEMI_CHOICES))
            hemi = cc[1].radio("Hemisphere", cortex.HEMI_CHOICES, key="cmp_hemi", horizontal=True)
            state.widget_value("cmp_view", "lateral", qp="view", options=list(cortex.VIEWS))
            view = cc[2].selectbox("View", cortex.VIEWS, key="cmp_view")
            fig3d = cortex.cortical_map(values, mask=mask, mesh=mesh, hemi=hemi, view=view,
                                        outline=None if atlas is None else atlas.labels, title=title,
                                        colorbar_title="Δ accuracy", simulated=sim)
            st.session_state["cmp_fig_payload"] = len(fig3d.to_json())
            st.plotly_chart(fig3d, key="cmp_cortex", config={"toImageButtonOptions": {"format": "svg"}})

with tabs[1]:
    if state.tab_open(tabs[1]):
        if not surface:
            st.info("Flat maps need fsaverage5 data.")
        else:
            figflat = flatmap.flat_map(values, mask=mask, outline=None if atlas is None else atlas.labels,
                                       title=title + " — draw a box or lasso", colorbar_title="Δ accuracy",
                                       simulated=sim)
            event = st.plotly_chart(figflat, on_select="rerun", selection_mode=("box", "lasso"), key="cmp_flat")
            chosen = flatmap.selected_vertices(event)
            if chosen.size:
                st.session_state["cmp_selected"] = chosen
            else:
                chosen = st.session_state.get("cmp_selected", np.array([], dtype=np.int64))
            if chosen.size:
                df = maps.frame(participant, alpha, chosen)
                s = st.columns(5)
                s[0].metric("selected vertices", int(chosen.size))
                s[1].metric("mean Δ", f"{np.nanmean(df['diff']):+.4f}")
                s[2].metric(f"mean acc {names[0]}", f"{np.nanmean(df['acc_a']):.3f}")
                s[3].metric(f"mean acc {names[1]}", f"{np.nanmean(df['acc_b']):.3f}")
                s[4].metric(f"significant (q ≤ {maps.alpha:g})", int(df["significant"].sum()))
                st.dataframe(df, hide_index=True, width="stretch", height=300)
                st.download_button("Selection as CSV", export.table_csv(df, sim),
                                   export.filename("selection", "csv", sim), "text/csv", key="dl_sel")
            else:
                st.caption("Use the box or lasso tool of the map to select vertices.")

with tabs[2]:
    if state.tab_open(tabs[2]):
        cc = st.columns(3)
        single = cc[0].radio("Model", ["A", "B"], horizontal=True, key="cmp_single")
        metrics = ["twenty-vs-twenty", "pearson", "pove"]
        state.widget_value("cmp_metric", "twenty-vs-twenty", qp="metric", options=metrics)
        metric = cc[1].selectbox("Metric", metrics, key="cmp_metric")
        name_s, path_s = (model_a, path_a) if single == "A" else (model_b, path_b)
        if metric == "twenty-vs-twenty":
            vals_s, mask_s = maps.map("acc_a" if single == "A" else "acc_b", participant, 1.0)
            mask_s = np.isfinite(vals_s)
            label = "20-vs-20 accuracy (mean over seeds and runs)"
            st.caption("Accuracies of the comparison above (tested against chance on demand with the other metrics).")
        else:
            from brainviz.evaluation import EvaluateConfig
            from brainviz.evaluation.compare import evaluate_model

            ecfg = EvaluateConfig(metric=metric, n_samples=int(n_samples), alpha=config.alpha, fdr=config.fdr,
                                  level="group" if participant is None and group_ok else "participant",
                                  n_permutations=config.n_permutations, block_seconds=config.block_seconds)
            ekey = (path_s, tuple(maps.participants), ecfg.key())
            if st.session_state.get("evaluate", {}).get("key") != ekey:
                with st.status(f"Evaluating {name_s} ({metric})…") as s:
                    ev = evaluate_model(path_s, ecfg, participants=maps.participants)
                    st.session_state["evaluate"] = {"key": ekey, "result": ev}
                    s.update(label="done", state="complete")
            ev = st.session_state["evaluate"]["result"]
            pp = maps.participants if participant is None else [participant]
            vals_s = np.nanmean(np.stack([ev.mean_score(p) for p in pp]), axis=0)
            etest = ev.group if (participant is None and ev.group is not None) else ev.tests[pp[0]]
            mask_s = np.isfinite(etest.q) & (etest.q < alpha)
            label = metric
            st.caption(f"Against chance: **{etest.test}**, {ecfg.fdr.upper()} FDR; significant (q ≤ {ecfg.alpha:g}): "
                       f"{etest.n_significant} of {etest.n_tested} units; shown: q < {alpha:g}.")
        st.metric("mean over units", f"{np.nanmean(vals_s):.4f}")
        if surface:
            fig_s = cortex.cortical_map(vals_s, mask=mask_s, symmetric=False, colorscale="YlOrRd",
                                        mesh=st.session_state.get("cmp_mesh", "inflated"),
                                        hemi=st.session_state.get("cmp_hemi", "left"),
                                        view=st.session_state.get("cmp_view", "lateral"),
                                        outline=None if atlas is None else atlas.labels,
                                        title=f"{name_s}: {label}", colorbar_title=metric, simulated=sim)
            st.plotly_chart(fig_s, key="cmp_single_fig")
        st.plotly_chart(curves.accuracy_histogram(vals_s, chance=0.5 if metric == "twenty-vs-twenty" else 0.0,
                                                  name=label, simulated=sim), key="cmp_hist")

with tabs[3]:
    if state.tab_open(tabs[3]):
        fig2 = curves.fig2_curves(maps.summary["fig2"], names=names, simulated=sim)
        st.plotly_chart(fig2, key="cmp_fig2")
        st.caption("Units sorted by the larger of the two accuracies; y = mean (A − B) over the n best units. "
                   "Grey: each participant; red: their mean (Schwartz et al. 2019, Fig. 2).")

with tabs[4]:
    if state.tab_open(tabs[4]):
        if atlas is None:
            st.info("Choose an atlas (Outline / ROIs) above; `planted regions` is available for simulated data, other "
                    "atlases after `python -m brainviz fetch atlas NAME --dest data_cache/atlases`.")
        elif not surface:
            st.info("ROIs need fsaverage5 data.")
        else:
            table = compute.roi_table(res["result"], atlas, participant)
            st.plotly_chart(curves.roi_bars(table, names=names, simulated=sim), key="cmp_roi")
            st.caption(f"One test per ROI (units averaged within the ROI), FDR over ROIs: **{table['test'].iloc[0]}**, "
                       f"n = {int(table['n'].iloc[0])}; error bars: SE across participants.")
            st.dataframe(table, hide_index=True, width="stretch")
            st.download_button("ROI table (CSV)", lambda: export.table_csv(table, sim),
                               export.filename("roi_tests", "csv", sim), "text/csv", key="dl_roi")

with tabs[5]:
    if state.tab_open(tabs[5]):
        stem = f"{model_a}_vs_{model_b}"
        st.markdown("**Maps and tables** (files are built when you click)")

        def all_maps():
            out = {"diff": values, "significant": sig.astype(float), "shown": mask.astype(float)}
            if maps.group is not None:
                out["q_group"] = maps.group["q"]
            for pid in maps.participants:
                out[f"acc_a_{pid}"] = maps.acc_a[pid]
                out[f"acc_b_{pid}"] = maps.acc_b[pid]
                out[f"q_{pid}"] = maps.q[pid]
            return out

        cc = st.columns(3)
        if surface:
            cc[0].download_button("Maps (CSV, one row per vertex)", lambda: export.map_csv(all_maps(), sim),
                                  export.filename(stem + "_maps", "csv", sim), "text/csv", key="dl_maps")
            cc[1].download_button("A − B map (GIfTI lh/rh, zip)",
                                  lambda: export.maps_gifti_zip(values, name=f"{stem}_diff", simulated=sim,
                                                                meta={"test": str(tested_by), "alpha": maps.alpha,
                                                                      "display_q": alpha,
                                                                      "participants": ",".join(maps.participants)}),
                                  export.filename(stem + "_gifti", "zip", sim), "application/zip", key="dl_gii")
        cc[2].download_button("Per-unit table (CSV)", lambda: export.table_csv(maps.frame(participant, alpha), sim),
                              export.filename(stem + "_units", "csv", sim), "text/csv", key="dl_units")
        st.markdown("**Figures**")
        ok, why = export.image_export_available()
        if not ok:
            st.caption(f"PNG/SVG export on the server is unavailable here ({why}). The interactive HTML works "
                       "offline, and the camera button of any figure (also in the HTML) saves an SVG in the browser.")

        def fig_of(name):
            if name == "fig2":
                return curves.fig2_curves(maps.summary["fig2"], names=names, simulated=sim)
            return cortex.cortical_map(values, mask=mask, mesh=st.session_state.get("cmp_mesh", "inflated"),
                                       hemi=st.session_state.get("cmp_hemi", "left"),
                                       view=st.session_state.get("cmp_view", "lateral"),
                                       outline=None if atlas is None else atlas.labels, title=title, simulated=sim)

        for fname in ["fig2"] + (["cortex"] if surface else []):
            cc = st.columns(3)
            cc[0].download_button(f"{fname} (interactive HTML)", lambda f=fname: export.figure_html(fig_of(f)),
                                  export.filename(f"{stem}_{fname}", "html", sim), "text/html", key=f"dl_{fname}_html")
            if ok:
                for j, fmt in enumerate(("png", "svg")):
                    cc[j + 1].download_button(
                        f"{fname} ({fmt.upper()})",
                        lambda f=fname, fm=fmt: export.figure_image(fig_of(f), fm) or b"",
                        export.filename(f"{stem}_{fname}", fmt, sim), key=f"dl_{fname}_{fmt}")
state.remember("cmp_single")
