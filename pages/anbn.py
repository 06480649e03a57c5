"""AN–BN: couple artificial neurons (query⊙key dimensions of every head) with brain networks
(Liu et al. 2023): top pairs, per-layer distributions, the BN map, time courses, POS
categories and the text heatmap of an AN's top query-key pairs."""

from brainviz.app_support import router

router.ensure()

import numpy as np
import streamlit as st

from brainviz.app_support import resources, state, sidebar
from brainviz.viz import cortex, export
from brainviz.viz import coupling as vcpl

ctx = sidebar.context()
summ = ctx["summary"]
sim = bool(summ and summ.get("simulated"))
state.page_title("AN–BN coupling", simulated=sim)
state.require_dataset(summ)
if summ["n_fmri_participants"] == 0:
    st.info("This dataset has no fMRI.")
    state.stop()

options = resources.encoder_models()
labels = list(options)
c = st.columns(3)
stories = summ["stories"]
state.widget_value("cpl_story", stories[0], qp="story", options=stories)
story = c[0].selectbox("Story", stories, key="cpl_story")
state.widget_value("cpl_model", "pretrained", qp="model", options=labels)
model = c[1].selectbox("Model", labels, key="cpl_model")
bn_opts = ["ica", "vsdbn"]
state.widget_value("cpl_bn", "ica", qp="bn", options=bn_opts)
bn_method = c[2].selectbox("Brain networks", bn_opts, key="cpl_bn",
                           help="ICA (fast) or the VS-DBN of the paper (quick preset)")
with st.expander("Coupling settings"):
    c = st.columns(4)
    state.widget_value("cpl_nbn", 32, qp="nbn", min_value=2, max_value=256)
    n_networks = c[0].number_input("BNs", 2, 256, key="cpl_nbn")
    state.widget_value("cpl_perm", 5000, qp="perm", min_value=0, max_value=20000)
    permutations = c[1].number_input("Permutations", 0, 20000, step=100, key="cpl_perm",
                                     help="Circular shifts: with at least T − 1 every lag is used once (exact, p ≥ 1/T).")
    state.widget_value("cpl_alpha", 0.05, qp="calpha", min_value=0.001, max_value=0.5)
    alpha = c[2].number_input("FDR level", 0.001, 0.5, key="cpl_alpha")
    state.widget_value("cpl_rthr", 0.25, qp="rthr", min_value=0.0, max_value=1.0)
    r_thr = c[3].number_input("weak-coupling r", 0.0, 1.0, key="cpl_rthr")

from brainviz.coupling import CouplingConfig, run_coupling  # noqa: E402

config = CouplingConfig(bn=bn_method, n_networks=int(n_networks), permutations=int(permutations),
                        alpha=float(alpha), r_threshold=float(r_thr))
