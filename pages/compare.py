"""Compare: models A vs B, 20-vs-20 on paired draws, seeds averaged, group or participant-level test, FDR; a static
four-view montage first (interactive 3-D on demand), a curvature-shaded flat map with click/box/lasso selection
linked to held-out time courses, single-model maps centred on chance, Fig. 2 curves, ROI bars with SE, exports."""

from brainviz.app_support import router

router.ensure()

import numpy as np
import streamlit as st

from brainviz import surface
from brainviz.app_support import compute, resources, state, sidebar
from brainviz.viz import cortex, curves, export, flatmap, heldout, montage

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
chosen = [p for p in ctx["participants"] if p in both]
pids = chosen or both
if not chosen:
    st.warning(f"None of the participants chosen in the sidebar ({', '.join(ctx['participants']) or 'none'}) has "
               f"held-out predictions from both models; showing every participant both models predict instead.")
st.markdown(f"**A** = `{model_a}` · **B** = `{model_b}` · participants: {', '.join(pids)}"
            + ("" if set(ctx["participants"]) <= set(both) or not chosen else
               f"  \n_(only participants predicted by both models are used; both have {', '.join(both)})_"))

# The montage is sent before the page's widgets (state.draw_later: a new tab drew it ~0.2 s sooner).
# Widgets keep their place (containers created in layout order); their values are read from
# st.session_state, prepared by state.widget_value, before they are drawn.
settings_box = st.expander("Comparison settings", expanded=False, key="cmp_settings", on_change="rerun")
level_opts = ["group", "participant"] if len(pids) >= 2 else ["participant"]
alpha_opts = [0.001, 0.01, 0.05, 0.1]
state.widget_value("cmp_n", 1000, qp="n", min_value=10, max_value=10000)
state.widget_value("cmp_k", 20, qp="k", min_value=2, max_value=100)
state.widget_value("cmp_fdr", "bh", qp="fdr", options=["bh", "by", "none"])
state.widget_value("cmp_seed", 0, qp="seed", min_value=0)
state.widget_value("cmp_alpha", 0.05, qp="alpha", options=alpha_opts)
state.widget_value("cmp_level", level_opts[0], qp="level", options=level_opts)
test_opts = {"group": ["auto", "ttest-by-run", "ttest", "sign-flip"],
             "participant": ["block-sign-flip", "runs-ttest", "paper-initializations"]}[st.session_state["cmp_level"]]
state.widget_value("cmp_test", test_opts[0], qp="test", options=test_opts)
state.widget_value("cmp_nperm", 10000, qp="nperm", min_value=100, max_value=100000)
state.widget_value("cmp_block", 20.0, qp="block", min_value=4.0, max_value=120.0)
n_samples, k, fdr, seed, test_alpha, level, test, n_perm, block_s = (
    st.session_state[key] for key in ("cmp_n", "cmp_k", "cmp_fdr", "cmp_seed", "cmp_alpha", "cmp_level", "cmp_test",
                                      "cmp_nperm", "cmp_block"))


def comparison_settings() -> None:
    c = st.columns(5)
    c[0].number_input("20-vs-20 draws per run", min_value=10, max_value=10000, step=50, key="cmp_n")
    c[1].number_input("k (rows per draw)", min_value=2, max_value=100, key="cmp_k")
    c[2].selectbox("FDR", ["bh", "by", "none"], key="cmp_fdr")
    c[3].number_input("draw seed", min_value=0, step=1, key="cmp_seed")
    c[4].selectbox("significance level (q ≤)", alpha_opts, key="cmp_alpha")
    c = st.columns(4)
    c[0].selectbox("Test level", level_opts, key="cmp_level",
                   help="group: random effects across participants (does A predict brains better than B?); "
                        "participant: within each participant, across blocks of held-out TRs or runs. "
                        "Seeds are averaged, never used as samples.")
    c[1].selectbox("Test", test_opts, key="cmp_test",
                   help="group auto = ttest-by-run when a model was fitted on several participants' data "
                        "(shared head, e.g. the default pair: its run-averaged t-test is anti-conservative), "
                        "else ttest. paper-initializations = the 2019 paper's t-test across seeds on one test "
                        "set: it measures training stability and fails our calibration as a test of A vs B.")
    c[2].number_input("sign flips (permutation tests)", min_value=100, max_value=100000, step=1000, key="cmp_nperm")
    c[3].number_input("block length (s, block-sign-flip)", min_value=4.0, max_value=120.0, step=2.0, key="cmp_block")


