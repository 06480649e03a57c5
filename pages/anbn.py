"""AN–BN: couple artificial neurons (query⊙key dimensions of every head) with brain networks
(Liu et al. 2023). First the cross-story validated pairs of the chosen story (each BN's AN
picked on the other stories, tested once on this one), the negative controls and — for
simulated data — the planted truth beside what was recovered; then the descriptive views:
top pairs, per-layer distributions, the BN map, time courses, POS categories and the text
heatmap of an AN's top query-key pairs.

Layers, heads and dimensions are shown 1-based (L1–L6, as on the Attention page). A link
reopens the computed view from the disk caches without pressing Compute again."""

from brainviz.app_support import router

router.ensure()

import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

from brainviz import surface  # noqa: E402
from brainviz.app_support import resources, sidebar, state  # noqa: E402
from brainviz.viz import cortex, export  # noqa: E402
from brainviz.viz import coupling as vcpl  # noqa: E402

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
story = c[0].selectbox("Story", stories, key="cpl_story",
                       help="Pairs are tested on this story after being selected on the other stories.")
state.widget_value("cpl_model", "pretrained", qp="model", options=labels)
model = c[1].selectbox("Model", labels, key="cpl_model")
bn_opts = ["ica", "vsdbn"]
state.widget_value("cpl_bn", "ica", qp="bn", options=bn_opts)
bn_method = c[2].selectbox("Brain networks", bn_opts, key="cpl_bn",
                           help="ICA (fast, default) or the VS-DBN of the paper (quick preset)")
with st.expander("Coupling settings"):
    c = st.columns(5)
    state.widget_value("cpl_nbn", 32, qp="nbn", min_value=2, max_value=256)
    n_networks = c[0].number_input("BNs", 2, 256, key="cpl_nbn")
    group_opts = ["average", "concat"]
    state.widget_value("cpl_group", "average", qp="group", options=group_opts)
    group = c[1].selectbox("Train networks on", group_opts, key="cpl_group",
                           help="average: participant-averaged data of each story (recovers planted networks "
                                "best); concat: all participants' TRs (the paper)")
    state.widget_value("cpl_perm", 5000, qp="perm", min_value=0, max_value=20000)
    permutations = c[2].number_input("Permutations (Eq. 1/2)", 0, 20000, step=100, key="cpl_perm",
                                     help="Circular shifts of the descriptive within-story tests: with at least T − 1 "
                                          "every lag is used once (exact, p ≥ 1/T). The cross-story test chooses its "
                                          "own number of phase-randomised draws so that the FDR level is reachable.")
    state.widget_value("cpl_alpha", 0.05, qp="calpha", min_value=0.001, max_value=0.5)
    alpha = c[3].number_input("FDR level", 0.001, 0.5, key="cpl_alpha")
    state.widget_value("cpl_rthr", 0.25, qp="rthr", min_value=0.0, max_value=1.0)
    r_thr = c[4].number_input("weak-coupling r", 0.0, 1.0, key="cpl_rthr")

from brainviz.coupling import CouplingConfig, run_coupling  # noqa: E402
from brainviz.coupling.api import validated_pairs  # noqa: E402
from brainviz.coupling.truth import bn_roles, planted_networks, planted_recovery  # noqa: E402

config = CouplingConfig(bn=bn_method, n_networks=int(n_networks), group=group, permutations=int(permutations),
                        alpha=float(alpha), r_threshold=float(r_thr))
shuffled_config = config.replace(shuffle_words=True, pos=False)
model_src = options[model]
key = (ctx["dataset_path"], story, model_src, config.key())
several = len(stories) > 1


# loaded once per server process (loading validates every array: ~0.5 s on the default dataset);
# also used by _compute_all's worker thread, where no Streamlit call may run
dataset_obj = resources.dataset(ctx["dataset_path"])