key = (ctx["dataset_path"], story, options[model], config.key())
if st.button("Run coupling", type="primary", key="cpl_run"):
    with st.status("Coupling ANs with BNs…", expanded=True) as status:
        bar = st.progress(0.0, text="brain networks")
        try:
            result = run_coupling(ctx["dataset_path"], story, options[model], config,
                                  progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
        except Exception as exc:
            status.update(label=f"Coupling failed: {exc}", state="error")
            state.stop()
        st.session_state["coupling"] = {"key": key, "result": result}
        status.update(label="Coupling ready", state="complete", expanded=False)

res = st.session_state.get("coupling")
if not res or res["key"] != key:
    st.info("Press **Run coupling** (results are cached on disk; the brain networks are shared by all stories).")
    state.stop()
result = res["result"]
pairs = result.pairs()

m = st.columns(4)
m[0].metric("ANs", result.n_ans)
m[1].metric("BNs", result.n_bns)
m[2].metric(f"significant ANs (q ≤ {alpha:g}, Eq. 1 test)", int(pairs["significant"].sum()))
m[3].metric("mean best r", f"{pairs['r'].mean():.3f}")
tests = result.test_names()
reach = result.reachability()
if not pairs["significant"].any():
    why = reach["an_best_bn"]["message"] or (
        f"{result.n_ans} ANs tested over {result.n_trs} TRs; smallest p {pairs['p'].min():.3g}, smallest q "
        f"{pairs['q'].min():.3g}.")
    st.info(f"No AN passes q ≤ {alpha:g} ({tests['an_best_bn']}). {why} The **Cross-story** tab tests one "
            "pair per BN, selected on another story.")
if summ.get("modality") == "reading" and sim:
    st.caption("Note: the simulated networks to couple with are planted in the listening experiment only.")

tabs = state.lazy_tabs(["Top pairs", "Per layer", "BN map", "AN vs BN", "POS & text", "Cross-story"], key="cpl_tab",
                       qp="tab")
with tabs[0]:
    if state.tab_open(tabs[0]):
        state.widget_value("cpl_top", 50, qp="top", min_value=5, max_value=2000)
        top = st.number_input("Rows", 5, 2000, step=5, key="cpl_top")
        shown = pairs.sort_values("r", ascending=False).head(int(top))
        st.caption(f"p, q: {tests['an_best_bn']}.")
        st.dataframe(shown[["name", "layer", "head", "dim", "bn", "r", "p", "q", "significant"] +
                           (["tag"] if "tag" in shown else [])], hide_index=True, width="stretch", height=420)
        st.download_button("All pairs (CSV)", export.table_csv(pairs, sim), export.filename(f"anbn_{story}", "csv", sim),
                           "text/csv", key="cpl_dl")

with tabs[1]:
    if state.tab_open(tabs[1]):
        st.plotly_chart(vcpl.best_r_distribution(pairs, r_threshold=float(r_thr), simulated=sim), key="cpl_dist")
        best = result.best_pair_per_layer()
        st.plotly_chart(vcpl.best_pair_per_layer(best, simulated=sim), key="cpl_best")
        st.dataframe(result.layer_summary(), hide_index=True, width="stretch")

best_overall = pairs.sort_values("r", ascending=False).iloc[0]
names = pairs.sort_values("r", ascending=False)["name"].head(200).tolist()
with tabs[2]:
    if state.tab_open(tabs[2]):
        bns = list(range(result.n_bns))
        state.widget_value("cpl_bnsel", int(best_overall["bn"]), qp="bnk", options=bns)
        c = st.columns(4)
        bn = c[0].selectbox("BN", bns, key="cpl_bnsel")
        hemi = c[1].selectbox("Hemisphere", cortex.HEMI_CHOICES, key="cpl_hemi")
        view = c[2].selectbox("View", cortex.VIEWS, key="cpl_view")
        thr = c[3].slider("Hide |weight| below (fraction of max)", 0.0, 0.9, 0.3, key="cpl_thr")
        vec = np.asarray(result.bn_map(bn), dtype=float)
        if vec.size == 20484:
            mx = float(np.nanmax(np.abs(vec))) or 1.0
            atlas = resources.atlas("planted regions", ctx["dataset_path"]) if summ.get("has_ground_truth") else None
            st.plotly_chart(cortex.cortical_map(vec, threshold=thr * mx, hemi=hemi, view=view, title=f"BN {bn}",
                                                outline=None if atlas is None else atlas.labels,
                                                colorbar_title="weight", simulated=sim), key="cpl_map")
        else:
            st.info(f"BN maps have {vec.size} units (not fsaverage5).")
        st.caption(f"This table's p, q: {tests['bn_best_an']} (a different test from Top pairs, whose p is "
                   "an AN's best BN over all BNs)." + (f" {reach['bn_best_an']['message']}"
                                                        if reach['bn_best_an']['message'] else ""))
        st.dataframe(result.bn_pairs().query("bn == @bn"), hide_index=True, width="stretch")

with tabs[3]:
    if state.tab_open(tabs[3]):
        state.widget_value("cpl_an", names[0], qp="an", options=names)
        an_name = st.selectbox("AN (top 200 by r)", names, key="cpl_an")
        row = pairs[pairs["name"] == an_name].iloc[0]
        st.plotly_chart(vcpl.timecourses(result.times, result.an_timecourse(int(row["an"])), result.bn_timecourse(int(row["bn"])),
                                         an_label=an_name, bn_label=f"BN {int(row['bn'])}", r=float(row["r"]), simulated=sim),
                        key="cpl_tc")

with tabs[4]:
    if state.tab_open(tabs[4]):
        an_name = st.session_state.get("cpl_an", names[0])
        row = pairs[pairs["name"] == an_name].iloc[0]
        st.markdown(f"AN **{an_name}** (best BN {int(row['bn'])}, r = {row['r']:.3f})")
        if "pos_counts" not in result.arrays:
            st.info("POS tags were not computed.")
        else:
            st.plotly_chart(vcpl.pos_distribution(result.an_pos_distribution(int(row["an"])), simulated=sim), key="cpl_pos")
            th = result.text_heatmap(int(row["an"]))
            tok = th["tokens"]
            st.html(vcpl.text_heatmap_html(tok["token"].tolist(), tok["query_score"].to_numpy(), tok["key_score"].to_numpy(),
                                           segment=tok["segment"].to_numpy(), simulated=sim))
            with st.expander("Top query–key pairs"):
                st.dataframe(th["pairs"], hide_index=True, width="stretch")

with tabs[5]:
    if state.tab_open(tabs[5]):
        others = [x for x in stories if x != story]
        if not others:
            st.info("Cross-story pairing needs a second story in this dataset.")
        else:
            sel = st.multiselect("Select pairs on", others, default=others[:1], key="cpl_sel")
            st.caption(f"For each BN, its best AN (largest |r|, negative couplings included) is picked on the "
                       f"selected stories and only that pair is tested on **{story}**: one test per BN, circular-shift "
                       "null, BH over BNs; 95 % intervals from the null spread.")
            ckey = (key, tuple(sel))
            if sel and st.button("Run cross-story pairing", key="cpl_cross_run"):
                from brainviz.coupling import cross_story_coupling

                with st.status("Cross-story pairing…") as status:
                    df_cross = cross_story_coupling(ctx["dataset_path"], sel, story, options[model], config)
                    st.session_state["coupling_cross"] = {"key": ckey, "table": df_cross}
                    status.update(label="done", state="complete")
            cres = st.session_state.get("coupling_cross")
            if cres and cres["key"] == ckey:
                dfc = cres["table"]
                msg = dfc.attrs.get("reachability", {}).get("message")
                st.metric(f"BNs with a replicated coupling (q ≤ {alpha:g})", int(dfc["significant"].sum()))
                if msg:
                    st.info(msg)
                st.dataframe(dfc.drop(columns=["test"]), hide_index=True, width="stretch")
                st.download_button("Cross-story pairs (CSV)", export.table_csv(dfc, sim),
                                   export.filename(f"anbn_cross_{story}", "csv", sim), "text/csv", key="cpl_dl_cross")
state.remember("cpl_hemi", "cpl_view", "cpl_thr")