if settings_box.open:  # lazy: nine widgets fewer for the browser to draw while it is closed
    state.draw_later(comparison_settings, settings_box)

from brainviz.evaluation import CompareConfig  # noqa: E402


@st.cache_resource(show_spinner=False)
def _server_results() -> dict:
    """Comparisons computed by any session of this server process (a new session that opens a
    shared link gets the result at once; the library's disk cache serves other processes)."""
    return {}


config = CompareConfig(k=int(k), n_samples=int(n_samples), seed=int(seed), level=level, test=test, fdr=fdr,
                       alpha=float(test_alpha), n_permutations=int(n_perm), block_seconds=float(block_s))
run_key = (path_a, path_b, tuple(pids), config.key())
state.widget_value("cmp_done", 0, qp="run")
have = st.session_state.get("compare", {}).get("key") == run_key
clicked = st.button("Run comparison", type="primary", key="cmp_run")
auto = st.session_state.get("cmp_done") == 1 and not have and not st.session_state.get("_cmp_auto_tried")
if clicked or auto:
    st.session_state["_cmp_auto_tried"] = True
    shared = _server_results()
    skey = (run_key, compute.model_stamp(path_a), compute.model_stamp(path_b))
    if skey not in shared:
        stored = compute.cached_comparison(path_a, path_b, pids, config)
        if stored is not None:
            shared[skey] = (stored, compute.comparison_maps(stored, (model_a, model_b)))
    if skey in shared:  # computed earlier (this server or on disk): no need to rerun the tests
        result, maps = shared[skey]
        st.session_state["compare"] = {"key": run_key, "maps": maps, "result": result, "from_cache": True}
        st.caption("Comparison ready (from cache)")
    else:
        state.draw_deferred()  # the settings stay visible while the comparison runs
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
            while len(shared) >= 8:
                shared.pop(next(iter(shared)))
            shared[skey] = (result, maps)
            status.update(label="Comparison ready" + (" (from cache)" if result.meta.get("from_cache") else ""),
                          state="complete", expanded=False)
    st.session_state["cmp_done"] = 1

res = st.session_state.get("compare")
if not res or res["key"] != run_key:
    st.info("Press **Run comparison** (results are cached: a repeated comparison is instant).")
    state.stop()
maps: compute.CompareMaps = res["maps"]
names = maps.names

# ---- display controls (drawn after the montage, see state.draw_later) -----------------
view_box = st.container()
q_opts = [0.001, 0.005, 0.01, 0.05, 0.1, 1.0]
state.widget_value("cmp_q", maps.alpha if maps.alpha in q_opts else 0.05, qp="q", options=q_opts)
alpha = st.session_state["cmp_q"]
group_ok = maps.group is not None
view_opts = (["group (all participants)"] if group_ok else []) + list(maps.participants)
state.widget_value("cmp_vp", view_opts[0], qp="vp", options=view_opts)
who = st.session_state["cmp_vp"]
participant = None if (group_ok and who == view_opts[0]) else who
atlas_opts = resources.atlas_options(ctx["dataset_path"])
state.widget_value("cmp_atlas", "planted regions" if "planted regions" in atlas_opts else "none", qp="atlas",
                   options=atlas_opts)
atlas_name = st.session_state["cmp_atlas"]
atlas = resources.atlas(atlas_name, ctx["dataset_path"])