def _compute_all(progress) -> dict:
    """Everything the page shows: this story's result, validated pairs (real and shuffled words),
    planted truth. Each step is cached on disk."""
    out = {}
    if several:
        out["pairs"] = validated_pairs(dataset_obj, model_src, config, lambda f, m: progress(0.75 * f, m))
        out["shuffled"] = validated_pairs(dataset_obj, model_src, shuffled_config,
                                          lambda f, m: progress(0.75 + 0.2 * f, "shuffled-word control: " + m))
    out["result"] = run_coupling(dataset_obj, story, model_src, config, lambda f, m: progress(0.95 + 0.05 * f, m))
    if several:
        out["recovery"] = planted_recovery(dataset_obj, model_src, config, pairs=out["pairs"])
    return out


def _restore() -> dict | None:
    """The view from the disk caches only (a link or a page switch), or None."""
    try:
        result = run_coupling(dataset_obj, story, model_src, config, cached_only=True)
        if result is None:
            return None
        out = {"result": result}
        if several:
            out["pairs"] = validated_pairs(dataset_obj, model_src, config, cached_only=True)
            out["shuffled"] = validated_pairs(dataset_obj, model_src, shuffled_config, cached_only=True)
            if out["pairs"] is None or out["shuffled"] is None:
                return None
            out["recovery"] = planted_recovery(dataset_obj, model_src, config, pairs=out["pairs"])
        return out
    except Exception:  # a stale or partial cache entry: compute again
        return None


if st.button("Compute", type="primary", key="cpl_run"):
    box = {"f": 0.0, "msg": "starting", "out": None, "error": None}

    def work() -> None:
        try:
            box["out"] = _compute_all(lambda f, m: box.update(f=min(max(float(f), 0.0), 1.0), msg=m))
        except Exception as exc:  # shown below
            box["error"] = exc

    with st.status("Coupling ANs with BNs…", expanded=True) as status:
        bar = st.progress(0.0, text="starting")
        worker = threading.Thread(target=work, daemon=True)
        t0 = time.time()
        worker.start()
        spin = "◐◓◑◒"
        i = 0
        while worker.is_alive():
            worker.join(0.3)
            i += 1
            bar.progress(box["f"], text=f"{spin[i % 4]} {box['msg']} — {time.time() - t0:.0f} s")
        if box["error"] is not None:
            status.update(label=f"Coupling failed: {box['error']}", state="error")
            state.stop()
        st.session_state["coupling"] = {"key": key, **box["out"]}
        status.update(label=f"Coupling ready ({time.time() - t0:.0f} s)", state="complete", expanded=False)

res = st.session_state.get("coupling")
if not res or res.get("key") != key:
    restored = _restore()
    if restored is not None:
        res = st.session_state["coupling"] = {"key": key, **restored}
if not res or res.get("key") != key:
    st.info("Press **Compute** (results are cached on disk; the brain networks are shared by all stories, and a "
            "link to this view reopens it without computing again).")
    state.stop()

result = res["result"]
pairs = result.pairs()
pairs1 = vcpl.one_based(pairs)
truth = planted_networks(dataset_obj) if sim else None
roles = bn_roles(result.maps, truth)

# -- validated pairs, controls, planted truth ---------------------------------------------------
st.subheader(f"Validated pairs — tested on {story}")
if not several:
    st.info("Cross-story validation needs a second story in this dataset: pairs are selected on one story and "
            "tested on another. Only the descriptive within-story tables below are available.")
    if sim and truth is None:
        st.info("This simulated dataset has no planted networks (the reading experiment plants language regions "
                "only): there is no planted truth to compare the pairs with. The listening experiment has them.")
