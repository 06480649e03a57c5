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
    state.widget_value("cpl_nbn", 32, qp="nbn")
    n_networks = c[0].number_input("BNs", 2, 256, key="cpl_nbn")
    state.widget_value("cpl_perm", 500, qp="perm")
    permutations = c[1].number_input("Permutations", 0, 20000, step=100, key="cpl_perm")
    state.widget_value("cpl_alpha", 0.05, qp="calpha")
    alpha = c[2].number_input("FDR level", 0.001, 0.5, key="cpl_alpha")
    state.widget_value("cpl_rthr", 0.25, qp="rthr")
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
m[2].metric("significant ANs", int(pairs["significant"].sum()))
m[3].metric("mean best r", f"{pairs['r'].mean():.3f}")

tabs = state.lazy_tabs(["Top pairs", "Per layer", "BN map", "AN vs BN", "POS & text"], key="cpl_tab", qp="tab")
with tabs[0]:
    if state.tab_open(tabs[0]):
        state.widget_value("cpl_top", 50, qp="top")
        top = st.number_input("Rows", 5, 2000, step=5, key="cpl_top")
        shown = pairs.sort_values("r", ascending=False).head(int(top))
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
state.remember("cpl_hemi", "cpl_view", "cpl_thr")