values, mask = maps.map("diff", participant, alpha)
sig = maps.significant(participant)
tested_by = maps.summary.get("test") if participant is None else maps.summary.get("participant_test")


def view_choices_and_summary() -> None:
    c = st.columns(3)
    c[0].select_slider("Display threshold: show q <", q_opts, key="cmp_q",
                       help="Only changes what the maps show. 'Significant' is fixed by the test and its level "
                            "in Comparison settings.")
    c[1].selectbox("Participant", view_opts, key="cmp_vp")
    c[2].selectbox("Outline / ROIs", atlas_opts, key="cmp_atlas")
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
        from brainviz.evaluation.compare import explain_empty

        st.info(explain_empty({participant: res["result"].tests[participant]}, "participant",
                              maps.summary.get("sample_sizes", {})))


state.draw_later(view_choices_and_summary, view_box)

on_surface = surface.is_fsaverage5(maps.n_units)
tabs = state.lazy_tabs(["Cortex", "Flat map + selection", "Single model", "Fig. 2 curves", "ROIs", "Export"],
                       key="cmp_tab", qp="tab")
title = f"{names[0]} − {names[1]} (20-vs-20 accuracy), {tested_by}, shown q < {alpha:g}, {who}"
diff_title = montage.difference_title(names)
outline = None if atlas is None else atlas.labels
roi_names = {} if atlas is None else {int(k): str(v) for k, v in dict(atlas.names).items()}


@st.cache_resource(show_spinner=False, max_entries=2)
def _heldout_pair(path_a_: str, path_b_: str, pid: str, dataset: str | None, stamp: tuple):
    return heldout.heldout_pair(path_a_, path_b_, pid, dataset=dataset)


def vertex_label(v: int) -> str:
    hemi = "left" if v < surface.N_PER_HEMI else "right"
    roi = roi_names.get(int(outline[v])) if outline is not None and int(outline[v]) else None
    return f"vertex {v} ({hemi} hemisphere{', ROI ' + roi if roi else ''})"


@st.cache_data(show_spinner=False, max_entries=32)
def _montage_preview(vals, **kwargs) -> bytes:
    """The on-screen montage, shared by all sessions (a shared link opened in a new tab does not
    render it again: ~0.1 s of server time the browser needs while it draws the page)."""
    return montage.montage_jpeg(vals, **kwargs)


def display_controls(prefix: str, *, center: float, unit: str, auto_max: float, default_threshold: float = 0.0,
                     qp: str = ""):
    """Mesh / hemisphere / threshold / colour-max controls shared by the static and 3-D views: their
    values now, the widgets in a container here drawn after the figure (state.draw_later)."""
    state.widget_value("cmp_mesh", "inflated", qp="mesh", options=list(montage.MESHES))
    state.widget_value("cmp_hemi", "both", qp="hemi", options=list(cortex.HEMI_CHOICES))
    state.widget_value(f"{prefix}_thr", default_threshold, qp=f"{qp}thr", min_value=0.0, max_value=1.0)
    state.widget_value(f"{prefix}_vmax", 0.0, qp=f"{qp}vmax", min_value=0.0, max_value=1.0)

    def draw() -> None:
        cc = st.columns(4)
        cc[0].radio("Mesh", montage.MESHES, key="cmp_mesh", horizontal=True)
        cc[1].radio("Hemisphere", cortex.HEMI_CHOICES, key="cmp_hemi", horizontal=True)
        cc[2].number_input(f"Hide |value − {center:g}| <", min_value=0.0, max_value=1.0, step=0.005, format="%.3f",
                           key=f"{prefix}_thr",
                           help=f"Display threshold in {unit}: vertices closer than this to {center:g} show the "
                                "grey curvature (as do vertices not shown by the q threshold).")
        cc[3].number_input(f"Colour max |value − {center:g}| (0 = auto: {auto_max:.3g})", min_value=0.0,
                           max_value=1.0, step=0.01, format="%.3f", key=f"{prefix}_vmax")

    state.draw_later(draw, st.container())
    thr, vmax = st.session_state[f"{prefix}_thr"], st.session_state[f"{prefix}_vmax"]
    return st.session_state["cmp_mesh"], st.session_state["cmp_hemi"], (float(thr) or None), (float(vmax) or None)