else:
    vp = res["pairs"]
    mine = vcpl.one_based(vp[vp["test_on"] == story].copy())
    mine.insert(1, "planted", [roles[b] for b in mine["bn"]])
    n_sig = int(mine["significant"].sum())
    m = st.columns(4)
    m[0].metric(f"BNs with a validated AN (q ≤ {alpha:g})", f"{n_sig} / {len(mine)}")
    shuf = res["shuffled"]
    shuf_s = shuf[shuf["test_on"] == story]
    m[1].metric("… with shuffled words (control)", f"{int(shuf_s['significant'].sum())} / {len(shuf_s)}")
    m[2].metric("selected on", mine["select"].iloc[0])
    m[3].metric("null draws per test", f"{config.cross_draws(len(mine)):,}")
    st.caption(f"{mine['test'].iloc[0]}. Effect size: r of the pair on {story} with a 95 % block-bootstrap interval; "
               "the sign is the direction chosen on the selection story (query–key products have no fixed sign). "
               "Significant pairs first.")
    cols = ["bn", "planted", "name", "layer", "head", "dim", "direction", "r_select", "r_test", "ci_low", "ci_high",
            "q", "significant"]
    st.dataframe(mine[cols], hide_index=True, width="stretch", height=320)
    st.download_button("Validated pairs, all stories (CSV)", export.table_csv(vcpl.one_based(vp), sim),
                       export.filename("anbn_validated", "csv", sim), "text/csv", key="cpl_dl_valid")

    st.markdown("**Negative controls**")
    ctrl_lines = [f"- Shuffled words (the ANs of every story computed from its words in random order, timings kept): "
                  f"{int(shuf_s['significant'].sum())} of {len(shuf_s)} BNs pass q ≤ {alpha:g} on {story} "
                  f"(smallest q {shuf_s['q'].min():.3f}); with every BN null, BH keeps the chance of any at ≤ {alpha:g}."]
    rec = res.get("recovery")
    if rec is not None:
        rs = rec[rec["test_on"] == story]
        for _, r in rs[rs["role"] == "control"].iterrows():
            ctrl_lines.append(f"- Planted control network **{r['network']}** (a random soundtrack envelope, no "
                              f"linguistic content) → BN {r['bn']} (spatial r {r['spatial_r']:.2f}): r on {story} "
                              f"{r['r_test']:+.2f}, q {r['q']:.3f} — {r['outcome']}.")
    st.markdown("\n".join(ctrl_lines))

    if rec is not None:
        st.markdown("**Planted truth beside the recovered pairs (simulated)**")
        rs = rec[rec["test_on"] == story]
        n_coupled = int((rs["role"] == "coupled").sum())
        found = int((rs["outcome"] == "found").sum())
        st.caption(f"{found} of {n_coupled} networks planted to couple were found with a validated pair on {story}. "
                   "Each planted network is matched to the BN whose map correlates best with it; the ceiling is the "
                   "spatial r of maps regressed on the true time courses.")
        show = rs.assign(AN=[vcpl.an_label_of(a, result.shape.n_heads, result.shape.head_dim) for a in rs["an"]])
        st.dataframe(show[["network", "role", "driver", "expected", "bn", "spatial_r", "ceiling", "tc_r", "AN",
                           "r_test", "ci_low", "ci_high", "q", "outcome"]], hide_index=True, width="stretch")
        st.plotly_chart(vcpl.planted_vs_recovered(rec, simulated=sim), key="cpl_truth")
    elif sim:
        st.info("This simulated dataset has no planted networks (the reading experiment plants language regions "
                "only): there is no planted truth to compare the pairs with. Open the listening experiment for "
                "that.")
    else:
        st.caption("Real data: no planted truth.")

# -- descriptive within-story views ---------------------------------------------------------------
st.subheader(f"Within-story pairs on {story} (descriptive)")
m = st.columns(4)
m[0].metric("ANs", result.n_ans)
m[1].metric("BNs", result.n_bns)
m[2].metric(f"significant ANs (q ≤ {alpha:g}, Eq. 1 test)", int(pairs["significant"].sum()))
m[3].metric("mean best r", f"{pairs['r'].mean():.3f}")
tests = result.test_names()
reach = result.reachability()
if not pairs["significant"].any() and int(permutations) > 0:
    why = reach["an_best_bn"]["message"] or (
        f"{result.n_ans} ANs tested over {result.n_trs} TRs; smallest p {pairs['p'].min():.3g}, smallest q "
        f"{pairs['q'].min():.3g}.")
    st.caption(f"No AN passes q ≤ {alpha:g} ({tests['an_best_bn']}). {why} The validated pairs above test one "
               "pair per BN, selected on another story.")