def static_then_3d(vals, shown_mask, *, key: str, fig_title: str, cbar: str, center: float, unit: str,
                   subtitle: str, stem: str):
    """The four-view montage first; the interactive 3-D mesh on demand."""
    finite = np.isfinite(vals) & shown_mask
    auto = float(np.nanmax(np.abs(vals[finite] - center))) if finite.any() else 0.0
    mesh, hemi, thr, vmax = display_controls(key, center=center, unit=unit, auto_max=auto,
                                             qp="" if key == "cmp_diff" else "s")
    preview = _montage_preview(vals, mask=shown_mask, threshold=thr, vmax=vmax, center=center, mesh=mesh, hemi=hemi,
                               outline=outline, title=fig_title, subtitle=subtitle, colorbar_title=cbar, simulated=sim)
    st.session_state["cmp_fig_payload"] = len(preview)  # bytes sent for the map (the 3-D view replaces it when open)
    state.inline_image(preview, caption=f"{mesh} surface, lateral and medial views; grey = not shown (curvature: light gyri, dark "
                          f"sulci); colour centred on {center:g}" + ("; outlines: " + atlas_name if atlas else ""))
    kw = dict(mask=shown_mask, threshold=thr, vmax=vmax, center=center, mesh=mesh, hemi=hemi, outline=outline,
              title=fig_title, subtitle=subtitle, colorbar_title=cbar, simulated=sim)
    dc = st.columns(4)
    dc[0].download_button("Montage (PNG, 2× resolution)", lambda: montage.montage_image(vals, "png", scale=2.0, **kw),
                          export.filename(stem, "png", sim), export.MIME["png"], key=f"dl_{key}_png")
    dc[1].download_button("Montage (SVG)", lambda: montage.montage_image(vals, "svg", **kw),
                          export.filename(stem, "svg", sim), export.MIME["svg"], key=f"dl_{key}_svg")
    dc[2].download_button("Montage (PDF)", lambda: montage.montage_image(vals, "pdf", **kw),
                          export.filename(stem, "pdf", sim), export.MIME["pdf"], key=f"dl_{key}_pdf")
    if dc[3].toggle("Interactive 3-D view", key=f"{key}_3d", help="Rotatable WebGL mesh (slower to draw)."):
        state.widget_value("cmp_view", "lateral", qp="view", options=list(cortex.VIEWS))
        view = st.selectbox("Camera", cortex.VIEWS, key="cmp_view")
        fig3d = cortex.cortical_map(vals, mask=shown_mask, threshold=thr, vmax=vmax or auto or None, center=center,
                                    mesh=mesh,
                                    hemi=hemi, view=view, outline=outline, title=fig_title, colorbar_title=cbar,
                                    simulated=sim)
        st.session_state["cmp_fig_payload"] = len(fig3d.to_json())
        st.plotly_chart(fig3d, key=f"{key}_cortex", config={"toImageButtonOptions": {"format": "svg"},
                                                            "displaylogo": False})
        st.caption("The camera button of the 3-D view saves an SVG in the browser.")
    return mesh, hemi, thr, vmax


def linked_view(vertices, label: str, *, key: str):
    """Measured vs predicted held-out time course of ``vertices`` for A and B, per-run accuracies."""
    vertices = np.asarray(vertices, dtype=np.int64)
    pid = participant
    if pid is None:
        pid = st.selectbox("Participant for the time course", maps.participants, key=f"{key}_pid")
    try:
        with st.spinner(f"Reading held-out predictions of {pid}…"):
            pair = _heldout_pair(path_a, path_b, pid, ctx.get("dataset_path"), (compute.model_stamp(path_a), compute.model_stamp(path_b)))
    except Exception as exc:  # noqa: BLE001 - e.g. targets unavailable: say so, keep the page
        st.warning(f"Cannot read the held-out time courses: {exc}")
        return
    acc = heldout.run_accuracies(res["result"], pid, vertices)
    fig = heldout.timecourse_figure(pair, vertices, names=names, label=label, run_accuracy=acc, simulated=sim)
    st.plotly_chart(fig, key=f"{key}_tc")
    st.caption("Held-out rows only (each run predicted by the fit that did not see it); the line breaks between runs. "
               "Traces are z-scored over the shown rows; r = Pearson correlation with the measured signal.")


with tabs[0]:
    if state.tab_open(tabs[0]):
        if not on_surface:
            st.info(f"The units are not fsaverage5 vertices ({maps.n_units} units): see the ROIs and Export tabs.")
        else:
            static_then_3d(values, mask, key="cmp_diff", fig_title=title, cbar=diff_title, center=0.0,
                           unit="accuracy difference", subtitle=maps.describe(),
                           stem=f"{model_a}_vs_{model_b}_montage")
            if st.toggle("Inspect a vertex or an ROI: held-out time courses of A and B", key="cmp_inspect"):
                cc = st.columns(2)
                roi_opts = ["(vertex)"] + ([roi_names[k] for k in sorted(roi_names)] if roi_names else [])
                pick = cc[0].selectbox("ROI", roi_opts, key="cmp_inspect_roi")
                if pick == "(vertex)":
                    best = int(np.nanargmax(np.where(mask, np.abs(values), -np.inf))) if mask.any() else 0
                    v = int(cc[1].number_input("Vertex (0–20483; default: the largest shown |Δ|)", 0,
                                               surface.N_VERTICES - 1, best, key="cmp_inspect_v"))
                    linked_view([v], vertex_label(v), key="cmp_inspect_tc")
                else:
                    lab = next(k for k, n in roi_names.items() if n == pick)
                    verts = np.flatnonzero(outline == lab)
                    linked_view(verts, f"ROI {pick} ({verts.size} vertices, mean)", key="cmp_inspect_tc")