tabs = state.lazy_tabs(["Top pairs", "Per layer", "BN map", "AN vs BN", "POS & text"], key="cpl_tab", qp="tab")
with tabs[0]:
    if state.tab_open(tabs[0]):
        state.widget_value("cpl_top", 50, qp="top", min_value=5, max_value=2000)
        top = st.number_input("Rows", 5, 2000, step=5, key="cpl_top")
        shown = pairs1.sort_values("r", ascending=False).head(int(top))
        st.caption(f"p, q: {tests['an_best_bn']}. Layers, heads and dimensions are 1-based.")
        st.dataframe(shown[["name", "layer", "head", "dim", "bn", "r", "p", "q", "significant"] +
                           (["tag"] if "tag" in shown else [])], hide_index=True, width="stretch", height=420)
        st.download_button("All pairs (CSV)", export.table_csv(pairs1, sim), export.filename(f"anbn_{story}", "csv", sim),
                           "text/csv", key="cpl_dl")

with tabs[1]:
    if state.tab_open(tabs[1]):
        st.plotly_chart(vcpl.best_r_distribution(pairs1, r_threshold=float(r_thr), simulated=sim), key="cpl_dist")
        best = vcpl.one_based(result.best_pair_per_layer())
        st.plotly_chart(vcpl.best_pair_per_layer(best, simulated=sim), key="cpl_best")
        st.dataframe(result.layer_summary().assign(layer=lambda d: d["layer"] + 1, best_head=lambda d: d["best_head"] + 1,
                                                   best_dim=lambda d: d["best_dim"] + 1),
                     hide_index=True, width="stretch")

best_overall = pairs1.sort_values("r", ascending=False).iloc[0]
names = pairs1.sort_values("r", ascending=False)["name"].head(200).tolist()
with tabs[2]:
    if state.tab_open(tabs[2]):
        bns = list(range(result.n_bns))
        state.widget_value("cpl_bnsel", int(best_overall["bn"]), qp="bnk", options=bns)
        c = st.columns(4)
        bn = c[0].selectbox("BN", bns, key="cpl_bnsel", format_func=lambda b: f"{b} · {roles[b]}" if roles[b] else str(b))
        hemi = c[1].selectbox("Hemisphere", cortex.HEMI_CHOICES, key="cpl_hemi")
        view = c[2].selectbox("View", cortex.VIEWS, key="cpl_view")
        thr = c[3].slider("Hide |weight| below (fraction of max)", 0.0, 0.9, 0.3, key="cpl_thr")
        vec = np.asarray(result.bn_map(bn), dtype=float)
        if surface.is_fsaverage5(vec.size):
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
        st.dataframe(vcpl.one_based(result.bn_pairs()).query("bn == @bn"), hide_index=True, width="stretch")

with tabs[3]:
    if state.tab_open(tabs[3]):
        state.widget_value("cpl_an", names[0], qp="an", options=names)
        an_name = st.selectbox("AN (top 200 by r)", names, key="cpl_an")
        row = pairs1[pairs1["name"] == an_name].iloc[0]
        st.plotly_chart(vcpl.timecourses(result.times, result.an_timecourse(int(row["an"])), result.bn_timecourse(int(row["bn"])),
                                         an_label=an_name, bn_label=f"BN {int(row['bn'])}", r=float(row["r"]), simulated=sim),
                        key="cpl_tc")

with tabs[4]:
    if state.tab_open(tabs[4]):
        an_name = st.session_state.get("cpl_an", names[0])
        if an_name not in set(pairs1["name"]):
            an_name = names[0]
        row = pairs1[pairs1["name"] == an_name].iloc[0]
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