with tabs[1]:
    if state.tab_open(tabs[1]):
        if not on_surface:
            st.info("Flat maps need fsaverage5 data.")
        else:
            thr = state.current("cmp_diff_thr", 0.0) or None    # the Cortex tab's display controls
            vmax = state.current("cmp_diff_vmax", 0.0) or None
            figflat = flatmap.flat_map(values, mask=mask, threshold=thr, vmax=vmax, outline=outline,
                                       title=title.replace(", shown", "<br>shown"), colorbar_title=diff_title,
                                       simulated=sim)
            event = st.plotly_chart(figflat, on_select="rerun", selection_mode=("points", "box", "lasso"),
                                    key="cmp_flat")
            chosen = flatmap.selected_vertices(event)
            if chosen.size:
                st.session_state["cmp_selected"] = chosen
            else:
                chosen = st.session_state.get("cmp_selected", np.array([], dtype=np.int64))
            if chosen.size:
                df = maps.frame(participant, alpha, chosen)
                if outline is not None:
                    df.insert(1, "roi", [roi_names.get(int(outline[v]), "") for v in df["unit"]])
                df.insert(1, "hemisphere", np.where(df["unit"].to_numpy() < surface.N_PER_HEMI, "left", "right"))
                stats = heldout.selection_stats(df)
                s = st.columns(6)
                s[0].metric("selected vertices", int(chosen.size))
                s[1].metric("mean Δ (A − B)", f"{stats['mean_diff']:+.3f}")
                s[2].metric(f"mean acc {names[0]}", f"{stats['mean_acc_a']:.3f}")
                s[3].metric(f"mean acc {names[1]}", f"{stats['mean_acc_b']:.3f}")
                s[4].metric(f"{names[0]} better", f"{100 * stats['share_a_better']:.0f} %")
                s[5].metric(f"significant (q ≤ {maps.alpha:g})", int(df["significant"].sum()))
                note = (f"Mean Δ 20-vs-20 accuracy {stats['mean_diff']:+.4f} ± {stats['se_diff']:.4f} (SE across the "
                        f"{stats['n']} selected vertices, which are not independent)" if stats["n"] > 1 else
                        f"Δ 20-vs-20 accuracy {stats['mean_diff']:+.4f}")
                if "roi" in df:
                    counts = df["roi"].replace("", "(none)").value_counts()
                    note += " · ROIs in the selection: " + ", ".join(f"{k} ({v})" for k, v in counts.items())
                st.caption(note)
                st.dataframe(df, hide_index=True, width="stretch", height=260)
                st.download_button("Selection (CSV)", export.table_csv(df, sim),
                                   export.filename("selection", "csv", sim), "text/csv", key="dl_sel")
                label = vertex_label(int(chosen[0])) if chosen.size == 1 else f"{chosen.size} selected vertices (mean)"
                linked_view(chosen, label, key="cmp_flat_link")
            else:
                st.caption("Click a vertex for its time courses, or pick the Lasso / Box Select tool in the map's "
                           "toolbar to select a group.")

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
            label, chance = "20-vs-20 accuracy", 0.5
            note = "mean over seeds and runs"
            st.caption("Accuracies of the comparison above; colour centred on chance (0.5): red above, blue below.")
        else:
            from brainviz.evaluation import EvaluateConfig
            from brainviz.evaluation.compare import evaluate_model

            ecfg = EvaluateConfig(metric=metric, n_samples=int(n_samples), alpha=config.alpha, fdr=config.fdr,
                                  level="group" if participant is None and group_ok else "participant",
                                  n_permutations=config.n_permutations, block_seconds=config.block_seconds)
            ekey = (path_s, tuple(maps.participants), ecfg.key())
            if st.session_state.get("evaluate", {}).get("key") != ekey:
                state.draw_deferred()  # the controls stay visible while the model is evaluated
                with st.status(f"Evaluating {name_s} ({metric})…") as s:
                    ev = evaluate_model(path_s, ecfg, participants=maps.participants)
                    st.session_state["evaluate"] = {"key": ekey, "result": ev}
                    s.update(label="done", state="complete")
            ev = st.session_state["evaluate"]["result"]
            pp = maps.participants if participant is None else [participant]
            vals_s = np.nanmean(np.stack([ev.mean_score(p) for p in pp]), axis=0)
            etest = ev.group if (participant is None and ev.group is not None) else ev.tests[pp[0]]
            mask_s = np.isfinite(etest.q) & (etest.q < alpha)
            label = {"pearson": "held-out Pearson r", "pove": "proportion of variance explained"}[metric]
            chance, note = 0.0, f"shown: q < {alpha:g} against chance"
            st.caption(f"Against chance: **{etest.test}**, {ecfg.fdr.upper()} FDR; significant (q ≤ {ecfg.alpha:g}): "
                       f"{etest.n_significant} of {etest.n_tested} units; shown: q < {alpha:g}.")
        st.metric("mean over units", f"{np.nanmean(vals_s):.4f}")
        cbar_s = montage.chance_title(label, chance)
        if on_surface:
            static_then_3d(vals_s, mask_s, key="cmp_single", fig_title=f"{name_s}: {label} ({note}), {who}",
                           cbar=cbar_s, center=chance, unit=label, subtitle=f"model {single} = {name_s}",
                           stem=f"{name_s}_{metric}_montage")
        st.plotly_chart(curves.accuracy_histogram(vals_s, chance=chance, name=cbar_s, simulated=sim), key="cmp_hist")

with tabs[3]:
    if state.tab_open(tabs[3]):
        fig2 = curves.fig2_curves(maps.summary["fig2"], names=names, simulated=sim)
        st.plotly_chart(fig2, key="cmp_fig2")
        st.caption("Units sorted by the larger of the two accuracies; y = mean (A − B) over the n best units. "
                   "Grey: each participant; red: their mean (Schwartz et al. 2019, Fig. 2).")


def roi_table_with_se():
    """Per-ROI tests; error bars = SE across participants, or across held-out runs for one participant."""
    table = compute.roi_table(res["result"], atlas, participant)
    se_label = "SE across participants"
    if not np.isfinite(table["se"].to_numpy(dtype=float)).any():
        pid = participant or maps.participants[0]
        table["se"] = heldout.roi_se_across_runs(res["result"], atlas.labels, table["label"].tolist(), pid)
        se_label = f"SE across held-out runs ({pid}; one participant)"
    return table, se_label


with tabs[4]:
    if state.tab_open(tabs[4]):
        if atlas is None:
            st.info("Choose an atlas (Outline / ROIs) above; `planted regions` is available for simulated data, other "
                    "atlases after `python -m brainviz fetch atlas NAME --dest data_cache/atlases`.")
        elif not on_surface:
            st.info("ROIs need fsaverage5 data.")
        else:
            table, se_label = roi_table_with_se()
            st.plotly_chart(curves.roi_bars(table, names=names, simulated=sim, error_label=se_label), key="cmp_roi")
            st.caption(f"One test per ROI (units averaged within the ROI), FDR over ROIs: **{table['test'].iloc[0]}**, "
                       f"n = {int(table['n'].iloc[0])}; error bars: {se_label}.")
            st.dataframe(table, hide_index=True, width="stretch")
            st.download_button("ROI table (CSV)", lambda: export.table_csv(table, sim),
                               export.filename("roi_tests", "csv", sim), "text/csv", key="dl_roi")
            pick = st.selectbox("ROI time courses", ["(none)"] + table["roi"].astype(str).tolist(), key="cmp_roi_tc")
            if pick != "(none)":
                lab = int(table.loc[table["roi"].astype(str) == pick, "label"].iloc[0])
                verts = np.flatnonzero(atlas.labels == lab)
                linked_view(verts, f"ROI {pick} ({verts.size} vertices, mean)", key="cmp_roi_link")

with tabs[5]:
    if state.tab_open(tabs[5]):
        stem = f"{model_a}_vs_{model_b}"
        export_meta = {"models": f"A = {names[0]}, B = {names[1]}", "test": str(tested_by),
                       "level": "group" if participant is None else "participant", "alpha (significant = q <=)": maps.alpha,
                       "FDR": str(maps.summary.get("fdr")), "display threshold (shown = q <)": alpha,
                       "participants": ",".join(maps.participants), "view": who, "description": maps.describe()}
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

        def bundle():
            files = {export.filename(stem + "_units", "csv", sim): (export.table_csv(maps.frame(participant, alpha), sim),
                                                                    "per-unit table (acc_a, acc_b, diff, t, p, q, "
                                                                    "significant from the test, shown from the display "
                                                                    "threshold)")}
            if on_surface:
                files[export.filename(stem + "_maps", "csv", sim)] = (
                    export.map_csv(all_maps(), sim), "one row per fsaverage5 vertex: diff (A − B), significant, shown, "
                    "group q, per-participant accuracies and q")
                for hemi, tag in export.HEMI_TAGS.items():
                    files[export.filename(f"{tag}.{stem}_diff", "func.gii", sim)] = (
                        export.map_gifti(values, hemi, name=f"{stem}_diff", simulated=sim,
                                         meta={k: v for k, v in export_meta.items() if k != "description"}),
                        f"A − B 20-vs-20 accuracy difference, {hemi} hemisphere (GIfTI, fsaverage5)")
                files[export.filename(stem + "_montage", "png", sim)] = (
                    montage.montage_png(values, mask=mask, outline=outline, title=title, subtitle=maps.describe(),
                                        colorbar_title=diff_title, simulated=sim, scale=2.0),
                    "static four-view montage of A − B (shown: q < display threshold)")
            return export.zip_bundle(files, title=f"brainviz comparison {names[0]} vs {names[1]}", meta=export_meta,
                                     simulated=sim)

        cc = st.columns(4)
        if on_surface:
            cc[0].download_button("Maps (CSV, one row per vertex)", lambda: export.map_csv(all_maps(), sim),
                                  export.filename(stem + "_maps", "csv", sim), "text/csv", key="dl_maps")
            cc[1].download_button("A − B map (GIfTI lh/rh + README, zip)",
                                  lambda: export.maps_gifti_zip(values, name=f"{stem}_diff", simulated=sim,
                                                                meta={k: v for k, v in export_meta.items()},
                                                                description="A − B 20-vs-20 accuracy difference"),
                                  export.filename(stem + "_gifti", "zip", sim), "application/zip", key="dl_gii")
        cc[2].download_button("Per-unit table (CSV)", lambda: export.table_csv(maps.frame(participant, alpha), sim),
                              export.filename(stem + "_units", "csv", sim), "text/csv", key="dl_units")
        cc[3].download_button("Everything (zip with README)", bundle, export.filename(stem + "_all", "zip", sim),
                              "application/zip", key="dl_bundle")
        st.markdown("**Figures**")
        if on_surface:
            cc = st.columns(3)
            kw = dict(mask=mask, outline=outline, title=title, subtitle=maps.describe(), colorbar_title=diff_title,
                      simulated=sim)
            for j, fmt in enumerate(export.IMAGE_FORMATS):
                cc[j].download_button(export.download_label("A − B montage", fmt),
                                      lambda fm=fmt: montage.montage_image(values, fm, **({"scale": 2.0} | kw)),
                                      export.filename(f"{stem}_montage", fmt, sim), export.MIME[fmt],
                                      key=f"dl_montage_{fmt}")
        ok, why = export.image_export_available()
        if not ok:
            st.caption(f"PNG/SVG/PDF of the interactive figures is unavailable on this server ({why}). The "
                       "interactive HTML works offline, and the camera button of any figure saves an SVG in the browser.")

        def fig_of(name):
            if name == "fig2":
                return curves.fig2_curves(maps.summary["fig2"], names=names, simulated=sim)
            if name == "flatmap":
                return flatmap.flat_map(values, mask=mask, outline=outline, title=title, colorbar_title=diff_title,
                                        simulated=sim)
            return cortex.cortical_map(values, mask=mask, mesh=st.session_state.get("cmp_mesh", "inflated"),
                                       hemi=st.session_state.get("cmp_hemi", "both"),
                                       view=st.session_state.get("cmp_view", "lateral"), outline=outline,
                                       title=title, colorbar_title=diff_title, simulated=sim)

        for fname in ["fig2"] + (["flatmap", "cortex3d"] if on_surface else []):
            cc = st.columns(4)
            cc[0].download_button(f"{fname} (interactive HTML)", lambda f=fname: export.figure_html(fig_of(f)),
                                  export.filename(f"{stem}_{fname}", "html", sim), "text/html", key=f"dl_{fname}_html")
            if ok:
                for j, fmt in enumerate(export.IMAGE_FORMATS):
                    cc[j + 1].download_button(
                        export.download_label(fname, fmt),
                        lambda f=fname, fm=fmt: export.figure_image(fig_of(f), fm) or b"",
                        export.filename(f"{stem}_{fname}", fmt, sim), export.MIME[fmt], key=f"dl_{fname}_{fmt}")
state.remember("cmp_single")
